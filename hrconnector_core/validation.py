"""Checks on records -> typed issues; the records that pass go on to chunking.

An issue names a row number, a column and a code, never a field's value, so issues can go
into logs and reports without leaking HR data.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from enum import Enum
from typing import Any

from .csvreader import Record


class Severity(str, Enum):
    ERROR = "error"  # the row is not uploaded
    WARNING = "warning"  # the row is uploaded, perhaps changed
    INFO = "info"  # nothing to upload (a blank line)


@dataclass(frozen=True, slots=True)
class Issue:
    row: int | None
    column: str | None
    code: str
    message: str
    severity: Severity

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["severity"] = self.severity.value
        return data


@dataclass(frozen=True, slots=True)
class ValidRow:
    """A row ready to upload: exactly as wide as the header."""

    row: int
    fields: list[str]


class RowSink:
    """Where the validator reports what it did not pass on (the run report implements it)."""

    def skipped(self, issue: Issue) -> None:  # pragma: no cover - interface
        raise NotImplementedError

    def rejected(self, record: Record, issues: list[Issue]) -> None:  # pragma: no cover
        raise NotImplementedError

    def warned(self, issue: Issue) -> None:  # pragma: no cover - interface
        raise NotImplementedError


def conform_rows(header: list[str], records: Iterable[Record], sink: RowSink) -> Iterator[ValidRow]:
    """Shape checks the service itself enforces (it answers 500 when a row's width differs).

    Blank lines are skipped, short rows are padded to the header's width (a warning), and rows
    with more fields than the header are set aside (an error): no row is dropped unreported.
    """
    width = len(header)
    for record in records:
        fields = record.fields
        if not any(f.strip() for f in fields):
            sink.skipped(Issue(record.row, None, "blank-row", "blank line skipped", Severity.INFO))
            continue
        if len(fields) > width:
            extra = fields[width:]
            if any(f.strip() for f in extra):
                sink.rejected(
                    record,
                    [
                        Issue(
                            record.row,
                            None,
                            "too-many-fields",
                            f"row has {len(fields)} fields but the header has {width}",
                            Severity.ERROR,
                        )
                    ],
                )
                continue
            sink.warned(
                Issue(
                    record.row,
                    None,
                    "extra-empty-fields",
                    f"row has {len(fields) - width} empty field(s) past the header's width; removed",
                    Severity.WARNING,
                )
            )
            fields = fields[:width]
        elif len(fields) < width:
            sink.warned(
                Issue(
                    record.row,
                    header[len(fields)],
                    "too-few-fields",
                    f"row has {len(fields)} fields but the header has {width}; padded with empty fields",
                    Severity.WARNING,
                )
            )
            fields = fields + [""] * (width - len(fields))
        yield ValidRow(record.row, fields)
