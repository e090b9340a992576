"""The fault campaign's checker catches the mistakes it exists for, and a short fixed-seed slice
of the campaign (real CLI processes killed with SIGKILL, the registered blob function against
Azurite with duplicate deliveries, concurrent invokers and the timer sweep) holds its invariant."""

from __future__ import annotations

import contextlib
import copy
from pathlib import Path

import pytest

from benchmarks.fault_campaign import SECRET, FileSpec, History, Rig, check, replay, run_history, table


def clean_history() -> History:
    """A Function history that checks clean: two files, one with a rejected row, one lost answer."""
    a = FileSpec(
        "main/a.csv", b"", [["a1@x.com", "1"], ["a2@x.com", "2"], ["a3@x.com", "3"]], [], ["a1@x.com", "a2@x.com"]
    )
    b = FileSpec("main/b.csv", b"", [["b1@x.com", "1"]], [3], ["b1@x.com", "bad-b2"])
    h = History(seed=7, path="function", records_per_call=2, max_concurrency=2, files=[a, b])
    h.faults["lost-response"] = 1
    h.received = [[["a1@x.com", "1"], ["a2@x.com", "2"]], [["a3@x.com", "3"]], [["b1@x.com", "1"]]]
    balanced = {"balanced": True, "rejected": 0}
    h.reports = {
        "main/a.csv": [{"rows": balanced, "issues": {"items": []}}],
        "main/b.csv": [
            {"rows": {"balanced": True, "rejected": 1}, "issues": {"items": [{"row": 3, "message": "not an e-mail"}]}}
        ],
    }
    h.placement = {"main/a.csv": ["processed"], "main/b.csv": ["processed"]}
    h.logs = ["[file=main/a.csv] chunk 0 uploaded: rows 2-3, 2 records"]
    return h


def test_the_clean_history_passes_and_a_lost_answer_duplicate_is_documented_not_doubled() -> None:
    h = clean_history()
    assert check(h).ok, check(h).problems
    h.received.append([["a3@x.com", "3"]])  # the chunk whose answer was lost, sent again
    verdict = check(h)
    assert verdict.ok and verdict.in_flight_duplicates == 1 and verdict.doubled_beyond == 0


def test_a_dropped_chunk_is_detected() -> None:
    h = clean_history()
    del h.received[1]
    verdict = check(h)
    assert verdict.lost == 1 and not verdict.ok


def test_a_doubled_chunk_beyond_the_bound_is_detected() -> None:
    h = clean_history()
    h.faults["lost-response"] = 0  # no fault allows a duplicate
    h.received.append(copy.deepcopy(h.received[0]))
    verdict = check(h)
    assert verdict.doubled_beyond == 2 and verdict.lost == 0 and not verdict.ok


def test_duplicates_beyond_max_concurrency_chunks_per_kill_are_detected() -> None:
    h = clean_history()
    h.faults["lost-response"] = 0
    h.faults["kill"] = 1
    h.max_concurrency = 1  # one kill may repeat one chunk (2 rows), not two
    h.received += [copy.deepcopy(h.received[0]), copy.deepcopy(h.received[1])]
    verdict = check(h)
    assert verdict.in_flight_duplicates == 2 and verdict.doubled_beyond == 1 and not verdict.ok


def test_a_file_moved_twice_is_detected() -> None:
    h = clean_history()
    h.placement["main/a.csv"] = ["processed", "failed"]
    assert any("main/a.csv: ends in" in p for p in check(h).problems)


def test_a_file_left_in_incoming_or_leased_is_detected() -> None:
    h = clean_history()
    h.placement["main/b.csv"] = ["incoming"]
    h.leased = ["files/main/b.csv/0x1.json"]
    problems = check(h).problems
    assert any("main/b.csv: ends in ['incoming']" in p for p in problems)
    assert any("left leased" in p for p in problems)


def test_an_invalid_row_missing_from_the_reports_is_detected() -> None:
    h = clean_history()
    h.reports["main/b.csv"][0]["issues"]["items"] = []
    assert any("invalid row(s) [3]" in p for p in check(h).problems)


def test_an_unbalanced_report_is_detected() -> None:
    h = clean_history()
    h.reports["main/a.csv"][0]["rows"]["balanced"] = False
    assert any("a report does not balance" in p for p in check(h).problems)


@pytest.mark.parametrize("leak", ["a2@x.com", "bad-b2", SECRET])
def test_a_leaked_value_or_secret_is_detected(leak: str) -> None:
    h = clean_history()
    h.logs.append(f"DEBUG something about {leak} went wrong")
    assert any("secret/row value(s) in the logs" in p for p in check(h).problems)


def test_a_failing_history_prints_its_seed_and_replay_command() -> None:
    h = clean_history()
    del h.received[0]
    text = table([(h, check(h))], 1.0)
    assert "FAIL seed 7 (function)" in text
    assert replay(h) in text and "--seeds 7 --paths function" in replay(h)


# -- the fixed-seed slice ---------------------------------------------------------------------------
SLICE = range(0, 10)  # 5 CLI histories (kills, reruns, lost answers) + 5 Function histories
# CLI histories whose kills fall while chunks are in flight at concurrency 3-4: a run that marks a
# chunk done before the service has it loses rows here (the review's mutation; the others miss it).
KILLED_IN_FLIGHT = (11, 12, 21)
KILLED_WORKERS = (2, 6)  # Function worker processes killed with SIGKILL (files without invalid rows)


@pytest.mark.slow
def test_a_fixed_seed_slice_of_the_campaign_loses_and_doubles_nothing(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    try:
        # Broken leases are left out here, and killed workers get files without invalid rows: a
        # known finding (the reasons of rejected rows are lost when the run that rejected them
        # loses its lease or dies after its last chunk) makes those fail; the campaign keeps them.
        results = [run_history(rig, seed, lease_breaks=False) for seed in SLICE]
        results += [run_history(rig, seed, paths=("cli",)) for seed in KILLED_IN_FLIGHT]
        results += [run_history(rig, seed, paths=("function-kill",)) for seed in KILLED_WORKERS]
    finally:
        rig.close()
    assert [(h.seed, v.problems) for h, v in results if not v.ok] == []
    faults = sum((h.faults for h, _ in results), start=History(0, "", 1, 1).faults)
    assert faults["kill"] >= 4 and faults["duplicate-delivery"] >= 2  # the slice does inject faults
    assert sum(len(f.valid) for h, _ in results for f in h.files) > 100


# -- the campaign's finding, pinned down --------------------------------------------------------------
def test_rejected_rows_keep_their_reasons_when_the_run_loses_its_lease_after_its_last_chunk(
    emulator, function_env, monkeypatch
) -> None:
    import threading

    from azure.storage.blob import BlobLeaseClient

    from hrconnector_core.emulator.host import invoke_blob_trigger

    from . import network_edge
    from .csvdata import HEADER, csv_bytes, rows

    env = function_env
    monkeypatch.setenv("HR_RECORDS_PER_CALL", "2")
    monkeypatch.setenv("HR_MAX_CONCURRENCY", "1")
    data = rows(5)
    data[1][0] = "not-an-email"
    env.drop("main/mixed.csv", csv_bytes(HEADER, data))
    etag = env.service.incoming.get_blob_client("main/mixed.csv").get_blob_properties().etag
    edge = network_edge.install(monkeypatch)
    last_chunk = edge.pause(network_edge.is_upload, nth=2)  # 4 valid rows: the second chunk is the last
    incoming = env.settings.containers.incoming
    first = threading.Thread(
        target=lambda: _quietly(invoke_blob_trigger, "hr_file_arrived", incoming, "main/mixed.csv")
    )
    first.start()
    last_chunk.wait_reached()
    # the run's lease lapses while its last chunk is on its way (what a stall longer than the lease does)
    state_blob = env.service.state.get_blob_client(env.service.files.name("main/mixed.csv", etag))
    BlobLeaseClient(state_blob).break_lease(lease_break_period=0)
    last_chunk.release()
    first.join()
    invoke_blob_trigger("hr_file_arrived", incoming, "main/mixed.csv")  # the redelivery

    assert sorted(emulator.state.rows(env.job)) == sorted(data[:1] + data[2:])
    reports = env.listing()[env.settings.containers.reports]
    rejected = [n for n in reports if n.endswith(".rejected.csv")]
    assert len(rejected) == 1, reports  # the invalid row and its reason are somewhere
    text = env.service.reports.get_blob_client(rejected[0]).download_blob().readall().decode()
    assert "not-an-email" in text


def _quietly(fn, *args) -> None:
    with contextlib.suppress(Exception):  # the run that lost its lease may fail; the end state is judged
        fn(*args)
