"""Nothing lost, nothing sent twice (issue 10, the durable-state side): a file that changes, a
state directory that fails, the same file under other settings, two runs at once, damaged state.

Real files and real processes against the HTTPS emulator; every test asserts exactly which rows
the service received. Faults are injected only at the operating system's edge (fsync, rename).
"""

from __future__ import annotations

import errno
import io
import json
import os
import re
import subprocess
import threading
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from hrconnector_core.checkpoint import Checkpoint, CheckpointKey, LocalCheckpointStore
from hrconnector_core.pipeline import (
    LocalFileSource,
    Policy,
    UploadOptions,
    checkpoint_key,
    default_mapping,
    inspect,
    run_upload,
)

from .conftest import cli_command, cli_env, start_cli, upload_args
from .csvdata import HEADER, csv_bytes, rows, write_csv

BLOCK = 1 << 20  # the pipeline's hash block


def run_cli(emulator, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cli_command(*args), env=cli_env(emulator), capture_output=True, text=True, timeout=120)


def counted(data: list[list[str]]) -> Counter[tuple[str, ...]]:
    return Counter(map(tuple, data))


def interrupt_after(handed_over: int):
    """A progress callback that stops the run (as Ctrl-C would) once `handed_over` chunks are queued."""
    calls: list[Any] = []

    def progress(p: Any) -> None:
        calls.append(p)
        if len(calls) == handed_over:
            raise KeyboardInterrupt

    return progress


def partial_upload(path: Path, job: str, client, store, *, records_per_call: int = 10, chunks: int = 2) -> None:
    """What a run killed after `chunks` accepted chunks leaves: those chunks checkpointed."""
    options = UploadOptions(job_id=job, records_per_call=records_per_call, max_concurrency=1)
    with pytest.raises(KeyboardInterrupt):
        run_upload(LocalFileSource(path), options, client=client, store=store, progress=interrupt_after(chunks))


def rows_within_first_block(data: list[list[str]], records_per_call: int) -> int:
    """How many leading rows make whole chunks from the first hash block's bytes alone."""
    offset, inside = len(csv_bytes(HEADER, [])), 0
    for row in data:
        offset += len(csv_bytes([], [row]))
        if offset > BLOCK:
            break
        inside += 1
    return inside // records_per_call * records_per_call


class UploadGate:
    """Holds the first upload the emulator receives for one job until the test releases it."""

    def __init__(self, emulator, job: str, monkeypatch: pytest.MonkeyPatch) -> None:
        self.arrived, self.release, self.recorded = threading.Event(), threading.Event(), threading.Event()
        original = emulator.state.record_upload

        def record_upload(job_id: str, *args: Any, **kwargs: Any) -> Any:
            held = job_id.lower() == job.lower() and not self.arrived.is_set()
            if held:
                self.arrived.set()
                assert self.release.wait(120)
            try:
                return original(job_id, *args, **kwargs)
            finally:
                if held:
                    self.recorded.set()

        monkeypatch.setattr(emulator.state, "record_upload", record_upload)


# -- case 1: a file that changes during or between runs ----------------------------------------
class ChangingSource:
    """A Source whose bytes change between opens: the first pass sees versions[0], the next ones
    the later versions (the last one repeats)."""

    def __init__(self, name: str, *versions: bytes) -> None:
        self.name = name
        self._versions = list(versions)
        self.opened = 0

    def open(self) -> io.BytesIO:
        data = self._versions[min(self.opened, len(self._versions) - 1)]
        self.opened += 1
        return io.BytesIO(data)


def test_a_file_changed_between_the_hash_pass_and_the_read_pass_sends_nothing_past_the_change(
    tmp_path, emulator, job, make_client
):
    data = rows(40_000)
    full = csv_bytes(HEADER, data)
    truncated = full[: BLOCK + BLOCK // 2]  # truncated in place after the hash pass
    store = LocalCheckpointStore(tmp_path / "state")
    options = UploadOptions(job_id=job, records_per_call=1000, max_concurrency=1)

    report = run_upload(ChangingSource("hr.csv", full, truncated), options, client=make_client(job), store=store)

    sent = rows_within_first_block(data, 1000)
    assert 0 < sent < len(data)
    assert emulator.state.rows(job) == data[:sent]  # only rows from bytes the hash describes
    assert report.status == "partial" and report.rows.uploaded == sent
    assert "changed while it was being uploaded" in str(report.error)
    key = checkpoint_key(inspect(ChangingSource("hr.csv", full)), options, default_mapping(HEADER))
    checkpoint = store.load(key)
    assert checkpoint is not None and not checkpoint.finished and len(checkpoint.completed) == sent // 1000

    # Restored: the next run resumes, each skipped chunk checked against its digest.
    again = run_upload(ChangingSource("hr.csv", full), options, client=make_client(job), store=store)
    assert again.status == "succeeded", again.error
    assert again.rows.previously_uploaded == sent and again.rows.uploaded == len(data) - sent
    assert counted(emulator.state.rows(job)) == counted(data)  # every row exactly once


def test_the_reject_file_policy_stops_when_the_file_changes_after_its_validation_pass(
    tmp_path, emulator, job, make_client
):
    data = rows(30)
    changed = [*rows(29), ["not-an-address", "yesterday", "", ""]]
    # Opened for the "uploaded in full?" check, then the validation pass's hash and read passes;
    # the upload pass's hash pass sees the file after a change.
    before, after = csv_bytes(HEADER, data), csv_bytes(HEADER, changed)
    source = ChangingSource("hr.csv", before, before, before, after)
    options = UploadOptions(job_id=job, records_per_call=10, policy=Policy.REJECT_FILE)
    report = run_upload(source, options, client=make_client(job), store=LocalCheckpointStore(tmp_path / "s"))
    assert "changed after it was validated" in str(report.error)
    assert job not in emulator.state.uploads


def test_cli_a_file_truncated_in_place_during_an_upload_then_restored_arrives_once(
    tmp_path, emulator, job, monkeypatch
):
    data = rows(40_000)
    path = write_csv(tmp_path / "hr.csv", HEADER, data)
    full = path.read_bytes()
    state = tmp_path / "state"
    gate = UploadGate(emulator, job, monkeypatch)
    args = upload_args(emulator, job, path, state, "--records-per-call", "1000", "--max-concurrency", "1")

    first = start_cli(emulator, *args)
    assert gate.arrived.wait(120)  # chunk 0 is at the service: the run has read only the first block
    with path.open("r+b") as handle:  # truncated in place, as an export being rewritten
        handle.truncate(BLOCK + BLOCK // 2)
    gate.release.set()
    out, err = first.communicate(timeout=120)
    assert first.returncode == 1, err
    assert "changed while it was being uploaded" in out
    sent = rows_within_first_block(data, 1000)
    assert emulator.state.rows(job) == data[:sent]

    path.write_bytes(full)  # restored
    second = run_cli(emulator, *args)
    assert second.returncode == 0, second.stdout + second.stderr
    assert f"{sent} uploaded by an earlier run" in second.stdout
    assert counted(emulator.state.rows(job)) == counted(data)  # no row missing, none twice


def test_resume_sends_nothing_when_a_chunk_it_would_skip_is_not_the_one_the_service_accepted(
    tmp_path, emulator, job, make_client
):
    data = rows(50)
    path = write_csv(tmp_path / "hr.csv", HEADER, data)
    store = LocalCheckpointStore(tmp_path / "state")
    partial_upload(path, job, make_client(job), store, chunks=3)
    assert emulator.state.rows(job) == data[:30]
    # As if chunk 1 had failed while chunk 2 went through, and an earlier version had made chunk 2
    # of other records: its accepted digest is not the one of today's chunk 2.
    checkpoint_file = next((tmp_path / "state").glob("checkpoint-*.json"))
    saved = json.loads(checkpoint_file.read_text())
    del saved["completed"]["1"], saved["chunk_sha256"]["1"]
    saved["chunk_sha256"]["2"] = "0" * 32
    checkpoint_file.write_text(json.dumps(saved))

    report = run_upload(
        LocalFileSource(path), UploadOptions(job_id=job, records_per_call=10), client=make_client(job), store=store
    )

    assert "chunk 2 (rows 22-31) is not the chunk the service accepted" in str(report.error)
    assert "nothing was sent" in str(report.error) and "--force" in str(report.error)
    assert emulator.state.rows(job) == data[:30]  # not even chunk 1, which the checkpoint lacks
    assert report.status == "failed" and report.rows.uploaded == 0


# -- case 2: an unwritable or failing state directory ------------------------------------------
def test_cli_an_unwritable_state_directory_is_refused_before_anything_is_sent(tmp_path, emulator, job):
    path = write_csv(tmp_path / "hr.csv", HEADER, rows(30))
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")  # root ignores permissions; a path under a file fails for anyone

    result = run_cli(emulator, *upload_args(emulator, job, path, blocker / "state"))

    assert result.returncode == 2
    assert "is not writable" in result.stderr and "Not a directory" in result.stderr
    assert "Traceback" not in result.stderr
    assert job not in emulator.state.uploads


class FaultyDisk:
    """The OS edge under LocalCheckpointStore: fsync of a checkpoint in `directory` fails with
    ENOSPC from the `fail_at`-th one on."""

    def __init__(self, directory: Path, fail_at: int, monkeypatch: pytest.MonkeyPatch) -> None:
        self.checkpoint_fsyncs = 0
        real_fsync = os.fsync

        def fsync(fd: int) -> None:
            target = os.readlink(f"/proc/self/fd/{fd}")
            if target.startswith(str(directory)) and Path(target).name.startswith(".checkpoint-"):
                self.checkpoint_fsyncs += 1
                if self.checkpoint_fsyncs >= fail_at:
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            real_fsync(fd)

        monkeypatch.setattr(os, "fsync", fsync)


def test_a_checkpoint_write_that_fails_mid_run_stops_the_run_and_counts_what_was_accepted(
    tmp_path, emulator, job, make_client, monkeypatch
):
    data = rows(50)
    path = write_csv(tmp_path / "hr.csv", HEADER, data)
    state = tmp_path / "state"
    store = LocalCheckpointStore(state)
    options = UploadOptions(job_id=job, records_per_call=10, max_concurrency=1)
    with monkeypatch.context() as patch:
        # fsync 1: the empty checkpoint before the first chunk; 2: after chunk 0; 3: after chunk 1 fails.
        FaultyDisk(state, 3, patch)
        report = run_upload(LocalFileSource(path), options, client=make_client(job), store=store)

    assert emulator.state.rows(job) == data[:20]  # the run stopped at once: chunks 2-4 never sent
    assert "No space left on device" in str(report.error)
    assert "accepted chunk 1 (rows 12-21)" in str(report.error)
    assert (report.rows.uploaded, report.rows.not_uploaded) == (20, 30) and report.rows.balanced
    assert report.status == "partial"
    key = checkpoint_key(inspect(LocalFileSource(path)), options, default_mapping(HEADER))
    saved = store.load(key)
    assert saved is not None and sorted(saved.completed) == [0]

    again = run_upload(LocalFileSource(path), options, client=make_client(job), store=store)
    assert again.status == "succeeded"
    # Chunk 1 was accepted but never recorded: the one place it is sent twice, as the error said.
    assert counted(emulator.state.rows(job)) == counted(data) + counted(data[10:20])


class PowerCut:
    """The OS edge as a disk with a write cache: a file's data is durable only once fsynced, a
    rename only once its directory is fsynced. `cut()` loses whatever was not."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.synced: set[int] = set()  # inodes whose data reached the disk
        self.pending: list[tuple[Path, bytes | None]] = []  # renames not yet durable: target, previous bytes
        self.targets: set[Path] = set()  # every file a rename produced
        real_fsync, real_replace = os.fsync, os.replace

        def fsync(fd: int) -> None:
            real_fsync(fd)
            inode = os.fstat(fd).st_ino
            if os.path.isdir(f"/proc/self/fd/{fd}"):
                self.pending = [p for p in self.pending if p[0].parent.stat().st_ino != inode]
            else:
                self.synced.add(inode)

        def replace(src: Any, dst: Any) -> None:
            target = Path(dst)
            self.pending.append((target, target.read_bytes() if target.exists() else None))
            self.targets.add(target)
            real_replace(src, dst)

        monkeypatch.setattr(os, "fsync", fsync)
        monkeypatch.setattr(os, "replace", replace)

    def cut(self) -> None:
        for target, before in reversed(self.pending):
            if before is not None:
                target.write_bytes(before)  # the rename never reached the disk
            else:
                target.unlink()
        for path in self.targets:
            if path.exists() and path.stat().st_ino not in self.synced:
                path.write_bytes(b"")  # delayed allocation: the name survived, the data did not


def test_a_saved_checkpoint_survives_a_power_cut(tmp_path, monkeypatch):
    """Catches a missing fsync of the data before the rename, or of the directory after it."""
    store = LocalCheckpointStore(tmp_path / "state")
    key = CheckpointKey("ab" * 32, "job", 10, "plan")
    store.save(Checkpoint(key, {0: 10}, digests={0: "1" * 32}))
    with monkeypatch.context() as patch:
        disk = PowerCut(patch)
        store.save(Checkpoint(key, {0: 10, 1: 10}, digests={0: "1" * 32, 1: "2" * 32}))
        disk.cut()
    saved = store.load(key)
    assert saved is not None and saved.completed == {0: 10, 1: 10}


# -- case 3: the same file under other settings ------------------------------------------------
def test_cli_a_file_uploaded_in_full_is_not_sent_again_under_other_settings_unless_forced(tmp_path, emulator, job):
    data = rows(30)
    path = write_csv(tmp_path / "hr.csv", HEADER, data)
    state = tmp_path / "state"
    mapping = tmp_path / "mapping.json"
    columns = {name: name for name in HEADER}
    mapping.write_text(json.dumps({"scenarios": [{"scenario": "performance_review", "columns": columns}]}))
    first = run_cli(emulator, *upload_args(emulator, job, path, state, "--records-per-call", "10"))
    assert first.returncode == 0, first.stderr

    for other in (["--records-per-call", "7"], ["--policy", "reject-file"], ["--mapping", str(mapping)]):
        report_path = tmp_path / "again.json"
        again = run_cli(emulator, *upload_args(emulator, job, path, state, *other, "--report", str(report_path)))
        assert again.returncode == 0, again.stdout + again.stderr
        assert "already uploaded in full to this job on" in again.stdout
        report = json.loads(report_path.read_text())
        assert report["rows"]["uploaded"] == 0 and report["rows"]["previously_uploaded"] == 30
        assert any("already uploaded in full" in note for note in report["notes"])
    assert counted(emulator.state.rows(job)) == counted(data)  # sent once, whatever the settings

    forced = run_cli(emulator, *upload_args(emulator, job, path, state, "--records-per-call", "7", "--force"))
    assert forced.returncode == 0, forced.stderr
    assert counted(emulator.state.rows(job)) == counted(data + data)


def test_a_file_uploaded_in_full_is_not_judged_again_by_the_reject_file_policy(tmp_path, emulator, job, make_client):
    data = rows(20)
    path = tmp_path / "hr.csv"
    path.write_bytes(csv_bytes(HEADER, [*data[:10], ["not-an-address", *data[10][1:]], *data[11:]]))
    store = LocalCheckpointStore(tmp_path / "state")
    first = run_upload(LocalFileSource(path), UploadOptions(job_id=job), client=make_client(job), store=store)
    assert (first.rows.uploaded, first.rows.rejected) == (19, 1)

    again = run_upload(
        LocalFileSource(path),
        UploadOptions(job_id=job, policy=Policy.REJECT_FILE),
        client=make_client(job),
        store=store,
    )

    assert again.error is None and "19 row(s) accepted, 1 row(s) rejected then and never sent" in again.notes[0]
    assert (again.rows.previously_uploaded, again.rows.rejected, again.rows.uploaded) == (19, 1, 0)
    assert counted(emulator.state.rows(job)) == counted([*data[:10], *data[11:]])


def test_a_partial_upload_is_not_resumed_under_other_settings(tmp_path, emulator, job, make_client):
    data = rows(50)
    path = write_csv(tmp_path / "hr.csv", HEADER, data)
    store = LocalCheckpointStore(tmp_path / "state")
    partial_upload(path, job, make_client(job), store)

    other = run_upload(
        LocalFileSource(path), UploadOptions(job_id=job, records_per_call=20), client=make_client(job), store=store
    )
    assert "partly uploaded to this job (2 chunk(s)) with other settings" in str(other.error)
    assert "10 records per call" in str(other.error) and "now 20 records per call" in str(other.error)
    assert emulator.state.rows(job) == data[:20]

    same = run_upload(
        LocalFileSource(path), UploadOptions(job_id=job, records_per_call=10), client=make_client(job), store=store
    )
    assert same.status == "succeeded"
    assert counted(emulator.state.rows(job)) == counted(data)


# -- case 4: two runs of the same file at once -------------------------------------------------
def test_cli_a_second_run_of_the_same_file_and_job_exits_while_the_first_uploads(tmp_path, emulator, job, monkeypatch):
    data = rows(300)
    path = write_csv(tmp_path / "hr.csv", HEADER, data)
    copy = write_csv(tmp_path / "copy-of-hr.csv", HEADER, data)  # the same content under another name
    state = tmp_path / "state"
    gate = UploadGate(emulator, job, monkeypatch)
    first = start_cli(emulator, *upload_args(emulator, job, path, state, "--records-per-call", "100"))
    assert gate.arrived.wait(120)  # the first run is uploading (and holds the lock)

    second = run_cli(emulator, *upload_args(emulator, job, copy, state, "--records-per-call", "100"))
    gate.release.set()
    _, err = first.communicate(timeout=120)

    assert second.returncode == 1
    assert "another run is uploading this file to this job" in second.stdout
    assert f"process {first.pid} on" in second.stdout
    assert first.returncode == 0, err
    assert counted(emulator.state.rows(job)) == counted(data)  # the second run sent nothing


def test_cli_a_lock_left_by_a_killed_run_does_not_block_the_next(tmp_path, emulator, job, monkeypatch):
    data = rows(300)
    path = write_csv(tmp_path / "hr.csv", HEADER, data)
    state = tmp_path / "state"
    gate = UploadGate(emulator, job, monkeypatch)
    args = upload_args(emulator, job, path, state, "--records-per-call", "100", "--max-concurrency", "1")
    killed = start_cli(emulator, *args)
    assert gate.arrived.wait(120)
    killed.kill()  # SIGKILL: no clean-up runs
    killed.communicate(timeout=60)
    gate.release.set()
    assert gate.recorded.wait(120)
    assert list(state.glob("checkpoint-*.lock"))  # the lock file is still there

    after = run_cli(emulator, *args)

    assert after.returncode == 0, after.stdout + after.stderr
    # Chunk 0 was in flight when the run died (the one documented limit): it arrives twice.
    assert counted(emulator.state.rows(job)) == counted(data) + counted(data[:100])


# -- case 11: unreadable state and mappings, a file without a header ---------------------------
def test_cli_a_truncated_checkpoint_is_a_clear_error_and_force_is_the_way_out(tmp_path, emulator, job, make_client):
    data = rows(50)
    path = write_csv(tmp_path / "hr.csv", HEADER, data)
    state = tmp_path / "state"
    partial_upload(path, job, make_client(job), LocalCheckpointStore(state))
    checkpoint_file = next(state.glob("checkpoint-*.json"))
    text = checkpoint_file.read_bytes()
    checkpoint_file.write_bytes(text[: len(text) // 2])  # a torn write, a bad sector, a bad copy
    args = upload_args(emulator, job, path, state, "--records-per-call", "10")

    damaged = run_cli(emulator, *args)

    assert damaged.returncode == 1
    assert "is damaged (not valid JSON)" in damaged.stdout and "--force" in damaged.stdout
    assert "Traceback" not in damaged.stderr + damaged.stdout
    assert emulator.state.rows(job) == data[:20]  # nothing sent on a guess

    forced = run_cli(emulator, *args, "--force")
    assert forced.returncode == 0, forced.stdout + forced.stderr
    assert "removing a damaged checkpoint" in forced.stderr
    # Explicitly chosen: the rows the lost checkpoint recorded arrive a second time.
    assert counted(emulator.state.rows(job)) == counted(data) + counted(data[:20])


@pytest.mark.parametrize(
    "content",
    [
        b'{"version": 2, "file_sha256": 7, "job_id": "j", "records_per_call": 10}',
        b'{"version": 99}',
        b"[1, 2, 3]",
        b'{"version": 1, "file_sha256": "SHA", "job_id": "JOB", "records_per_call": 10, "completed": {"0": 10}}',
        b'{"version": 2, "file_sha256": "SHA", "job_id": "JOB", "records_per_call": 10, "plan": "PLAN", '
        b'"completed": {"0": 10}}',  # a chunk without its digest cannot be checked
        b"\xff\xfe\x00garbage",
    ],
)
def test_a_garbled_checkpoint_is_a_clear_error_and_nothing_is_sent(tmp_path, emulator, job, make_client, content):
    data = rows(20)
    path = write_csv(tmp_path / "hr.csv", HEADER, data)
    store = LocalCheckpointStore(tmp_path / "state")
    options = UploadOptions(job_id=job, records_per_call=10)
    key = checkpoint_key(inspect(LocalFileSource(path)), options, default_mapping(HEADER))
    store.path(key).parent.mkdir(parents=True)
    names = {b"SHA": key.file_sha256.encode(), b"JOB": job.encode(), b"PLAN": key.plan.encode()}
    store.path(key).write_bytes(re.sub(b"SHA|JOB|PLAN", lambda m: names[m.group()], content))

    report = run_upload(LocalFileSource(path), options, client=make_client(job), store=store)

    assert report.status == "failed"
    assert "is damaged" in str(report.error) and "--force" in str(report.error)
    assert job not in emulator.state.uploads


def test_cli_mappings_nested_too_deep_or_not_utf8_are_usage_errors(tmp_path, emulator):
    path = write_csv(tmp_path / "hr.csv", HEADER, rows(3))
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 200_000 + "]" * 200_000)
    latin = tmp_path / "latin.json"
    latin.write_bytes(
        '{"scenarios": [{"scenario": "performance_review", "columns": {"Rating": "Note é"}}]}'.encode("latin-1")
    )
    for mapping, message in ((deep, "nested more than"), (latin, "is not UTF-8 text")):
        result = run_cli(emulator, "validate", str(path), "--mapping", str(mapping))
        assert result.returncode == 2, result.stderr
        assert message in result.stderr and "Traceback" not in result.stderr


def test_cli_a_file_without_a_header_is_refused_without_showing_its_first_row(tmp_path, emulator, job):
    data = rows(20)
    path = tmp_path / "no-header.csv"
    path.write_bytes(csv_bytes(data[0], data[1:]))  # the export forgot its header line
    out = tmp_path / "report.json"

    result = run_cli(emulator, *upload_args(emulator, job, path, tmp_path / "state", "--report", str(out), "-v"))

    assert result.returncode == 1
    assert "the first row looks like data, not a header: column(s) 1, 2" in result.stdout
    report = json.loads(out.read_text())
    assert report["columns"] == [] and report["status"] == "failed"
    for value in data[0]:
        assert value not in result.stdout + result.stderr + out.read_text()
    assert job not in emulator.state.uploads


def test_cli_mapping_infer_on_a_file_without_a_header_names_no_value(tmp_path, emulator):
    data = rows(5)
    path = tmp_path / "no-header.csv"
    path.write_bytes(csv_bytes(data[0], data[1:]))

    result = run_cli(emulator, "mapping", "infer", str(path))

    assert result.returncode == 1
    assert "looks like data, not a header" in result.stderr and "Traceback" not in result.stderr
    assert data[0][0] not in result.stdout + result.stderr


def test_a_rerun_of_content_uploaded_with_rejected_rows_lists_them_again_and_sends_nothing(
    tmp_path, emulator, job, make_client
):
    """The rows an earlier run rejected are listed again (issues and the rejected-rows file) by a
    rerun that finds the content uploaded: that run may have died before it wrote them."""
    from hrconnector_core.report import RejectedRowsWriter

    data = rows(6)
    data[2][0] = "not-an-email"
    path = write_csv(tmp_path / "hr.csv", HEADER, data)
    store = LocalCheckpointStore(tmp_path / "state")
    first = run_upload(LocalFileSource(path), UploadOptions(job_id=job), client=make_client(job), store=store)
    assert (first.rows.uploaded, first.rows.rejected) == (5, 1)

    again = tmp_path / "again.rejected.csv"
    second = run_upload(
        LocalFileSource(path), UploadOptions(job_id=job), client=make_client(job), store=store,
        rejected_rows=RejectedRowsWriter(again),
    )  # fmt: skip
    assert sorted(emulator.state.rows(job)) == sorted(data[:2] + data[3:])  # nothing sent twice
    assert (second.rows.previously_uploaded, second.rows.rejected, second.rows.uploaded) == (5, 1, 0)
    assert [(i.row, i.code) for i in second.issues] == [(4, "invalid-email")]
    written = again.read_text(encoding="utf-8").splitlines()
    assert len(written) == 2 and written[1].startswith("4,") and "not-an-email" in written[1]
    assert "listed again in this report" in second.notes[-1]
