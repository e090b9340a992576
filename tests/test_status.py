"""`hrconnector status` against Azurite, after real Function runs."""

from __future__ import annotations

import argparse
import io
import json
import subprocess
from datetime import datetime, timedelta, timezone

import pytest

from hrconnector_core.emulator.host import invoke_blob_trigger
from hrconnector_core.service import FileFailedError, HRConnectorService
from hrconnector_core.settings import Settings
from hrconnector_core.status import run

from .conftest import APP_ID, OTHER_APP_ID, SAMPLES, SECRET, FunctionEnv, cli_command, cli_env
from .csvdata import HEADER, csv_bytes, rows

DAY0 = datetime(2026, 3, 2, 8, 0, tzinfo=timezone.utc)


def status_args(env: FunctionEnv, *extra: str) -> list[str]:
    names = env.settings.containers
    return ["status", "--connection-string-env", "HR_STORAGE", "--state-container", names.state,
            "--failed-container", names.failed, *extra]  # fmt: skip


def run_status(env: FunctionEnv, now: datetime, *extra: str) -> tuple[int, str]:
    parser = argparse.ArgumentParser()
    from hrconnector_core.status import add_parser

    add_parser(parser.add_subparsers(dest="command"))
    out = io.StringIO()
    code = run(parser.parse_args(status_args(env, *extra)), out=out, now=now)
    return code, out.getvalue()


def test_status_shows_each_connector_and_the_failed_files_and_exits_1(emulator, function_env) -> None:
    env = function_env
    incoming = env.settings.containers.incoming
    env.drop("main/resignation.csv", (SAMPLES / "resignation.csv").read_bytes())
    invoke_blob_trigger("hr_file_arrived", incoming, "main/resignation.csv")
    good, bad = rows(2)
    bad[0] = "not-an-email"
    env.drop("main/mixed.csv", csv_bytes(HEADER, [good, bad]))
    invoke_blob_trigger("hr_file_arrived", incoming, "main/mixed.csv")
    emulator.state.register_job(env.job, OTHER_APP_ID)  # the next file is refused: 403
    env.drop("main/refused.csv", csv_bytes(HEADER, rows(3, start=10)))
    with pytest.raises(FileFailedError):
        invoke_blob_trigger("hr_file_arrived", incoming, "main/refused.csv")
    emulator.state.register_job(env.job, APP_ID)

    result = subprocess.run(cli_command(*status_args(env, "--json")), env=cli_env(emulator) | env.env,
                            capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    assert result.returncode == 1, result.stderr
    status = json.loads(result.stdout)
    (main,) = status["connectors"]
    assert main["name"] == "main"
    assert main["last_file"] == "main/refused.csv" and main["outcome"] == "failed"
    assert main["rows_uploaded"] == 0 and main["rows_rejected"] == 0
    (failed,) = main["failed_files"]
    assert failed["file"].startswith("main/") and failed["file"].endswith("/refused.csv")
    assert "jobId and corresponding appId do not match" in failed["reason"]
    assert failed["rows_not_uploaded"] == 3
    assert status["needs_attention"] is True
    assert any("1 file(s) waiting" in a for a in status["attention"])
    assert any("the last file failed" in a for a in status["attention"])
    assert main["profile_uploaded_at"] is None and main["export_overdue"] is None

    table = subprocess.run(cli_command(*status_args(env)), env=cli_env(emulator) | env.env,
                           capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    assert table.returncode == 1
    lines = table.stdout.splitlines()
    assert lines[2].split() == ["connector", "last", "file", "at", "(UTC)", "outcome", "uploaded", "rejected",
                                "profile", "uploaded", "profile", "expires", "export"]  # fmt: skip
    assert lines[3].split()[:2] == ["main", "main/refused.csv"] and "failed" in lines[3]
    assert "files waiting in the failed container:" in table.stdout and "refused.csv: the service" in table.stdout
    # Only state and reports were read: no HR value, no secret.
    for value in [SECRET, good[0], bad[0], *rows(3, start=10)[0]]:
        assert value not in result.stdout + table.stdout


def test_profile_expiry_and_an_overdue_export(emulator, function_env, monkeypatch) -> None:
    env = function_env
    monkeypatch.setenv("HR_EXPECTED_EVERY_HOURS", "24")
    clock = [DAY0]
    service = HRConnectorService(Settings.from_env(), clock=lambda: clock[0])
    env.drop("main/profile.csv", (SAMPLES / "employee-profile.csv").read_bytes())
    assert service.process(env.service.incoming.get_blob_client("main/profile.csv")).status == "processed"

    code, text = run_status(env, DAY0 + timedelta(hours=3))
    assert code == 0 and "nothing needs attention" in text
    code, text = run_status(env, DAY0 + timedelta(hours=3), "--json")
    (main,) = json.loads(text)["connectors"]
    assert datetime.fromisoformat(main["profile_uploaded_at"]) == DAY0 and main["profile_expires_on"] == "2026-04-01"
    assert main["export_overdue"] is False and main["expected_every_hours"] == 24
    assert main["failed_files"] == []

    code, text = run_status(env, DAY0 + timedelta(days=21))
    assert code == 1
    assert "main: export overdue: the last file is 504 hours old (expected every 24 hours)" in text
    assert "main: employee profiles not refreshed for 21 days; they expire on 2026-04-01" in text
    assert "OVERDUE" in text

    code, text = run_status(env, DAY0 + timedelta(days=31))
    assert code == 1 and "employee profiles expired on 2026-04-01" in text


def test_an_empty_deployment_needs_no_attention(function_env) -> None:
    code, text = run_status(function_env, DAY0)
    assert code == 0
    assert "(no connector has had a file yet)" in text and "nothing needs attention" in text


def test_a_missing_connection_string_is_a_usage_error(function_env, emulator) -> None:
    result = subprocess.run(cli_command("status", "--connection-string-env", "HR_NOT_SET"), env=cli_env(emulator),
                            capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    assert result.returncode == 2 and "HR_NOT_SET is not set" in result.stderr


# -- odd state: an unreadable connector document, report-only failures, names, many files -----------
def _put(env: FunctionEnv, container: str, name: str, data: bytes) -> None:
    env.service.blobs.get_blob_client(container, name).upload_blob(data, overwrite=True)


def _status_cli(
    emulator, env: FunctionEnv, *extra: str, encoding: str | None = None
) -> subprocess.CompletedProcess[bytes]:
    variables = cli_env(emulator) | env.env | ({"PYTHONIOENCODING": encoding} if encoding else {})
    return subprocess.run(cli_command(*status_args(env, *extra)), env=variables, capture_output=True, timeout=120,
                          check=False)  # fmt: skip


@pytest.mark.parametrize(
    ("document", "problem"),
    [(b"{garbled", "is not valid JSON"), (b"[1, 2]", "is not a JSON object"),
     (json.dumps({"last_file": "x", "profile": []}).encode(), "has fields of the wrong type"),
     (json.dumps({"last_file": {"at": "yesterday"}, "expected_every_hours": 24}).encode(),
      "has fields of the wrong type")],
)  # fmt: skip
def test_an_unreadable_connector_document_needs_attention(emulator, function_env, document, problem) -> None:
    env = function_env
    _put(env, env.settings.containers.state, "connectors/main.json", document)
    result = _status_cli(emulator, env)
    out = result.stdout.decode()
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr.decode()
    assert f"connectors/main.json {problem}" in out and "nothing needs attention" not in out


def test_report_only_failures_and_names_the_console_cannot_show(emulator, function_env) -> None:
    env = function_env
    failed = env.settings.containers.failed
    report = {"error": "the service rejected chunk 0", "rows": {"uploaded": 0, "not_uploaded": 5}}
    _put(env, failed, "main/20261121T000000Z-aaaa0000/gone.csv.report.json", json.dumps(report).encode())
    name = "main/20261121T000000Z-bbbb0000/Gehälter_従業員.csv"
    _put(env, failed, name, b"EmailAddress\nsecret.value@contoso.com\n")
    _put(env, failed, f"{name}.report.json", json.dumps({"error": "failed", "rows": "many"}).encode())
    result = _status_cli(emulator, env, encoding="cp1252")  # a Windows console or redirect
    out = result.stdout.decode("cp1252")
    assert result.returncode == 1, result.stderr
    assert "main/20261121T000000Z-aaaa0000/gone.csv: the service rejected chunk 0 (only the report is kept" in out
    assert "Geh\xe4lter_\\u5f93\\u696d\\u54e1.csv: failed" in out
    assert "2 file(s) waiting" in out and "secret.value" not in out

    status = json.loads(_status_cli(emulator, env, "--json").stdout)
    files = [f["file"] for c in status["connectors"] for f in c["failed_files"]]
    assert files == ["main/20261121T000000Z-aaaa0000/gone.csv", name]


def test_many_failed_files_are_summarised_in_the_table(emulator, function_env) -> None:
    env = function_env
    failed = env.settings.containers.failed
    for i in range(25):
        _put(env, failed, f"main/20261121T000000Z-{i:08x}/file{i}.csv.report.json", b'{"error": "refused"}')
    out = _status_cli(emulator, env).stdout.decode()
    assert out.count(": refused") == 20
    assert "... and 5 more (--json lists them all)" in out and "25 file(s) waiting" in out
    status = json.loads(_status_cli(emulator, env, "--json").stdout)
    assert len(status["connectors"][0]["failed_files"]) == 25
