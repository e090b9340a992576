"""The command line as a user runs it: a subprocess against the HTTPS emulator."""

from __future__ import annotations

import json
import signal
import subprocess
import time

import pytest

from hrconnector_core.checkpoint import LocalCheckpointStore
from hrconnector_core.emulator import JOB_APP_MISMATCH
from hrconnector_core.pipeline import LocalFileSource, UploadOptions, checkpoint_key, default_mapping, inspect

from .conftest import APP_ID, OTHER_APP_ID, SAMPLES, SECRET, TENANT, cli_command, cli_env, upload_args
from .csvdata import HEADER, rows, write_csv


def run_cli(emulator, *args, timeout=60):
    return subprocess.run(cli_command(*args), env=cli_env(emulator), capture_output=True, text=True, timeout=timeout)


def test_upload_of_a_sample_file_exits_0_and_writes_the_report(tmp_path, emulator, job):
    out = tmp_path / "report.json"
    result = run_cli(
        emulator, *upload_args(emulator, job, SAMPLES / "resignation.csv", tmp_path / "s", "--report", str(out))
    )
    assert result.returncode == 0, result.stderr
    assert "succeeded" in result.stdout
    report = json.loads(out.read_text())
    assert report["rows"]["uploaded"] == 2 and report["status"] == "succeeded"
    assert emulator.state.rows(job) == [
        ["sarad@contoso.com", "2019-04-23T15:18:02.4675041+05:30", "2019-04-29T15:18:02.4675041+05:30"],
        ["pilarp@contoso.com", "2019-04-24T09:15:49Z", "2019-04-29T15:18:02.7117540"],
    ]


def test_the_sample_scripts_parameter_names_work(tmp_path, emulator, job):
    args = [
        "upload",
        "-tenantId",
        TENANT,
        "-appId",
        APP_ID,
        "-appSecret",
        SECRET,
        "-jobId",
        job,
        "-filePath",
        str(SAMPLES / "job-level-change.csv"),
        "--authority-host",
        emulator.url,
        "--ingestion-url",
        emulator.url,
        "--state-dir",
        str(tmp_path),
    ]
    result = run_cli(emulator, *args)
    assert result.returncode == 0, result.stderr
    assert len(emulator.state.rows(job)) == 2


def test_a_wrong_secret_is_a_configuration_error_with_the_platforms_reason(tmp_path, emulator, job):
    env = cli_env(emulator) | {"HR_TEST_SECRET": "wrong-secret-value"}
    result = subprocess.run(
        cli_command(*upload_args(emulator, job, SAMPLES / "resignation.csv", tmp_path)),
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "invalid_client" in result.stderr or "AADSTS7000215" in result.stderr
    assert "Traceback" not in result.stderr and "wrong-secret-value" not in result.stderr + result.stdout


def test_an_unknown_app_gets_aadsts700016(tmp_path, emulator, job):
    args = upload_args(emulator, job, SAMPLES / "resignation.csv", tmp_path)
    args[args.index(APP_ID)] = "deadbeef-0000-4000-8000-000000000000"
    result = run_cli(emulator, *args)
    assert result.returncode == 2 and "AADSTS700016" in result.stderr and "Traceback" not in result.stderr


def test_a_job_of_another_app_exits_1_with_the_services_reason(tmp_path, emulator):
    foreign = "3c3c3c3c-0000-4000-8000-000000000403"
    emulator.state.register_job(foreign, OTHER_APP_ID)
    result = run_cli(emulator, *upload_args(emulator, foreign, SAMPLES / "resignation.csv", tmp_path))
    assert result.returncode == 1
    assert "403" in result.stdout and JOB_APP_MISMATCH in result.stdout
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["upload", "--job-id", "j"], "--file"),
        (["upload", "--job-id", "j", "--file", "/no/such.csv", "--dry-run"], "no such file"),
        (
            [
                "upload",
                "--job-id",
                "j",
                "--file",
                str(SAMPLES / "resignation.csv"),
                "--tenant-id",
                "t",
                "--app-id",
                "a",
            ],
            "no credential",
        ),
        (
            ["upload", "--job-id", "j", "--file", str(SAMPLES / "resignation.csv"), "--records-per-call", "0"],
            "at least 1",
        ),
        (
            [
                "upload",
                "--job-id",
                "j",
                "--file",
                str(SAMPLES / "resignation.csv"),
                "--tenant-id",
                "t",
                "--app-id",
                "a",
                "--app-secret",
                "x",
                "--app-secret-env",
                "Y",
            ],
            "give one credential",
        ),
    ],
)
def test_usage_errors_exit_2_without_a_traceback(emulator, args, message):
    result = run_cli(emulator, *args)
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr


def test_dry_run_prints_the_plan_without_a_token(tmp_path, emulator):
    path = write_csv(tmp_path / "hr.csv", HEADER, rows(12))
    before = dict(emulator.state.counters)
    result = run_cli(emulator, "upload", "--job-id", "j", "--file", str(path), "--dry-run", "--records-per-call", "5")
    assert result.returncode == 0, result.stderr
    assert "chunk 2: rows 12-13, 2 records, planned" in result.stdout
    assert emulator.state.counters == before


@pytest.mark.slow
def test_a_run_killed_mid_file_resumes_with_only_the_missing_chunks(tmp_path, emulator, job):
    data = rows(100)
    path = write_csv(tmp_path / "hr.csv", HEADER, data)
    state_dir = tmp_path / "state"
    store = LocalCheckpointStore(state_dir)
    source = LocalFileSource(path)
    key = checkpoint_key(inspect(source), UploadOptions(job_id=job, records_per_call=10), default_mapping(HEADER))
    emulator.state.set_faults(latency_ms=400)  # each call takes a while: time to kill mid-file

    proc = subprocess.Popen(
        cli_command(*upload_args(emulator, job, path, state_dir, "--records-per-call", "10", "--max-concurrency", "1")),
        env=cli_env(emulator),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        checkpoint = store.load(key)
        if checkpoint is not None and len(checkpoint.completed) >= 3:
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    time.sleep(0.6)  # let the emulator finish (and abandon) the call that was in flight

    checkpoint = store.load(key)
    assert checkpoint is not None
    done = checkpoint.completed
    assert 3 <= len(done) < 10
    assert len(emulator.state.uploads[job]) == len(done)
    emulator.state.set_faults(latency_ms=0)

    out = tmp_path / "second.json"
    result = run_cli(
        emulator, *upload_args(emulator, job, path, state_dir, "--records-per-call", "10", "--report", str(out))
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(out.read_text())
    assert report["rows"]["previously_uploaded"] == 10 * len(done)
    assert report["rows"]["uploaded"] == 100 - 10 * len(done)
    resent = {c["index"] for c in report["chunks"]["items"] if c["status"] == "uploaded"}
    assert resent == set(range(10)) - set(done)
    assert sorted(emulator.state.rows(job)) == sorted(data)  # every row exactly once


def test_certificate_authentication(tmp_path, emulator, job):
    import trustme

    leaf = trustme.CA(key_type=trustme.KeyType.RSA).issue_cert("hr-connector-app", key_type=trustme.KeyType.RSA)
    cert_app = "c3c3c3c3-0000-4000-8000-00000000ce27"
    emulator.state.register_app(TENANT, cert_app, certificate_pem=leaf.cert_chain_pems[0].bytes())
    emulator.state.register_job(job, cert_app)
    pem = tmp_path / "app.pem"
    leaf.private_key_and_cert_chain_pem.write_to_path(str(pem))
    args = upload_args(emulator, job, SAMPLES / "resignation.csv", tmp_path / "s")
    args[args.index(APP_ID)] = cert_app
    cred = args.index("--app-secret-env")
    args[cred : cred + 2] = ["--certificate", str(pem)]
    result = run_cli(emulator, *args)
    assert result.returncode == 0, result.stderr
    assert len(emulator.state.rows(job)) == 2

    other = trustme.CA(key_type=trustme.KeyType.RSA).issue_cert("someone-else", key_type=trustme.KeyType.RSA)
    other.private_key_and_cert_chain_pem.write_to_path(str(pem))
    refused = run_cli(emulator, *args, "--force")
    assert refused.returncode == 2 and "AADSTS700027" in refused.stderr


def test_the_secret_comes_from_key_vault_through_the_managed_identity(tmp_path, emulator, job):
    """DefaultAzureCredential -> managed identity endpoint -> Key Vault challenge -> secret -> upload."""
    identity = "e1e1e1e1-0000-4000-8000-0000000000e1"
    emulator.state.register_managed_identity(identity, TENANT)
    emulator.state.set_secret("hr-app-secret", "an-old-value")
    emulator.state.set_secret("hr-app-secret", SECRET)  # the current version wins
    args = upload_args(emulator, job, SAMPLES / "resignation.csv", tmp_path / "s")
    cred = args.index("--app-secret-env")
    args[cred : cred + 2] = [
        "--key-vault-url",
        emulator.url,
        "--secret-name",
        "hr-app-secret",
        "--key-vault-skip-challenge-check",
    ]
    env = cli_env(emulator) | {
        "IDENTITY_ENDPOINT": f"{emulator.url}/msi/token",
        "IDENTITY_HEADER": emulator.state.identity_header,
        "AZURE_CLIENT_ID": identity,
    }
    env.pop("HR_TEST_SECRET")
    before = emulator.state.counters.get("vault_secret_reads", 0)
    result = subprocess.run(cli_command(*args, "--verbose"), env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr[-2000:]
    assert emulator.state.counters["vault_secret_reads"] == before + 1
    assert len(emulator.state.rows(job)) == 2
    assert SECRET not in result.stdout + result.stderr

    emulator.state.vault_readers.discard(identity)  # the identity loses its role assignment
    denied = subprocess.run(cli_command(*args, "--force"), env=env, capture_output=True, text=True, timeout=60)
    assert denied.returncode == 2 and "Forbidden" in denied.stderr and "Traceback" not in denied.stderr


def test_validate_prints_a_table_of_issues_and_exits_1_on_invalid_rows(tmp_path, emulator):
    report_path, rejected = tmp_path / "v.json", tmp_path / "rejected.csv"
    result = run_cli(
        emulator,
        "validate",
        str(SAMPLES / "multi-scenario.csv"),
        "--report",
        str(report_path),
        "--rejected",
        str(rejected),
    )
    assert result.returncode == 1, result.stderr
    assert "required-missing" in result.stdout and "4, 5" in result.stdout
    assert "2 rejected row(s) written to" in result.stdout
    report = json.loads(report_path.read_text())
    assert (report["rows"]["planned"], report["rows"]["rejected"]) == (6, 2)
    assert report["scenarios"]["Job level change"] == {"valid": 0, "rejected": 2}
    assert "@contoso.com" not in result.stdout + result.stderr + report_path.read_text()
    assert rejected.read_text().count("@contoso.com") == 2  # the rows themselves, for the admin to fix


def test_validate_exits_0_when_every_row_is_valid(emulator):
    result = run_cli(emulator, "validate", str(SAMPLES / "resignation.csv"))
    assert result.returncode == 0 and "planned" in result.stdout


def test_validate_with_a_mapping_file(tmp_path, emulator):
    """The mapping's own column names and day/month/year dates are applied: a date that does not
    fit the mapping's format is rejected by row and column, the others pass."""
    mappings = SAMPLES / "mappings"
    lines = (mappings / "resignation-own-columns.csv").read_text(encoding="utf-8-sig").splitlines()
    lines.append("third@contoso.com;04/23/2019;29/04/2019")  # month/day: not the mapping's format
    data = tmp_path / "own.csv"
    data.write_text("\r\n".join(lines) + "\r\n", encoding="utf-8")
    mapping = mappings / "resignation-own-columns.json"
    report_path = tmp_path / "v.json"
    result = run_cli(emulator, "validate", str(data), "--mapping", str(mapping), "--report", str(report_path))
    assert result.returncode == 1, result.stdout + result.stderr
    report = json.loads(report_path.read_text())
    expected = json.loads(mapping.read_text())
    assert report["mapping"]["scenarios"] == expected["scenarios"]
    assert report["mapping"]["date_formats"] == expected["date_formats"]
    assert report["scenarios"] == {"Resignation": {"valid": 2, "rejected": 1}}
    assert (report["rows"]["planned"], report["rows"]["rejected"]) == (2, 1)
    assert [(i["row"], i["column"], i["code"]) for i in report["issues"]["items"]] == [
        (4, "Notice given", "invalid-date")
    ]
    assert "04/23/2019" not in result.stdout + result.stderr + report_path.read_text()


def test_a_broken_mapping_file_is_a_usage_error(tmp_path, emulator):
    bad = tmp_path / "m.json"
    bad.write_text('{"scenarios": [{"scenario": "resignation", "columns": {"EmailAddress": "E"}}]}')
    result = run_cli(emulator, "validate", str(SAMPLES / "resignation.csv"), "--mapping", str(bad))
    assert result.returncode == 2 and "needs a column for ResignationDate" in result.stderr


def test_mapping_infer_proposes_a_mapping_or_names_the_closest_headers(tmp_path, emulator):
    good = run_cli(emulator, "mapping", "infer", str(SAMPLES / "employee-profile.csv"))
    assert good.returncode == 0
    assert json.loads(good.stdout)["scenarios"][0]["columns"]["EmployeeAddressLine1"] == "EmployeeAddLine1"
    own = tmp_path / "own.csv"
    own.write_text("E-mail,Effective date\r\n")
    bad = run_cli(emulator, "mapping", "infer", str(own))
    assert bad.returncode == 1
    assert "EffectiveDate (closest header: 'Effective date')" in bad.stderr


def test_upload_with_the_reject_file_policy_sends_nothing(tmp_path, emulator, job):
    result = run_cli(
        emulator,
        *upload_args(
            emulator,
            job,
            SAMPLES / "multi-scenario.csv",
            tmp_path / "s",
            "--policy",
            "reject-file",
            "--rejected",
            str(tmp_path / "r.csv"),
        ),
    )
    assert result.returncode == 1 and "nothing was uploaded" in result.stdout
    assert job not in emulator.state.uploads
    assert (tmp_path / "r.csv").exists()

    default = run_cli(emulator, *upload_args(emulator, job, SAMPLES / "multi-scenario.csv", tmp_path / "s"))
    assert default.returncode == 1  # two rows set aside
    assert len(emulator.state.rows(job)) == 6
