"""The emulator answers as the real services are known to: a contract test over HTTPS."""

from __future__ import annotations

import threading

import requests

from hrconnector_core.clouds import DEFAULT_RESOURCE

from .conftest import APP_ID, SECRET, TENANT


def request_token(emulator, *, client_id=APP_ID, secret=SECRET, v1=False) -> requests.Response:
    """A client-credentials request to the v2 endpoint (scope) or the v1 endpoint (resource)."""
    form = {"client_id": client_id, "client_secret": secret, "grant_type": "client_credentials"}
    if v1:
        form["resource"] = DEFAULT_RESOURCE
    else:
        form["scope"] = DEFAULT_RESOURCE + "/.default"
    path = "oauth2/token" if v1 else "oauth2/v2.0/token"
    return requests.post(f"{emulator.url}/{TENANT}/{path}", data=form, timeout=10)


def token(emulator, *, v1=False) -> str:
    response = request_token(emulator, v1=v1)
    response.raise_for_status()
    body = response.json()
    assert body["expires_in"] > 0 and body["token_type"] == "Bearer"
    return str(body["access_token"])


def post(emulator, job, *, token=None, files=None, data=None):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return requests.post(
        f"{emulator.url}/api/signals", params={"jobid": job}, headers=headers, files=files, data=data, timeout=10
    )


def test_openid_configuration_names_the_token_endpoint(emulator):
    config = requests.get(f"{emulator.url}/{TENANT}/v2.0/.well-known/openid-configuration", timeout=10).json()
    assert config["token_endpoint"] == f"{emulator.url}/{TENANT}/oauth2/v2.0/token"
    assert "authorization_endpoint" in config


def test_v1_token_endpoint_takes_a_resource(emulator, job):
    response = post(emulator, job, token=token(emulator, v1=True), files={"file": ("a.csv", b"E,D\r\na,b\r\n")})
    assert response.status_code == 200


def test_token_errors_look_like_entra(emulator):
    wrong_app = request_token(emulator, client_id="nope")
    assert wrong_app.status_code == 400 and "AADSTS700016" in wrong_app.json()["error_description"]
    wrong_secret = request_token(emulator, secret="bad")
    assert wrong_secret.status_code == 401 and wrong_secret.json()["error"] == "invalid_client"


def test_ingestion_answers(emulator, job):
    csv_ok = {"file": ("a.csv", b"Email,Date\r\na@x.com,1\r\n")}
    assert post(emulator, job, files=csv_ok).status_code == 401
    assert post(emulator, job, token="made-up", files=csv_ok).status_code == 401
    good = token(emulator)
    missing = post(emulator, job, token=good, data={"other": "x"}, files={"notfile": ("a.csv", b"E\r\n")})
    assert missing.status_code == 400 and "file" in missing.json()["message"]
    ragged = post(emulator, job, token=good, files={"file": ("a.csv", b"Email,Date\r\na@x.com\r\n")})
    assert ragged.status_code == 500 and ragged.content == b""
    assert job not in emulator.state.uploads
    accepted = post(emulator, job, token=good, files=csv_ok)
    assert accepted.status_code == 200 and accepted.json()["recordsReceived"] == 1


def test_job_log_over_http_and_as_a_file(emulator, job):
    good = token(emulator)
    for n in (1, 2):
        body = b"Email,Date\r\n" + b"".join(b"u%d@x.com,1\r\n" % i for i in range(n))
        assert post(emulator, job, token=good, files={"file": ("a.csv", body)}).status_code == 200
    log = requests.get(f"{emulator.url}/api/jobs/{job}/log", timeout=10).json()
    assert [entry["RecordsSaved"] for entry in log] == [1, 2]
    log_file = emulator.state.data_dir / f"job-{job}.log"
    assert [line.count('"RecordsSaved"') for line in log_file.read_text().splitlines()] == [1, 1]


def test_faults_can_be_set_over_http(emulator):
    response = requests.post(f"{emulator.url}/admin/faults", json={"rate_503": 0.5, "latency_ms": 5}, timeout=10)
    assert response.json()["rate_503"] == 0.5
    state = requests.get(f"{emulator.url}/admin/state", timeout=10).json()
    assert state["faults"]["latency_ms"] == 5
    bad = requests.post(f"{emulator.url}/admin/faults", json={"no_such_fault": 1}, timeout=10)
    assert bad.status_code == 400


def test_an_upload_can_be_held_until_released(emulator, job):
    """A test's barrier at the network edge: the call waits inside the service, nothing recorded."""
    good = token(emulator)
    hold = emulator.state.hold_next_upload()
    answers: list[requests.Response] = []
    caller = threading.Thread(
        target=lambda: answers.append(post(emulator, job, token=good, files={"file": ("a.csv", b"E\r\nx\r\n")}))
    )
    caller.start()
    try:
        assert hold.arrived.wait(30)
        assert answers == [] and job not in emulator.state.uploads
    finally:
        hold.release()
        caller.join(30)
    assert [a.status_code for a in answers] == [200]
    assert emulator.state.rows(job) == [["x"]]
    assert post(emulator, job, token=good, files={"file": ("a.csv", b"E\r\ny\r\n")}).status_code == 200  # not held
