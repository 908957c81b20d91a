"""Whatever logs it, a key-shaped string or a configured secret never reaches a log line."""

from __future__ import annotations

import json
import logging

import pytest
import structlog

from cg_common.logging import configure_logging, get_logger
from tests.support.keys import fake_openai_key


def test_every_log_path_is_scrubbed(capsys: pytest.CaptureFixture[str]) -> None:
    openai_key = fake_openai_key()
    admin_key = "admin-" + "x" * 30
    configure_logging(level="debug", service="test", secrets=[admin_key])
    try:
        get_logger("t").info("structlog event", detail=f"upstream said: bad key {openai_key}")
        get_logger("t").debug("nested", payload={"api_key": "anything", "inner": [openai_key]})
        logging.getLogger("uvicorn.error").warning("stdlib with %s and %s", openai_key, admin_key)
        try:
            raise ValueError(f"Incorrect API key provided: {openai_key}")
        except ValueError:
            get_logger("t").exception("it failed")
            logging.getLogger("nats").exception("stdlib exception")
    finally:
        structlog.reset_defaults()
        logging.getLogger().handlers.clear()

    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    text = "\n".join(json.dumps(line) for line in lines)
    assert len(lines) == 5
    assert openai_key not in text
    assert openai_key[-20:] not in text
    assert admin_key not in text
    assert lines[1]["payload"]["api_key"] == "[REDACTED]"
    assert "Incorrect API key provided: [REDACTED]" in lines[3]["exception"]
    assert all(line["service"] == "test" for line in lines)
