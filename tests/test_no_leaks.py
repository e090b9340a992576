"""Secrets, tokens and HR values never reach logs, reports or error messages.

Everything is logged at DEBUG (azure-identity, msal, urllib3 included), then searched.
"""

from __future__ import annotations

import json
import logging
import subprocess

from hrconnector_core.emulator import Emulator
from hrconnector_core.pipeline import LocalFileSource, UploadOptions, run_upload

from .conftest import OTHER_APP_ID, SECRET, cli_command, cli_env, upload_args
from .csvdata import HEADER, csv_bytes, rows, write_csv


def hr_values(data: list[list[str]]) -> set[str]:
    return {value for row in data for value in row[:2]}  # e-mail addresses and dates


def issued_tokens(emulator: Emulator) -> set[str]:
    with emulator.state.lock:
        return set(emulator.state.tokens)


def assert_absent(text: str, secrets: set[str]) -> None:
    leaked = sorted(s for s in secrets if s in text)
    assert not leaked, f"{len(leaked)} secret or HR value(s) leaked"


def test_verbose_cli_output_and_report_hold_no_secret_token_or_hr_value(tmp_path, emulator, job):
    data = rows(30)
    path = write_csv(tmp_path / "hr.csv", HEADER, data)
    path.write_text(path.read_text() + "x@y.com,2024-01-01,a,b,EXTRA\n")  # a rejected row, reported by number
    report_path = tmp_path / "report.json"
    before = issued_tokens(emulator)
    result = subprocess.run(
        cli_command(
            *upload_args(
                emulator,
                job,
                path,
                tmp_path / "s",
                "--verbose",
                "--records-per-call",
                "7",
                "--report",
                str(report_path),
            )
        ),
        env=cli_env(emulator),
        capture_output=True,
        text=True,
        timeout=60,
    )
    tokens = issued_tokens(emulator) - before
    assert result.returncode == 1  # the rejected row
    assert len(tokens) == 1
    assert "DEBUG" in result.stderr and "azure" in result.stderr  # the libraries did log at DEBUG
    everything = result.stdout + result.stderr + report_path.read_text()
    assert_absent(everything, {SECRET} | tokens | hr_values(data) | {"x@y.com", "EXTRA"})
    assert "too-many-fields" in everything and "row 32" in everything


def test_pipeline_logs_at_debug_hold_no_secret_token_or_hr_value(tmp_path, emulator, job, make_client, caplog):
    caplog.set_level(logging.DEBUG)
    data = rows(20)
    path = write_csv(tmp_path / "hr.csv", HEADER, data)
    before = issued_tokens(emulator)
    report = run_upload(
        LocalFileSource(path), UploadOptions(job_id=job, records_per_call=5), client=make_client(job), store=None
    )
    tokens = issued_tokens(emulator) - before
    assert report.status == "succeeded" and tokens
    logged = "\n".join(f"{r.getMessage()} {r.args!r} {r.exc_text or ''}" for r in caplog.records)
    assert len(caplog.records) > 5
    assert_absent(logged + report.to_json(), {SECRET} | tokens | hr_values(data))


def test_a_failed_upload_error_names_rows_not_values(tmp_path, emulator, make_client, caplog):
    caplog.set_level(logging.DEBUG)
    foreign = "7a7a7a7a-0000-4000-8000-000000000001"
    emulator.state.register_job(foreign, OTHER_APP_ID)
    data = rows(5)
    path = write_csv(tmp_path / "hr.csv", HEADER, data)
    report = run_upload(LocalFileSource(path), UploadOptions(job_id=foreign), client=make_client(foreign), store=None)
    assert report.error and "rows 2-6" in report.error
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert_absent(logged + json.dumps(report.to_dict()), {SECRET} | hr_values(data))


def test_the_function_logs_context_on_every_record_and_no_secret_token_or_hr_value(emulator, function_env, caplog):
    """Logs at DEBUG, the state, reports and errors of a Function run; only the HR files and the
    rejected-rows CSV (HR data by design) may hold values."""
    from hrconnector_core.emulator.host import invoke_blob_trigger

    env = function_env
    caplog.set_level(logging.DEBUG)
    data = rows(12)
    bad = ["bad@@contoso", "2024-01-01T00:00:00Z", "private remark", "1"]
    env.drop("main/leaky.csv", csv_bytes(HEADER, [*data, bad]))
    before = issued_tokens(emulator)
    invoke_blob_trigger("hr_file_arrived", env.settings.containers.incoming, "main/leaky.csv")
    tokens = issued_tokens(emulator) - before
    assert tokens  # the app's for ingestion (and the identity's for the vault, unless cached by an earlier test)
    secrets = {SECRET, emulator.state.identity_header} | tokens | hr_values(data) | set(bad[:3])

    records = [r for r in caplog.records if not r.name.startswith("hrconnector_core.emulator")]
    logged = "\n".join(f"{r.getMessage()} {r.args!r} {r.exc_text or ''} {r.__dict__}" for r in records)
    service = env.service
    documents = [
        c.get_blob_client(b.name) for c in (service.processed, service.reports, service.state)
        for b in c.list_blobs() if not b.name.endswith(".csv")
    ]  # fmt: skip
    # two reports, the file's state, the checkpoint, the connector's state, the content lock (empty)
    assert len(documents) == 6
    stored = "\n".join(d.download_blob().readall().decode() for d in documents)
    assert_absent(logged + stored, secrets)

    core = [r for r in records if r.name.startswith("hrconnector_core")]
    assert any(r.threadName.startswith("upload") for r in core)  # the context reached the upload threads
    assert core and all(getattr(r, "hr.file", None) == "main/leaky.csv" for r in core)
    assert all(getattr(r, "hr.connector", None) == "main" and getattr(r, "hr.run", None) for r in core[1:])
    summary = next(r for r in core if "rows uploaded" in r.getMessage())
    assert getattr(summary, "hr.rows_uploaded") == 12 and getattr(summary, "hr.rows_rejected") == 1
