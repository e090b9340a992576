"""Races between invocations, each with two real invocations against Azurite and the emulator:
the timer's sweep meets a file its event is handling, two versions of one name in the same
second, a file replaced while its previous version uploads."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from hrconnector_core.service import HRConnectorService, utc_now
from hrconnector_core.settings import Settings

from . import network_edge
from .csvdata import HEADER, csv_bytes, rows
from .test_function_leases import Invocation, invoke, listing, uploads

NAME = "main/race.csv"


def test_the_sweep_leaves_a_file_its_event_is_handling(emulator, chunked, edge) -> None:
    env = chunked
    env.drop(NAME, csv_bytes(HEADER, rows(40)))
    paused = edge.pause(network_edge.is_upload, nth=2)
    event = Invocation(env, NAME)
    paused.wait_reached()

    timer = HRConnectorService(Settings.from_env())
    summary = timer.run_schedule(utc_now() + timedelta(hours=1))  # the file looks missed to the sweep
    assert [(o.status, o.blob) for o in summary.swept] == [("busy", NAME)]
    assert summary.failures == []
    assert uploads(emulator, env) == 1
    paused.release()
    event.join()

    assert event.error is None
    assert sorted(emulator.state.rows(env.job)) == sorted(rows(40))  # each row once
    incoming, processed, failed = listing(env)
    assert incoming == [] and failed == [] and len(processed) == 2
    (state,) = env.service.files.history(NAME)
    assert state.status == "processed" and state.runs == 1


def test_two_versions_of_a_name_in_the_same_second_keep_both_copies(emulator, function_env) -> None:
    env = function_env
    second = datetime(2026, 11, 21, 17, 15, 37, tzinfo=timezone.utc)
    service = HRConnectorService(Settings.from_env(), clock=lambda: second)  # both in this second
    first_data, second_data = csv_bytes(HEADER, rows(5)), csv_bytes(HEADER, rows(5, start=5))
    env.drop(NAME, first_data)
    assert service.process(env.service.incoming.get_blob_client(NAME)).status == "processed"
    env.drop(NAME, second_data)
    assert service.process(env.service.incoming.get_blob_client(NAME)).status == "processed"

    assert sorted(emulator.state.rows(env.job)) == sorted(rows(10))
    incoming, processed, failed = listing(env)
    assert incoming == [] and failed == []
    copies = [n for n in processed if n.endswith("/race.csv")]
    assert len(copies) == 2 and len(processed) == 4
    assert all(n.startswith("main/20261121T171537Z-") for n in copies)
    contents = {env.service.processed.get_blob_client(n).download_blob().readall() for n in copies}
    assert contents == {first_data, second_data}
    for copy in copies:
        assert env.read_json(env.settings.containers.processed, copy + ".report.json")["rows"]["uploaded"] == 5


def test_a_file_replaced_while_its_previous_version_uploads(emulator, chunked, edge) -> None:
    """Version 1 is mid-upload when version 2 replaces it and its own event is handled. Each
    version's rows arrive once; version 2 is moved; version 1's bytes are gone, so only its report
    is kept, saying what was sent."""
    env = chunked
    first, second = rows(30), rows(20, start=100)
    env.drop(NAME, csv_bytes(HEADER, first))
    paused = edge.pause(network_edge.is_upload, nth=2)
    old = Invocation(env, NAME)
    paused.wait_reached()
    env.drop(NAME, csv_bytes(HEADER, second))  # the HR system exports again, same name
    invoke(env, NAME)  # version 2's event, handled while version 1 is still uploading
    paused.release()
    old.join()

    assert old.error is None
    assert sorted(emulator.state.rows(env.job)) == sorted(first + second)
    incoming, processed, failed = listing(env)
    assert incoming == [] and failed == []
    states = {s.rows["in"]: s for s in env.service.files.history(NAME)}
    assert set(states) == {30, 20} and all(s.status == "processed" for s in states.values())
    assert processed == sorted([states[20].destination, f"{states[20].destination}.report.json",
                                f"{states[30].destination}.report.json"])  # fmt: skip
    assert states[30].note and "replaced" in states[30].note
    copy = env.service.processed.get_blob_client(states[20].destination).download_blob().readall()
    assert copy == csv_bytes(HEADER, second)
    report = env.read_json(env.settings.containers.processed, f"{states[30].destination}.report.json")
    assert report["rows"]["uploaded"] == 30
