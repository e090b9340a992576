"""Test data: HR-like rows with the awkward bits real exports have (commas, quotes, line breaks)."""

from __future__ import annotations

import csv
import io
from pathlib import Path

HEADER = ["EmailAddress", "EffectiveDate", "Remarks", "Rating"]


def rows(n: int, *, start: int = 0) -> list[list[str]]:
    out = []
    for i in range(start, start + n):
        remarks = f"remark {i}"
        if i % 7 == 0:
            remarks = f'said "fine", then\nleft early (row {i})'
        elif i % 5 == 0:
            remarks = f"comma, separated, {i}"
        out.append([f"user{i}@contoso.com", f"2024-01-{1 + i % 28:02d}T09:00:00Z", remarks, f"{i % 5} stars"])
    return out


def write_csv(path: Path, header: list[str], data: list[list[str]], *, newline: str = "\r\n") -> Path:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator=newline)
    writer.writerow(header)
    writer.writerows(data)
    path.write_bytes(buffer.getvalue().encode("utf-8"))
    return path


def parse(data: bytes) -> list[list[str]]:
    return list(csv.reader(io.StringIO(data.decode("utf-8"), newline="")))


def csv_bytes(header: list[str], data: list[list[str]]) -> bytes:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\r\n").writerows([header, *data])
    return buffer.getvalue().encode("utf-8")
