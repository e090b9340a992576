"""Shared fixtures: the HTTPS emulator on loopback, trusted through REQUESTS_CA_BUNDLE."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from hrconnector_core.clouds import CloudEndpoints, resolve_cloud
from hrconnector_core.credentials import TokenProvider, secret_credential
from hrconnector_core.emulator import Emulator, EmulatorState
from hrconnector_core.emulator.azurite import Azurite
from hrconnector_core.emulator.host import local_settings
from hrconnector_core.ingestion import IngestionClient, RetryPolicy
from hrconnector_core.service import HRConnectorService
from hrconnector_core.settings import Settings

REPO = Path(__file__).resolve().parent.parent
SAMPLES = REPO / "samples"
TENANT = "5f1c0e3a-0000-4000-8000-0000000000aa"
APP_ID = "9d6a2c77-0000-4000-8000-0000000000bb"
SECRET = "s3cr3t-Value~with.odd_chars-" + uuid.uuid4().hex
OTHER_APP_ID = "9d6a2c77-0000-4000-8000-0000000000cc"
# Generous attempts: the fault tests inject 45% failures, and 8 failures in a row would be a real outcome.
FAST_RETRIES = RetryPolicy(max_attempts=20, base_delay=0.01, max_delay=0.05, max_total=30, read_timeout=30)


@pytest.fixture(scope="session")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    base = tmp_path_factory.mktemp("emulator")
    state = EmulatorState()
    state.register_app(TENANT, APP_ID, SECRET)
    state.register_app(TENANT, OTHER_APP_ID, "other-secret")
    with Emulator(state=state, ca_path=base / "ca.pem", data_dir=base / "data") as emu:
        old = os.environ.get("REQUESTS_CA_BUNDLE")
        os.environ["REQUESTS_CA_BUNDLE"] = str(emu.ca_path)
        try:
            yield emu
        finally:
            if old is None:
                os.environ.pop("REQUESTS_CA_BUNDLE", None)
            else:
                os.environ["REQUESTS_CA_BUNDLE"] = old


@pytest.fixture(autouse=True)
def _calm_emulator(request: pytest.FixtureRequest) -> Iterator[None]:
    """Every test starts and ends with no faults injected."""
    yield
    if "emulator" in request.fixturenames:
        state = request.getfixturevalue("emulator").state
        state.set_faults(
            rate_429=0, rate_503=0, rate_drop=0, latency_ms=0, bandwidth_bytes_per_s=0, retry_after_seconds=1, seed=None
        )
        state.graph.reset_faults()


@pytest.fixture
def job(emulator: Emulator) -> str:
    """A fresh connector job owned by APP_ID, so each test sees only its own rows."""
    job_id = str(uuid.uuid4())
    emulator.state.register_job(job_id, APP_ID)
    return job_id


@pytest.fixture
def cloud(emulator: Emulator) -> CloudEndpoints:
    return resolve_cloud("commercial", authority_host=emulator.url, ingestion_url=emulator.url)


@pytest.fixture
def make_client(cloud: CloudEndpoints):
    def make(job_id: str, *, secret: str = SECRET, policy: RetryPolicy = FAST_RETRIES) -> IngestionClient:
        tokens = TokenProvider(secret_credential(TENANT, APP_ID, secret, cloud), cloud.scope)
        return IngestionClient(cloud, job_id, tokens, policy=policy)

    return make


def cli_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "hrconnector_core", *args]


def upload_args(emulator: Emulator, job_id: str, file: Path, state_dir: Path, *extra: str) -> list[str]:
    return [
        "upload",
        "--tenant-id",
        TENANT,
        "--app-id",
        APP_ID,
        "--app-secret-env",
        "HR_TEST_SECRET",
        "--job-id",
        job_id,
        "--file",
        str(file),
        "--authority-host",
        emulator.url,
        "--ingestion-url",
        emulator.url,
        "--state-dir",
        str(state_dir),
        *extra,
    ]


def cli_env(emulator: Emulator) -> dict[str, str]:
    env = dict(os.environ)
    env.update({"HR_TEST_SECRET": SECRET, "REQUESTS_CA_BUNDLE": str(emulator.ca_path), "PYTHONPATH": str(REPO)})
    return env


def start_cli(emulator: Emulator, *args: str) -> subprocess.Popen[str]:
    """The CLI as a running process. Ctrl-C is restored to Python's default in it: a test run
    started in the background (`cmd &`) hands its children an ignored SIGINT, which Python keeps."""
    return subprocess.Popen(
        cli_command(*args), env=cli_env(emulator), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.default_int_handler),
    )  # fmt: skip


# -- the Function: Azurite, the function's managed identity, its settings ---------------------------
FUNCTION_IDENTITY = "e2e2e2e2-0000-4000-8000-0000000000e2"


@pytest.fixture(scope="session")
def azurite() -> Iterator[Azurite]:
    with Azurite(REPO) as instance:
        yield instance


@pytest.fixture(scope="session")
def function_identity(emulator: Emulator) -> str:
    """The Function's user-assigned managed identity: may read the vault."""
    emulator.state.register_managed_identity(FUNCTION_IDENTITY, TENANT)
    return FUNCTION_IDENTITY


@dataclass
class FunctionEnv:
    """One test's Function: its own containers, job and Key Vault secret; the app's settings set."""

    settings: Settings
    service: HRConnectorService
    job: str
    secret_name: str
    env: dict[str, str]

    def drop(self, name: str, data: bytes) -> None:
        self.service.incoming.upload_blob(name, data, overwrite=True)

    def listing(self) -> dict[str, list[str]]:
        """container -> blob names, for every container the Function uses."""
        containers = (self.service.incoming, self.service.processed, self.service.reports, self.service.failed)
        return {c.container_name: sorted(b.name for b in c.list_blobs()) for c in containers}

    def read_json(self, container: str, name: str) -> dict[str, Any]:
        client = self.service.blobs.get_blob_client(container, name)
        return json.loads(client.download_blob().readall())  # type: ignore[no-any-return]


@pytest.fixture
def function_env(
    emulator: Emulator, azurite: Azurite, function_identity: str, job: str, monkeypatch: pytest.MonkeyPatch
) -> FunctionEnv:
    suffix = uuid.uuid4().hex[:8]
    secret_name = f"hr-app-secret-{suffix}"
    emulator.state.set_secret(secret_name, SECRET)
    env = local_settings(
        azurite.connection_string,
        emulator,
        connector="main",
        job_id=job,
        tenant_id=TENANT,
        app_id=APP_ID,
        identity=function_identity,
        secret_name=secret_name,
    ) | {
        "HR_INCOMING_CONTAINER": f"in-{suffix}",
        "HR_PROCESSED_CONTAINER": f"processed-{suffix}",
        "HR_REPORTS_CONTAINER": f"reports-{suffix}",
        "HR_FAILED_CONTAINER": f"failed-{suffix}",
        "HR_STATE_CONTAINER": f"state-{suffix}",
        "HR_LEASE_SECONDS": "15",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    settings = Settings.from_env()
    service = HRConnectorService(settings)
    service.ensure_containers()
    return FunctionEnv(settings, service, job, secret_name, env)


@pytest.fixture
def edge(monkeypatch: pytest.MonkeyPatch) -> Any:
    """Faults and pauses at the requests transport (tests/network_edge.py)."""
    from . import network_edge

    return network_edge.install(monkeypatch)


@pytest.fixture
def chunked(monkeypatch: pytest.MonkeyPatch, function_env: FunctionEnv) -> FunctionEnv:
    """10 records per call, one call at a time: chunk k is the (k+1)-th upload request."""
    monkeypatch.setenv("HR_RECORDS_PER_CALL", "10")
    monkeypatch.setenv("HR_MAX_CONCURRENCY", "1")
    return function_env
