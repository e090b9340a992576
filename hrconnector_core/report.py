"""The run report: what happened to every row and every chunk, serialisable to JSON.

Accounting identity, checked before a run may call itself a success:
rows_in = uploaded + previously_uploaded + rejected + skipped + not_uploaded.
"""

from __future__ import annotations

import csv
import json
import os
import re
import threading
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TextIO

from .csvreader import CsvFormat, Record
from .validation import Issue, RowSink, Severity

MAX_ISSUES_LISTED = 10_000

# OWASP CSV injection: a cell starting with one of these is a formula to Excel and its kin...
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
# ...unless it is a plain number (-12, +3.5) or a lone sign, which spreadsheets read as values.
_PLAIN_NUMBER = re.compile(r"[+-]?(?:\d+(?:[.,]\d+)?)?").fullmatch


def neutralise(cell: str) -> str:
    """A cell a spreadsheet opens as text, never as a formula: a leading apostrophe when needed."""
    if cell.startswith(_FORMULA_START) and not _PLAIN_NUMBER(cell):
        return "'" + cell
    return cell


def was_neutralised(cell: str) -> bool:
    """Whether the cell reads like one `neutralise` changed: its apostrophe is ours, not data."""
    return cell.startswith("'") and neutralise(cell[1:]) == cell


def reject_neutralised(records: Iterable[Record], sink: RowSink) -> Iterator[Record]:
    """Rows of a rejected-rows file dropped again with our apostrophes still in: set aside with a
    clear reason rather than uploaded with a stray apostrophe (only run when the first pass saw one)."""
    for record in records:
        row, fields = record
        marked = [i for i, cell in enumerate(fields) if cell[:1] == "'" and was_neutralised(cell)]
        if not marked:
            yield record
            continue
        sink.rejected(record, [
            Issue(
                row,
                None,
                "neutralised-formula",
                f"field {i + 1} starts with the apostrophe the rejected-rows file adds before a formula "
                "character: remove it (and the formula, unless the value really starts with = + - @)",
                Severity.ERROR,
            )
            for i in marked
        ])  # fmt: skip


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


class RejectedRowsWriter:
    """The rows set aside, as they were read, with their reasons: fix them and drop the file again.

    Two columns go first (RejectedRow, RejectedReasons) so that a row with more fields than the
    header still lines up. This file holds HR data on purpose: keep it where the input was.
    Cells a spreadsheet would run as formulas get a leading apostrophe (docs/mapping.md).
    Written as the input was (`csv_format`: encoding, byte-order mark, delimiter, Excel's sep=
    line), so the spreadsheet that made the file opens this one the same way; a workbook's
    rejects are UTF-8 CSV with a BOM, which Excel opens with its accents.
    """

    def __init__(
        self, path: str | os.PathLike[str], header: list[str] | None = None, csv_format: CsvFormat | None = None
    ) -> None:
        self.path = Path(path)
        self.header = header
        self.csv_format = csv_format
        self._handle: TextIO | None = None
        self._writer: Any = None
        self.count = 0

    def write(self, record: Record, issues: list[Issue]) -> None:
        if self._writer is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fmt = self.csv_format or CsvFormat()
            # UTF-16 read without a BOM is written with one: Excel needs it to know the encoding.
            encoding = "utf-16" if fmt.encoding.startswith("utf-16") else fmt.encoding
            # Every character of the rows came from this encoding; only a reason could fall outside it.
            self._handle = self.path.open("w", encoding=encoding, errors="replace", newline="")
            if fmt.sep_line:
                self._handle.write(f"sep={fmt.delimiter}\r\n")
            self._writer = csv.writer(self._handle, delimiter=fmt.delimiter, lineterminator="\r\n")
            self._writer.writerow(["RejectedRow", "RejectedReasons", *map(neutralise, self.header or [])])
        reasons = "; ".join(f"{i.column + ': ' if i.column else ''}{i.code}: {i.message}" for i in issues)
        row, fields = record
        self._writer.writerow([row, neutralise(reasons), *map(neutralise, fields)])
        self.count += 1

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None


@dataclass
class ChunkReport:
    index: int
    first_row: int
    last_row: int
    records: int
    status: str  # planned | uploaded | uploaded-not-recorded | previously-uploaded | failed | not-attempted
    http_status: int | None = None
    attempts: list[dict[str, Any]] = field(default_factory=list)
    duration_ms: int = 0
    response_body: str | None = None
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class RowCounts:
    rows_in: int = 0
    uploaded: int = 0
    previously_uploaded: int = 0
    rejected: int = 0
    skipped: int = 0
    not_uploaded: int = 0
    planned: int = 0

    @property
    def balanced(self) -> bool:
        accounted = (
            self.uploaded + self.previously_uploaded + self.rejected + self.skipped + self.not_uploaded + self.planned
        )
        return accounted == self.rows_in


@dataclass
class RunReport(RowSink):
    file_name: str
    job_id: str
    file_sha256: str = ""
    file_bytes: int = 0
    ingestion_url: str = ""
    records_per_call: int = 0
    max_concurrency: int = 1
    dry_run: bool = False
    started_at: str = field(default_factory=utc_now)
    finished_at: str | None = None
    duration_s: float = 0.0
    header: list[str] = field(default_factory=list)
    rows: RowCounts = field(default_factory=RowCounts)
    chunks: list[ChunkReport] = field(default_factory=list)
    issues: list[Issue] = field(default_factory=list)
    issue_counts: Counter[str] = field(default_factory=Counter)
    token_fetches: int = 0
    error: str | None = None
    policy: str = "upload-valid"
    encoding: str = ""
    delimiter: str = ""
    mapping: dict[str, Any] | None = None
    scenarios: dict[str, dict[str, int]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # e.g. "already uploaded in full on ..."
    not_run: bool = False  # turned away before reading a row (another run holds the lock)
    replaced: bool = False  # closed after its bytes were replaced: only what the service accepted is known
    accepted_at: str | None = None  # when the service first accepted rows of this content (its checkpoint)
    rejected_rows: RejectedRowsWriter | None = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    # RowSink: what validation did not pass on unchanged.
    def skipped(self, issue: Issue) -> None:
        self.rows.skipped += 1
        self._note(issue)

    def rejected(self, record: Record, issues: list[Issue]) -> None:
        self.rows.rejected += 1
        if self.rejected_rows is not None:
            self.rejected_rows.write(record, issues)
        for issue in issues:
            self._note(issue)

    def warned(self, issue: Issue) -> None:
        self._note(issue)

    def _note(self, issue: Issue) -> None:
        self.issue_counts[issue.code] += 1
        if len(self.issues) < MAX_ISSUES_LISTED:
            self.issues.append(issue)

    def add_chunk(self, chunk: ChunkReport) -> None:
        with self._lock:
            self.chunks.append(chunk)
            counts = self.rows
            if chunk.status in ("uploaded", "uploaded-not-recorded"):  # the service has them either way
                counts.uploaded += chunk.records
            elif chunk.status == "previously-uploaded":
                counts.previously_uploaded += chunk.records
            elif chunk.status == "planned":
                counts.planned += chunk.records
            else:
                counts.not_uploaded += chunk.records

    @property
    def status(self) -> str:
        """succeeded: every row is in the service; anything less is partial or failed (not-run:
        another run of the same file and job was under way, this one did nothing; replaced: the
        version's bytes went before a run finished it, so only its accepted rows are counted)."""
        if self.not_run:
            return "not-run"
        if self.replaced:
            return "replaced"
        if self.error and not (self.rows.uploaded or self.rows.previously_uploaded):
            return "failed"
        if self.error or self.rows.not_uploaded or self.rows.rejected or not self.rows.balanced:
            return "partial"
        return "planned" if self.dry_run else "succeeded"

    def to_dict(self) -> dict[str, Any]:
        rows = self.rows
        return {
            "status": self.status,
            "file": {"name": self.file_name, "sha256": self.file_sha256, "bytes": self.file_bytes},
            "job_id": self.job_id,
            "ingestion_url": self.ingestion_url,
            "records_per_call": self.records_per_call,
            "max_concurrency": self.max_concurrency,
            "dry_run": self.dry_run,
            "policy": self.policy,
            "format": {"encoding": self.encoding, "delimiter": self.delimiter},
            "mapping": self.mapping,
            "scenarios": self.scenarios,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "duration_s": round(self.duration_s, 3),
            "columns": self.header,
            "rows": {
                "in": rows.rows_in,
                "uploaded": rows.uploaded,
                "previously_uploaded": rows.previously_uploaded,
                "rejected": rows.rejected,
                "skipped": rows.skipped,
                "not_uploaded": rows.not_uploaded,
                "planned": rows.planned,
                "balanced": rows.balanced,
            },
            "chunks": {
                "total": len(self.chunks),
                "by_status": dict(Counter(c.status for c in self.chunks)),
                "items": [c.to_dict() for c in sorted(self.chunks, key=lambda c: c.index)],
            },
            "issues": {
                "counts": dict(self.issue_counts),
                "listed": len(self.issues),
                "items": [i.to_dict() for i in self.issues],
            },
            "token_fetches": self.token_fetches,
            "notes": self.notes,
            "error": self.error,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, ensure_ascii=False)
