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
import sys
from pathlib import Path

from hrconnector_core.emulator import EmulatorState
from hrconnector_core.service import HRConnectorService

from .measure import function_environment, run_measured
from .validation_throughput import generate

IDENTITY = "44444444-4444-4444-8444-444444444444"
INVOKE = "import sys; from hrconnector_core.emulator.host import invoke_blob_trigger as i; i(*sys.argv[1:])"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mb", type=int, nargs="*", default=[50, 250])
    parser.add_argument("--xlsx", type=int, nargs="*", default=[], metavar="ROWS", help="workbooks of ROWS rows")
    args = parser.parse_args()
    with function_environment(EmulatorState(keep_rows=False), IDENTITY) as (env, service, tmp):
        print(f"{'file':>8} {'records':>10} {'seconds':>8} {'rows/s':>9} {'peak RSS':>9}")
        for mb in args.mb:
            path = tmp / f"hr-{mb}.csv"
            records = generate(path, target_bytes=mb * 1_000_000)
            seconds, rss = _process(service, env, path)
            print(f"{mb:>6}MB {records:>10,} {seconds:>8.1f} {records / seconds:>9,.0f} {rss / 1e6:>7.0f}MB")
        for count in args.xlsx:
            path = workbook(tmp, count)
            label = f"{path.stat().st_size / 1e6:.0f}MB.xlsx"
            seconds, rss = _process(service, env, path)
            print(f"{label:>8} {count:>10,} {seconds:>8.1f} {count / seconds:>9,.0f} {rss / 1e6:>7.0f}MB")
    return 0


def _process(service: HRConnectorService, env: dict[str, str], path: Path) -> tuple[float, int]:
    """Drop the file into incoming (then delete it here) and run the blob function on it in its own
    process: (seconds, peak RSS in bytes)."""
    name = f"bench/{path.name}"
    with path.open("rb") as handle:
        service.incoming.upload_blob(name, handle, overwrite=True)
    path.unlink()
    return run_measured(
        [sys.executable, "-c", INVOKE, "hr_file_arrived", service.incoming.container_name, name], env=env
    )


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
