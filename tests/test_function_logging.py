"""What the Functions worker would forward to Application Insights.

The real worker sets the root logger to INFO and forwards every record. Each test runs the
registered functions in a fresh process configured that way (the app imported after logging is
set up, as the worker does), with a handler that records everything, and checks which loggers
and levels appear and that no URL, secret name, client id or HR value does.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

from .conftest import APP_ID, FUNCTION_IDENTITY, REPO, SECRET, TENANT, FunctionEnv
from .csvdata import HEADER, csv_bytes, rows

WORKER = """
import json, logging, sys

records = []

class Recorder(logging.Handler):
    def emit(self, record):
        records.append({"logger": record.name, "level": record.levelname, "message": record.getMessage(),
                        "dimensions": {k: str(v) for k, v in record.__dict__.items() if k.startswith("hr.")}})

root = logging.getLogger()
root.setLevel(logging.INFO)
root.addHandler(Recorder(level=logging.NOTSET))

from hrconnector_core.emulator.host import invoke_blob_trigger, invoke_timer

for name in sys.argv[2:]:
    invoke_blob_trigger("hr_file_arrived", sys.argv[1], name)
invoke_timer("hr_schedule")
print(json.dumps(records))
"""

# The Function's own lines for a file with a rejected row, a profile file and a timer run.
EXPECTED = {
    ("hrconnector_core.service", "INFO"),  # processing, the end-of-file summary, the schedule summary
    ("hrconnector_core.pipeline.chunks", "INFO"),  # chunk k uploaded
}


def run_worker(env: FunctionEnv, names: list[str], **extra_env: str) -> list[dict[str, Any]]:
    result = subprocess.run(
        [sys.executable, "-c", WORKER, env.settings.containers.incoming, *names],
        env={**os.environ, "PYTHONPATH": str(REPO), **extra_env},
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def drop_files(env: FunctionEnv) -> tuple[list[str], set[str]]:
    data = rows(12)
    bad = ["bad@@contoso", "2024-01-01T00:00:00Z", "private remark about a person", "1 star"]
    env.drop("main/leavers.csv", csv_bytes(HEADER, [*data, bad]))
    profile = (REPO / "samples" / "employee-profile.csv").read_bytes()
    env.drop("main/profile.csv", profile)
    profile_values = {v for line in profile.decode("utf-8-sig").splitlines()[1:] for v in line.split(",") if len(v) > 3}
    values = {v for row in data for v in row} | set(bad) | profile_values
    return ["main/leavers.csv", "main/profile.csv"], values


def test_only_the_functions_own_lines_reach_the_host_by_default(emulator, azurite, function_env) -> None:
    env = function_env
    names, hr_values = drop_files(env)
    records = run_worker(env, names)

    # azure-functions' own note when the worker indexes an app without HTTP functions (once per process).
    (indexing,) = [r for r in records if r["logger"] == "root"]
    assert indexing["level"] == "WARNING" and indexing["message"].startswith("Auth level is not applied")
    records.remove(indexing)
    assert {(r["logger"], r["level"]) for r in records} == EXPECTED
    messages = [r["message"] for r in records]
    assert sum("rows uploaded" in m for m in messages) == 2
    assert any(m.startswith("[run=timer-") and "schedule:" in m for m in messages)
    everything = json.dumps(records)
    forbidden = {
        "http://", "https://", azurite.blob_endpoint, emulator.url, env.secret_name, FUNCTION_IDENTITY, TENANT,
        APP_ID, SECRET, emulator.state.identity_header,
    } | hr_values  # fmt: skip
    leaked = sorted(v for v in forbidden if v and v in everything)
    assert leaked == []
    assert len(records) < 20  # a handful of lines per file, not hundreds


def test_hr_sdk_log_level_turns_the_sdks_on_for_a_support_case(emulator, function_env) -> None:
    env = function_env
    names, _ = drop_files(env)
    records = run_worker(env, names, HR_SDK_LOG_LEVEL="INFO")
    loggers = {r["logger"] for r in records}
    assert "azure.core.pipeline.policies.http_logging_policy" in loggers
    assert {(r["logger"], r["level"]) for r in records} >= EXPECTED
