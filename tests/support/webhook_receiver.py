"""A real local HTTP server receiving webhook deliveries: it records every request (headers and raw body) and
answers as a test tells it to (fail the first attempts of each message, be slow), and can be stopped and started
again on the same port, as a receiver that is down for a while and comes back."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from svix.webhooks import Webhook

from tests.support.processes import free_port


@dataclass(frozen=True)
class Received:
    headers: dict[str, str]
    body: bytes
    status: int
    at: float  # time.time() when it arrived

    @property
    def message_id(self) -> str:
        return self.headers["webhook-id"]


# (message id, how many requests of it came before this one) → (HTTP status, seconds to wait before answering)
Behaviour = Callable[[str, int], tuple[int, float]]


def always_ok(_message_id: str, _seen: int) -> tuple[int, float]:
    return 200, 0.0


@dataclass
class WebhookReceiver:
    behaviour: Behaviour = always_ok
    port: int = field(default_factory=free_port)
    received: list[Received] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def start(self) -> WebhookReceiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                headers = {name.lower(): value for name, value in self.headers.items()}
                with receiver._lock:
                    seen = sum(r.headers.get("webhook-id") == headers.get("webhook-id") for r in receiver.received)
                status, delay = receiver.behaviour(headers.get("webhook-id", ""), seen)
                if delay:
                    time.sleep(delay)
                with receiver._lock:
                    receiver.received.append(Received(headers, body, status, time.time()))
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        server.daemon_threads = True
        self._server = server
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        """Down: nothing listens on the port until `start` again."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def delivered(self) -> dict[str, list[Received]]:
        """Per message id, every request of it that was answered 2xx."""
        with self._lock:
            done: dict[str, list[Received]] = {}
            for request in self.received:
                if 200 <= request.status < 300:
                    done.setdefault(request.message_id, []).append(request)
            return done

    def verify_all(self, secret: str) -> None:
        """Every request's signature checked with svix's `Webhook.verify`, the reference implementation; raises on
        the first that does not verify."""
        verifier = Webhook(secret)
        with self._lock:
            requests = list(self.received)
        for request in requests:
            verifier.verify(request.body, request.headers)
