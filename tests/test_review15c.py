"""Adversarial review of the profile clock (`accepted_at`) and the timer's late recording of a
version closed from its own run's report (`HRConnectorService._close_replaced`, "by_its_run").
Through the registered blob function and the timer, against Azurite and the HTTPS emulator;
faults and pauses at the network edge (tests/network_edge.py)."""

from __future__ import annotations

import contextlib
import json
import logging
import threading
from datetime import datetime, timedelta
from typing import Any

import pytest
from azure.storage.blob import BlobLeaseClient

from hrconnector_core.service import FileFailedError, HRConnectorService, ScheduleError, ScheduleSummary, utc_now
from hrconnector_core.settings import Settings

from . import network_edge
from .conftest import FunctionEnv
from .test_function_leases import invoke, listing, state_blob
from .test_function_state_faults import profile_csv


def timer(env: FunctionEnv, *, days: float) -> tuple[ScheduleSummary | None, ScheduleError | None]:
    """The timer `days` from now, its service's clock too (as the real one would read then)."""

    def later() -> datetime:
        return utc_now() + timedelta(days=days)

    try:
        return HRConnectorService(Settings.from_env(), clock=later).run_schedule(later()), None
    except ScheduleError as exc:
        return None, exc


@pytest.fixture
def edge(monkeypatch: pytest.MonkeyPatch) -> network_edge.NetworkEdge:
    return network_edge.install(monkeypatch)


def moved_then_lost(env: FunctionEnv, edge: network_edge.NetworkEdge, name: str, content: bytes) -> dict[str, Any]:
    """Drop `content` as `name`; its run uploads, writes its report, copies the file and then loses
    its state's lease at the delete from incoming: the file is moved, its state left unfinished.
    Returns that state (as its run left it)."""
    env.drop(name, content)
    blob = state_blob(env, name)
    held = edge.pause(network_edge.is_delete_in(env.settings.containers.incoming))
    run = threading.Thread(target=lambda: invoke(env, name), name=f"run-{name}")
    run.start()
    held.wait_reached()
    BlobLeaseClient(blob).break_lease(lease_break_period=0)
    held.release()
    run.join(60)
    assert not run.is_alive()
    state: dict[str, Any] = json.loads(blob.download_blob().readall())
    assert state["status"] != "processed" and state["destination"]
    return state


def connector(env: FunctionEnv) -> dict[str, Any]:
    found = env.service.connector_states.read("connectors/main.json")
    assert found is not None
    data: dict[str, Any] = found[0]
    return data


def test_two_versions_closed_late_in_one_sweep_record_the_newer_one(emulator, function_env, edge) -> None:
    env = function_env
    older = moved_then_lost(env, edge, "main/a-emp.csv", profile_csv("Nurse"))
    newer = moved_then_lost(env, edge, "main/b-emp.csv", profile_csv("Surgeon"))
    assert older["started_at"] <= newer["started_at"]
    assert listing(env)[0] == []

    summary, error = timer(env, days=1)
    assert error is None and summary is not None
    assert sorted(o.status for o in summary.swept) == ["replaced", "replaced"]
    data = connector(env)
    assert data["last_file"]["blob"] == "main/b-emp.csv"
    assert data["profile"]["blob"] == newer["destination"]
    summary, error = timer(env, days=15)
    assert error is None and summary is not None and summary.refreshed == ["main"]
    last = emulator.state.uploads[env.job][-1]
    assert "Surgeon" in str(last.rows) and "Nurse" not in str(last.rows)


@pytest.mark.parametrize(
    "edit",
    [
        pytest.param(lambda r: r.update(scenarios={"Employee profile": "x"}), id="scenario-not-an-object"),
        pytest.param(lambda r: r["rows"].update({"uploaded": 1e400}), id="row-count-infinite"),
        pytest.param(lambda r: r.update(scenarios=[1]), id="scenarios-a-list"),
        pytest.param(lambda r: r["rows"].update({"in": [1]}), id="row-count-a-list"),
    ],
)
def test_a_hand_edited_report_does_not_break_the_sweep(emulator, function_env, edge, edit) -> None:
    """The report a version's run wrote, edited by hand with garbage types before the timer closes
    the version: the version is closed, the connector's record is kept as it was, and the timer's
    other steps still run (here: a profile refresh due)."""
    env = function_env
    env.drop("main/first.csv", profile_csv("Nurse"))
    invoke(env, "main/first.csv")
    before = connector(env)
    state = moved_then_lost(env, edge, "main/second.csv", profile_csv("Surgeon"))
    report = env.service.processed.get_blob_client(f"{state['destination']}.report.json")
    data = json.loads(report.download_blob().readall())
    edit(data)
    report.upload_blob(json.dumps(data).encode(), overwrite=True)

    summary, error = timer(env, days=15)
    assert error is None and summary is not None
    assert [o.status for o in summary.swept] == ["replaced"]
    assert connector(env)["last_file"] == before["last_file"]
    assert summary.refreshed == ["main"]


def test_a_newer_file_recorded_in_the_second_the_older_run_started_is_kept(emulator, function_env, edge) -> None:
    """As test_a_version_closed_late_from_its_report_does_not_replace_a_newer_files_record, with
    the newer file's record made (deterministically) in the very second the older run started."""
    env = function_env
    name = "main/emp.csv"
    env.drop(name, profile_csv("Nurse"))
    blob = state_blob(env, name)
    held = edge.pause(network_edge.is_copy_into(env.settings.containers.processed))
    run = threading.Thread(target=lambda: invoke(env, name), name="older-export")
    run.start()
    held.wait_reached()
    BlobLeaseClient(blob).break_lease(lease_break_period=0)
    started = json.loads(blob.download_blob().readall())["started_at"]
    env.drop(name, profile_csv("Surgeon"))
    held.release()
    run.join(60)
    invoke(env, name)  # the newer export, recorded after the older run started ...
    found = env.service.connector_states.read("connectors/main.json")
    assert found is not None
    newer, etag = found
    assert newer["last_file"]["at"] >= started
    newer["last_file"]["at"] = started  # ... in the same second
    env.service.connector_states.write("connectors/main.json", newer, etag=etag)

    summary, error = timer(env, days=1)
    assert error is None and summary is not None and [o.status for o in summary.swept] == ["replaced"]
    data = connector(env)
    assert data["last_file"] == newer["last_file"] and data["profile"]["blob"] == newer["profile"]["blob"]


def test_an_export_resumed_days_later_is_refreshed_before_its_first_rows_expire(
    emulator, chunked, edge, monkeypatch
) -> None:
    """30 profile rows, 10 per call: the service accepts the first chunk, then refuses the rest (400):
    the file fails, its checkpoint keeps the accepted chunk. The admin drops it again 17 days later
    (the checkpoint's `accepted_at` is set back 17 days: what the first run's clock would have
    written); the resumed run sends rows 11-30. The first 10 rows expire in the service 13 days
    later: the refresh must come before, i.e. be due now (14 days since they were accepted).
    Before: the upload time was the resuming run's end, and the refresh came 14 days after it."""
    env = chunked
    name = "main/emp.csv"
    content = profile_csv("Nurse", n=30)
    uploads = iter(range(10**6))
    edge.answer(lambda r: network_edge.is_upload(r) and next(uploads) >= 1, 400)
    env.drop(name, content)
    with pytest.raises(FileFailedError):  # the blob function raises for a failed file
        invoke(env, name)
    assert len(emulator.state.rows(env.job)) == 10
    edge.rules.clear()
    (item,) = list(env.service.state.list_blobs(name_starts_with="checkpoints/"))
    checkpoint = env.service.state.get_blob_client(item.name)
    data = json.loads(checkpoint.download_blob().readall())
    assert data["accepted_at"] and len(data["completed"]) == 1
    first = datetime.fromisoformat(data["accepted_at"]) - timedelta(days=17)
    data["accepted_at"] = first.isoformat(timespec="seconds")
    checkpoint.upload_blob(json.dumps(data).encode(), overwrite=True)

    env.drop(name, content)
    invoke(env, name)
    assert len(emulator.state.rows(env.job)) == 30  # every row once
    summary, error = timer(env, days=1)  # the first 10 rows are 18 days old in the service
    assert error is None and summary is not None
    assert summary.refreshed == ["main"]


def test_a_version_recorded_late_by_the_sweep_is_refreshed_from_when_its_rows_were_accepted(
    emulator, function_env, edge, caplog
) -> None:
    """The run moved its profile export and lost its lease before recording it; the timer does not
    run again for 20 days (an outage). When it closes the version, the profile's upload time is
    when the service accepted the rows (20 days ago: due now), not the sweep's own time (which
    put the refresh 34 days after the rows were sent: 4 days after they expired)."""
    env = function_env
    caplog.set_level(logging.DEBUG)
    moved_then_lost(env, edge, "main/emp.csv", profile_csv("Nurse"))
    summary, error = timer(env, days=20)
    assert error is None and summary is not None and [o.status for o in summary.swept] == ["replaced"]
    assert summary.refreshed == ["main"]
    assert len(emulator.state.uploads[env.job]) == 2
    # no HR value (e-mail, name, role) in the connector's record or the log
    record = json.dumps(connector(env))
    logged = caplog.text + " ".join(str(r.__dict__) for r in caplog.records)
    assert "closed with its report" in logged and "re-uploaded" in logged  # the log was captured
    for value in ("p0@contoso.com", "contoso", "Nurse", "12345"):
        assert value not in record and value not in logged


def test_a_failed_report_adopted_late_records_a_failed_last_file_and_no_profile(emulator, chunked, edge) -> None:
    """The run's file fails (the service refuses its second chunk); it writes its report to
    hr-failed, copies the file there and loses its lease at the delete from incoming. The sweep
    adopts that report: the connector's last file is the failed one (as its run would have
    recorded), and a failed export never becomes the profile file refreshed from."""
    env = chunked
    uploads = iter(range(10**6))
    edge.answer(lambda r: network_edge.is_upload(r) and next(uploads) >= 1, 400)
    name = "main/emp.csv"
    env.drop(name, profile_csv("Nurse", n=30))
    blob = state_blob(env, name)
    held = edge.pause(network_edge.is_delete_in(env.settings.containers.incoming))

    def run() -> None:
        with contextlib.suppress(Exception):  # the blob function raises for a failed file
            invoke(env, name)

    thread = threading.Thread(target=run, name="failing-export")
    thread.start()
    held.wait_reached()
    BlobLeaseClient(blob).break_lease(lease_break_period=0)
    held.release()
    thread.join(60)
    assert listing(env)[0] == [] and env.service.connector_states.read("connectors/main.json") is None

    summary, error = timer(env, days=1)
    assert error is None and summary is not None and [o.status for o in summary.swept] == ["replaced"]
    data = connector(env)
    assert data["last_file"]["blob"] == name and data["last_file"]["status"] == "failed"
    assert data["last_file"]["rows"]["uploaded"] == 10 and data["last_file"]["rows"]["not_uploaded"] == 20
    assert not data.get("profile")
    summary, error = timer(env, days=15)
    assert error is None and summary is not None and summary.refreshed == []


def test_a_garbled_accepted_at_in_the_checkpoint_does_not_break_every_refresh(emulator, function_env, edge) -> None:
    """As campaign seed 35 (the run that sent every row loses its lease before recording the file),
    with the checkpoint's `accepted_at` edited by hand into garbage before the next delivery: the
    profile's upload time is unknown (due now), not the garbage, which failed the connector's
    refresh at every timer run (fromisoformat)."""
    env = function_env
    name = "main/emp.csv"
    env.drop(name, profile_csv("Nurse"))
    held = edge.pause(network_edge.is_upload, nth=1)
    first = threading.Thread(target=lambda: invoke(env, name), name="first-run")
    first.start()
    held.wait_reached()
    BlobLeaseClient(state_blob(env, name)).break_lease(lease_break_period=0)
    held.release()
    first.join(60)
    (item,) = list(env.service.state.list_blobs(name_starts_with="checkpoints/"))
    checkpoint = env.service.state.get_blob_client(item.name)
    data = json.loads(checkpoint.download_blob().readall())
    data["accepted_at"] = "yesterday"
    checkpoint.upload_blob(json.dumps(data).encode(), overwrite=True)
    invoke(env, name)  # sends nothing: every row was accepted
    assert len(emulator.state.uploads[env.job]) == 1

    summary, error = timer(env, days=1)
    assert error is None and summary is not None and summary.refreshed == ["main"]
    summary, error = timer(env, days=2)
    assert error is None and summary is not None and summary.refreshed == []
