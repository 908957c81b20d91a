"""JSON logging through structlog, with secrets scrubbed from every line whoever wrote it.

The standard library's loggers (uvicorn, nats, psycopg) are routed through the same processors, and scrubbing is
the last step before a line is written, after exceptions are formatted, so a traceback cannot carry a key out.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterable, Mapping, MutableMapping
from typing import Any, TextIO

import structlog

REDACTED = "[REDACTED]"
# OpenAI keys: sk-…, sk-proj-…, sk-admin-…, sk-svcacct-…; 20+ characters so ordinary words never match.
OPENAI_KEY_PATTERN = re.compile(r"sk-[A-Za-z0-9_\-]{16,}")
SECRET_FIELD_NAMES = frozenset(
    {"api_key", "x-api-key", "x_api_key", "master_key", "authorization", "password", "secret", "token", "cookie"}
)


class SecretScrubber:
    """Replaces key-shaped text, configured secret values and secret-named fields with a placeholder."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        literal = sorted({s for s in secrets if len(s) >= 8}, key=len, reverse=True)
        alternatives = [OPENAI_KEY_PATTERN.pattern, *(re.escape(s) for s in literal)]
        self._pattern = re.compile("|".join(alternatives))

    def text(self, value: str) -> str:
        return self._pattern.sub(REDACTED, value)

    def value(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, Mapping):
            return {k: REDACTED if _is_secret_name(k) else self.value(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.value(v) for v in value]
        if isinstance(value, bytes | bytearray):
            return self.text(bytes(value).decode("utf-8", "replace"))
        return value

    def __call__(self, _logger: Any, _method: str, event_dict: MutableMapping[str, Any]) -> Any:
        return {k: REDACTED if _is_secret_name(k) else self.value(v) for k, v in event_dict.items()}


def _is_secret_name(name: object) -> bool:
    return isinstance(name, str) and name.lower() in SECRET_FIELD_NAMES


def configure_logging(
    *, level: str = "info", service: str, secrets: Iterable[str] = (), stream: TextIO | None = None
) -> SecretScrubber:
    """Send structlog and stdlib logging to stdout (or `stream`: a command whose stdout is its report passes stderr)
    as JSON lines, scrubbed; returns the scrubber for reuse."""
    scrubber = SecretScrubber(secrets)
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*shared, structlog.stdlib.ExtraAdder()],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            _drop_fields("color_message"),  # uvicorn's ANSI-coloured duplicate of the message
            _add_service(service),
            structlog.processors.format_exc_info,
            scrubber,
            structlog.processors.JSONRenderer(),
        ],
    )
    handler = logging.StreamHandler(stream or sys.stdout)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("uvicorn.access",):
        logging.getLogger(noisy).handlers[:] = []
        logging.getLogger(noisy).propagate = True
    return scrubber


def _add_service(service: str) -> Any:
    def add(_logger: Any, _method: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
        event_dict.setdefault("service", service)
        return event_dict

    return add


def _drop_fields(*names: str) -> Any:
    def drop(_logger: Any, _method: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
        for name in names:
            event_dict.pop(name, None)
        return event_dict

    return drop


def get_logger(name: str | None = None) -> Any:
    return structlog.stdlib.get_logger(name)
