"""The registered functions, called as the host would, against Azurite and the emulator."""

from __future__ import annotations

import logging
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from datetime import timedelta

import azurefunctions.extensions.bindings.blob as blob_ext
import pytest
import trustme
from azure.storage.blob import BlobLeaseClient
from azurefunctions.extensions.bindings.blob.blobClientConverter import BlobClientConverter

from hrconnector_core.emulator.host import invoke_blob_trigger, invoke_timer, registered_functions, trigger
from hrconnector_core.service import FileFailedError, HRConnectorService, ScheduleError, utc_now
from hrconnector_core.settings import Settings

from .conftest import APP_ID, OTHER_APP_ID, REPO, SAMPLES, SECRET, TENANT, FunctionEnv
from .csvdata import HEADER, csv_bytes, parse, rows

BLOB_FUNCTION = "hr_file_arrived"
TIMER_FUNCTION = "hr_schedule"


def rows_of(data: bytes) -> list[list[str]]:
    return parse(data)[1:]


def drop_and_invoke(env: FunctionEnv, name: str, data: bytes) -> None:
    env.drop(name, data)
    invoke_blob_trigger(BLOB_FUNCTION, env.settings.containers.incoming, name)


# -- bindings ---------------------------------------------------------------------------------------
def test_blob_trigger_binding_is_event_grid_with_identity_connection() -> None:
    function = registered_functions()[BLOB_FUNCTION]
    binding = trigger(function).get_dict_repr()
    assert binding["type"] == "blobTrigger"
    assert binding["path"] == "%HR_INCOMING_CONTAINER%/{name}"
    assert binding["connection"] == "HR_STORAGE"  # a prefix: HR_STORAGE__blobServiceUri, __credential, __clientId
    assert binding["source"] == "EventGrid"
    # The SDK-type binding: the worker streams through a BlobClient instead of loading the bytes.
    annotation = function.get_user_function().__annotations__[binding["name"]]
    assert annotation is blob_ext.BlobClient
    assert BlobClientConverter.check_input_type_annotation(annotation)


def test_timer_binding_reads_its_schedule_from_a_setting() -> None:
    binding = trigger(registered_functions()[TIMER_FUNCTION]).get_dict_repr()
    assert binding["type"] == "timerTrigger"
    assert binding["schedule"] == "%HR_SCHEDULE%"
    assert binding["runOnStartup"] is False


# -- one file -----------------------------------------------------------------------------------------
def test_a_dropped_file_is_uploaded_reported_and_moved(emulator, function_env: FunctionEnv) -> None:
    env = function_env
    data = (SAMPLES / "resignation.csv").read_bytes()
    drop_and_invoke(env, "main/resignation.csv", data)

    assert emulator.state.rows(env.job) == rows_of(data)
    names = env.settings.containers
    listing = env.listing()
    assert listing[names.incoming] == []
    assert listing[names.failed] == []
    assert listing[names.reports] == []  # no rejected rows
    moved = [n for n in listing[names.processed] if n.endswith("/resignation.csv")]
    assert len(moved) == 1 and moved[0].startswith("main/")
    assert listing[names.processed] == [moved[0], moved[0] + ".report.json"]
    copy = env.service.processed.get_blob_client(moved[0]).download_blob().readall()
    assert copy == data
    report = env.read_json(names.processed, moved[0] + ".report.json")
    assert report["status"] == "succeeded"
    assert report["rows"]["uploaded"] == len(rows_of(data))
    assert report["job_id"] == env.job
    states = env.service.files.history("main/resignation.csv")
    assert [s.status for s in states] == ["processed"]
    assert states[0].destination == moved[0] and states[0].runs == 1


def test_rejected_rows_go_to_the_reports_container(emulator, function_env: FunctionEnv) -> None:
    env = function_env
    good, bad = rows(2, start=1)
    bad[0] = "not-an-email"
    data = csv_bytes(HEADER, [good, bad])
    drop_and_invoke(env, "main/mixed.csv", data)
    assert emulator.state.rows(env.job) == [rows_of(data)[0]]
    reports = env.listing()[env.settings.containers.reports]
    assert [n.rsplit("/", 1)[1] for n in reports] == ["mixed.csv.rejected.csv", "mixed.csv.rejected.report.json"]
    rejected = env.service.reports.get_blob_client(reports[0]).download_blob().readall().decode()
    assert "not-an-email" in rejected and good[0] not in rejected
    report = env.read_json(env.settings.containers.reports, reports[1])
    assert report["rows"]["rejected"] == 1 and report["rows"]["uploaded"] == 1
    assert "not-an-email" not in str(report)


def test_the_same_event_three_times_uploads_once(emulator, function_env: FunctionEnv) -> None:
    env = function_env
    data = (SAMPLES / "resignation.csv").read_bytes()
    env.drop("main/again.csv", data)
    for _ in range(3):
        invoke_blob_trigger(BLOB_FUNCTION, env.settings.containers.incoming, "main/again.csv")
    assert emulator.state.rows(env.job) == rows_of(data)
    assert len(emulator.state.uploads[env.job]) == 1


def test_two_concurrent_invocations_upload_once(emulator, function_env: FunctionEnv, caplog) -> None:
    """Two invocations for one file version start together; the one that claims the file is held
    inside its upload by the emulator (the network edge) until the other has finished, so the
    overlap is certain, not a matter of latency."""
    env = function_env
    caplog.set_level(logging.INFO, logger="hrconnector_core")
    data = csv_bytes(HEADER, rows(40))
    env.drop("main/race.csv", data)
    hold = emulator.state.hold_next_upload()
    start = threading.Barrier(2)
    finished: queue.Queue[str] = queue.Queue()
    errors: list[BaseException] = []

    def invoke() -> None:
        start.wait()
        try:
            invoke_blob_trigger(BLOB_FUNCTION, env.settings.containers.incoming, "main/race.csv")
        except BaseException as exc:
            errors.append(exc)
        finally:
            finished.put(threading.current_thread().name)

    threads = {name: threading.Thread(target=invoke, name=name) for name in ("first", "second")}
    try:
        for t in threads.values():
            t.start()
        assert hold.arrived.wait(60), "no invocation reached the service"
        other = finished.get(timeout=60)  # the one not held ends while the other is mid-upload
        assert emulator.state.rows(env.job) == []  # the held call has recorded nothing yet
        assert env.listing()[env.settings.containers.incoming] == ["main/race.csv"]
    finally:
        hold.release()
        for t in threads.values():
            t.join(timeout=60)
    assert errors == []
    worked = next(name for name in threads if name != other)

    by_thread = {n: [r.getMessage() for r in caplog.records if r.threadName == n] for n in threads}
    assert any("another run is processing this file" in m for m in by_thread[other])
    assert not any("rows uploaded" in m for m in by_thread[other])
    assert any("rows uploaded" in m for m in by_thread[worked])
    assert Counter(map(tuple, emulator.state.rows(env.job))) == Counter(map(tuple, rows_of(data)))
    assert len(emulator.state.uploads[env.job]) == 1
    (state,) = env.service.files.history("main/race.csv")
    assert (state.status, state.runs) == ("processed", 1)


def test_service_refusal_moves_the_file_to_failed_with_the_reason(emulator, function_env: FunctionEnv) -> None:
    env = function_env
    emulator.state.register_job(env.job, OTHER_APP_ID)  # the job now belongs to another app: 403
    data = (SAMPLES / "resignation.csv").read_bytes()
    env.drop("main/refused.csv", data)
    with pytest.raises(FileFailedError, match="403"):
        invoke_blob_trigger(BLOB_FUNCTION, env.settings.containers.incoming, "main/refused.csv")
    names = env.settings.containers
    listing = env.listing()
    assert listing[names.incoming] == [] and listing[names.processed] == []
    moved, report_name = listing[names.failed]
    assert report_name == moved + ".report.json"
    report = env.read_json(names.failed, report_name)
    assert report["status"] == "failed"
    assert "jobId and corresponding appId do not match" in report["error"]
    assert env.service.failed.get_blob_client(moved).download_blob().readall() == data
    assert [s.status for s in env.service.files.history("main/refused.csv")] == ["failed"]
    assert emulator.state.rows(env.job) == []


def test_unknown_connector_folder_is_kept_in_failed(emulator, function_env: FunctionEnv) -> None:
    env = function_env
    data = (SAMPLES / "resignation.csv").read_bytes()
    with pytest.raises(FileFailedError, match="no connector for folder 'payroll'"):
        drop_and_invoke(env, "payroll/x.csv", data)
    names = env.settings.containers
    listing = env.listing()
    moved, report_name = listing[names.failed]  # the file and its report, nothing else
    assert moved.endswith("/payroll/x.csv") and report_name == moved + ".report.json"
    assert env.service.failed.get_blob_client(moved).download_blob().readall() == data
    report = env.read_json(names.failed, report_name)
    assert report["status"] == "failed" and "no connector for folder 'payroll'" in report["error"]
    assert listing[names.incoming] == [] and listing[names.processed] == []
    assert emulator.state.rows(env.job) == []


# -- crash and resume ------------------------------------------------------------------------------
def _checkpointed(env: FunctionEnv) -> dict[str, int]:
    """The completed chunks in the (only) checkpoint in the state container."""
    names = [b.name for b in env.service.state.list_blobs(name_starts_with="checkpoints/")]
    return env.read_json(env.settings.containers.state, names[0])["completed"] if names else {}


def _break_the_dead_runs_lease(env: FunctionEnv, name: str, etag: str) -> None:
    """What the lapse of the dead run's leases (its file state's and its content lock's) would do,
    without waiting for it: the real Break Lease calls."""
    state_blob = env.service.state.get_blob_client(env.service.files.name(name, etag))
    assert state_blob.get_blob_properties().lease.state == "leased"
    BlobLeaseClient(state_blob).break_lease(lease_break_period=0)
    for lock in env.service.state.list_blobs(name_starts_with="locks/"):
        BlobLeaseClient(env.service.state.get_blob_client(lock.name)).break_lease(lease_break_period=0)


@pytest.mark.slow
def test_a_crash_after_chunk_k_resumes_with_only_the_rest(emulator, function_env: FunctionEnv, monkeypatch) -> None:
    env = function_env
    monkeypatch.setenv("HR_RECORDS_PER_CALL", "10")
    monkeypatch.setenv("HR_MAX_CONCURRENCY", "1")
    data = csv_bytes(HEADER, rows(100))
    env.drop("main/big.csv", data)
    etag = env.service.incoming.get_blob_client("main/big.csv").get_blob_properties().etag
    emulator.state.set_faults(latency_ms=400)  # each call takes a while: time to kill mid-file

    # The host process dies (SIGKILL) while the function is uploading chunk k+1.
    code = "import sys; from hrconnector_core.emulator.host import invoke_blob_trigger as i; i(*sys.argv[1:])"
    incoming = env.settings.containers.incoming
    proc = subprocess.Popen(
        [sys.executable, "-c", code, BLOB_FUNCTION, incoming, "main/big.csv"],
        env={**os.environ, "PYTHONPATH": str(REPO)},
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while len(_checkpointed(env)) < 3:
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    time.sleep(0.6)  # the emulator abandons the call that was in flight
    done = len(_checkpointed(env))
    assert 3 <= done < 10
    assert len(emulator.state.uploads[env.job]) == done
    emulator.state.set_faults(latency_ms=0)

    # While the dead run's lease lasts, a redelivered event leaves the file alone.
    invoke_blob_trigger(BLOB_FUNCTION, incoming, "main/big.csv")
    assert len(emulator.state.uploads[env.job]) == done
    assert env.listing()[incoming] == ["main/big.csv"]

    _break_the_dead_runs_lease(env, "main/big.csv", etag)
    invoke_blob_trigger(BLOB_FUNCTION, incoming, "main/big.csv")
    assert sorted(emulator.state.rows(env.job)) == sorted(rows_of(data))  # every row exactly once
    assert len(emulator.state.uploads[env.job]) == 10
    (state,) = env.service.files.history("main/big.csv")
    assert state.status == "processed" and state.runs == 2
    report = env.read_json(env.settings.containers.processed, f"{state.destination}.report.json")
    assert report["rows"]["previously_uploaded"] == 10 * done
    assert report["rows"]["uploaded"] == 100 - 10 * done


# -- credentials ---------------------------------------------------------------------------------------
def test_a_rotated_key_vault_secret_is_used_without_a_restart(emulator, function_env: FunctionEnv, monkeypatch) -> None:
    env = function_env
    app = "r0r0r0r0-0000-4000-8000-" + uuid.uuid4().hex[:12]
    emulator.state.register_app(TENANT, app, SECRET)
    emulator.state.register_job(env.job, app)
    monkeypatch.setenv("HR_APP_ID", app)
    reads = lambda: emulator.state.counters.get("vault_secret_reads", 0)  # noqa: E731
    before = reads()

    drop_and_invoke(env, "main/first.csv", csv_bytes(HEADER, rows(3)))
    assert reads() == before + 1

    rotated = "rotated-" + uuid.uuid4().hex
    emulator.state.set_secret(env.secret_name, rotated)  # a new version in the vault...
    emulator.state.register_app(TENANT, app, rotated)  # ...and the old one no longer accepted
    drop_and_invoke(env, "main/second.csv", csv_bytes(HEADER, rows(3, start=3)))
    assert reads() == before + 2  # the cached value was refused, so the vault was read again
    drop_and_invoke(env, "main/third.csv", csv_bytes(HEADER, rows(3, start=6)))
    assert reads() == before + 2  # the new value is cached
    assert sorted(emulator.state.rows(env.job)) == sorted(rows(9))
    assert env.listing()[env.settings.containers.failed] == []


def test_a_certificate_from_key_vault(emulator, function_env: FunctionEnv, monkeypatch) -> None:
    env = function_env
    leaf = trustme.CA(key_type=trustme.KeyType.RSA).issue_cert("hr-app", key_type=trustme.KeyType.RSA)
    app = "c4c4c4c4-0000-4000-8000-" + uuid.uuid4().hex[:12]
    emulator.state.register_app(TENANT, app, certificate_pem=leaf.cert_chain_pems[0].bytes())
    emulator.state.register_job(env.job, app)
    emulator.state.set_secret(env.secret_name, leaf.private_key_and_cert_chain_pem.bytes().decode())
    monkeypatch.setenv("HR_APP_ID", app)
    monkeypatch.setenv("HR_CREDENTIAL", "key-vault-certificate")
    drop_and_invoke(env, "main/cert.csv", csv_bytes(HEADER, rows(4)))
    assert emulator.state.rows(env.job) == rows(4)


def test_no_secret_at_all_with_a_federated_credential(emulator, function_env: FunctionEnv, monkeypatch) -> None:
    env = function_env
    app = "f5f5f5f5-0000-4000-8000-" + uuid.uuid4().hex[:12]
    emulator.state.register_app(TENANT, app)  # no secret, no certificate
    emulator.state.register_job(env.job, app)
    monkeypatch.setenv("HR_APP_ID", app)
    monkeypatch.setenv("HR_CREDENTIAL", "federated")
    monkeypatch.delenv("HR_SECRET_NAME")
    reads = emulator.state.counters.get("vault_secret_reads", 0)

    with pytest.raises(FileFailedError, match="AADSTS700027"):  # the app does not trust the identity yet
        drop_and_invoke(env, "main/untrusted.csv", csv_bytes(HEADER, rows(2)))
    emulator.state.trust_managed_identity(app, env.settings.identity_client_id or "")
    drop_and_invoke(env, "main/trusted.csv", csv_bytes(HEADER, rows(2)))
    assert emulator.state.rows(env.job) == rows(2)
    assert emulator.state.counters.get("vault_secret_reads", 0) == reads  # the vault was never needed


# -- the timer ----------------------------------------------------------------------------------------
def test_the_timer_processes_files_no_event_processed(emulator, function_env: FunctionEnv, monkeypatch) -> None:
    env = function_env
    monkeypatch.setenv("HR_SWEEP_AFTER_MINUTES", "0.001")
    data = (SAMPLES / "resignation.csv").read_bytes()
    env.drop("main/missed.csv", data)  # no event arrives for it
    env.drop("main/notes.txt", b"not a CSV")
    time.sleep(0.2)
    invoke_timer(TIMER_FUNCTION)
    assert emulator.state.rows(env.job) == rows_of(data)
    listing = env.listing()
    assert listing[env.settings.containers.incoming] == ["main/notes.txt"]  # left where it is
    assert [n.rsplit("/", 1)[1] for n in listing[env.settings.containers.processed]] == [
        "missed.csv",
        "missed.csv.report.json",
    ]
    invoke_timer(TIMER_FUNCTION)  # nothing left to do
    assert len(emulator.state.uploads[env.job]) == 1


def test_profile_refresh_stale_export_warning_and_retention(emulator, function_env: FunctionEnv, caplog) -> None:
    env = function_env
    profile = (SAMPLES / "employee-profile.csv").read_bytes()
    resignation = (SAMPLES / "resignation.csv").read_bytes()
    drop_and_invoke(env, "main/profile.csv", profile)
    drop_and_invoke(env, "main/resignation.csv", resignation)
    profile_rows, resignation_rows = rows_of(profile), rows_of(resignation)
    assert sorted(emulator.state.rows(env.job)) == sorted(profile_rows + resignation_rows)
    service = HRConnectorService(Settings.from_env())
    now = utc_now()
    names = env.settings.containers
    (profile_copy,) = [n for n in env.listing()[names.processed] if n.endswith("/profile.csv")]

    assert service.run_schedule(now + timedelta(days=13)).refreshed == []
    summary = service.run_schedule(now + timedelta(days=15))
    assert summary.refreshed == ["main"] and summary.stale_exports == []
    assert sorted(emulator.state.rows(env.job)) == sorted(2 * profile_rows + resignation_rows)
    refresh_reports = [n for n in env.listing()[names.reports] if "refresh-profile.csv" in n]
    assert len(refresh_reports) == 1
    assert env.read_json(names.reports, refresh_reports[0])["rows"]["uploaded"] == len(profile_rows)
    assert service.run_schedule(now + timedelta(days=20)).refreshed == []  # 5 days after the refresh

    caplog.set_level(logging.WARNING, logger="hrconnector_core")
    summary = service.run_schedule(now + timedelta(days=31))
    assert summary.stale_exports == ["main"] and summary.refreshed == ["main"]
    assert "the latest employee-profile file is 31 days old" in caplog.text

    emulator.state.register_job(env.job, OTHER_APP_ID)  # refreshes fail from now on...
    with pytest.raises(ScheduleError, match=r"profile refresh of connector 'main'.*403"):
        service.run_schedule(now + timedelta(days=52))  # ...21 days after the last upload: an alert
    alert = [r for r in caplog.records if getattr(r, "hr.alert", None) == "profile-not-refreshed"]
    assert len(alert) == 1 and getattr(alert[0], "hr.profile_days") == 21
    emulator.state.register_job(env.job, APP_ID)

    summary = service.run_schedule(now + timedelta(days=91))  # past the 90-day retention
    listing = env.listing()
    assert listing[names.processed] == [profile_copy, profile_copy + ".report.json"]  # kept for refreshes
    assert listing[names.reports] == []
    state_blobs = sorted(b.name for b in env.service.state.list_blobs())
    assert state_blobs == ["connectors/main.json"]
    assert f"{names.processed}/{profile_copy}" not in summary.deleted
    assert sorted(emulator.state.rows(env.job)) == sorted(4 * profile_rows + resignation_rows)


__all__ = ["APP_ID", "SECRET", "TENANT"]
