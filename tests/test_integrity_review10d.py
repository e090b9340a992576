"""Issue 10, second review: what the first pass, the endpoint check and the client still let through.

Every case drives the real pipeline or CLI against the emulator (HTTPS) or a hostile HTTPS server
and asserts what arrived, the exit code and the report.
"""

from __future__ import annotations

import io
import json
import subprocess
import unicodedata
from pathlib import Path

import pytest

from hrconnector_core.chunking import Chunk, encode_rows
from hrconnector_core.clouds import InsecureEndpointError, check_endpoint
from hrconnector_core.csvreader import CsvFile, CsvFormat, inspect_stream
from hrconnector_core.errors import InputFileError, UploadError
from hrconnector_core.ingestion import redact, retry_after_seconds

from .conftest import cli_command, cli_env, upload_args
from .hostile_servers import Answer, HostileServer, Received, bundle
from .test_integrity_encoding import ENCODERS, profiles, text, upload
from .test_integrity_http import FakeTime, client_for, one_chunk, with_ingestion

LONG = 1_100_000


def _fold(text: str) -> str:
    """Without accents, case folded: how a leak is looked for, whatever shape it took."""
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()


def cli_upload(emulator, job, path: Path, state: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        cli_command(*upload_args(emulator, job, path, state, *extra)),
        env=cli_env(emulator),
        capture_output=True,
        text=True,
        timeout=300,
    )


# -- F1: a field over the csv limit, quoted or not, is caught before anything is sent ----------


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-bom", "utf-16-le-bom", "utf-16-le", "cp1252"])
@pytest.mark.parametrize(
    "field", ["x" * LONG, 'ab"c' + "y" * LONG, "é" * (LONG // 2) + "z" * (LONG // 2)], ids=["plain", "quote", "accents"]
)
def test_an_unquoted_field_over_the_limit_sends_nothing_and_names_its_row(emulator, job, make_client, encoding, field):
    data = profiles(12_000)
    data[11_000][3] = field  # row 11,002
    raw = ENCODERS[encoding](text(data).replace('"' + field.replace('"', '""') + '"', field))
    report = upload(job, make_client, raw)
    assert job not in emulator.state.uploads  # not the 11,000 rows before it either
    assert report.status == "failed" and report.rows.uploaded == 0
    assert "a field in row 11002 is longer than 1,000,000 characters" in report.error
    assert "nothing was sent" in report.error


def test_a_multibyte_field_under_the_limit_in_characters_is_fine():
    raw = text([*profiles(3), ["a@contoso.com", "é" * 900_000, "L", "1 St", "1"]]).encode("utf-8")  # 1.8 MB
    assert inspect_stream(io.BytesIO(raw)).format.encoding == "utf-8"


def test_the_reader_names_the_row_of_a_field_over_the_limit():
    raw = text(profiles(30)).encode() + b"u@contoso.com,A,B," + b"x" * LONG + b",1\r\n"
    reader = CsvFile(io.BytesIO(raw), csv_format=CsvFormat())
    with pytest.raises(InputFileError, match="near row 32"):
        list(reader.records())


def test_a_long_field_run_again_after_the_fix_sends_each_row_once(emulator, job, tmp_path):
    path = tmp_path / "hr.csv"
    data = profiles(12_000)
    good = text(data).encode()
    lines = good.split(b"\r\n")
    bad_lines = list(lines)
    bad_lines[11_001] = b"u@contoso.com,A,B," + b"x" * LONG + b",1"
    path.write_bytes(b"\r\n".join(bad_lines))
    state = tmp_path / "state"
    report_path = tmp_path / "report.json"
    first = cli_upload(emulator, job, path, state, "--report", str(report_path))
    assert first.returncode != 0 and "Traceback" not in first.stderr
    assert "row 11002" in first.stdout + first.stderr
    assert job not in emulator.state.uploads
    assert json.loads(report_path.read_text())["rows"]["uploaded"] == 0
    path.write_bytes(good)  # the admin fixes the field and drops the file again
    second = cli_upload(emulator, job, path, state)
    assert second.returncode == 0, second.stderr
    assert sorted(emulator.state.rows(job)) == sorted(data)  # each row once (chunks may arrive in any order)


# -- F3, F7: the endpoint check parses the way requests connects, refuses user:password@ -------


def test_a_backslash_url_that_requests_would_send_elsewhere_is_a_usage_error(tmp_path, emulator, job):
    path = tmp_path / "hr.csv"
    path.write_text(text(profiles(3)))
    with HostileServer(lambda r: Answer(200, b"{}"), host="127.0.0.2", tls=False) as plain:
        port = plain.url.rsplit(":", 1)[1]
        for url in (
            f"http://127.0.0.2:{port}\\@127.0.0.1",
            "http://\t127.0.0.1",
            "http://127.0.0.1\n.evil.example",
            "http:// 127.0.0.1",
        ):
            args = with_ingestion(upload_args(emulator, job, path, tmp_path / "state"), url)
            result = subprocess.run(
                cli_command(*args), env=cli_env(emulator), capture_output=True, text=True, timeout=60
            )
            assert result.returncode == 2, (url, result.stderr)
            assert "must not contain backslashes" in result.stderr and "Traceback" not in result.stderr
        assert plain.received == []  # neither the token nor a row went to 127.0.0.2 in clear
    assert job not in emulator.state.uploads


@pytest.mark.parametrize("option", ["--ingestion-url", "--authority-host"])
def test_a_password_in_an_endpoint_url_is_a_usage_error_that_does_not_echo_it(tmp_path, emulator, job, option):
    path = tmp_path / "hr.csv"
    path.write_text(text(profiles(3)))
    report_path = tmp_path / "report.json"
    args = upload_args(emulator, job, path, tmp_path / "state", "--report", str(report_path))
    host = args[args.index(option) + 1].split("://", 1)[1]
    args[args.index(option) + 1] = f"https://svc-user:Pa55w0rd-Hunter2@{host}"
    before = dict(emulator.state.counters)
    result = subprocess.run(cli_command(*args), env=cli_env(emulator), capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "user name or password" in result.stderr
    everything = result.stdout + result.stderr + (report_path.read_text() if report_path.exists() else "")
    assert "Pa55w0rd-Hunter2" not in everything and "svc-user" not in everything
    assert emulator.state.counters.get("token_requests", 0) == before.get("token_requests", 0)
    assert job not in emulator.state.uploads


def test_the_endpoint_check_agrees_with_requests_on_the_host():
    for url in ("http://127.0.0.1:8080", "http://[::1]:3000", "http://localhost:7071", "https://proxy.example/base"):
        assert check_endpoint(url, "x") == url
    for url in (
        "http://evil.example\\@127.0.0.1",
        "https://a@b.example",
        "https://h.example:99999",
        "http://\x00127.0.0.1",
    ):
        with pytest.raises(InsecureEndpointError) as err:
            check_endpoint(url, "x")
        assert "evil" not in str(err.value) and "a@b" not in str(err.value)


# -- F5: a redirect's Location is kept as scheme and host only --------------------------------


@pytest.mark.parametrize("raw", ["utf-8", "latin-1"])
def test_a_redirect_location_path_and_host_carry_no_value_into_the_report(tmp_path, emulator, job, raw):
    data = profiles(4)
    path = tmp_path / "hr.csv"
    path.write_text(text(data))
    location = "https://jose.muller.contoso.example/users/Ångström/reset/user1@contoso.com?t=s3cr3t"
    location = location.encode(raw).decode("latin-1")  # the bytes on the wire (http.server sends latin-1)

    def redirecting(request: Received) -> Answer:
        return Answer(302, b"moved", headers={"Location": location})

    with HostileServer(redirecting) as ingestion:
        ca = bundle(tmp_path / "ca.pem", Path(emulator.ca_path), ingestion)
        report_path = tmp_path / "report.json"
        args = with_ingestion(
            upload_args(emulator, job, path, tmp_path / "state", "--report", str(report_path)), ingestion.url
        )
        env = cli_env(emulator) | {"REQUESTS_CA_BUNDLE": str(ca)}
        result = subprocess.run(cli_command(*args), env=env, capture_output=True, text=True, timeout=120)
        assert len(ingestion.received) == 1
    assert result.returncode == 1 and "Traceback" not in result.stderr
    everything = report_path.read_text() + result.stdout + result.stderr
    for leak in ("Ångström", "/users", "user1@contoso.com", "s3cr3t", "reset"):
        assert leak not in everything and leak.encode("unicode_escape").decode() not in everything
    assert "redirect" in json.loads(report_path.read_text())["error"]
    assert "jose.muller" not in everything.lower()  # a value of the chunk, in the host


# -- F6: Retry-After that is no ASCII number or date -------------------------------------------


@pytest.mark.parametrize(
    "value", ["\u00b2", "\u0663", "1e9", "99999999999999999999999", "Fri, 31 Dec 99999 23:59:59 GMT"]
)
def test_an_odd_retry_after_is_ignored_not_a_crash(value):
    seconds = retry_after_seconds(value, now=0.0)
    assert seconds is None or (0 <= seconds < float("inf"))


def test_a_superscript_retry_after_from_the_service_is_retried_with_our_backoff(tmp_path, monkeypatch):
    answers = iter([Answer(429, b"slow", headers={"Retry-After": "\u00b2"}), Answer(200, b"{}")])
    with HostileServer(lambda r: next(answers)) as server:
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(bundle(tmp_path / "ca.pem", server)))
        fake = FakeTime()
        result = client_for(server.url, fake).upload(one_chunk())
        assert len(server.received) == 2
    assert [a.status for a in result.attempts] == [429, 200] and len(fake.sleeps) == 1


# -- F4: echoed values in other shapes --------------------------------------------------------

ECHO_HEADER = ["EmailAddress", "EmployeeFirstName", "EmployeeLastName", "EmployeeAddressLine1", "EmployeeCity"]
ECHO_ROWS = [
    ["jose.muller@contoso.com", "José", "Müller", "Flat 3\nRue de l'Église", "Zürich"],
    ["li.wei@contoso.com", "Wei", "Kowalska", "88 Nanjing Road", "Shanghai"],
]


def _shapes() -> dict[str, Answer]:
    nfd = unicodedata.normalize("NFD", "José Müller, Zürich")
    return {
        "plain-no-charset": Answer(400, "Bad value: José Müller".encode(), content_type="text/plain"),
        "html-no-charset": Answer(400, "<p>Zürich Église</p>".encode(), content_type="text/html"),
        "nfd": Answer(400, nfd.encode(), content_type="text/plain; charset=utf-8"),
        "reason": Answer(400, b"", reason=b"Bad row for Kowalska".decode("latin-1")),
        "reason-utf8": Answer(400, b"", reason="Bad row for Müller".encode().decode("latin-1")),
        "joined-lines": Answer(400, b"address 'Flat 3 Rue de l'Eglise' invalid", content_type="text/plain"),
        "url-encoded": Answer(400, b"input=Jos%C3%A9+M%C3%BCller&city=Z%C3%BCrich", content_type="text/plain"),
        "url-plus": Answer(400, b"addr=Rue+de+Eglise", content_type="text/plain"),
        "partial": Answer(400, b"unknown street NANJING near the FLAT", content_type="application/json"),
        "json-key": Answer(400, json.dumps({"Kowalska": "nanjing"}).encode(), content_type="application/json"),
    }


@pytest.mark.parametrize("shape", list(_shapes()))
def test_an_echoed_value_in_any_shape_is_redacted(tmp_path, monkeypatch, shape):
    answer = _shapes()[shape]
    with HostileServer(lambda r: answer) as server:
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(bundle(tmp_path / "ca.pem", server)))
        chunk = Chunk(0, 2, 3, 2, encode_rows(ECHO_HEADER, ECHO_ROWS))
        with pytest.raises(UploadError) as err:
            client_for(server.url, FakeTime()).upload(chunk)
        assert len(server.received) == 1
    everything = _fold(str(err.value) + repr(err.value) + (err.value.body or "") + (err.value.reason or ""))
    for word in ("jose", "muller", "zurich", "eglise", "kowalska", "shanghai", "nanjing", "wei", "flat"):
        assert word not in everything, word
    raw = str(err.value) + (err.value.body or "") + (err.value.reason or "")
    for value in ("José", "Müller", "Zürich", "Église"):  # nor as mojibake (UTF-8 read as ISO-8859-1)
        assert value.encode().decode("latin-1") not in raw
    assert "HTTP 400" in str(err.value)


def test_known_service_messages_survive_word_redaction():
    chunk = encode_rows(["EmailAddress", "Remarks"], [["a@contoso.com", "do not match the corresponding job"]])
    assert redact("jobId and corresponding appId do not match.", chunk) == "jobId and corresponding appId do not match."
    assert redact("The request has no 'file' part.", chunk) == "The request has no 'file' part."


# -- F8: a 2xx web page is not the service's acceptance ----------------------------------------


def test_a_200_html_page_is_a_permanent_failure_and_the_report_counts_nothing(tmp_path, emulator, job):
    path = tmp_path / "hr.csv"
    path.write_text(text(profiles(5)))

    def portal(request: Received) -> Answer:
        return Answer(200, b"<!DOCTYPE html><html><body>Sign in to the Wi-Fi</body></html>", content_type="text/html")

    with HostileServer(portal) as server:
        ca = bundle(tmp_path / "ca.pem", Path(emulator.ca_path), server)
        report_path = tmp_path / "report.json"
        args = with_ingestion(
            upload_args(emulator, job, path, tmp_path / "state", "--report", str(report_path)), server.url
        )
        env = cli_env(emulator) | {"REQUESTS_CA_BUNDLE": str(ca)}
        result = subprocess.run(cli_command(*args), env=env, capture_output=True, text=True, timeout=120)
        assert len(server.received) == 1  # not retried
    assert result.returncode == 1 and "Traceback" not in result.stderr
    report = json.loads(report_path.read_text())
    assert report["status"] == "failed" and report["rows"]["uploaded"] == 0 and report["rows"]["not_uploaded"] == 5
    assert "HTML page is not the ingestion service" in report["error"]
    # The emulator's real success (JSON) still counts: the same file goes through afterwards.
    again = cli_upload(emulator, job, path, tmp_path / "state")
    assert again.returncode == 0, again.stderr
    assert emulator.state.rows(job) == profiles(5)


# -- F10: a floor for 429, an honest budget message, https to a plain-http port ----------------


def test_a_429_with_retry_after_zero_still_waits_the_floor(tmp_path, monkeypatch):
    from hrconnector_core.ingestion import RetryPolicy

    fake = FakeTime()
    policy = RetryPolicy(max_attempts=4, base_delay=1.0)
    with HostileServer(lambda r: Answer(429, b"slow", headers={"Retry-After": "0"})) as server:
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(bundle(tmp_path / "ca.pem", server)))
        with pytest.raises(UploadError) as err:
            client_for(server.url, fake, policy).upload(one_chunk())
        assert len(server.received) == 4
    assert fake.sleeps == [0.5, 1.0, 2.0]
    assert "asked to wait 0 s" in str(err.value) and "past the chunk's time budget" not in str(err.value)


def test_https_to_a_plain_http_port_is_permanent_not_retried(tmp_path, monkeypatch):
    fake = FakeTime()
    with HostileServer(lambda r: Answer(200, b"{}"), tls=False) as plain:
        url = plain.url.replace("http://", "https://")
        with pytest.raises(UploadError) as err:
            client_for(url, fake).upload(one_chunk())
    assert err.value.permanent and len(err.value.attempts) == 1 and fake.sleeps == []
    assert "does not speak TLS" in str(err.value)


# -- F2: a UTF-8 file with a Windows-1252 part is an error, never mojibake ---------------------


def test_utf8_rows_then_windows_1252_rows_send_nothing_and_name_rows_of_each_kind(emulator, job, make_client):
    data = profiles(2_100)
    raw = text(data[:100]).encode("utf-8") + text(data[100:]).split("\r\n", 1)[1].encode("cp1252")
    report = upload(job, make_client, raw)
    assert job not in emulator.state.uploads  # no garbled José or Müller at the service
    assert report.status == "failed" and report.rows.uploaded == 0
    assert "invalid byte(s) in row(s) 102, 103, 104, 105, 106 and more" in report.error
    assert "UTF-8 characters are in row(s) 2, 3, 4, 5, 6 and more" in report.error
    assert "nothing was sent" in report.error


def test_a_windows_1252_export_with_capitals_and_quotes_is_still_windows_1252(emulator, job, make_client):
    data = profiles(300)
    data[5][2] = "MÜLLER\u2019S"
    data[6][1] = "Ã©lise"
    data[7][2] = "ÉCOLE"  # É then C: no UTF-8 shape
    report = upload(job, make_client, text(data).encode("cp1252"))
    assert report.encoding == "cp1252" and report.status == "succeeded"
    assert emulator.state.rows(job) == data


# -- F10: NUL characters, UTF-16 without BOM whose first rows hold CJK ---------------------------


@pytest.mark.parametrize("encoding", ["utf-8", "utf-16-le-bom"])
def test_a_nul_character_in_a_field_sends_nothing_and_names_its_row(emulator, job, make_client, encoding):
    data = profiles(12_000)
    data[11_000][1] = "Ann\x00Lee"
    report = upload(job, make_client, ENCODERS[encoding](text(data)))
    assert job not in emulator.state.uploads
    assert report.status == "failed" and "NUL characters in row(s) 11002" in report.error
    assert "\x00" not in report.error and "Ann" not in report.error


def test_utf16_without_bom_whose_first_rows_hold_cjk_is_read_as_utf16(emulator, job, make_client):
    # CJK within the first 100 characters: U+4E00 has a NUL byte too, on the other side.
    head = "Remarks,EmailAddress,EffectiveDate,Rating\r\n" + "".join(
        f"一二,u{i}@contoso.com,2024-01-01,1\r\n" for i in range(3)
    )
    assert inspect_stream(io.BytesIO(head.encode("utf-16-le"))).format.encoding == "utf-16-le"
    data = profiles(3_000)
    for row in data[:3]:
        row[1:3] = ["一二", "李"]
    report = upload(job, make_client, text(data).encode("utf-16-le"))
    assert report.encoding == "utf-16-le" and report.status == "succeeded", report.error
    assert sorted(emulator.state.rows(job)) == sorted(data)


def test_a_utf16_header_read_as_something_else_is_never_echoed(emulator, job, make_client):
    rows = "".join(f"u{i}@contoso.com,2024-01-01T09:00:00Z,一二,1\r\n" for i in range(50))
    for raw in (
        ("EmailAddress,EffectiveDate,Remarks,Rating\r\n" + rows).encode("utf-16-le")[1:],  # shifted by one byte
        b"Email\x00Address,EffectiveDate,Remarks,Rating\r\nu@contoso.com,2024-01-01T09:00:00Z,a,1\r\n",
    ):
        report = upload(job, make_client, raw)
        assert job not in emulator.state.uploads and report.status == "failed"
        shown = (report.error or "") + json.dumps(report.to_dict())
        assert "\x00" not in shown and "\\u0000" not in shown and "Email" not in (report.error or "")


@pytest.mark.parametrize("length", [1_000_000, 1_000_001])
def test_a_field_over_the_limit_wholly_inside_one_block_is_found_and_one_at_the_limit_is_not(length):
    data = profiles(5)
    data[2][3] = "x" * length  # row 4, well inside the first 1 MiB block, short rows on both sides
    raw = text(data).replace(f'"{data[2][3]}"', data[2][3]).encode()
    if length > 1_000_000:
        with pytest.raises(InputFileError, match="a field in row 4 is longer than 1,000,000 characters"):
            inspect_stream(io.BytesIO(raw))
    else:
        assert inspect_stream(io.BytesIO(raw)).format.encoding == "utf-8"
