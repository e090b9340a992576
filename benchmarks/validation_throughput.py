"""Validation throughput and memory: validate + normalise + chunk, against a bare csv round trip.

    python -m benchmarks.validation_throughput                 # 1,000,000 records (~120 MB)
    python -m benchmarks.validation_throughput --rss-gb 1      # also peak RSS on a 1 GB file
    python -m benchmarks.validation_throughput --header        # 10,000 vs 100,000 header columns

Two files: the documentation's multi-scenario layout, and a mixed one (all four event scenarios,
offsets and fractional seconds, quoted multi-line remarks) that exercises every fast-path case.

Ours is `hrconnector validate` in its own process (the full path of a dry run: the hashing and
encoding pass, reading, validation against the default multi-scenario mapping, chunking into
UTF-8 CSV); the floor is csv.reader -> csv.writer over the same file in this process, the least
any pure-Python tool can do. Peak RSS is our process's high-water mark (os.wait4). Not a test.

Both are timed the same way (wall and CPU), back to back, one pair per repeat; ours also pays for
its interpreter's start-up, the floor does not. Our child runs with its bytecode cached, as an
installed package has it (a development shell may set PYTHONDONTWRITEBYTECODE, which would make
every run compile each module again): the cache lives in the run's temporary directory and a
first run on a tiny file fills it, outside the timings.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import resource
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path

from hrconnector_core.csvreader import Record
from hrconnector_core.pipeline import default_mapping
from hrconnector_core.validation import Issue, RowSink, RowValidator

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


_OFFSETS = ("+05:30", "+05:30", "+05:30", "Z", "-08:00", "")


def _stamp(moment: datetime, n: int, offset: str) -> str:
    """ISO 8601 with 0-7 fraction digits (varying) and the given offset."""
    digits = n % 8
    fraction = f".{(n * 7919) % 10_000_000:07d}"[: digits + 1] if digits else ""
    return moment.strftime("%Y-%m-%dT%H:%M:%S") + fraction + offset


def generate_mixed(path: Path, *, records: int, seed: int = 11) -> int:
    """The four event scenarios in equal share, dates on every day of the year with offsets and
    fractional seconds, half the reviews with quoted remarks holding commas, quotes and line
    breaks; about 1 row in 50 has an invalid e-mail."""
    rng = random.Random(seed)
    start = datetime(2024, 1, 1)
    with path.open("w", encoding="utf-8", newline="") as out:
        out.write(HEADER)
        for n in range(records):
            moment = start + timedelta(seconds=rng.randrange(366 * 86_400))
            offset = _OFFSETS[n % len(_OFFSETS)]
            date = _stamp(moment, n, offset)
            email = f"employee.{n}@contoso.com" if n % 50 else f"employee.{n}.contoso.com"
            kind = n % 4
            if kind == 0:  # the last working day mostly after the resignation, now and then before
                last = _stamp(
                    moment + timedelta(days=rng.randrange(-3, 60), seconds=rng.randrange(86_400)), n + 3, offset
                )
                line = f"Resignation,{email},{date},{last},,,,,\r\n"
            elif kind == 1:
                remark = f"Promoted after review {rng.randint(1, 99)}"
                line = f"Job level change,{email},,,{date},{remark},,Level 61,Level 62\r\n"
            elif kind == 2 and n % 8 == 2:
                remark = f'"Met expectations, a ""team"" player.\r\nNext: lead, mentor ({rng.randint(1, 9)})"'
                line = f"Performance review,{email},,,{date},{remark},3 Met,,\r\n"
            elif kind == 2:
                line = f"Performance review,{email},,,{date},Met expectations,3 Met,,\r\n"
            else:
                line = f"Performance improvement plan,{email},,,{date},Needs support,2 Below,,\r\n"
            out.write(line)
    return records


def round_trip(path: Path) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of csv.reader -> csv.writer over the file."""

    class Null:
        def write(self, text: str) -> int:
            return len(text)

    t0, c0 = time.perf_counter(), time.process_time()
    with path.open(encoding="utf-8", newline="") as handle:
        writer = csv.writer(Null(), lineterminator="\r\n")
        writer.writerows(csv.reader(handle))
    return time.perf_counter() - t0, time.process_time() - c0


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def child_env(workdir: Path) -> dict[str, str]:
    """Our child's environment: bytecode cached under workdir (see the module's docstring)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPYCACHEPREFIX"] = str(workdir / "pycache")
    return env


def ours(path: Path, workdir: Path) -> tuple[float, float, int, dict]:  # type: ignore[type-arg]
    """(wall seconds, CPU seconds, peak RSS, report) of `hrconnector validate` in its own process."""
    report = workdir / "report.json"
    c0 = _children_cpu()
    elapsed, rss = run_measured(
        [sys.executable, "-m", "hrconnector_core", "validate", str(path), "--report", str(report)],
        env=child_env(workdir),
        ok_exit_codes=(0, 1),  # 1: some rows are invalid, as generated
    )
    return elapsed, _children_cpu() - c0, rss, json.loads(report.read_text())


def warm_up(workdir: Path) -> None:
    """One run on a two-row file: fills the bytecode cache (untimed)."""
    tiny = workdir / "tiny.csv"
    tiny.write_text(HEADER + "Resignation,a@contoso.com,2024-04-23T15:18:02Z,2024-04-30T15:18:02Z,,,,,\r\n")
    ours(tiny, workdir)


def wide_headers() -> None:
    """Binding a 10,000- and a 100,000-column header and checking a few rows: CPU seconds, best of 3."""
    for width in (10_000, 100_000):
        header = ["HRScenario", "EmailAddress", "EffectiveDate", *(f"Column{i}" for i in range(width - 3))]
        row = ["Performance review", "a@contoso.com", "2024-04-23T15:18:02Z", *[""] * (width - 3)]
        best = float("inf")
        for _ in range(3):
            t0 = time.process_time()
            validator = RowValidator(header, default_mapping(header))
            list(validator.validate_rows([(n, list(row)) for n in range(2, 12)], _NullSink()))
            best = min(best, time.process_time() - t0)
        print(f"{width:>7,} columns: {best:.3f} s CPU (mapping inferred, header bound, 10 rows checked)")


class _NullSink(RowSink):
    def skipped(self, issue: Issue) -> None:
        pass

    def rejected(self, record: Record, issues: list[Issue]) -> None:
        pass

    def warned(self, issue: Issue) -> None:
        pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--rss-gb", type=float, default=0)
    parser.add_argument("--repeat", type=int, default=1, help="measure each file this many times")
    parser.add_argument("--header", action="store_true", help="only the wide-header benchmark")
    args = parser.parse_args()
    if args.header:
        wide_headers()
        return
    with tempfile.TemporaryDirectory(prefix="hrvalid-") as tmp:
        workdir = Path(tmp)
        files = {"multi-scenario": workdir / "multi.csv", "mixed": workdir / "mixed.csv"}
        generate(files["multi-scenario"], records=args.records)
        generate_mixed(files["mixed"], records=args.records)
        warm_up(workdir)
        for name, path in files.items():
            print(f"{name} file: {args.records:,} records, {path.stat().st_size / 1e6:.0f} MB")
            ratios, cpu_ratios, floors, ourss = [], [], [], []
            for _ in range(args.repeat):  # a shared machine: each pair measured back to back
                floor_s, floor_cpu = round_trip(path)
                ours_s, ours_cpu, rss, report = ours(path, workdir)
                rows = report["rows"]
                ratios.append(floor_s / ours_s)
                cpu_ratios.append(floor_cpu / ours_cpu)
                floors.append((floor_s, floor_cpu))
                ourss.append((ours_s, ours_cpu))
                print(
                    f"  round trip {floor_s:6.2f} s {args.records / floor_s:9,.0f} rows/s | ours {ours_s:6.2f} s "
                    f"{args.records / ours_s:9,.0f} rows/s, peak RSS {rss / 2**20:.0f} MB "
                    f"(valid {rows['planned']:,}, rejected {rows['rejected']:,}) | ratio {ratios[-1]:.2f}x "
                    f"(CPU {floor_cpu:.2f} s / {ours_cpu:.2f} s = {cpu_ratios[-1]:.2f}x)"
                )
            print(
                f"  ratio: best {max(ratios):.2f}x, range {min(ratios):.2f}-{max(ratios):.2f}x over {len(ratios)}; "
                f"CPU time ratio {min(cpu_ratios):.2f}-{max(cpu_ratios):.2f}x"
            )
            # Each side's least disturbed run (the fastest): what the machine's load did not add.
            print(
                f"  best of each: wall {min(f for f, _ in floors):.2f} s / {min(o for o, _ in ourss):.2f} s = "
                f"{min(f for f, _ in floors) / min(o for o, _ in ourss):.2f}x, CPU {min(c for _, c in floors):.2f} s / "
                f"{min(c for _, c in ourss):.2f} s = {min(c for _, c in floors) / min(c for _, c in ourss):.2f}x"
            )
        if args.rss_gb:
            big = workdir / "big.csv"
            n = generate(big, target_bytes=int(args.rss_gb * 1e9))
            big_s, _, big_rss, _ = ours(big, workdir)
            print(
                f"large file: {big.stat().st_size / 1e9:.2f} GB, {n:,} records: {big_s:.1f} s, "
                f"{n / big_s:,.0f} rows/s, peak RSS {big_rss / 2**20:.0f} MB"
            )


if __name__ == "__main__":
    main()
