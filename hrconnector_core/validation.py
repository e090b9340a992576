"""Checks on records -> typed issues; the records that pass go on to chunking.

An issue names a row number, a column and a code, never a field's value, so issues can go
into logs and reports without leaking HR data.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from datetime import datetime
from enum import Enum
from typing import Any

from .csvreader import Record
from .errors import InputFileError
from .mapping import Mapping, ScenarioMapping, closest
from .schema import Kind


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


_EMAIL = re.compile(
    r"[^@\s,;<>()\[\]\\\"]+@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)+"
)
# ISO 8601 as the documentation writes it: yyyy-mm-ddThh:mm:ss, up to 7 fractional digits, and an
# offset, Z, or nothing.
_ISO = re.compile(r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.\d{1,7})?(?:Z|[+-](?:0\d|1[0-4]):[0-5]\d)?")
_LOOKALIKES = (
    (re.compile(r"\d{4}-\d{2}-\d{2}"), "a date without a time: add T00:00:00"),
    (re.compile(r"\d{4}-\d{2}-\d{2}[ _]\d{1,2}:\d{2}(:\d{2})?.*"), "a space instead of the T between date and time"),
    (re.compile(r"\d{4}-\d{2}-\d{2}T\d{1,2}:\d{2}"), "a time without seconds: add :00"),
    (re.compile(r"\d{1,2}/\d{1,2}/\d{2,4}.*"), "dd/mm/yyyy or mm/dd/yyyy"),
    (re.compile(r"\d{4}/\d{1,2}/\d{1,2}.*"), "yyyy/mm/dd"),
    (re.compile(r"\d{1,2}\.\d{1,2}\.\d{2,4}.*"), "dd.mm.yyyy"),
    (re.compile(r"\d{1,2}-[A-Za-z]{3,9}-\d{2,4}.*"), "dd-Mon-yyyy"),
    (re.compile(r"[A-Za-z]{3,9}\.? \d{1,2},? \d{4}.*"), "Month dd, yyyy"),
    (re.compile(r"\d{5}(\.\d+)?"), "an Excel serial date number"),
    (re.compile(r"\d{8}(T?\d{4,6})?Z?"), "ISO 8601 basic format without separators"),
)
DATE_FORMAT_HINT = "yyyy-mm-ddThh:mm:ss with an optional .fraction and offset (e.g. 2024-04-23T15:18:02+05:30)"


def _iso_datetime(value: str) -> bool:
    match = _ISO.fullmatch(value)
    if match is None:
        return False
    year, month, day, hour, minute, second = (int(g) for g in match.groups())
    if hour > 23 or minute > 59 or second > 59:
        return False
    try:
        datetime(year, month, day)
    except ValueError:
        return False
    return True


def date_hint(value: str) -> str:
    """What a non-ISO date looks like, without repeating it."""
    for pattern, looks_like in _LOOKALIKES:
        if pattern.fullmatch(value):
            return f"; it looks like {looks_like}"
    return ""


@dataclass(frozen=True)
class _FieldCheck:
    index: int
    column: str
    kind: Kind
    required: bool
    max_length: int | None
    date_format: str | None


@dataclass(frozen=True)
class _ScenarioPlan:
    title: str
    checks: tuple[_FieldCheck, ...]
    foreign: tuple[tuple[int, str], ...]  # columns that only other scenarios use
    resignation_pair: tuple[int, int] | None  # (ResignationDate, LastWorkingDate) indexes


# After this many rows the duplicate check stops (its memory would grow with the file).
DUPLICATE_CHECK_LIMIT = 1_000_000


class RowValidator:
    """Checks each record against the mapping bound to this file's header.

    Binding happens once per file: a mapped column missing from the header, or a duplicate
    column name, is a file-level error (InputFileError) raised before any row is read.
    """

    def __init__(self, header: list[str], mapping: Mapping | None) -> None:
        self.header = header
        self.width = len(header)
        self.mapping = mapping
        names = [h.strip().casefold() for h in header]
        duplicates = sorted({h for h, n in zip(header, names, strict=True) if n and names.count(n) > 1})
        if duplicates:
            raise InputFileError(f"the header names these columns more than once: {', '.join(duplicates)}")
        self._index = {n: i for i, n in enumerate(names) if n}
        self._plans: dict[str, _ScenarioPlan] = {}
        self._single: _ScenarioPlan | None = None
        self._scenario_index: int | None = None
        if mapping is not None:
            self._bind(mapping)
        self._seen: dict[int, int] = {}
        self._counts: dict[str, list[int]] = {}
        self._duplicate_check_stopped = False

    def _column(self, name: str, purpose: str) -> int:
        index = self._index.get(name.strip().casefold())
        if index is None:
            near = closest(name, self.header)
            hint = f" (the closest header is {near!r})" if near else ""
            raise InputFileError(f"column {name!r} for {purpose} is not in the header{hint}")
        return index

    def _bind(self, mapping: Mapping) -> None:
        if mapping.scenario_column is not None:
            self._scenario_index = self._column(mapping.scenario_column, "the scenario")
        used_by: dict[int, set[str]] = {}
        bound: list[tuple[ScenarioMapping, tuple[_FieldCheck, ...]]] = []
        for sm in mapping.scenarios:
            checks: list[_FieldCheck] = []
            for data_field in sm.scenario.fields:
                column = sm.columns.get(data_field.name)
                if column is None:
                    continue
                index = self._column(column, f"{sm.scenario.title} {data_field.name}")
                used_by.setdefault(index, set()).add(sm.scenario.key)
                fmt = next((f for c, f in mapping.date_formats.items() if c.casefold() == column.casefold()), None)
                checks.append(
                    _FieldCheck(
                        index,
                        self.header[index],
                        data_field.kind,
                        data_field.required,
                        data_field.max_length,
                        fmt if data_field.kind is Kind.DATE else None,
                    )
                )
            bound.append((sm, tuple(checks)))
        for sm, plan_checks in bound:
            mine = {c.index for c in plan_checks}
            foreign = tuple((i, self.header[i]) for i in sorted(used_by) if i not in mine)
            pair = None
            if sm.scenario.key == "resignation":
                pair = (
                    self._column(sm.columns["ResignationDate"], "ResignationDate"),
                    self._column(sm.columns["LastWorkingDate"], "LastWorkingDate"),
                )
            plan = _ScenarioPlan(sm.scenario.title, plan_checks, foreign, pair)
            if sm.value is None:
                self._single = plan
            else:
                self._plans[sm.value.strip().casefold()] = plan

    def validate_rows(self, records: Iterable[Record], sink: RowSink) -> Iterator[ValidRow]:
        """Every record is yielded (possibly normalised), or reported to `sink` with its reasons."""
        width = self.width
        for record in records:
            fields = record.fields
            row = record.row
            if len(fields) != width:
                if not any(f.strip() for f in fields):
                    sink.skipped(Issue(row, None, "blank-row", "blank line skipped", Severity.INFO))
                    continue
                fitted = self._fit(record, sink)
                if fitted is None:
                    continue
                fields = fitted
            elif not any(f.strip() for f in fields):
                sink.skipped(Issue(row, None, "blank-row", "blank line skipped", Severity.INFO))
                continue
            if self.mapping is not None:
                title, errors = self._check(row, fields, sink)
                counts = self._counts.setdefault(title, [0, 0])
                if errors:
                    counts[1] += 1
                    sink.rejected(Record(row, record.fields), errors)
                    continue
                counts[0] += 1
            self._duplicate(row, fields, sink)
            yield ValidRow(row, fields)

    def _fit(self, record: Record, sink: RowSink) -> list[str] | None:
        fields, row, width = record.fields, record.row, self.width
        if len(fields) > width:
            if any(f.strip() for f in fields[width:]):
                sink.rejected(
                    record,
                    [
                        Issue(
                            row,
                            None,
                            "too-many-fields",
                            f"row has {len(fields)} fields but the header has {width}",
                            Severity.ERROR,
                        )
                    ],
                )
                return None
            sink.warned(
                Issue(
                    row,
                    None,
                    "extra-empty-fields",
                    f"row has {len(fields) - width} empty field(s) past the header's width; removed",
                    Severity.WARNING,
                )
            )
            return fields[:width]
        sink.warned(
            Issue(
                row,
                self.header[len(fields)],
                "too-few-fields",
                f"row has {len(fields)} fields but the header has {width}; padded with empty fields",
                Severity.WARNING,
            )
        )
        return fields + [""] * (width - len(fields))

    def scenario_counts(self) -> dict[str, dict[str, int]]:
        """Rows per scenario: valid (passed on) and rejected."""
        return {title: {"valid": v, "rejected": r} for title, (v, r) in self._counts.items()}

    def _check(self, row: int, fields: list[str], sink: RowSink) -> tuple[str, list[Issue]]:
        plan = self._single
        if plan is None:
            assert self._scenario_index is not None
            raw = fields[self._scenario_index]
            plan = self._plans.get(raw.strip().casefold())
            if plan is None:
                column = self.header[self._scenario_index]
                known = ", ".join(repr(p.title) for p in self._plans.values())
                what = "is empty" if not raw.strip() else "is not a mapped scenario value"
                return "(unknown scenario)", [
                    Issue(
                        row, column, "unknown-scenario", f"the scenario value {what} (mapped: {known})", Severity.ERROR
                    )
                ]
        errors: list[Issue] = []
        for check in plan.checks:
            value = fields[check.index]
            if not value.strip():
                if check.required:
                    errors.append(
                        Issue(
                            row,
                            check.column,
                            "required-missing",
                            f"{plan.title} needs a value in this column",
                            Severity.ERROR,
                        )
                    )
                continue
            if check.kind is Kind.EMAIL:
                if not _EMAIL.fullmatch(value.strip()):
                    errors.append(
                        Issue(
                            row,
                            check.column,
                            "invalid-email",
                            "not an e-mail address or UPN (name@domain)",
                            Severity.ERROR,
                        )
                    )
            elif check.kind is Kind.DATE:
                if check.date_format is not None:
                    converted = _convert_date(value.strip(), check.date_format)
                    if converted is None:
                        errors.append(
                            Issue(
                                row,
                                check.column,
                                "invalid-date",
                                f"does not match the mapping's date format {check.date_format}",
                                Severity.ERROR,
                            )
                        )
                    else:
                        fields[check.index] = converted
                elif not _iso_datetime(value.strip()):
                    errors.append(
                        Issue(
                            row,
                            check.column,
                            "invalid-date",
                            f"not ISO 8601 ({DATE_FORMAT_HINT}){date_hint(value.strip())}",
                            Severity.ERROR,
                        )
                    )
            elif check.max_length is not None and len(value) > check.max_length:
                errors.append(
                    Issue(
                        row,
                        check.column,
                        "too-long",
                        f"{len(value)} characters; the limit is {check.max_length}",
                        Severity.ERROR,
                    )
                )
        for index, column in plan.foreign:
            if fields[index].strip():
                empty_dates = [
                    c.column for c in plan.checks if c.kind is Kind.DATE and c.required and not fields[c.index].strip()
                ]
                hint = f" (does the value belong in {empty_dates[0]}?)" if empty_dates else ""
                sink.warned(
                    Issue(
                        row,
                        column,
                        "value-in-other-scenario-column",
                        f"{plan.title} rows do not use this column; the connector ignores its value{hint}",
                        Severity.WARNING,
                    )
                )
        if not errors and plan.resignation_pair is not None:
            resigned, last_day = (fields[i].strip() for i in plan.resignation_pair)
            if _before(last_day, resigned):
                sink.warned(
                    Issue(
                        row,
                        self.header[plan.resignation_pair[1]],
                        "last-working-before-resignation",
                        "the last working date is before the resignation date",
                        Severity.WARNING,
                    )
                )
        return plan.title, errors

    def _duplicate(self, row: int, fields: list[str], sink: RowSink) -> None:
        if self._duplicate_check_stopped:
            return
        key = hash(tuple(fields))
        first = self._seen.get(key)
        if first is not None:
            sink.warned(Issue(row, None, "duplicate-row", f"same values as row {first}", Severity.WARNING))
        elif len(self._seen) < DUPLICATE_CHECK_LIMIT:
            self._seen[key] = row
        else:
            self._duplicate_check_stopped = True
            self._seen.clear()
            sink.warned(
                Issue(
                    row,
                    None,
                    "duplicate-check-limited",
                    f"duplicate rows are looked for in the first {DUPLICATE_CHECK_LIMIT:,} rows only",
                    Severity.INFO,
                )
            )


def _convert_date(value: str, fmt: str) -> str | None:
    try:
        parsed = datetime.strptime(value, fmt)
    except ValueError:
        return None
    return parsed.isoformat()


def _parse_iso(value: str) -> datetime | None:
    text = value.replace("Z", "+00:00")
    if "." in text:  # Python takes at most 6 fractional digits before 3.11's fromisoformat
        head, _, rest = text.partition(".")
        digits = len(rest) - len(rest.lstrip("0123456789"))
        text = head + "." + rest[: min(digits, 6)].ljust(6, "0") + rest[digits:]
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return None


def _before(later: str, earlier: str) -> bool:
    a, b = _parse_iso(later), _parse_iso(earlier)
    if a is None or b is None:
        return False
    if (a.tzinfo is None) != (b.tzinfo is None):
        a, b = a.replace(tzinfo=None), b.replace(tzinfo=None)
    return a < b


def conform_rows(header: list[str], records: Iterable[Record], sink: RowSink) -> Iterator[ValidRow]:
    """Shape checks only: what the service itself enforces (it answers 500 on a ragged row)."""
    return RowValidator(header, None).validate_rows(records, sink)
