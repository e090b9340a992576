"""Checks on records -> typed issues; the records that pass go on to chunking.

An issue names a row number, a column and a code, never a field's value, so issues can go
into logs and reports without leaking HR data.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum
from typing import Any, NamedTuple

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
        # Not dataclasses.asdict: it deep-copies field by field, and a report lists up to 10,000 issues.
        return {
            "row": self.row,
            "column": self.column,
            "code": self.code,
            "message": self.message,
            "severity": self.severity.value,
        }


# A row ready to upload, exactly as wide as the header: (row number, fields).
ValidRow = tuple[int, list[str]]


class RowSink:
    """Where the validator reports what it did not pass on (the run report implements it)."""

    def skipped(self, issue: Issue) -> None:  # pragma: no cover - interface
        raise NotImplementedError

    def rejected(self, record: Record, issues: list[Issue]) -> None:  # pragma: no cover
        raise NotImplementedError

    def warned(self, issue: Issue) -> None:  # pragma: no cover - interface
        raise NotImplementedError


# Control characters: C0, DEL and C1. None belongs in an e-mail address, and the fast path
# accepts no field containing one (its separator is one of them).
_CONTROL = r"\x00-\x1f\x7f-\x9f"
# re.ASCII: \d is 0-9 only (Arabic-Indic digits are no ISO date), and matching is faster.
_EMAIL_PATTERN = rf"[^@\s,;<>()\[\]\\\"{_CONTROL}]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+"
_EMAIL = re.compile(_EMAIL_PATTERN, re.ASCII).fullmatch
# ISO 8601 as the documentation writes it: yyyy-mm-ddThh:mm:ss, up to 7 fractional digits, and an
# offset, Z, or nothing. Ranges are in the pattern so that one match decides, except for days
# 29-31 of short months.
_ISO = re.compile(
    r"(?!0000)\d{4}-(?:0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])T(?:[01]\d|2[0-3]):[0-5]\d:[0-5]\d(?:\.\d{1,7})?"
    r"(?:Z|[+-](?:0\d|1[0-4]):[0-5]\d)?",
    re.ASCII,
).fullmatch

# The fast path matches a whole row, its fields joined by SEP, against one pattern per scenario.
# It accepts only rows the detailed checks would pass without a word, so it changes speed, never
# outcomes. No piece of a pattern matches SEP, so a field containing SEP can never be accepted:
# the pattern needs exactly width - 1 separators and each piece stops at one. No piece matches any
# other control character either (the scenario column's piece is reached only with a value known
# to be printable). February 29th and anything unusual take the detailed path.
SEP = "\x1f"
# Text may hold line breaks and tabs (a remark typed over several lines arrives quoted, whole):
# text pieces exclude every other control character, SEP included.
_TEXT_CONTROL = r"\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f"
_ANY = f"[^{_TEXT_CONTROL}]*"
_BLANK = " *"  # what str.isspace() calls blank, without control characters
# A required text value: at least one character that is neither a control nor (Unicode) white space.
_FILLED = rf"(?=[^{_TEXT_CONTROL}]*(?u:[^\s{_CONTROL}]))"
_DAY = r"(?:(?:0[1-9]|1[0-2])-(?:0[1-9]|1\d|2[0-8])|(?:0[13-9]|1[0-2])-(?:29|30)|(?:0[13578]|1[02])-31)"
# The same languages as _EMAIL and _ISO, written with atomic groups and possessive repeats: no
# piece can give back a character that what follows it (a separator, or the row's end) could take,
# so the engine keeps no backtracking state (a fifth less work a row).
_FAST_KIND = {
    Kind.EMAIL: rf"[^@\s,;<>()\[\]\\\"{_CONTROL}]++@[A-Za-z0-9-]++(?:\.[A-Za-z0-9-]++)++",
    Kind.DATE: rf"(?!0000)\d{{4}}-(?>{_DAY})T(?>[01]\d|2[0-3]):[0-5]\d:[0-5]\d(?:\.\d{{1,7}}+)?+"
    r"(?>Z|[+-](?>0\d|1[0-4]):[0-5]\d)?+",
}
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
    match = _ISO(value)
    if match is None:
        return False
    if match.group(1) > "28":
        try:
            datetime(int(value[:4]), int(value[5:7]), int(value[8:10]))
        except ValueError:
            return False
    return True


# Day/month/year in either order, with an optional time: what the date_formats entry is made from.
_NUMERIC_DATE = re.compile(
    r"(\d{1,2})([/.-])(\d{1,2})\2(\d{4}|\d{2})(?:([ T])\d{1,2}:\d{2}(:\d{2})?)?", re.ASCII
).fullmatch


def _numeric_date_hint(value: str, column: str | None) -> str | None:
    """For 23/04/2019 and kin: which order it must be, and the exact date_formats entry to add."""
    match = _NUMERIC_DATE(value)
    if match is None:
        return None
    first, sep, second, year, time_sep, seconds = match.groups()
    year_code = "%Y" if len(year) == 4 else "%y"
    time_code = f"{time_sep}%H:%M{':%S' if seconds else ''}" if time_sep else ""
    day_first = f"%d{sep}%m{sep}{year_code}{time_code}"
    month_first = f"%m{sep}%d{sep}{year_code}{time_code}"
    day_month = f"dd{sep}mm{sep}{'yyyy' if len(year) == 4 else 'yy'}"
    month_day = f"mm{sep}dd{sep}{'yyyy' if len(year) == 4 else 'yy'}"
    if int(first) > 12 >= int(second):
        looks, formats = f"{day_month} (the first number cannot be a month)", [day_first]
    elif int(second) > 12 >= int(first):
        looks, formats = f"{month_day} (the second number cannot be a month)", [month_first]
    elif int(first) <= 12 and int(second) <= 12:
        looks, formats = f"{day_month} or {month_day} (this value cannot tell which)", [day_first, month_first]
    else:
        return "; neither number can be a month"
    name = column.strip() if column else "<column>"
    entries = " or ".join(f'"date_formats": {{"{name}": "{f}"}}' for f in formats)
    return f"; it looks like {looks}: add {entries} to the mapping (docs/mapping.md), or export ISO 8601"


def date_hint(value: str, column: str | None = None) -> str:
    """What a non-ISO date looks like, without repeating it, and the fix when there is one."""
    if _ISO(value) is not None:  # the shape is right, so the day is not (31 April, 29 February 2023)
        return "; that day does not exist in that month"
    numeric = _numeric_date_hint(value, column)
    if numeric is not None:
        return numeric
    for pattern, looks_like in _LOOKALIKES:
        if pattern.fullmatch(value):
            return f"; it looks like {looks_like}"
    return ""


# Enum members are slow to look up on Python 3.11 (about 0.3 us each): the detailed path uses these.
_EMAIL_KIND, _DATE_KIND = Kind.EMAIL, Kind.DATE


class _FieldCheck(NamedTuple):
    position: int
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
    # The whole-row pattern (see SEP), called as fast(joined, pos): when the scenario is the first
    # column the pattern starts after it (pos: its length + 1), its value being known already.
    fast: Callable[[str, int], re.Match[str] | None] | None = None
    counts: list[int] = field(default_factory=lambda: [0, 0])  # rows valid, rejected
    value: str = ""  # the scenario value as the mapping configures it: rows passed on carry it


# After this many distinct rows the duplicate check stops: its memory (about 100 bytes a row)
# would otherwise grow with the file.
DUPLICATE_CHECK_LIMIT = 500_000


class RowValidator:
    """Checks each record against the mapping bound to this file's header.

    Binding happens once per file: a mapped column missing from the header, or a duplicate
    column name, is a file-level error (InputFileError) raised before any row is read.
    """

    def __init__(self, header: list[str], mapping: Mapping | None, *, fast_path: bool = True) -> None:
        """`fast_path=False`: the detailed checks for every row (what the fast path must agree with)."""
        self.header = header
        self.width = len(header)
        self.mapping = mapping
        names = [h.strip().casefold() for h in header]
        counts = Counter(names)  # linear: a 100,000-column header must not take minutes
        duplicates = sorted({h for h, n in zip(header, names, strict=True) if n and counts[n] > 1})
        if duplicates:
            more = f" and {len(duplicates) - 10} more" if len(duplicates) > 10 else ""
            raise InputFileError(f"the header names these columns more than once: {', '.join(duplicates[:10])}{more}")
        self._index = {n: i for i, n in enumerate(names) if n}
        self._fast_path = fast_path
        self._plans: dict[str, _ScenarioPlan] = {}
        self._values: list[str] = []  # the mapping's scenario values as configured (for messages)
        self._single: _ScenarioPlan | None = None
        self._scenario_index: int | None = None
        if mapping is not None:
            self._bind(mapping)
        self._seen: dict[int, int] | None = {}  # row hash -> first row with it
        self._plan_by_raw: dict[str, _ScenarioPlan] = {}
        self._unknown_scenario_rows = 0

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
            mine = {c.position for c in plan_checks}
            foreign = tuple((i, self.header[i]) for i in sorted(used_by) if i not in mine)
            pair = None
            if sm.scenario.key == "resignation":
                pair = (
                    self._column(sm.columns["ResignationDate"], "ResignationDate"),
                    self._column(sm.columns["LastWorkingDate"], "LastWorkingDate"),
                )
            fast = self._fast_pattern(plan_checks, foreign)
            plan = _ScenarioPlan(sm.scenario.title, plan_checks, foreign, pair, fast, value=sm.value or "")
            if sm.value is None:
                self._single = plan
            else:
                self._plans[sm.value.strip().casefold()] = plan
                self._values.append(sm.value)

    @property
    def _skips_scenario(self) -> bool:
        """Whether the fast patterns start after the scenario value (the first of several columns)."""
        return self._scenario_index == 0 and self.width > 1

    def _fast_pattern(
        self, checks: tuple[_FieldCheck, ...], foreign: tuple[tuple[int, str], ...]
    ) -> Callable[[str, int], re.Match[str] | None] | None:
        if not self._fast_path or any(c.date_format for c in checks):
            return None  # converted dates need the detailed path
        positions = [c.position for c in checks]
        if len(set(positions)) < len(positions) or self._scenario_index in {*positions, *(i for i, _ in foreign)}:
            return None  # one column read by two checks: one pattern piece cannot hold both
        pieces: list[str | None] = [None] * self.width  # None: a column no check reads
        if self._scenario_index is not None:
            # Only values found in _plan_by_raw reach this pattern, and only printable ones are
            # put there, so the cheaper class (no control-character ranges) is enough.
            pieces[self._scenario_index] = f"[^{SEP}]*"
        for index, _column in foreign:
            pieces[index] = _BLANK
        for check in checks:
            if check.kind in _FAST_KIND:
                piece = _FAST_KIND[check.kind]
            elif check.max_length is not None:
                piece = f"[^{_TEXT_CONTROL}]{{0,{check.max_length}}}"
            else:
                piece = _ANY
            if check.required:
                piece = _FILLED + piece if check.kind is Kind.TEXT else piece
            elif check.kind is not Kind.TEXT:
                piece = f"(?:{piece}|{_BLANK})"
            pieces[check.position] = piece
        if self._skips_scenario:  # matched from just after the scenario value and its separator
            pieces = pieces[1:]
        return re.compile(_join_pieces(pieces), re.ASCII).fullmatch

    def validate_rows(self, records: Iterable[Record], sink: RowSink) -> Iterator[ValidRow]:
        """Every record is yielded (possibly normalised), or reported to `sink` with its reasons.

        A row passed on carries its scenario value as the mapping configures it: validation
        matches `resignation ` to Resignation, and the service may compare the value exactly.
        """
        # The per-row hot path, kept flat: locals, no calls for a row that passes the fast pattern
        # beyond the join, the pattern and the duplicate table; the record itself is passed on.
        width, single, by_raw, scenario_index = self.width, self._single, self._plan_by_raw, self._scenario_index
        checked = self.mapping is not None
        skip = self._skips_scenario
        limit = DUPLICATE_CHECK_LIMIT
        join = SEP.join
        seen = self._seen
        for record in records:
            row, fields = record
            passed = record  # what is yielded: the record itself unless its fields change
            if len(fields) != width:  # (a row of empty fields fails every fast pattern: blank below)
                if not "".join(fields).strip():
                    sink.skipped(Issue(row, None, "blank-row", "blank line skipped", Severity.INFO))
                    continue
                fitted = self._fit(record, sink)
                if fitted is None:
                    continue
                passed = row, fields = row, fitted
            joined = join(fields)  # one string serves the fast pattern and the duplicate check
            plain = True  # no field holds SEP, so `joined` stands for the row alone
            if checked:
                plan = single if scenario_index is None else by_raw.get(fields[scenario_index])
                if plan is not None and plan.fast is not None and plan.fast(joined, len(fields[0]) + 1 if skip else 0):
                    pair = plan.resignation_pair
                    if pair is not None and _before_iso(fields[pair[1]], fields[pair[0]]):
                        self._warn_resignation_order(row, pair[1], sink)
                    plan.counts[0] += 1
                elif not joined.replace(SEP, "").strip():  # spaces only: as blank as an empty line
                    sink.skipped(Issue(row, None, "blank-row", "blank line skipped", Severity.INFO))
                    continue
                else:
                    normalised, errors = self._check(row, fields, sink)
                    if errors:
                        sink.rejected(record, errors)
                        continue
                    if scenario_index is not None:  # the plan _check found (its spelling may not be cached)
                        plan = self._plans.get(fields[scenario_index].strip().casefold())
                    if normalised is not fields:
                        passed = row, fields = row, normalised
                        joined = join(normalised)
                    plain = joined.count(SEP) == width - 1
            elif not any(fields):
                sink.skipped(Issue(row, None, "blank-row", "blank line skipped", Severity.INFO))
                continue
            else:
                plain = joined.count(SEP) == width - 1
            if seen is not None:
                first = seen.setdefault(hash(joined) if plain else hash(tuple(fields)), row)
                if first != row:
                    sink.warned(Issue(row, None, "duplicate-row", f"same values as row {first}", Severity.WARNING))
                elif len(seen) >= limit:
                    self._stop_duplicate_check(row, sink)
                    seen = None
            if scenario_index is not None and plan is not None:  # (after the duplicate check: as read)
                fields[scenario_index] = plan.value
            yield passed

    def _fit(self, record: Record, sink: RowSink) -> list[str] | None:
        row, fields = record
        width = self.width
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
        plans = [self._single] if self._single is not None else list(self._plans.values())
        counts = {p.title: {"valid": p.counts[0], "rejected": p.counts[1]} for p in plans if any(p.counts)}
        if self._unknown_scenario_rows:
            counts["(unknown scenario)"] = {"valid": 0, "rejected": self._unknown_scenario_rows}
        return counts

    def _plan(self, row: int, fields: list[str]) -> _ScenarioPlan | Issue:
        assert self._scenario_index is not None
        raw = fields[self._scenario_index]
        plan = self._plan_by_raw.get(raw)
        if plan is None:
            plan = self._plans.get(raw.strip().casefold())
            if plan is None:
                self._unknown_scenario_rows += 1
                known = ", ".join(map(repr, self._values))
                what = "is empty" if not raw.strip() else "is not a mapped scenario value"
                return Issue(
                    row,
                    self.header[self._scenario_index],
                    "unknown-scenario",
                    f"the scenario value {what} (mapped: {known})",
                    Severity.ERROR,
                )
            if len(self._plan_by_raw) < 256 and raw.isprintable():  # the few spellings a file uses
                self._plan_by_raw[raw] = plan
        return plan

    def _check(self, row: int, fields: list[str], sink: RowSink) -> tuple[list[str], list[Issue]]:
        """The row's issues, and its fields normalised (a copy, so rejected rows stay as read)."""
        plan = self._single if self._single is not None else self._plan(row, fields)
        if isinstance(plan, Issue):
            return fields, [plan]
        out = fields
        errors: list[Issue] = []
        for check in plan.checks:  # the detailed path: one test per value, the reason only on failure
            index, _column, kind, required, limit, fmt = check
            value = fields[index]
            if not value or value.isspace():
                if required:
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
            if kind is _EMAIL_KIND:
                if _EMAIL(value):
                    continue
            elif kind is _DATE_KIND:
                if fmt is None:
                    if _iso_datetime(value):
                        continue
                else:
                    converted = _convert_date(value.strip(), fmt)
                    if converted is not None:
                        if out is fields:
                            out = list(fields)
                        out[index] = converted
                        continue
            elif limit is None or len(value) <= limit:
                continue
            if out is fields:
                out = list(fields)
            issue = self._problem(row, check, out)
            if issue is not None:
                errors.append(issue)
        for index, column in plan.foreign:
            value = out[index]
            if value and not value.isspace():
                empty_dates = [
                    c.column for c in plan.checks if c.kind is Kind.DATE and c.required and not out[c.position].strip()
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
        pair = plan.resignation_pair
        if not errors and pair is not None and _before(out[pair[1]], out[pair[0]]):
            self._warn_resignation_order(row, pair[1], sink)
        plan.counts[1 if errors else 0] += 1
        return out, errors

    def _warn_resignation_order(self, row: int, last_day: int, sink: RowSink) -> None:
        sink.warned(
            Issue(
                row,
                self.header[last_day],
                "last-working-before-resignation",
                "the last working date is before the resignation date",
                Severity.WARNING,
            )
        )

    @staticmethod
    def _problem(row: int, check: _FieldCheck, fields: list[str]) -> Issue | None:
        """Why a value failed the fast path; None when only surrounding spaces were wrong (trimmed)."""
        value = fields[check.position]
        trimmed = value.strip()
        if trimmed != value:
            fields[check.position] = trimmed
            if check.kind is Kind.EMAIL and _EMAIL(trimmed):
                return None
            if check.kind is Kind.DATE and check.date_format is None and _iso_datetime(trimmed):
                return None
        if check.kind is Kind.EMAIL:
            return Issue(
                row, check.column, "invalid-email", "not an e-mail address or UPN (name@domain)", Severity.ERROR
            )
        if check.kind is Kind.DATE:
            if check.date_format is not None:
                message = (
                    f"matches neither the mapping's date format {check.date_format} nor ISO 8601 ({DATE_FORMAT_HINT})"
                )
            else:
                message = f"not ISO 8601 ({DATE_FORMAT_HINT}){date_hint(trimmed, check.column)}"
            return Issue(row, check.column, "invalid-date", message, Severity.ERROR)
        return Issue(
            row, check.column, "too-long", f"{len(value)} characters; the limit is {check.max_length}", Severity.ERROR
        )

    def _stop_duplicate_check(self, row: int, sink: RowSink) -> None:
        self._seen = None
        sink.warned(
            Issue(
                row,
                None,
                "duplicate-check-limited",
                f"duplicate rows are looked for among the first {DUPLICATE_CHECK_LIMIT:,} distinct rows only",
                Severity.INFO,
            )
        )


def _join_pieces(pieces: list[str | None]) -> str:
    """The whole-row pattern; a run of unread columns is one repeated group, so its size (and
    compile time) grows with the checked columns, not with the header's width."""
    out: list[str] = []
    run = 0
    for piece in pieces:
        if piece is None:
            run += 1
            continue
        if run:
            out.append(f"(?:{_ANY}{SEP}){{{run}}}")
            run = 0
        out.append(piece + SEP)
    if run:  # the last separator is not there: the row ends with the run's last column
        out.append(f"(?:{_ANY}{SEP}){{{run - 1}}}{_ANY}" if run > 1 else _ANY)
        return "".join(out)
    return "".join(out)[: -len(SEP)]


def _convert_date(value: str, fmt: str) -> str | None:
    if _iso_datetime(value):  # ISO 8601 is always accepted, whatever the column's date_formats entry
        return value
    try:
        parsed = datetime.strptime(value, fmt)
    except ValueError:
        return None
    return parsed.isoformat()


def _split_iso(value: str) -> tuple[str, str, str]:
    """(yyyy-mm-ddThh:mm:ss, fraction digits, offset) of a string the ISO pattern accepted."""
    if value[-1] == "Z":
        offset, body = "Z", value[:-1]
    elif value[-6] in "+-":  # hh:mm:ss and a fraction put only digits, ':' or '.' there
        offset, body = value[-6:], value[:-6]
    else:
        offset, body = "", value
    return body[:19], body[20:], offset


def _before_iso(later: str, earlier: str) -> bool:
    """`later` is before `earlier`, both strings the ISO pattern accepted.

    With the same offset the text orders as the instants do (the fraction padded to 7 digits);
    otherwise both are parsed. Inline rather than through _split_iso: it runs on every
    resignation row.
    """
    if len(later) == len(earlier) and later[-6:] == earlier[-6:]:
        return later < earlier  # the same layout: same offset, same number of fraction digits
    a_offset = "Z" if later[-1] == "Z" else later[-6:] if later[-6] in "+-" else ""
    b_offset = "Z" if earlier[-1] == "Z" else earlier[-6:] if earlier[-6] in "+-" else ""
    if a_offset != b_offset:
        return _before_parsed(later, earlier)
    if later[:19] != earlier[:19]:
        return later[:19] < earlier[:19]
    a_fraction = later[20 : len(later) - len(a_offset)]
    b_fraction = earlier[20 : len(earlier) - len(b_offset)]
    return a_fraction.ljust(7, "0") < b_fraction.ljust(7, "0")


def _parse_iso(value: str) -> tuple[datetime, int] | None:
    """(the whole seconds, with the offset if any; the fraction in units of 100 ns)."""
    match = _ISO(value)
    if match is None:
        return None
    time, fraction, offset = _split_iso(value)
    try:
        whole = datetime.fromisoformat(time + ("+00:00" if offset == "Z" else offset))
    except ValueError:
        return None
    return whole, int(fraction.ljust(7, "0"))


def _before_parsed(later: str, earlier: str) -> bool:
    """The detailed check: both parsed; an offset on one side only is ignored."""
    a, b = _parse_iso(later), _parse_iso(earlier)
    if a is None or b is None:
        return False
    a_time, b_time = a[0], b[0]
    if (a_time.tzinfo is None) != (b_time.tzinfo is None):
        a_time, b_time = a_time.replace(tzinfo=None), b_time.replace(tzinfo=None)
    return (a_time, a[1]) < (b_time, b[1])


def _before(later: str, earlier: str) -> bool:
    """The resignation-order test for any pair of values: on text for the common forms."""
    if _ISO(later) and _ISO(earlier):
        return _before_iso(later, earlier)
    return _before_parsed(later, earlier)


def conform_rows(header: list[str], records: Iterable[Record], sink: RowSink) -> Iterator[ValidRow]:
    """Shape checks only: what the service itself enforces (it answers 500 on a ragged row)."""
    return RowValidator(header, None).validate_rows(records, sink)
