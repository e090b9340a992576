"""Secrets, tokens and HR values never reach logs, reports or error messages.

Everything is logged at DEBUG (azure-identity, msal, urllib3 included), then searched.
"""

from __future__ import annotations

import json
import logging
import subprocess
import uuid

from hrconnector_core.emulator import Emulator
from hrconnector_core.pipeline import LocalFileSource, UploadOptions, run_upload

from .conftest import OTHER_APP_ID, SECRET, cli_command, cli_env, upload_args
from .csvdata import csv_bytes

# Every scenario's columns in one file, so e-mails, dates, remarks, ratings, levels, names and
# addresses all pass through validation, chunking, upload and reporting.
LEAK_HEADER = [
    "HRScenario", "EmailAddress", "EffectiveDate", "Remarks", "Rating", "OldLevel", "NewLevel",
    "ResignationDate", "LastWorkingDate", "EmployeeFirstName", "EmployeeLastName", "EmployeeAddressLine1",
    "EmployeeAddressLine2", "EmployeeCity", "EmployeeState", "EmployeeZipCode", "EmployeeCountry",
    "EmployeeDepartment", "EmployeeType", "EmployeeRole",
]  # fmt: skip
SCENARIO_COLUMNS = {
    "Performance review": ["EffectiveDate", "Remarks", "Rating"],
    "Performance improvement plan": ["EffectiveDate", "Remarks", "Rating"],
    "Job level change": ["EffectiveDate", "Remarks", "OldLevel", "NewLevel"],
    "Resignation": ["ResignationDate", "LastWorkingDate"],
    "Employee profile": LEAK_HEADER[9:],
}


def unique_hr_rows(n: int, *, start: int = 0) -> list[list[str]]:
    """Rows in which every value is unique in the file and distinctive enough to search for: a
    random tag in every text, a date of its own (2019, far from any log time stamp) per row."""
    tag = uuid.uuid4().hex[:6]
    out = []
    for i in range(start, start + n):
        scenario = list(SCENARIO_COLUMNS)[i % len(SCENARIO_COLUMNS)]
        day, second = divmod(i, 60)
        date = f"2019-{1 + day // 28 % 12:02d}-{1 + day % 28:02d}T{7 + i % 11:02d}:{i % 60:02d}:{second:02d}Z"
        later = date[:-1] + ".5Z"
        values = {
            "EffectiveDate": date,
            "ResignationDate": date,
            "LastWorkingDate": later,
            "Remarks": f'Remark{tag}r{i} said "fine", then\nleft early, on {tag}x{i}',
            "Rating": f"Rate{tag}n{i}",
            "OldLevel": f"Old{tag}l{i}",
            "NewLevel": f"New{tag}l{i}",
            "EmployeeZipCode": f"{i:05d}-{tag}",
        }
        row = {c: values.get(c, f"{c[8:] or c}{tag}v{i}") for c in SCENARIO_COLUMNS[scenario]}
        row |= {"HRScenario": scenario, "EmailAddress": f"person{tag}.{i}@contoso.com"}
        out.append([row.get(c, "") for c in LEAK_HEADER])
    return out


def hr_values(data: list[list[str]]) -> set[str]:
    """Every HR value of the rows, and the forms a leak could take (escaped, one line of it)."""
    found: set[str] = set()
    for row in data:
        for column, value in zip(LEAK_HEADER, row, strict=False):
            if not value or column == "HRScenario":  # scenario names appear in reports by design
                continue
            found |= {value, json.dumps(value)[1:-1], repr(value)[1:-1], *value.splitlines()}
    return found


def issued_tokens(emulator: Emulator) -> set[str]:
    with emulator.state.lock:
        return set(emulator.state.tokens)


def assert_absent(text: str, secrets: set[str]) -> None:
    leaked = sorted(s for s in secrets if s in text)
    assert not leaked, f"{len(leaked)} secret or HR value(s) leaked"


def test_verbose_cli_output_and_report_hold_no_secret_token_or_hr_value(tmp_path, emulator, job):
    data = unique_hr_rows(30)
    extra = [*unique_hr_rows(1, start=30)[0], "EXTRA-f1eld-value"]  # a rejected row, reported by number
    path = tmp_path / "hr.csv"
    path.write_bytes(csv_bytes(LEAK_HEADER, [*data, extra]))
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
    assert_absent(everything, {SECRET} | tokens | hr_values([*data, extra]) | {"EXTRA-f1eld-value"})
    assert "too-many-fields" in everything and "row 32" in everything
    assert sorted(emulator.state.rows(job)) == sorted(data)  # the values did travel, where they should


def test_pipeline_logs_at_debug_hold_no_secret_token_or_hr_value(tmp_path, emulator, job, make_client, caplog):
    caplog.set_level(logging.DEBUG)
    data = unique_hr_rows(20)
    path = tmp_path / "hr.csv"
    path.write_bytes(csv_bytes(LEAK_HEADER, data))
    before = issued_tokens(emulator)
    report = run_upload(
        LocalFileSource(path), UploadOptions(job_id=job, records_per_call=5), client=make_client(job), store=None
    )
    tokens = issued_tokens(emulator) - before
    assert report.status == "succeeded" and tokens
    logged = "\n".join(f"{r.getMessage()} {r.args!r} {r.exc_text or ''}" for r in caplog.records)
    assert len(caplog.records) > 5
    assert_absent(logged + report.to_json(), {SECRET} | tokens | hr_values(data))
    assert sorted(emulator.state.rows(job)) == sorted(data)


def test_a_failed_upload_error_names_rows_not_values(tmp_path, emulator, make_client, caplog):
    caplog.set_level(logging.DEBUG)
    foreign = "7a7a7a7a-0000-4000-8000-000000000001"
    emulator.state.register_job(foreign, OTHER_APP_ID)
    data = unique_hr_rows(5)
    path = tmp_path / "hr.csv"
    path.write_bytes(csv_bytes(LEAK_HEADER, data))
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
    data = unique_hr_rows(12)
    bad = unique_hr_rows(1, start=12)[0]
    bad[1] = "bad@@" + bad[1]  # rejected: its values go to the rejected-rows CSV only
    env.drop("main/leaky.csv", csv_bytes(LEAK_HEADER, [*data, bad]))
    before = issued_tokens(emulator)
    invoke_blob_trigger("hr_file_arrived", env.settings.containers.incoming, "main/leaky.csv")
    tokens = issued_tokens(emulator) - before
    assert tokens  # the app's for ingestion (and the identity's for the vault, unless cached by an earlier test)
    assert sorted(emulator.state.rows(env.job)) == sorted(data)
    secrets = {SECRET, emulator.state.identity_header} | tokens | hr_values([*data, bad])

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
