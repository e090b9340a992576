"""Issue 10, the HTTP cases: redirects, plain http, Retry-After and TLS, echoed bodies.

Hostile endpoints are real HTTPS servers (tests/hostile_servers.py); tokens come from the
emulator's Entra, and what each server received is asserted row by row.
"""

from __future__ import annotations

import json
import logging
import re
import subprocess
from pathlib import Path

import pytest
from azure.core.credentials import AccessToken

from hrconnector_core.chunking import Chunk, encode_rows
from hrconnector_core.clouds import InsecureEndpointError, resolve_cloud
from hrconnector_core.credentials import TokenProvider
from hrconnector_core.emulator.server import _file_part, _parse_csv
from hrconnector_core.errors import ConfigurationError, UploadError
from hrconnector_core.ingestion import IngestionClient, RetryPolicy, redact
from hrconnector_core.pipeline import LocalFileSource, UploadOptions, run_upload
from hrconnector_core.settings import Settings

from .conftest import cli_command, cli_env, upload_args
from .csvdata import HEADER, rows, write_csv
from .hostile_servers import Answer, HostileServer, Received, bundle, serving


def rows_posted(request: Received) -> list[list[str]]:
    part = _file_part(request.headers.get("Content-Type", ""), request.body)
    assert part is not None
    return _parse_csv(part[1])[1]


def run_cli(
    emulator, job, path: Path, tmp_path: Path, ca_bundle: Path, *extra: str
) -> subprocess.CompletedProcess[str]:
    env = cli_env(emulator) | {"REQUESTS_CA_BUNDLE": str(ca_bundle)}
    return subprocess.run(
        cli_command(*upload_args(emulator, job, path, tmp_path / "state", *extra)),
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def with_ingestion(args: list[str], url: str) -> list[str]:
    args = list(args)
    args[args.index("--ingestion-url") + 1] = url
    return args


# -- case 5: redirects are never followed ------------------------------------------------------


def test_redirects_are_permanent_errors_and_no_row_goes_anywhere_else(tmp_path, emulator, job):
    data = rows(12)
    path = write_csv(tmp_path / "hr.csv", HEADER, data)

    def portal(request: Received) -> Answer:  # a login page that answers any GET with 200
        return Answer(200, b"<html><body>Sign in</body></html>", content_type="text/html")

    def elsewhere(request: Received) -> Answer:  # another host that would gladly take the rows
        return Answer(200, b'{"recordsReceived": 12}', content_type="application/json")

    with serving(portal, elsewhere, host="127.0.0.2") as (login, other):
        cases = {
            302: f"{login.url}/login?session=s3ss10n-t0ken",
            307: f"{other.url}/api/signals?jobid={job}",
        }
        for status, location in cases.items():

            def redirecting(request: Received, status: int = status, location: str = location) -> Answer:
                return Answer(status, b"moved", headers={"Location": location})

            with HostileServer(redirecting) as ingestion:
                ca = bundle(tmp_path / "ca.pem", emulator.ca_path, login, ingestion)
                report_path = tmp_path / f"report-{status}.json"
                args = upload_args(emulator, job, path, tmp_path / f"state-{status}", "--report", str(report_path))
                result = subprocess.run(
                    cli_command(*with_ingestion(args, ingestion.url)),
                    env=cli_env(emulator) | {"REQUESTS_CA_BUNDLE": str(ca)},
                    capture_output=True,
                    text=True,
                    timeout=120,
                )
                assert result.returncode == 1, result.stderr
                assert "Traceback" not in result.stderr
                report = json.loads(report_path.read_text())
                assert report["status"] == "failed"
                assert report["rows"]["uploaded"] == 0 and report["rows"]["not_uploaded"] == 12
                (chunk,) = report["chunks"]["items"]
                assert chunk["status"] == "failed" and chunk["http_status"] == status
                assert len(chunk["attempts"]) == 1  # permanent: not retried
                target = location.split("/login")[0].split("/api")[0]  # scheme and host only
                assert target in chunk["error"] and "/login" not in chunk["error"]
                assert target in chunk["error"] and target in report["error"] and f"HTTP {status}" in report["error"]
                assert "s3ss10n-t0ken" not in json.dumps(report) + result.stdout + result.stderr
                (posted,) = ingestion.received  # the one POST, to the configured URL only
                assert posted.method == "POST" and rows_posted(posted) == data
        assert login.received == [] and other.received == []  # neither the GET nor the re-POST happened
    assert job not in emulator.state.uploads  # nothing counted anywhere

    # The admin fixes the URL: the whole file goes to the service, each row once.
    result = run_cli(emulator, job, path, tmp_path, emulator.ca_path)
    assert result.returncode == 0, result.stderr
    assert emulator.state.rows(job) == data


# -- case 6: https only, except loopback -------------------------------------------------------


@pytest.mark.parametrize(
    ("option", "url", "message"),
    [
        ("--ingestion-url", "http://webhook.ingestion.office.com", "ingestion URL (--ingestion-url"),
        ("--ingestion-url", "http://10.0.0.5:8080", "must use https"),
        ("--ingestion-url", "webhook.ingestion.office.com", "must be an https:// URL"),
        ("--authority-host", "http://login.microsoftonline.com", "authority host (--authority-host"),
        ("--authority-host", "http://127.0.0.1:8443", "must use https"),  # azure-identity takes no http authority
    ],
)
def test_plain_http_is_a_usage_error_before_anything_is_sent(tmp_path, emulator, job, option, url, message):
    path = write_csv(tmp_path / "hr.csv", HEADER, rows(3))
    args = upload_args(emulator, job, path, tmp_path / "state")
    args[args.index(option) + 1] = url
    before = dict(emulator.state.counters)
    result = subprocess.run(cli_command(*args), env=cli_env(emulator), capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr
    assert emulator.state.counters.get("token_requests", 0) == before.get("token_requests", 0)
    assert job not in emulator.state.uploads


def test_loopback_http_is_allowed_for_local_tests_and_anything_else_is_not():
    for url in ("http://127.0.0.1:8080", "http://127.9.9.9", "http://[::1]:3000", "http://localhost:7071"):
        assert resolve_cloud(ingestion_url=url).ingestion_url == url
    for url in ("http://127.0.0.1.example.com", "http://localhost.example.com", "http://[::2]", "ftp://127.0.0.1"):
        with pytest.raises(InsecureEndpointError):
            resolve_cloud(ingestion_url=url)
    assert resolve_cloud(ingestion_url="https://proxy.example/").ingestion_url == "https://proxy.example"


def test_the_functions_plain_http_ingestion_url_is_a_settings_error_naming_the_setting():
    env = {
        "HR_STORAGE": "UseDevelopmentStorage=true",
        "HR_TENANT_ID": "t",
        "HR_KEY_VAULT_URL": "https://kv.example",
        "HR_JOB_ID": "job-1",
        "HR_APP_ID": "app-1",
        "HR_SECRET_NAME": "hr-secret",
        "HR_INGESTION_URL": "http://webhook.ingestion.office.com",
    }
    settings = Settings.from_env(env)
    assert settings.connectors == {}
    assert "HR_INGESTION_URL" in settings.problems[0] and "must use https" in settings.problems[0]
    with pytest.raises(ConfigurationError, match="HR_INGESTION_URL"):
        settings.route("default/hr.csv")


# -- case 9: Retry-After, a floor for 5xx, certificates ----------------------------------------


class FakeTime:
    """An injected clock: sleeping moves it on, nothing waits."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


class StaticToken:
    def get_token(self, *scopes: str, **kwargs: object) -> AccessToken:
        return AccessToken("static-token", 2**31)


def one_chunk() -> Chunk:
    return Chunk(0, 2, 3, 2, encode_rows(HEADER, rows(2)))


def client_for(url: str, fake: FakeTime, policy: RetryPolicy | None = None) -> IngestionClient:
    cloud = resolve_cloud(ingestion_url=url)
    tokens = TokenProvider(StaticToken(), cloud.scope)
    return IngestionClient(cloud, "job", tokens, policy=policy, sleep=fake.sleep, clock=fake.clock)


def test_retry_after_past_the_chunk_budget_stops_at_once_with_the_services_wait(tmp_path, monkeypatch):
    fake = FakeTime()
    with HostileServer(lambda r: Answer(429, b"slow down", headers={"Retry-After": "3600"})) as server:
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(bundle(tmp_path / "ca.pem", server)))
        with pytest.raises(UploadError) as err:
            client_for(server.url, fake).upload(one_chunk())
        assert len(server.received) == 1
    assert fake.sleeps == []  # no seven 60 s waits
    assert err.value.retry_after == 3600 and not err.value.permanent
    assert "asked to wait 3600 s" in str(err.value) and "600 s" in str(err.value)
    assert err.value.attempts[0].to_dict()["retry_after_s"] == 3600


def test_the_report_shows_the_wait_the_service_asked_for_past_the_budget(tmp_path, monkeypatch):
    fake = FakeTime()
    data = rows(6)
    path = write_csv(tmp_path / "hr.csv", HEADER, data)
    with HostileServer(lambda r: Answer(503, b"", headers={"Retry-After": "3600"})) as server:
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(bundle(tmp_path / "ca.pem", server)))
        report = run_upload(
            LocalFileSource(path),
            UploadOptions(job_id="job", records_per_call=3, max_concurrency=1),
            client=client_for(server.url, fake),
            store=None,
        )
        assert len(server.received) == 1  # the first chunk once; the second never sent
    assert fake.sleeps == []
    first, second = sorted(report.to_dict()["chunks"]["items"], key=lambda c: c["index"])
    assert first["status"] == "failed" and first["attempts"][0]["retry_after_s"] == 3600
    assert "asked to wait 3600 s" in first["error"] and "asked to wait 3600 s" in (report.error or "")
    assert second["status"] == "not-attempted"
    assert report.rows.not_uploaded == 6 and report.status == "failed"


def test_retry_after_within_the_budget_is_honoured_in_full(tmp_path, monkeypatch):
    fake = FakeTime()
    answers = iter([Answer(429, headers={"Retry-After": "90"})] * 2 + [Answer(200, b"{}")])
    with HostileServer(lambda r: next(answers)) as server:
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(bundle(tmp_path / "ca.pem", server)))
        result = client_for(server.url, fake).upload(one_chunk())
        assert len(server.received) == 3
    assert fake.sleeps == [90, 90]  # not capped at max_delay (60 s)
    assert [a.status for a in result.attempts] == [429, 429, 200]


def test_a_5xx_waits_at_least_the_floor_even_with_retry_after_zero(tmp_path, monkeypatch):
    fake = FakeTime()
    policy = RetryPolicy(max_attempts=6, base_delay=1.0, max_delay=60.0)
    with HostileServer(lambda r: Answer(503, b"busy", headers={"Retry-After": "0"})) as server:
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(bundle(tmp_path / "ca.pem", server)))
        with pytest.raises(UploadError) as err:
            client_for(server.url, fake, policy).upload(one_chunk())
        assert len(server.received) == 6
    assert fake.sleeps == [0.5, 1.0, 2.0, 4.0, 8.0]  # half the exponential cap, never back-to-back
    assert err.value.status == 503


def test_an_unverifiable_certificate_is_permanent_and_not_retried(tmp_path, monkeypatch):
    fake = FakeTime()
    with HostileServer(lambda r: Answer(200, b"{}")) as impostor, HostileServer(lambda r: Answer(200)) as trusted:
        # The bundle trusts another CA than the one that signed the impostor's certificate.
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(bundle(tmp_path / "ca.pem", trusted)))
        with pytest.raises(UploadError) as err:
            client_for(impostor.url, fake).upload(one_chunk())
        assert impostor.received == []  # the handshake failed: no HR data left the client
    assert err.value.permanent and len(err.value.attempts) == 1 and fake.sleeps == []
    assert "certificate" in str(err.value) and "not retried" in str(err.value)


# -- case 10: echoed service bodies are redacted everywhere --------------------------------------

PROFILE_HEADER = [
    "EmailAddress",
    "EmployeeFirstName",
    "EmployeeLastName",
    "EmployeeAddressLine1",
    "EmployeeZipCode",
    "EmployeeCity",
]
PROFILES = [
    ["jose.muller@contoso.com", "José", "Müller", "12 Baker Street", "NW1 6XE", "London"],
    ["anna.kowalska@contoso.com", "Anna", "Kowalska", "Flat 3, Rue de l'Église", "75004", "Paris"],
    ["li.wei@contoso.com", "Wei", "Li", "88 Nanjing Road", "200001", "Shanghai"],
]
REVIEW_HEADER = ["EmailAddress", "EffectiveDate", "Remarks", "Rating"]
REVIEWS = [
    ["pat.doe@contoso.com", "2024-03-05T09:00:00Z", "Disciplinary note: late twice, warned", "2 Below"],
    ["sam.roe@contoso.com", "2024-03-06T10:30:00+01:00", "Complained about manager Gregory", "4 Exceeds"],
]


def echo(request: Received) -> Answer:
    """A 400 that echoes what it got: JSON with the CSV inside, and an e-mail in the reason."""
    part = _file_part(request.headers.get("Content-Type", ""), request.body)
    text = part[1].decode() if part else ""
    body = json.dumps({"error": "BadRequest", "message": f"Invalid record(s): {text}", "input": text.splitlines()})
    first_email = re.search(r"[\w.]+@[\w.]+", text)
    reason = f"Bad row {first_email.group(0) if first_email else ''}"
    return Answer(400, body.encode(), content_type="application/json", reason=reason)


def values_of(data: list[list[str]]) -> set[str]:
    return {v for row in data for v in row if len(v) > 2} | {p for row in data for v in row for p in v.split()[:2]}


@pytest.mark.parametrize(("header", "data"), [(PROFILE_HEADER, PROFILES), (REVIEW_HEADER, REVIEWS)])
def test_an_echoing_endpoint_leaks_no_row_value_from_the_cli(tmp_path, emulator, job, header, data):
    path = write_csv(tmp_path / "hr.csv", header, [*data, ["not-an-email", *data[0][1:]]])
    secrets = {v for v in values_of(data) if len(v) > 3 and v not in ("Flat", "Below", "Exceeds", "Road")}
    report_path, rejected_path = tmp_path / "report.json", tmp_path / "rejected.csv"
    with HostileServer(echo) as server:
        ca = bundle(tmp_path / "ca.pem", emulator.ca_path, server)
        args = upload_args(
            emulator, job, path, tmp_path / "state", "--verbose", "--report", str(report_path),
            "--rejected", str(rejected_path),
        )  # fmt: skip
        result = subprocess.run(
            cli_command(*with_ingestion(args, server.url)),
            env=cli_env(emulator) | {"REQUESTS_CA_BUNDLE": str(ca)},
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert len(server.received) == 1 and rows_posted(server.received[0]) == data  # it did get the rows
    assert result.returncode == 1 and "Traceback" not in result.stderr
    report = report_path.read_text()
    rejected_rows = rejected_path.read_text().splitlines()[2:]  # header + the one invalid row (HR data by design)
    everything = result.stdout + result.stderr + report + "\n".join(rejected_rows)
    leaked = sorted(s for s in secrets if s in everything)
    assert not leaked, f"{len(leaked)} row value(s) leaked"
    chunk = json.loads(report)["chunks"]["items"][0]
    assert chunk["http_status"] == 400 and '"error": "BadRequest"' in chunk["response_body"]
    assert "HTTP 400" in json.loads(report)["error"]


def test_an_echoing_endpoint_leaks_no_row_value_from_the_function(
    tmp_path, emulator, function_env, monkeypatch, caplog
):
    from hrconnector_core.emulator.host import invoke_blob_trigger
    from hrconnector_core.service import FileFailedError

    caplog.set_level(logging.DEBUG)
    env = function_env
    secrets = {v for v in values_of(REVIEWS) if len(v) > 3 and v not in ("Below", "Exceeds")}
    with HostileServer(echo) as server:
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(bundle(tmp_path / "ca.pem", emulator.ca_path, server)))
        monkeypatch.setenv("HR_INGESTION_URL", server.url)
        env.drop("main/reviews.csv", write_csv(tmp_path / "r.csv", REVIEW_HEADER, REVIEWS).read_bytes())
        with pytest.raises(FileFailedError) as err:
            invoke_blob_trigger("hr_file_arrived", env.settings.containers.incoming, "main/reviews.csv")
        assert len(server.received) == 1
    records = [r for r in caplog.records if not r.name.startswith("hrconnector_core.emulator")]
    logged = "\n".join(f"{r.getMessage()} {r.args!r} {r.exc_text or ''}" for r in records)
    assert any(r.levelno == logging.ERROR for r in records)
    service = env.service
    stored = "\n".join(
        c.get_blob_client(b.name).download_blob().readall().decode()
        for c in (service.failed, service.reports, service.state)
        for b in c.list_blobs()
        if not b.name.endswith(".csv")
    )
    assert "HTTP 400" in str(err.value) and "HTTP 400" in stored
    everything = logged + stored + str(err.value) + repr(err.value)
    leaked = sorted(s for s in secrets if s in everything)
    assert not leaked, f"{len(leaked)} row value(s) leaked"


def test_redaction_keeps_the_services_known_messages_codes_and_counts():
    chunk = encode_rows(REVIEW_HEADER, REVIEWS)
    assert redact("jobId and corresponding appId do not match.", chunk) == "jobId and corresponding appId do not match."
    kept = json.loads(redact('{"error": "invalid_token", "code": "AADSTS700016", "recordsReceived": 5}', chunk))
    assert kept == {"error": "invalid_token", "code": "AADSTS700016", "recordsReceived": 5}
    scrubbed = redact(f"rows rejected: {chunk.decode()} (contact admin@contoso.com)", chunk)
    assert "EmailAddress" in scrubbed  # column names are no HR data
    assert not [v for v in values_of(REVIEWS) | {"admin@contoso.com"} if len(v) > 3 and v in scrubbed]
    assert len(redact("x " * 10_000)) <= 520
    assert "gregory" not in redact("COMPLAINED ABOUT MANAGER GREGORY".lower(), chunk).lower()
