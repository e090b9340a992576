"""The Function's memory and time on large blobs: the registered blob function, in its own process,
processing a file from Azurite and uploading it to the emulator.

    python -m benchmarks.function_memory                 # 50 MB and 250 MB files
    python -m benchmarks.function_memory --mb 50 500
    python -m benchmarks.function_memory --mb --xlsx 100000 400000   # workbooks of that many rows

Peak RSS is the function process's own high-water mark (os.wait4); flat memory means the peak does
not grow with the file. Azurite keeps blobs in memory here, so very large sizes need RAM for it
too. Not a test.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

from hrconnector_core.emulator import Emulator, EmulatorState
from hrconnector_core.emulator.__main__ import DEMO_APP, DEMO_JOB, DEMO_SECRET, DEMO_TENANT
from hrconnector_core.emulator.azurite import Azurite
from hrconnector_core.emulator.host import local_settings
from hrconnector_core.service import HRConnectorService
from hrconnector_core.settings import Settings

from .measure import REPO, run_measured
from .validation_throughput import generate

IDENTITY = "44444444-4444-4444-8444-444444444444"
INVOKE = "import sys; from hrconnector_core.emulator.host import invoke_blob_trigger as i; i(*sys.argv[1:])"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mb", type=int, nargs="*", default=[50, 250])
    parser.add_argument("--xlsx", type=int, nargs="*", default=[], metavar="ROWS", help="workbooks of ROWS rows")
    args = parser.parse_args()
    state = EmulatorState(keep_rows=False)
    state.register_app(DEMO_TENANT, DEMO_APP, DEMO_SECRET)
    state.register_job(DEMO_JOB, DEMO_APP)
    state.register_managed_identity(IDENTITY, DEMO_TENANT)
    state.set_secret("bench-secret", DEMO_SECRET)
    with (
        tempfile.TemporaryDirectory() as tmp,
        Azurite(REPO) as azurite,
        Emulator(state=state, ca_path=Path(tmp) / "ca.pem") as emulator,
    ):
        env = dict(os.environ) | local_settings(
            azurite.connection_string, emulator, connector="bench", job_id=DEMO_JOB, tenant_id=DEMO_TENANT,
            app_id=DEMO_APP, identity=IDENTITY, secret_name="bench-secret",
        ) | {"PYTHONPATH": str(REPO)}  # fmt: skip
        service = HRConnectorService(Settings.from_env(env))
        service.ensure_containers()
        print(f"{'file':>8} {'records':>10} {'seconds':>8} {'rows/s':>9} {'peak RSS':>9}")
        for mb in args.mb:
            path = Path(tmp) / f"hr-{mb}.csv"
            records = generate(path, target_bytes=mb * 1_000_000)
            name = f"bench/hr-{mb}.csv"
            with path.open("rb") as handle:
                service.incoming.upload_blob(name, handle, overwrite=True)
            path.unlink()
            cmd = [sys.executable, "-c", INVOKE, "hr_file_arrived", service.incoming.container_name, name]
            seconds, rss = run_measured(cmd, env=env)
            print(f"{mb:>6}MB {records:>10,} {seconds:>8.1f} {records / seconds:>9,.0f} {rss / 1e6:>7.0f}MB")
        for count in args.xlsx:
            path = workbook(Path(tmp), count)
            size = path.stat().st_size
            name = f"bench/{path.name}"
            with path.open("rb") as handle:
                service.incoming.upload_blob(name, handle, overwrite=True)
            path.unlink()
            cmd = [sys.executable, "-c", INVOKE, "hr_file_arrived", service.incoming.container_name, name]
            seconds, rss = run_measured(cmd, env=env)
            label = f"{size / 1e6:.0f}MB.xlsx"
            print(f"{label:>8} {count:>10,} {seconds:>8.1f} {count / seconds:>9,.0f} {rss / 1e6:>7.0f}MB")
    return 0


def workbook(directory: Path, records: int) -> Path:
    """The same rows as the CSV benchmark in a workbook (write-only mode: flat while writing)."""
    import csv

    import openpyxl

    source = directory / "rows.csv"
    generate(source, records=records)
    path = directory / f"hr-{records}.xlsx"
    book = openpyxl.Workbook(write_only=True)
    sheet = book.create_sheet("HR")
    with source.open(encoding="utf-8", newline="") as handle:
        for row in csv.reader(handle):
            sheet.append(row)
    book.save(path)
    source.unlink()
    return path


if __name__ == "__main__":
    sys.exit(main())
