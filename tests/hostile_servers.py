"""Small HTTPS servers that answer the way a misconfigured proxy or a hostile endpoint would.

Each one is a real TLS server on loopback with a certificate from its own trustme CA; `trust`
writes a bundle holding the emulator's CA and these, for REQUESTS_CA_BUNDLE. A test gives the
answer as a function of the request and reads back what every server received.
"""

from __future__ import annotations

import ssl
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import trustme


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Answer:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = "text/plain; charset=utf-8"
    reason: str | None = None


Responder = Callable[[Received], Answer]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        request = Received(self.command, self.path, dict(self.headers), self.rfile.read(length))
        with self.server.lock:
            self.server.received.append(request)
        answer = self.server.responder(request)
        self.send_response(answer.status, answer.reason)
        self.send_header("Content-Type", answer.content_type)
        self.send_header("Content-Length", str(len(answer.body)))
        for name, value in answer.headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(answer.body)

    do_GET = do_POST = do_PUT = _handle  # noqa: N815 - stdlib naming


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, host: str, responder: Responder, context: ssl.SSLContext | None) -> None:
        super().__init__((host, 0), _Handler)
        self.responder = responder
        self.received: list[Received] = []
        self.lock = threading.Lock()
        if context is not None:
            self.socket = context.wrap_socket(self.socket, server_side=True)


class HostileServer:
    """One HTTPS server; `url` is its base, `received` every request it got."""

    def __init__(
        self, responder: Responder, *, host: str = "127.0.0.1", ca: trustme.CA | None = None, tls: bool = True
    ) -> None:
        self.ca = ca or trustme.CA(organization_name="hostile test CA")
        context: ssl.SSLContext | None = None
        if tls:  # tls=False: a plain-http listener, where a request must never arrive
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            self.ca.issue_cert(host, "localhost").configure_cert(context)
        self._server = _Server(host, responder, context)
        self.url = f"{'https' if tls else 'http'}://{host}:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def received(self) -> list[Received]:
        with self._server.lock:
            return list(self._server.received)

    def __enter__(self) -> HostileServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def bundle(path: Path, *trusted: HostileServer | Path) -> Path:
    """A CA bundle trusting the given servers and CA files (the emulator's, typically)."""
    pems = [t.read_bytes() if isinstance(t, Path) else t.ca.cert_pem.bytes() for t in trusted]
    path.write_bytes(b"\n".join(pems))
    return path


@contextmanager
def serving(*responders: Responder, host: str = "127.0.0.1") -> Iterator[list[HostileServer]]:
    servers = [HostileServer(r, host=host) for r in responders]
    for server in servers:
        server.__enter__()
    try:
        yield servers
    finally:
        for server in servers:
            server.__exit__()
