"""The timer and the blob function against damaged state and storage errors, and a profile refresh
racing a newer export: through the registered functions against Azurite and the emulator, with
faults injected at the network edge (tests/network_edge.py)."""

from __future__ import annotations

import csv
import io
import logging
import threading
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

import pytest
from azure.storage.blob import BlobLeaseClient

from hrconnector_core.service import PROFILE_ALERT, HRConnectorService, ScheduleError, ScheduleSummary, utc_now
from hrconnector_core.settings import Settings

from . import network_edge
from .conftest import SAMPLES, FunctionEnv
from .csvdata import HEADER, csv_bytes, rows
from .test_function_leases import invoke, listing, state_blob

NAME = "main/g.csv"


@pytest.fixture
def edge(monkeypatch: pytest.MonkeyPatch) -> network_edge.NetworkEdge:
    return network_edge.install(monkeypatch)


def profile_csv(role: str, n: int = 10) -> bytes:
    head = (SAMPLES / "employee-profile.csv").read_text().splitlines()[0].split(",")
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(head)
    for i in range(n):
        writer.writerow([f"p{i}@contoso.com", f"p{i}", "first", "last", "1 St", "", "City", "State", "12345", "Dept",
                         "Regular", role])  # fmt: skip
    return out.getvalue().encode()


def timer(env: FunctionEnv, *, days: float) -> tuple[ScheduleSummary | None, ScheduleError | None]:
    try:
        return HRConnectorService(Settings.from_env()).run_schedule(utc_now() + timedelta(days=days)), None
    except ScheduleError as exc:
        return None, exc


def run_losing_its_lease(
    env: FunctionEnv, edge: network_edge.NetworkEdge, name: str, at: Any, *, meanwhile: Any = None
) -> None:
    """A run of `name` whose state lease is broken while the request `at` matches is held at the
    network edge (`meanwhile` runs then too): it finishes that step and stops without recording."""
    blob = state_blob(env, name)
    held = edge.pause(at)
    run = threading.Thread(target=lambda: invoke(env, name), name="losing-run")
    run.start()
    held.wait_reached()
    BlobLeaseClient(blob).break_lease(lease_break_period=0)
    if meanwhile is not None:
        meanwhile()
    held.release()
    run.join(60)
    assert not run.is_alive()


def old_processed_blob(env: FunctionEnv) -> str:
    """A blob retention must delete (the timer runs 200 days ahead)."""
    env.service.processed.upload_blob("main/old/x.csv", b"a", overwrite=True)
    return "main/old/x.csv"


# -- P3: damaged state documents --------------------------------------------------------------------
def test_a_garbled_connector_state_is_started_afresh_with_a_warning(emulator, function_env, caplog) -> None:
    env = function_env
    env.service.state.upload_blob("connectors/main.json", b"{not json", overwrite=True)
    env.drop(NAME, csv_bytes(HEADER, rows(5)))
    invoke(env, NAME)  # the file is processed and the connector's state rebuilt
    assert sorted(emulator.state.rows(env.job)) == sorted(rows(5))
    incoming, processed, failed = listing(env)
    assert incoming == [] and failed == [] and len(processed) == 2
    state = env.service.connector_states.read("connectors/main.json")
    assert state is not None and state[0]["last_file"]["blob"] == NAME
    assert any("connectors/main.json is unreadable" in r.getMessage() and r.levelno == logging.WARNING
               for r in caplog.records)  # fmt: skip

    env.service.state.upload_blob("connectors/main.json", b'{"profile": [1], "last_file": "x"}', overwrite=True)
    old = old_processed_blob(env)
    summary, error = timer(env, days=200)
    assert error is None and summary is not None
    assert old not in listing(env)[1]  # retention ran


def test_a_garbled_file_state_fails_the_file_with_the_reason(emulator, function_env) -> None:
    env = function_env
    env.drop(NAME, csv_bytes(HEADER, rows(5)))
    etag = env.service.incoming.get_blob_client(NAME).get_blob_properties().etag
    env.service.state.upload_blob(env.service.files.name(NAME, etag), b"\x00garbage", overwrite=True)
    summary, error = timer(env, days=1)  # the sweep meets it: a failed file, not a crash
    assert summary is None and error is not None and "unreadable" in str(error)
    assert emulator.state.rows(env.job) == []  # nothing sent for a file whose history is unknown
    incoming, processed, failed = listing(env)
    assert incoming == [] and processed == []
    (state,) = env.service.files.history(NAME)
    assert state.status == "failed" and state.error and "unreadable" in state.error
    report = env.read_json(env.settings.containers.failed, f"{state.destination}.report.json")
    assert "unreadable" in report["error"]
    assert sorted(failed) == sorted([state.destination, f"{state.destination}.report.json"])


# -- P4: a storage error in one timer step ----------------------------------------------------------
def test_a_refused_listing_in_the_sweep_leaves_the_other_steps_running(emulator, function_env, edge) -> None:
    env = function_env
    old = old_processed_blob(env)
    incoming = env.settings.containers.incoming
    edge.answer(lambda r: r.method == "GET" and urlsplit(r.url).path.endswith(f"/{incoming}")
                and "comp=list" in urlsplit(r.url).query, 403, times=1)  # fmt: skip
    _, error = timer(env, days=200)
    assert error is not None and "sweep: HttpResponseError" in str(error)
    assert old not in listing(env)[1]  # retention still ran


def test_a_refused_read_of_the_profile_copy_is_alerted_and_the_rest_runs(emulator, function_env, edge, caplog) -> None:
    env = function_env
    env.drop("main/employees.csv", (SAMPLES / "employee-profile.csv").read_bytes())
    invoke(env, "main/employees.csv")
    before = len(emulator.state.uploads[env.job])
    processed = env.settings.containers.processed
    edge.answer(lambda r: r.method == "HEAD" and f"/{processed}/" in urlsplit(r.url).path, 403, times=1)
    _, error = timer(env, days=25)
    assert error is not None and "profile refresh of connector 'main'" in str(error)
    assert len(emulator.state.uploads[env.job]) == before  # nothing re-sent
    alerts = [r for r in caplog.records if getattr(r, "hr.alert", None) == PROFILE_ALERT]
    assert len(alerts) == 1 and getattr(alerts[0], "hr.profile_days") == 25


# -- P2: a refresh of the old export on the wire while a newer one is processed ----------------------
def test_a_refresh_that_lands_after_a_newer_export_refreshes_again_from_the_newest(
    emulator, function_env, edge
) -> None:
    env = function_env
    name = "main/emp.csv"
    env.drop(name, profile_csv("Nurse"))
    invoke(env, name)
    held = edge.pause(network_edge.is_upload, nth=1)  # the timer's refresh of the Nurse export
    out: dict[str, Any] = {}

    def run_timer() -> None:
        out["result"] = timer(env, days=15)

    thread = threading.Thread(target=run_timer, name="timer")
    thread.start()
    held.wait_reached()
    env.drop(name, profile_csv("Surgeon"))  # HR exports a change; its event is handled meanwhile
    invoke(env, name)
    held.release()
    thread.join(60)
    assert not thread.is_alive()

    summary, error = out["result"]
    assert error is None and summary.refreshed == ["main"]
    last = emulator.state.uploads[env.job][-1]
    assert "Surgeon" in str(last.rows) and "Nurse" not in str(last.rows)  # the newest values landed last
    state = env.service.connector_states.read("connectors/main.json")
    assert state is not None and state[0]["profile"]["refreshes"] == 1


# -- P6: an older profile export dropped again -------------------------------------------------------
def test_an_older_profile_export_dropped_again_does_not_become_the_file_refreshed_from(emulator, function_env) -> None:
    env = function_env
    name = "main/emp.csv"
    for role in ("Nurse", "Surgeon", "Nurse"):  # the last: the older export dropped again
        env.drop(name, profile_csv(role))
        invoke(env, name)
    uploads = emulator.state.uploads[env.job]
    assert len(uploads) == 2  # the re-drop sent nothing: its content was accepted before
    profile = env.service.connector_states.read("connectors/main.json")[0]["profile"]
    assert profile["blob"].startswith("main/") and env.service.processed.get_blob_client(profile["blob"]).exists()

    summary, error = timer(env, days=15)
    assert error is None and summary is not None and summary.refreshed == ["main"]
    last = emulator.state.uploads[env.job][-1]
    assert len(emulator.state.uploads[env.job]) == 3 and "Surgeon" in str(last.rows) and "Nurse" not in str(last.rows)


def test_a_profile_export_sent_by_a_run_that_lost_its_lease_is_not_refreshed_at_once(
    emulator, function_env, edge
) -> None:
    """Campaign seed 35: the run that sent every row loses its lease before it records the file; the
    next delivery finds them all accepted and sends nothing. The profile's upload time is when the
    service first took them (the checkpoint's `accepted_at`), not unknown: the next timer run does
    not send the file again, and the refresh still comes when due."""
    env = function_env
    name = "main/emp.csv"
    env.drop(name, profile_csv("Nurse"))
    run_losing_its_lease(env, edge, name, network_edge.is_upload)  # its only chunk
    assert listing(env)[0] == [name]  # lost its lease: the file is left for the next delivery
    invoke(env, name)  # sends nothing: every row was accepted
    assert len(emulator.state.uploads[env.job]) == 1
    profile = env.service.connector_states.read("connectors/main.json")[0]["profile"]
    assert profile["uploaded_at"] is not None

    summary, error = timer(env, days=1)
    assert error is None and summary is not None and summary.refreshed == []
    assert len(emulator.state.uploads[env.job]) == 1
    summary, error = timer(env, days=15)
    assert error is None and summary is not None and summary.refreshed == ["main"]


def test_a_profile_export_moved_by_a_run_that_then_lost_its_lease_becomes_the_file_refreshed_from(
    emulator, function_env, edge
) -> None:
    """The newer export's run moves it to hr-processed, then loses its lease before it records the
    file: the timer closes its state from its report and records it as the connector's latest
    profile file, so the refresh sends the newer values, never the previous export's again."""
    env = function_env
    name = "main/emp.csv"
    env.drop(name, profile_csv("Nurse"))
    invoke(env, name)
    env.drop(name, profile_csv("Surgeon"))
    run_losing_its_lease(env, edge, name, network_edge.is_delete_in(env.settings.containers.incoming))
    assert listing(env)[0] == []  # moved, but its state could not be finished

    summary, error = timer(env, days=1)
    assert error is None and summary is not None and summary.refreshed == []
    assert [o.status for o in summary.swept] == ["replaced"]
    data = env.service.connector_states.read("connectors/main.json")[0]
    assert data["last_file"]["destination"] == data["profile"]["blob"] == summary.swept[0].destination
    summary, error = timer(env, days=15)
    assert error is None and summary is not None and summary.refreshed == ["main"]
    last = emulator.state.uploads[env.job][-1]
    assert "Surgeon" in str(last.rows) and "Nurse" not in str(last.rows)


def test_a_version_closed_late_from_its_report_does_not_replace_a_newer_files_record(
    emulator, function_env, edge
) -> None:
    """The run loses its lease while it copies its file, which is then replaced; the newer export
    is processed and recorded first. When the timer closes the older version from its report, the
    connector's last file and profile stay the newer export's."""
    env = function_env
    name = "main/emp.csv"
    env.drop(name, profile_csv("Nurse"))
    newer_export = lambda: env.drop(name, profile_csv("Surgeon"))  # noqa: E731
    run_losing_its_lease(
        env, edge, name, network_edge.is_copy_into(env.settings.containers.processed), meanwhile=newer_export
    )
    invoke(env, name)  # the newer export, recorded
    newer = env.service.connector_states.read("connectors/main.json")[0]

    summary, error = timer(env, days=1)
    assert error is None and summary is not None and [o.status for o in summary.swept] == ["replaced"]
    data = env.service.connector_states.read("connectors/main.json")[0]
    assert data["last_file"] == newer["last_file"] and data["profile"]["blob"] == newer["profile"]["blob"]


def test_a_newer_export_uploading_while_a_refresh_finishes_is_refreshed_at_the_next_timer(
    emulator, function_env, edge
) -> None:
    """The newer export's rows are on the wire while the refresh of the older one completes (and
    re-checks: still the older one recorded): the older rows may land last, so the newer file is
    recorded as due and the next timer run refreshes it."""
    env = function_env
    name = "main/emp.csv"
    env.drop(name, profile_csv("Nurse"))
    invoke(env, name)
    held = edge.pause(network_edge.is_upload, nth=1)  # the newer export's upload
    env.drop(name, profile_csv("Surgeon"))
    newer = threading.Thread(target=invoke, args=(env, name), name="newer-export")
    newer.start()
    held.wait_reached()
    summary, error = timer(env, days=15)  # the refresh of the Nurse export completes meanwhile
    assert error is None and summary is not None and summary.refreshed == ["main"]
    held.release()
    newer.join(60)
    assert not newer.is_alive()
    profile = env.service.connector_states.read("connectors/main.json")[0]["profile"]
    assert profile["uploaded_at"] is None  # due at once

    summary, error = timer(env, days=15.5)
    assert error is None and summary is not None and summary.refreshed == ["main"]
    last = emulator.state.uploads[env.job][-1]
    assert "Surgeon" in str(last.rows) and "Nurse" not in str(last.rows)
