"""Files the way Excel and HR systems save them: sep= lines, Windows-1252 with semicolons, and the
rejected-rows round trip (open, fix, drop again) in the input's own encoding and delimiter."""

from __future__ import annotations

import codecs
import csv
import io

from hrconnector_core.pipeline import LocalFileSource, UploadOptions, run_upload
from hrconnector_core.report import RejectedRowsWriter

HEADER = ["EmailAddress", "ResignationDate", "LastWorkingDate"]


def excel_reads(data: bytes, encoding: str) -> list[list[str]]:
    """As Excel opens a CSV: a sep= first line names the delimiter and is no row."""
    text = data.decode(encoding)
    first, _, rest = text.partition("\r\n")
    assert first.startswith("sep="), first
    return list(csv.reader(io.StringIO(rest, newline=""), delimiter=first[4:]))


def test_sep_line_windows_1252_semicolons_round_trip(tmp_path, emulator, job, make_client):
    lines = [
        "sep=;",
        ";".join(HEADER),
        "jos\u00e9@contoso.com;2019-04-23T15:18:02;2019-04-29T00:00:00",
        "ren\u00e9e@contoso;2019-04-23T15:18:02;2019-04-29T00:00:00",  # no domain: rejected
        "m\u00fcller@contoso.com;=HYPERLINK(1);2019-04-29T00:00:00",  # a formula where a date goes
    ]
    path = tmp_path / "export.csv"
    path.write_bytes(("\r\n".join(lines) + "\r\n").encode("cp1252"))
    rejected = RejectedRowsWriter(tmp_path / "rejected.csv")
    report = run_upload(
        LocalFileSource(path), UploadOptions(job_id=job), client=make_client(job), store=None, rejected_rows=rejected
    )
    assert (report.encoding, report.delimiter) == ("cp1252", ";")
    assert emulator.state.uploads[job][0].header == HEADER  # the sep= line is no header
    assert emulator.state.rows(job) == [["jos\u00e9@contoso.com", "2019-04-23T15:18:02", "2019-04-29T00:00:00"]]
    assert sorted(i.row for i in report.issues) == [3, 4]  # Excel's numbers: the header is row 1
    data = (tmp_path / "rejected.csv").read_bytes()
    back = excel_reads(data, "cp1252")
    assert back[0] == ["RejectedRow", "RejectedReasons", *HEADER]
    assert [r[0] for r in back[1:]] == ["3", "4"]
    assert back[1][2] == "ren\u00e9e@contoso"  # not renÃ©e: the input's own encoding
    assert back[2][3] == "'=HYPERLINK(1)"  # still neutralised

    # The admin fixes both rows in Excel and saves (same format), then drops the file again.
    fixed = [
        back[0],
        [*back[1][:2], "ren\u00e9e@contoso.com", *back[1][3:]],
        [*back[2][:3], "2019-04-25T00:00:00", back[2][4]],
    ]
    buffer = io.StringIO()
    buffer.write("sep=;\r\n")
    csv.writer(buffer, delimiter=";", lineterminator="\r\n").writerows(fixed)
    again = tmp_path / "rejected-fixed.csv"
    again.write_bytes(buffer.getvalue().encode("cp1252"))
    second = run_upload(LocalFileSource(again), UploadOptions(job_id=job), client=make_client(job), store=None)
    assert second.status == "succeeded", (second.error, [(i.row, i.code) for i in second.issues])
    # (the two leading columns go along as unmapped columns, as they always have)
    assert [r[2:] for r in emulator.state.rows(job)[1:]] == [
        ["ren\u00e9e@contoso.com", "2019-04-23T15:18:02", "2019-04-29T00:00:00"],
        ["m\u00fcller@contoso.com", "2019-04-25T00:00:00", "2019-04-29T00:00:00"],
    ]


def test_rejected_rows_keep_a_utf8_bom_and_tabs(tmp_path):
    text = "\t".join(HEADER) + "\r\n" + "not-an-email\t2019-04-23T15:18:02\t2019-04-29T00:00:00\r\n"
    path = tmp_path / "export.txt"
    path.write_bytes(codecs.BOM_UTF8 + text.encode())
    rejected = RejectedRowsWriter(tmp_path / "rejected.csv")
    report = run_upload(
        LocalFileSource(path), UploadOptions(job_id="j", dry_run=True), client=None, store=None, rejected_rows=rejected
    )
    assert report.rows.rejected == 1
    data = (tmp_path / "rejected.csv").read_bytes()
    assert data.startswith(codecs.BOM_UTF8)
    back = list(csv.reader(io.StringIO(data.decode("utf-8-sig"), newline=""), delimiter="\t"))
    assert back[1][0] == "2" and back[1][2] == "not-an-email"
