"""Upload throughput and memory: our CLI against a baseline that follows the sample script.

    python -m benchmarks.upload_throughput                  # 200,000 records, 500 ms per call
    python -m benchmarks.upload_throughput --rss-gb 1       # also peak RSS on a 1 GB file

The emulator runs in its own process (rows counted, not kept) with the given latency added to
every upload, a stand-in for the service's own processing time. Both contenders use the same
chunk size. Peak RSS is the resident high-water mark of our CLI process (os.wait4), emulator
excluded. Not a test: it prints figures, it asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

from hrconnector_core.clouds import DEFAULT_RESOURCE
from hrconnector_core.emulator.__main__ import (
    DEMO_APP,
    DEMO_JOB,
    DEMO_SECRET,
    DEMO_SECRET_ENV,
    DEMO_TENANT,
    demo_upload_command,
)

from .measure import REPO, run_measured
from .sample_script_baseline import upload_like_the_sample_script


def generate(path: Path, *, records: int | None = None, target_bytes: int | None = None, seed: int = 1) -> int:
    """An HR-like multi-column file (no quoted line breaks: the baseline would cut them)."""
    rng = random.Random(seed)
    depts = ["Orthopaedic", "Radiology", "Finance, EMEA", "Sales", "R&D"]
    written = count = 0
    with path.open("w", encoding="utf-8", newline="") as handle:
        handle.write("EmailAddress,EffectiveDate,Remarks,Rating,Department\r\n")
        while (records is not None and count < records) or (target_bytes is not None and written < target_bytes):
            line = (
                f"user{count}@contoso.com,2025-{1 + count % 12:02d}-{1 + count % 28:02d}T09:{count % 60:02d}:00Z,"
                f'"Reviewed by manager {rng.randint(1, 999)}, ""on track""",{rng.randint(1, 5)} stars,'
                f'"{rng.choice(depts)}"\r\n'
            )
            handle.write(line)
            written += len(line)
            count += 1
    return count


def start_emulator(workdir: Path, latency_ms: int) -> tuple[subprocess.Popen[bytes], dict[str, str]]:
    ready = workdir / "ready.json"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "hrconnector_core.emulator",
            "--latency-ms",
            str(latency_ms),
            "--discard-rows",
            "--ca-file",
            str(workdir / "ca.pem"),
            "--data-dir",
            str(workdir / "emu"),
            "--ready-file",
            str(ready),
        ],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while not ready.exists():
        if time.monotonic() > deadline or proc.poll() is not None:
            raise RuntimeError("the emulator did not start")
        time.sleep(0.05)
    time.sleep(0.1)
    return proc, json.loads(ready.read_text())


def run_ours(path: Path, info: dict[str, str], workdir: Path, extra: list[str]) -> tuple[float, int, dict]:  # type: ignore[type-arg]
    env = dict(os.environ, REQUESTS_CA_BUNDLE=info["ca_file"], **{DEMO_SECRET_ENV: DEMO_SECRET})
    report = workdir / "report.json"
    cmd = demo_upload_command(
        info["url"], path, "--state-dir", str(workdir / "state"), "--force", "--report", str(report), *extra
    )
    elapsed, rss = run_measured(cmd, env=env)
    return elapsed, rss, json.loads(report.read_text())


def records_saved(info: dict[str, str]) -> int:
    log = requests.get(f"{info['url']}/api/jobs/{DEMO_JOB}/log", verify=info["ca_file"], timeout=30).json()
    return sum(entry["RecordsSaved"] for entry in log)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--latency-ms", type=int, default=500)
    parser.add_argument("--records-per-call", type=int, default=5_000)
    parser.add_argument("--rss-gb", type=float, default=0, help="also measure peak RSS on a file this large")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="hrbench-") as tmp:
        workdir = Path(tmp)
        path = workdir / "hr.csv"
        generate(path, records=args.records)
        size_mb = path.stat().st_size / 1e6
        emulator, info = start_emulator(workdir, args.latency_ms)
        try:
            chunk = ["--records-per-call", str(args.records_per_call)]
            ours_s, ours_rss, report = run_ours(path, info, workdir, chunk)
            saved_ours = records_saved(info)
            os.environ["REQUESTS_CA_BUNDLE"] = info["ca_file"]
            t0 = time.perf_counter()
            sent = upload_like_the_sample_script(
                path,
                authority=info["url"],
                ingestion=info["url"],
                tenant=DEMO_TENANT,
                app_id=DEMO_APP,
                secret=DEMO_SECRET,
                job_id=DEMO_JOB,
                resource=DEFAULT_RESOURCE,
                lines_per_call=args.records_per_call,
            )
            base_s = time.perf_counter() - t0
            saved_total = records_saved(info)
        finally:
            emulator.terminate()
            emulator.wait()

        ours_rate, base_rate = args.records / ours_s, sent / base_s
        print(
            f"file: {args.records:,} records, {size_mb:.1f} MB; {args.latency_ms} ms added per upload call; "
            f"{args.records_per_call:,} records per call"
        )
        print(
            f"ours (defaults: concurrency {report['max_concurrency']}): {ours_s:6.2f} s  {ours_rate:9,.0f} rows/s  "
            f"peak RSS {ours_rss / 2**20:.0f} MB  token fetches {report['token_fetches']}  "
            f"rows saved {saved_ours:,}"
        )
        print(
            f"baseline (sample script algorithm):  {base_s:6.2f} s  {base_rate:9,.0f} rows/s  "
            f"rows saved {saved_total - saved_ours:,}"
        )
        print(f"ratio: {ours_rate / base_rate:.2f}x")

        if args.rss_gb:
            big = workdir / "big.csv"
            n = generate(big, target_bytes=int(args.rss_gb * 1e9))
            emulator, info = start_emulator(workdir / "big", 0)
            try:
                big_s, big_rss, big_report = run_ours(big, info, workdir, chunk)
            finally:
                emulator.terminate()
                emulator.wait()
            print(
                f"large file: {big.stat().st_size / 1e9:.2f} GB, {n:,} records, no added latency: "
                f"{big_s:.1f} s, {n / big_s:,.0f} rows/s, peak RSS {big_rss / 2**20:.0f} MB, "
                f"status {big_report['status']}"
            )


if __name__ == "__main__":
    main()
