"""The fast path never gives another verdict than the detailed checks: property tests.

Rows are drawn for every scenario from the full Unicode range, control characters and the fast
path's own separator included, and fed to two validators: the normal one and one with the fast
path off. Every row passed on, every issue (row, column, code, message) and every count must be
the same.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hrconnector_core.csvreader import Record
from hrconnector_core.mapping import Mapping
from hrconnector_core.pipeline import default_mapping
from hrconnector_core.schema import SCENARIOS, Kind
from hrconnector_core.validation import (
    _DAY,
    _EMAIL_PATTERN,
    _FAST_KIND,
    SEP,
    Issue,
    RowSink,
    RowValidator,
    _before_iso,
    _before_parsed,
)

from .test_validation import check, codes

EVENTS = ["HRScenario", "EmailAddress", "Team", "ResignationDate", "LastWorkingDate", "EffectiveDate"]
EVENTS += ["Remarks", "Rating", "OldLevel", "NewLevel", "Extra1", "Extra2"]  # Team, Extra*: read by no check
PROFILE = ["EmailAddress"] + [f.name for f in SCENARIOS["employee_profile"].fields[1:]]
RESIGNATION = ["EmailAddress", "ResignationDate", "LastWorkingDate"]
REVIEW = ["EmailAddress", "EffectiveDate", "Remarks", "Rating"]
# The scenario column first (the fast patterns start after its value) and elsewhere (they match it).
EVENTS_LATER = [*EVENTS[1:4], "HRScenario", *EVENTS[4:]]
HEADERS = {"events": EVENTS, "events-later": EVENTS_LATER, "profile": PROFILE, "resignation": RESIGNATION}
HEADERS["review"] = REVIEW
TITLES = [s.title for k, s in SCENARIOS.items() if k != "employee_profile"]
CONTROLS = [chr(c) for c in (*range(0x20), *range(0x7F, 0xA0))]


class Recorder(RowSink):
    """Every call, in order, with the issue's whole content."""

    def __init__(self) -> None:
        self.events: list[tuple[object, ...]] = []

    def skipped(self, issue: Issue) -> None:
        self.events.append(("skipped", issue))

    def rejected(self, record: Record, issues: list[Issue]) -> None:
        self.events.append(("rejected", record[0], tuple(record[1]), tuple(issues)))

    def warned(self, issue: Issue) -> None:
        self.events.append(("warned", issue))


def run(header: list[str], records: list[Record], *, fast_path: bool):
    validator = RowValidator(header, default_mapping(header), fast_path=fast_path)
    sink = Recorder()
    rows = [(row, list(fields)) for row, fields in validator.validate_rows(records, sink)]
    return rows, sink.events, validator.scenario_counts()


# -- values --------------------------------------------------------------------------------------

any_text = st.text(st.characters(codec=None), max_size=12)  # every code point but surrogates
specials = st.sampled_from([SEP, "\n", "\r\n", "\t", " ", "\x00", "\x85", "\u3000", "\xa0", "\u2028", "٢"])
blank = st.sampled_from(["", " ", "  ", "\t", "\u3000", "\x1f", " \x0b"])
local = st.text("abcXYZ019._+-'é\x01", min_size=1, max_size=6)
email = st.builds(
    lambda a, d, s: f"{a}@{d}{s}",
    local,
    st.sampled_from(["x", "b-c", "ex.am"]),
    st.sampled_from([".co", ".com", "", ".c"]),
)
fraction = (
    st.integers(0, 8)
    .flatmap(lambda n: st.text("0123456789", min_size=n, max_size=n))
    .map(lambda d: "." + d if d else "")
)
offset = st.sampled_from(["", "Z", "+05:30", "-08:00", "+00:00", "+14:00", "+15:00", "-1:00"])
date = st.builds(
    lambda y, m, d, h, mi, s, f, o, sep: f"{y:04d}-{m:02d}-{d:02d}{sep}{h:02d}:{mi:02d}:{s:02d}{f}{o}",
    st.sampled_from([2019, 2023, 2024, 1900, 2000]),
    st.integers(0, 13),
    st.integers(0, 32),
    st.integers(0, 24),
    st.integers(0, 60),
    st.integers(0, 60),
    fraction,
    offset,
    st.sampled_from(["T", "T", "T", " "]),
)
text = st.one_of(st.text("abc ,\"'x", max_size=8), st.sampled_from(["x" * 25, "x" * 26, "y" * 200, "y" * 201, "3 Met"]))


def noisy(valid: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    """Mostly values of the right kind; sometimes anything, with spaces or control characters."""
    return st.one_of(
        valid,
        valid,
        valid,
        blank,
        any_text,
        st.tuples(valid, specials, st.sampled_from(["", "x", "a@b.co"])).map("".join),
        st.tuples(specials, valid).map("".join),
    )


def value_for(column: str, scenario_key: str | None) -> st.SearchStrategy[str]:
    if column == "HRScenario":
        return st.one_of(
            st.sampled_from([*TITLES, "Promotion", ""]),
            st.sampled_from(TITLES).map(str.upper),
            st.sampled_from(TITLES).map(lambda t: f" {t} "),
        )
    kind = Kind.TEXT
    for scenario in SCENARIOS.values():
        for data_field in scenario.fields:
            if data_field.name == column:
                kind = data_field.kind
    own = scenario_key is None or any(f.name == column for f in SCENARIOS[scenario_key].fields)
    if not own:
        return st.one_of(st.just(""), st.just(""), blank, date, any_text)  # another scenario's column
    if kind is Kind.EMAIL:
        return noisy(email)
    if kind is Kind.DATE:
        return noisy(date)
    return noisy(text)


@st.composite
def rows(draw: st.DrawFn, header: list[str]) -> list[str]:
    key = None
    if "HRScenario" in header:
        key = draw(st.sampled_from([k for k in SCENARIOS if k != "employee_profile"]))
    fields = [draw(value_for(column, key)) for column in header]
    if key is not None and draw(st.booleans()):
        fields[header.index("HRScenario")] = SCENARIOS[key].title
    if draw(st.integers(0, 2)) == 0:  # move a field boundary: two fields in one, joined by a control
        j = draw(st.integers(0, len(fields) - 2))  # character, and another field cut in two
        merged = [*fields[:j], fields[j] + draw(st.sampled_from([SEP, SEP, *CONTROLS])) + fields[j + 1]]
        merged += fields[j + 2 :]
        m = draw(st.integers(0, len(merged) - 1))
        q = draw(st.integers(0, len(merged[m])))
        fields = [*merged[:m], merged[m][:q], merged[m][q:], *merged[m + 1 :]]
    if draw(st.integers(0, 9)) == 0:
        fields = fields[:-1] if draw(st.booleans()) else [*fields, draw(st.sampled_from(["", "x"]))]
    return fields


@st.composite
def files(draw: st.DrawFn) -> tuple[list[str], list[Record]]:
    name = draw(st.sampled_from(sorted(HEADERS)))
    header = HEADERS[name]
    body = draw(st.lists(rows(header), min_size=1, max_size=12))
    if draw(st.booleans()):
        body.append(list(body[0]))  # a duplicate
    return header, [(n, fields) for n, fields in enumerate(body, start=2)]


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(files())
def test_fast_and_detailed_verdicts_agree_issue_for_issue(data):
    header, records = data
    fast = run(header, [(n, list(f)) for n, f in records], fast_path=True)
    detailed = run(header, [(n, list(f)) for n, f in records], fast_path=False)
    assert fast == detailed


def test_the_fast_path_accepts_the_common_rows_of_every_scenario():
    """So that the property above compares two paths, not one path with itself."""
    d1, d2 = "2024-04-23T15:18:02.4675041+05:30", "2024-04-30T17:00:00.5+05:30"
    samples = {
        "Resignation": ["Resignation", "a@x.com", "", d1, d2, "", "", "", "", "", "", ""],
        "Job level change": ["Job level change", "a@x.com", "t", "", "", d1, 'ok, "so"', "", "L1", "L2", "", ""],
        "Performance review": ["Performance review", "a@x.com", "", "", "", d1, "fine", "3 Met", "", "", "", "e"],
        "Performance improvement plan": [
            "Performance improvement plan",
            "a@x.com",
            "",
            "",
            "",
            d1,
            "",
            "2",
            "",
            "",
            "",
            "",
        ],
    }
    validator = RowValidator(EVENTS, default_mapping(EVENTS))
    for title, fields in samples.items():
        plan = validator._plans[title.casefold()]
        # the scenario is the first column: the pattern starts after it
        assert plan.fast is not None and plan.fast(SEP.join(fields), len(title) + 1), title
    profile = RowValidator(PROFILE, default_mapping(PROFILE))
    fields = ["a@x.com", "Ann", "Lee", "1 Main St", "", "Oslo", "", "0150", "NO", "HR", "Full", "Clerk"]
    assert profile._single is not None and profile._single.fast is not None
    assert profile._single.fast(SEP.join(fields), 0)


def test_a_field_containing_the_separator_does_not_move_a_field_boundary():
    """The issue's row: the e-mail and the date are both invalid; the fast path once passed it."""
    header = "EmailAddress,ResignationDate,LastWorkingDate\r\n"
    rows, report = check(header + "not-an-email,a@b.co\x1f2019-04-23T15:18:02Z,2019-04-28T15:18:02Z\r\n")
    assert rows == []
    assert codes(report) == [(2, "EmailAddress", "invalid-email"), (2, "ResignationDate", "invalid-date")]
    assert report.rows.rejected == 1 and report.rows.planned == 0


def test_a_control_character_in_a_text_field_is_decided_by_the_detailed_checks():
    """Line breaks in remarks are allowed (detailed path); in an e-mail address they are not."""
    text = (
        "EmailAddress,EffectiveDate,Remarks\r\n"
        'a@x.com,2024-01-30T00:00:00Z,"two\nlines"\r\n'
        "b\x01@x.com,2024-01-30T00:00:00Z,ok\r\n"
    )
    rows, report = check(text)
    assert rows == [(2, ["a@x.com", "2024-01-30T00:00:00Z", "two\nlines"])]
    assert codes(report) == [(3, "EmailAddress", "invalid-email")]


def test_rows_that_differ_only_where_a_field_holds_the_separator_are_no_duplicates():
    validator = RowValidator(["Name", "Note"], None)
    sink = Recorder()
    out = list(validator.validate_rows([(2, ["a\x1fb", "c"]), (3, ["a", "b\x1fc"])], sink))
    assert len(out) == 2 and sink.events == []


# -- the resignation order: text comparison against parsing --------------------------------------

offsets = st.sampled_from([None, timezone.utc, timezone(timedelta(hours=5, minutes=30)), timezone(-timedelta(hours=8))])


def iso(moment: datetime, ticks: int, digits: int, zone: timezone | None, z: bool) -> str:
    """moment (whole seconds) with `digits` of the 7-digit fraction `ticks`, in `zone`."""
    text = moment.replace(tzinfo=None).isoformat(timespec="seconds")
    if digits:
        text += "." + f"{ticks:07d}"[:digits]
    if zone is not None:
        text += "Z" if zone is timezone.utc and z else moment.strftime("%z")[:3] + ":" + moment.strftime("%z")[3:]
    return text


moments = st.builds(
    lambda base, seconds, zone: (base + timedelta(seconds=seconds)).replace(tzinfo=zone),
    st.sampled_from([datetime(2024, 4, 23, 15, 18, 2), datetime(2019, 12, 31, 23, 59, 59)]),
    st.integers(-200_000, 200_000),
    offsets,
)


@st.composite
def stamp(draw: st.DrawFn) -> str:
    moment = draw(moments)
    return iso(moment, draw(st.integers(0, 9_999_999)), draw(st.integers(0, 7)), moment.tzinfo, draw(st.booleans()))


@settings(max_examples=1000, deadline=None)
@given(stamp(), stamp(), st.booleans())
def test_the_date_order_on_text_agrees_with_parsing(a, b, near):
    if near:  # the same second, so that the fraction decides
        b = a[:19] + b[19:]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,7})?(Z|[+-]\d\d:\d\d)?", a)
    assert _before_iso(a, b) == _before_parsed(a, b)
    assert _before_iso(b, a) == _before_parsed(b, a)
    assert not _before_iso(a, a)


def test_the_date_order_examples():
    assert _before_iso("2024-05-01T00:00:00.5+05:30", "2024-05-01T00:00:00.45+05:30") is False
    assert _before_iso("2024-05-01T00:00:00.45+05:30", "2024-05-01T00:00:00.5+05:30") is True
    assert _before_iso("2024-05-01T00:00:00Z", "2024-05-01T00:00:00.1Z") is True  # 'Z' sorts after '.'
    assert _before_iso("2024-05-01T05:29:00+05:30", "2024-05-01T00:00:00Z") is True  # parsed: 23:59 UTC
    assert _before_iso("2024-05-01T00:00:00.1234567Z", "2024-05-01T00:00:00.1234568Z") is True  # 7 digits


# -- from the adversarial review: cases the generators did not reach ------------------------------
def _both(header: list[str], record: list[str], mapping: Mapping | None = None) -> list[list[str]]:
    """The issue codes of one row, fast path and detailed checks (they must agree)."""
    mapping = mapping or default_mapping(header)
    codes_seen = []
    for fast in (True, False):
        sink = Recorder()
        rows = list(RowValidator(header, mapping, fast_path=fast).validate_rows([(2, record)], sink))
        rejected = [issue.code for event in sink.events if event[0] == "rejected" for issue in event[3]]  # type: ignore[attr-defined]
        codes_seen.append(["valid"] if rows else rejected)
    return codes_seen


@pytest.mark.parametrize("day", ["28", "31"])
def test_year_0000_is_no_date_on_either_path(day: str) -> None:
    fast, detailed = _both(["EmailAddress", "EffectiveDate"], ["a@b.co", f"0000-01-{day}T00:00:00Z"])
    assert fast == detailed == ["invalid-date"]


def test_one_column_mapped_to_two_fields_keeps_both_checks() -> None:
    columns = {"EmailAddress": "Mail", "EffectiveDate": "When", "Remarks": "Mail"}
    mapping = Mapping.from_dict({"scenarios": [{"scenario": "performance_review", "columns": columns}]})
    fast, detailed = _both(["Mail", "When"], ["not-an-email", "2024-01-01T00:00:00Z"], mapping)
    assert fast == detailed == ["invalid-email"]


def test_the_scenario_column_read_by_another_scenario_warns_on_every_row_on_both_paths() -> None:
    """The review's case: performance reviews read their remarks from the scenario column, so a
    resignation row has a value in a column only another scenario reads (a warning). The fast
    pattern skipped the first column as the scenario value and lost that warning after row 1."""
    both = {"EmailAddress": "EmailAddress"}
    mapping = Mapping.from_dict(
        {
            "scenario_column": "HRScenario",
            "scenarios": [
                {"scenario": "resignation", "value": "Resignation",
                 "columns": {**both, "ResignationDate": "ResignationDate", "LastWorkingDate": "LastWorkingDate"}},
                {"scenario": "performance_review", "value": "Performance review",
                 "columns": {**both, "EffectiveDate": "EffectiveDate", "Remarks": "HRScenario"}},
            ],
        }
    )  # fmt: skip
    header = ["HRScenario", "EmailAddress", "ResignationDate", "LastWorkingDate", "EffectiveDate"]
    row = ["Resignation", "", "2024-01-01T00:00:00Z", "2024-01-02T00:00:00Z", ""]
    outcomes = []
    for fast in (True, False):
        sink = Recorder()
        records: list[Record] = [(n, [row[0], f"p{n}@b.co", *row[2:]]) for n in (2, 3, 4)]
        passed = list(RowValidator(header, mapping, fast_path=fast).validate_rows(records, sink))
        warnings = [(e[1].row, e[1].code) for e in sink.events if e[0] == "warned"]  # type: ignore[attr-defined]
        outcomes.append((len(passed), warnings))
    assert outcomes[0] == outcomes[1] == (3, [(n, "value-in-other-scenario-column") for n in (2, 3, 4)])


# -- the fast pieces: atomic groups and possessive repeats change no language ---------------------
# The plain (backtracking) forms, as the detailed checks and the documentation state them.
_PLAIN_DATE = (
    rf"(?!0000)\d{{4}}-{_DAY}T(?:[01]\d|2[0-3]):[0-5]\d:[0-5]\d(?:\.\d{{1,7}})?(?:Z|[+-](?:0\d|1[0-4]):[0-5]\d)?"
)
near_dates = st.one_of(
    date,
    st.builds(
        lambda d, cut, extra: d[:cut] + extra + d[cut:], date, st.integers(0, 40), st.sampled_from(list("0.:-+Z9T"))
    ),
    st.text("0123456789-:T.Z+", max_size=36),
)
near_emails = st.one_of(email, st.text("ab.@-_c9é \x1f", max_size=12), st.builds("{}.{}".format, email, local))


@settings(max_examples=600, deadline=None)
@given(near_dates, near_emails, st.sampled_from(["", SEP, SEP + "x", "x"]))
def test_the_fast_pieces_accept_what_the_plain_forms_accept(value_date, value_email, tail):
    fast_date = re.compile(_FAST_KIND[Kind.DATE] + f"(?:{SEP}x)?", re.ASCII).fullmatch
    plain_date = re.compile(_PLAIN_DATE + f"(?:{SEP}x)?", re.ASCII).fullmatch
    assert bool(fast_date(value_date + tail)) == bool(plain_date(value_date + tail))
    fast_email = re.compile(_FAST_KIND[Kind.EMAIL] + f"(?:{SEP}x)?", re.ASCII).fullmatch
    plain_email = re.compile(_EMAIL_PATTERN + f"(?:{SEP}x)?", re.ASCII).fullmatch
    assert bool(fast_email(value_email + tail)) == bool(plain_email(value_email + tail))
