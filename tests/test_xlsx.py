"""Excel workbooks (.xlsx) as input: generated with openpyxl, read back through the one pipeline."""

from __future__ import annotations

import codecs
import csv
import datetime as dt
import io
import subprocess
import zipfile
from pathlib import Path
from typing import Any

import openpyxl
import pytest

from hrconnector_core.checkpoint import LocalCheckpointStore
from hrconnector_core.pipeline import FileChangedError, LocalFileSource, UploadOptions, run_upload
from hrconnector_core.report import RejectedRowsWriter

from .conftest import APP_ID, cli_command, cli_env, upload_args

HEADER: list[object] = ["EmailAddress", "ResignationDate", "LastWorkingDate"]


def workbook(path: Path, sheets: dict[str, list[list[Any]]]) -> Path:
    book = openpyxl.Workbook()
    book.remove(book.active)
    for title, rows in sheets.items():
        sheet = book.create_sheet(title)
        for row in rows:
            sheet.append(row)
    book.save(path)
    return path


def typed_rows() -> list[list[object]]:
    return [
        [*HEADER, "EmployeeNo", "Score", "Ratio", "Active", "Start"],
        ["a@contoso.com", dt.datetime(2019, 4, 23, 15, 18, 2), dt.date(2019, 4, 29), 123456, 4.0, 0.1 + 0.2, True,
         dt.time(9, 30)],
        ["b@contoso.com", dt.datetime(2019, 4, 24), dt.datetime(2019, 4, 30, 8, 0), 123456.0, 1234567.891, 1e-7,
         False, dt.time(9, 30, 15, 500000)],
    ]  # fmt: skip


EXPECTED_TYPED = [
    ["a@contoso.com", "2019-04-23T15:18:02", "2019-04-29T00:00:00", "123456", "4", "0.3", "TRUE", "09:30:00"],
    [
        "b@contoso.com",
        "2019-04-24T00:00:00",
        "2019-04-30T08:00:00",
        "123456",
        "1234567.891",
        "0.0000001",
        "FALSE",
        "09:30:15.500",
    ],  # a time as a datetime's time part: milliseconds, not microseconds
]


def upload(path, job, client, store=None, **options):
    return run_upload(LocalFileSource(path), UploadOptions(job_id=job, **options), client=client, store=store)


def test_typed_cells_arrive_as_iso_dates_and_plain_numbers(tmp_path, emulator, job, make_client):
    path = workbook(tmp_path / "hr.xlsx", {"Export": typed_rows()})
    report = upload(path, job, make_client(job))
    assert report.status == "succeeded", report.error
    assert emulator.state.uploads[job][0].header == typed_rows()[0]
    assert emulator.state.rows(job) == EXPECTED_TYPED
    assert report.encoding == "xlsx" and "read sheet 'Export' of the workbook" in report.notes
    assert report.rows.rows_in == 2 and report.rows.uploaded == 2


def test_rows_numbered_as_excel_shows_them_trailing_empties_ignored(tmp_path, emulator, job, make_client):
    path = tmp_path / "hr.xlsx"
    book = openpyxl.Workbook()
    sheet = book.active
    sheet.title = "HR"
    sheet["A3"], sheet["B3"], sheet["C3"] = HEADER  # two empty rows above the header
    sheet.append(["a@contoso.com", dt.datetime(2019, 4, 23), dt.datetime(2019, 4, 29)])  # row 4
    sheet.append(["not-an-email", dt.datetime(2019, 4, 23), dt.datetime(2019, 4, 29)])  # row 5
    sheet["A7"], sheet["B7"], sheet["C7"] = "c@contoso.com", dt.datetime(2019, 5, 1), dt.datetime(2019, 5, 2)
    # Formatted but empty cells far right and far down (Excel's "used range" grows with them).
    sheet["H7"].number_format = "0.00"
    sheet["E500"].number_format = "yyyy-mm-dd"
    sheet["C800"] = ""
    book.save(path)
    rejected = RejectedRowsWriter(tmp_path / "rejected.csv")
    report = run_upload(
        LocalFileSource(path), UploadOptions(job_id=job), client=make_client(job), store=None, rejected_rows=rejected
    )
    assert emulator.state.uploads[job][0].header == HEADER  # no empty trailing column names
    assert emulator.state.rows(job) == [
        ["a@contoso.com", "2019-04-23T00:00:00", "2019-04-29T00:00:00"],
        ["c@contoso.com", "2019-05-01T00:00:00", "2019-05-02T00:00:00"],
    ]
    assert [i.row for i in report.issues if i.code != "blank-row"] == [5]
    assert [i.row for i in report.issues if i.code == "blank-row"] == [6]  # row 8 on are not rows at all
    assert report.rows.rows_in == 4 and report.rows.skipped == 1 and report.rows.rejected == 1
    # The rejected rows: UTF-8 with a BOM, comma-separated, the Excel row number first.
    data = (tmp_path / "rejected.csv").read_bytes()
    assert data.startswith(codecs.BOM_UTF8)
    back = list(csv.reader(io.StringIO(data.decode("utf-8-sig"), newline="")))
    assert back[0] == ["RejectedRow", "RejectedReasons", *HEADER]
    assert back[1][0] == "5" and back[1][2:] == ["not-an-email", "2019-04-23T00:00:00", "2019-04-29T00:00:00"]


def test_sheet_option_and_first_sheet_by_default(tmp_path, emulator, job, make_client):
    path = workbook(
        tmp_path / "hr.xlsx",
        {
            "Notes": [["Exported by", "HR system"]],
            "Resignations": [HEADER, ["a@contoso.com", dt.datetime(2019, 4, 23), dt.datetime(2019, 4, 29)]],
        },
    )
    first = upload(path, job, None, dry_run=True)
    assert first.error is not None and "required column(s) missing" in first.error  # the first sheet is read
    store = LocalCheckpointStore(tmp_path / "state")
    report = upload(path, job, make_client(job), store, sheet="Resignations")
    assert report.status == "succeeded"
    assert emulator.state.rows(job) == [["a@contoso.com", "2019-04-23T00:00:00", "2019-04-29T00:00:00"]]
    again = upload(path, job, make_client(job), store, sheet="Resignations")
    assert any("already uploaded in full" in n for n in again.notes)  # keyed by the workbook's bytes
    assert len(emulator.state.uploads[job]) == 1
    # Naming the first sheet is the default: the same upload, not a new one.
    first_job = f"{job[:-4]}0001"
    emulator.state.register_job(first_job, APP_ID)
    notes_only = workbook(
        tmp_path / "first.xlsx",
        {"Leavers": [HEADER, ["b@contoso.com", dt.datetime(2019, 4, 23), dt.datetime(2019, 4, 29)]], "Other": [["x"]]},
    )
    upload(notes_only, first_job, make_client(first_job), store)
    named = upload(notes_only, first_job, make_client(first_job), store, sheet="Leavers")
    assert any("already uploaded in full" in n for n in named.notes)
    assert len(emulator.state.uploads[first_job]) == 1
    missing = upload(path, job, None, dry_run=True, sheet="Leavers")
    assert missing.error == "the workbook has no sheet named 'Leavers'; its sheets: 'Notes', 'Resignations'"


class _ChangingSource:
    """A workbook whose bytes differ on the second read (an export still being written)."""

    name = "hr.xlsx"

    def __init__(self, first: bytes, second: bytes) -> None:
        self._reads = [first, second]

    def open(self):
        return io.BytesIO(self._reads.pop(0) if len(self._reads) > 1 else self._reads[0])


def test_workbook_bytes_are_verified_before_parsing(tmp_path, job):
    one = workbook(tmp_path / "a.xlsx", {"S": [HEADER, ["a@contoso.com", dt.datetime(2019, 4, 23), None]]})
    two = workbook(tmp_path / "b.xlsx", {"S": [HEADER, ["b@contoso.com", dt.datetime(2019, 4, 23), None]]})
    source = _ChangingSource(one.read_bytes(), two.read_bytes())
    report = run_upload(source, UploadOptions(job_id=job, dry_run=True), client=None, store=None)
    assert report.error is not None and "the file changed while it was being uploaded" in report.error
    assert report.rows.planned == 0
    assert issubclass(FileChangedError, Exception)


# -- files that are no CSV and no readable workbook: one line each, nothing sent ----------------------
def _cfb(*names: str) -> bytes:
    """The start of an OLE compound file (.xls, encrypted .xlsx) with directory names in it."""
    body = b"".join(n.encode("utf-16-le") + b"\x00\x00" for n in names)
    return b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 504 + body + b"\x00" * 2048


def _zip(**members: str) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, text in members.items():
            archive.writestr(name.replace("__", "/"), text)
    return buffer.getvalue()


def _empty_workbook(path: Path) -> bytes:
    openpyxl.Workbook().save(path)
    return path.read_bytes()


BAD_FILES = {
    "legacy.xls": (_cfb("Root Entry", "Workbook", "SummaryInformation"), "legacy Excel 97-2003 workbook (.xls)"),
    "locked.xlsx": (_cfb("Root Entry", "EncryptionInfo", "EncryptedPackage"), "encrypted (password-protected)"),
    "files.zip": (_zip(readme__txt="hello"), "a ZIP archive, not a CSV file or an Excel workbook"),
    "scan.pdf": (b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n", "a PDF document"),
    "photo.png": (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "a PNG image"),
    "photo.jpg": (b"\xff\xd8\xff\xe0\x00\x10JFIF\x00", "a JPEG image"),
    "anim.gif": (b"GIF89a\x01\x00\x01\x00", "a GIF image"),
    "broken.xlsx": (b"PK\x03\x04" + b"\x00" * 100, "cannot be read as one: it is damaged or incomplete"),
}


@pytest.mark.parametrize("name", sorted(BAD_FILES))
def test_non_csv_files_are_named_in_one_line(tmp_path, name):
    data, expected = BAD_FILES[name]
    path = tmp_path / name
    path.write_bytes(data)
    result = subprocess.run(
        cli_command("validate", str(path)), capture_output=True, text=True, env=cli_env_plain(), check=False
    )
    assert result.returncode == 1
    errors = [line for line in result.stdout.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and expected in errors[0], result.stdout
    assert "nothing was sent" in errors[0]
    assert "Traceback" not in result.stderr and "required column(s) missing" not in result.stdout


def test_workbook_without_data_and_header_without_rows(tmp_path):
    empty = tmp_path / "empty.xlsx"
    _empty_workbook(empty)
    report = run_upload(LocalFileSource(empty), UploadOptions(job_id="j", dry_run=True), client=None, store=None)
    assert report.error == "the workbook's sheet 'Sheet' is empty: there is no header row; nothing was sent"
    header_only = workbook(tmp_path / "header.xlsx", {"S": [HEADER, [None, None, None]]})
    report = run_upload(LocalFileSource(header_only), UploadOptions(job_id="j", dry_run=True), client=None, store=None)
    assert report.error == "the file has a header but no data rows"


def cli_env_plain() -> dict[str, str]:
    import os

    from .conftest import REPO

    return dict(os.environ) | {"PYTHONPATH": str(REPO)}


def test_cli_uploads_a_workbook_and_infers_its_mapping(tmp_path, emulator, job):
    path = workbook(tmp_path / "Leavers.xlsx", {"Leavers": [HEADER, ["a@contoso.com", dt.datetime(2019, 4, 23), None]]})
    infer = subprocess.run(
        cli_command("mapping", "infer", str(path)), capture_output=True, text=True, env=cli_env_plain(), check=False
    )
    assert infer.returncode == 0 and '"scenario": "resignation"' in infer.stdout, infer.stderr
    result = subprocess.run(
        cli_command(*upload_args(emulator, job, path, tmp_path / "state")),
        capture_output=True,
        text=True,
        env=cli_env(emulator),
        check=False,
    )
    assert result.returncode == 1  # LastWorkingDate is empty: that row is rejected...
    assert "Leavers.xlsx: failed" in result.stdout or "Leavers.xlsx: partial" in result.stdout, result.stdout
    assert emulator.state.rows(job) == []
    ok = workbook(
        tmp_path / "Fixed.xlsx",
        {"Leavers": [HEADER, ["a@contoso.com", dt.datetime(2019, 4, 23), dt.datetime(2019, 4, 30)]]},
    )
    result = subprocess.run(
        cli_command(*upload_args(emulator, job, ok, tmp_path / "state")),
        capture_output=True,
        text=True,
        env=cli_env(emulator),
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert emulator.state.rows(job) == [["a@contoso.com", "2019-04-23T00:00:00", "2019-04-30T00:00:00"]]
    assert "Traceback" not in result.stderr


def test_the_function_processes_a_workbook_dropped_into_azurite(tmp_path, emulator, function_env):
    from hrconnector_core.emulator.host import invoke_blob_trigger

    env = function_env
    path = workbook(
        tmp_path / "leavers.xlsx",
        {
            "Leavers": [
                HEADER,
                ["a@contoso.com", dt.datetime(2019, 4, 23, 15, 18, 2), dt.datetime(2019, 4, 30)],
                ["jos\u00e9@contoso", dt.datetime(2019, 4, 24), dt.datetime(2019, 4, 30)],
            ]
        },
    )
    data = path.read_bytes()
    # Excel's owner file beside an open workbook: no input, left where it is, never reported.
    lock = b"\x05alice" + b" " * 48 + b"\x05\x00" + "alice".encode("utf-16-le") + b"\x00" * 100
    env.drop("main/~$leavers.xlsx", lock)
    invoke_blob_trigger("hr_file_arrived", env.settings.containers.incoming, "main/~$leavers.xlsx")
    env.drop("main/leavers.xlsx", data)
    invoke_blob_trigger("hr_file_arrived", env.settings.containers.incoming, "main/leavers.xlsx")
    assert emulator.state.rows(env.job) == [["a@contoso.com", "2019-04-23T15:18:02", "2019-04-30T00:00:00"]]
    names = env.settings.containers
    listing = env.listing()
    assert listing[names.incoming] == ["main/~$leavers.xlsx"]
    assert not [n for n in listing[names.reports] + listing[names.processed] if "~$" in n]
    moved = [n for n in listing[names.processed] if n.endswith("/leavers.xlsx")]  # rejects: reported aside
    assert len(moved) == 1
    assert env.service.processed.get_blob_client(moved[0]).download_blob().readall() == data
    report = env.read_json(names.processed, moved[0] + ".report.json")
    assert report["rows"]["uploaded"] == 1 and report["rows"]["rejected"] == 1
    assert report["format"]["encoding"] == "xlsx"
    assert [entry["FileName"] for entry in emulator.state.log[env.job]] == ["leavers.csv"]  # what is sent is CSV
    rejected = [n for n in listing[names.reports] if n.endswith(".rejected.csv")]
    blob = env.service.reports.get_blob_client(rejected[0]).download_blob().readall()
    assert blob.startswith(codecs.BOM_UTF8)
    back = list(csv.reader(io.StringIO(blob.decode("utf-8-sig"), newline="")))
    assert back[1][0] == "3" and back[1][2] == "jos\u00e9@contoso"
    # The timer's sweep of files no event processed leaves the lock file alone too.
    summary = env.service.run_schedule(dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=1))
    assert [o.status for o in summary.swept] == ["ignored"]
    assert env.listing()[names.incoming] == ["main/~$leavers.xlsx"]
    assert not [n for n in env.listing()[names.failed] if "~$" in n]


def test_many_distinct_texts_read_back_from_the_disk_table(tmp_path, job):
    """More distinct texts than the lookup cache holds, some repeated, one non-BMP and one empty."""
    from hrconnector_core.xlsxreader import WorkbookFile

    data = [[f"user{i}@contoso.com", f"Dept {i % 7}", f"n\u00e4me {i} \U0001f600" if i % 1000 == 0 else f"x{i}"]
            for i in range(6000)]  # fmt: skip
    data[3][2] = " "
    path = workbook(tmp_path / "big.xlsx", {"S": [["EmailAddress", "Dept", "Note"], *data]})
    with path.open("rb") as handle, WorkbookFile(handle) as book:
        got = list(book.records())
    assert [row for row, _ in got] == list(range(2, 6002))
    expected = [[a, b, c] for a, b, c in data]
    expected[3][2] = ""  # a trailing cell of spaces is an empty cell
    assert [fields for _, fields in got] == expected


def test_openpyxl_is_loaded_only_for_workbooks(tmp_path):
    import sys

    from .conftest import REPO, SAMPLES

    script = (
        "import sys; from hrconnector_core.pipeline import LocalFileSource, UploadOptions, run_upload; "
        "r = run_upload(LocalFileSource(sys.argv[1]), UploadOptions(job_id='j', dry_run=True), "
        "client=None, store=None); "
        "print(r.status, 'openpyxl' in sys.modules)"
    )
    csv_run = subprocess.run([sys.executable, "-c", script, str(SAMPLES / "resignation.csv")], capture_output=True,
                             text=True, check=True, cwd=REPO)  # fmt: skip
    assert csv_run.stdout.split() == ["planned", "False"]
    book = workbook(
        tmp_path / "hr.xlsx", {"S": [HEADER, ["a@contoso.com", dt.datetime(2019, 4, 23), dt.datetime(2019, 4, 30)]]}
    )
    xlsx_run = subprocess.run([sys.executable, "-c", script, str(book)], capture_output=True, text=True, check=True,
                              cwd=REPO)  # fmt: skip
    assert xlsx_run.stdout.split() == ["planned", "True"]


# -- from the adversarial review of issue 13 ----------------------------------------------------


def test_formulas_without_a_saved_result_are_set_aside_not_skipped(tmp_path, emulator, job, make_client):
    """openpyxl (and some tools) save formulas without their results: such a row was read as a
    blank line and lost. It is set aside, naming the cell; a formula with a saved result is sent."""
    path = tmp_path / "formulas.xlsx"
    book = openpyxl.Workbook()
    sheet = book.active
    sheet.append(HEADER)
    sheet.append(["a@contoso.com", dt.datetime(2019, 4, 23), "=B2+6"])  # row 2: one formula cell
    sheet.append(['=LOWER("B@CONTOSO.COM")', "=DATE(2019,4,23)", "=DATE(2019,4,29)"])  # row 3: all formulas
    sheet.append(["c@contoso.com", dt.datetime(2019, 4, 23), dt.datetime(2019, 4, 29)])
    book.save(path)
    rejected = RejectedRowsWriter(tmp_path / "rejected.csv")
    report = run_upload(
        LocalFileSource(path), UploadOptions(job_id=job), client=make_client(job), store=None, rejected_rows=rejected
    )
    assert emulator.state.rows(job) == [["c@contoso.com", "2019-04-23T00:00:00", "2019-04-29T00:00:00"]]
    assert report.rows.rows_in == 3 and report.rows.rejected == 2
    issues = [(i.row, i.column, i.code) for i in report.issues]
    assert issues == [
        (2, "LastWorkingDate", "formula-without-result"),
        (3, "EmailAddress", "formula-without-result"),
        (3, "ResignationDate", "formula-without-result"),
        (3, "LastWorkingDate", "formula-without-result"),
    ]
    assert report.issues[0].message.startswith("cell C2 (column C (LastWorkingDate)) holds a formula without a saved")
    assert "needs a value" not in " ".join(i.message for i in report.issues)
    assert "\x00" not in (tmp_path / "rejected.csv").read_text(encoding="utf-8-sig")


def test_a_formula_in_the_header_row_is_a_file_error(tmp_path, job):
    path = tmp_path / "hdr.xlsx"
    book = openpyxl.Workbook()
    book.active.append(["EmailAddress", '="Resignation"&"Date"', "LastWorkingDate"])
    book.active.append(["a@contoso.com", dt.datetime(2019, 4, 23), dt.datetime(2019, 4, 29)])
    book.save(path)
    report = upload(path, job, None, dry_run=True)
    assert report.status == "failed" and "header cell B1 holds a formula without a saved result" in report.error


def _inline_cell_workbook(path: Path, text_bytes: bytes, shared: bytes | None = None) -> Path:
    """A workbook whose row 3 holds one inline string (as the review's bomb did), or with `shared`
    one text of a shared-strings table (openpyxl writes none: its texts are inline)."""
    base = workbook(path.with_suffix(".base.xlsx"), {"HR": [HEADER, ["a@contoso.com", dt.datetime(2019, 4, 23),
                                                                       dt.datetime(2019, 4, 29)]]})  # fmt: skip
    with zipfile.ZipFile(base) as src, zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as out:
        for item in src.infolist():
            data = src.read(item.filename)
            if item.filename == "xl/worksheets/sheet1.xml":
                cell = b'<row r="3"><c r="A3" t="inlineStr"><is><t>' + text_bytes + b"</t></is></c></row>"
                if shared is not None:
                    cell = b'<row r="3"><c r="A3" t="s"><v>0</v></c></row>'
                data = data.replace(b"</sheetData>", cell + b"</sheetData>")
            elif shared is not None and item.filename == "[Content_Types].xml":
                part = b'<Override PartName="/xl/sharedStrings.xml" ContentType="application/vnd.openxmlformats-'
                part += b'officedocument.spreadsheetml.sharedStrings+xml"/>'
                data = data.replace(b"</Types>", part + b"</Types>")
            elif shared is not None and item.filename == "xl/_rels/workbook.xml.rels":
                rel = b'<Relationship Id="rIdS" Target="sharedStrings.xml" Type="http://schemas.openxmlformats.org/'
                rel += b'officeDocument/2006/relationships/sharedStrings"/>'
                data = data.replace(b"</Relationships>", rel + b"</Relationships>")
            out.writestr(item.filename, data)
        if shared is not None:
            table = b'<sst xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" count="1" uniqueCount="1">'
            out.writestr("xl/sharedStrings.xml", table + b"<si><t>" + shared + b"</t></si></sst>")
    return path


def test_a_zip_bomb_workbook_is_refused_before_parsing(tmp_path, job):
    path = _inline_cell_workbook(tmp_path / "bomb.xlsx", b"A" * (64 << 20))
    assert path.stat().st_size < 1 << 20  # small on disk
    report = upload(path, job, None, dry_run=True)
    assert report.status == "failed"
    assert report.error.endswith(
        "as a zip bomb does; open it in Excel and save it again, or save it as CSV; nothing was sent"
    )


def test_a_cell_over_the_field_limit_is_refused_while_streaming(tmp_path, job):
    from hrconnector_core.csvreader import MAX_FIELD_CHARS

    # Just over the limit (exact check on the text) and far over it (the byte cap while parsing).
    for n in (MAX_FIELD_CHARS + 1, 12 * MAX_FIELD_CHARS):
        path = _inline_cell_workbook(tmp_path / f"long{n}.xlsx", b"A" * n)
        report = upload(path, job, None, dry_run=True)
        assert report.status == "failed"
        assert f"longer than {MAX_FIELD_CHARS:,} characters" in report.error, report.error
        assert "AAAA" not in report.error
    # A text in the shared-strings table (as Excel writes texts), read when the workbook is opened.
    path = _inline_cell_workbook(tmp_path / "shared.xlsx", b"", shared=b"B" * (12 * MAX_FIELD_CHARS))
    report = upload(path, job, None, dry_run=True)
    assert report.error == (
        f"the workbook's shared-strings table holds a text longer than {MAX_FIELD_CHARS:,} characters "
        "(Excel's own limit is 32,767); nothing was sent"
    )


def test_hidden_sheets_are_not_the_default_and_sheet_names_match_case_insensitively(
    tmp_path, emulator, job, make_client
):
    path = tmp_path / "hidden.xlsx"
    book = openpyxl.Workbook()
    lookup = book.active
    lookup.title = "Lookup"
    lookup.append(["code", "name"])
    lookup.append(["x", "y"])
    lookup.sheet_state = "hidden"
    hr = book.create_sheet("HR")
    hr.append(HEADER)
    hr.append(["a@contoso.com", dt.datetime(2019, 4, 23), dt.datetime(2019, 4, 29)])
    book.active = 1
    book.save(path)
    report = upload(path, job, make_client(job))
    assert report.status == "succeeded", report.error
    assert emulator.state.rows(job) == [["a@contoso.com", "2019-04-23T00:00:00", "2019-04-29T00:00:00"]]
    assert "read sheet 'HR' of the workbook" in report.notes
    report = upload(path, "job-2", None, dry_run=True, sheet="hr")
    assert report.status == "planned", report.error
    assert "read sheet 'HR' of the workbook" in report.notes


@pytest.mark.parametrize("name", ["~$hr.xlsx", "renamed.xlsx"])
def test_a_file_named_xlsx_that_is_no_workbook(tmp_path, job, name):
    path = tmp_path / name
    path.write_bytes(b"\x05alice" + b" " * 48 + b"\x05\x00" + "alice".encode("utf-16-le") + b"\x00" * 100
                     if name.startswith("~$") else b"EmailAddress,ResignationDate\r\n")  # fmt: skip
    report = upload(path, job, None, dry_run=True)
    assert report.status == "failed"
    assert report.error.startswith("the file is named .xlsx but is not a workbook")


def test_empty_columns_left_of_the_table_and_unnamed_columns(tmp_path, emulator, job, make_client):
    path = tmp_path / "lead.xlsx"
    book = openpyxl.Workbook()
    sheet = book.active
    for i, name in enumerate(HEADER):
        sheet.cell(row=3, column=3 + i, value=name)
    for r, email in ((4, "a@contoso.com"), (5, "b@contoso.com")):
        sheet.cell(row=r, column=3, value=email)
        sheet.cell(row=r, column=4, value=dt.datetime(2019, 4, 23))
        sheet.cell(row=r, column=5, value=dt.datetime(2019, 4, 29))
    sheet["A5"] = "note"  # a value left of the table: the row is set aside, not cut short
    book.save(path)
    report = upload(path, job, make_client(job))
    assert emulator.state.uploads[job][0].header == HEADER
    assert emulator.state.rows(job) == [["a@contoso.com", "2019-04-23T00:00:00", "2019-04-29T00:00:00"]]
    assert [(i.row, i.code) for i in report.issues] == [(5, "value-outside-table")]
    # A column without a name in the middle of the header: refused before anything is sent.
    gap = workbook(tmp_path / "gap.xlsx", {"HR": [["EmailAddress", None, "ResignationDate", "LastWorkingDate"],
                                                  ["a@contoso.com", "x", dt.datetime(2019, 4, 23),
                                                   dt.datetime(2019, 4, 29)]]})  # fmt: skip
    csv_gap = tmp_path / "gap.csv"
    csv_gap.write_text("EmailAddress,,ResignationDate,LastWorkingDate\r\na@contoso.com,x,2019-04-23,2019-04-29\r\n")
    # Empty cells after the last name (a trailing delimiter on every line) are no column: a row
    # with a value there is set aside, the others are sent without it.
    trailing = tmp_path / "trailing.csv"
    trailing.write_text(
        "EmailAddress,ResignationDate,LastWorkingDate,\r\na@contoso.com,2019-04-23T00:00:00,2019-04-29T00:00:00,\r\n"
        "b@contoso.com,2019-04-23T00:00:00,2019-04-29T00:00:00,x\r\n"
    )
    report = upload(trailing, "job-trailing", None, dry_run=True)
    assert report.header == HEADER and report.rows.planned == 1
    assert [(i.row, i.code) for i in report.issues] == [(2, "extra-empty-fields"), (3, "too-many-fields")]
    for bad in (gap, csv_gap):
        report = upload(bad, "job-gap", None, dry_run=True)
        assert report.status == "failed"
        assert report.error.startswith("the file has a header cell without a name, column(s) 2:"), report.error
