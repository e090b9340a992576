"""Faults and pauses at the network edge: every HTTP request the process sends through requests
(azure-storage-blob and azure-identity via azure-core's RequestsTransport, our ingestion client)
passes `requests.adapters.HTTPAdapter.send`, where a test can fail it, hold it until the test says
go, or replace the server's answer. Nothing of our own code is replaced.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter
from requests.structures import CaseInsensitiveDict

Request = requests.PreparedRequest
WAIT_SECONDS = 60


def is_renewal(request: Request) -> bool:
    return request.headers.get("x-ms-lease-action") == "renew"


def is_upload(request: Request) -> bool:
    return request.method == "POST" and urlsplit(request.url or "").path.endswith("/api/signals")


def is_copy_into(container: str) -> Callable[[Request], bool]:
    def match(request: Request) -> bool:
        path = urlsplit(request.url or "").path
        return request.method == "PUT" and "x-ms-copy-source" in request.headers and f"/{container}/" in path

    return match


def is_delete_in(container: str) -> Callable[[Request], bool]:
    def match(request: Request) -> bool:
        return request.method == "DELETE" and f"/{container}/" in urlsplit(request.url or "").path

    return match


@dataclass
class Pause:
    """Holds the `nth` matching request (1-based) until `release()`; `reached` is set when it arrives."""

    match: Callable[[Request], bool]
    nth: int = 1
    seen: int = 0
    reached: threading.Event = field(default_factory=threading.Event)
    _go: threading.Event = field(default_factory=threading.Event)
    thread: str | None = None

    def release(self) -> None:
        self._go.set()

    def wait_reached(self, timeout: float = WAIT_SECONDS) -> None:
        assert self.reached.wait(timeout), "the paused request never arrived"


@dataclass
class Rule:
    match: Callable[[Request], bool]
    before: Callable[[Request], requests.Response | None] | None = None  # an answer replaces the server's
    after: Callable[[Request, requests.Response], None] | None = None
    times: int | None = None  # None: every matching request


class NetworkEdge:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.rules: list[Rule] = []
        self.pauses: list[Pause] = []
        self.log: list[tuple[str, str, str, int | str]] = []  # (thread, method, path, status or error)
        self._original: Any = None
        self._local = threading.local()

    # -- what the tests configure ----------------------------------------------------------------
    def pause(self, match: Callable[[Request], bool], *, nth: int = 1) -> Pause:
        pause = Pause(match, nth)
        with self._lock:
            self.pauses.append(pause)
        return pause

    def fail(
        self, match: Callable[[Request], bool], *, times: int = 1, error: type[Exception] = requests.ConnectionError
    ) -> None:
        def raise_(request: Request) -> requests.Response:
            raise error("injected at the network edge")

        self.rule(Rule(match, before=raise_, times=times))

    def answer(self, match: Callable[[Request], bool], status: int, *, times: int | None = None) -> None:
        """The request never reaches the server; the client gets `status` with an empty body."""

        def fake(request: Request) -> requests.Response:
            response = requests.Response()
            response.status_code = status
            response.headers = CaseInsensitiveDict({"Content-Length": "0", "x-ms-request-id": "edge"})
            response.raw = _Empty()
            response.request = request
            response.url = request.url or ""
            response.reason = "Injected"
            return response

        self.rule(Rule(match, before=fake, times=times))

    def after(self, match: Callable[[Request], bool], hook: Callable[[Request, requests.Response], None]) -> None:
        self.rule(Rule(match, after=hook, times=1))

    def rule(self, rule: Rule) -> None:
        with self._lock:
            self.rules.append(rule)

    def count(self, kind: str, *, thread: str | None = None, ok: bool = True) -> int:
        """Requests of `kind` ("renew", "upload" or a path) seen, answered 2xx when `ok`, from
        threads whose name starts with `thread` when given."""
        with self._lock:
            entries = list(self.log)
        return sum(
            1
            for t, _, k, status in entries
            if k == kind
            and (thread is None or t.startswith(thread))
            and (not ok or (isinstance(status, int) and 200 <= status < 300))
        )

    # -- the wrapper ------------------------------------------------------------------------------
    def send(self, adapter: HTTPAdapter, request: Request, *args: Any, **kwargs: Any) -> requests.Response:
        if getattr(self._local, "inside", False):  # a hook's own request goes straight through
            return self._original(adapter, request, *args, **kwargs)  # type: ignore[no-any-return]
        thread = threading.current_thread().name
        kind = _kind(request)
        with self._lock:
            rules = [r for r in self.rules if (r.times is None or r.times > 0) and r.match(request)]
            for r in rules:
                if r.times is not None:
                    r.times -= 1
            pauses = []
            for p in self.pauses:
                if p.match(request):
                    p.seen += 1
                    if p.seen == p.nth:
                        pauses.append(p)
        for p in pauses:
            p.thread = thread
            p.reached.set()
            assert p._go.wait(WAIT_SECONDS), "the test never released the paused request"
        response: requests.Response | None = None
        try:
            for r in rules:
                if r.before is not None:
                    response = r.before(request)
                    if response is not None:
                        break
            if response is None:
                response = self._original(adapter, request, *args, **kwargs)
        except Exception as exc:
            with self._lock:
                self.log.append((thread, request.method or "", kind, type(exc).__name__))
            raise
        with self._lock:
            self.log.append((thread, request.method or "", kind, response.status_code))
        for r in rules:
            if r.after is not None:
                self._local.inside = True
                try:
                    r.after(request, response)
                finally:
                    self._local.inside = False
        return response


class _Empty:
    """An exhausted raw stream for a made-up response."""

    def read(self, *args: Any, **kwargs: Any) -> bytes:
        return b""

    def stream(self, *args: Any, **kwargs: Any) -> Any:
        return iter(())

    def close(self) -> None:
        pass


def _kind(request: Request) -> str:
    if is_renewal(request):
        return "renew"
    if is_upload(request):
        return "upload"
    return urlsplit(request.url or "").path


def install(monkeypatch: Any) -> NetworkEdge:
    edge = NetworkEdge()
    edge._original = HTTPAdapter.send

    def send(adapter: HTTPAdapter, request: Request, *args: Any, **kwargs: Any) -> requests.Response:
        return edge.send(adapter, request, *args, **kwargs)

    monkeypatch.setattr(HTTPAdapter, "send", send)
    return edge
