"""The HR connector's ingestion endpoint: one multipart POST per chunk, with retries.

Transient failures (connection errors, time-outs, 408, 429, 500, 502, 503, 504) are retried
with exponential backoff and full jitter, honouring Retry-After, bounded in attempts and in
total time. Any other 4xx is permanent: retrying a wrong job id for 15 minutes helps nobody.
A chunk counts as uploaded only on a 2xx.
"""

from __future__ import annotations

import email.utils
import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import requests

from .chunking import Chunk
from .clouds import CloudEndpoints
from .credentials import TokenProvider
from .errors import UploadError

log = logging.getLogger(__name__)

RETRYABLE_STATUS = frozenset({408, 429, 500, 502, 503, 504})
MAX_BODY_CHARS = 2_000


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 8
    base_delay: float = 1.0  # seconds; doubled after each failed attempt
    max_delay: float = 60.0  # a single wait never exceeds this (Retry-After included)
    max_total: float = 600.0  # give up on a chunk once this much time has passed
    connect_timeout: float = 10.0
    read_timeout: float = 120.0

    def backoff(self, attempt: int, rng: random.Random) -> float:
        """Full jitter: a random wait up to the exponential cap for this attempt (1-based)."""
        return rng.uniform(0, min(self.max_delay, self.base_delay * 2 ** (attempt - 1)))


@dataclass
class Attempt:
    number: int
    status: int | None
    duration_ms: int
    error: str | None = None
    wait_ms: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "number": self.number,
            "status": self.status,
            "duration_ms": self.duration_ms,
            "error": self.error,
            "wait_ms": self.wait_ms,
        }


@dataclass
class UploadResult:
    status: int
    body: str
    attempts: list[Attempt] = field(default_factory=list)


def retry_after_seconds(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def _body_text(response: requests.Response) -> str:
    text = response.text or ""
    return text if len(text) <= MAX_BODY_CHARS else text[:MAX_BODY_CHARS] + "...(truncated)"


class IngestionClient:
    """Posts chunks for one job. Safe to use from several threads at once."""

    def __init__(
        self,
        cloud: CloudEndpoints,
        job_id: str,
        tokens: TokenProvider,
        *,
        policy: RetryPolicy | None = None,
        file_name: str = "hrdata.csv",
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,  # measures the time bound (tests inject one)
        rng: random.Random | None = None,
    ) -> None:
        self._url = cloud.signals_url
        self._job_id = job_id
        self._tokens = tokens
        self.policy = policy or RetryPolicy()
        self._file_name = file_name
        self._sleep = sleep
        self._clock = clock
        self._rng = rng or random.Random()
        self._local = threading.local()

    @property
    def url(self) -> str:
        return self._url

    @property
    def token_fetches(self) -> int:
        return self._tokens.fetches

    def _session(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = requests.Session()
        return session

    def _post(self, chunk: Chunk, token: str) -> requests.Response:
        return self._session().post(
            self._url,
            params={"jobid": self._job_id},
            headers={"Authorization": f"Bearer {token}"},
            files={"file": (self._file_name, chunk.data, "text/csv")},
            timeout=(self.policy.connect_timeout, self.policy.read_timeout),
        )

    def upload(self, chunk: Chunk) -> UploadResult:
        """POST one chunk until it is accepted, or raise UploadError with every attempt recorded."""
        policy = self.policy
        started = self._clock()
        attempts: list[Attempt] = []
        refreshed_token = False
        while True:
            number = len(attempts) + 1
            token = self._tokens.token()
            t0 = time.monotonic()
            try:
                response = self._post(chunk, token)
            except requests.RequestException as exc:
                # Connection errors and time-outs: the service may or may not have the rows;
                # resending is the only way not to lose them.
                attempt = Attempt(number, None, _ms(t0), f"{type(exc).__name__}")
                attempts.append(attempt)
                wait = policy.backoff(number, self._rng)
                status_text = f"{type(exc).__name__}"
                body = ""
                status: int | None = None
            else:
                status = response.status_code
                body = _body_text(response)
                attempt = Attempt(number, status, _ms(t0))
                attempts.append(attempt)
                if 200 <= status < 300:
                    return UploadResult(status, body, attempts)
                status_text = f"HTTP {status} {response.reason}"
                if status == 401 and not refreshed_token:
                    # The token may have been revoked or expired early: one fresh token, once.
                    self._tokens.invalidate(token)
                    refreshed_token = True
                    log.info("chunk %d: 401 from the service; retrying once with a new token", chunk.index)
                    continue
                if status not in RETRYABLE_STATUS:
                    raise UploadError(
                        f"the service rejected chunk {chunk.index} (rows {chunk.first_row}-{chunk.last_row}): "
                        f"{status_text}: {body or '(empty body)'}",
                        status=status,
                        reason=response.reason,
                        body=body,
                        permanent=True,
                        attempts=attempts,
                    )
                retry_after = retry_after_seconds(response.headers.get("Retry-After"))
                wait = policy.backoff(number, self._rng) if retry_after is None else retry_after
                wait = min(wait, policy.max_delay)
            elapsed = self._clock() - started
            if number >= policy.max_attempts or elapsed + wait > policy.max_total:
                raise UploadError(
                    f"chunk {chunk.index} (rows {chunk.first_row}-{chunk.last_row}) was not accepted after "
                    f"{number} attempts in {elapsed:.0f} s; last answer: {status_text}" + (f": {body}" if body else ""),
                    status=status,
                    reason=status_text,
                    body=body,
                    attempts=attempts,
                )
            attempt.wait_ms = int(wait * 1000)
            log.info("chunk %d attempt %d: %s; retrying in %.1f s", chunk.index, number, status_text, wait)
            self._sleep(wait)


def _ms(t0: float) -> int:
    return int((time.monotonic() - t0) * 1000)
