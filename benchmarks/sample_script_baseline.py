"""A Python rendering of the algorithm of Microsoft's sample upload script, for comparison only.

What it does, as the PowerShell script does: split the file on line breaks into chunks of N lines,
write each chunk (with the header) to a temporary file, fetch a new token (v1 endpoint, resource)
for every chunk, and POST the chunks one after another. Its known faults (quoted line breaks cut,
rows lost on network errors) are kept: this is the baseline to beat, not code to use.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import requests


def upload_like_the_sample_script(
    path: Path,
    *,
    authority: str,
    ingestion: str,
    tenant: str,
    app_id: str,
    secret: str,
    job_id: str,
    resource: str,
    lines_per_call: int,
) -> int:
    """Returns the number of data lines sent."""
    sent = 0
    with path.open(encoding="utf-8") as handle:
        header = handle.readline()
        while True:
            lines = []
            for _ in range(lines_per_call):
                line = handle.readline()
                if not line:
                    break
                lines.append(line)
            if not lines:
                break
            fd, temp = tempfile.mkstemp(suffix=".csv")
            with os.fdopen(fd, "w", encoding="utf-8") as chunk_file:
                chunk_file.write(header)
                chunk_file.writelines(lines)
            token = requests.post(
                f"{authority}/{tenant}/oauth2/token",
                data={
                    "client_id": app_id,
                    "client_secret": secret,
                    "grant_type": "client_credentials",
                    "resource": resource,
                },
                timeout=60,
            ).json()["access_token"]
            with open(temp, "rb") as body:
                response = requests.post(
                    f"{ingestion}/api/signals",
                    params={"jobid": job_id},
                    headers={"Authorization": f"Bearer {token}"},
                    files={"file": (Path(temp).name, body, "text/csv")},
                    timeout=300,
                )
            os.unlink(temp)
            if response.status_code != 200:
                time.sleep(0)  # the script would log, sleep 60 s and retry; no faults are injected here
            sent += len(lines)
    return sent
