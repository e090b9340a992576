"""A fault campaign: many random histories of faults and load, one checker for all of them.

    python -m benchmarks.fault_campaign --seeds 0-299          # the campaign (CLI + Function histories)
    python -m benchmarks.fault_campaign --seeds 17 --verbose   # replay one history
    python -m benchmarks.fault_campaign --load 100             # 100 files at once, 4 invokers, duplicates

Each seed draws one short history: a file (rows with quoted line breaks, commas, quotes, invalid
rows, a BOM or not, CRLF or LF), a chunk size and a concurrency, service faults set on the emulator
(429 with Retry-After, 503, dropped connections, latency) and a path:
- cli: a real `hrconnector upload` process; sometimes killed with SIGKILL at a random moment, then
  rerun until it succeeds; sometimes answers lost after the service accepted the rows.
- function: the registered blob function (as the host calls it) against Azurite, with duplicate and
  late deliveries, several concurrent invokers, the timer sweep at the same time, a lease broken
  while a run holds it, and lost answers.
- function-kill (`--paths function-kill`): the same, after a worker process running the function
  was killed with SIGKILL at a random moment (its lease then lapses: broken, as its expiry would).

Accepted-then-lost answers are injected at the requests transport (the rows reach the emulator, the
client sees a dropped connection), in the CLI process through a small start-up wrapper, in the
Function's process through the same patch; the emulator of this branch has no such fault.

Retries: the policy's delays are shortened (base 10 ms) for the campaign so a history takes
seconds; the retry logic itself is the product's. The checker is `check()`; it sees only what a
user could see (rows at the emulator, containers, reports, logs) plus the faults injected.
Not a test: it prints a table and exits 1 when a history fails.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import logging
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
TENANT = "5f1c0e3a-0000-4000-8000-0000000000aa"
APP_ID = "9d6a2c77-0000-4000-8000-0000000000bb"
SECRET = "campaign-s3cr3t~" + uuid.uuid4().hex
HEADER = ["EmailAddress", "EffectiveDate", "Remarks", "Rating"]
FAST_RETRY_DEFAULTS = (20, 0.01, 0.05, 60.0, 10.0, 30.0)  # RetryPolicy's fields, in order


# -- the files --------------------------------------------------------------------------------------
@dataclass
class FileSpec:
    name: str
    data: bytes
    valid: list[list[str]]  # the rows that must reach the service, as the service receives them
    invalid: list[int]  # row numbers (header = 1) that must be in a report with a reason
    values: list[str]  # every HR value of the file: none may appear in a log


def make_file(rng: random.Random, name: str, tag: str) -> FileSpec:
    n = rng.randint(1, 40)
    bad_rate = rng.choice([0.0, 0.0, 0.1, 0.3])
    valid: list[list[str]] = []
    invalid: list[int] = []
    records: list[list[str]] = []
    values: list[str] = []
    for i in range(n):
        token = f"{tag}x{i}"
        shape = rng.random()
        if shape < 0.2:
            remarks = f'said "fine", then\nleft early {token}r'
        elif shape < 0.35:
            remarks = f"comma, separated, {token}r"
        elif shape < 0.45:
            remarks = f"caf\u00e9 M\u00fcller \u00f8 {token}r"
        else:
            remarks = f"remark {token}r"
        row = [f"{token}@contoso.com", f"2024-01-{1 + i % 28:02d}T09:00:00Z", remarks, f"{i % 5} stars"]
        if rng.random() < bad_rate:
            row[0] = f"not-an-email-{token}"
            invalid.append(i + 2)  # the report's row: the header is row 1, line breaks in quotes do not count
        else:
            valid.append(row)
        records.append(row)
        values += [row[0], remarks.split()[-1]]
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator=rng.choice(["\r\n", "\n"])).writerows([HEADER, *records])
    encoding = rng.choice(["utf-8", "utf-8", "utf-8-sig"])
    return FileSpec(name, buffer.getvalue().encode(encoding), valid, invalid, values)


# -- a history and what the checker sees ------------------------------------------------------------
@dataclass
class History:
    seed: int
    path: str  # cli | function | function-kill
    records_per_call: int
    max_concurrency: int
    files: list[FileSpec] = field(default_factory=list)
    faults: Counter[str] = field(default_factory=Counter)
    # what was observed
    received: list[list[list[str]]] = field(default_factory=list)  # the emulator's uploads (rows of each call)
    reports: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # file -> its reports (last wins)
    placement: dict[str, list[str]] = field(default_factory=dict)  # file -> containers holding it at the end
    leased: list[str] = field(default_factory=list)  # blobs still leased at the end
    logs: list[str] = field(default_factory=list)  # every captured log line / stdout / stderr
    errors: list[str] = field(default_factory=list)  # what the harness itself saw go wrong

    @property
    def duplicate_bound_chunks(self) -> int:
        """The design's bound: a kill or a broken lease may repeat every chunk in flight
        (max_concurrency); a lost answer repeats the one chunk it carried."""
        kills = self.faults["kill"] + self.faults["lease-broken"]
        return kills * self.max_concurrency + self.faults["lost-response"]


@dataclass
class Verdict:
    lost: int = 0
    doubled_beyond: int = 0
    in_flight_duplicates: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def check(h: History) -> Verdict:
    """The one invariant, for every history."""
    v = Verdict()
    seen = Counter(tuple(row) for call in h.received for row in call)
    expected = Counter(tuple(row) for f in h.files for row in f.valid)
    for row, want in expected.items():
        got = seen.get(row, 0)
        if got < want:
            v.lost += want - got
    foreign = sum(n for row, n in seen.items() if row not in expected)
    if foreign:
        v.problems.append(f"{foreign} row(s) at the service that no file holds as valid")
    extra = sum(max(0, n - expected.get(row, 0)) for row, n in seen.items() if row in expected)
    bound_rows = h.duplicate_bound_chunks * h.records_per_call
    v.in_flight_duplicates = min(extra, bound_rows)
    v.doubled_beyond = extra - v.in_flight_duplicates
    if v.lost:
        v.problems.append(f"{v.lost} valid row(s) never reached the service")
    if v.doubled_beyond:
        v.problems.append(f"{v.doubled_beyond} row(s) doubled beyond the bound of {bound_rows}")
    for f in h.files:
        reports = h.reports.get(f.name, [])
        if not reports:
            v.problems.append(f"{f.name}: no report")
            continue
        if not all(r.get("rows", {}).get("balanced") for r in reports):
            v.problems.append(f"{f.name}: a report does not balance")
        rows = reports[-1].get("rows", {})
        # a rerun of a finished file lists nothing again: the run that rejected the rows listed them
        listed = {i.get("row") for r in reports for i in r.get("issues", {}).get("items", []) if i.get("message")}
        missing = [r for r in f.invalid if r not in listed]
        if missing or rows.get("rejected", 0) != len(f.invalid):
            v.problems.append(f"{f.name}: invalid row(s) {missing} not reported with a reason")
        if h.path == "function":
            where = h.placement.get(f.name, [])
            if sorted(where) != ["processed"] and sorted(where) != ["failed"]:
                v.problems.append(f"{f.name}: ends in {sorted(where)}, not exactly one of processed/failed")
    if h.leased:
        v.problems.append(f"left leased: {h.leased}")
    secrets_and_values = [SECRET] + [value for f in h.files for value in f.values]
    leaked = sorted({s for s in secrets_and_values for line in h.logs if s in line})
    if leaked:
        v.problems.append(f"{len(leaked)} secret/row value(s) in the logs")
    v.problems += h.errors
    return v


# -- the environment: the emulator, Azurite, captured logs ------------------------------------------
class Rig:
    def __init__(self, workdir: Path, *, function: bool = True) -> None:
        from hrconnector_core import ingestion
        from hrconnector_core.emulator import Emulator, EmulatorState
        from hrconnector_core.emulator.azurite import Azurite

        self._saved_env = dict(os.environ)
        self._saved_defaults = ingestion.RetryPolicy.__init__.__defaults__
        self._saved_level = logging.getLogger().level
        ingestion.RetryPolicy.__init__.__defaults__ = FAST_RETRY_DEFAULTS  # campaign speed only
        self.workdir = workdir
        state = EmulatorState()
        state.register_app(TENANT, APP_ID, SECRET)
        # The Function's identity: its own client id per rig, since the product keeps one credential
        # per client id for the process's life (a test session must not get this rig's).
        self.identity = "ca000000-0000-4000-8000-" + uuid.uuid4().hex[:12]
        state.register_managed_identity(self.identity, TENANT)
        self.emulator = Emulator(state=state, ca_path=workdir / "ca.pem", data_dir=workdir / "data")
        self.emulator.__enter__()
        os.environ["REQUESTS_CA_BUNDLE"] = str(self.emulator.ca_path)
        self.azurite = Azurite(REPO) if function else None
        if self.azurite is not None:
            self.azurite.__enter__()
        self.lines: list[str] = []
        self._handler = _ListHandler(self.lines)
        self._handler.setLevel(logging.INFO)  # what the Functions worker forwards
        root = logging.getLogger()
        root.addHandler(self._handler)
        root.setLevel(logging.INFO)
        self.edge = LostAnswers()
        self.edge.install()

    def close(self) -> None:
        """Everything as it was: the campaign may run inside a test session."""
        from hrconnector_core import ingestion

        self.edge.uninstall()
        ingestion.RetryPolicy.__init__.__defaults__ = self._saved_defaults
        os.environ.clear()
        os.environ.update(self._saved_env)
        logging.getLogger().removeHandler(self._handler)
        logging.getLogger().setLevel(self._saved_level)
        if self.azurite is not None:
            self.azurite.__exit__(None, None, None)
        self.emulator.__exit__(None, None, None)

    def new_job(self) -> str:
        job = str(uuid.uuid4())
        self.emulator.state.register_job(job, APP_ID)
        return job

    def set_faults(self, rng: random.Random, h: History, seed: int) -> None:
        quiet = rng.random() < 0.25
        f = {
            "rate_429": 0.0 if quiet else rng.choice([0.0, 0.05, 0.15]),
            "rate_503": 0.0 if quiet else rng.choice([0.0, 0.05, 0.15]),
            "rate_drop": 0.0 if quiet else rng.choice([0.0, 0.05, 0.1]),
            "latency_ms": rng.choice([0, 0, 20, 80]),
            "retry_after_seconds": rng.choice([0, 1]) if rng.random() < 0.3 else 0,
        }
        self.emulator.state.set_faults(**f, seed=seed)
        h.faults["429"] += f["rate_429"] > 0
        h.faults["503"] += f["rate_503"] > 0
        h.faults["drop"] += f["rate_drop"] > 0
        h.faults["latency"] += f["latency_ms"] > 0

    def calm(self) -> None:
        self.emulator.state.set_faults(
            rate_429=0, rate_503=0, rate_drop=0, latency_ms=0, bandwidth_bytes_per_s=0, retry_after_seconds=1, seed=None
        )
        self.edge.rate = 0.0


class _ListHandler(logging.Handler):
    def __init__(self, lines: list[str]) -> None:
        super().__init__()
        self.lines = lines

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.lines.append(self.format(record) + " " + json.dumps(record.__dict__, default=str))
        except Exception:
            self.lines.append(str(record.msg))


class LostAnswers:
    """At the requests transport: after the service accepted an upload, drop its answer (with
    probability `rate`), so the client sees a dropped connection for rows that did arrive."""

    def __init__(self) -> None:
        self.rate = 0.0
        self.rng = random.Random(0)
        self.lost = 0
        self.ledger: str | None = None
        self._lock = threading.Lock()
        self._original: Any = None

    def install(self) -> None:
        import requests
        from requests.adapters import HTTPAdapter

        self._original = HTTPAdapter.send
        edge = self

        def send(adapter: Any, request: Any, *args: Any, **kwargs: Any) -> Any:
            response = edge._original(adapter, request, *args, **kwargs)
            if request.method == "POST" and (request.url or "").split("?")[0].endswith("/api/signals"):
                with edge._lock:
                    lose = response.status_code == 200 and edge.rng.random() < edge.rate
                    edge.lost += lose
                if lose:
                    if edge.ledger is not None:  # written at once: a process killed later still counts it
                        with open(edge.ledger, "a") as handle:
                            handle.write("lost\n")
                    response.close()
                    raise requests.ConnectionError("campaign: the answer was lost after the service accepted")
            return response

        HTTPAdapter.send = send  # type: ignore[method-assign,assignment]

    def uninstall(self) -> None:
        from requests.adapters import HTTPAdapter

        if self._original is not None:
            HTTPAdapter.send = self._original  # type: ignore[method-assign]


# The CLI under the campaign: the real entry point, with the campaign's retry delays and lost answers.
CLI_WRAPPER = """
import os, sys
from benchmarks.fault_campaign import FAST_RETRY_DEFAULTS, LostAnswers
from hrconnector_core import ingestion
ingestion.RetryPolicy.__init__.__defaults__ = FAST_RETRY_DEFAULTS
edge = LostAnswers(); edge.rate = float(os.environ["CAMPAIGN_LOST_RATE"])
edge.rng.seed(int(os.environ["CAMPAIGN_SEED"])); edge.ledger = os.environ["CAMPAIGN_LOST_FILE"]; edge.install()
from hrconnector_core.cli import main
sys.argv = ["hrconnector", *sys.argv[1:]]
raise SystemExit(main())
"""


# -- the CLI path -----------------------------------------------------------------------------------
def run_cli_history(rig: Rig, h: History, rng: random.Random) -> None:
    job = rig.new_job()
    tmp = Path(tempfile.mkdtemp(dir=rig.workdir))
    spec = make_file(rng, "hr.csv", f"s{h.seed}")
    h.files.append(spec)
    path = tmp / spec.name
    path.write_bytes(spec.data)
    rig.set_faults(rng, h, h.seed)
    lost_rate = rng.choice([0.0, 0.0, 0.2])
    h.faults["lost-response-window"] += lost_rate > 0
    kills = rng.choice([0, 1, 1, 2])
    args = [
        "upload", "--tenant-id", TENANT, "--app-id", APP_ID, "--app-secret-env", "HR_CAMPAIGN_SECRET",
        "--job-id", job, "--file", str(path), "--authority-host", rig.emulator.url,
        "--ingestion-url", rig.emulator.url, "--state-dir", str(tmp / "state"),
        "--records-per-call", str(h.records_per_call), "--max-concurrency", str(h.max_concurrency),
        "--report", str(tmp / "report.json"), "--rejected", str(tmp / "rejected.csv"),
    ]  # fmt: skip
    env = dict(os.environ) | {
        "HR_CAMPAIGN_SECRET": SECRET,
        "REQUESTS_CA_BUNDLE": str(rig.emulator.ca_path),
        "PYTHONPATH": str(REPO),
        "CAMPAIGN_LOST_RATE": str(lost_rate),
        "CAMPAIGN_LOST_FILE": str(tmp / "lost.txt"),
    }
    report_path = tmp / "report.json"
    for attempt in range(12):
        env["CAMPAIGN_SEED"] = str(h.seed * 100 + attempt)
        report_path.unlink(missing_ok=True)
        proc = subprocess.Popen(
            [sys.executable, "-c", CLI_WRAPPER, *args], env=env, cwd=REPO,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )  # fmt: skip
        if attempt < kills:
            # kill at a random moment: after 0..n accepted calls, or at once
            target = len(rig.emulator.state.uploads.get(job, [])) + rng.randint(0, 3)
            _kill_after_uploads(proc, rig, job, target, h, seconds=20)
        out, err = proc.communicate(timeout=120)
        h.logs += [out.decode(errors="replace"), err.decode(errors="replace")]
        if report_path.exists():
            h.reports.setdefault(spec.name, []).append(json.loads(report_path.read_text()))
        if attempt < kills and proc.returncode != -signal.SIGKILL:
            h.faults["rerun-of-a-finished-run"] += 1
        if attempt >= kills and _complete(report_path):
            break
        if attempt >= kills:
            h.faults["rerun-after-failure"] += 1
    else:
        h.errors.append("the CLI never succeeded")
    if (tmp / "lost.txt").exists():
        h.faults["lost-response"] += len((tmp / "lost.txt").read_text().split())
    rig.calm()
    time.sleep(0.01)
    h.received = [u.rows for u in rig.emulator.state.uploads.get(job, [])]
    rejected = tmp / "rejected.csv"
    if spec.invalid and not rejected.exists():
        h.errors.append("rows were rejected but no rejected-rows file was written")


def _complete(report_path: Path) -> bool:
    """The run ended with every row uploaded or set aside (exit 1 with rejected rows is complete)."""
    if not report_path.exists():
        return False
    report = json.loads(report_path.read_text())
    return not report.get("error") and report["rows"]["not_uploaded"] == 0 and report["rows"]["balanced"]


# -- the Function path ------------------------------------------------------------------------------
BLOB_FUNCTION = "hr_file_arrived"


def function_env(rig: Rig, job: str, h: History) -> dict[str, str]:
    from hrconnector_core.emulator.host import local_settings

    assert rig.azurite is not None
    suffix = uuid.uuid4().hex[:8]
    secret_name = f"hr-app-secret-{suffix}"
    rig.emulator.state.set_secret(secret_name, SECRET)
    env = local_settings(
        rig.azurite.connection_string, rig.emulator, connector="main", job_id=job, tenant_id=TENANT,
        app_id=APP_ID, identity=rig.identity, secret_name=secret_name,
    ) | {
        "HR_INCOMING_CONTAINER": f"in-{suffix}", "HR_PROCESSED_CONTAINER": f"processed-{suffix}",
        "HR_REPORTS_CONTAINER": f"reports-{suffix}", "HR_FAILED_CONTAINER": f"failed-{suffix}",
        "HR_STATE_CONTAINER": f"state-{suffix}", "HR_LEASE_SECONDS": "15", "HR_SWEEP_AFTER_MINUTES": "1",
        "HR_RECORDS_PER_CALL": str(h.records_per_call), "HR_MAX_CONCURRENCY": str(h.max_concurrency),
    }  # fmt: skip
    os.environ.update(env)
    return env


def run_function_history(
    rig: Rig,
    h: History,
    rng: random.Random,
    *,
    files: int | None = None,
    lease_breaks: bool = True,
    kill_worker: bool = False,
) -> float:
    """Returns the seconds the invokers took (for files per minute)."""
    from azure.core.exceptions import HttpResponseError
    from azure.storage.blob import BlobLeaseClient

    from hrconnector_core.emulator.host import invoke_blob_trigger
    from hrconnector_core.service import HRConnectorService, utc_now
    from hrconnector_core.settings import Settings

    job = rig.new_job()
    function_env(rig, job, h)
    settings = Settings.from_env()
    service = HRConnectorService(settings)
    service.ensure_containers()
    count = files if files is not None else rng.randint(1, 3)
    for i in range(count):
        spec = make_file(rng, f"main/f{i}.csv", f"s{h.seed}f{i}")
        h.files.append(spec)
        service.incoming.upload_blob(spec.name, spec.data, overwrite=True)
    if files is None:
        rig.set_faults(rng, h, h.seed)
        rig.edge.rate = rng.choice([0.0, 0.0, 0.15])
        rig.edge.rng.seed(h.seed)
    lost_before = rig.edge.lost
    invokers = rng.randint(1, 4) if files is None else 4
    deliveries = [f.name for f in h.files for _ in range(rng.choice([1, 2, 3]) if files is None else 2)]
    rng.shuffle(deliveries)
    h.faults["duplicate-delivery"] += len(deliveries) - len(h.files)
    h.faults["concurrent-invokers"] += invokers > 1
    sweep = rng.random() < 0.4 if files is None else True
    h.faults["timer-sweep"] += sweep
    break_lease = files is None and rng.random() < 0.3 and lease_breaks
    errors: list[str] = []
    queue = list(deliveries)
    lock = threading.Lock()
    incoming = settings.containers.incoming

    def invoker() -> None:
        while True:
            with lock:
                if not queue:
                    return
                name = queue.pop()
            try:
                invoke_blob_trigger(BLOB_FUNCTION, incoming, name)
            except Exception as exc:
                errors.append(type(exc).__name__)

    def breaker() -> None:
        """Break the lease of a file's state once its first chunk is at the service."""
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if rig.emulator.state.uploads.get(job):
                for blob in service.state.list_blobs(include=[]):
                    client = service.state.get_blob_client(blob.name)
                    try:
                        if client.get_blob_properties().lease.state == "leased":
                            BlobLeaseClient(client).break_lease(lease_break_period=0)
                            h.faults["lease-broken"] += 1
                            return
                    except HttpResponseError:  # gone or no longer leased: try the next
                        continue
            time.sleep(0.005)

    if kill_worker:
        kill_a_worker(rig, h, job, incoming, h.files[0].name, random.Random(h.seed + 1_000_000))
    started = time.monotonic()
    threads = [threading.Thread(target=invoker, name=f"invoker-{i}") for i in range(invokers)]
    if sweep:
        # the timer as it runs two minutes later (the service's injected clock): every file is due
        later = HRConnectorService(settings, clock=lambda: utc_now() + timedelta(minutes=2))
        threads.append(threading.Thread(target=lambda: _swallow(errors, later.run_schedule), name="timer"))
    if break_lease:
        threads.append(threading.Thread(target=breaker, name="breaker"))
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    took = time.monotonic() - started
    h.faults["invocation-error"] += len(errors)
    rig.calm()
    # Late deliveries and the host's retries: whatever is left in incoming is delivered again,
    # with leases a broken or dead run left broken (what their lapse would do).
    for _ in range(6):
        left = [b.name for b in service.incoming.list_blobs()]
        if not left:
            break
        _break_leases(service)
        for name in left:
            h.faults["late-delivery"] += 1
            _swallow(errors, invoke_blob_trigger, BLOB_FUNCTION, incoming, name)
    h.faults["lost-response"] += rig.edge.lost - lost_before
    h.received = [u.rows for u in rig.emulator.state.uploads.get(job, [])]
    containers = {
        "incoming": service.incoming,
        "processed": service.processed,
        "failed": service.failed,
        "reports": service.reports,
    }
    names = {k: [b.name for b in c.list_blobs()] for k, c in containers.items()}
    for f in h.files:
        base = f.name.rsplit("/", 1)[1]
        for where in ("incoming", "processed", "failed"):
            held = [n for n in names[where] if n.endswith("/" + base) or n == f.name]
            h.placement.setdefault(f.name, []).extend([where] * len(held))
        for where in ("processed", "failed", "reports"):
            for n in names[where]:
                if n.endswith(base + ".report.json") or n.endswith(base + ".rejected.report.json"):
                    data = containers[where].get_blob_client(n).download_blob().readall()
                    h.reports.setdefault(f.name, []).append(json.loads(data))
    for item in service.state.list_blobs():
        lease = service.state.get_blob_client(item.name).get_blob_properties().lease
        if lease.state == "leased":
            h.leased.append(item.name)
    return took


WORKER = """
import sys
from benchmarks.fault_campaign import FAST_RETRY_DEFAULTS
from hrconnector_core import ingestion
ingestion.RetryPolicy.__init__.__defaults__ = FAST_RETRY_DEFAULTS
from hrconnector_core.emulator.host import invoke_blob_trigger
invoke_blob_trigger(*sys.argv[1:])
"""


def kill_a_worker(rig: Rig, h: History, job: str, incoming: str, name: str, rng: random.Random) -> None:
    """A Function worker process (the registered function, as the host calls it) killed with
    SIGKILL at a random moment of its run; its lease stays until it lapses."""
    env = dict(os.environ) | {"PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [sys.executable, "-c", WORKER, BLOB_FUNCTION, incoming, name],
        env=env,
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    _kill_after_uploads(proc, rig, job, rng.randint(0, 4), h, seconds=30)
    out, err = proc.communicate(timeout=60)
    h.logs += [out.decode(errors="replace"), err.decode(errors="replace")]


def _kill_after_uploads(
    proc: subprocess.Popen[bytes], rig: Any, job: str, target: int, h: Any, *, seconds: float
) -> None:
    """SIGKILL `proc` once the service holds `target` uploads of `job` (or at once if it is done)."""
    deadline = time.monotonic() + seconds
    while proc.poll() is None and time.monotonic() < deadline:
        if len(rig.emulator.state.uploads.get(job, [])) >= target:
            break
        time.sleep(0.002)
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL)
        h.faults["kill"] += 1


def _swallow(errors: list[str], fn: Any, *args: Any) -> None:
    try:
        fn(*args)
    except Exception as exc:
        errors.append(type(exc).__name__)


def _break_leases(service: Any) -> None:
    from azure.storage.blob import BlobLeaseClient

    for blob in service.state.list_blobs():
        client = service.state.get_blob_client(blob.name)
        if client.get_blob_properties().lease.state == "leased":
            BlobLeaseClient(client).break_lease(lease_break_period=0)


# -- a run ------------------------------------------------------------------------------------------
def run_history(
    rig: Rig, seed: int, *, paths: tuple[str, ...] = ("cli", "function"), lease_breaks: bool = True
) -> tuple[History, Verdict]:
    rng = random.Random(seed)
    path = paths[seed % len(paths)]
    h = History(seed, path, records_per_call=rng.choice([1, 2, 3, 5, 8, 20]), max_concurrency=rng.randint(1, 4))
    start = len(rig.lines)
    try:
        if path == "cli":
            run_cli_history(rig, h, rng)
        else:
            run_function_history(rig, h, rng, lease_breaks=lease_breaks, kill_worker=path == "function-kill")
    except Exception as exc:
        h.errors.append(f"the history raised {type(exc).__name__}: {exc}")
    finally:
        rig.calm()
    h.logs += rig.lines[start:]
    return h, check(h)


def parse_seeds(text: str) -> list[int]:
    out: list[int] = []
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        out += list(range(int(lo), int(hi or lo) + 1))
    return out


def replay(h: History) -> str:
    return f".venv/bin/python -m benchmarks.fault_campaign --seeds {h.seed} --paths {h.path} --verbose"


def table(results: list[tuple[History, Verdict]], elapsed: float) -> str:
    faults: Counter[str] = Counter()
    for h, _ in results:
        faults.update(h.faults)
    failing = [h.seed for h, v in results if not v.ok]
    rows = [
        ("histories", str(len(results))),
        (
            "  cli / function",
            f"{sum(h.path == 'cli' for h, _ in results)} / {sum(h.path.startswith('function') for h, _ in results)}",
        ),
        ("files", str(sum(len(h.files) for h, _ in results))),
        ("valid rows expected", str(sum(len(f.valid) for h, _ in results for f in h.files))),
        ("invalid rows expected in reports", str(sum(len(f.invalid) for h, _ in results for f in h.files))),
        ("rows lost", str(sum(v.lost for _, v in results))),
        ("rows doubled beyond the bound", str(sum(v.doubled_beyond for _, v in results))),
        ("documented in-flight duplicates (rows)", str(sum(v.in_flight_duplicates for _, v in results))),
        ("failing histories", str(len(failing))),
        ("wall time", f"{elapsed:.0f} s"),
    ]
    rows += [(f"fault: {k}", str(n)) for k, n in sorted(faults.items())]
    width = max(len(k) for k, _ in rows)
    lines = [f"| {k.ljust(width)} | {v} |" for k, v in rows]
    for h, v in results:
        if not v.ok:
            lines.append(f"FAIL seed {h.seed} ({h.path}): {'; '.join(v.problems)}")
            lines.append(f"  replay: {replay(h)}")
    return "\n".join(lines)


def load_run(rig: Rig, files: int) -> str:
    h = History(seed=-1, path="function", records_per_call=10, max_concurrency=2)
    start = len(rig.lines)
    took = run_function_history(rig, h, random.Random(1), files=files)
    h.logs += rig.lines[start:]
    v = check(h)
    per_minute = files / took * 60
    return (
        f"load: {files} files dropped at once, 4 invokers + timer sweep, every file delivered twice: "
        f"{took:.1f} s, {per_minute:.0f} files/min; lost {v.lost}, doubled beyond bound {v.doubled_beyond}, "
        f"in-flight duplicates {v.in_flight_duplicates}; {'OK' if v.ok else 'FAIL: ' + '; '.join(v.problems)}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", default="0-29", help="e.g. 0-299 or 5,17")
    parser.add_argument("--paths", default="cli,function")
    parser.add_argument("--load", type=int, default=0, help="also a load run with this many files")
    parser.add_argument("--verbose", action="store_true")
    parser.add_argument("--no-lease-breaks", action="store_true", help="leave out the broken-lease fault")
    args = parser.parse_args(argv)
    paths = tuple(args.paths.split(","))
    results: list[tuple[History, Verdict]] = []
    with tempfile.TemporaryDirectory() as tmp:
        rig = Rig(Path(tmp), function=any(p.startswith("function") for p in paths) or args.load > 0)
        try:
            started = time.monotonic()
            for seed in parse_seeds(args.seeds) if args.seeds else []:
                h, v = run_history(rig, seed, paths=paths, lease_breaks=not args.no_lease_breaks)
                results.append((h, v))
                if args.verbose or not v.ok:
                    print(f"seed {seed} {h.path} rpc={h.records_per_call} conc={h.max_concurrency} "
                          f"faults={dict(h.faults)} -> {'ok' if v.ok else v.problems}", flush=True)  # fmt: skip
            if results:
                print(table(results, time.monotonic() - started))
            if args.load:
                print(load_run(rig, args.load))
        finally:
            rig.close()
    return 0 if all(v.ok for _, v in results) else 1


if __name__ == "__main__":
    sys.exit(main())
