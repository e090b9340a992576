"""Adversarial review of issue 15's last fix: a version closed by the timer's sweep after its
bytes were replaced (`HRConnectorService._close_replaced`). Through the registered blob function
and the timer, against Azurite and the HTTPS emulator; faults and pauses at the network edge."""

from __future__ import annotations

import json
import logging
import threading
from collections import Counter
from datetime import timedelta
from typing import Any
from urllib.parse import unquote, urlsplit

import pytest
from azure.storage.blob import BlobLeaseClient

from hrconnector_core.service import HRConnectorService, ScheduleError, utc_now
from hrconnector_core.settings import Settings

from . import network_edge
from .conftest import FunctionEnv
from .csvdata import HEADER, csv_bytes, rows
from .test_function_leases import Invocation, invoke, lapse_leases, state_blob

NAME = "main/review.csv"


def lose_the_lease_at_upload(env: FunctionEnv, edge: network_edge.NetworkEdge, name: str, *, nth: int) -> None:
    """A run of `name` whose leases lapse while its `nth` upload is held at the network edge: it
    stops quietly after that chunk (the chunk is sent and recorded)."""
    paused = edge.pause(network_edge.is_upload, nth=nth)
    run = Invocation(env, name)
    paused.wait_reached()
    lapse_leases(env, name)
    paused.release()
    run.join()


def sweep(env: FunctionEnv) -> Any:
    return HRConnectorService(Settings.from_env()).run_schedule(utc_now() + timedelta(hours=1))


def emails(emulator: Any, env: FunctionEnv) -> Counter[str]:
    return Counter(r[0] for r in emulator.state.rows(env.job))


def old_rows_at_service(emulator: Any, env: FunctionEnv, n: int) -> int:
    """How many of rows(n) (the old version) reached the service."""
    got = emails(emulator, env)
    return sum(1 for i in range(n) if got.get(f"user{i}@contoso.com"))


def reports_of(env: FunctionEnv, destination: str) -> dict[str, dict[str, Any]]:
    """Every report of a version (by its destination), in hr-processed and hr-failed."""
    found = {}
    for container in (env.service.processed, env.service.failed):
        name = f"{destination}.report.json"
        blob = container.get_blob_client(name)
        if blob.exists():
            found[f"{container.container_name}/{name}"] = json.loads(blob.download_blob().readall())
    return found


def is_report_put_in(container: str) -> Any:
    def match(request: network_edge.Request) -> bool:
        path = unquote(urlsplit(request.url or "").path)
        return request.method == "PUT" and f"/{container}/" in path and path.endswith(".report.json")

    return match


def lose_lease_at_chunk(env: FunctionEnv, edge: Any, nth: int, *, release_before_sweep: bool = True) -> Any:
    """Drop rows(60) (10 per chunk); hold chunk `nth`, lapse the run's leases, replace the file
    with other rows and process the new version. Returns (the old state, the held run, its pause)."""
    env.drop(NAME, csv_bytes(HEADER, rows(60)))
    paused = edge.pause(network_edge.is_upload, nth=nth)
    run = Invocation(env, NAME)
    paused.wait_reached()
    lapse_leases(env, NAME)
    if release_before_sweep:
        paused.release()
        run.join()
    (old,) = env.service.files.history(NAME)
    env.drop(NAME, csv_bytes(HEADER, rows(10, start=100)))
    invoke(env, NAME)
    return old, run, paused


# -- 1. every row at the service of a closed version is counted by its report ------------------------------
@pytest.mark.xfail(
    strict=True,
    reason="a chunk in flight when the sweep closes the version reaches the service after the report was "
    "written: the replaced report counts 20 rows, the service has 30 (the lost run wakes after the sweep)",
)
def test_a_chunk_in_flight_while_the_sweep_closes_the_version_is_counted(emulator, chunked, edge) -> None:
    env = chunked
    old, run, paused = lose_lease_at_chunk(env, edge, 3, release_before_sweep=False)
    summary = sweep(env)  # the old run is still held in its 3rd chunk's request
    assert [o.status for o in summary.swept] == ["replaced"]
    paused.release()  # the paused run wakes: its chunk reaches the service, its checkpoint records it
    run.join()
    closed = env.service.files.get(NAME, old.etag)
    assert closed is not None and closed.status == "failed"
    (report,) = reports_of(env, closed.destination or "").values()
    at_service = old_rows_at_service(emulator, env, 60)
    assert at_service == 30
    assert report["rows"]["uploaded"] == at_service


def test_a_lease_lost_at_chunk_1_is_counted_exactly(emulator, chunked, edge) -> None:
    """Held: the first chunk was in flight when the leases lapsed; it is accepted and checkpointed
    before the sweep, which counts it."""
    env = chunked
    old, _, _ = lose_lease_at_chunk(env, edge, 1)
    summary = sweep(env)
    assert summary.failures == [] and [o.status for o in summary.swept] == ["replaced"]
    closed = env.service.files.get(NAME, old.etag)
    assert closed is not None and closed.checkpoint and closed.status == "failed"
    (report,) = reports_of(env, closed.destination or "").values()
    assert old_rows_at_service(emulator, env, 60) == 10
    assert (report["status"], report["rows"]["in"], report["rows"]["uploaded"]) == ("replaced", 10, 10)
    assert closed.rows == report["rows"]


@pytest.mark.parametrize("how", ["deleted", "replaced-by-identical-bytes"])
def test_a_lost_version_deleted_or_replaced_by_the_same_bytes(emulator, chunked, edge, how: str) -> None:
    """Held: deleted, the sweep closes it with its 30 accepted rows. Replaced by identical bytes, the
    new version resumes from the content's checkpoint (sends the other 30) and the old version's
    report counts the whole file (by any run): every row once at the service."""
    env = chunked
    data = csv_bytes(HEADER, rows(60))
    env.drop(NAME, data)
    lose_the_lease_at_upload(env, edge, NAME, nth=3)
    (old,) = env.service.files.history(NAME)
    if how == "deleted":
        env.service.incoming.delete_blob(NAME)
    else:
        env.drop(NAME, data)
        invoke(env, NAME)
    summary = sweep(env)
    assert summary.failures == [] and [o.status for o in summary.swept] == ["replaced"]
    got = emails(emulator, env)
    assert max(got.values()) == 1
    closed = env.service.files.get(NAME, old.etag)
    assert closed is not None and closed.status == "failed"
    (report,) = reports_of(env, closed.destination or "").values()
    expect = 30 if how == "deleted" else 60
    assert len(got) == expect
    assert (report["rows"]["in"], report["rows"]["uploaded"]) == (expect, expect)
    assert sweep(env).swept == []
    before = (env.listing(), emulator.state.rows(env.job), [vars(s) for s in env.service.files.history(NAME)])
    invoke(env, NAME)  # the old version's event delivered again: nothing to do for it
    assert (env.listing(), emulator.state.rows(env.job), [vars(s) for s in env.service.files.history(NAME)]) == before


# -- 3. exactly one report per version ---------------------------------------------------------------
@pytest.mark.xfail(
    strict=True,
    reason="the run's report write (after its last lease check) lands after the sweep closed the version: "
    "two reports, hr-processed (succeeded) and hr-failed (replaced), and the state names only one",
)
def test_a_report_write_in_flight_while_the_sweep_closes_the_version_leaves_one_report(emulator, chunked, edge) -> None:
    env = chunked
    env.drop(NAME, csv_bytes(HEADER, rows(30)))
    held = edge.pause(is_report_put_in(env.settings.containers.processed))
    run = Invocation(env, NAME)
    held.wait_reached()  # every row is at the service; the run checked its lease and is writing its report
    (old,) = env.service.files.history(NAME)
    BlobLeaseClient(state_blob(env, NAME)).break_lease(lease_break_period=0)  # its content lock is released
    env.drop(NAME, csv_bytes(HEADER, rows(10, start=100)))
    summary = sweep(env)  # the new version (no event yet) and the old one's closing
    assert sorted(o.status for o in summary.swept) == ["processed", "replaced"]
    held.release()
    run.join()
    closed = env.service.files.get(NAME, old.etag)
    assert closed is not None and closed.finished
    found = reports_of(env, closed.destination or "")
    assert list(found) == [closed.report], found.keys()


def test_two_timers_sweeping_at_once_close_the_version_once(emulator, chunked, edge) -> None:
    """Held: the first timer's closing report write is held; the second timer finds the state leased
    and leaves it; one report, closed once."""
    env = chunked
    old, _, _ = lose_lease_at_chunk(env, edge, 3)
    held = edge.pause(is_report_put_in(env.settings.containers.failed))
    first: dict[str, Any] = {}

    def timer() -> None:
        first["summary"] = sweep(env)

    thread = threading.Thread(target=timer, name="timer-1")
    thread.start()
    held.wait_reached()
    second = sweep(env)
    assert second.swept == [] and second.failures == []
    held.release()
    thread.join(90)
    assert [o.status for o in first["summary"].swept] == ["replaced"]
    closed = env.service.files.get(NAME, old.etag)
    assert closed is not None
    assert list(reports_of(env, closed.destination or "")) == [closed.report]
    assert sweep(env).swept == []


# -- "by any run": the same content, different paths -------------------------------------------------
def test_a_version_of_already_uploaded_content_is_reported_like_a_waiting_one(emulator, chunked, edge) -> None:
    """A version whose content was already uploaded in full sends no chunk; before, its state then
    never named the checkpoint and, closed by the sweep, it reported 0 rows, whereas a version that
    waited for the same content reported all of them. Now the state names it once the run holds
    the content's lock."""
    env = chunked
    data = csv_bytes(HEADER, rows(30))
    env.drop(NAME, data)
    invoke(env, NAME)  # uploaded in full, moved
    assert len(emails(emulator, env)) == 30
    env.drop(NAME, data)  # the same export again: a new version
    held = edge.pause(lambda r: r.method == "GET" and "/checkpoints/" in urlsplit(r.url or "").path)
    run = Invocation(env, NAME)
    held.wait_reached()
    (again,) = [s for s in env.service.files.history(NAME) if not s.finished]
    lapse_leases(env, NAME)
    held.release()
    run.join()  # it found the content uploaded in full, then lost its lease before its report
    assert env.service.files.get(NAME, again.etag).status == "processing"
    env.drop(NAME, csv_bytes(HEADER, rows(10, start=100)))
    summary = sweep(env)
    assert "replaced" in [o.status for o in summary.swept]
    closed = env.service.files.get(NAME, again.etag)
    assert closed is not None
    (report,) = reports_of(env, closed.destination or "").values()
    assert (report["rows"]["in"], report["rows"]["uploaded"] + report["rows"]["previously_uploaded"]) == (30, 30)


# -- 5. old, missing, foreign and garbled checkpoint names --------------------------------------------
def _rewrite_state(env: FunctionEnv, name: str, etag: str, change: Any) -> None:
    blob = env.service.state.get_blob_client(env.service.files.name(name, etag))
    data = json.loads(blob.download_blob().readall())
    change(data)
    blob.upload_blob(json.dumps(data).encode(), overwrite=True, metadata={"status": data.get("status", "processing")})


def test_a_checkpoint_deleted_by_retention_is_not_reported_as_never_named(emulator, chunked, edge) -> None:
    """The state names its checkpoint, which is gone (retention, an admin): 30 rows are at the service.
    The report must not say the state names no checkpoint and no row is known to have been sent."""
    env = chunked
    old, _, _ = lose_lease_at_chunk(env, edge, 3)
    assert old.checkpoint
    env.service.state.delete_blob(f"checkpoints/{old.checkpoint}.json")
    summary = sweep(env)
    assert summary.failures == [] and [o.status for o in summary.swept] == ["replaced"]
    closed = env.service.files.get(NAME, old.etag)
    assert closed is not None and closed.status == "failed"
    (report,) = reports_of(env, closed.destination or "").values()
    notes = " ".join(report["notes"])
    assert "names no checkpoint" not in notes
    assert "not known" in notes and old.checkpoint in notes


@pytest.mark.xfail(
    strict=True,
    reason="a state written before the checkpoint field existed (a run of the previous release that lost its "
    "lease mid-file): its replaced report counts 0 rows; the service has 30 of them",
)
def test_an_old_state_without_the_checkpoint_field_counts_what_was_sent(emulator, chunked, edge) -> None:
    env = chunked
    old, _, _ = lose_lease_at_chunk(env, edge, 3)
    _rewrite_state(env, NAME, old.etag, lambda d: d.pop("checkpoint"))
    summary = sweep(env)
    assert summary.failures == [] and [o.status for o in summary.swept] == ["replaced"]
    closed = env.service.files.get(NAME, old.etag)
    assert closed is not None and closed.status == "failed"
    (report,) = reports_of(env, closed.destination or "").values()
    assert old_rows_at_service(emulator, env, 60) == 30
    assert report["rows"]["uploaded"] == 30


@pytest.mark.parametrize("value", [42, ["x"], {"id": "x"}, "", "../../outside", "no-such-checkpoint"])
def test_a_garbled_checkpoint_name_closes_the_version_without_crashing_or_looping(
    emulator, chunked, edge, value: Any
) -> None:
    env = chunked
    old, _, _ = lose_lease_at_chunk(env, edge, 3)
    _rewrite_state(env, NAME, old.etag, lambda d: d.update(checkpoint=value))
    before = emulator.state.rows(env.job)
    summary = sweep(env)
    assert summary.failures == [] and [o.status for o in summary.swept] == ["replaced"]
    assert emulator.state.rows(env.job) == before
    closed = env.service.files.get(NAME, old.etag)
    assert closed is not None and closed.status == "failed" and closed.report
    (report,) = reports_of(env, closed.destination or "").values()
    assert report["status"] == "replaced" and report["rows"]["balanced"]
    assert (report["rows"]["in"], report["rows"]["uploaded"]) == (0, 0)
    assert "not known" in " ".join(report["notes"]) or not value  # 30 rows were sent: never "none sent"
    assert sweep(env).swept == []


def test_a_state_naming_another_contents_checkpoint(emulator, chunked, edge) -> None:
    """A state naming the checkpoint of other content (here: the newer version's, finished). There is
    nothing in the state to tell (it records no content digest): the report counts that content.
    This test records the behaviour; see the report."""
    env = chunked
    old, _, _ = lose_lease_at_chunk(env, edge, 3)
    (new,) = [s for s in env.service.files.history(NAME) if s.etag != old.etag]
    assert new.checkpoint and new.checkpoint != old.checkpoint
    _rewrite_state(env, NAME, old.etag, lambda d: d.update(checkpoint=new.checkpoint))
    sweep(env)
    closed = env.service.files.get(NAME, old.etag)
    assert closed is not None
    (report,) = reports_of(env, closed.destination or "").values()
    assert report["rows"]["uploaded"] == 10  # the other content's 10 rows, not this version's 30


# -- 3. consistent state and reports; `hrconnector status` ----------------------------------------------
def test_state_and_report_agree_and_status_shows_the_closed_version(emulator, chunked, edge) -> None:
    """Held: the state names the report and carries its rows; `hrconnector status` lists the version
    among the failed files, with the reason and the rows the service accepted."""
    from .test_status import run_status

    env = chunked
    old, _, _ = lose_lease_at_chunk(env, edge, 3)
    sweep(env)
    closed = env.service.files.get(NAME, old.etag)
    assert closed is not None
    (where, report) = next(iter(reports_of(env, closed.destination or "").items()))
    assert closed.report == where and closed.rows == report["rows"] and closed.status == "failed"
    assert report["file"]["name"] == NAME.partition("/")[2]
    code, text = run_status(env, utc_now() + timedelta(hours=1), "--json")
    status = json.loads(text)
    (main,) = status["connectors"]
    (failed,) = main["failed_files"]
    assert failed["file"] == closed.destination and failed["rows_uploaded"] == 30
    assert "replaced or deleted" in failed["reason"] and code == 1


# -- a version closed while another run still uploads its content ---------------------------------------
def test_a_waiting_version_deleted_while_its_content_uploads_is_closed_after_that_upload(
    emulator, chunked, edge
) -> None:
    """b.csv (the same bytes as a.csv) waits while a.csv uploads; b.csv is deleted, and the timer
    runs while a.csv's 3rd chunk is still in flight. Closing b.csv then would count 20 rows and say
    the rest was never sent, yet a.csv's run sends all 60: the sweep must leave it while the content
    is being uploaded, and close it at its next run with every row counted."""
    env = chunked
    data = csv_bytes(HEADER, rows(60))
    env.drop("main/a.csv", data)
    env.drop("main/b.csv", data)
    paused = edge.pause(network_edge.is_upload, nth=3)
    a = Invocation(env, "main/a.csv")
    paused.wait_reached()
    invoke(env, "main/b.csv")
    (waiting,) = env.service.files.history("main/b.csv")
    assert waiting.status == "waiting" and waiting.checkpoint
    env.service.incoming.delete_blob("main/b.csv")
    first = sweep(env)  # a.csv still uploads (its state and lock are leased)
    paused.release()
    a.join()
    assert a.error is None
    assert len(emails(emulator, env)) == 60
    second = sweep(env)
    swept = [(o.status, o.blob) for o in [*first.swept, *second.swept] if o.blob == "main/b.csv"]
    assert swept == [("replaced", "main/b.csv")]
    closed = env.service.files.get("main/b.csv", waiting.etag)
    assert closed is not None and closed.finished
    (report,) = reports_of(env, closed.destination or "").values()
    assert (report["rows"]["in"], report["rows"]["uploaded"]) == (60, 60)
    assert "never sent" not in " ".join(report["notes"])


@pytest.mark.parametrize("concurrency", [1, 3])
def test_lost_after_the_last_chunk_before_the_report_counts_the_whole_file(
    emulator, chunked, edge, monkeypatch, concurrency: int
) -> None:
    """Held: the last chunk is in flight when the leases lapse; it lands and the checkpoint is
    finished; the run stops before its report. The sweep reports the whole file's counts, its
    rejected rows included."""
    monkeypatch.setenv("HR_MAX_CONCURRENCY", str(concurrency))
    env = chunked
    data = rows(32)
    data[5][0] = "not-an-email"
    data[17][1] = "yesterday"
    env.drop(NAME, csv_bytes(HEADER, data))
    lose_the_lease_at_upload(env, edge, NAME, nth=3)
    (old,) = env.service.files.history(NAME)
    assert old.status == "processing"
    env.drop(NAME, csv_bytes(HEADER, rows(10, start=100)))
    summary = sweep(env)
    assert summary.failures == [] and "replaced" in [o.status for o in summary.swept]
    assert old_rows_at_service(emulator, env, 32) == 30
    closed = env.service.files.get(NAME, old.etag)
    assert closed is not None
    (report,) = reports_of(env, closed.destination or "").values()
    rows_ = report["rows"]
    assert (rows_["in"], rows_["uploaded"], rows_["rejected"], rows_["balanced"]) == (32, 30, 2, True)


@pytest.mark.parametrize("moment", ["during-the-copy", "after-the-copy"])
def test_lost_during_or_after_the_copy_its_own_report_stands(emulator, chunked, edge, moment: str) -> None:
    """Held: the run wrote its report (hr-processed) and lost its lease during the server-side copy,
    or after it (before the delete); the file is then replaced. The sweep keeps that report: one
    report, the state processed and naming it, nothing sent again."""
    env = chunked
    env.drop(NAME, csv_bytes(HEADER, rows(30)))
    copy = network_edge.is_copy_into(env.settings.containers.processed)
    if moment == "during-the-copy":
        held = edge.pause(copy)
    else:  # the renewal on the spot after the copy, before the delete
        copied = threading.Event()
        edge.after(copy, lambda req, resp: copied.set())
        held = edge.pause(lambda r: copied.is_set() and network_edge.is_renewal(r))
    run = Invocation(env, NAME)
    held.wait_reached()
    (old,) = env.service.files.history(NAME)
    BlobLeaseClient(state_blob(env, NAME)).break_lease(lease_break_period=0)
    held.release()
    run.join()
    assert env.service.files.get(NAME, old.etag).status == "processing"
    env.drop(NAME, csv_bytes(HEADER, rows(10, start=100)))
    summary = sweep(env)
    assert summary.failures == [] and "replaced" in [o.status for o in summary.swept]
    closed = env.service.files.get(NAME, old.etag)
    assert closed is not None and closed.status == "processed"
    found = reports_of(env, closed.destination or "")
    assert list(found) == [closed.report] and closed.report.startswith(env.settings.containers.processed)
    assert found[closed.report]["status"] == "succeeded" and closed.rows == found[closed.report]["rows"]
    assert len(emulator.state.rows(env.job)) == 40 and max(emails(emulator, env).values()) == 1


def test_a_chunk_in_flight_when_only_the_state_lease_is_broken_is_counted(emulator, chunked, edge) -> None:
    """The state's lease is broken (not the content lock's) while chunk 3 is in flight, and the file
    is replaced: the sweep leaves the version while the run holds the content lock, then counts
    the 30 rows that reached the service. (Failed before the content-lock check: 20 counted.)"""
    env = chunked
    env.drop(NAME, csv_bytes(HEADER, rows(60)))
    paused = edge.pause(network_edge.is_upload, nth=3)
    run = Invocation(env, NAME)
    paused.wait_reached()
    (old,) = env.service.files.history(NAME)
    BlobLeaseClient(state_blob(env, NAME)).break_lease(lease_break_period=0)
    env.drop(NAME, csv_bytes(HEADER, rows(10, start=100)))
    invoke(env, NAME)
    first = sweep(env)
    assert "replaced" not in [o.status for o in first.swept]
    paused.release()
    run.join()
    second = sweep(env)
    assert [o.status for o in second.swept] == ["replaced"]
    closed = env.service.files.get(NAME, old.etag)
    assert closed is not None and closed.status == "failed"
    (report,) = reports_of(env, closed.destination or "").values()
    assert old_rows_at_service(emulator, env, 60) == 30 == report["rows"]["uploaded"]


def test_a_workbook_lost_mid_file_and_replaced_is_closed_with_its_accepted_rows(
    emulator, chunked, edge, tmp_path
) -> None:
    from .test_xlsx import workbook

    env = chunked
    name = "main/review.xlsx"
    book = workbook(tmp_path / "a.xlsx", {"Sheet1": [HEADER, *rows(60)]}).read_bytes()
    env.drop(name, book)
    lose_the_lease_at_upload(env, edge, name, nth=3)
    (old,) = env.service.files.history(name)
    assert old.status == "processing" and old.checkpoint
    env.drop(name, workbook(tmp_path / "b.xlsx", {"Sheet1": [HEADER, *rows(10, start=100)]}).read_bytes())
    summary = sweep(env)  # the new version (the timer's sweep picks workbooks up) and the old one's closing
    assert summary.failures == [] and sorted(o.status for o in summary.swept) == ["processed", "replaced"]
    closed = env.service.files.get(name, old.etag)
    assert closed is not None and closed.status == "failed"
    (report,) = reports_of(env, closed.destination or "").values()
    assert old_rows_at_service(emulator, env, 60) == 30
    assert (report["file"]["name"], report["rows"]["in"], report["rows"]["uploaded"]) == ("review.xlsx", 30, 30)


# -- 4. no HR value or secret ---------------------------------------------------------------------------
def test_no_hr_value_or_secret_in_the_closing_report_state_or_logs(emulator, chunked, edge, caplog) -> None:
    from .conftest import SECRET

    caplog.set_level(logging.INFO)  # the worker's root logger
    env = chunked
    old, _, _ = lose_lease_at_chunk(env, edge, 3)
    env.service.state.upload_blob(f"checkpoints/{old.checkpoint}.json", b'{"user3@contoso.com": 1}', overwrite=True)
    sweep(env)
    closed = env.service.files.get(NAME, old.etag)
    assert closed is not None and closed.report
    texts = [r.getMessage() + " " + json.dumps({k: str(v) for k, v in vars(r).items()}) for r in caplog.records]
    texts.append(json.dumps(next(iter(reports_of(env, closed.destination or "").values()))))
    texts.append(env.service.state.get_blob_client(env.service.files.name(NAME, old.etag)).download_blob()
                 .readall().decode())  # fmt: skip
    values = {v for row in [*rows(60), *rows(10, start=100)] for v in row} - {""}
    for text in texts:
        assert SECRET not in text
        leaked = [v for v in values if v in text and not v.isdigit()]
        assert not leaked, (leaked, text[:300])


# -- 6. the campaign checker and a replaced version's report -------------------------------------------
@pytest.mark.parametrize(
    "counts",
    [
        {"in": 9},  # more rows in than the file has
        {"in": 0},  # two rows accepted, none in
        {"rejected": 4},  # rejected rows the file does not have, the report's own flag says balanced
        {"in": 3, "uploaded": 2, "rejected": 1},  # "the whole file", with a rejection the file lacks
    ],
)
def test_the_checker_fails_a_replaced_report_whose_counts_are_wrong(counts: dict[str, int]) -> None:
    """Before: the checker judged a replaced report by the product's own `balanced` flag and by the
    rows accepted (uploaded) alone, so each of these passed."""
    from .test_fault_campaign import check, replaced_history

    h = replaced_history()  # main/a.csv: 3 valid rows, 2 of them at the service, then replaced
    old = h.reports["main/a.csv"][0]
    old |= {"status": "replaced", "error": "the file was replaced or deleted before this version was finished"}
    assert check(h).ok, check(h).problems  # in = uploaded = 2: right
    old["rows"] |= counts
    assert not check(h).ok


def test_a_version_that_cannot_be_closed_does_not_keep_the_others_open(emulator, chunked, edge) -> None:
    """Two versions left unfinished and deleted; writing the first one's closing report fails every
    time (here a 403 at the network edge: a write-protected blob, say). The second is closed all the
    same, and the first is named among the timer's failures."""
    env = chunked
    data = {n: csv_bytes(HEADER, rows(20, start=s)) for n, s in (("main/a.csv", 0), ("main/b.csv", 500))}
    olds = {}
    for name, body in data.items():
        env.drop(name, body)
        paused = edge.pause(network_edge.is_upload, nth=2)
        run = Invocation(env, name)
        paused.wait_reached()
        BlobLeaseClient(state_blob(env, name)).break_lease(lease_break_period=0)
        for lock in env.service.state.list_blobs(name_starts_with="locks/"):
            if lock.lease.state == "leased":
                BlobLeaseClient(env.service.state.get_blob_client(lock.name)).break_lease(lease_break_period=0)
        paused.release()
        run.join()
        (olds[name],) = env.service.files.history(name)
        env.service.incoming.delete_blob(name)
    failed = env.settings.containers.failed

    def a_report(request: network_edge.Request) -> bool:
        path = unquote(urlsplit(request.url or "").path)
        return request.method == "PUT" and f"/{failed}/main/" in path and path.endswith("/a.csv.report.json")

    edge.answer(a_report, 403)
    with pytest.raises(ScheduleError) as raised:
        sweep(env)
    assert str(raised.value) == "sweep: closing main/a.csv: HttpResponseError"
    b = env.service.files.get("main/b.csv", olds["main/b.csv"].etag)
    assert b is not None and b.finished
    a = env.service.files.get("main/a.csv", olds["main/a.csv"].etag)
    assert a is not None and not a.finished


def test_the_same_bytes_under_two_names_one_lost_and_deleted(emulator, chunked, edge) -> None:
    """Held (as documented: rows "by any run"): a.csv's run loses its lease after 3 chunks and a.csv
    is deleted; b.csv, the same bytes, resumes from the content's checkpoint and sends the rest.
    Every row once; b.csv's report splits 30 before / 30 now; a.csv's replaced report counts all 60
    as `uploaded` (it cannot tell which run sent which), so `uploaded` over both reports is 90."""
    env = chunked
    data = csv_bytes(HEADER, rows(60))
    env.drop("main/a.csv", data)
    lose_the_lease_at_upload(env, edge, "main/a.csv", nth=3)
    (a,) = env.service.files.history("main/a.csv")
    env.service.incoming.delete_blob("main/a.csv")
    env.drop("main/b.csv", data)
    invoke(env, "main/b.csv")
    summary = sweep(env)
    assert summary.failures == [] and [(o.status, o.blob) for o in summary.swept] == [("replaced", "main/a.csv")]
    got = emails(emulator, env)
    assert len(got) == 60 and max(got.values()) == 1
    (b,) = env.service.files.history("main/b.csv")
    b_report = env.read_json(env.settings.containers.processed, f"{b.destination}.report.json")
    assert (b_report["rows"]["previously_uploaded"], b_report["rows"]["uploaded"]) == (30, 30)
    closed = env.service.files.get("main/a.csv", a.etag)
    assert closed is not None
    (a_report,) = reports_of(env, closed.destination or "").values()
    assert (a_report["rows"]["uploaded"], a_report["rows"]["previously_uploaded"]) == (60, 0)


def test_the_checker_wants_one_report_per_version_the_one_its_state_names() -> None:
    """Before, every report found was judged on its own: a version with a report in hr-processed and
    another in hr-failed (the report-write race above) passed."""
    from benchmarks.fault_campaign import one_report

    mine = "processed-x/main/20260101T000000Z-0a1b2c3d/a.csv.report.json"
    other = "failed-x/main/20260101T000000Z-0a1b2c3d/a.csv.report.json"
    assert one_report("main/a.csv", [mine], mine) == []
    assert one_report("main/a.csv", [mine], None) == []  # unfinished: the state check says so
    assert one_report("main/a.csv", [mine, other], other)
    assert one_report("main/a.csv", [mine], other)
    assert one_report("main/a.csv", [], other)


@pytest.mark.xfail(
    strict=True,
    reason="a chunk accepted after the run's content lock was found lost is not recorded in the checkpoint "
    "(uploaded-not-recorded; only the run's own report, never written by a lost run, would name it): the "
    "sweep's replaced report, read from the checkpoint, counts 20 rows where the service has 30",
)
def test_a_chunk_accepted_after_the_lock_was_found_lost_is_counted(emulator, chunked, edge, monkeypatch) -> None:
    """Two upload threads. Chunks 2 and 3 are held at the network edge; the leases lapse; chunk 3 is
    let go (recorded), so chunk 4's guard renews the content lock on the spot and finds it lost;
    then chunk 2 is let go: the service accepts it, and the run, no longer holding the lock, does
    not record it. No run reports it; the file is replaced and the sweep closes the version."""
    monkeypatch.setenv("HR_MAX_CONCURRENCY", "2")
    env = chunked
    env.drop(NAME, csv_bytes(HEADER, rows(90)))
    second = edge.pause(network_edge.is_upload, nth=2)
    third = edge.pause(network_edge.is_upload, nth=3)
    noticed = threading.Event()

    class LockLost(logging.Handler):  # the run's own record that it found its content lock lost
        def emit(self, record: logging.LogRecord) -> None:
            if "lost the lease on" in record.getMessage() and "/locks/" in record.getMessage():
                noticed.set()

    watcher = LockLost()
    logging.getLogger("hrconnector_core").addHandler(watcher)
    try:
        run = Invocation(env, NAME)
        second.wait_reached()
        third.wait_reached()
        lapse_leases(env, NAME)
        third.release()
        assert noticed.wait(60)  # chunk 4's guard renewed the content lock on the spot: lost
        second.release()
        run.join()
    finally:
        logging.getLogger("hrconnector_core").removeHandler(watcher)
    (old,) = env.service.files.history(NAME)
    env.drop(NAME, csv_bytes(HEADER, rows(10, start=100)))
    summary = sweep(env)
    assert summary.failures == [] and "replaced" in [o.status for o in summary.swept]
    closed = env.service.files.get(NAME, old.etag)
    assert closed is not None
    (report,) = reports_of(env, closed.destination or "").values()
    at_service = old_rows_at_service(emulator, env, 90)
    assert at_service == 30
    assert report["rows"]["uploaded"] == at_service
