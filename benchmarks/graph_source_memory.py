"""The SharePoint/OneDrive source's memory and time on large files: the registered source timer, in
its own process, copying one file from the emulated SharePoint folder into Azurite.

    python -m benchmarks.graph_source_memory              # 50 MB and 200 MB files
    python -m benchmarks.graph_source_memory --mb 20 100 400

Peak RSS is the timer process's own high-water mark, read from its /proc/self/status (VmHWM) as it
ends: os.wait4's ru_maxrss would count this process's size at fork, and this process holds the
emulated SharePoint's files. Flat memory means the peak does not grow with the file (the copy
streams into staged 4 MiB blocks). The emulator (this process) and Azurite keep the file in memory,
so very large sizes need RAM for them. Not a test.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

from hrconnector_core.emulator import EmulatorState

from .measure import REPO, function_environment

IDENTITY = "55555555-5555-4555-8555-555555555555"
INVOKE = """
from hrconnector_core.emulator.host import invoke_timer
invoke_timer("hr_graph_source")
status = open("/proc/self/status").read()
print(next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM:")))
"""
FOLDER = "HR/Exports"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mb", type=int, nargs="*", default=[50, 200])
    args = parser.parse_args()
    state = EmulatorState(keep_rows=False)
    graph = state.graph
    site_id = graph.add_site("contoso.sharepoint.com", "/sites/Bench")
    drive_id = graph.add_drive(site_id, "Documents")
    graph.ensure_folder(drive_id, FOLDER)
    graph.grant_site(IDENTITY, site_id, "read")
    source = {"HR_SOURCE_SITE": "contoso.sharepoint.com/sites/Bench", "HR_SOURCE_FOLDER": FOLDER,
              "HR_SOURCE_MOVE": "false"}  # fmt: skip
    with function_environment(state, IDENTITY, **source) as (env, service, _tmp):
        peak_rss(env)  # the first run: the baseline
        print(f"{'file':>8} {'seconds':>8} {'MB/s':>7} {'peak RSS':>9}")
        block = os.urandom(1 << 20)
        for mb in args.mb:
            data = b"EmailAddress,Remarks\r\n" + block * mb
            graph.put_file(drive_id, f"{FOLDER}/bench-{mb}.csv", data)
            del data
            t0 = time.perf_counter()
            rss = peak_rss(env)
            seconds = time.perf_counter() - t0
            copied = [b for b in service.incoming.list_blobs() if b.name.endswith(f"/bench-{mb}.csv")]
            assert len(copied) == 1 and copied[0].size == mb * (1 << 20) + 22, "the copy is not complete"
            print(f"{mb:>6}MB {seconds:>8.1f} {mb / seconds:>7.1f} {rss / 1e6:>7.0f}MB")
    return 0


def peak_rss(env: dict[str, str]) -> int:
    """Run the source timer in its own process; its peak RSS in bytes."""
    result = subprocess.run([sys.executable, "-c", INVOKE], env=env, cwd=REPO, capture_output=True, text=True,
                            check=False)  # fmt: skip
    if result.returncode != 0:
        raise RuntimeError(f"the source timer failed:\n{result.stderr[-2000:]}")
    return int(result.stdout.split()[-1]) * 1024


if __name__ == "__main__":
    sys.exit(main())
