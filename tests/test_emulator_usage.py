"""The emulator says what it accepts and how to use it: the printed commands work as printed."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys

import pytest

from hrconnector_core.emulator.__main__ import DEMO_APP, DEMO_JOB, DEMO_SECRET, DEMO_TENANT

from .conftest import REPO


@pytest.fixture
def emulator_process(tmp_path):
    cmd = [
        *(sys.executable, "-m", "hrconnector_core.emulator", "--key-vault-secret", "hr-app-secret"),
        *("--ca-file", str(tmp_path / "ca.pem"), "--data-dir", str(tmp_path / "emu")),
    ]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stderr is not None
    try:
        info = json.loads(proc.stdout.readline())  # the JSON line: written once listening
        lines: list[str] = []
        while "rows received" not in (line := proc.stderr.readline()):  # the last line of the usage text
            assert line, "".join(lines)
            lines.append(line)
        yield info, "".join(lines)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        proc.stdout.close()
        proc.stderr.close()


def _commands(text: str, marker: str) -> tuple[dict[str, str], list[str]]:
    """The `export` variables and the upload command printed after `marker`."""
    block = text.split(marker, 1)[1]
    joined = block.replace("\\\n", " ")
    env: dict[str, str] = {}
    for line in joined.splitlines():
        words = shlex.split(line)
        if words[:1] == ["export"]:
            env.update(word.split("=", 1) for word in words[1:])  # type: ignore[misc]
        elif words[:2] == ["hrconnector", "upload"]:
            return env, words[1:]
    raise AssertionError(f"no upload command after {marker!r}")


def test_it_prints_what_it_accepts_and_the_commands_work(emulator_process, tmp_path):
    info, text = emulator_process
    assert f"{DEMO_TENANT} / {DEMO_APP} / {DEMO_SECRET}" in text
    assert f"{DEMO_JOB} -> {DEMO_APP}" in text
    assert "hr-app-secret" in text and f"--authority-host {info['url']}" in text
    base = dict(os.environ) | {"PYTHONPATH": str(REPO)}
    for name in ("AZURE_CLIENT_SECRET", "AZURE_TENANT_ID", "AZURE_CLIENT_ID", "IDENTITY_ENDPOINT", "IDENTITY_HEADER"):
        base.pop(name, None)
    for marker, state in (("point the command line at it:", "s1"), ("with the secret from its Key Vault", "s2")):
        env, args = _commands(text, marker)
        if "REQUESTS_CA_BUNDLE" not in env:
            env["REQUESTS_CA_BUNDLE"] = info["ca_file"]
        args = [a if a != "samples/resignation.csv" else str(REPO / "samples/resignation.csv") for a in args]
        result = subprocess.run(
            [sys.executable, "-m", "hrconnector_core", *args, "--state-dir", str(tmp_path / state), "--force"],
            env=base | env, capture_output=True, text=True, check=False, cwd=REPO,
        )  # fmt: skip
        assert result.returncode == 0, result.stdout + result.stderr
        assert "succeeded" in result.stdout


def test_every_option_has_help():
    from hrconnector_core.emulator import __main__ as emulator_main

    parser_help = subprocess.run(
        [sys.executable, "-m", "hrconnector_core.emulator", "--help"],
        capture_output=True, text=True, check=True, cwd=REPO, env=dict(os.environ) | {"PYTHONPATH": str(REPO)},
    ).stdout  # fmt: skip
    assert emulator_main.__doc__ is not None
    for option in ("--app", "--job", "--host", "--rate-429", "--rate-503", "--seed", "--verbose", "--key-vault-secret"):
        after = parser_help.split(f"  {option} ", 1)[1].split("\n  -", 1)[0]
        assert len(after.split()) > 2, (option, after)
