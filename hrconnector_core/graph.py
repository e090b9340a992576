"""A small Microsoft Graph client for the SharePoint/OneDrive source: JSON calls and file downloads.

Why not an SDK: the source needs a dozen drive calls, and these rules, which are easier to prove
here than to configure elsewhere:
- the bearer token goes only to the configured Graph URL: redirects are never followed with it,
  and a link Graph returns (next page, delta link) is used only when it starts with that URL;
- a file's content comes from the pre-authenticated URL Graph redirects to, fetched WITHOUT the
  Authorization header, streamed (memory stays at one piece whatever the file's size);
- 429, 503, other 5xx and connection errors are retried with backoff, honouring Retry-After up to
  a cap; a 401 fetches a new token once; anything else is an answer the caller handles;
- errors carry the status and Graph's error code and message, never a token or file contents.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import IO, Any
from urllib.parse import quote, urlsplit

import requests

from .credentials import TokenProvider
from .errors import HRConnectorError
from .ingestion import retry_after_seconds

log = logging.getLogger(__name__)

RETRYABLE_STATUS = frozenset({429, 500, 502, 503, 504})
DOWNLOAD_PIECE = 1 << 20  # bytes read from the network at a time
_MAX_MESSAGE = 200  # of Graph's error message kept in an exception


@dataclass(frozen=True)
class GraphRetryPolicy:
    max_attempts: int = 6
    base_delay: float = 1.0  # seconds, doubled after each failed attempt (full jitter)
    max_delay: float = 60.0  # cap on one wait, Retry-After included: a timer run must end
    connect_timeout: float = 10.0
    read_timeout: float = 60.0

    def backoff(self, attempt: int, rng: random.Random) -> float:
        return rng.uniform(0, min(self.max_delay, self.base_delay * 2 ** (attempt - 1)))


class GraphError(HRConnectorError):
    """Graph answered with an error (or not at all): status and Graph's code, never a token."""

    def __init__(self, message: str, *, status: int | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


class DownloadInterruptedError(GraphError):
    """The connection broke off in the middle of a file's content: worth starting the file again."""


def _error_of(response: requests.Response) -> tuple[str | None, str]:
    """Graph's error code and (capped) message from its JSON error shape."""
    try:
        error = response.json().get("error") or {}
    except (ValueError, AttributeError):
        return None, ""
    if not isinstance(error, dict):
        return None, ""
    code, message = error.get("code"), error.get("message")
    text = " ".join(message.split())[:_MAX_MESSAGE] if isinstance(message, str) else ""
    return (code if isinstance(code, str) else None), text


def segment(value: str) -> str:
    """An id in a URL path: percent-encoded except '!' and ',' (drive ids are `b!...`, site ids
    `host,guid,guid`, as Graph writes them)."""
    return quote(value, safe="!,")


def quote_path(path: str) -> str:
    """A drive path for a URL (`root:/HR/Exports`): each segment percent-encoded, '/' kept."""
    return "/".join(quote(part, safe="") for part in path.split("/"))


class GraphClient:
    """Calls to one Graph base URL with one identity's token. One per source run (not shared
    between threads)."""

    def __init__(
        self,
        base_url: str,
        tokens: TokenProvider,
        *,
        policy: GraphRetryPolicy | None = None,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._tokens = tokens
        self.policy = policy or GraphRetryPolicy()
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._session = requests.Session()
        self._plain = requests.Session()  # for pre-authenticated download URLs: never a token
        self.waits: list[float] = []  # every wait before a retry, for the run's summary and tests

    def close(self) -> None:
        self._session.close()
        self._plain.close()

    def url(self, path_or_link: str) -> str:
        """`/v1.0/...` under the base URL, or a link Graph returned, which must be under it too:
        the token never leaves for another host."""
        if path_or_link.startswith("/"):
            return self.base_url + path_or_link
        base = urlsplit(self.base_url + "/")
        link = urlsplit(path_or_link)
        if (link.scheme.lower(), link.netloc.lower()) != (base.scheme.lower(), base.netloc.lower()) or not (
            link.path.startswith(base.path)
        ):
            raise GraphError("Graph returned a link to another host; it is not followed with the token")
        return path_or_link

    # -- JSON calls -------------------------------------------------------------------------------
    def get(self, path: str, **params: str) -> dict[str, Any]:
        return self._json(self.request("GET", path, params=params or None))

    def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        return self._json(self.request("POST", path, json=body))

    def patch(self, path: str, body: dict[str, Any], *, if_match: str | None = None, **params: str) -> dict[str, Any]:
        headers = {"If-Match": if_match} if if_match else None
        return self._json(self.request("PATCH", path, json=body, headers=headers, params=params or None))

    def put_content(self, path: str, data: bytes | IO[bytes], content_type: str, **params: str) -> dict[str, Any]:
        """A small file's content (Graph's simple upload takes up to 4 MB): bytes, or a seekable
        file sent from its start at each attempt (memory stays at a block)."""
        headers = {"Content-Type": content_type}
        return self._json(self.request("PUT", path, data=data, headers=headers, params=params or None))

    @staticmethod
    def _json(response: requests.Response) -> dict[str, Any]:
        try:
            data = response.json()
        except ValueError:
            data = None
        if not isinstance(data, dict):
            status = response.status_code
            raise GraphError(f"Graph answered HTTP {status} without a JSON object", status=status)
        return data

    def request(
        self,
        method: str,
        path: str,
        *,
        ok: tuple[int, ...] = (200, 201, 204),
        stream: bool = False,
        headers: dict[str, str] | None = None,
        **kwargs: Any,
    ) -> requests.Response:
        """One call, retried while the failure is transient; GraphError for any answer not in `ok`."""
        url = self.url(path)
        what = f"{method} {urlsplit(url).path}"
        refreshed = False
        attempt = 0
        while True:
            attempt += 1
            token = self._tokens.token()
            body = kwargs.get("data")
            if body is not None and hasattr(body, "seek"):  # a file: every attempt sends it whole
                body.seek(0)
            try:
                response = self._session.request(
                    method,
                    url,
                    headers={**(headers or {}), "Authorization": f"Bearer {token}"},
                    timeout=(self.policy.connect_timeout, self.policy.read_timeout),
                    allow_redirects=False,  # a redirect would carry the token elsewhere
                    stream=stream,
                    **kwargs,
                )
            except requests.RequestException as exc:
                if attempt >= self.policy.max_attempts:
                    raise GraphError(f"{what}: no answer after {attempt} attempts ({type(exc).__name__})") from None
                self._wait(self.policy.backoff(attempt, self._rng), what, type(exc).__name__)
                continue
            status = response.status_code
            if status in ok:
                return response
            if status == 401 and not refreshed:  # revoked or expired early: one new token, once
                self._tokens.invalidate(token)
                refreshed = True
                response.close()
                continue
            code, message = _error_of(response)
            response.close()
            if status in RETRYABLE_STATUS and attempt < self.policy.max_attempts:
                asked = retry_after_seconds(response.headers.get("Retry-After"))
                wait = self.policy.backoff(attempt, self._rng) if asked is None else asked
                self._wait(min(wait, self.policy.max_delay), what, f"HTTP {status}")
                continue
            detail = f" {code}" if code else ""
            said = f": {message}" if message else ""
            raise GraphError(f"{what}: HTTP {status}{detail}{said}", status=status, code=code)

    def _wait(self, seconds: float, what: str, why: str) -> None:
        self.waits.append(seconds)
        log.info("Graph %s: %s; retrying in %.1f s", what, why, seconds)
        self._sleep(seconds)

    # -- file content -----------------------------------------------------------------------------
    def download(self, drive_id: str, item_id: str) -> Iterator[bytes]:
        """The item's bytes, in pieces of at most DOWNLOAD_PIECE. Graph answers the content call
        with a redirect to a pre-authenticated URL, fetched here without the token (it needs none,
        and it is another host in Azure)."""
        path = f"/v1.0/drives/{segment(drive_id)}/items/{segment(item_id)}/content"
        response = self.request("GET", path, ok=(200, 302), stream=True)
        if response.status_code == 200:  # served directly (some proxies): already authenticated
            return self._pieces(response)
        location = response.headers.get("Location", "")
        response.close()
        parts = urlsplit(location)
        if parts.scheme.lower() != "https" or not parts.hostname:
            raise GraphError(f"GET {urlsplit(path).path}: the download link is not an https URL; not followed")
        attempt = 0
        while True:
            attempt += 1
            try:
                download = self._plain.get(
                    location,
                    stream=True,
                    allow_redirects=False,
                    timeout=(self.policy.connect_timeout, self.policy.read_timeout),
                )
            except requests.RequestException as exc:
                if attempt >= self.policy.max_attempts:
                    raise GraphError(f"downloading item content: no answer ({type(exc).__name__})") from None
                self._wait(self.policy.backoff(attempt, self._rng), "download", type(exc).__name__)
                continue
            if download.status_code == 200:
                return self._pieces(download)
            status = download.status_code
            download.close()
            if status in RETRYABLE_STATUS and attempt < self.policy.max_attempts:
                asked = retry_after_seconds(download.headers.get("Retry-After"))
                wait = self.policy.backoff(attempt, self._rng) if asked is None else asked
                self._wait(min(wait, self.policy.max_delay), "download", f"HTTP {status}")
                continue
            raise GraphError(f"downloading item content: HTTP {status}", status=status)

    @staticmethod
    def _pieces(response: requests.Response) -> Iterator[bytes]:
        try:
            yield from response.iter_content(chunk_size=DOWNLOAD_PIECE)
        except requests.RequestException as exc:
            raise DownloadInterruptedError(f"downloading item content broke off ({type(exc).__name__})") from None
        finally:
            response.close()
