"""Who owns a file: lease renewal under faults, a lost lease, a concurrent checkpoint writer,
partial failures, short copies and finished states, through the registered blob function against
Azurite and the emulator. Faults are injected at the network edge (tests/network_edge.py)."""

from __future__ import annotations

import json
import threading
from datetime import timedelta
from typing import Any

import pytest
from azure.storage.blob import BlobLeaseClient

from hrconnector_core import blobstore
from hrconnector_core.blobstore import BlobCheckpointStore, StateConflictError
from hrconnector_core.checkpoint import Checkpoint, CheckpointKey
from hrconnector_core.emulator.host import invoke_blob_trigger
from hrconnector_core.errors import StorageError
from hrconnector_core.service import FileFailedError, HRConnectorService, utc_now
from hrconnector_core.settings import Settings

from . import network_edge
from .conftest import APP_ID, OTHER_APP_ID, FunctionEnv
from .csvdata import HEADER, csv_bytes, rows

BLOB_FUNCTION = "hr_file_arrived"
NAME = "main/lease.csv"


class Invocation:
    """One invocation of the blob function in its own thread, as a second instance would run it."""

    def __init__(self, env: FunctionEnv, name: str = NAME) -> None:
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, args=(env, name), name="invocation")
        self.thread.start()

    def _run(self, env: FunctionEnv, name: str) -> None:
        try:
            invoke_blob_trigger(BLOB_FUNCTION, env.settings.containers.incoming, name)
        except BaseException as exc:
            self.error = exc

    def join(self) -> None:
        self.thread.join(90)
        assert not self.thread.is_alive()


def invoke(env: FunctionEnv, name: str = NAME) -> None:
    invoke_blob_trigger(BLOB_FUNCTION, env.settings.containers.incoming, name)


def state_blob(env: FunctionEnv, name: str = NAME) -> Any:
    etag = env.service.incoming.get_blob_client(name).get_blob_properties().etag
    return env.service.state.get_blob_client(env.service.files.name(name, etag))


def lapse_leases(env: FunctionEnv, name: str = NAME) -> None:
    """What the lapse of a stuck run's leases (its file state's and its content lock's) would do,
    without waiting for it: the real Break Lease calls."""
    BlobLeaseClient(state_blob(env, name)).break_lease(lease_break_period=0)
    for lock in env.service.state.list_blobs(name_starts_with="locks/"):
        BlobLeaseClient(env.service.state.get_blob_client(lock.name)).break_lease(lease_break_period=0)


def uploads(emulator: Any, env: FunctionEnv) -> int:
    return len(emulator.state.uploads.get(env.job, []))


def listing(env: FunctionEnv) -> tuple[list[str], list[str], list[str]]:
    names = env.settings.containers
    found = env.listing()
    return found[names.incoming], found[names.processed], found[names.failed]


# -- renewal -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("fault", ["ConnectionError", "503"])
def test_a_transient_error_renewing_the_lease_is_retried_and_the_run_keeps_the_file(
    emulator, chunked, edge, fault: str
) -> None:
    """Issue 11.2: the first renewal fails (a connection error, or a 503); the run retries it, keeps
    the file, and a redelivered event meanwhile finds it busy. Every row once, nothing failed."""
    env = chunked
    data = csv_bytes(HEADER, rows(50))
    env.drop(NAME, data)
    if fault == "503":
        edge.answer(network_edge.is_renewal, 503, times=1)
    else:
        edge.fail(network_edge.is_renewal, times=1)
    renewed = threading.Event()  # a renewal answered after the failed one
    edge.rule(network_edge.Rule(network_edge.is_renewal, after=lambda request, response: renewed.set()))
    paused = edge.pause(network_edge.is_upload, nth=3)
    first = Invocation(env)
    paused.wait_reached()
    # Well within the 15 s lease (the SDK's own retry waits 12-18 s: past the lease, too late).
    assert renewed.wait(10), "no renewal succeeded in time after the failed one"
    assert any(e[2] == "renew" and str(e[3]) == fault for e in edge.log)

    invoke(env)  # Event Grid's redelivery while the first run works: the file is busy
    assert uploads(emulator, env) == 2
    paused.release()
    first.join()

    assert first.error is None
    assert sorted(emulator.state.rows(env.job)) == sorted(rows(50))
    assert uploads(emulator, env) == 5
    incoming, processed, failed = listing(env)
    assert incoming == [] and failed == [] and len(processed) == 2
    (state,) = env.service.files.history(NAME)
    assert state.status == "processed" and state.runs == 1


def test_the_lease_is_renewed_in_the_background_over_a_long_upload(emulator, function_env, edge, monkeypatch) -> None:
    """One chunk that takes longer than several renewal periods: the background renewal keeps the
    lease (a redelivery during it finds the file busy), so nobody else can start the file."""
    env = function_env
    monkeypatch.setattr(blobstore, "RENEWALS_PER_LEASE", 30)  # every 0.5 s of the 15 s lease
    data = csv_bytes(HEADER, rows(5))
    env.drop(NAME, data)
    paused = edge.pause(network_edge.is_upload)
    first = Invocation(env)
    paused.wait_reached()
    renewals = threading.Semaphore(0)
    edge.rule(network_edge.Rule(network_edge.is_renewal, after=lambda req, resp: renewals.release()))
    for _ in range(3):  # three background renewals while the upload call is held
        assert renewals.acquire(timeout=20), "the lease was not renewed during the long upload"
    assert edge.count("renew", thread="lease-renewal") >= 3
    invoke(env)
    assert uploads(emulator, env) == 0
    paused.release()
    first.join()
    assert first.error is None
    assert emulator.state.rows(env.job) == rows(5)
    assert [s.status for s in env.service.files.history(NAME)] == ["processed"]


# -- a lost lease ------------------------------------------------------------------------------------
def test_a_run_that_lost_its_lease_stops_before_its_next_chunk_and_moves_nothing(emulator, chunked, edge) -> None:
    """The lease is broken (the real API) while chunk 2 is in flight: the run stops before chunk 3,
    ends quietly, moves and deletes nothing; the next delivery resumes after chunk 2."""
    env = chunked
    data = csv_bytes(HEADER, rows(100))
    env.drop(NAME, data)
    paused = edge.pause(network_edge.is_upload, nth=3)
    first = Invocation(env)
    paused.wait_reached()
    BlobLeaseClient(state_blob(env)).break_lease(lease_break_period=0)
    paused.release()
    first.join()

    assert first.error is None  # another run owns the file: not a failure of this invocation
    assert uploads(emulator, env) == 3
    incoming, processed, failed = listing(env)
    assert incoming == [NAME] and processed == [] and failed == []
    (state,) = env.service.files.history(NAME)
    assert state.status == "processing"

    invoke(env)  # the redelivery (or the timer) takes over and resumes
    assert sorted(emulator.state.rows(env.job)) == sorted(rows(100))  # every row exactly once
    assert uploads(emulator, env) == 10
    incoming, processed, failed = listing(env)
    assert incoming == [] and failed == [] and len(processed) == 2
    (state,) = env.service.files.history(NAME)
    assert state.status == "processed" and state.runs == 2


def test_a_run_taken_over_mid_file_leaves_the_moving_to_the_new_owner(emulator, chunked, edge) -> None:
    """The lease lapses (broken here) while chunk 2 is in flight, a second run takes the file and
    finishes it; the first run's in-flight chunk completes, then it stops without touching the file."""
    env = chunked
    data = csv_bytes(HEADER, rows(60))
    env.drop(NAME, data)
    paused = edge.pause(network_edge.is_upload, nth=3)
    first = Invocation(env)
    paused.wait_reached()
    lapse_leases(env)
    invoke(env)  # the second run: chunks 2-5, the move, the report
    incoming, processed, failed = listing(env)
    assert incoming == [] and len(processed) == 2 and failed == []
    paused.release()
    first.join()

    assert first.error is None
    chunk_2 = rows(10, start=20)  # in flight when the lease was lost: sent by both runs
    assert sorted(emulator.state.rows(env.job)) == sorted(rows(60) + chunk_2)
    assert uploads(emulator, env) == 7
    assert listing(env) == ([], processed, [])  # the first run moved, deleted, reported nothing
    (state,) = env.service.files.history(NAME)
    assert state.status == "processed" and state.runs == 2
    report = env.read_json(env.settings.containers.processed, f"{state.destination}.report.json")
    assert report["rows"]["previously_uploaded"] == 20 and report["rows"]["uploaded"] == 40


def test_a_checkpoint_written_by_another_run_ends_the_invocation_quietly(emulator, chunked, edge) -> None:
    """A concurrent checkpoint writer (another run that owns the file now): this run's next
    checkpoint write fails on its ETag condition; it stops, and it is not a file failure."""
    env = chunked
    env.drop(NAME, csv_bytes(HEADER, rows(100)))
    paused = edge.pause(network_edge.is_upload, nth=3)
    first = Invocation(env)
    paused.wait_reached()
    (checkpoint,) = env.service.state.list_blobs(name_starts_with="checkpoints/")
    blob = env.service.state.get_blob_client(checkpoint.name)
    blob.upload_blob(blob.download_blob().readall(), overwrite=True)  # the other writer
    paused.release()
    first.join()

    assert first.error is None
    assert uploads(emulator, env) == 3  # chunk 3 was never sent
    incoming, processed, failed = listing(env)
    assert incoming == [NAME] and processed == [] and failed == []


def test_checkpoints_are_written_only_over_the_version_read(function_env) -> None:
    container = function_env.service.state
    key = CheckpointKey("ab" * 32, "job", 10, "plan")
    mine, other = BlobCheckpointStore(container), BlobCheckpointStore(container)
    assert mine.load(key) is None
    mine.save(Checkpoint(key, {0: 10}))
    theirs = other.load(key)
    assert theirs is not None
    theirs.completed[1] = 10
    other.save(theirs)
    with pytest.raises(StateConflictError):
        mine.save(Checkpoint(key, {0: 10, 2: 10}))
    assert mine.conflict and not other.conflict
    stored = json.loads(container.get_blob_client(f"checkpoints/{key.id}.json").download_blob().readall())
    assert stored["completed"] == {"0": 10, "1": 10}
    late = BlobCheckpointStore(container)  # never read it: may only create, not overwrite
    with pytest.raises(StateConflictError):
        late.save(Checkpoint(key, {}))


# -- partial failure -----------------------------------------------------------------------------------
def test_a_failure_mid_file_goes_to_failed_says_what_was_sent_and_a_redrop_resumes(emulator, chunked, edge) -> None:
    env = chunked
    data = csv_bytes(HEADER, rows(50))
    env.drop(NAME, data)

    seen: list[str] = []

    def refuse_from_chunk_2_on(request: Any) -> None:  # the job is given to another app: 403s
        seen.append(request.url)
        if len(seen) == 3:
            emulator.state.register_job(env.job, OTHER_APP_ID)

    edge.rule(network_edge.Rule(network_edge.is_upload, before=refuse_from_chunk_2_on))
    with pytest.raises(FileFailedError, match="403"):
        invoke(env)
    assert emulator.state.rows(env.job) == rows(20)
    incoming, processed, failed = listing(env)
    assert incoming == [] and processed == []
    moved, report_name = failed
    report = env.read_json(env.settings.containers.failed, report_name)
    assert report["status"] == "partial"
    assert report["rows"]["uploaded"] == 20 and report["rows"]["not_uploaded"] == 30
    statuses = {c["index"]: c["status"] for c in report["chunks"]["items"]}
    assert statuses == {0: "uploaded", 1: "uploaded", 2: "failed", 3: "not-attempted", 4: "not-attempted"}
    assert "jobId and corresponding appId do not match" in report["error"]

    emulator.state.register_job(env.job, APP_ID)  # fixed; the admin drops the file again
    env.service.incoming.upload_blob(NAME, env.service.failed.get_blob_client(moved).download_blob().readall())
    invoke(env)
    assert sorted(emulator.state.rows(env.job)) == sorted(rows(50))  # resumed: each row once
    incoming, processed, failed = listing(env)
    assert incoming == [] and len(processed) == 2
    report = env.read_json(env.settings.containers.processed, processed[1])
    assert report["status"] == "succeeded"
    assert report["rows"]["previously_uploaded"] == 20 and report["rows"]["uploaded"] == 30


# -- the move ------------------------------------------------------------------------------------------
def test_a_short_copy_keeps_the_original_and_a_redelivery_completes_the_move(emulator, function_env, edge) -> None:
    env = function_env
    data = csv_bytes(HEADER, rows(30))
    env.drop(NAME, data)
    processed = env.settings.containers.processed

    def truncate(request: Any, response: Any) -> None:  # the copy lands short
        target = request.url.split(f"/{processed}/", 1)[1]
        env.service.processed.get_blob_client(target).upload_blob(data[: len(data) // 2], overwrite=True)

    edge.after(network_edge.is_copy_into(processed), truncate)
    with pytest.raises(StorageError, match="not complete"):
        invoke(env)
    assert env.listing()[env.settings.containers.incoming] == [NAME]  # the original is kept
    assert [s.status for s in env.service.files.history(NAME)] == ["processing"]

    invoke(env)  # the platform retries: nothing is sent again, the move completes
    incoming, moved, failed = listing(env)
    assert incoming == [] and failed == []
    assert env.service.processed.get_blob_client(moved[0]).download_blob().readall() == data
    assert emulator.state.rows(env.job) == rows(30)
    assert uploads(emulator, env) == 1


def _processed_but_left_in_incoming(emulator, env: FunctionEnv, edge) -> bytes:
    """A finished file whose delete never reached the server: the state says processed, the file
    (the same version) is still in the incoming container."""
    data = csv_bytes(HEADER, rows(12))
    env.drop(NAME, data)
    edge.answer(network_edge.is_delete_in(env.settings.containers.incoming), 202, times=1)
    invoke(env)
    assert env.listing()[env.settings.containers.incoming] == [NAME]
    (state,) = env.service.files.history(NAME)
    assert state.status == "processed" and state.runs == 1
    return data


def test_a_redelivered_event_after_a_finished_state_does_nothing(emulator, function_env, edge) -> None:
    env = function_env
    _processed_but_left_in_incoming(emulator, env, edge)
    before = env.listing()
    invoke(env)
    assert env.listing() == before
    (state,) = env.service.files.history(NAME)
    assert state.status == "processed" and state.runs == 1
    assert uploads(emulator, env) == 1


def test_the_timer_sweep_skips_finished_files(emulator, function_env, edge) -> None:
    env = function_env
    _processed_but_left_in_incoming(emulator, env, edge)
    service = HRConnectorService(Settings.from_env())
    summary = service.run_schedule(utc_now() + timedelta(hours=1))
    assert summary.swept == [] and summary.failures == []
    (state,) = env.service.files.history(NAME)
    assert state.runs == 1
    assert uploads(emulator, env) == 1
