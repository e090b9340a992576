"""A fault campaign: many random histories of faults and load, one checker for all of them.

    python -m benchmarks.fault_campaign --seeds 0-299          # the campaign (CLI + Function histories)
    python -m benchmarks.fault_campaign --seeds 17 --verbose   # replay one history
    python -m benchmarks.fault_campaign --seeds "" --load 100  # 100 files at once, 4 instances, duplicates

Each seed draws one short history: a file (one scenario or every scenario in one file; quoted line
breaks, commas, quotes, accents; rows with one seeded mistake each; a BOM or not, CRLF or LF; every
value unique in the history; a quarter of the files Excel workbooks), a chunk size and a
concurrency, service faults set on the emulator (429 with Retry-After, 503, dropped connections,
latency, answers lost after the rows were recorded) and a path:
- cli: a real `hrconnector upload --verbose` process; sometimes killed with SIGKILL at a random
  moment, then rerun until it succeeds; sometimes an authorization window (403s, the app refused
  at the token endpoint) or a token endpoint outage (503s, calls unanswered).
- function: the registered blob function against Azurite, each concurrent invoker a separate
  process (a Function instance: it imports function_app and calls the function as the host does;
  `--instances threads` makes them threads of this process), with duplicate and late deliveries,
  the timer sweep at the same time, and one of: a lease broken while a run holds it, the file
  overwritten in hr-incoming while a run uploads it, or its checkpoint rewritten by another writer.
- function-kill (`--paths function-kill`): the same, after a worker process running the function
  was killed with SIGKILL at a random moment (its lease then lapses: broken, as its expiry would).

Retries: the policy's delays are shortened (base 10 ms) for the campaign so a history takes
seconds; the retry logic itself is the product's. The checker is `check()`; it sees what a user
could see (rows at the emulator, containers, reports, states, logs), the generated files, and the
evidence of each fault taken when it happened: the emulator's flag on an upload whose answer was
lost, and the checkpoint (and the uploads at the service) right after a kill or just before a
lease break or a checkpoint rewrite. Not a test: it prints a table and exits 1 when a history fails.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import hashlib
import io
import json
import logging
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
TENANT = "5f1c0e3a-0000-4000-8000-0000000000aa"
APP_ID = "9d6a2c77-0000-4000-8000-0000000000bb"
SECRET = "campaign-s3cr3t~" + uuid.uuid4().hex
HEADER = ["EmailAddress", "EffectiveDate", "Remarks", "Rating"]  # one scenario: performance review
# Every scenario in one file, chosen per row by HRScenario (the documentation's names).
SCENARIO_HEADER = [
    "HRScenario", "EmailAddress", "EffectiveDate", "Remarks", "Rating", "OldLevel", "NewLevel",
    "ResignationDate", "LastWorkingDate", "EmployeeFirstName", "EmployeeLastName", "EmployeeAddressLine1",
    "EmployeeAddressLine2", "EmployeeCity", "EmployeeState", "EmployeeZipCode", "EmployeeCountry",
    "EmployeeDepartment", "EmployeeType", "EmployeeRole",
]  # fmt: skip
SCENARIO_COLUMNS = {
    "Performance review": ["EffectiveDate", "Remarks", "Rating"],
    "Performance improvement plan": ["EffectiveDate", "Remarks", "Rating"],
    "Job level change": ["EffectiveDate", "Remarks", "OldLevel", "NewLevel"],
    "Resignation": ["ResignationDate", "LastWorkingDate"],
    "Employee profile": SCENARIO_HEADER[9:],
}
OVERWRITE_SHARE = 0.35  # of the Function histories: a file overwritten in hr-incoming during its upload
REWRITE_SHARE = 0.3  # of the other Function histories: a checkpoint rewritten by another writer
TOKEN_OUTAGE_SHARE = 0.35  # of the CLI histories without another window: the token endpoint failing
WORKBOOK_SHARE = 0.25  # of the files: Excel workbooks (.xlsx) rather than CSV
FAST_RETRY_DEFAULTS = (20, 0.01, 0.05, 60.0, 10.0, 30.0)  # RetryPolicy's fields, in order


# -- the files --------------------------------------------------------------------------------------
@dataclass
class FileSpec:
    """A generated file: its bytes, and what the generator meant them to hold. The checker reads
    the bytes again and holds the two against each other (a generator that writes nothing fails)."""

    name: str
    data: bytes
    header: list[str]
    records: list[list[str]]  # every row as written; row number (as reports count) = index + 2
    faults: dict[int, tuple[str, str | None]] = field(default_factory=dict)  # row -> (issue code, column)
    tag: str = ""  # in every text value of the file (lets the leak search skip a file whose tag is absent)
    version: int = 0  # 1 for a version that replaced version 0 of the same name in hr-incoming
    etag: str = ""  # (Function) the blob's ETag once uploaded: which copy, report and state are this version's
    replaced: bool = False  # a newer version replaced this one in hr-incoming while a run was uploading it
    tokens: list[str] = field(default_factory=list)  # each row's token: in every text value of the row

    @property
    def key(self) -> str:
        """The version's name in the checker (the file's name for its first version)."""
        return self.name if not self.version else f"{self.name}@v{self.version}"

    @property
    def valid(self) -> list[list[str]]:
        """The rows that must reach the service, as the service receives them."""
        return [r for i, r in enumerate(self.records) if i + 2 not in self.faults]

    @property
    def invalid(self) -> list[int]:
        return sorted(self.faults)

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    @property
    def workbook(self) -> bool:
        return self.name.endswith(".xlsx")


def encode_file(
    name: str,
    header: list[str],
    records: list[list[str]],
    faults: dict[int, tuple[str, str | None]] | None = None,
    *,
    newline: str = "\r\n",
    encoding: str = "utf-8",
    tag: str = "",
) -> FileSpec:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator=newline).writerows([header, *records])
    return FileSpec(name, buffer.getvalue().encode(encoding), header, records, dict(faults or {}), tag)


DATETIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z")


def encode_workbook(
    name: str,
    header: list[str],
    records: list[list[str]],
    faults: dict[int, tuple[str, str | None]] | None = None,
    *,
    tag: str = "",
) -> FileSpec:
    """The rows as an Excel workbook (openpyxl, one sheet): each date and time a datetime cell,
    every other value a text cell, an empty value no cell. The spec's records become what the
    documentation says a workbook's cells are read as: a datetime cell as yyyy-mm-ddThh:mm:ss
    (no zone in Excel), text as it is."""
    import openpyxl

    book = openpyxl.Workbook()
    sheet = book.active
    sheet.title = "Export"
    sheet.append(header)
    expected: list[list[str]] = []
    for row in records:
        cells: list[Any] = []
        for value in row:
            if DATETIME.fullmatch(value):
                cells.append(datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ"))
            else:
                cells.append(value or None)
        sheet.append(cells)
        expected.append([v[:-1] if DATETIME.fullmatch(v) else v for v in row])
    buffer = io.BytesIO()
    book.save(buffer)
    return FileSpec(name, buffer.getvalue(), header, expected, dict(faults or {}), tag)


def read_workbook(data: bytes) -> list[list[str]]:
    """A workbook's first sheet as the documentation says it is read (README, "Input files"): a
    datetime cell as yyyy-mm-ddThh:mm:ss, a date cell at midnight, text as it is, an empty cell
    as an empty field; cells after a row's last value and empty rows are not there at all."""
    import openpyxl

    book = openpyxl.load_workbook(io.BytesIO(data), read_only=True)
    try:
        out: list[list[str]] = []
        for values in book.worksheets[0].iter_rows(values_only=True):
            row = [_cell_as_read(v) for v in values]
            while row and row[-1] == "":
                row.pop()
            if row:
                out.append(row)
        return out
    finally:
        book.close()


def _cell_as_read(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%dT%H:%M:%S")
    if hasattr(value, "isoformat"):  # a date cell: midnight
        return f"{value.isoformat()}T00:00:00"
    return str(value)


def _date(g: int, hour: int, seed: int) -> datetime:
    """A date and time of its own per row of a history (1990s: far from any log time stamp)."""
    return datetime(1990, 1, 1) + timedelta(days=g, hours=hour + g % 5, minutes=g % 60, seconds=seed % 60)


# A row's token: 7 letters that are no hex digit (ids and hashes in the logs are hex) and no vowel
# (no English word), so any piece of a value that holds it is found, and nothing else matches.
TOKEN_LETTERS = "GHJKLMNPQRSTVWXZghjkmnpqrstvwxz"


def row_token(tag: str, i: int) -> str:
    """Derived from the row's place (no draw from the history's stream: seeds replay as before)."""
    digest = hashlib.sha256(f"{tag}/{i}".encode()).digest()
    return "".join(TOKEN_LETTERS[b % len(TOKEN_LETTERS)] for b in digest[:7])


def make_file(rng: random.Random, name: str, tag: str, *, first: int = 0, seed: int = 0) -> FileSpec:
    """`tag` makes every text value unique in the history; `first` (the file's place in the
    history) makes every date unique. A name ending in .xlsx makes a workbook of the same rows."""
    n = rng.randint(1, 40)
    bad_rate = rng.choice([0.0, 0.0, 0.1, 0.3])
    every_scenario = rng.random() < 0.4
    header = SCENARIO_HEADER if every_scenario else HEADER
    records: list[list[str]] = []
    faults: dict[int, tuple[str, str | None]] = {}
    tokens: list[str] = []
    for i in range(n):
        tokens.append(row_token(tag, i))
        t = f"{tag}x{i}{tokens[-1]}"
        g = first + i
        when = _date(g, 7, seed).strftime("%Y-%m-%dT%H:%M:%SZ")
        shape = rng.random()
        if shape < 0.2:
            remarks = f'{t}r said "fine", then\nleft early {t}e'
        elif shape < 0.35:
            remarks = f"comma, separated, {t}r"
        elif shape < 0.45:
            remarks = f"caf\u00e9 M\u00fcller \u00f8 {t}r"
        else:
            remarks = f"remark {t}r"
        values = {
            "EmailAddress": f"{t}@contoso.com",
            "EffectiveDate": when,
            "ResignationDate": when,
            "LastWorkingDate": _date(g + 10, 18, seed).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "Remarks": remarks,
            "Rating": f"Rate{t}n",
            "EmployeeZipCode": f"{i:05d}-{t}",
        }
        scenario = rng.choice(list(SCENARIO_COLUMNS)) if every_scenario else "Performance review"
        used = ["EmailAddress", *SCENARIO_COLUMNS[scenario]]
        row_values = {c: values.get(c, f"{c[8:] or c}{t}v") for c in used} | {"HRScenario": scenario}
        row = [row_values.get(c, "") if c in used or c == "HRScenario" else "" for c in header]
        if rng.random() < bad_rate:
            code, column, value = _seed_mistake(rng, scenario, used, every_scenario, t, when)
            if code == "too-many-fields":
                row.append(value)
            else:
                row[header.index(column or "")] = value
            faults[i + 2] = (code, column)  # the report's row: the header is row 1, quoted line breaks do not count
        records.append(row)
    newline, encoding = rng.choice(["\r\n", "\n"]), rng.choice(["utf-8", "utf-8", "utf-8-sig"])
    if name.endswith(".xlsx"):
        spec = encode_workbook(name, header, records, faults, tag=f"{tag}x")
    else:
        spec = encode_file(name, header, records, faults, newline=newline, encoding=encoding, tag=f"{tag}x")
    spec.tokens = tokens
    return spec


def _seed_mistake(
    rng: random.Random, scenario: str, used: list[str], every_scenario: bool, t: str, when: str
) -> tuple[str, str | None, str]:
    """One mistake for a row: (the issue code the report must give, its column, the bad value)."""
    date_column = next((c for c in ("EffectiveDate", "ResignationDate") if c in used), None)
    kinds = ["invalid-email", "required-missing", "too-many-fields"]
    kinds += ["invalid-date"] if date_column else []
    kinds += ["too-long"] if "Remarks" in used else []
    kinds += ["unknown-scenario"] if every_scenario else []
    kind = rng.choice(kinds)
    if kind == "invalid-email":
        return kind, "EmailAddress", f"not-an-email-{t}"
    if kind == "required-missing":
        return kind, "EmailAddress", ""
    if kind == "invalid-date":
        return kind, date_column, when[:10]  # a date without its time: a date-only HR value
    if kind == "too-long":
        return kind, "Remarks", f"long{t}" + "z" * 200
    if kind == "unknown-scenario":
        return kind, "HRScenario", f"Scenario{t}u"
    return kind, None, f"extra{t}f"


# -- a history and what the checker sees ------------------------------------------------------------
@dataclass
class Interruption:
    """A run stopped at a moment the harness chose (a SIGKILL, a broken lease) and the evidence of
    that moment: the chunks the file's checkpoint recorded as done, and (after a kill) how many
    uploads the service held. Only chunks not recorded as done (and, after a kill, already at the
    service) may be sent again because of it, at most `max_concurrency` of them."""

    kind: str  # kill (CLI) | worker-kill | lease-broken | checkpoint-rewritten
    file: str
    completed: set[int]
    uploads_seen: int | None = None  # None: the run went on after it (a broken lease)
    at: float | None = None  # (a kill) time.monotonic() when it was sent: which answers had left by then


@dataclass
class History:
    seed: int
    path: str  # cli | function | function-kill
    records_per_call: int
    max_concurrency: int
    files: list[FileSpec] = field(default_factory=list)
    faults: Counter[str] = field(default_factory=Counter)
    interruptions: list[Interruption] = field(default_factory=list)
    # what was observed
    received: list[list[list[str]]] = field(default_factory=list)  # the emulator's uploads (rows of each call)
    answer_lost: list[bool] = field(default_factory=list)  # per upload: the emulator's response_lost flag
    headers: list[list[str]] = field(default_factory=list)  # per upload: the header it carried
    # per upload: time.monotonic() when the emulator had written its answer whole (None: never)
    answered_at: list[float | None] = field(default_factory=list)
    received_at: list[str] = field(default_factory=list)  # per upload: when the service recorded it (ISO, ms)
    # every invocation of the Function that raised: (the exception's type, its message and traceback)
    invocation_errors: list[tuple[str, str]] = field(default_factory=list)
    instance_pids: set[int] = field(default_factory=set)  # the Function instance processes that ran an invocation
    reports: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # file -> its reports (last wins)
    placement: dict[str, list[str]] = field(default_factory=dict)  # file -> containers holding it at the end
    leased: list[str] = field(default_factory=list)  # blobs still leased at the end
    states: dict[str, str] = field(default_factory=dict)  # (Function) file version -> its state's status at the end
    logs: list[str] = field(default_factory=list)  # every captured log line / stdout / stderr
    tokens: list[str] = field(default_factory=list)  # the access tokens issued during the history (secrets too)
    errors: list[str] = field(default_factory=list)  # what the harness itself saw go wrong


@dataclass
class Verdict:
    lost: int = 0
    doubled_beyond: int = 0
    in_flight_duplicates: int = 0  # rows: documented duplicates, all causes
    after_lost_answers: int = 0  # of which explained by a lost answer (rows)
    rows_checked: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


Chunk = tuple[str, int]  # (file, chunk index)
Row = tuple[tuple[str, str], ...]  # a row keyed by its columns' names (see _keyed)
Rows = tuple[Row, ...]


def check(h: History) -> Verdict:
    """The one invariant, for every history."""
    v = Verdict()
    for f in h.files:
        v.problems += _check_file_bytes(f)
        v.rows_checked += len(f.records)
    if not h.files or not v.rows_checked:
        v.problems.append("an empty history: no file or no row to check (a generator that produced nothing)")
    _check_rows_at_the_service(h, v)
    for f in h.files:
        v.problems += _check_reports(h, f)
        if h.path.startswith("function"):
            where = sorted(h.placement.get(f.key, []))
            # A replaced version's bytes are gone unless it was copied before the change: its report alone.
            allowed = [["processed"], ["failed"]] + ([[]] if f.replaced else [])
            if where not in allowed:
                v.problems.append(f"{f.key}: ends in {where}, not exactly one of processed/failed")
            if h.states and h.states.get(f.key) not in ("processed", "failed"):
                v.problems.append(f"{f.key}: its state ends {h.states.get(f.key)!r}, not processed or failed")
    if h.leased:
        v.problems.append(f"left leased: {h.leased}")
    v.problems += _check_invocation_errors(h)
    leaked = leaks(h)
    if leaked:
        v.problems.append(f"{len(leaked)} secret/row value(s) in the logs or reports")
    v.problems += h.errors
    return v


# What the functions document they raise: FileFailedError for a file that ended in failed, and the
# timer's ScheduleError when part of its work failed (docs/function.md, `hr-run-failed`: here a
# file its sweep processed that failed; the message holds the file's). Anything else is a defect.
EXPECTED_INVOCATION_ERRORS = ("FileFailedError", "ScheduleError")


def one_report(key: str, reports: list[str], named: str | None) -> list[str]:
    """A version has one report in processed/failed, the one its finished state names (`named`:
    None while unfinished, which the state check reports on its own)."""
    if len(reports) > 1 or (named is not None and reports != [named]):
        return [f"{key}: its reports {reports}, its state names {named!r}"]
    return []


def _check_invocation_errors(h: History) -> list[str]:
    """Every invocation error is one the product documents, for a file that did fail."""
    problems: list[str] = []
    # a version that ended in failed, or was replaced before its copy (its run cannot finish it)
    failed = {f.name for f in h.files if "failed" in h.placement.get(f.key, []) or f.replaced}
    for kind, text in h.invocation_errors:
        if kind not in EXPECTED_INVOCATION_ERRORS:
            problems.append(f"an invocation raised {kind}, which the product does not document")
        elif not any(f"{name}: not uploaded" in text for name in failed):
            problems.append(f"an invocation raised {kind} for a file that did not end in failed")
    return problems


def _keyed(header: list[str], row: list[str] | tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    """A row as the service reads it: each value under its column's name (extra fields unnamed)."""
    names = [*header, *(f"(extra {i})" for i in range(len(row) - len(header)))]
    return tuple(zip(names, row, strict=False))


def _check_file_bytes(f: FileSpec) -> list[str]:
    """The file as written holds the rows the generator meant (read as the product would not:
    with the standard library's csv)."""
    if f.workbook:
        parsed = read_workbook(f.data)
        meant = [_trimmed(r) for r in [f.header, *f.records]]  # empty trailing cells are no fields
    else:
        parsed = list(csv.reader(io.StringIO(f.data.decode("utf-8-sig"), newline="")))
        meant = [f.header, *f.records]
    if parsed != meant:
        return [f"{f.name}: the generated file holds {max(0, len(parsed) - 1)} row(s), its spec {len(f.records)}"]
    return []


def _trimmed(row: list[str]) -> list[str]:
    end = len(row)
    while end and row[end - 1] == "":
        end -= 1
    return row[:end]


def _plan(h: History) -> dict[Chunk, Rows]:
    """The chunks each file is cut into: its valid rows, `records_per_call` at a time, in order."""
    plan: dict[Chunk, Rows] = {}
    for f in h.files:
        valid = f.valid
        for index, start in enumerate(range(0, len(valid), h.records_per_call)):
            plan[(f.key, index)] = tuple(_keyed(f.header, r) for r in valid[start : start + h.records_per_call])
    return plan


def _check_rows_at_the_service(h: History, v: Verdict) -> None:
    """Every valid row exactly once; each extra copy must be explained by a fault's evidence. A
    version replaced during its run: exactly as many of its valid rows as its report says were
    sent (uploaded, or previously uploaded), each once; the rest never (its bytes are gone)."""
    missing = len(h.received) - len(h.headers)
    if missing > 0:
        v.problems.append(f"{missing} upload(s) at the service without their header recorded")
    headers = [*h.headers, *([[]] * max(0, missing))]
    received = [tuple(_keyed(hdr, row) for row in call) for call, hdr in zip(h.received, headers, strict=False)]
    seen = Counter(row for call in received for row in call)
    expected = Counter(_keyed(f.header, row) for f in h.files if not f.replaced for row in f.valid)
    v.lost = sum(max(0, want - seen.get(row, 0)) for row, want in expected.items())
    for f in h.files:
        if not f.replaced:
            continue
        arrived = {_keyed(f.header, r) for r in f.valid if seen.get(_keyed(f.header, r))}
        expected.update(arrived)
        reported = _reported_sent(h, f)
        # README: a run that read the whole old version (its first read: the file) sends every valid row of it
        read_whole = _final_report(h.reports.get(f.key) or [{}]).get("rows", {}).get("in") == len(f.records)
        if read_whole and min(reported, len(arrived)) < len(f.valid):
            v.problems.append(
                f"{f.key} (replaced): its run read the whole file, yet {len(arrived)} of its "
                f"{len(f.valid)} valid rows are at the service (its report says {reported} sent)"
            )
        v.lost += max(0, (len(f.valid) if read_whole else reported) - len(arrived))
        if len(arrived) > reported:
            v.doubled_beyond += len(arrived) - reported
            v.problems.append(
                f"{f.key} (replaced): {len(arrived)} of its rows at the service, its report says {reported}"
            )
    foreign = sum(n for row, n in seen.items() if row not in expected)
    if foreign:
        v.problems.append(f"{foreign} row(s) at the service that no file holds as valid (under its columns)")
    extra = sum(max(0, n - expected[row]) for row, n in seen.items() if row in expected)
    plan = _plan(h)
    by_rows = {rows: chunk for chunk, rows in plan.items()}
    calls = [by_rows.get(call) for call in received]
    copies = Counter(c for c in calls if c is not None)
    # A lost answer explains one copy of its own chunk sent after it (the client's retry), no other.
    explained: Counter[Chunk] = Counter()
    left: Counter[Chunk] = Counter()
    pending: Counter[Chunk] = Counter()  # lost answers of each chunk not yet followed by a copy
    seen_calls: Counter[Chunk] = Counter()
    for i, c in enumerate(calls):
        if c is None:
            continue
        seen_calls[c] += 1
        if seen_calls[c] > 1:
            if pending[c]:
                pending[c] -= 1
                explained[c] += 1
            else:
                left[c] += 1
        if i < len(h.answer_lost) and h.answer_lost[i]:
            pending[c] += 1
    by_lost = Counter(explained)
    left = Counter(dict(sorted(left.items())))  # the matching tries chunks in the files' order
    eligible = [_eligible(h, i, calls) for i in h.interruptions]
    for chunk, n in _assign(left, eligible, h.max_concurrency).items():
        explained[chunk] += n
    v.after_lost_answers = sum(n * len(plan[c]) for c, n in by_lost.items())
    v.in_flight_duplicates = sum(n * len(plan[c]) for c, n in explained.items())
    v.doubled_beyond += extra - v.in_flight_duplicates
    if v.lost:
        v.problems.append(f"{v.lost} valid row(s) never reached the service")
    if extra > v.in_flight_duplicates:
        unexplained = sorted(f"{c[0]}#{c[1]}" for c in left if copies[c] - 1 > explained[c])
        v.problems.append(
            f"{extra - v.in_flight_duplicates} row(s) doubled beyond the bound (no fault explains chunks {unexplained})"
        )


def _final_report(reports: list[dict[str, Any]]) -> dict[str, Any]:
    """The report of the version's last run that did something (by its start; a report found
    twice counts once): the one its place (processed/failed) and the user go by."""
    ran = [r for r in reports if r.get("status") != "not-run"] or reports or [{}]
    return max(enumerate(ran), key=lambda ir: (str(ir[1].get("started_at") or ""), ir[0]))[1]


def _check_report_against_the_service(
    h: History, f: FileSpec, reports: list[dict[str, Any]], final: dict[str, Any]
) -> list[str]:
    """The split of each report held against the service's record of this version's rows, by
    when they arrived: `previously_uploaded` only rows there before the run started (before it
    ended if another run held the file at the same time: a broken lease), `uploaded` only rows
    that arrived while it ran. Its final report's status agrees with where the version went:
    processed <=> every valid row uploaded (now or before) and no error; failed otherwise."""
    problems: list[str] = []
    mine = {_keyed(f.header, r) for r in f.valid}
    times = [*h.received_at, *[""] * (len(h.received) - len(h.received_at))]
    headers = [*h.headers, *[[]] * (len(h.received) - len(h.headers))]
    arrivals: dict[Row, list[str]] = {}  # each row of this version: when the service got each copy
    for call, hdr, at in zip(h.received, headers, times, strict=False):
        for row in call:
            key = _keyed(hdr, row)
            if key in mine and at:
                arrivals.setdefault(key, []).append(at)
    shared = any(i.kind == "lease-broken" and i.file == f.key for i in h.interruptions)
    for n, report in enumerate(reports):
        rows, start, end = report.get("rows", {}), report.get("started_at"), report.get("finished_at")
        if report.get("status") in ("not-run", "replaced") or not start:
            continue  # turned away, or closed by the sweep from the checkpoint (rows of any run)
        before = sum(1 for ats in arrivals.values() if min(ats) < (end if shared and end else start))
        during = sum(1 for ats in arrivals.values() if any(start <= at and (not end or at <= end) for at in ats))
        where = f"{f.key}: report {n + 1}"
        if int(rows.get("previously_uploaded", 0)) > before:
            problems.append(
                f"{where} says {rows.get('previously_uploaded')} row(s) were uploaded before it; "
                f"the service had {before}"
            )
        if int(rows.get("uploaded", 0)) > during:
            problems.append(f"{where} says it uploaded {rows.get('uploaded')} row(s); {during} arrived while it ran")
    if f.replaced:
        return problems
    rows = final.get("rows", {})
    done = not final.get("error") and not rows.get("not_uploaded") and not rows.get("planned")
    status = final.get("status")
    if h.path == "cli" or "processed" in h.placement.get(f.key, []):
        meant = "partial" if rows.get("rejected") else "succeeded"
        if not done or status != meant:
            problems.append(
                f"{f.key}: ends processed, its final report says {status!r} "
                f"(error {final.get('error')!r}, {rows.get('not_uploaded')} not uploaded)"
            )
    elif "failed" in h.placement.get(f.key, []) and done and status != "failed":
        problems.append(f"{f.key}: ends failed, its final report says {status!r} with every row uploaded")
    return problems


def _reported_sent(h: History, f: FileSpec) -> int:
    """The rows the version's last report says the service has (sent by it or an earlier run)."""
    rows = _final_report(h.reports.get(f.key) or [{}]).get("rows", {})
    return int(rows.get("uploaded", 0)) + int(rows.get("previously_uploaded", 0))


# A client's time from reading an answer to making it durable in its checkpoint: a chunk whose
# answer left the service longer than this before a kill was done, whatever the checkpoint says.
ANSWER_GRACE_SECONDS = 0.5


def _eligible(h: History, cut: Interruption, calls: list[Chunk | None]) -> set[Chunk]:
    """The chunks an interruption may have left in flight: of its file, not recorded as done in
    the checkpoint at that moment, and (after a kill) at the service by then, with a copy whose
    answer had not left the service (the emulator's record) by the kill, less the grace above."""
    at_service = None if cut.uploads_seen is None else set(calls[: cut.uploads_seen])
    if at_service is not None and cut.at is not None:
        answered = [*h.answered_at, *[None] * (len(calls) - len(h.answered_at))]
        at_service = {
            c
            for c, t in zip(calls[: cut.uploads_seen], answered, strict=False)
            if t is None or t > cut.at - ANSWER_GRACE_SECONDS
        }
    return {
        c
        for c in _plan(h)
        if c[0] == cut.file and c[1] not in cut.completed and (at_service is None or c in at_service)
    }


def _assign(left: Counter[Chunk], eligible: list[set[Chunk]], capacity: int) -> Counter[Chunk]:
    """How many extra copies of each chunk the interruptions explain: each may explain one copy
    of each of at most `capacity` of its eligible chunks (a matching by augmenting paths)."""
    held: list[list[Chunk]] = [[] for _ in eligible]

    def place(chunk: Chunk, visited: set[int]) -> bool:
        for k, chunks in enumerate(eligible):
            if chunk not in chunks or k in visited or chunk in held[k]:
                continue
            visited.add(k)
            if len(held[k]) < capacity:
                held[k].append(chunk)
                return True
            for other in list(held[k]):
                if place(other, visited):
                    held[k].remove(other)
                    held[k].append(chunk)
                    return True
        return False

    for chunk, n in left.items():
        for _ in range(n):
            if not place(chunk, set()):
                break
    return Counter(c for chunks in held for c in chunks)


def _check_reports(h: History, f: FileSpec) -> list[str]:
    """Each report against the file itself: rows in, valid, rejected per reason, each listed row
    one the file has, each rejection the mistake seeded into that row, no valid row rejected."""
    problems: list[str] = []
    reports = h.reports.get(f.key, [])
    if not reports:
        return [f"{f.key}: no report"]
    rows_in = len(f.records)
    listed: set[int] = set()
    final = _final_report(reports)
    read_upto = 0 if f.replaced else rows_in  # a replaced version's run may have stopped reading
    problems += _check_report_against_the_service(h, f, reports, final)
    for n, report in enumerate(reports):
        rows = report.get("rows", {})
        where = f"{f.key}: report {n + 1}"
        if not rows.get("balanced"):
            problems.append(f"{where} does not balance")
        if report.get("status") == "replaced":  # closed from the checkpoint: what was accepted
            whole = (rows.get("in"), rows.get("uploaded", 0) + rows.get("previously_uploaded", 0), rows.get("rejected"))
            parts = ("uploaded", "previously_uploaded", "rejected", "skipped", "not_uploaded", "planned")
            if rows.get("in") != sum(int(rows.get(k) or 0) for k in parts):
                problems.append(f"{where} (replaced): its counts do not add up to its {rows.get('in')} rows in")
            if rows.get("in") == rows_in and whole != (rows_in, len(f.valid), len(f.invalid)):
                problems.append(f"{where} counts (in, accepted, rejected) {whole} for the whole file")
            elif rows.get("in") != rows_in and rows.get("in") != whole[1]:  # unfinished: in = accepted, nothing else
                problems.append(f"{where} counts (in, accepted, rejected) {whole}: unfinished, 'in' = accepted")
            continue
        if report.get("status") == "not-run" or (report.get("error") and not rows.get("in")):
            continue  # turned away (or failed) before reading a row: it counts nothing
        read = rows_in
        if f.replaced and isinstance(rows.get("in"), int) and rows["in"] < rows_in:
            read = rows["in"]  # stopped where its version was replaced: the rows before that point
        read_upto = max(read_upto, read)
        mistakes = {r: m for r, m in f.faults.items() if r <= read + 1}
        reasons = Counter(code for code, _ in mistakes.values())
        sent = sum(rows.get(k, 0) for k in ("uploaded", "previously_uploaded", "not_uploaded", "planned"))
        counted = (rows.get("in"), sent, rows.get("rejected"), rows.get("skipped", 0))
        truth = (read, read - len(mistakes), len(mistakes), 0)
        if counted != truth:
            problems.append(f"{where} counts (in, valid, rejected, skipped) {counted}; the file has {truth}")
        issues = report.get("issues", {})
        counts = {k: c for k, c in issues.get("counts", {}).items() if k in REJECTING_CODES}
        if (counts or rows.get("rejected")) and counts != dict(reasons):
            problems.append(f"{where} counts rejections by reason {counts}; the file's are {dict(reasons)}")
        for item in issues.get("items", []):
            row = item.get("row")
            if not isinstance(row, int) or not 2 <= row <= rows_in + 1:
                problems.append(f"{where} lists row {row}, which the file does not have")
                continue
            if item.get("severity") != "error":
                continue
            if row not in f.faults:
                problems.append(f"{where} rejects row {row}, a valid row")
                continue
            code, column = f.faults[row]
            if item.get("code") != code or (column is not None and item.get("column") != column):
                given = f"{item.get('code')} ({item.get('column')})"
                problems.append(f"{where} rejects row {row} for {given}; its mistake is {code} ({column})")
            elif item.get("message") and report is final:
                listed.add(row)  # the final report of the version lists them all (an earlier one may not)
    if final.get("status") in ("not-run", "replaced") or (final.get("error") and not final.get("rows", {}).get("in")):
        read_upto = 0  # the last run read nothing, or its bytes went before any run could list them
    missing = [r for r in f.invalid if r not in listed and r <= read_upto + 1]
    if missing:
        problems.append(f"{f.key}: invalid row(s) {missing} not reported with their reason in its final report")
    return problems


# The issue codes that reject a row (the others are warnings and notes).
REJECTING_CODES = (
    "invalid-email", "invalid-date", "required-missing", "too-long", "too-many-fields", "unknown-scenario",
)  # fmt: skip


def hr_values(f: FileSpec) -> set[str]:
    """Every HR value of the file, and the forms a leak could take (escaped, one line of it, a
    date without its time, an e-mail address without its domain, any piece that holds a row's
    token); scenario names appear in reports by design."""
    found: set[str] = set(f.tokens)
    for row in f.records:
        for column, value in zip([*f.header, "(extra)"], row, strict=False):
            if not value or (column == "HRScenario" and value in SCENARIO_COLUMNS):
                continue
            found |= {value, json.dumps(value)[1:-1], repr(value)[1:-1], *value.splitlines()}
            if "@" in value:
                found.add(value.rsplit("@", 1)[0])  # its local part
            if len(value) >= 10 and value[:4].isdigit() and value[4] == "-":
                found.add(value[:10])  # a date: its day alone is a leak too
    return {s for s in found if s.strip()}


DAY = re.compile(r"\d{4}-\d{2}-\d{2}")


def leaks(h: History) -> list[str]:
    """The secret and HR values found in any captured log record, stdout, stderr or report. Each value
    is searched for unless a cheaper search proves it absent (its day, its file's tag)."""
    records = [*h.logs, *(text for _, text in h.invocation_errors)]  # the host logs each error whole
    text = "\n".join([*records, *(json.dumps(r, ensure_ascii=False) for rs in h.reports.values() for r in rs)])
    days = set(DAY.findall(text))
    found = {s for s in (SECRET, *h.tokens) if s in text}
    for f in h.files:
        tagged = not f.tag or f.tag in text
        for value in hr_values(f):
            if DAY.match(value) and value[:10] not in days:
                continue
            if f.tag and f.tag in value and not tagged:
                continue
            if value in text:
                found.add(value)
    return sorted(found)


# -- the environment: the emulator, Azurite, captured logs ------------------------------------------
class Rig:
    def __init__(self, workdir: Path, *, function: bool = True) -> None:
        from hrconnector_core import ingestion
        from hrconnector_core.emulator import Emulator, EmulatorState
        from hrconnector_core.emulator.azurite import Azurite

        self._saved_env = dict(os.environ)
        self._saved_defaults = ingestion.RetryPolicy.__init__.__defaults__
        self._saved_level = logging.getLogger().level
        ingestion.RetryPolicy.__init__.__defaults__ = FAST_RETRY_DEFAULTS  # campaign speed only
        self.workdir = workdir
        state = EmulatorState()
        state.register_app(TENANT, APP_ID, SECRET)
        # The Function's identity: its own client id per rig, since the product keeps one credential
        # per client id for the process's life (a test session must not get this rig's).
        self.identity = "ca000000-0000-4000-8000-" + uuid.uuid4().hex[:12]
        state.register_managed_identity(self.identity, TENANT)
        self.emulator = Emulator(state=state, ca_path=workdir / "ca.pem", data_dir=workdir / "data")
        self.emulator.__enter__()
        os.environ["REQUESTS_CA_BUNDLE"] = str(self.emulator.ca_path)
        self.azurite = Azurite(REPO) if function else None
        if self.azurite is not None:
            self.azurite.__enter__()
        self.lines: list[str] = []
        self._handler = _ListHandler(self.lines)
        self._handler.setLevel(logging.INFO)  # what the Functions worker forwards
        root = logging.getLogger()
        root.addHandler(self._handler)
        root.setLevel(logging.INFO)
        self.instances: list[Instance] = []  # Function instances: worker processes, started on demand
        self.outage: list[str] = []  # the token endpoint's failing answers in a CLI history's outage window

    def instances_for(self, n: int) -> list[Instance]:
        """`n` separate Function instances (processes that imported function_app), reused across
        histories: each history's settings travel with each invocation."""
        while len(self.instances) < n:
            self.instances.append(Instance(len(self.instances)))
        return self.instances[:n]

    def close(self) -> None:
        """Everything as it was: the campaign may run inside a test session."""
        from hrconnector_core import ingestion

        for instance in self.instances:
            instance.close()
        ingestion.RetryPolicy.__init__.__defaults__ = self._saved_defaults
        os.environ.clear()
        os.environ.update(self._saved_env)
        logging.getLogger().removeHandler(self._handler)
        logging.getLogger().setLevel(self._saved_level)
        if self.azurite is not None:
            self.azurite.__exit__(None, None, None)
        self.emulator.__exit__(None, None, None)

    def new_job(self) -> str:
        job = str(uuid.uuid4())
        self.emulator.state.register_job(job, APP_ID)
        return job

    def set_faults(self, rng: random.Random, h: History, seed: int) -> None:
        quiet = rng.random() < 0.25
        f = {
            "rate_429": 0.0 if quiet else rng.choice([0.0, 0.05, 0.15]),
            "rate_503": 0.0 if quiet else rng.choice([0.0, 0.05, 0.15]),
            "rate_drop": 0.0 if quiet else rng.choice([0.0, 0.05, 0.1]),
            "latency_ms": rng.choice([0, 0, 20, 80]),
            "retry_after_seconds": rng.choice([0, 1]) if rng.random() < 0.3 else 0,
            # recorded, then the connection dropped before the answer: the retry sends the chunk again
            "rate_lost_response": rng.choice([0.0, 0.0, 0.15]),
        }
        self.emulator.state.set_faults(**f, seed=seed)
        # histories where the rate was set; what the service really answered: "429-met" etc. (run_history)
        h.faults["429-rate-set"] += f["rate_429"] > 0
        h.faults["503-rate-set"] += f["rate_503"] > 0
        h.faults["drop-rate-set"] += f["rate_drop"] > 0
        h.faults["latency"] += f["latency_ms"] > 0
        h.faults["lost-response-window"] += f["rate_lost_response"] > 0

    def calm(self) -> None:
        self.emulator.state.set_faults(
            rate_429=0, rate_503=0, rate_drop=0, latency_ms=0, bandwidth_bytes_per_s=0, retry_after_seconds=1,
            rate_lost_response=0, seed=None,
        )  # fmt: skip

    def observe(self, h: History, job: str) -> None:
        """The uploads the service recorded, with the emulator's lost-answer flag of each."""
        with self.emulator.state.lock:
            uploads = list(self.emulator.state.uploads.get(job, []))
        h.received = [u.rows for u in uploads]
        h.headers = [list(u.header) for u in uploads]
        h.received_at = [u.received_at for u in uploads]
        h.answer_lost = [u.response_lost for u in uploads]
        h.answered_at = [u.answered_at for u in uploads]
        h.faults["lost-response"] += sum(h.answer_lost)

    def counters(self) -> dict[str, int]:
        with self.emulator.state.lock:
            return dict(self.emulator.state.counters)

    def tokens(self) -> set[str]:
        with self.emulator.state.lock:
            return set(self.emulator.state.tokens)

    def settle(self, seconds: float = 3.0) -> None:
        """Wait until the emulator has no upload call in progress (a killed client's last call is
        recorded or dropped), so a snapshot of its uploads is complete."""
        done = ("dropped", "throttled", "unavailable", "unauthorized", "forbidden", "bad_request", "server_error",
                "abandoned", "accepted")  # fmt: skip
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            with self.emulator.state.lock:
                counters = dict(self.emulator.state.counters)
            if counters.get("signal_requests", 0) <= sum(counters.get(k, 0) for k in done):
                return
            time.sleep(0.005)


# A Function instance: a process that imports function_app (as a worker does at start-up) and
# invokes the registered blob function through the emulator's host for each task it reads, its log
# records at INFO captured (what the worker forwards) and sent back with the outcome.
INSTANCE = """
import json, logging, os, sys, traceback
from benchmarks.fault_campaign import FAST_RETRY_DEFAULTS, _ListHandler
from hrconnector_core import ingestion
ingestion.RetryPolicy.__init__.__defaults__ = FAST_RETRY_DEFAULTS
lines = []
handler = _ListHandler(lines)
handler.setLevel(logging.INFO)
logging.getLogger().addHandler(handler)
logging.getLogger().setLevel(logging.INFO)
from hrconnector_core.emulator.host import invoke_blob_trigger, registered_functions
registered_functions()
out, sys.stdout = sys.stdout, sys.stderr
out.write("ready\\n")
out.flush()
for line in sys.stdin:
    task = json.loads(line)
    os.environ.update(task["env"])
    lines.clear()
    error = None
    try:
        invoke_blob_trigger(task["function"], task["container"], task["name"])
    except Exception as exc:
        error = [type(exc).__name__, traceback.format_exc()]
    out.write(json.dumps({"error": error, "logs": list(lines)}) + "\\n")
    out.flush()
"""


class Instance:
    """One separate Function instance (a process), driven by one invoker thread at a time."""

    def __init__(self, number: int) -> None:
        self.number = number
        self.stderr: list[str] = []
        self._start()

    def _start(self) -> None:
        env = dict(os.environ) | {"PYTHONPATH": str(REPO)}
        self.proc = subprocess.Popen(
            [sys.executable, "-c", INSTANCE], env=env, cwd=REPO, text=True,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )  # fmt: skip
        assert self.proc.stdout is not None and self.proc.stderr is not None
        threading.Thread(target=self._drain, args=(self.proc.stderr,), daemon=True).start()
        ready = self.proc.stdout.readline()
        if ready.strip() != "ready":
            raise RuntimeError(f"Function instance {self.number} did not start: {''.join(self.stderr)[-500:]}")

    def _drain(self, stream: Any) -> None:
        for line in stream:
            self.stderr.append(line)

    def invoke(self, env: dict[str, str], container: str, name: str) -> tuple[tuple[str, str] | None, list[str]]:
        """The blob function invoked in this instance: (the exception's type and its message with its
        traceback, as the host logs them, or None; its log lines)."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        task = {"env": env, "function": BLOB_FUNCTION, "container": container, "name": name}
        try:
            self.proc.stdin.write(json.dumps(task) + "\n")
            self.proc.stdin.flush()
            reply = self.proc.stdout.readline()
        except OSError:
            reply = ""
        if not reply:  # the instance died: a new one takes its place
            self.proc.wait()
            self._start()
            return ("InstanceDied", "the instance's process died during the invocation"), []
        data = json.loads(reply)
        return (tuple(data["error"]) if data["error"] else None), data["logs"]

    def take_stderr(self) -> list[str]:
        taken, self.stderr[:] = list(self.stderr), []
        return taken

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class _ListHandler(logging.Handler):
    def __init__(self, lines: list[str]) -> None:
        super().__init__()
        self.lines = lines

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.lines.append(self.format(record) + " " + json.dumps(record.__dict__, default=str))
        except Exception:
            self.lines.append(str(record.msg))


# The CLI under the campaign: the real entry point, with the campaign's retry delays.
CLI_WRAPPER = """
import sys
from benchmarks.fault_campaign import FAST_RETRY_DEFAULTS
from hrconnector_core import ingestion
ingestion.RetryPolicy.__init__.__defaults__ = FAST_RETRY_DEFAULTS
from hrconnector_core.cli import main
sys.argv = ["hrconnector", *sys.argv[1:]]
raise SystemExit(main())
"""


# -- the CLI path -----------------------------------------------------------------------------------
def run_cli_history(rig: Rig, h: History, rng: random.Random) -> None:
    job = rig.new_job()
    tmp = Path(tempfile.mkdtemp(dir=rig.workdir))
    shape = "xlsx" if random.Random(h.seed + 3_000_000).random() < WORKBOOK_SHARE else "csv"
    h.faults[f"{shape}-files"] += 1
    spec = make_file(rng, f"hr.{shape}", f"s{h.seed}", seed=h.seed)
    h.files.append(spec)
    path = tmp / spec.name
    path.write_bytes(spec.data)
    rig.set_faults(rng, h, h.seed)
    kills = rng.choice([0, 1, 1, 2])
    # An authorization window in the first run not killed (its own random stream: the draws above
    # and below stay as they were): the job answered 403 for a while, or the app's tokens revoked
    # and the token endpoint refusing it. The run fails; the rerun after it completes.
    extra = random.Random(h.seed + 2_000_000)
    window = extra.choice(["", "", "", "403", "token"])
    window_after = extra.randint(0, 3)
    # Or (a stream of its own again) the token endpoint failing for a while: its next 1-4 answers
    # 503 or a connection closed unanswered, the app's tokens revoked so a new one is needed.
    down = random.Random(h.seed + 5_000_000)
    if not window and down.random() < TOKEN_OUTAGE_SHARE:
        window = "token-outage"
        rig.outage = [down.choice(["503", "drop"]) for _ in range(down.randint(1, 4))]
    state_dir = tmp / "state"
    args = [
        "upload", "--tenant-id", TENANT, "--app-id", APP_ID, "--app-secret-env", "HR_CAMPAIGN_SECRET",
        "--job-id", job, "--file", str(path), "--authority-host", rig.emulator.url,
        "--ingestion-url", rig.emulator.url, "--state-dir", str(state_dir),
        "--records-per-call", str(h.records_per_call), "--max-concurrency", str(h.max_concurrency),
        "--report", str(tmp / "report.json"), "--rejected", str(tmp / "rejected.csv"), "--verbose",
    ]  # fmt: skip
    env = dict(os.environ) | {
        "HR_CAMPAIGN_SECRET": SECRET,
        "REQUESTS_CA_BUNDLE": str(rig.emulator.ca_path),
        "PYTHONPATH": str(REPO),
    }
    report_path = tmp / "report.json"
    for attempt in range(12):
        report_path.unlink(missing_ok=True)
        proc = subprocess.Popen(
            [sys.executable, "-c", CLI_WRAPPER, *args], env=env, cwd=REPO,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )  # fmt: skip
        killed: float | None = None
        if attempt < kills:
            # kill at a random moment: after 0..n accepted calls, or at once
            target = len(rig.emulator.state.uploads.get(job, [])) + rng.randint(0, 3)
            killed = _kill_after_uploads(proc, rig, job, target, seconds=20)
        if attempt == kills and window:
            target = len(rig.emulator.state.uploads.get(job, [])) + window_after
            with _authorization_window(rig, h, job, window, proc, target):
                out, err = proc.communicate(timeout=120)
        else:
            out, err = proc.communicate(timeout=120)
        if killed is not None:
            h.faults["kill"] += 1
            h.interruptions.append(_after_a_kill(rig, job, spec, "kill", _local_checkpoint(state_dir, spec), killed))
        h.logs += [out.decode(errors="replace"), err.decode(errors="replace")]
        if report_path.exists():
            h.reports.setdefault(spec.name, []).append(json.loads(report_path.read_text()))
        if attempt < kills and killed is None:
            h.faults["rerun-of-a-finished-run"] += 1
        if attempt >= kills and _complete(report_path):
            break
        if attempt >= kills:
            h.faults["rerun-after-failure"] += 1
    else:
        h.errors.append("the CLI never succeeded")
    rig.calm()
    rig.settle()
    rig.observe(h, job)
    rejected = tmp / "rejected.csv"
    if spec.invalid:
        listed = _rejected_rows(rejected)
        if listed != spec.invalid:
            h.errors.append(f"the rejected-rows file lists rows {listed}, the file's invalid rows are {spec.invalid}")


@contextlib.contextmanager
def _authorization_window(
    rig: Rig, h: History, job: str, kind: str, proc: subprocess.Popen[bytes], target: int
) -> Iterator[None]:
    """Once the service holds `target` uploads of `job` (unless the run ends first), until the
    run ends: "403" answers every upload 403 (the job given to another app); "token" revokes the
    app's tokens and unregisters it, so the one retry with a fresh token fails at the token endpoint;
    "token-outage" revokes them and the token endpoint's next answers fail (`rig.outage`)."""
    state = rig.emulator.state
    while proc.poll() is None and len(state.uploads.get(job, [])) < target:
        time.sleep(0.002)
    if proc.poll() is not None:
        yield
        return
    before = dict(state.counters)
    with state.lock:
        app = state.apps[(TENANT.lower(), APP_ID.lower())]
        if kind == "403":
            state.jobs[job.lower()] = "0ther-app"
        elif kind == "token":
            del state.apps[(TENANT.lower(), APP_ID.lower())]
        else:  # token-outage: the app stays; the endpoint's next answers fail
            state.token_faults[:] = rig.outage
    if kind != "403":
        state.revoke_tokens(APP_ID)
    h.faults[f"{kind}-window"] += 1
    try:
        yield
    finally:
        with state.lock:
            state.jobs[job.lower()] = APP_ID.lower()
            state.apps[(app.tenant_id, app.app_id)] = app
            state.token_faults.clear()
            counters = dict(state.counters)

        def delta(name: str) -> int:
            return counters.get(name, 0) - before.get(name, 0)

        # the calls the window refused: uploads answered 403, or 401 and token requests refused
        if kind == "token-outage":  # the token endpoint's answers that failed (503s, connections closed)
            h.faults["token-outage-window-failures"] += delta("token_unavailable") + delta("token_dropped")
        else:
            refused = delta("forbidden") if kind == "403" else delta("unauthorized") + delta("token_requests")
            h.faults[f"{kind}-window-refusals"] += refused - (0 if kind == "403" else delta("tokens_issued"))


def _rejected_rows(path: Path) -> list[int]:
    """The row numbers a rejected-rows file lists (its first column)."""
    if not path.exists():
        return []
    with path.open(encoding="utf-8-sig", newline="") as handle:
        return sorted(int(r[0]) for r in list(csv.reader(handle))[1:] if r and r[0].isdigit())


def _local_checkpoint(state_dir: Path, spec: FileSpec) -> set[int]:
    """The chunks the CLI's checkpoint of this file records as done (none without one)."""
    for path in state_dir.glob("checkpoint-*.json"):
        data = json.loads(path.read_text())
        if data.get("file_sha256") == spec.sha256:
            return {int(i) for i in data.get("completed", {})}
    return set()


def _after_a_kill(
    rig: Rig, job: str, spec: FileSpec, kind: str, completed: set[int], at: float | None = None
) -> Interruption:
    """The evidence of a kill, the process reaped: its checkpoint and what the service holds."""
    rig.settle()
    with rig.emulator.state.lock:
        seen = len(rig.emulator.state.uploads.get(job, []))
    return Interruption(kind, spec.key, completed, seen, at)


def _complete(report_path: Path) -> bool:
    """The run ended with every row uploaded or set aside (exit 1 with rejected rows is complete)."""
    if not report_path.exists():
        return False
    report = json.loads(report_path.read_text())
    return not report.get("error") and report["rows"]["not_uploaded"] == 0 and report["rows"]["balanced"]


# -- the Function path ------------------------------------------------------------------------------
BLOB_FUNCTION = "hr_file_arrived"


def function_env(rig: Rig, job: str, h: History) -> dict[str, str]:
    from hrconnector_core.emulator.host import local_settings

    assert rig.azurite is not None
    suffix = uuid.uuid4().hex[:8]
    secret_name = f"hr-app-secret-{suffix}"
    rig.emulator.state.set_secret(secret_name, SECRET)
    env = local_settings(
        rig.azurite.connection_string, rig.emulator, connector="main", job_id=job, tenant_id=TENANT,
        app_id=APP_ID, identity=rig.identity, secret_name=secret_name,
    ) | {
        "HR_INCOMING_CONTAINER": f"in-{suffix}", "HR_PROCESSED_CONTAINER": f"processed-{suffix}",
        "HR_REPORTS_CONTAINER": f"reports-{suffix}", "HR_FAILED_CONTAINER": f"failed-{suffix}",
        "HR_STATE_CONTAINER": f"state-{suffix}", "HR_LEASE_SECONDS": "15", "HR_SWEEP_AFTER_MINUTES": "1",
        "HR_RECORDS_PER_CALL": str(h.records_per_call), "HR_MAX_CONCURRENCY": str(h.max_concurrency),
    }  # fmt: skip
    os.environ.update(env)
    return env


def run_function_history(
    rig: Rig,
    h: History,
    rng: random.Random,
    *,
    files: int | None = None,
    lease_breaks: bool = True,
    kill_worker: bool = False,
    instances: str = "processes",
) -> float:
    """Returns the seconds the invokers took (for files per minute). `instances`: "processes"
    (each invoker drives a separate Function instance, a process of its own) or "threads" (the
    invokers are threads of this process)."""
    from azure.core.exceptions import HttpResponseError
    from azure.storage.blob import BlobLeaseClient

    from hrconnector_core.emulator.host import invoke_blob_trigger
    from hrconnector_core.service import HRConnectorService, utc_now
    from hrconnector_core.settings import Settings

    job = rig.new_job()
    env = function_env(rig, job, h)
    settings = Settings.from_env()
    service = HRConnectorService(settings)
    service.ensure_containers()
    count = files if files is not None else rng.randint(1, 3)
    shapes = random.Random(h.seed + 3_000_000)  # its own stream: the draws of earlier seeds stay as they were
    for i in range(count):
        shape = "xlsx" if shapes.random() < WORKBOOK_SHARE else "csv"
        h.faults[f"{shape}-files"] += 1
        spec = make_file(rng, f"main/f{i}.{shape}", f"s{h.seed}f{i}", first=i * 41, seed=h.seed)
        h.files.append(spec)
        spec.etag = service.incoming.get_blob_client(spec.name).upload_blob(spec.data, overwrite=True)["etag"]
    if files is None:
        rig.set_faults(rng, h, h.seed)
    invokers = rng.randint(1, 4) if files is None else 4
    deliveries = [f.name for f in h.files for _ in range(rng.choice([1, 2, 3]) if files is None else 2)]
    rng.shuffle(deliveries)
    h.faults["duplicate-delivery"] += len(deliveries) - len(h.files)
    h.faults["concurrent-invokers"] += invokers > 1
    pool = rig.instances_for(invokers) if instances == "processes" else []
    sweep = rng.random() < 0.4 if files is None else True
    h.faults["timer-sweep"] += sweep
    break_lease = files is None and rng.random() < 0.3 and lease_breaks
    # A new version of the first file replaces it in hr-incoming while a run uploads it (its own
    # stream: the draws above stay as they were); not with a killed worker. With a broken lease too
    # in a third of them: the run that lost it writes no report, and the next timer run closes the
    # old version with a `replaced` report from its checkpoint (the checker holds it to that).
    side = random.Random(h.seed + 4_000_000)
    overwrite = files is None and not kill_worker and side.random() < OVERWRITE_SHARE
    overwrite_after = side.randint(0, 2)  # of the first file's chunks at the service (0: once picked up)
    break_lease = break_lease and (not overwrite or side.random() < 1 / 3)
    # Another writer updates a file's checkpoint in hr-state while a run uploads it (the same
    # document written back: only its ETag changes), so the run's next checkpoint write meets an
    # ETag conflict; alone in its history.
    rewrite = files is None and not kill_worker and not overwrite and not break_lease and side.random() < REWRITE_SHARE
    errors: list[tuple[str, str]] = []
    queue = list(deliveries)
    lock = threading.Lock()
    incoming = settings.containers.incoming

    def invoke(number: int, name: str) -> None:
        """One delivery: in instance `number` (a process), or in this process."""
        if pool:
            with lock:
                h.instance_pids.add(pool[number].proc.pid)
            error, lines = pool[number].invoke(env, incoming, name)
            with lock:
                h.logs.extend(lines)
                errors.extend([error] if error else [])
            return
        _swallow(errors, invoke_blob_trigger, BLOB_FUNCTION, incoming, name)

    def invoker(number: int) -> None:
        while True:
            with lock:
                if not queue:
                    return
                name = queue.pop()
            invoke(number, name)

    def breaker() -> None:
        """Break the lease of a file's state once its first chunk is at the service."""
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if rig.emulator.state.uploads.get(job):
                for blob in service.state.list_blobs(include=[]):
                    client = service.state.get_blob_client(blob.name)
                    try:
                        if client.get_blob_properties().lease.state == "leased":
                            spec = _file_of_state_blob(h, job, blob.name)
                            # the checkpoint as the break finds it (read just before: a superset of
                            # what may be in flight, as a run may mark a chunk done meanwhile)
                            done = _blob_checkpoint(service, spec) if spec is not None else set()
                            BlobLeaseClient(client).break_lease(lease_break_period=0)
                            h.faults["lease-broken"] += 1
                            if spec is not None:
                                h.interruptions.append(Interruption("lease-broken", spec.key, done))
                            return
                    except HttpResponseError:  # gone or no longer leased: try the next
                        continue
            time.sleep(0.005)

    def overwriter() -> None:
        """Once a run has picked up the first file and the service holds `overwrite_after` of its
        chunks (or its run is done), a new version (new rows, the same name) replaces it in
        hr-incoming; its event is delivered too."""
        old = h.files[0]
        rows = {tuple(r) for r in old.valid}
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with rig.emulator.state.lock:
                at_service = [u for u in rig.emulator.state.uploads.get(job, []) if u.rows and tuple(u.rows[0]) in rows]
            claimed = service.files.get(old.name, old.etag) is not None  # a run has picked it up
            if (claimed and len(at_service) >= overwrite_after) or not service.incoming.get_blob_client(
                old.name
            ).exists():
                break
            time.sleep(0.002)
        new = make_file(side, old.name, f"s{h.seed}f0v", first=200, seed=h.seed)
        new.version = 1
        new.etag = service.incoming.get_blob_client(new.name).upload_blob(new.data, overwrite=True)["etag"]
        old.replaced = True  # until the end shows it was copied before the change
        h.faults["overwritten-during-upload"] += 1
        with lock:
            h.files.append(new)
            queue.append(new.name)  # the new version's event

    def rewriter() -> None:
        """Once the service holds an upload of the job: write a file's checkpoint back over itself
        (If-Match its ETag), the checkpoint as read then being the evidence (as for a broken lease)."""
        from azure.core import MatchConditions
        from azure.core.exceptions import AzureError

        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if rig.emulator.state.uploads.get(job):
                for item in service.state.list_blobs(name_starts_with="checkpoints/"):
                    client = service.state.get_blob_client(item.name)
                    try:
                        downloader = client.download_blob()
                        raw, etag = downloader.readall(), downloader.properties.etag
                        data = json.loads(raw)
                        spec = next((f for f in h.files if f.sha256 == data.get("file_sha256")), None)
                        if spec is None:
                            continue
                        client.upload_blob(
                            raw, overwrite=True, etag=etag, match_condition=MatchConditions.IfNotModified
                        )
                    except (AzureError, ValueError):  # gone, or written meanwhile: try again
                        continue
                    h.faults["checkpoint-rewritten"] += 1
                    done = {int(i) for i in data.get("completed", {})}
                    h.interruptions.append(Interruption("checkpoint-rewritten", spec.key, done))
                    return
            time.sleep(0.005)

    if kill_worker:
        kill_a_worker(rig, h, service, job, incoming, h.files[0].name, random.Random(h.seed + 1_000_000))
    started = time.monotonic()
    threads = [threading.Thread(target=invoker, args=(i,), name=f"invoker-{i}") for i in range(invokers)]
    if sweep:
        # the timer as it runs two minutes later (the service's injected clock): every file is due
        later = HRConnectorService(settings, clock=lambda: utc_now() + timedelta(minutes=2))
        threads.append(threading.Thread(target=lambda: _swallow(errors, later.run_schedule), name="timer"))
    if break_lease:
        threads.append(threading.Thread(target=breaker, name="breaker"))
    if overwrite:
        threads.append(threading.Thread(target=overwriter, name="overwriter"))
    if rewrite:
        threads.append(threading.Thread(target=rewriter, name="rewriter"))
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    took = time.monotonic() - started
    rig.calm()
    # Late deliveries and the host's retries: whatever is left in incoming is delivered again,
    # with leases a broken or dead run left broken (what their lapse would do).
    for _ in range(6):
        left = [b.name for b in service.incoming.list_blobs()]
        if not left:
            break
        _break_leases(service)
        for name in left:
            h.faults["late-delivery"] += 1
            invoke(0, name)
    # The next timer run, as the schedule makes it: it closes a version left unfinished whose bytes
    # are gone (replaced, or moved by a run that then lost its lease before recording its end).
    later = HRConnectorService(settings, clock=lambda: utc_now() + timedelta(minutes=2))
    _swallow(errors, later.run_schedule)
    for instance in pool:
        h.logs += instance.take_stderr()
    h.faults["invocation-error"] += len(errors)
    h.invocation_errors += errors  # the leak search reads each one's message and traceback
    rig.settle()
    rig.observe(h, job)
    containers = {
        "incoming": service.incoming,
        "processed": service.processed,
        "failed": service.failed,
        "reports": service.reports,
    }
    names = {k: [b.name for b in c.list_blobs()] for k, c in containers.items()}
    in_incoming = {(b.name, b.etag.strip('"')) for b in service.incoming.list_blobs()}
    for f in h.files:
        base = f.name.rsplit("/", 1)[1]
        # each version's own folder: <stamp>-<first 8 hex digits of the SHA-256 of its ETag>
        folder = "-" + hashlib.sha256(f.etag.strip('"').encode()).hexdigest()[:8] + "/"
        held = {"incoming": [f.name] if (f.name, f.etag.strip('"')) in in_incoming else []}
        for where in ("processed", "failed"):
            held[where] = [n for n in names[where] if n.endswith("/" + base) and folder in n]
        h.placement[f.key] = [where for where, found in held.items() for _ in found]
        for where in ("processed", "failed", "reports"):
            for n in names[where]:
                if folder in n and (n.endswith(base + ".report.json") or n.endswith(base + ".rejected.report.json")):
                    data = containers[where].get_blob_client(n).download_blob().readall()
                    h.reports.setdefault(f.key, []).append(json.loads(data))
        state = service.files.get(f.name, f.etag)
        h.states[f.key] = state.status if state is not None else "absent"
        # One report per version (its run's, or the sweep's for a version replaced before a run
        # finished it), and the one its finished state names.
        own = [f"{containers[w].container_name}/{n}" for w in ("processed", "failed") for n in names[w]
               if folder in n and n.endswith("/" + base + ".report.json")]  # fmt: skip
        h.errors += one_report(f.key, own, state.report if state is not None and state.finished else None)
        if f.version and h.files[0].name == f.name:  # the version it replaced: copied before the change?
            old = h.files[0]
            old.replaced = not h.placement.get(old.key)
            h.faults["replaced-before-its-copy"] += old.replaced
            if old.replaced:  # what its run had sent of it by then, as its report says
                sent = _reported_sent(h, old)
                part = "none" if not sent else "all" if sent == len(old.valid) else "part"
                h.faults[f"replaced-version-sent-{part}-of-its-rows"] += 1
                closed = _final_report(h.reports.get(old.key) or [{}]).get("status") == "replaced"
                h.faults["replaced-version-closed-by-the-timer"] += closed  # its run lost the lease first
    for item in service.state.list_blobs():
        lease = service.state.get_blob_client(item.name).get_blob_properties().lease
        if lease.state == "leased":
            h.leased.append(item.name)
    return took


WORKER = """
import sys
from benchmarks.fault_campaign import FAST_RETRY_DEFAULTS
from hrconnector_core import ingestion
ingestion.RetryPolicy.__init__.__defaults__ = FAST_RETRY_DEFAULTS
from hrconnector_core.emulator.host import invoke_blob_trigger
invoke_blob_trigger(*sys.argv[1:])
"""


def kill_a_worker(rig: Rig, h: History, service: Any, job: str, incoming: str, name: str, rng: random.Random) -> None:
    """A Function worker process (the registered function, as the host calls it) killed with
    SIGKILL at a random moment of its run; its lease stays until it lapses."""
    env = dict(os.environ) | {"PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [sys.executable, "-c", WORKER, BLOB_FUNCTION, incoming, name],
        env=env,
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    killed = _kill_after_uploads(proc, rig, job, rng.randint(0, 4), seconds=30)
    out, err = proc.communicate(timeout=60)
    if killed is not None:
        spec = next(f for f in h.files if f.name == name)
        h.faults["worker-kill"] += 1
        h.interruptions.append(_after_a_kill(rig, job, spec, "worker-kill", _blob_checkpoint(service, spec), killed))
    h.logs += [out.decode(errors="replace"), err.decode(errors="replace")]


def _kill_after_uploads(
    proc: subprocess.Popen[bytes], rig: Any, job: str, target: int, *, seconds: float
) -> float | None:
    """SIGKILL `proc` once the service holds `target` uploads of `job` (or at once if it is done);
    the moment it was killed (time.monotonic()), None if it finished first."""
    deadline = time.monotonic() + seconds
    while proc.poll() is None and time.monotonic() < deadline:
        if len(rig.emulator.state.uploads.get(job, [])) >= target:
            break
        time.sleep(0.002)
    if proc.poll() is None:
        at = time.monotonic()
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        return at
    return None


def _blob_checkpoint(service: Any, spec: FileSpec) -> set[int]:
    """The chunks the file's checkpoint in hr-state records as done (none without one)."""
    from azure.core.exceptions import ResourceNotFoundError

    for item in service.state.list_blobs(name_starts_with="checkpoints/"):
        try:
            data = json.loads(service.state.get_blob_client(item.name).download_blob().readall())
        except ResourceNotFoundError:  # deleted meanwhile (a finished run may remove it)
            data = {}
        if data.get("file_sha256") == spec.sha256:
            return {int(i) for i in data.get("completed", {})}
    return set()


def _file_of_state_blob(h: History, job: str, blob: str) -> FileSpec | None:
    """The file a leased blob of hr-state belongs to: `files/<name>/<etag>.json` or
    `locks/<checkpoint id>` (the id: the content's SHA-256 and the job)."""
    for f in h.files:
        key = hashlib.sha256(f"{f.sha256}\n{job}".encode()).hexdigest()[:40]
        if blob == f"files/{f.name}/{f.etag.strip(chr(34))}.json" or blob == f"locks/{key}":
            return f
    return None


def _swallow(errors: list[tuple[str, str]], fn: Any, *args: Any) -> None:
    """Run an invocation as the host does: what it raises is kept whole (its type, message and
    traceback: the host logs all of it to Application Insights)."""
    import traceback

    try:
        fn(*args)
    except Exception as exc:
        errors.append((type(exc).__name__, traceback.format_exc()))


def _break_leases(service: Any) -> None:
    from azure.storage.blob import BlobLeaseClient

    for blob in service.state.list_blobs():
        client = service.state.get_blob_client(blob.name)
        if client.get_blob_properties().lease.state == "leased":
            BlobLeaseClient(client).break_lease(lease_break_period=0)


# -- a run ------------------------------------------------------------------------------------------
def run_history(
    rig: Rig,
    seed: int,
    *,
    paths: tuple[str, ...] = ("cli", "function"),
    lease_breaks: bool = True,
    instances: str = "processes",
) -> tuple[History, Verdict]:
    rng = random.Random(seed)
    path = paths[seed % len(paths)]
    h = History(seed, path, records_per_call=rng.choice([1, 2, 3, 5, 8, 20]), max_concurrency=rng.randint(1, 4))
    start = len(rig.lines)
    tokens = rig.tokens()
    before = rig.counters()
    try:
        if path == "cli":
            run_cli_history(rig, h, rng)
        else:
            run_function_history(
                rig, h, rng, lease_breaks=lease_breaks, kill_worker=path == "function-kill", instances=instances
            )
    except Exception as exc:
        h.errors.append(f"the history raised {type(exc).__name__}: {exc}")
    finally:
        rig.calm()
    h.logs += rig.lines[start:]
    h.tokens = sorted(rig.tokens() - tokens)
    met(h, before, rig.counters())
    return h, check(h)


def met(h: History, before: dict[str, int], after: dict[str, int]) -> None:
    """The faults the history really met, from the emulator's counters and the product's logs
    (a rate set on the emulator may meet no call at all)."""
    for name, counter in (("429", "throttled"), ("503", "unavailable"), ("drop", "dropped")):
        h.faults[f"{name}-met"] += after.get(counter, 0) - before.get(counter, 0)
    h.faults["checkpoint-conflict-met"] += sum("was written by another run" in line for line in h.logs)
    h.faults["process-instances"] = len(h.instance_pids)


def parse_seeds(text: str) -> list[int]:
    out: list[int] = []
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        out += list(range(int(lo), int(hi or lo) + 1))
    return out


def replay(h: History) -> str:
    return f".venv/bin/python -m benchmarks.fault_campaign --seeds {h.seed} --paths {h.path} --verbose"


def table(results: list[tuple[History, Verdict]], elapsed: float) -> str:
    faults: Counter[str] = Counter()
    for h, _ in results:
        faults.update(h.faults)
    failing = [h.seed for h, v in results if not v.ok]
    rows = [
        ("histories", str(len(results))),
        (
            "  cli / function",
            f"{sum(h.path == 'cli' for h, _ in results)} / {sum(h.path.startswith('function') for h, _ in results)}",
        ),
        ("files", str(sum(len(h.files) for h, _ in results))),
        ("valid rows expected", str(sum(len(f.valid) for h, _ in results for f in h.files))),
        ("invalid rows expected in reports", str(sum(len(f.invalid) for h, _ in results for f in h.files))),
        ("rows lost", str(sum(v.lost for _, v in results))),
        ("rows doubled beyond the bound", str(sum(v.doubled_beyond for _, v in results))),
        ("documented in-flight duplicates (rows)", str(sum(v.in_flight_duplicates for _, v in results))),
        ("  of which after a lost answer", str(sum(v.after_lost_answers for _, v in results))),
        (
            "  of which after a kill, a broken lease or a rewritten checkpoint",
            str(sum(v.in_flight_duplicates - v.after_lost_answers for _, v in results)),
        ),
        ("distinct Function instance processes", str(len({p for h, _ in results for p in h.instance_pids}))),
        ("failing histories", str(len(failing))),
        ("wall time", f"{elapsed:.0f} s"),
    ]
    rows += [(f"fault: {k}", str(n)) for k, n in sorted(faults.items())]
    width = max(len(k) for k, _ in rows)
    lines = [f"| {k.ljust(width)} | {v} |" for k, v in rows]
    for h, v in results:
        if not v.ok:
            lines.append(f"FAIL seed {h.seed} ({h.path}): {'; '.join(v.problems)}")
            lines.append(f"  replay: {replay(h)}")
    return "\n".join(lines)


def load_run(rig: Rig, files: int, *, instances: str = "processes") -> str:
    h = History(seed=-1, path="function", records_per_call=10, max_concurrency=2)
    start = len(rig.lines)
    tokens = rig.tokens()
    rig.instances_for(4 if instances == "processes" else 0)  # started before the clock runs
    took = run_function_history(rig, h, random.Random(1), files=files, instances=instances)
    h.logs += rig.lines[start:]
    h.tokens = sorted(rig.tokens() - tokens)
    v = check(h)
    instances = f"{instances}: {len(h.instance_pids)} distinct" if h.instance_pids else instances
    per_minute = files / took * 60
    return (
        f"load: {files} files dropped at once, 4 Function instances ({instances}) + timer sweep, "
        f"every file delivered twice: "
        f"{took:.1f} s, {per_minute:.0f} files/min; lost {v.lost}, doubled beyond bound {v.doubled_beyond}, "
        f"in-flight duplicates {v.in_flight_duplicates}; {'OK' if v.ok else 'FAIL: ' + '; '.join(v.problems)}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", default="0-29", help="e.g. 0-299 or 5,17")
    parser.add_argument("--paths", default="cli,function")
    parser.add_argument("--load", type=int, default=0, help="also a load run with this many files")
    parser.add_argument("--verbose", action="store_true")
    parser.add_argument("--no-lease-breaks", action="store_true", help="leave out the broken-lease fault")
    parser.add_argument(
        "--instances",
        choices=["processes", "threads"],
        default="processes",
        help="the Function's concurrent invokers: separate processes (default, as separate instances) or threads",
    )
    args = parser.parse_args(argv)
    paths = tuple(args.paths.split(","))
    results: list[tuple[History, Verdict]] = []
    with tempfile.TemporaryDirectory() as tmp:
        rig = Rig(Path(tmp), function=any(p.startswith("function") for p in paths) or args.load > 0)
        try:
            started = time.monotonic()
            for seed in parse_seeds(args.seeds) if args.seeds else []:
                h, v = run_history(
                    rig, seed, paths=paths, lease_breaks=not args.no_lease_breaks, instances=args.instances
                )
                results.append((h, v))
                if args.verbose or not v.ok:
                    print(f"seed {seed} {h.path} rpc={h.records_per_call} conc={h.max_concurrency} "
                          f"faults={dict(h.faults)} -> {'ok' if v.ok else v.problems}", flush=True)  # fmt: skip
            if results:
                print(table(results, time.monotonic() - started))
            if args.load:
                print(load_run(rig, args.load, instances=args.instances))
        finally:
            rig.close()
    return 0 if all(v.ok for _, v in results) else 1


if __name__ == "__main__":
    sys.exit(main())
