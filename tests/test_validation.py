"""Each validation check with a failing and a passing case; the documentation's samples."""

from __future__ import annotations

import io
import json

import pytest

from hrconnector_core.csvreader import CsvFile, inspect_stream
from hrconnector_core.errors import ConfigurationError, InputFileError
from hrconnector_core.mapping import Mapping, load_mapping
from hrconnector_core.pipeline import LocalFileSource, Policy, UploadOptions, default_mapping, run_upload
from hrconnector_core.report import RejectedRowsWriter, RunReport
from hrconnector_core.validation import RowValidator, date_hint

from .conftest import SAMPLES

D = "2024-04-23T15:18:02.4675041+05:30"


def check(text: str, mapping: Mapping | None = None, *, encoding: str = "utf-8"):
    """Validate a file's text; returns (valid rows, report)."""
    data = text.encode(encoding)
    facts = inspect_stream(io.BytesIO(data))
    csv_file = CsvFile(io.BytesIO(data), csv_format=facts.format)
    report = RunReport(file_name="t.csv", job_id="j")
    mapping = mapping or default_mapping(csv_file.header)
    validator = RowValidator(csv_file.header, mapping)
    rows = list(validator.validate_rows(csv_file.records(), report))
    return rows, report


def codes(report: RunReport) -> list[tuple[int | None, str | None, str]]:
    return [(i.row, i.column, i.code) for i in report.issues]


# -- row checks: one failing and one passing case each -----------------------------------------


@pytest.mark.parametrize(
    ("email", "ok"),
    [
        ("sarad@contoso.com", True),
        ("first.last+tag@sub.contoso.co.uk", True),
        ("user@contoso", False),
        ("no-at-sign.contoso.com", False),
        ("two@@contoso.com", False),
        ("space in@contoso.com", False),
        ("a@b.c", True),
        ("", False),
    ],
)
def test_email_address_syntax(email, ok):
    rows, report = check(f"EmailAddress,EffectiveDate\r\n{email},{D}\r\n")
    assert bool(rows) is ok
    if not ok:
        assert codes(report)[0][2] in ("invalid-email", "required-missing")


@pytest.mark.parametrize(
    "value",
    [
        "2019-04-23T15:18:02.4675041+05:30",
        "2019-04-24T09:15:49Z",
        "2019-04-29T15:18:02.7117540",
        "2024-02-29T00:00:00",
        "2024-01-01T23:59:59.1-08:00",
    ],
)
def test_documented_iso_dates_pass(value):
    rows, report = check(f"EmailAddress,EffectiveDate\r\na@x.com,{value}\r\n")
    assert rows and not report.issues


@pytest.mark.parametrize(
    ("value", "hint"),
    [
        ("23/04/2019", "dd/mm/yyyy (the first number cannot be a month)"),
        ("2019-04-23", "a date without a time"),
        ("2019-04-23 15:18:02", "a space instead of the T"),
        ("23.04.2019", "dd.mm.yyyy"),
        ("43578", "an Excel serial date"),
        ("23-Apr-2019", "dd-Mon-yyyy"),
        ("April 23, 2019", "Month dd, yyyy"),
        ("2019-02-30T00:00:00", "that day does not exist in that month"),
        ("2019-04-23T25:00:00", ""),
        ("2019-04-23T15:18:02.12345678Z", ""),
        ("soon", ""),
    ],
)
def test_other_date_formats_fail_with_a_hint_and_without_the_value(value, hint):
    rows, report = check(f'EmailAddress,EffectiveDate\r\na@x.com,"{value}"\r\n')
    assert not rows
    issue = report.issues[0]
    assert (issue.row, issue.column, issue.code) == (2, "EffectiveDate", "invalid-date")
    expected = date_hint(value, "EffectiveDate")
    if hint.startswith("that day"):
        assert expected == f"; {hint}"  # an impossible calendar date is named as such
    elif hint:
        assert expected.startswith(f"; it looks like {hint}")
    else:
        assert expected == ""  # no guess at all when nothing fits
    assert issue.message.endswith(expected) and ("it looks like" in issue.message) is expected.startswith("; it looks")
    assert value not in issue.message


def test_required_value_empty():
    rows, report = check(f"EmailAddress,ResignationDate,LastWorkingDate\r\na@x.com,{D},\r\nb@x.com,{D},{D}\r\n")
    assert [r for r, _ in rows] == [3]
    assert codes(report) == [(2, "LastWorkingDate", "required-missing")]


@pytest.mark.parametrize(("column", "limit"), [("Remarks", 200), ("Rating", 25)])
def test_length_limits(column, limit):
    header = f"EmailAddress,EffectiveDate,{column}"
    rows, report = check(f"{header}\r\na@x.com,{D},{'x' * limit}\r\nb@x.com,{D},{'y' * (limit + 1)}\r\n")
    assert [r for r, _ in rows] == [2]
    assert codes(report) == [(3, column, "too-long")]
    assert "y" * 5 not in report.issues[0].message


def test_unknown_scenario_value():
    text = (
        f"HRScenario,EmailAddress,EffectiveDate\r\nPerformance review,a@x.com,{D}\r\n"
        f"Promotion,b@x.com,{D}\r\n,c@x.com,{D}\r\nPERFORMANCE REVIEW,d@x.com,{D}\r\n"
    )
    rows, report = check(text)
    assert [r for r, _ in rows] == [2, 5]  # values match case-insensitively
    assert codes(report) == [(3, "HRScenario", "unknown-scenario"), (4, "HRScenario", "unknown-scenario")]
    assert "Promotion" not in report.issues[0].message


def test_more_fields_than_the_header_is_an_error_and_fewer_a_padded_warning():
    rows, report = check(f"EmailAddress,EffectiveDate,Rating\r\na@x.com,{D}\r\nb@x.com,{D},3,x\r\n")
    assert rows == [(2, ["a@x.com", D, ""])]
    assert codes(report) == [(2, "Rating", "too-few-fields"), (3, None, "too-many-fields")]


def test_duplicate_rows_are_a_warning_naming_the_first():
    rows, report = check(f"EmailAddress,EffectiveDate\r\na@x.com,{D}\r\nb@x.com,{D}\r\na@x.com,{D}\r\n")
    assert len(rows) == 3
    assert codes(report) == [(4, None, "duplicate-row")] and "row 2" in report.issues[0].message


def test_a_value_in_another_scenarios_column_warns_and_points_to_the_empty_one():
    text = (
        f"HRScenario,EmailAddress,ResignationDate,LastWorkingDate,EffectiveDate\r\n"
        f"Job level change,a@x.com,{D},,\r\nJob level change,b@x.com,,,{D}\r\n"
    )
    rows, report = check(text)
    assert [r for r, _ in rows] == [3]
    assert codes(report) == [
        (2, "ResignationDate", "value-in-other-scenario-column"),
        (2, "EffectiveDate", "required-missing"),
    ]
    assert "EffectiveDate" in report.issues[0].message


def test_last_working_date_before_resignation_is_a_warning():
    text = (
        "EmailAddress,ResignationDate,LastWorkingDate\r\n"
        "a@x.com,2024-05-10T00:00:00Z,2024-05-01T00:00:00Z\r\nb@x.com,2024-05-01T00:00:00Z,2024-05-10T00:00:00Z\r\n"
    )
    rows, report = check(text)
    assert len(rows) == 2
    assert codes(report) == [(2, "LastWorkingDate", "last-working-before-resignation")]


def test_blank_lines_are_skipped_and_counted():
    rows, report = check(f"EmailAddress,EffectiveDate\r\n\r\na@x.com,{D}\r\n,\r\n\r\n  , \t\r\n")
    assert [r for r, _ in rows] == [3]
    assert report.rows.skipped == 4 and report.issue_counts == {"blank-row": 4}


def test_a_mapping_date_format_converts_to_iso_and_rejects_what_does_not_match():
    mapping = Mapping.from_dict(
        {
            "scenarios": [
                {
                    "scenario": "resignation",
                    "columns": {"EmailAddress": "Mail", "ResignationDate": "Notice", "LastWorkingDate": "Last day"},
                }
            ],
            "date_formats": {"notice": "%d/%m/%Y", "Last Day": "%d/%m/%Y %H:%M"},
        }
    )
    rows, report = check(
        "Mail,Notice,Last day\r\na@x.com,23/04/2019,30/04/2019 17:30\r\nb@x.com,2019-04-23,1/5/2019 9:00\r\n", mapping
    )
    assert rows == [(2, ["a@x.com", "2019-04-23T00:00:00", "2019-04-30T17:30:00"])]
    assert codes(report) == [(3, "Notice", "invalid-date")]


# -- file-level checks --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "no header"),
        ("EmailAddress,Effective Date\r\na@x.com,x\r\n", "closest header: 'Effective Date'"),
        ("EmailAddress,EffectiveDate,emailaddress\r\n", "more than once: EmailAddress, emailaddress"),
    ],
)
def test_file_level_problems_stop_before_any_row(text, message):
    with pytest.raises(InputFileError, match=message):
        check(text)


def test_a_mapped_column_missing_names_the_closest_header():
    mapping = Mapping.from_dict(
        {
            "scenarios": [
                {"scenario": "performance_review", "columns": {"EmailAddress": "UPN", "EffectiveDate": "Review date"}}
            ]
        }
    )
    with pytest.raises(InputFileError, match=r"'Review date'.*closest header is 'Review_Date'"):
        check("UPN,Review_Date\r\n", mapping)


def test_no_data_rows_and_an_unreadable_encoding_are_file_errors(tmp_path):
    empty = tmp_path / "empty.csv"
    empty.write_text("EmailAddress,EffectiveDate\r\n\r\n")
    report = run_upload(LocalFileSource(empty), UploadOptions(job_id="j", dry_run=True), client=None, store=None)
    assert report.error == "the file has a header but no data rows"
    binary = tmp_path / "binary.csv"
    binary.write_bytes(b"EmailAddress,EffectiveDate\r\n\x81\x8d\x90\xff\xfe\x00\x00")
    report = run_upload(LocalFileSource(binary), UploadOptions(job_id="j", dry_run=True), client=None, store=None)
    assert report.error is not None and "encoding is not readable" in report.error
    assert report.status == "failed"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"scenarios": []}, "non-empty list"),
        ({"scenarios": [{"scenario": "nope", "columns": {}}]}, "must be one of"),
        ({"scenarios": [{"scenario": "resignation", "columns": {"EmailAddress": "E"}}]}, "needs a column for"),
        (
            {
                "scenarios": [
                    {"scenario": "resignation", "columns": {}},
                    {"scenario": "performance_review", "columns": {}},
                ]
            },
            "scenario_column",
        ),
        ({"scenarios": [], "colour": 1}, "unknown key"),
    ],
)
def test_bad_mapping_files_are_configuration_errors(data, message):
    with pytest.raises(ConfigurationError, match=message):
        Mapping.from_dict(data)


# -- the documentation's samples ----------------------------------------------------------------

SAMPLE_OUTCOMES = {
    # file: (scenario(s), valid, rejected, issue counts)
    "resignation.csv": ({"Resignation"}, 2, 0, {}),
    "job-level-change.csv": ({"Job level change"}, 2, 0, {}),
    "performance-review.csv": ({"Performance review"}, 2, 0, {"too-few-fields": 1}),
    "performance-improvement-plan.csv": ({"Performance improvement plan"}, 2, 0, {"too-few-fields": 1}),
    "employee-profile.csv": ({"Employee profile"}, 1, 0, {}),
    # The multi-scenario sample puts the job level change dates in ResignationDate: those two rows
    # lack their EffectiveDate and are set aside, with a pointer to the column the date sits in.
    "multi-scenario.csv": (
        {"Resignation", "Job level change", "Performance review", "Performance improvement plan"},
        6,
        2,
        {"too-few-fields": 4, "required-missing": 2, "value-in-other-scenario-column": 2},
    ),
}


@pytest.mark.parametrize("name", sorted(SAMPLE_OUTCOMES))
def test_documentation_samples(name, tmp_path):
    scenarios, valid, rejected, issue_counts = SAMPLE_OUTCOMES[name]
    writer = RejectedRowsWriter(tmp_path / "rejected.csv")
    report = run_upload(
        LocalFileSource(SAMPLES / name),
        UploadOptions(job_id="j", dry_run=True),
        client=None,
        store=None,
        rejected_rows=writer,
    )
    assert report.error is None
    assert set(report.scenarios) == scenarios
    assert (report.rows.planned, report.rows.rejected) == (valid, rejected)
    assert dict(report.issue_counts) == issue_counts
    assert report.rows.balanced
    assert writer.count == rejected
    if rejected:
        lines = (tmp_path / "rejected.csv").read_text().splitlines()
        assert lines[0].startswith("RejectedRow,RejectedReasons,HRScenario,EmailAddress")
        assert [line.split(",")[0] for line in lines[1:]] == ["4", "5"]


def test_every_sample_has_an_expected_outcome():
    assert {p.name for p in SAMPLES.glob("*.csv")} == set(SAMPLE_OUTCOMES)


def test_reject_file_policy_uploads_nothing_and_lists_the_rows(tmp_path):
    writer = RejectedRowsWriter(tmp_path / "rejected.csv")
    report = run_upload(
        LocalFileSource(SAMPLES / "multi-scenario.csv"),
        UploadOptions(job_id="j", policy=Policy.REJECT_FILE),
        client=None,
        store=None,
        rejected_rows=writer,
    )
    assert report.status == "failed" and report.error is not None and "nothing was uploaded" in report.error
    assert (report.rows.uploaded, report.rows.rejected, report.rows.not_uploaded) == (0, 2, 6)
    assert report.rows.balanced and writer.count == 2


def test_the_example_mappings_load_and_fit_their_samples():
    examples = sorted((SAMPLES / "mappings").glob("*.json"))
    assert [p.name for p in examples] == ["multi-scenario.json", "resignation-own-columns.json"]
    for path in examples:
        Mapping.from_dict(json.loads(path.read_text()), source=path.name)
    own = load_mapping(SAMPLES / "mappings" / "resignation-own-columns.json")
    report = run_upload(
        LocalFileSource(SAMPLES / "mappings" / "resignation-own-columns.csv"),
        UploadOptions(job_id="j", dry_run=True, mapping=own),
        client=None,
        store=None,
    )
    assert (report.status, report.rows.planned, report.encoding, report.delimiter) == ("planned", 2, "utf-8-sig", ";")
    multi = load_mapping(SAMPLES / "mappings" / "multi-scenario.json")
    report = run_upload(
        LocalFileSource(SAMPLES / "multi-scenario.csv"),
        UploadOptions(job_id="j", dry_run=True, mapping=multi),
        client=None,
        store=None,
    )
    assert (report.rows.planned, report.rows.rejected) == (6, 2)


def test_digits_other_than_0_to_9_are_no_iso_date():
    rows, report = check("EmailAddress,EffectiveDate\r\na@x.com,٢٠٢٤-04-23T15:18:02Z\r\n")
    assert not rows and codes(report) == [(2, "EffectiveDate", "invalid-date")]


def test_the_fast_path_and_the_detailed_checks_agree():
    """Days 29-31 and surrounding spaces take the detailed path; the outcome is the same."""
    text = (
        "EmailAddress,EffectiveDate,Rating\r\n"
        "a@x.com,2024-02-29T00:00:00Z,1\r\n"  # leap day: detailed path, valid
        "b@x.com,2023-02-29T00:00:00Z,1\r\n"  # not a date: detailed path, invalid
        " c@x.com ,2024-01-31T00:00:00Z ,1\r\n"  # spaces trimmed: valid, normalised
        "d@x.com,2024-01-28T00:00:00Z,1\r\n"
    )  # fast path
    rows, report = check(text)
    assert rows == [
        (2, ["a@x.com", "2024-02-29T00:00:00Z", "1"]),
        (4, ["c@x.com", "2024-01-31T00:00:00Z", "1"]),
        (5, ["d@x.com", "2024-01-28T00:00:00Z", "1"]),
    ]
    assert codes(report) == [(3, "EffectiveDate", "invalid-date")]


@pytest.mark.parametrize("fast_path", [True, False])
def test_rows_passed_on_carry_the_configured_scenario_value_and_duplicates_are_judged_as_read(fast_path: bool):
    """Validation matches a spelling to its scenario; the row passed on carries the mapping's
    spelling, whichever path passed it (a spelling with a control character is never cached)."""
    header = ["HRScenario", "EmailAddress", "EffectiveDate", "Remarks", "Rating"]
    records = [
        (2, ["performance REVIEW ", "a@contoso.com", "2024-01-30T00:00:00Z", "ok", "3"]),
        (3, ["\x85Performance review", "a@contoso.com", "2024-01-30T00:00:00Z", "ok", "3"]),
        (4, ["Performance review", "a@contoso.com", " 2024-01-30T00:00:00Z", "ok", "3"]),  # trimmed: detailed
        (5, ["performance REVIEW ", "a@contoso.com", "2024-01-30T00:00:00Z", "ok", "3"]),
    ]
    report = RunReport(file_name="t.csv", job_id="j")
    validator = RowValidator(header, default_mapping(header), fast_path=fast_path)
    rows = list(validator.validate_rows(records, report))
    expected = [(n, "Performance review", "2024-01-30T00:00:00Z") for n in range(2, 6)]
    assert [(n, f[0], f[2]) for n, f in rows] == expected
    assert codes(report) == [(5, None, "duplicate-row")]  # row 5 is row 2 as read; rows 3 and 4 differ
    assert report.issues[0].message == "same values as row 2"
