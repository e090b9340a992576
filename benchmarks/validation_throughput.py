"""Validation throughput and memory: validate + normalise + chunk, against a bare csv round trip.

    python -m benchmarks.validation_throughput                 # 1,000,000 records (~120 MB)
    python -m benchmarks.validation_throughput --rss-gb 1      # also peak RSS on a 1 GB file

Ours is `hrconnector validate` in its own process (the full path of a dry run: the hashing and
encoding pass, reading, validation against the default multi-scenario mapping, chunking into
UTF-8 CSV); the floor is csv.reader -> csv.writer over the same file in this process, the least
any pure-Python tool can do. Peak RSS is our process's high-water mark (os.wait4). Not a test.
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import sys
import tempfile
import time
from pathlib import Path

from .measure import run_measured

HEADER = "HRScenario,EmailAddress,ResignationDate,LastWorkingDate,EffectiveDate,Remarks,Rating,OldLevel,NewLevel\r\n"


def generate(path: Path, *, records: int | None = None, target_bytes: int | None = None, seed: int = 7) -> int:
    """A multi-scenario file in the documentation's layout; about 1 row in 50 is invalid."""
    rng = random.Random(seed)
    written = count = 0
    with path.open("w", encoding="utf-8", newline="") as out:
        out.write(HEADER)
        while (records is not None and count < records) or (target_bytes is not None and written < target_bytes):
            n = count
            date = f"2025-{1 + n % 12:02d}-{1 + n % 28:02d}T{n % 24:02d}:{n % 60:02d}:00.{n % 9999999:07d}+05:30"
            email = f"employee.{n}@contoso.com" if n % 50 else f"employee.{n}.contoso.com"
            kind = n % 4
            if kind == 0:
                line = f"Resignation,{email},{date},{date},,,,,\r\n"
            elif kind == 1:
                remark = f"Promoted after review {rng.randint(1, 99)}"
                line = f"Job level change,{email},,,{date},{remark},,Level 61,Level 62\r\n"
            elif kind == 2:
                line = f'Performance review,{email},,,{date},"Met expectations, good ""team"" player",3 Met,,\r\n'
            else:
                line = f"Performance improvement plan,{email},,,{date},Needs support,2 Below,,\r\n"
            out.write(line)
            written += len(line)
            count += 1
    return count


def round_trip(path: Path) -> float:
    class Null:
        def write(self, text: str) -> int:
            return len(text)

    t0 = time.perf_counter()
    with path.open(encoding="utf-8", newline="") as handle:
        writer = csv.writer(Null(), lineterminator="\r\n")
        writer.writerows(csv.reader(handle))
    return time.perf_counter() - t0


def ours(path: Path, workdir: Path) -> tuple[float, int, dict]:  # type: ignore[type-arg]
    report = workdir / "report.json"
    elapsed, rss = run_measured(
        [sys.executable, "-m", "hrconnector_core", "validate", str(path), "--report", str(report)],
        ok_exit_codes=(0, 1),  # 1: some rows are invalid, as generated
    )
    return elapsed, rss, json.loads(report.read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--rss-gb", type=float, default=0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="hrvalid-") as tmp:
        workdir = Path(tmp)
        path = workdir / "multi.csv"
        generate(path, records=args.records)
        floor_s = round_trip(path)
        ours_s, rss, report = ours(path, workdir)
        rows = report["rows"]
        print(f"file: {args.records:,} records, {path.stat().st_size / 1e6:.0f} MB, multi-scenario")
        print(f"csv.reader -> csv.writer round trip: {floor_s:6.2f} s  {args.records / floor_s:9,.0f} rows/s")
        print(
            f"validate + normalise + chunk (ours): {ours_s:6.2f} s  {args.records / ours_s:9,.0f} rows/s  "
            f"peak RSS {rss / 2**20:.0f} MB  (valid {rows['planned']:,}, rejected {rows['rejected']:,})"
        )
        print(f"ratio: {floor_s / ours_s:.2f}x of the round trip's rows/s")
        if args.rss_gb:
            big = workdir / "big.csv"
            n = generate(big, target_bytes=int(args.rss_gb * 1e9))
            big_s, big_rss, _ = ours(big, workdir)
            print(
                f"large file: {big.stat().st_size / 1e9:.2f} GB, {n:,} records: {big_s:.1f} s, "
                f"{n / big_s:,.0f} rows/s, peak RSS {big_rss / 2**20:.0f} MB"
            )


if __name__ == "__main__":
    main()
