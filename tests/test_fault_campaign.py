"""The fault campaign's checker catches the mistakes it exists for, and a short fixed-seed slice
of the campaign (real CLI processes killed with SIGKILL, the registered blob function against
Azurite with duplicate deliveries, concurrent invokers and the timer sweep) holds its invariant."""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import random
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from benchmarks.fault_campaign import (
    SCENARIO_COLUMNS,
    SECRET,
    History,
    Interruption,
    Rig,
    Verdict,
    encode_file,
    encode_workbook,
    make_file,
    replay,
    run_history,
    table,
)
from benchmarks.fault_campaign import check as check_history

A = [
    ["a1@x.com", "1990-01-02T07:00:05Z", "remark ta1", "Rate-ta1"],
    ["a2@x.com", "1990-01-03T08:01:05Z", "remark ta2", "Rate-ta2"],
    ["a3@x.com", "1990-01-04T09:02:05Z", "remark ta3", "Rate-ta3"],
]
B = [
    ["Employee profile", "b1@x.com", "Firsttb1", "Lasttb1"],
    ["Employee profile", "bad-b2", "Firsttb2", "Lasttb2"],
]


STARTED, DURING = "2026-01-01T00:00:00.000+00:00", "2026-01-01T00:00:30.000+00:00"
FINISHED = "2026-01-01T00:01:00.000+00:00"


def check(h: History) -> Verdict:
    """The checker, each hand-made upload given the header it carried: its file's (the product sends
    the file's header). A test that means another header sets `h.headers` itself."""
    for call in h.received[len(h.headers) :]:
        owner = next((f for f in h.files if call and list(call[0]) in f.valid), None)
        h.headers.append(list(owner.header) if owner else [])
    h.received_at += [DURING] * (len(h.received) - len(h.received_at))  # while the run of report() ran
    return check_history(h)


def clean_history() -> History:
    """A Function history that checks clean: two files (one with a rejected row), chunks of two
    rows, and one answer lost after the service recorded its chunk (sent again: documented)."""
    a = encode_file("main/a.csv", ["EmailAddress", "EffectiveDate", "Remarks", "Rating"], copy.deepcopy(A))
    b = encode_file(
        "main/b.csv",
        ["HRScenario", "EmailAddress", "EmployeeFirstName", "EmployeeLastName"],
        copy.deepcopy(B),
        {3: ("invalid-email", "EmailAddress")},
    )
    h = History(seed=7, path="function", records_per_call=2, max_concurrency=2, files=[a, b])
    h.received = [A[0:2], A[2:3], A[2:3], B[0:1]]  # chunk a#1's first answer was lost: sent again
    h.answer_lost = [False, True, False, False]
    h.reports = {
        "main/a.csv": [report(3, uploaded=3)],
        "main/b.csv": [report(2, uploaded=1, rejected={3: "invalid-email"})],
    }
    h.placement = {"main/a.csv": ["processed"], "main/b.csv": ["processed"]}
    h.logs = ["[file=main/a.csv] chunk 0 uploaded: rows 2-3, 2 records; Employee profile: 1 valid"]
    return h


def report(rows_in: int, *, uploaded: int, rejected: dict[int, str] | None = None) -> dict[str, Any]:
    """A report as the product writes it (the fields the checker reads)."""
    rejected = rejected or {}
    items = [
        {"row": r, "column": "EmailAddress", "code": code, "message": "not an e-mail", "severity": "error"}
        for r, code in rejected.items()
    ]
    rows = {"in": rows_in, "uploaded": uploaded, "previously_uploaded": 0, "rejected": len(rejected)}
    rows |= {"skipped": 0, "not_uploaded": 0, "planned": 0, "balanced": True}
    counts = dict(Counter(rejected.values()))
    return {
        "started_at": STARTED,
        "finished_at": FINISHED,
        "status": "partial" if rejected else "succeeded",
        "rows": rows,
        "issues": {"counts": counts, "items": items},
    }


def test_the_clean_history_passes_and_a_lost_answer_duplicate_is_documented_not_doubled() -> None:
    verdict = check(clean_history())
    assert verdict.ok, verdict.problems
    assert verdict.in_flight_duplicates == 1 and verdict.doubled_beyond == 0 and verdict.rows_checked == 5


def test_a_dropped_chunk_is_detected() -> None:
    h = clean_history()
    del h.received[0], h.answer_lost[0]
    verdict = check(h)
    assert verdict.lost == 2 and not verdict.ok


def test_a_doubled_chunk_no_fault_explains_is_detected() -> None:
    h = clean_history()
    h.received.append(copy.deepcopy(A[0:2]))
    verdict = check(h)
    assert verdict.doubled_beyond == 2 and verdict.lost == 0 and not verdict.ok


# -- F2: every duplicate is explained by the evidence of one fault, per file ------------------------
def test_a_lost_answer_explains_a_copy_of_its_own_chunk_only() -> None:
    h = clean_history()
    h.received.append(copy.deepcopy(A[0:2]))  # the lost answer was chunk a#1's, not a#0's
    h.faults["lost-response"] = 3  # the old shared pool: (0 kills * 2 + 3) * 2 rows would allow it
    verdict = check(h)
    assert verdict.doubled_beyond == 2 and "main/a.csv#0" in " ".join(verdict.problems)


def test_a_double_send_that_no_kill_explains_is_detected_though_it_fits_the_pool() -> None:
    """A kill of the run of main/a.csv explains no copy of main/b.csv (another file), and no copy
    of a chunk the killed run had not sent (not at the service when it died)."""
    h = clean_history()
    h.faults["kill"] = 1  # the old pool: (1 kill * 2 + 1 lost answer) * 2 rows = 6 rows of duplicates
    h.interruptions = [Interruption("kill", "main/a.csv", completed=set(), uploads_seen=1)]
    h.received += [copy.deepcopy(B[0:1]), copy.deepcopy(A[2:3])]
    h.answer_lost += [False, False]
    verdict = check(h)
    assert verdict.doubled_beyond == 2 and not verdict.ok  # b#0, and a#1's second extra copy
    h.received.append(copy.deepcopy(A[0:2]))  # a#0 was at the service and not done when it died: documented
    h.answer_lost.append(False)
    assert check(h).doubled_beyond == 2 and check(h).in_flight_duplicates == 3


def test_a_duplicate_of_a_chunk_done_before_the_kill_is_detected() -> None:
    h = clean_history()
    h.faults["kill"] = 1
    h.interruptions = [Interruption("kill", "main/a.csv", completed={0}, uploads_seen=1)]  # a#0 recorded as done
    h.received.append(copy.deepcopy(A[0:2]))
    h.answer_lost.append(False)
    verdict = check(h)
    assert verdict.doubled_beyond == 2 and "main/a.csv#0" in " ".join(verdict.problems)


def test_a_fault_explains_at_most_max_concurrency_chunks_and_each_once() -> None:
    h = clean_history()
    h.max_concurrency = 1
    h.answer_lost = [False] * 4  # no lost answer this time: a#1's second copy needs the broken lease
    h.interruptions = [Interruption("lease-broken", "main/a.csv", completed=set())]
    h.received.append(copy.deepcopy(A[0:2]))  # a#0 and a#1 both repeated: one chunk in flight at most
    verdict = check(h)
    assert verdict.in_flight_duplicates == 2 and verdict.doubled_beyond == 1 and not verdict.ok
    h.max_concurrency = 2
    assert check(h).ok
    h.received.append(copy.deepcopy(A[0:2]))  # a#0 a third time: one break repeats a chunk once
    assert check(h).doubled_beyond == 2


# -- F5: reports recomputed from the file -----------------------------------------------------------
def test_report_counts_that_do_not_match_the_file_are_detected() -> None:
    h = clean_history()
    h.reports["main/a.csv"][0]["rows"] |= {"in": 4, "uploaded": 4}  # balanced, but the file has 3 rows
    assert any("main/a.csv: report 1 counts" in p for p in check(h).problems)


def test_a_rejection_for_a_reason_other_than_the_rows_mistake_is_detected() -> None:
    h = clean_history()
    h.reports["main/b.csv"][0] = report(2, uploaded=1, rejected={3: "invalid-date"})
    problems = check(h).problems
    assert any("rejects row 3 for invalid-date" in p and "invalid-email" in p for p in problems)
    assert any("by reason" in p for p in problems)


def test_rejections_without_their_count_by_reason_are_detected() -> None:
    h = clean_history()
    h.reports["main/b.csv"][0]["issues"]["counts"] = {}
    assert any("counts rejections by reason {}" in p for p in check(h).problems)


def test_a_valid_row_reported_as_rejected_is_detected() -> None:
    h = clean_history()
    h.reports["main/b.csv"][0]["issues"]["items"].append(
        {"row": 2, "column": "EmailAddress", "code": "invalid-email", "message": "x", "severity": "error"}
    )
    assert any("rejects row 2, a valid row" in p for p in check(h).problems)


def test_a_report_listing_a_row_the_file_does_not_have_is_detected() -> None:
    h = clean_history()
    h.reports["main/b.csv"][0]["issues"]["items"][0]["row"] = 9
    problems = check(h).problems
    assert any("lists row 9, which the file does not have" in p for p in problems)
    assert any("invalid row(s) [3] not reported" in p for p in problems)


def test_an_invalid_row_missing_from_the_reports_is_detected() -> None:
    h = clean_history()
    h.reports["main/b.csv"][0]["issues"]["items"] = []
    assert any("invalid row(s) [3]" in p for p in check(h).problems)


def test_an_unbalanced_report_is_detected() -> None:
    h = clean_history()
    h.reports["main/a.csv"][0]["rows"]["balanced"] = False
    assert any("does not balance" in p for p in check(h).problems)


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


# -- F6: no value of any row, and no secret, in any log ---------------------------------------------
@pytest.mark.parametrize(
    "leak",
    [
        "a2@x.com",  # an e-mail address
        "1990-01-03",  # the day of a date (a date-only value), without its time
        "1990-01-04T09:02:05Z",  # a date
        "Firsttb1",  # a name
        "Rate-ta3",  # a rating
        "bad-b2",  # a value of a rejected row
        SECRET,
        "emu.token-of-the-history",
    ],
)
def test_a_leaked_value_or_secret_is_detected(leak: str) -> None:
    h = clean_history()
    h.tokens = ["emu.token-of-the-history"]
    h.logs.append(f"DEBUG something about {leak} went wrong")
    assert any("secret/row value(s) in the logs or reports" in p for p in check(h).problems)


def test_a_value_in_a_report_is_detected() -> None:
    h = clean_history()
    h.reports["main/b.csv"][0]["issues"]["items"][0]["message"] = "not an e-mail: bad-b2"
    assert any("secret/row value(s) in the logs or reports" in p for p in check(h).problems)


def test_every_generated_value_is_unique_in_a_history_and_scenario_names_are_not_values() -> None:
    rng = random.Random(3)
    files = [make_file(rng, f"main/f{i}.csv", f"s3f{i}", first=i * 41, seed=3) for i in range(40)]
    values = [v for f in files for row in f.records for v in row if v and v not in SCENARIO_COLUMNS]
    assert len(values) > 500 and len(values) == len(set(values))
    assert any(len(f.header) > 4 for f in files) and any(len(f.header) == 4 for f in files)  # both shapes
    assert Counter(code for f in files for code, _ in f.faults.values()).keys() >= {
        "invalid-email", "invalid-date", "required-missing", "too-long", "too-many-fields", "unknown-scenario"
    }  # fmt: skip


# -- workbooks: the rows expected are the cells as the documentation says they are read ---------------
def test_a_workbooks_rows_are_expected_as_its_cells_are_read() -> None:
    h = clean_history()
    rows = [["w1@x.com", "1990-02-01T07:00:05Z", "two\nlines tw1", "Rate-tw1"]]
    h.files[0] = encode_workbook("main/a.xlsx", ["EmailAddress", "EffectiveDate", "Remarks", "Rating"], rows)
    assert h.files[0].records == [["w1@x.com", "1990-02-01T07:00:05", "two\nlines tw1", "Rate-tw1"]]  # a datetime cell
    h.received, h.answer_lost = [copy.deepcopy(h.files[0].records), B[0:1]], [False, False]
    h.reports = {"main/a.xlsx": [report(1, uploaded=1)], "main/b.csv": h.reports["main/b.csv"]}
    h.placement = {"main/a.xlsx": ["processed"], "main/b.csv": ["processed"]}
    assert check(h).ok, check(h).problems
    h.received[0] = [rows[0]]  # the date as the CSV form (with its Z): not what the cell holds
    assert check(h).lost == 1
    h.files[0].records[0][2] = "one line tw1"  # a spec the workbook does not hold
    assert any("the generated file holds" in p for p in check(h).problems)


# -- a file overwritten in hr-incoming during its upload ---------------------------------------------
C = [
    ["c1@x.com", "1990-03-02T07:00:05Z", "remark tc1", "Rate-tc1"],
    ["c2@x.com", "1990-03-03T08:01:05Z", "remark tc2", "Rate-tc2"],
]


def replaced_history() -> History:
    """main/a.csv replaced by a new version (rows C) while its run uploaded it: the old run had
    read its first two rows when the bytes changed and sent them (its report: 2 in, 2 uploaded);
    the new version arrived in full."""
    h = clean_history()
    h.files[0].replaced = True
    new = encode_file("main/a.csv", ["EmailAddress", "EffectiveDate", "Remarks", "Rating"], copy.deepcopy(C))
    new.version = 1
    h.files.append(new)
    h.received = [A[0:2], C[0:2], B[0:1]]
    h.answer_lost = [False, False, False]
    old = report(2, uploaded=2)
    h.reports = {"main/a.csv": [old], "main/a.csv@v1": [report(2, uploaded=2)], "main/b.csv": h.reports["main/b.csv"]}
    h.placement = {"main/a.csv": [], "main/a.csv@v1": ["processed"], "main/b.csv": ["processed"]}
    h.states = {"main/a.csv": "processed", "main/a.csv@v1": "processed", "main/b.csv": "processed"}
    return h


def test_a_replaced_version_is_held_to_what_its_report_says_it_sent() -> None:
    h = replaced_history()
    assert check(h).ok, check(h).problems
    h.received.append(copy.deepcopy(A[2:3]))  # the old version's unsent row sent after all
    h.answer_lost.append(False)
    verdict = check(h)
    assert verdict.doubled_beyond == 1 and any("its report says 2" in p for p in verdict.problems)
    h = replaced_history()
    h.reports["main/a.csv"][0]["rows"] |= {"in": 3, "uploaded": 3}  # says 3 sent; 2 arrived
    assert check(h).lost == 1


def test_a_replaced_versions_row_doubled_and_the_new_versions_rows_are_each_checked() -> None:
    h = replaced_history()
    h.received.append(copy.deepcopy(A[0:2]))  # the old version's chunk twice, no fault explains it
    h.answer_lost.append(False)
    assert check(h).doubled_beyond == 2
    h = replaced_history()
    h.received[1] = C[0:1]  # a row of the new version missing
    assert check(h).lost == 1


def test_a_version_left_unfinished_or_unplaced_is_detected() -> None:
    h = replaced_history()
    h.states["main/a.csv"] = "processing"
    assert any("main/a.csv: its state ends 'processing'" in p for p in check(h).problems)
    h = replaced_history()
    h.files[0].replaced = False  # not replaced: its copy must be in processed or failed
    assert any("main/a.csv: ends in []" in p for p in check(h).problems)


def test_a_replaced_version_read_part_way_lists_the_mistakes_it_read() -> None:
    h = replaced_history()
    h.files[1].replaced = True  # main/b.csv, as if replaced after its run read one row
    h.reports["main/b.csv"] = [report(1, uploaded=1)]  # read row 2 only (row 3, invalid, not read)
    h.placement["main/b.csv"] = []
    assert check(h).ok, check(h).problems
    h.reports["main/b.csv"] = [report(1, uploaded=0)]  # read one row, a valid one, and counts it nowhere
    assert any("main/b.csv: report 1 counts" in p for p in check(h).problems)


# -- F7: an empty history does not pass -------------------------------------------------------------
def test_an_empty_history_fails() -> None:
    h = clean_history()
    h.files, h.received, h.reports, h.placement = [], [], {}, {}
    assert any("an empty history" in p for p in check(h).problems)


def test_a_generator_that_writes_nothing_is_detected() -> None:
    h = clean_history()
    h.files[0].data = b""  # the spec lists rows the file does not hold
    assert any("the generated file holds 0 row(s), its spec 3" in p for p in check(h).problems)
    h = clean_history()
    for f in h.files:
        f.records, f.faults = [], {}
        f.data = b"EmailAddress\r\n"
    h.received, h.reports = [], {}
    assert any("an empty history" in p for p in check(h).problems)


def test_a_failing_history_prints_its_seed_and_replay_command() -> None:
    h = clean_history()
    del h.received[0], h.answer_lost[0]
    text = table([(h, check(h))], 1.0)
    assert "FAIL seed 7 (function)" in text
    assert replay(h) in text and "--seeds 7 --paths function" in replay(h)


# -- the fixed-seed slice ---------------------------------------------------------------------------
# CLI histories: SIGKILLs (several with chunks in flight at concurrency 3-4, where a run that
# marks a chunk done before the service has it loses rows), reruns, lost answers.
CLI_SEEDS = (0, 4, 8, 12, 16, 32, 34)
# Function histories: duplicate deliveries, concurrent invokers, the timer sweep, broken leases, lost answers.
FUNCTION_SEEDS = (3, 7, 23, 31)
WORKER_KILL_SEEDS = (3, 14)  # a Function worker process killed with SIGKILL, then the same


@pytest.mark.slow
def test_a_fixed_seed_slice_of_the_campaign_loses_and_doubles_nothing(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    try:
        results = [run_history(rig, seed, paths=("cli",)) for seed in CLI_SEEDS]
        results += [run_history(rig, seed, paths=("function",)) for seed in FUNCTION_SEEDS]
        results += [run_history(rig, seed, paths=("function-kill",)) for seed in WORKER_KILL_SEEDS]
    finally:
        rig.close()
    assert [(h.seed, h.path, v.problems) for h, v in results if not v.ok] == []

    def total(path: str, fault: str) -> int:
        return sum(h.faults[fault] for h, _ in results if h.path == path)

    # The slice does inject every fault it is for: a change that silently stops one fails here.
    assert total("cli", "kill") >= 5 and total("function-kill", "worker-kill") == 2
    assert total("cli", "lost-response") >= 2 and total("function", "lost-response") >= 3
    assert total("cli", "403-window-refusals") >= 1 and total("cli", "token-window-refusals") >= 1
    assert total("cli", "token-outage-window-failures") >= 1  # the token endpoint's 503s / unanswered calls met
    assert total("function-kill", "lost-response") >= 1
    assert total("function", "concurrent-invokers") >= 3 and total("function", "duplicate-delivery") >= 6
    assert total("function", "lease-broken") >= 1 and total("function", "timer-sweep") >= 2
    # the invokers are separate processes: several per history, and the concurrent ones distinct
    assert len({p for h, _ in results if h.path == "function" for p in h.instance_pids}) >= 3
    assert max(len(h.instance_pids) for h, _ in results if h.path == "function") >= 2
    # a file overwritten in hr-incoming while a run uploaded it, its old version's bytes gone before its copy
    assert total("function", "overwritten-during-upload") >= 1 and total("function", "replaced-before-its-copy") >= 1
    assert total("function", "checkpoint-rewritten") >= 1  # its checkpoint rewritten while a run uploaded it
    assert total("function", "checkpoint-conflict-met") >= 1  # and the run's next checkpoint write met the conflict
    met = {k: sum(h.faults[f"{k}-met"] for h, _ in results) for k in ("429", "503", "drop")}
    assert min(met.values()) >= 1, met  # the service really answered 429, 503 and dropped connections
    assert total("cli", "xlsx-files") >= 2 and total("function", "xlsx-files") >= 1  # workbooks on both paths
    kills = [(h.seed, len(h.interruptions)) for h, _ in results if h.path == "cli"]
    assert kills == [(h.seed, h.faults["kill"]) for h, _ in results if h.path == "cli"]  # evidence of each kill
    assert sum(v.in_flight_duplicates for _, v in results) > 0  # duplicates happened, each one explained
    assert sum(len(f.valid) for h, _ in results for f in h.files) > 200
    assert sum(len(f.faults) for h, _ in results for f in h.files) > 20
    assert all(any("DEBUG" in log for log in h.logs) for h, _ in results if h.path == "cli")  # --verbose


# -- the campaign's finding, pinned down --------------------------------------------------------------
def test_rejected_rows_keep_their_reasons_when_the_run_loses_its_lease_after_its_last_chunk(
    emulator, function_env, monkeypatch
) -> None:

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
    # the run's lease lapses while its last chunk is on its way (what a stall longer than the lease does)
    _run_losing_its_lease(env, last_chunk, "main/mixed.csv", etag)
    invoke_blob_trigger("hr_file_arrived", env.settings.containers.incoming, "main/mixed.csv")  # the redelivery

    assert sorted(emulator.state.rows(env.job)) == sorted(data[:1] + data[2:])
    reports = env.listing()[env.settings.containers.reports]
    rejected = [n for n in reports if n.endswith(".rejected.csv")]
    assert len(rejected) == 1, reports  # the invalid row and its reason are somewhere
    text = env.service.reports.get_blob_client(rejected[0]).download_blob().readall().decode()
    assert "not-an-email" in text


@pytest.mark.parametrize("held_chunk", [1, 2])
def test_a_version_replaced_after_its_run_lost_the_lease_still_gets_a_report(
    emulator, function_env, monkeypatch, held_chunk: int
) -> None:
    """What seed 203 met, made certain: the run's lease lapses while a chunk is held at the network
    edge (the first, or the second with two rows already at the service), a new version replaces
    the file, and the timer's sweep closes the old version: failed, with a report in hr-failed that
    counts exactly the rows the service holds of it (from the content checkpoint its state names),
    and no HR value."""
    from datetime import timedelta

    from hrconnector_core.service import utc_now

    from . import network_edge
    from .csvdata import HEADER, csv_bytes, rows

    env = function_env
    monkeypatch.setenv("HR_RECORDS_PER_CALL", "2")
    monkeypatch.setenv("HR_MAX_CONCURRENCY", "1")
    env.drop("main/f.csv", csv_bytes(HEADER, rows(5)))
    etag = env.service.incoming.get_blob_client("main/f.csv").get_blob_properties().etag
    held = network_edge.install(monkeypatch).pause(network_edge.is_upload, nth=held_chunk)
    _run_losing_its_lease(env, held, "main/f.csv", etag)
    env.drop("main/f.csv", csv_bytes(HEADER, rows(3, start=50)))  # a new version replaces it
    _quietly(env.service.run_schedule, utc_now() + timedelta(minutes=10))
    old = env.service.files.get("main/f.csv", etag)
    assert old is not None and old.status == "failed" and old.report is not None
    container, _, name = old.report.partition("/")
    assert container == env.settings.containers.failed
    raw = env.service.failed.get_blob_client(name).download_blob().readall()
    report = json.loads(raw)
    sent_of_old = [r for r in emulator.state.rows(env.job) if r in rows(5)]
    assert len(sent_of_old) == 2 * held_chunk  # the held chunk was sent after all: its answer was recorded
    assert report["status"] == "replaced" and report["rows"]["balanced"]
    assert report["rows"]["uploaded"] == report["rows"]["in"] == len(sent_of_old)
    assert report["file"]["sha256"] == hashlib.sha256(csv_bytes(HEADER, rows(5))).hexdigest()
    assert old.rows == report["rows"] and "replaced or deleted" in (old.error or "")
    assert not any(value.encode() in raw for row in rows(5) for value in row if len(value) > 3)


@pytest.mark.parametrize("lost_at", ["copy", "delete"])
def test_a_report_written_before_the_lease_was_lost_stands_when_the_sweep_closes_the_version(
    emulator, function_env, monkeypatch, lost_at: str
) -> None:
    """The run writes its report (every row sent), then loses its lease while it copies the file
    (which is then replaced) or while it deletes it (seed 27: the run had moved it): the state is
    left `processing`, and the next timer run closes the version with that report, processed,
    writing no second one to hr-failed."""
    from datetime import timedelta

    from hrconnector_core.service import utc_now

    from . import network_edge
    from .csvdata import HEADER, csv_bytes, rows

    env = function_env
    env.drop("main/f.csv", csv_bytes(HEADER, rows(5)))
    etag = env.service.incoming.get_blob_client("main/f.csv").get_blob_properties().etag
    edge = network_edge.install(monkeypatch)
    containers = env.settings.containers
    at = (
        network_edge.is_copy_into(containers.processed)
        if lost_at == "copy"
        else network_edge.is_delete_in(containers.incoming)
    )
    held = edge.pause(at)
    newer_version = lambda: env.drop("main/f.csv", csv_bytes(HEADER, rows(3, start=50)))  # noqa: E731
    _run_losing_its_lease(env, held, "main/f.csv", etag, meanwhile=newer_version if lost_at == "copy" else None)
    assert env.service.files.get("main/f.csv", etag).status == "processing"  # the run could not record its end
    _quietly(env.service.run_schedule, utc_now() + timedelta(minutes=10))
    old = env.service.files.get("main/f.csv", etag)
    assert old is not None and old.status == "processed"
    assert old.report == f"{env.settings.containers.processed}/{old.destination}.report.json"
    assert old.rows["uploaded"] == 5 and old.rows["balanced"]
    failed = [b.name for b in env.service.failed.list_blobs()]
    assert not [n for n in failed if n.startswith(old.destination)]
    moved = [b.name for b in env.service.processed.list_blobs()]
    assert (old.destination in moved) == (lost_at == "delete")  # moved before the lease was lost


def _run_losing_its_lease(env, held, name: str, etag: str, *, meanwhile=None) -> None:
    """A blob-function run of `name` held at the request `held` pauses, whose state lease is broken
    meanwhile (`meanwhile` runs then too): it finishes that request and stops without recording."""
    import threading

    from azure.storage.blob import BlobLeaseClient

    from hrconnector_core.emulator.host import invoke_blob_trigger

    incoming = env.settings.containers.incoming
    run = threading.Thread(target=lambda: _quietly(invoke_blob_trigger, "hr_file_arrived", incoming, name))
    run.start()
    held.wait_reached()
    BlobLeaseClient(env.service.state.get_blob_client(env.service.files.name(name, etag))).break_lease(
        lease_break_period=0
    )
    if meanwhile is not None:
        meanwhile()
    held.release()
    run.join()


def _quietly(fn, *args) -> None:
    with contextlib.suppress(Exception):  # the run that lost its lease may fail; the end state is judged
        fn(*args)


# -- review 15 ---------------------------------------------------------------------------------------
def test_values_under_the_wrong_column_at_the_service_are_detected() -> None:
    """Rows are compared as column -> value: the right values under swapped column names (the
    header the service got) are not the file's rows."""
    h = clean_history()
    swapped = ["EmailAddress", "EffectiveDate", "Rating", "Remarks"]
    h.headers = [swapped, *[list(h.files[0].header)] * 2, list(h.files[1].header)]
    verdict = check(h)
    assert verdict.lost == 2 and any("no file holds as valid" in p for p in verdict.problems)


def test_an_upload_without_its_header_recorded_fails() -> None:
    h = clean_history()
    check(h)
    h.headers.pop()
    assert any("without their header recorded" in p for p in check_history(h).problems)


def test_an_unexpected_invocation_error_and_a_value_in_an_exception_message_are_detected() -> None:
    h = clean_history()
    h.invocation_errors = [("RuntimeError", "Traceback ...\nRuntimeError: post-processing failed")]
    assert any("raised RuntimeError" in p for p in check(h).problems)
    h = clean_history()
    h.invocation_errors = [("FileFailedError", "FileFailedError: main/a.csv: not uploaded")]
    assert any("did not end in failed" in p for p in check(h).problems)  # every file was processed
    h.placement["main/a.csv"] = ["failed"]
    h.reports["main/a.csv"][0] |= {"status": "failed", "error": "refused"}
    h.reports["main/a.csv"][0]["rows"] |= {"uploaded": 0, "not_uploaded": 3}
    assert not any("raised" in p for p in check(h).problems)
    h.invocation_errors = [("ScheduleError", "ScheduleError: main/a.csv: not uploaded (refused)")]  # the sweep's
    assert not any("raised" in p for p in check(h).problems)
    h.invocation_errors = [("ScheduleError", "ScheduleError: sweep: cannot read the state of x: Error")]
    assert any("did not end in failed" in p for p in check(h).problems)
    h = clean_history()  # the host logs the message and traceback: a value in them is a leak
    h.invocation_errors = [("FileFailedError", "FileFailedError: payload a2@x.com,1990-01-03T08:01:05Z")]
    h.placement["main/a.csv"] = ["failed"]
    assert any("secret/row value(s)" in p for p in check(h).problems)


def test_a_report_that_calls_this_runs_uploads_previously_uploaded_is_detected() -> None:
    """The split is held against when the rows reached the service: none was there before this run."""
    h = clean_history()
    h.reports["main/a.csv"][0]["rows"] |= {"uploaded": 0, "previously_uploaded": 3}
    assert any("uploaded before it; the service had 0" in p for p in check(h).problems)
    h = clean_history()
    h.received_at = ["2025-12-31T23:59:00.000+00:00"] * 4  # all there before the run: none uploaded by it
    assert any("says it uploaded 3 row(s); 0 arrived while it ran" in p for p in check(h).problems)


def test_a_processed_file_whose_report_says_its_rows_were_not_uploaded_is_detected() -> None:
    h = clean_history()
    h.reports["main/a.csv"][0]["rows"] |= {"uploaded": 0, "not_uploaded": 3}
    assert any("main/a.csv: ends processed" in p for p in check(h).problems)


def test_a_report_status_that_contradicts_where_the_file_went_is_detected() -> None:
    h = clean_history()
    h.reports["main/a.csv"][0]["status"] = "failed"
    h.reports["main/a.csv"][0]["error"] = "the service refused the file"
    assert any("main/a.csv: ends processed, its final report says 'failed'" in p for p in check(h).problems)
    h = clean_history()
    h.placement["main/a.csv"] = ["failed"]  # every row uploaded, no error: it should have been processed
    assert any("main/a.csv: ends failed" in p for p in check(h).problems)


def test_a_later_report_that_drops_a_rejected_rows_reason_is_detected() -> None:
    """The final report of the version lists every rejected row with its reason."""
    h = clean_history()
    first = h.reports["main/b.csv"][0]
    second = copy.deepcopy(first)
    second["started_at"] = FINISHED  # a rerun: its row there already
    second["rows"] |= {"uploaded": 0, "previously_uploaded": 1}
    second["issues"]["items"] = []  # counts by reason kept, the row and its reason gone
    h.reports["main/b.csv"] = [first, second]
    assert any("[3] not reported with their reason in its final report" in p for p in check(h).problems)
    h.reports["main/b.csv"] = [second, first]  # the one that lists it is the later run's: fine
    first["started_at"] = "2026-01-01T00:02:00.000+00:00"
    first["rows"] |= {"uploaded": 0, "previously_uploaded": 1}
    second["rows"] |= {"uploaded": 1, "previously_uploaded": 0}
    second["started_at"] = STARTED
    assert check(h).ok, check(h).problems


def test_a_partial_value_in_a_log_is_detected() -> None:
    """An e-mail address without its domain is a leak (the review's m3: a local part at INFO)."""
    h = clean_history()
    h.logs.append("INFO retrying chunk 0 for employee a2 at x.com (remark starts 'remark t')")
    assert any("secret/row value(s)" in p for p in check(h).problems)


def test_every_generated_value_holds_a_token_of_its_row_and_any_piece_holding_it_is_a_leak() -> None:
    """Each row's token (7 letters, no hex digit, no vowel) is in every text value of its row and
    unique in the history; a log line with only part of a value, the token in it, is a leak."""
    rng = random.Random(5)
    files = [make_file(rng, f"main/f{i}.csv", f"s5f{i}", first=i * 41, seed=5) for i in range(20)]
    tokens = [t for f in files for t in f.tokens]
    assert len(tokens) == len(set(tokens)) and all(len(t) == 7 for t in tokens)
    for f in files:
        for token, row in zip(f.tokens, f.records, strict=True):
            texts = [v for c, v in zip(f.header, row, strict=False) if v and c != "HRScenario"]
            texts = [v for v in texts if not (v[:4].isdigit() and v[4:5] == "-")]  # dates hold no token
            assert all(token in v for v in texts), (token, row)
    f = files[0]
    h = History(seed=5, path="cli", records_per_call=5, max_concurrency=1, files=[f])
    value = next(v for v in f.records[0] if f.tokens[0] in v)
    start = value.index(f.tokens[0])
    h.logs = [f"INFO a piece of a value: {value[max(0, start - 2) : start + 9]}"]
    from benchmarks.fault_campaign import leaks

    assert leaks(h)
    h.logs = ["INFO chunk 0 uploaded: rows 2-3 (run 3fa9c0e1d2b4, etag 0x8DC1A2B3C4D5E6F)"]
    assert not leaks(h)


def test_a_lost_answer_on_a_later_copy_does_not_explain_an_earlier_one() -> None:
    """A lost-answer flag explains only a copy of its chunk sent after it."""
    h = clean_history()
    h.received = [A[0:2], A[2:3], A[0:2], B[0:1]]  # a#0 answered, then resent (its answer lost), never retried
    h.answer_lost = [False, False, True, False]
    verdict = check(h)
    assert verdict.doubled_beyond == 2 and "main/a.csv#0" in " ".join(verdict.problems)
    h.received.append(copy.deepcopy(A[0:2]))  # a copy after the lost answer: that one is explained, not the first
    h.answer_lost.append(False)
    assert check(h).doubled_beyond == 2


def test_a_chunk_never_recorded_in_the_checkpoint_is_not_an_in_flight_duplicate() -> None:
    """After a kill the evidence is the service's too: a chunk whose answer had left the service
    (well before the kill) was done, whatever the product's checkpoint says; sending it again is
    a double. Only a chunk whose answer had not left by then was in flight."""
    h = clean_history()
    h.max_concurrency = 2
    h.received = [A[0:2], A[2:3], copy.deepcopy(B[0:1])]
    h.answer_lost = [False] * 3
    h.answered_at = [10.0, 10.1, 10.2]
    # the whole file was at the service and answered before the kill; the checkpoint says nothing
    h.interruptions = [Interruption("kill", "main/a.csv", completed=set(), uploads_seen=3, at=20.0)]
    h.received += [copy.deepcopy(A[0:2]), copy.deepcopy(A[2:3])]
    h.answer_lost += [False, False]
    assert check(h).doubled_beyond == 3
    h.answered_at[1] = None  # a#1's answer never left: in flight at the kill, its copy documented
    assert check(h).doubled_beyond == 2
    h.answered_at[0] = 19.9  # a#0's answer left just before the kill: the client may not have recorded it
    assert check(h).ok, check(h).problems


def test_a_replaced_version_read_whole_but_not_sent_is_detected() -> None:
    """README: a run that opened the file before the change sends every valid row of it whenever
    the whole file came in its first read. A run that read all 3 rows and sent 2 (or none) fails."""
    h = replaced_history()
    h.reports["main/a.csv"][0]["rows"] |= {"in": 3, "uploaded": 2, "not_uploaded": 1}
    assert any("read the whole file, yet 2 of its 3" in p for p in check(h).problems)
    h = replaced_history()
    h.received = [r for r in h.received if r != A[0:2]]
    h.answer_lost = [False] * len(h.received)
    h.reports["main/a.csv"][0]["rows"] |= {"in": 3, "uploaded": 0, "not_uploaded": 3}
    verdict = check(h)
    assert verdict.lost == 3 and any("read the whole file, yet 0 of its 3" in p for p in verdict.problems)
