"""Run a command and measure it: wall time and the peak resident memory of that process alone."""

from __future__ import annotations

import os
import subprocess
import tempfile
import time
from pathlib import Path

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
