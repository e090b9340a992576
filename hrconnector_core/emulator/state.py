"""What the emulator remembers: registered apps and jobs, issued tokens, received rows, faults."""

from __future__ import annotations

import json
import random
import secrets
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..clouds import DEFAULT_RESOURCE, LEGACY_RESOURCE
from .graph import GRAPH_AUDIENCES, GraphFaults, GraphState

TOKEN_LIFETIME_SECONDS = 3600
VAULT_RESOURCE = "https://vault.azure.net"
TOKEN_EXCHANGE_AUDIENCES = ("api://AzureADTokenExchange", "api://AzureADTokenExchangeUSGov")


@dataclass(frozen=True)
class App:
    tenant_id: str
    app_id: str
    secret: str | None = None
    certificate_pem: bytes | None = None  # the public certificate registered on the app


@dataclass(frozen=True)
class IssuedToken:
    tenant_id: str
    app_id: str
    audience: str
    expires_at: float


@dataclass
class Upload:
    """One accepted upload call: the header it carried and its rows (unless rows are discarded)."""

    upload_id: str
    header: list[str]
    rows: list[list[str]]
    record_count: int
    received_at: str
    file_name: str
    response_lost: bool = False  # recorded, then the connection dropped before the answer (a fault)
    answered_at: float | None = None  # time.monotonic() once its answer was written whole (None: never)


@dataclass
class Faults:
    """Fault injection for the ingestion endpoint; rates are probabilities per request."""

    rate_429: float = 0.0
    rate_503: float = 0.0
    rate_drop: float = 0.0
    # Rows accepted and recorded, then the connection dropped without an answer: the client's retry
    # sends them again (the real service's hard case; it documents no duplicate detection).
    rate_lost_response: float = 0.0
    retry_after_seconds: int = 1
    latency_ms: int = 0
    bandwidth_bytes_per_s: int = 0  # 0: no cap
    seed: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class UploadHold:
    """Holds one upload call inside the service (body read, nothing recorded) until released:
    a test can make a client wait at the network edge for as long as it needs, without latency."""

    def __init__(self, timeout: float = 60.0) -> None:
        self.arrived = threading.Event()
        self._released = threading.Event()
        self.timeout = timeout  # a forgotten hold does not block a handler thread for ever

    def release(self) -> None:
        self._released.set()

    def wait_released(self) -> None:
        self.arrived.set()
        self._released.wait(self.timeout)


@dataclass
class EmulatorState:
    resources: tuple[str, ...] = (DEFAULT_RESOURCE, LEGACY_RESOURCE)
    data_dir: Path | None = None
    keep_rows: bool = True
    apps: dict[tuple[str, str], App] = field(default_factory=dict)
    jobs: dict[str, str] = field(default_factory=dict)  # job id -> app id
    tokens: dict[str, IssuedToken] = field(default_factory=dict)
    uploads: dict[str, list[Upload]] = field(default_factory=dict)
    log: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    faults: Faults = field(default_factory=Faults)
    # Managed identity (App Service protocol) and Key Vault.
    identity_header: str = field(default_factory=lambda: secrets.token_urlsafe(16))
    managed_identities: dict[str, str] = field(default_factory=dict)  # client id -> tenant
    vault_readers: set[str] = field(default_factory=set)  # principals (app / client ids) allowed to read
    vault_secrets: dict[str, list[tuple[str, str]]] = field(default_factory=dict)  # name -> [(version, value)]
    federated: dict[str, set[str]] = field(default_factory=dict)  # app id -> trusted managed identities
    counters: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    holds: list[UploadHold] = field(default_factory=list)  # the next upload calls to hold, in order
    # The token endpoint's next answers, in order: "503" (Entra temporarily unavailable) or "drop"
    # (the connection closed with no answer, as a client sees a time-out).
    token_faults: list[str] = field(default_factory=list)
    _rng: random.Random = field(default_factory=random.Random)
    graph: GraphState = field(default_factory=GraphState)  # the emulated Microsoft Graph drive API

    # -- registration -------------------------------------------------------------------
    def register_app(
        self, tenant_id: str, app_id: str, secret: str | None = None, *, certificate_pem: bytes | None = None
    ) -> App:
        app = App(tenant_id.lower(), app_id.lower(), secret, certificate_pem)
        self.apps[(app.tenant_id, app.app_id)] = app
        return app

    def register_job(self, job_id: str, app_id: str) -> None:
        self.jobs[job_id.lower()] = app_id.lower()

    def register_managed_identity(self, client_id: str, tenant_id: str, *, vault_reader: bool = True) -> App:
        """The function's identity: tokens from the managed-identity endpoint, no secret."""
        self.managed_identities[client_id.lower()] = tenant_id.lower()
        if vault_reader:
            self.vault_readers.add(client_id.lower())
        return App(tenant_id.lower(), client_id.lower())

    def trust_managed_identity(self, app_id: str, client_id: str) -> None:
        """A federated identity credential on the app: the identity's exchange token is its assertion."""
        self.federated.setdefault(app_id.lower(), set()).add(client_id.lower())

    def set_secret(self, name: str, value: str) -> str:
        """Add a new version of a Key Vault secret (rotation); returns the version id."""
        version = secrets.token_hex(16)
        with self.lock:
            self.vault_secrets.setdefault(name, []).append((version, value))
        return version

    def set_faults(self, **values: Any) -> Faults:
        with self.lock:
            self.faults = Faults(**{**self.faults.to_dict(), **values})
            self._rng = random.Random(self.faults.seed)
            return self.faults

    def set_graph_faults(self, **values: Any) -> GraphFaults:
        """Faults of the Graph API only (the ingestion faults stay as they are)."""
        return self.graph.set_faults(**values)

    def roll(self) -> float:
        with self.lock:
            return self._rng.random()

    def hold_next_upload(self, *, timeout: float = 60.0) -> UploadHold:
        """The next upload call waits inside the service until `release()` (or the timeout)."""
        hold = UploadHold(timeout)
        with self.lock:
            self.holds.append(hold)
        return hold

    def take_hold(self) -> UploadHold | None:
        with self.lock:
            return self.holds.pop(0) if self.holds else None

    def take_token_fault(self) -> str | None:
        with self.lock:
            return self.token_faults.pop(0) if self.token_faults else None

    def count(self, name: str) -> None:
        with self.lock:
            self.counters[name] = self.counters.get(name, 0) + 1

    # -- tokens -------------------------------------------------------------------------
    @property
    def token_audiences(self) -> tuple[str, ...]:
        return (*self.resources, VAULT_RESOURCE, *TOKEN_EXCHANGE_AUDIENCES, *GRAPH_AUDIENCES)

    def issue_token(self, app: App, audience: str) -> tuple[str, int]:
        token = "emu." + secrets.token_urlsafe(32)
        with self.lock:
            self.tokens[token] = IssuedToken(app.tenant_id, app.app_id, audience, time.time() + TOKEN_LIFETIME_SECONDS)
            self.counters["tokens_issued"] = self.counters.get("tokens_issued", 0) + 1
        return token, TOKEN_LIFETIME_SECONDS

    def revoke_tokens(self, app_id: str) -> None:
        """The service stops accepting every token issued to `app_id`."""
        with self.lock:
            for token in [t for t, info in self.tokens.items() if info.app_id == app_id.lower()]:
                del self.tokens[token]

    def token_info(self, token: str) -> IssuedToken | None:
        with self.lock:
            info = self.tokens.get(token)
        if info is None or info.expires_at <= time.time():
            return None
        return info

    # -- ingestion ----------------------------------------------------------------------
    def record_upload(
        self, job_id: str, header: list[str], rows: list[list[str]], file_name: str, *, response_lost: bool = False
    ) -> Upload:
        now = datetime.now(timezone.utc).isoformat(timespec="milliseconds")
        kept = rows if self.keep_rows else []
        upload = Upload(secrets.token_hex(8), header, kept, len(rows), now, file_name, response_lost)
        entry = {
            "JobId": job_id,
            "UploadId": upload.upload_id,
            "StartTime": now,
            "EndTime": datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
            "FileName": file_name,
            "RecordsSaved": len(rows),
            "Status": "Success",
        }
        with self.lock:
            self.uploads.setdefault(job_id, []).append(upload)
            self.log.setdefault(job_id, []).append(entry)
            if self.data_dir is not None:
                with (self.data_dir / f"job-{_safe(job_id)}.log").open("a", encoding="utf-8") as handle:
                    handle.write(json.dumps(entry) + "\n")
        return upload

    def rows(self, job_id: str) -> list[list[str]]:
        """Every row the job received, in arrival order."""
        with self.lock:
            return [row for upload in self.uploads.get(job_id.lower(), []) for row in upload.rows]

    def lost_response_uploads(self, job_id: str) -> list[Upload]:
        """The job's uploads that were recorded but whose answer the client never got."""
        with self.lock:
            return [upload for upload in self.uploads.get(job_id.lower(), []) if upload.response_lost]

    def reset_job(self, job_id: str) -> None:
        with self.lock:
            self.uploads.pop(job_id.lower(), None)
            self.log.pop(job_id.lower(), None)


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name)
