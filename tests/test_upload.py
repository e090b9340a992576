"""The pipeline against the HTTPS emulator: exactly which rows arrive, in which chunks."""

from __future__ import annotations

from collections import Counter

import pytest

from hrconnector_core.checkpoint import LocalCheckpointStore
from hrconnector_core.emulator import JOB_APP_MISMATCH
from hrconnector_core.pipeline import (
    LocalFileSource,
    UploadOptions,
    checkpoint_key,
    default_mapping,
    inspect,
    run_upload,
)

from .conftest import OTHER_APP_ID
from .csvdata import HEADER, rows, write_csv


def upload(path, job, client, store, **options):
    return run_upload(LocalFileSource(path), UploadOptions(job_id=job, **options), client=client, store=store)


def test_every_row_arrives_once_in_chunks_with_the_header(tmp_path, emulator, job, make_client):
    data = rows(103)
    path = write_csv(tmp_path / "hr.csv", HEADER, data)
    report = upload(path, job, make_client(job), LocalCheckpointStore(tmp_path / "state"), records_per_call=10)

    uploads = emulator.state.uploads[job]
    assert sorted(u.record_count for u in uploads) == [3] + [10] * 10
    assert all(u.header == HEADER for u in uploads)
    assert sorted(emulator.state.rows(job)) == sorted(data)  # each row once, multiline fields intact
    assert report.status == "succeeded"
    assert report.to_dict()["rows"] == {
        "in": 103,
        "uploaded": 103,
        "previously_uploaded": 0,
        "rejected": 0,
        "skipped": 0,
        "not_uploaded": 0,
        "planned": 0,
        "balanced": True,
    }
    assert [c.status for c in report.chunks] == ["uploaded"] * 11
    assert report.token_fetches == 1  # one token for all eleven calls
    log = emulator.state.log[job]
    assert sum(entry["RecordsSaved"] for entry in log) == 103


def test_sequential_upload_keeps_file_order(tmp_path, emulator, job, make_client):
    data = rows(25)
    path = write_csv(tmp_path / "hr.csv", HEADER, data)
    upload(path, job, make_client(job), None, records_per_call=4, max_concurrency=1)
    assert emulator.state.rows(job) == data


def test_a_finished_file_is_not_sent_again_unless_forced(tmp_path, emulator, job, make_client):
    path = write_csv(tmp_path / "hr.csv", HEADER, rows(30))
    store = LocalCheckpointStore(tmp_path / "state")
    upload(path, job, make_client(job), store, records_per_call=10)
    again = upload(path, job, make_client(job), store, records_per_call=10)

    assert len(emulator.state.uploads[job]) == 3
    assert again.status == "succeeded"
    assert (again.rows.uploaded, again.rows.previously_uploaded) == (0, 30)
    assert again.token_fetches == 0

    forced = upload(path, job, make_client(job), store, records_per_call=10, force=True)
    assert forced.rows.uploaded == 30
    assert len(emulator.state.uploads[job]) == 6


def interrupt_after(handed_over: int):
    """A progress callback that stops the run (as Ctrl-C would) once `handed_over` chunks are queued."""
    calls = []

    def progress(p):
        calls.append(p)
        if len(calls) == handed_over:
            raise KeyboardInterrupt

    return progress


def test_a_resumed_run_sends_only_the_missing_chunks(tmp_path, emulator, job, make_client):
    data = rows(50)
    path = write_csv(tmp_path / "hr.csv", HEADER, data)
    store = LocalCheckpointStore(tmp_path / "state")
    options = UploadOptions(job_id=job, records_per_call=10, max_concurrency=1)
    with pytest.raises(KeyboardInterrupt):  # a run that dies after two chunks
        run_upload(LocalFileSource(path), options, client=make_client(job), store=store, progress=interrupt_after(2))
    key = checkpoint_key(inspect(LocalFileSource(path)), options, default_mapping(HEADER))
    partial = store.load(key)
    assert partial is not None and sorted(partial.completed) == [0, 1]
    assert emulator.state.rows(job) == data[:20]

    report = upload(path, job, make_client(job), store, records_per_call=10, max_concurrency=3)

    assert report.status == "succeeded"
    assert sorted(c.index for c in report.chunks if c.status == "uploaded") == [2, 3, 4]
    assert sorted(emulator.state.rows(job)) == sorted(data)  # each row once
    finished = store.load(key)
    assert finished is not None and finished.finished


def test_a_permanent_403_stops_at_once_with_the_services_reason(tmp_path, emulator, make_client):
    foreign_job = "0b7c7c5e-0000-4000-8000-00000000f0f0"
    emulator.state.register_job(foreign_job, OTHER_APP_ID)
    path = write_csv(tmp_path / "hr.csv", HEADER, rows(40))
    before = emulator.state.counters.get("forbidden", 0)

    report = upload(path, foreign_job, make_client(foreign_job), None, records_per_call=10, max_concurrency=1)

    assert report.status == "failed"
    assert "HTTP 403" in report.error and JOB_APP_MISMATCH in report.error
    assert emulator.state.counters["forbidden"] - before == 1  # no retries of a permanent error
    statuses = Counter(c.status for c in report.chunks)
    assert statuses == {"failed": 1, "not-attempted": 3}
    failed = next(c for c in report.chunks if c.status == "failed")
    assert (failed.http_status, len(failed.attempts), failed.response_body) == (403, 1, JOB_APP_MISMATCH)
    assert report.rows.not_uploaded == 40 and report.rows.balanced
    assert foreign_job not in emulator.state.uploads


@pytest.mark.parametrize("concurrency", [1, 4])
def test_faults_are_survived_with_no_row_lost_or_doubled(tmp_path, emulator, job, make_client, concurrency):
    data = rows(200)
    path = write_csv(tmp_path / "hr.csv", HEADER, data)
    emulator.state.set_faults(rate_429=0.2, rate_503=0.15, rate_drop=0.1, retry_after_seconds=0, seed=7)
    before = dict(emulator.state.counters)

    report = upload(
        path,
        job,
        make_client(job),
        LocalCheckpointStore(tmp_path / "s"),
        records_per_call=10,
        max_concurrency=concurrency,
    )

    assert report.status == "succeeded", report.error
    assert Counter(map(tuple, emulator.state.rows(job))) == Counter(map(tuple, data))
    injected = sum(
        emulator.state.counters.get(k, 0) - before.get(k, 0) for k in ("throttled", "unavailable", "dropped")
    )
    retried = sum(len(c.attempts) - 1 for c in report.chunks)
    assert injected > 0 and retried == injected
    assert any(a["status"] == 429 for c in report.chunks for a in c.attempts)
    assert any(a["status"] is None and a["error"] for c in report.chunks for a in c.attempts)


def test_bad_rows_are_reported_and_the_good_ones_uploaded(tmp_path, emulator, job, make_client):
    path = tmp_path / "hr.csv"
    d = "2024-05-01T00:00:00Z"
    path.write_text(
        f"EmailAddress,EffectiveDate,Rating\r\na@x.com,{d},1\r\nb@x.com,{d}\r\nc@x.com,{d},3,extra\r\n\r\n"
        f"d@x.com,{d},4\r\n",
        encoding="utf-8",
    )
    report = upload(path, job, make_client(job), None)
    assert emulator.state.rows(job) == [["a@x.com", d, "1"], ["b@x.com", d, ""], ["d@x.com", d, "4"]]
    assert (report.rows.rows_in, report.rows.uploaded, report.rows.rejected, report.rows.skipped) == (5, 3, 1, 1)
    assert report.status == "partial"
    assert [(i.row, i.code) for i in report.issues] == [(3, "too-few-fields"), (4, "too-many-fields"), (5, "blank-row")]


def test_dry_run_needs_no_client_and_sends_nothing(tmp_path, emulator):
    path = write_csv(tmp_path / "hr.csv", HEADER, rows(12))
    before = dict(emulator.state.counters)
    report = run_upload(
        LocalFileSource(path), UploadOptions(job_id="j", records_per_call=5, dry_run=True), client=None, store=None
    )
    assert report.status == "planned"
    assert [(c.first_row, c.last_row, c.records, c.status) for c in report.chunks] == [
        (2, 6, 5, "planned"),
        (7, 11, 5, "planned"),
        (12, 13, 2, "planned"),
    ]
    assert emulator.state.counters == before
