"""A token the service stops accepting mid-run is replaced by a new one, from the token endpoint.

Found by the fault campaign: on a 401 the upload engine retried "once with a new token", but the
azure-identity credential handed back its cached token (it keeps one until it expires, revoked or
not), so the retry was refused too and the run failed. The new token now comes from a new
credential. Each test holds the first upload inside the emulator, revokes the app's tokens while
it waits (events, no sleeps), then lets it go: it meets a 401, and the run must still finish.
"""

from __future__ import annotations

import subprocess
import threading

import pytest
import requests

from hrconnector_core.emulator.host import invoke_blob_trigger

from .conftest import APP_ID, cli_command, cli_env, upload_args
from .csvdata import HEADER, csv_bytes, rows, write_csv
from .test_emulator import request_token


def counted(emulator, name: str) -> int:
    with emulator.state.lock:
        return int(emulator.state.counters.get(name, 0))


def test_the_cli_gets_a_new_token_when_the_service_refuses_its_token(emulator, job, tmp_path) -> None:
    data = rows(6)
    path = write_csv(tmp_path / "hr.csv", HEADER, data)
    hold = emulator.state.hold_next_upload()
    before = counted(emulator, "tokens_issued"), counted(emulator, "unauthorized")
    args = upload_args(emulator, job, path, tmp_path / "state", "--records-per-call", "2", "--max-concurrency", "1")
    proc = subprocess.Popen(cli_command(*args), env=cli_env(emulator), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert hold.arrived.wait(60), "the CLI never reached the service"
        emulator.state.revoke_tokens(APP_ID)  # the service no longer accepts the token the run holds
    finally:
        hold.release()
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err.decode(errors="replace")[-2000:]
    assert sorted(emulator.state.rows(job)) == sorted(data)
    assert counted(emulator, "unauthorized") - before[1] == 1  # the held upload met the revocation
    assert counted(emulator, "tokens_issued") - before[0] == 2  # the first token, and a new one after the 401


def test_the_function_gets_a_new_token_when_the_service_refuses_its_token(emulator, function_env) -> None:
    env = function_env
    data = rows(6)
    env.drop("main/hr.csv", csv_bytes(HEADER, data))
    hold = emulator.state.hold_next_upload()
    refused = counted(emulator, "unauthorized")
    errors: list[BaseException] = []

    def invoke() -> None:
        try:
            invoke_blob_trigger("hr_file_arrived", env.settings.containers.incoming, "main/hr.csv")
        except BaseException as exc:  # judged below
            errors.append(exc)

    run = threading.Thread(target=invoke)
    run.start()
    try:
        assert hold.arrived.wait(60), "the function never reached the service"
        emulator.state.revoke_tokens(APP_ID)
    finally:
        hold.release()
        run.join(timeout=120)
    assert errors == []
    assert counted(emulator, "unauthorized") - refused == 1  # the held upload met the revocation
    assert sorted(emulator.state.rows(env.job)) == sorted(data)
    listing = env.listing()
    assert listing[env.settings.containers.incoming] == [] and listing[env.settings.containers.failed] == []


def test_the_emulators_token_endpoint_fails_the_answers_it_is_told_to_then_recovers(emulator) -> None:
    """The campaign's token endpoint outage: the next answers 503 or a connection closed unanswered."""
    with emulator.state.lock:
        emulator.state.token_faults[:] = ["503", "drop"]
    first = request_token(emulator)
    assert first.status_code == 503 and first.json()["error"] == "temporarily_unavailable"
    with pytest.raises(requests.ConnectionError):
        request_token(emulator)
    assert request_token(emulator).status_code == 200 and emulator.state.token_faults == []
