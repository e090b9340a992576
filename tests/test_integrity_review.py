"""Issue 10's integrity work, attacked: each test reproduces one of the reviewer's findings.

Real files, real processes (the CLI in a subprocess, signals, OS locks), the HTTPS emulator and
Azurite; every test asserts which rows the service received, exit codes and report content.
"""

from __future__ import annotations

import hashlib
import json
import os
import resource
import signal
import subprocess
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from hrconnector_core.checkpoint import CheckpointKey, LocalCheckpointStore
from hrconnector_core.emulator.host import invoke_blob_trigger
from hrconnector_core.pipeline import (
    LocalFileSource,
    UploadOptions,
    checkpoint_key,
    default_mapping,
    inspect,
    run_upload,
)
from hrconnector_core.service import FileFailedError

from .conftest import cli_command, cli_env, start_cli, upload_args
from .csvdata import HEADER, csv_bytes, rows, write_csv
from .test_integrity_state import BLOCK, ChangingSource, FaultyDisk, UploadGate, partial_upload, rows_within_first_block


def counted(data: list[list[str]]) -> Counter[tuple[str, ...]]:
    return Counter(map(tuple, data))


def _limit_memory() -> None:  # a run that reads without bound fails fast instead of taking the machine
    resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))


def run_cli(emulator, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        cli_command(*args),
        env=cli_env(emulator),
        capture_output=True,
        text=True,
        timeout=timeout,
        preexec_fn=_limit_memory,
    )


def checkpoint_file(state: Path, path: Path, job: str) -> Path:
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    return LocalCheckpointStore(state).path(CheckpointKey(sha, job, 0))


# -- finding 1: an output over the input ----------------------------------------------------------
@pytest.mark.parametrize("command", ["upload", "validate"])
@pytest.mark.parametrize("how", ["same path", "hard link", "symlink", "report"])
def test_cli_an_output_that_is_the_input_file_is_a_usage_error_and_the_input_is_kept(
    tmp_path, emulator, job, command, how
):
    data = rows(40)
    data[2][0] = "not-an-address"  # one row to reject, so a --rejected file would be written
    path = write_csv(tmp_path / "hr.csv", HEADER, data)
    before = path.read_bytes()
    flag, out = "--rejected", path
    if how == "hard link":
        out = tmp_path / "link.csv"
        os.link(path, out)
    elif how == "symlink":
        out = tmp_path / "sym.csv"
        out.symlink_to(path)
    elif how == "report":
        flag = "--report"
    args = (
        upload_args(emulator, job, path, tmp_path / "state", flag, str(out))
        if command == "upload"
        else ["validate", str(path), flag, str(out)]
    )

    result = run_cli(emulator, *args)

    assert result.returncode == 2, result.stdout + result.stderr
    assert f"{flag} {str(out)!r} is the input file" in result.stderr
    assert "Traceback" not in result.stderr
    assert path.read_bytes() == before
    assert job not in emulator.state.uploads


# -- finding 2: a file replaced part-way through its upload ------------------------------------------
def test_cli_new_content_under_a_name_whose_upload_stopped_part_way_is_refused_until_finished_or_forced(
    tmp_path, emulator, job, make_client
):
    first, second = rows(50), rows(50, start=1000)
    path = write_csv(tmp_path / "hr.csv", HEADER, first)
    state = tmp_path / "state"
    partial_upload(path, job, make_client(job), LocalCheckpointStore(state))  # chunks 0-1 accepted
    earlier = checkpoint_file(state, path, job)
    write_csv(path, HEADER, second)  # the export rewrote the file
    args = upload_args(emulator, job, path, state, "--records-per-call", "10")

    refused = run_cli(emulator, *args)

    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert "an earlier upload of a file named 'hr.csv' to this job stopped part-way" in refused.stdout
    assert f"checkpoint {str(earlier)!r}" in refused.stdout and "--force" in refused.stdout
    assert emulator.state.rows(job) == first[:20]  # nothing of the new content was sent

    # The way the message gives: the earlier file back, finished (each row once), then the new one.
    write_csv(path, HEADER, first)
    assert run_cli(emulator, *args).returncode == 0
    write_csv(path, HEADER, second)
    assert run_cli(emulator, *args).returncode == 0
    assert counted(emulator.state.rows(job)) == counted(first + second)


def test_cli_force_sends_new_content_and_forgets_the_unfinished_upload_of_the_old(tmp_path, emulator, job, make_client):
    first, second = rows(50), rows(30, start=1000)
    path = write_csv(tmp_path / "hr.csv", HEADER, first)
    state = tmp_path / "state"
    partial_upload(path, job, make_client(job), LocalCheckpointStore(state))
    earlier = checkpoint_file(state, path, job)
    write_csv(path, HEADER, second)

    forced = run_cli(emulator, *upload_args(emulator, job, path, state, "--records-per-call", "10", "--force"))

    assert forced.returncode == 0, forced.stdout + forced.stderr
    assert counted(emulator.state.rows(job)) == counted(first[:20] + second)
    assert not earlier.exists()
    # Later content under the name is no longer held back by the forgotten upload.
    third = rows(10, start=2000)
    write_csv(path, HEADER, third)
    assert run_cli(emulator, *upload_args(emulator, job, path, state, "--records-per-call", "10")).returncode == 0
    assert counted(emulator.state.rows(job)) == counted(first[:20] + second + third)


# -- finding 3: the lock file ------------------------------------------------------------------------
def test_cli_a_run_whose_lock_file_was_deleted_stops_and_leaves_the_checkpoint_to_the_new_holder(
    tmp_path, emulator, job, monkeypatch
):
    data = rows(300)
    path = write_csv(tmp_path / "hr.csv", HEADER, data)
    state = tmp_path / "state"
    gate = UploadGate(emulator, job, monkeypatch)
    args = upload_args(emulator, job, path, state, "--records-per-call", "100", "--max-concurrency", "1")
    first = start_cli(emulator, *args)
    assert gate.arrived.wait(120)  # the first run is uploading chunk 0 (held) and holds the lock
    (lock,) = state.glob("checkpoint-*.lock")
    lock.unlink()  # an admin "cleaning up"

    second = run_cli(emulator, *args)  # locks a new file and sends every chunk
    gate.release.set()
    out, err = first.communicate(timeout=120)

    assert second.returncode == 0, second.stdout + second.stderr
    assert first.returncode == 1, out + err
    assert "lock file was removed or replaced" in out
    # Only the chunk in flight when the lock went is sent twice; the first run sent nothing after.
    assert counted(emulator.state.rows(job)) == counted(data) + counted(data[:100])
    third = run_cli(emulator, *args)  # the second run's finished checkpoint was not overwritten
    assert third.returncode == 0 and "already uploaded in full" in third.stdout
    assert counted(emulator.state.rows(job)) == counted(data) + counted(data[:100])


def test_cli_a_lock_path_that_is_a_symlink_is_refused_and_its_target_is_not_written(tmp_path, emulator, job):
    path = write_csv(tmp_path / "hr.csv", HEADER, rows(20))
    state = tmp_path / "state"
    state.mkdir()
    victim = tmp_path / "precious.txt"
    victim.write_bytes(b"keep me\n")
    lock = checkpoint_file(state, path, job).with_suffix(".lock")
    lock.symlink_to(victim)

    result = run_cli(emulator, *upload_args(emulator, job, path, state))

    assert result.returncode == 1, result.stdout + result.stderr
    assert f"the lock file {str(lock)!r} is not a regular file" in result.stdout
    assert victim.read_bytes() == b"keep me\n"
    assert job not in emulator.state.uploads


# -- finding 4: damaged checkpoints of every form, and --force's way out -----------------------------
def _valid_checkpoint(path: Path, job: str, **overrides: Any) -> bytes:
    options = UploadOptions(job_id=job, records_per_call=10)
    key = checkpoint_key(inspect(LocalFileSource(path)), options, default_mapping(HEADER))
    document = {
        "version": 2,
        "file_sha256": key.file_sha256,
        "job_id": job,
        "records_per_call": 10,
        "plan": key.plan,
        "completed": {},
        "chunk_sha256": {},
    }
    text = json.dumps(document | overrides)
    return text.replace('"@1e400"', "1e400").replace('"@bigint"', "9" * 5000).encode()


@pytest.mark.parametrize("form", ["1e400", "5000 digits", "link to /dev/zero", "fifo"])
def test_cli_a_damaged_checkpoint_of_any_form_is_a_clear_error_and_force_recovers(tmp_path, emulator, job, form):
    data = rows(30)
    path = write_csv(tmp_path / "hr.csv", HEADER, data)
    state = tmp_path / "state"
    state.mkdir()
    target = checkpoint_file(state, path, job)
    if form == "1e400":
        target.write_bytes(_valid_checkpoint(path, job, records_per_call="@1e400"))
    elif form == "5000 digits":
        target.write_bytes(_valid_checkpoint(path, job, completed={"0": "@bigint"}))
    elif form == "link to /dev/zero":
        target.symlink_to("/dev/zero")
    else:
        os.mkfifo(target)
    args = upload_args(emulator, job, path, state, "--records-per-call", "10")

    damaged = run_cli(emulator, *args, timeout=60)

    assert damaged.returncode == 1, damaged.stdout + damaged.stderr
    assert f"the checkpoint {str(target)!r} is damaged" in damaged.stdout and "--force" in damaged.stdout
    assert "Traceback" not in damaged.stdout + damaged.stderr
    assert job not in emulator.state.uploads

    forced = run_cli(emulator, *args, "--force", timeout=60)
    assert forced.returncode == 0, forced.stdout + forced.stderr
    assert counted(emulator.state.rows(job)) == counted(data)


def test_cli_a_directory_where_the_checkpoint_belongs_is_named_for_removal_even_with_force(tmp_path, emulator, job):
    path = write_csv(tmp_path / "hr.csv", HEADER, rows(20))
    state = tmp_path / "state"
    state.mkdir()
    target = checkpoint_file(state, path, job)
    target.mkdir()
    (target / "something").write_text("x")
    args = upload_args(emulator, job, path, state)

    for extra in ((), ("--force",)):
        result = run_cli(emulator, *args, *extra, timeout=60)
        assert result.returncode == 1, result.stdout + result.stderr
        assert str(target) in result.stdout
        assert "Traceback" not in result.stdout + result.stderr
    assert f"{str(target)!r} is a directory, not a checkpoint" in result.stdout and "Remove it" in result.stdout
    assert (target / "something").exists()  # left for the owner to look at
    assert job not in emulator.state.uploads


# -- finding 5: a damaged checkpoint blob in the Function ------------------------------------------------
@pytest.mark.parametrize("content", [b'{"version": 2, "file_sha', b"\xff\xfe\x80 not text", b"@1e400"])
def test_function_a_damaged_checkpoint_blob_fails_the_file_with_a_clear_report(emulator, function_env, content):
    env = function_env
    data = csv_bytes(HEADER, rows(20))
    sha = hashlib.sha256(data).hexdigest()
    key = CheckpointKey(sha, env.job, 0)
    if content == b"@1e400":
        content = (
            json.dumps({"version": 2, "file_sha256": sha, "job_id": env.job, "records_per_call": 5000, "completed": {}})
            .encode()
            .replace(b"5000", b"1e400")
        )
    env.service.state.upload_blob(f"checkpoints/{key.id}.json", content, overwrite=True)
    env.drop("main/hr.csv", data)

    with pytest.raises(FileFailedError, match="is damaged"):
        invoke_blob_trigger("hr_file_arrived", env.settings.containers.incoming, "main/hr.csv")

    names = env.settings.containers
    _moved, report_name = env.listing()[names.failed]
    report = env.read_json(names.failed, report_name)
    assert report["status"] == "failed"
    assert f"checkpoints/{key.id}.json is damaged" in report["error"]
    assert emulator.state.rows(env.job) == []


# -- finding 6: a file whose rows were all rejected, and date formats -----------------------------------
def test_cli_a_file_whose_rows_were_all_rejected_is_sent_once_the_mapping_is_fixed(tmp_path, emulator, job):
    data = [[email, "28/11/2024", remarks, rating] for email, _, remarks, rating in rows(20)]
    path = write_csv(tmp_path / "hr.csv", HEADER, data)
    state = tmp_path / "state"

    first = run_cli(emulator, *upload_args(emulator, job, path, state))
    assert first.returncode == 1 and "20 rejected" in first.stdout
    assert job not in emulator.state.uploads

    mapping = tmp_path / "mapping.json"
    mapping.write_text(
        json.dumps(
            {
                "scenarios": [
                    {"scenario": "performance_review", "columns": {n: n for n in HEADER}},
                ],
                "date_formats": {"EffectiveDate": "%d/%m/%Y"},
            }
        )
    )
    fixed = run_cli(emulator, *upload_args(emulator, job, path, state, "--mapping", str(mapping)))

    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    assert len(emulator.state.rows(job)) == 20  # every row, once
    again = run_cli(emulator, *upload_args(emulator, job, path, state, "--mapping", str(mapping)))
    assert again.returncode == 0 and "already uploaded in full" in again.stdout
    assert len(emulator.state.rows(job)) == 20


@pytest.mark.parametrize("bad", ["%Q", "%", "%d/%m/%"])
def test_cli_a_date_format_strptime_cannot_use_is_a_usage_error(tmp_path, emulator, bad):
    path = write_csv(tmp_path / "hr.csv", HEADER, rows(3))
    mapping = tmp_path / "mapping.json"
    mapping.write_text(
        json.dumps(
            {
                "scenarios": [{"scenario": "performance_review", "columns": {n: n for n in HEADER}}],
                "date_formats": {"EffectiveDate": bad},
            }
        )
    )

    result = run_cli(emulator, "validate", str(path), "--mapping", str(mapping))

    assert result.returncode == 2, result.stdout + result.stderr
    assert f"date_formats['EffectiveDate']: {bad!r} is not a strptime format" in result.stderr
    assert "Traceback" not in result.stderr


# -- finding 7: several accepted chunks the checkpoint could not record ---------------------------------
def test_every_accepted_chunk_a_failed_checkpoint_write_left_unrecorded_is_named(
    tmp_path, emulator, job, make_client, monkeypatch
):
    data = rows(30)
    path = write_csv(tmp_path / "hr.csv", HEADER, data)
    state = tmp_path / "state"
    store = LocalCheckpointStore(state)
    all_in_flight = threading.Barrier(3, timeout=60)
    original = emulator.state.record_upload

    def record_upload(job_id: str, *args: Any, **kwargs: Any) -> Any:
        if job_id.lower() == job.lower():
            all_in_flight.wait()  # the three chunks are all being sent before any is accepted
        return original(job_id, *args, **kwargs)

    monkeypatch.setattr(emulator.state, "record_upload", record_upload)
    options = UploadOptions(job_id=job, records_per_call=10, max_concurrency=3)
    with monkeypatch.context() as patch:
        FaultyDisk(state, 2, patch)  # the empty checkpoint is written; every save after fails
        report = run_upload(LocalFileSource(path), options, client=make_client(job), store=store)

    assert counted(emulator.state.rows(job)) == counted(data)
    statuses = {c.index: c.status for c in report.chunks}
    assert statuses == {0: "uploaded-not-recorded", 1: "uploaded-not-recorded", 2: "uploaded-not-recorded"}
    for first, last in ((2, 11), (12, 21), (22, 31)):
        assert f"rows {first}-{last}" in str(report.error)
    assert "No space left on device" in str(report.error)
    assert report.status == "partial" and report.rows.uploaded == 30 and report.rows.balanced


# -- finding 8: the accounting of a run stopped by a changed file -------------------------------------------
def test_a_file_changed_mid_upload_gives_a_balanced_report_that_says_where_reading_stopped(
    tmp_path, emulator, job, make_client
):
    data = rows(40_000)
    full = csv_bytes(HEADER, data)
    store = LocalCheckpointStore(tmp_path / "state")
    options = UploadOptions(job_id=job, records_per_call=1000, max_concurrency=1)

    report = run_upload(
        ChangingSource("hr.csv", full, full[: BLOCK + BLOCK // 2]), options, client=make_client(job), store=store
    )

    sent = rows_within_first_block(data, 1000)
    assert emulator.state.rows(job) == data[:sent]
    rows_out = report.to_dict()["rows"]
    assert rows_out["balanced"] is True
    assert rows_out["uploaded"] == sent and rows_out["not_uploaded"] == rows_out["in"] - sent > 0
    assert any("rows past them were not read" in note for note in report.notes)


# -- finding 9: a first row of data must not show in hints or the report -----------------------------------
def test_cli_a_headerless_file_whose_first_row_evades_the_data_check_shows_none_of_it(tmp_path, emulator, job):
    path = tmp_path / "hr.csv"
    path.write_bytes(
        b",July 7 1977,SECRETREMARK Effective immediately,Exceeds\r\n"
        b"leaktwo@contoso.com,1977-07-08T09:00:00Z,SECRETREMARK two,4\r\n"
    )
    odd = tmp_path / "odd.csv"  # a header, but its cells read like remarks, not names
    odd.write_bytes(b"Mail,SECRETREMARK the Effective date was moved twice,Rating\r\nx@contoso.com,y,z\r\n")
    for file in (path, odd):
        out = tmp_path / f"{file.stem}.json"
        results = [
            run_cli(emulator, "validate", str(file), "--report", str(out)),
            run_cli(emulator, "mapping", "infer", str(file)),
            run_cli(emulator, *upload_args(emulator, job, file, tmp_path / "state", "--report", str(out), "-v")),
        ]
        shown = "".join(r.stdout + r.stderr for r in results) + out.read_text()
        assert [r.returncode for r in results] == [1, 1, 1], shown
        assert "SECRET" not in shown and "July" not in shown and "Traceback" not in shown
        assert json.loads(out.read_text())["columns"] == []
    assert job not in emulator.state.uploads


# -- finding 11: a mapping of the wrong types --------------------------------------------------------------
@pytest.mark.parametrize(
    "document",
    [
        {"scenarios": [{"scenario": ["x"], "columns": {}}]},
        {"scenarios": [{"scenario": {"a": 1}, "columns": {}}]},
    ],
)
def test_cli_a_mapping_with_values_of_the_wrong_type_is_a_usage_error(tmp_path, emulator, document):
    path = write_csv(tmp_path / "hr.csv", HEADER, rows(3))
    mapping = tmp_path / "mapping.json"
    mapping.write_text(json.dumps(document))

    result = run_cli(emulator, "validate", str(path), "--mapping", str(mapping))

    assert result.returncode == 2, result.stderr
    assert "scenarios[1].scenario must be one of" in result.stderr and "Traceback" not in result.stderr


# -- finding 13: temp files of a killed run -------------------------------------------------------------------
def test_cli_temp_files_a_killed_run_left_are_removed_by_the_next_run(tmp_path, emulator, job):
    data = rows(20)
    path = write_csv(tmp_path / "hr.csv", HEADER, data)
    state = tmp_path / "state"
    state.mkdir()
    stale = [state / ".checkpoint-abc123.tmp", state / ".probe-def456.tmp"]
    fresh = state / ".checkpoint-being-written.tmp"  # another run's write in progress
    for file in (*stale, fresh):
        file.write_bytes(b"{")
    an_hour_ago = time.time() - 3600
    for file in stale:
        os.utime(file, (an_hour_ago, an_hour_ago))

    result = run_cli(emulator, *upload_args(emulator, job, path, state))

    assert result.returncode == 0, result.stdout + result.stderr
    assert [f.exists() for f in stale] == [False, False] and fresh.exists()
    assert counted(emulator.state.rows(job)) == counted(data)


# -- finding 14: SIGTERM and Ctrl-C still write the report ---------------------------------------------------
@pytest.mark.parametrize(("sig", "code", "name"), [(signal.SIGTERM, 143, "SIGTERM"), (signal.SIGINT, 130, "Ctrl-C")])
def test_cli_a_signalled_run_stops_writes_its_report_and_the_next_run_sends_the_rest(
    tmp_path, emulator, job, monkeypatch, sig, code, name
):
    data = rows(600)
    path = write_csv(tmp_path / "hr.csv", HEADER, data)
    state, out = tmp_path / "state", tmp_path / "report.json"
    gate = UploadGate(emulator, job, monkeypatch)
    args = upload_args(emulator, job, path, state, "--records-per-call", "100", "--max-concurrency", "1")
    run = start_cli(emulator, *args, "--report", str(out))
    assert gate.arrived.wait(120)  # chunk 0 is being sent

    run.send_signal(sig)
    gate.release.set()
    stdout, stderr = run.communicate(timeout=120)

    assert run.returncode == code, stdout + stderr
    assert "Traceback" not in stderr
    report = json.loads(out.read_text())
    assert report["status"] == "partial" and report["rows"]["balanced"] is True, report["rows"]
    assert f"interrupted ({name})" in report["error"]
    sent = report["rows"]["uploaded"]
    assert 100 <= sent < 600 and emulator.state.rows(job) == data[:sent]  # nothing sent after the stop

    after = run_cli(emulator, *args)
    assert after.returncode == 0, after.stdout + after.stderr
    assert counted(emulator.state.rows(job)) == counted(data)  # each row once


# -- finding 15: the turned-away run, errors once, a closed pipe -----------------------------------------------
def test_cli_a_run_turned_away_by_the_lock_says_not_run_and_prints_its_error_once(tmp_path, emulator, job, monkeypatch):
    data = rows(300)
    path = write_csv(tmp_path / "hr.csv", HEADER, data)
    state = tmp_path / "state"
    gate = UploadGate(emulator, job, monkeypatch)
    args = upload_args(emulator, job, path, state, "--records-per-call", "100")
    first = start_cli(emulator, *args)
    assert gate.arrived.wait(120)

    second = run_cli(emulator, *args)
    gate.release.set()
    first.communicate(timeout=120)

    assert second.returncode == 1
    assert second.stdout.startswith("hr.csv: not run: another run is uploading this file to this job")
    assert "rows read" not in second.stdout
    assert "another run is uploading" not in second.stderr  # printed once, not also as a log line
    assert counted(emulator.state.rows(job)) == counted(data)


def test_cli_validate_into_a_closed_pipe_ends_without_a_traceback(tmp_path):
    path = write_csv(tmp_path / "hr.csv", HEADER, rows(5))
    read_end, write_end = os.pipe()
    os.close(read_end)  # like `| head` that has already left
    try:
        result = subprocess.run(
            cli_command("validate", str(path)),
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
            env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])},
        )
    finally:
        os.close(write_end)
    assert "Traceback" not in result.stderr and "BrokenPipe" not in result.stderr
    assert result.returncode == 1
