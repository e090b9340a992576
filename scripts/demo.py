"""The README's first command: the main job on the embedded default.

Starts the HTTPS emulator (Entra + HR connector ingestion) on loopback, uploads every sample file
with the real command line, then prints what the connector received: the per-job log (the portal's
"Download log") and where each run report is.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from hrconnector_core.emulator import Emulator, EmulatorState  # noqa: E402
from hrconnector_core.emulator.__main__ import (  # noqa: E402
    DEMO_APP,
    DEMO_JOB,
    DEMO_SECRET,
    DEMO_SECRET_ENV,
    DEMO_TENANT,
    demo_upload_command,
)

OUT = REPO / ".demo"


def main() -> int:
    state = EmulatorState()
    state.register_app(DEMO_TENANT, DEMO_APP, DEMO_SECRET)
    state.register_job(DEMO_JOB, DEMO_APP)
    reports = OUT / "reports"
    reports.mkdir(parents=True, exist_ok=True)
    worst = 0
    with Emulator(state=state, ca_path=OUT / "emulator-ca.pem", data_dir=OUT / "emulator") as emu:
        print(f"emulator: {emu.url} (CA: {emu.ca_path})\n")
        env = dict(os.environ, REQUESTS_CA_BUNDLE=str(emu.ca_path), **{DEMO_SECRET_ENV: DEMO_SECRET})
        for sample in sorted((REPO / "samples").glob("*.csv")):
            report = reports / f"{sample.stem}.json"
            cmd = demo_upload_command(
                emu.url,
                sample,
                "--state-dir",
                str(OUT / "state"),
                "--force",
                "--report",
                str(report),
                "--rejected",
                str(reports / f"{sample.stem}.rejected.csv"),
            )
            print(f"$ hrconnector upload --file samples/{sample.name} ...")
            result = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
            print(result.stdout.rstrip())
            print(f"  exit code {result.returncode}; report: {report.relative_to(REPO)}\n")
            worst = max(worst, result.returncode)

        log = state.log.get(DEMO_JOB, [])
        print(
            f"connector job {DEMO_JOB}: {len(log)} uploads, "
            f"{sum(e['RecordsSaved'] for e in log)} records saved (the portal's 'Download log'):"
        )
        for entry in log:
            print("  " + json.dumps({k: entry[k] for k in ("FileName", "RecordsSaved", "Status", "EndTime")}))
        print(f"\nlog file: {(OUT / 'emulator' / f'job-{DEMO_JOB}.log').relative_to(REPO)}")
    return 0 if worst <= 1 else worst


if __name__ == "__main__":
    sys.exit(main())
