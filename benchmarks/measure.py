"""Run a command and measure it: wall time and the peak resident memory of that process alone."""

from __future__ import annotations

import contextlib
import os
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent


def run_measured(
    cmd: list[str], *, env: dict[str, str] | None = None, ok_exit_codes: tuple[int, ...] = (0,)
) -> tuple[float, int]:
    """(seconds, peak RSS in bytes) of `cmd`, run from the repository root; raises if it fails."""
    with tempfile.TemporaryFile() as stderr:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=stderr)
        _, status, usage = os.wait4(proc.pid, 0)  # this child's own rusage, not every child's
        elapsed = time.perf_counter() - t0
        if os.waitstatus_to_exitcode(status) not in ok_exit_codes:
            stderr.seek(0)
            tail = stderr.read().decode(errors="replace")[-2000:]
            raise RuntimeError(f"{' '.join(cmd[2:4])} failed (wait status {status}):\n{tail}")
    return elapsed, usage.ru_maxrss * 1024


@contextlib.contextmanager
def function_environment(state: Any, identity: str, **settings: str) -> Iterator[tuple[dict[str, str], Any, Path]]:
    """Azurite and the emulator (the demo's app and job, `identity` as the Function's managed
    identity reading the secret), yielding the Function's environment for a child process (with
    `settings` added), a service on it with its containers made, and a temporary directory."""
    from hrconnector_core.emulator import Emulator
    from hrconnector_core.emulator.__main__ import DEMO_APP, DEMO_JOB, DEMO_SECRET, DEMO_TENANT
    from hrconnector_core.emulator.azurite import Azurite
    from hrconnector_core.emulator.host import local_settings
    from hrconnector_core.service import HRConnectorService
    from hrconnector_core.settings import Settings

    state.register_app(DEMO_TENANT, DEMO_APP, DEMO_SECRET)
    state.register_job(DEMO_JOB, DEMO_APP)
    state.register_managed_identity(identity, DEMO_TENANT)
    state.set_secret("bench-secret", DEMO_SECRET)
    with (
        tempfile.TemporaryDirectory() as tmp,
        Azurite(REPO) as azurite,
        Emulator(state=state, ca_path=Path(tmp) / "ca.pem") as emulator,
    ):
        env = dict(os.environ) | local_settings(
            azurite.connection_string, emulator, connector="bench", job_id=DEMO_JOB, tenant_id=DEMO_TENANT,
            app_id=DEMO_APP, identity=identity, secret_name="bench-secret",
        ) | {"PYTHONPATH": str(REPO)} | settings  # fmt: skip
        service = HRConnectorService(Settings.from_env(env))
        service.ensure_containers()
        yield env, service, Path(tmp)
