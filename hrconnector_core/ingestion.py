"""The HR connector's ingestion endpoint: one multipart POST per chunk, with retries.

Transient failures (connection errors, time-outs, 408, 429, 500, 502, 503, 504) are retried
with exponential backoff and full jitter, honouring Retry-After, bounded in attempts and in
total time; a 5xx or 429 always waits at least half the exponential step, whatever Retry-After
says. Any other 4xx is permanent: retrying a wrong job id for 15 minutes helps nobody. So are a
redirect (never followed: the data goes to the configured URL or nowhere), a certificate the
client cannot verify, https to a port that speaks no TLS, and a 2xx HTML page (a portal or a
proxy, not the service). A chunk counts as uploaded only on a 2xx from the ingestion URL itself.

What the service says back is kept only in redacted form (`redact`): its known messages,
codes and numbers stay; values of the chunk and every word of them (accents and case folded,
after URL decoding), e-mail addresses, dates, digits and quoted text are removed; the length is
capped. Logs, reports and exceptions never see the raw body.
"""

from __future__ import annotations

import csv
import email.utils
import io
import ipaddress
import json
import logging
import random
import re
import ssl
import threading
import time
import unicodedata
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote_plus, urlsplit

import requests

from .chunking import Chunk
from .clouds import CloudEndpoints
from .credentials import TokenProvider
from .errors import UploadError

log = logging.getLogger(__name__)

RETRYABLE_STATUS = frozenset({408, 429, 500, 502, 503, 504})
MAX_BODY_CHARS = 500  # of the redacted body kept in reports, logs and errors
_MAX_SCANNED_CHARS = 20_000  # of the raw body looked at, at all


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

    def server_error_floor(self, attempt: int) -> float:
        """The least a 5xx waits (half the exponential cap), even with Retry-After: 0: a failing
        service is not hammered with back-to-back attempts."""
        return min(self.max_delay, self.base_delay * 2.0 ** (attempt - 1)) / 2


@dataclass
class Attempt:
    number: int
    status: int | None
    duration_ms: int
    error: str | None = None
    wait_ms: int = 0
    retry_after_s: float | None = None  # what the service asked for, honoured or not

    def to_dict(self) -> dict[str, Any]:
        return {
            "number": self.number,
            "status": self.status,
            "duration_ms": self.duration_ms,
            "error": self.error,
            "wait_ms": self.wait_ms,
            "retry_after_s": self.retry_after_s,
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
    if _DIGITS.fullmatch(value):  # ASCII digits only: str.isdigit also takes '²', which float() refuses
        return float(value[:12])  # a longer number is "forever" anyway, and stays a finite float
    try:
        when = email.utils.parsedate_to_datetime(value)
        return max(0.0, when.timestamp() - (time.time() if now is None else now))
    except (TypeError, ValueError, OverflowError, IndexError):  # not a date the header may carry
        return None


_DIGITS = re.compile(r"[0-9]+", re.ASCII)


# The service's own answers (Microsoft's sample scripts and what the service was seen to send):
# kept verbatim wherever they occur.
KNOWN_MESSAGES = (
    "jobId and corresponding appId do not match.",
    "The request has no 'file' part.",
    "The access token is missing, expired or not for this service.",
    "Too many requests",
    "Service Unavailable",
)
# Codes and identifiers the service may send (BadRequest, invalid_token, AADSTS700016, a GUID,
# a lower-case hex id):
# kept. A lone capitalised word could be a name, so it is no code.
_CODE = re.compile(
    r"[A-Za-z]+(?:[_.-][A-Za-z0-9]+)+|[A-Za-z][a-z]+(?:[A-Z][a-z0-9]*)+|[a-z]+|[A-Z]+[0-9]*"
    r"|[0-9a-fA-F]{8}(?:-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}|[0-9a-f]{16,64}"
)
_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,63}")  # a JSON key, unless it is one of the chunk's values
_DATA_LIKE = re.compile(
    r"""[^\s@'"]+@[^\s@'"]+"""  # e-mail addresses and UPNs
    r"""|"[^"\n]{0,200}"|'[^'\n]{0,200}'"""  # quoted text: an echoed value, typically
    r"|[^\s]*\d[^\s]*"  # anything with a digit: dates, numbers, postcodes, phone numbers
)
REDACTED = "<redacted>"
_URL_ENCODED = re.compile(r"%[0-9A-Fa-f]{2}|\+")


# Words that are the service's own vocabulary (its messages, usual JSON keys): never a reason to
# redact, even when a row happens to hold the same word.
_SERVICE_WORDS = (
    "error errors message messages code status detail details reason request requests records record received "
    "accepted rejected invalid bad file part token service unavailable many field fields row rows column columns "
    "value values line lines type title trace traceid correlation job jobid appid"
)
_VOCABULARY = frozenset(
    " ".join((*KNOWN_MESSAGES, _SERVICE_WORDS)).casefold().replace("'", " ").replace(".", " ").split()
)
_WORD = re.compile(r"[^\W_]+")  # a run of letters and digits (any script)


def _fold(text: str) -> str:
    """A form that survives what a service or a proxy may do to an echoed value: compatibility
    normalisation (NFKC), no accents (NFD forms and their composed twins meet), case folded."""
    decomposed = unicodedata.normalize("NFKD", unicodedata.normalize("NFKC", text))
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()


class _Values:
    """The values (not the header) of a chunk, longest first, and their words, parsed only if
    free text needs them."""

    def __init__(self, data: bytes | None) -> None:
        self._data = data
        self._values: list[str] | None = None
        self._words: frozenset[str] | None = None
        self.header: list[str] = []

    def __iter__(self) -> Iterator[str]:
        if self._values is None:
            values: set[str] = set()
            if self._data:
                rows = csv.reader(io.StringIO(self._data.decode("utf-8", "replace"), newline=""))
                self.header = next(rows, [])
                values = {value.strip() for row in rows for value in row}
            self._values = sorted((v for v in values if len(v) >= 2), key=len, reverse=True)
        return iter(self._values)

    @property
    def words(self) -> frozenset[str]:
        """Every word of three letters or more in the chunk's values, folded; a surname, a city or
        one line of an address is a value's word, and is redacted wherever it appears."""
        if self._words is None:
            values = list(self)
            names = {_fold(w) for h in self.header for w in _WORD.findall(h)}
            words = {_fold(w) for v in values for w in _WORD.findall(v)}
            self._words = frozenset(
                w for w in words if sum(c.isalpha() for c in w) >= 3 and w not in names and w not in _VOCABULARY
            )
        return self._words

    def __contains__(self, text: object) -> bool:
        if not isinstance(text, str) or not self._data:
            return False
        return any(_fold(w) in self.words for w in _WORD.findall(text)) or (
            text.encode() in self._data and any(text == v for v in self)
        )


def _scrub_words(text: str, values: _Values) -> str:
    """Every word that is a word of the chunk's values (folded) replaced; known messages kept."""
    if not values._data:
        return text
    pieces = re.split("(" + "|".join(re.escape(m) for m in KNOWN_MESSAGES) + ")", text)
    words = values.words
    return "".join(
        piece if i % 2 else _WORD.sub(lambda m: REDACTED if _fold(m.group()) in words else m.group(), piece)
        for i, piece in enumerate(pieces)
    )


def _scrub(text: str, values: _Values) -> str:
    """Free text with everything that looks like row data replaced; known messages kept."""
    pieces = re.split("(" + "|".join(re.escape(m) for m in KNOWN_MESSAGES) + ")", text)
    out = []
    for i, piece in enumerate(pieces):
        if i % 2 or not piece.strip():  # a known message, or nothing to look at
            out.append(piece)
            continue
        low = piece.lower()
        for value in values:  # whole values, in any case (a service may re-case what it echoes)
            if value.lower() in low:
                piece = re.sub(re.escape(value), REDACTED, piece, flags=re.IGNORECASE)
                low = piece.lower()
        out.append(_DATA_LIKE.sub(REDACTED, piece))
    return "".join(out)


def _redact_json(value: Any, values: _Values) -> Any:
    if isinstance(value, dict):
        safe = {k: k if _KEY.fullmatch(k) and k not in values else REDACTED for k in value}
        return {safe[k]: _redact_json(v, values) for k, v in value.items()}
    if isinstance(value, list):
        return [_redact_json(v, values) for v in value[:20]]
    if isinstance(value, str):
        if value in KNOWN_MESSAGES or (_CODE.fullmatch(value) and value not in values):
            return value
        return _scrub(value, values)
    return value  # numbers, booleans, null: counts and flags, kept


def redact(text: str | None, chunk_data: bytes | None = None) -> str:
    """A service body or reason as it may be kept: no value of the chunk, nothing that looks like
    row data (e-mail addresses, dates, digits, quoted text), known messages and codes kept, capped."""
    if not text:
        return ""
    values = _Values(chunk_data)
    # What a service echoes may come composed or decomposed (NFD), URL-encoded ('+' for spaces),
    # with its lines joined or broken: matched on normalised words, after URL decoding.
    raw = unicodedata.normalize("NFC", text[:_MAX_SCANNED_CHARS])
    if _URL_ENCODED.search(raw):
        raw = unicodedata.normalize("NFC", unquote_plus(raw))
    try:
        parsed = json.loads(raw)
    except ValueError:
        result = _scrub(raw, values)
    else:
        result = json.dumps(_redact_json(parsed, values), ensure_ascii=False)
    result = _scrub_words(result, values)
    result = re.sub(rf"(?:{re.escape(REDACTED)}[\s,;:|]*){{2,}}", REDACTED + " ", result).strip()
    truncated = len(text) > _MAX_SCANNED_CHARS or len(result) > MAX_BODY_CHARS
    return result[:MAX_BODY_CHARS] + ("...(truncated)" if truncated else "")


def _text(response: requests.Response) -> str:
    """The start of a body as text: UTF-8 first, whatever the charset says (a text/plain body
    without charset is ISO-8859-1 to requests, which turns an echoed UTF-8 name into mojibake that
    matches no value), then the declared charset, with replacement characters at worst."""
    raw = response.content[: _MAX_SCANNED_CHARS * 4 + 1]
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        pass
    try:
        return raw.decode(response.encoding or "utf-8", "replace")
    except LookupError:  # a charset Python does not know
        return raw.decode("utf-8", "replace")


def _reason(response: requests.Response) -> str:
    """The reason phrase, read as UTF-8 when its bytes are (http.client reads it as ISO-8859-1)."""
    reason = response.reason or ""
    try:
        return reason.encode("latin-1").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        return reason


def _location(value: str | None, chunk_data: bytes | None = None) -> str:
    """Where a redirect pointed: scheme and host only (a path or query may carry anything, even a
    value the service echoed), the host redacted like any answer; "(relative)" for a bare path."""
    if not value:
        return "(no Location)"
    try:
        parts = urlsplit(value.strip())
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "(an unreadable Location)"
    if not host:
        return "(a relative Location on the same host)"
    scheme = parts.scheme if re.fullmatch(r"[A-Za-z][A-Za-z0-9+.-]{0,15}", parts.scheme) else "?"
    try:
        ipaddress.ip_address(host)  # an address carries no row value
    except ValueError:
        host = redact(host, chunk_data)
    return f"{scheme}://{host}{port}"


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """`exc` and every exception inside it (args, reason, cause, context), each once: requests
    wraps urllib3's errors, which wrap the ssl module's."""
    seen: set[int] = set()
    todo: list[Any] = [exc]
    while todo:
        current = todo.pop()
        if not isinstance(current, BaseException) or id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        todo.extend([*current.args, getattr(current, "reason", None), current.__cause__, current.__context__])


def _certificate_error(exc: BaseException) -> ssl.SSLCertVerificationError | None:
    """The certificate verification failure inside a requests exception, if that is what it is."""
    return next((e for e in _causes(exc) if isinstance(e, ssl.SSLCertVerificationError)), None)


def _protocol_mismatch(exc: BaseException) -> bool:
    """Whether a requests exception is a TLS handshake with something that is no TLS server:
    retrying will not change what listens on that port."""
    return any(isinstance(e, ssl.SSLError) and getattr(e, "reason", None) in _NOT_TLS for e in _causes(exc))


_NOT_TLS = frozenset({"WRONG_VERSION_NUMBER", "HTTP_REQUEST", "UNKNOWN_PROTOCOL", "RECORD_LAYER_FAILURE"})


def _is_html(response: requests.Response) -> bool:
    """A web page rather than an API answer: declared text/html, or a body that starts like one."""
    content_type = response.headers.get("Content-Type", "").split(";")[0].strip().lower()
    if content_type in ("text/html", "application/xhtml+xml"):
        return True
    start = response.content[:512].lstrip().lower()
    return start.startswith((b"<!doctype html", b"<html"))


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
        clock: Callable[[], float] = time.monotonic,
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
            allow_redirects=False,  # a 3xx is an answer, never a new destination for HR data
        )

    def upload(self, chunk: Chunk) -> UploadResult:
        """POST one chunk until it is accepted, or raise UploadError with every attempt recorded."""
        policy, clock = self.policy, self._clock
        started = clock()
        attempts: list[Attempt] = []
        refreshed_token = False
        rows = f"rows {chunk.first_row}-{chunk.last_row}"
        while True:
            number = len(attempts) + 1
            token = self._tokens.token()
            t0 = clock()
            retry_after: float | None = None
            try:
                response = self._post(chunk, token)
            except UnicodeDecodeError:
                # requests reads a redirect's Location as UTF-8 even when not following it: a Location
                # in another encoding is still a redirect, and no answer from the ingestion service.
                attempts.append(Attempt(number, None, _ms(clock, t0), "UnreadableRedirect"))
                raise UploadError(
                    f"the service answered chunk {chunk.index} ({rows}) with a redirect whose Location is not "
                    "readable; redirects are not followed (the data goes to the configured ingestion URL only): "
                    "check --ingestion-url / HR_INGESTION_URL",
                    reason="unreadable redirect",
                    permanent=True,
                    attempts=attempts,
                ) from None
            except requests.RequestException as exc:
                attempt = Attempt(number, None, _ms(clock, t0), f"{type(exc).__name__}")
                attempts.append(attempt)
                if _protocol_mismatch(exc):
                    raise UploadError(
                        f"chunk {chunk.index} ({rows}) was not sent: {_location(self._url)} does not speak TLS "
                        "(https to a plain-http port?); not retried",
                        reason="TLS protocol mismatch",
                        permanent=True,
                        attempts=attempts,
                    ) from None
                if _certificate_error(exc) is not None:
                    # Not a passing fault: the endpoint is not who it claims to be (or our trust is wrong).
                    raise UploadError(
                        f"chunk {chunk.index} ({rows}) was not sent: the TLS certificate of "
                        f"{_location(self._url)} could not be verified (an untrusted or wrong certificate); "
                        "not retried",
                        reason="certificate verification failed",
                        permanent=True,
                        attempts=attempts,
                    ) from None
                # Connection errors and time-outs: the service may or may not have the rows;
                # resending is the only way not to lose them.
                wait = policy.backoff(number, self._rng)
                status_text = f"{type(exc).__name__}"
                body = ""
                status: int | None = None
            else:
                status = response.status_code
                reason = redact(_reason(response), chunk.data)
                body = redact(_text(response), chunk.data)
                attempt = Attempt(number, status, _ms(clock, t0))
                attempts.append(attempt)
                if 200 <= status < 300 and _is_html(response):
                    # A captive portal or a proxy's page: the rows went nowhere they count.
                    raise UploadError(
                        f"chunk {chunk.index} ({rows}) was not accepted: HTTP {status} with an HTML page is not "
                        "the ingestion service's answer (a proxy or a sign-in portal?): check the network path "
                        "and --ingestion-url / HR_INGESTION_URL; not retried",
                        status=status,
                        reason="an HTML page, not the ingestion service",
                        body=body,
                        permanent=True,
                        attempts=attempts,
                    )
                if 200 <= status < 300:
                    return UploadResult(status, body, attempts)
                # A reason phrase that repeats the body (one answer said twice) is shown once.
                shown_reason = "" if body and reason and reason.strip() == body.strip() else reason
                status_text = f"HTTP {status} {shown_reason}".rstrip()
                if 300 <= status < 400:
                    where = _location(response.headers.get("Location"), chunk.data)
                    raise UploadError(
                        f"the service answered chunk {chunk.index} ({rows}) with a redirect: {status_text} to "
                        f"{where}; redirects are not followed (the data goes to the configured ingestion URL "
                        "only): check --ingestion-url / HR_INGESTION_URL",
                        status=status,
                        reason=reason,
                        body=body,
                        permanent=True,
                        attempts=attempts,
                        location=where,
                    )
                if status == 401 and not refreshed_token:
                    # The token may have been revoked or expired early: one fresh token, once.
                    self._tokens.invalidate(token)
                    refreshed_token = True
                    log.info("chunk %d: 401 from the service; retrying once with a new token", chunk.index)
                    continue
                if status not in RETRYABLE_STATUS:
                    raise UploadError(
                        f"the service rejected chunk {chunk.index} ({rows}): {status_text}: {body or '(empty body)'}",
                        status=status,
                        reason=reason,
                        body=body,
                        permanent=True,
                        attempts=attempts,
                    )
                retry_after = retry_after_seconds(response.headers.get("Retry-After"))
                attempt.retry_after_s = retry_after
                # The service knows best how long it needs (up to our budget); else our own backoff.
                wait = policy.backoff(number, self._rng) if retry_after is None else retry_after
                if status >= 500 or status == 429:  # Retry-After: 0 or a past date: still not back-to-back
                    wait = max(wait, policy.server_error_floor(number))
            elapsed = clock() - started
            over_budget = elapsed + wait > policy.max_total
            if number >= policy.max_attempts or over_budget:
                asked = ""
                if retry_after is not None:
                    asked = f"; the service asked to wait {retry_after:.0f} s"
                    if elapsed + retry_after > policy.max_total:
                        asked += f", past the chunk's time budget of {policy.max_total:.0f} s"
                raise UploadError(
                    f"chunk {chunk.index} ({rows}) was not accepted after {number} attempts in {elapsed:.0f} s; "
                    f"last answer: {status_text}" + (f": {body}" if body else "") + asked,
                    status=status,
                    reason=status_text,
                    body=body,
                    attempts=attempts,
                    retry_after=retry_after,
                )
            attempt.wait_ms = int(wait * 1000)
            log.info("chunk %d attempt %d: %s; retrying in %.1f s", chunk.index, number, status_text, wait)
            self._sleep(wait)


def _ms(clock: Callable[[], float], t0: float) -> int:
    return int((clock() - t0) * 1000)
