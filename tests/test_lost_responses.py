"""The service's hard case: rows accepted and recorded, then the answer lost on the way back.

No client can tell such a call from one the service never received, so the retry sends the
chunk again and the service holds it twice (it documents no duplicate detection). The emulator
injects exactly that (`rate_lost_response`), and these tests count the duplicates apart from
the rows: every row arrives, and the only extra copies are the chunks whose answer was lost,
one copy per lost answer.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

import pytest
import requests

from hrconnector_core.checkpoint import LocalCheckpointStore
from hrconnector_core.emulator import Emulator
from hrconnector_core.pipeline import LocalFileSource, UploadOptions, run_upload

from .csvdata import HEADER, rows, write_csv
from .test_emulator import post, token


@pytest.fixture
def lost_responses(emulator: Emulator) -> Iterator[Emulator]:
    """The emulator with no lost responses again after the test (the shared reset predates them)."""
    yield emulator
    emulator.state.set_faults(rate_lost_response=0.0, seed=None)


def as_rows(uploads) -> Counter[tuple[str, ...]]:
    return Counter(tuple(row) for upload in uploads for row in upload.rows)


def test_a_lost_response_is_recorded_then_the_connection_drops(lost_responses, job):
    emulator = lost_responses
    good = token(emulator)
    emulator.state.set_faults(rate_lost_response=1.0)
    before = emulator.state.counters.get("response_lost", 0)
    with pytest.raises(requests.ConnectionError):
        post(emulator, job, token=good, files={"file": ("a.csv", b"Email,Date\r\na@x.com,1\r\n")})
    (upload,) = emulator.state.uploads[job]
    assert upload.response_lost and upload.rows == [["a@x.com", "1"]]
    assert emulator.state.lost_response_uploads(job) == [upload]
    assert emulator.state.counters["response_lost"] == before + 1
    emulator.state.set_faults(rate_lost_response=0.0)
    accepted = post(emulator, job, token=good, files={"file": ("a.csv", b"Email,Date\r\nb@x.com,2\r\n")})
    assert accepted.status_code == 200 and not emulator.state.uploads[job][1].response_lost


@pytest.mark.parametrize("concurrency", [1, 4])
def test_faults_with_lost_responses_duplicate_exactly_those_chunks(
    tmp_path, lost_responses, job, make_client, concurrency
):
    emulator = lost_responses
    data = rows(200)
    path = write_csv(tmp_path / "hr.csv", HEADER, data)
    emulator.state.set_faults(
        rate_429=0.1, rate_503=0.1, rate_drop=0.1, rate_lost_response=0.2, retry_after_seconds=0, seed=11
    )
    before = dict(emulator.state.counters)
    store = LocalCheckpointStore(tmp_path / "s")
    options = UploadOptions(job_id=job, records_per_call=10, max_concurrency=concurrency)

    report = run_upload(LocalFileSource(path), options, client=make_client(job), store=store)

    assert report.status == "succeeded", report.error
    uploads = emulator.state.uploads[job]
    lost = [u for u in uploads if u.response_lost]
    answered = [u for u in uploads if not u.response_lost]
    injected = emulator.state.counters.get("response_lost", 0) - before.get("response_lost", 0)
    assert len(lost) == injected > 0  # the fault did happen, and every one was recorded
    # Nothing lost, nothing doubled: the answered calls hold every row exactly once...
    assert as_rows(answered) == Counter(map(tuple, data))
    assert len(answered) == 20 and sorted(u.record_count for u in answered) == [10] * 20
    # ...and the duplicates are exactly the chunks whose answer was lost, one copy per lost answer.
    chunks = [u.rows for u in answered]
    assert all(u.rows in chunks for u in lost)
    assert as_rows(uploads) - Counter(map(tuple, data)) == as_rows(lost)
    assert sum(u.record_count for u in lost) <= injected * 10
    # The client saw each lost answer as a connection error and retried it; its report cannot
    # tell those from calls that never arrived.
    failures = ("throttled", "unavailable", "dropped", "response_lost")
    retried = sum(emulator.state.counters.get(k, 0) - before.get(k, 0) for k in failures)
    assert sum(len(c.attempts) - 1 for c in report.chunks) == retried
    assert report.rows.uploaded == 200 and report.rows.balanced

    again = run_upload(LocalFileSource(path), options, client=make_client(job), store=store)
    assert again.rows.previously_uploaded == 200 and len(emulator.state.uploads[job]) == len(uploads)
