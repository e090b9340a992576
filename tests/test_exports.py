"""Files the way Excel and HR systems save them: sep= lines, Windows-1252 with semicolons, and the
rejected-rows round trip (open, fix, drop again) in the input's own encoding and delimiter."""

from __future__ import annotations

import codecs
import csv
import io

from hrconnector_core.pipeline import LocalFileSource, Policy, UploadOptions, run_upload
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
    assert sorted(i.row or 0 for i in report.issues) == [3, 4]  # Excel's numbers: the header is row 1
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
    # The two leading columns are our notes: set aside, never sent.
    assert all(upload.header == HEADER for upload in emulator.state.uploads[job])
    assert emulator.state.rows(job)[1:] == [
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


# -- the command line's smaller points ----------------------------------------------------------------
def run_cli(*args: str, env: dict[str, str] | None = None):
    import os
    import subprocess

    from .conftest import REPO, cli_command

    env = env or dict(os.environ) | {"PYTHONPATH": str(REPO)}
    return subprocess.run(cli_command(*args), capture_output=True, text=True, env=env, check=False)


def test_version_and_exit_codes_in_help():
    version = run_cli("--version")
    assert version.returncode == 0 and version.stdout.startswith("hrconnector ")
    helptext = run_cli("upload", "--help").stdout
    assert "exit codes:" in helptext and "  2  usage or configuration errors" in helptext
    assert "  130  stopped by Ctrl-C; 143 stopped by SIGTERM" in helptext


def test_a_directory_as_file_and_a_file_level_error(tmp_path):
    result = run_cli("validate", str(tmp_path))
    assert result.returncode == 2 and "is a directory: give the path of one file" in result.stderr
    pdf = tmp_path / "hr.csv"
    pdf.write_bytes(b"%PDF-1.7\n" + b"x\n" * 50)
    result = run_cli("validate", str(pdf))
    assert "0 rows read" not in result.stdout and "the file was not read through" in result.stdout


def test_issue_rows_listed_once_and_reject_file_wording(tmp_path):
    path = tmp_path / "hr.csv"
    path.write_text(
        ",".join(HEADER) + "\r\n" + "a@contoso.com,23/04/2019,24/04/2019\r\n" + "b@contoso.com,23/04/2019,x\r\n"
    )
    result = run_cli("validate", str(path))
    table = [line for line in result.stdout.splitlines() if "invalid-date" in line]
    assert table and table[0].rstrip().endswith("2, 3"), result.stdout  # not "2, 2, 3"
    report = run_upload(
        LocalFileSource(path), UploadOptions(job_id="j", policy=Policy.REJECT_FILE), client=None, store=None
    )
    assert report.error is not None and "upload the file again" in report.error
    assert "drop the file again" not in report.error


def test_per_chunk_lines_only_with_verbose(tmp_path, emulator, job):
    from .conftest import cli_env, upload_args

    path = tmp_path / "hr.csv"
    path.write_text(
        ",".join(HEADER) + "\r\n"
        + "".join(f"u{i}@contoso.com,2019-04-23T15:18:02,2019-04-29T00:00:00\r\n" for i in range(6))
    )  # fmt: skip
    quiet = run_cli(
        *upload_args(emulator, job, path, tmp_path / "s1", "--records-per-call", "2"), env=cli_env(emulator)
    )
    assert quiet.returncode == 0, quiet.stdout + quiet.stderr
    assert "chunk 0 uploaded" not in quiet.stderr and "uploaded: rows" not in quiet.stderr
    loud = run_cli(
        *upload_args(emulator, job, path, tmp_path / "s2", "--records-per-call", "2", "--force", "--verbose"),
        env=cli_env(emulator),
    )
    assert loud.returncode == 0 and loud.stderr.count("uploaded: rows") == 3


# -- one header rule; scenario values as configured -------------------------------------------------
def test_header_cells_with_spaces_infer_validate_and_are_sent_trimmed(tmp_path, emulator, job, make_client):
    path = tmp_path / "hr.csv"
    path.write_text(
        "EmailAddress , resignationdate,LastWorkingDate  \r\n"
        + "a@contoso.com,2019-04-23T15:18:02,2019-04-29T00:00:00\r\n"
    )
    infer = run_cli("mapping", "infer", str(path))
    assert infer.returncode == 0, infer.stderr
    assert '"EmailAddress": "EmailAddress"' in infer.stdout and '"ResignationDate": "resignationdate"' in infer.stdout
    report = run_upload(LocalFileSource(path), UploadOptions(job_id=job), client=make_client(job), store=None)
    assert report.status == "succeeded", report.error
    assert emulator.state.uploads[job][0].header == ["EmailAddress", "resignationdate", "LastWorkingDate"]
    # An explicit mapping whose names carry spaces follows the same rule, date_formats included.
    mapping = tmp_path / "m.json"
    mapping.write_text(
        '{"scenarios": [{"scenario": "resignation", "columns": {"EmailAddress": " emailaddress",'
        ' "ResignationDate": "ResignationDate ", "LastWorkingDate": "lastworkingdate"}}],'
        ' "date_formats": {" RESIGNATIONDATE": "%d/%m/%Y"}}'
    )
    path.write_text("EmailAddress ,ResignationDate,LastWorkingDate\r\nb@contoso.com,23/04/2019,2019-04-29T00:00:00\r\n")
    result = run_cli("validate", str(path), "--mapping", str(mapping))
    assert result.returncode == 0, result.stdout + result.stderr


def test_scenario_values_are_sent_as_configured(tmp_path, emulator, job, make_client):
    path = tmp_path / "multi.csv"
    path.write_text(
        "HRScenario,EmailAddress,ResignationDate,LastWorkingDate,EffectiveDate,OldLevel,NewLevel\r\n"
        "resignation,a@contoso.com,2019-04-23T15:18:02,2019-04-29T00:00:00,,,\r\n"
        "RESIGNATION ,b@contoso.com,2019-04-23T15:18:02,2019-04-29T00:00:00,,,\r\n"
        " job LEVEL change,c@contoso.com,,,2019-04-23T15:18:02,L1,L2\r\n"
        "Resignation,d@contoso.com,2019-04-23T15:18:02,2019-04-29T00:00:00,,,\r\n"
    )
    report = run_upload(
        LocalFileSource(path), UploadOptions(job_id=job, max_concurrency=1), client=make_client(job), store=None
    )
    assert report.status == "succeeded", report.error
    assert [r[0] for r in emulator.state.rows(job)] == ["Resignation", "Resignation", "Job level change", "Resignation"]


def test_the_services_403_reason_is_printed_once(tmp_path, emulator):
    from hrconnector_core.emulator import JOB_APP_MISMATCH

    from .conftest import OTHER_APP_ID, SAMPLES, cli_env, upload_args

    foreign = "3c3c3c3c-0000-4000-8000-000000000413"
    emulator.state.register_job(foreign, OTHER_APP_ID)
    result = run_cli(*upload_args(emulator, foreign, SAMPLES / "resignation.csv", tmp_path), env=cli_env(emulator))
    assert result.returncode == 1
    error = next(line for line in result.stdout.splitlines() if line.startswith("error:"))
    assert "HTTP 403" in error and error.count(JOB_APP_MISMATCH) == 1, error


# -- date messages that name the fix -----------------------------------------------------------------
def _date_messages(tmp_path, values, mapping=None):
    path = tmp_path / "dates.csv"
    path.write_text(
        "EmailAddress,ResignationDate,LastWorkingDate\r\n"
        + "".join(f"u{i}@contoso.com,{v},2019-04-30T00:00:00\r\n" for i, v in enumerate(values))
    )
    report = run_upload(
        LocalFileSource(path), UploadOptions(job_id="j", dry_run=True, mapping=mapping), client=None, store=None
    )
    return {i.row: i.message for i in report.issues if i.code == "invalid-date"}


def test_date_messages_name_the_fix(tmp_path):
    messages = _date_messages(
        tmp_path, ["23/04/2019", "04/23/2019", "04/05/2019", "2019-04-31T00:00:00", "23.04.2019 15:18", "2023-02-29"]
    )
    assert "dd/mm/yyyy (the first number cannot be a month)" in messages[2]
    assert '"date_formats": {"ResignationDate": "%d/%m/%Y"}' in messages[2]
    assert "mm/dd/yyyy" not in messages[2]
    assert '"date_formats": {"ResignationDate": "%m/%d/%Y"}' in messages[3]
    assert '"%d/%m/%Y"}' in messages[4] and '"%m/%d/%Y"}' in messages[4] and "cannot tell which" in messages[4]
    assert "that day does not exist in that month" in messages[5]
    assert '"date_formats": {"ResignationDate": "%d.%m.%Y %H:%M"}' in messages[6]
    assert "2019" not in " ".join(messages.values())  # the values themselves are never repeated


def test_iso_dates_are_accepted_beside_a_date_formats_entry(tmp_path):
    from hrconnector_core.mapping import Mapping

    mapping = Mapping.from_dict(
        {
            "scenarios": [
                {
                    "scenario": "resignation",
                    "columns": {"EmailAddress": "EmailAddress", "ResignationDate": "ResignationDate",
                                "LastWorkingDate": "LastWorkingDate"},
                }
            ],
            "date_formats": {"ResignationDate": "%d/%m/%Y"},
        }
    )  # fmt: skip
    messages = _date_messages(tmp_path, ["23/04/2019", "2019-04-23T15:18:02", "2019-23-04"], mapping=mapping)
    assert list(messages) == [4]
    assert "matches neither the mapping's date format %d/%m/%Y nor ISO 8601" in messages[4]


def test_sep_line_rows_named_in_an_encoding_error(tmp_path):
    path = tmp_path / "export.csv"
    path.write_bytes(
        b"sep=;\r\nEmailAddress;ResignationDate;LastWorkingDate\r\n"
        b"a@contoso.com;2019-04-23T15:18:02;2019-04-29T00:00:00\r\n"
        b"b\xe2\x82@contoso.com;2019-04-23T15:18:02;2019-04-29T00:00:00\r\n"  # a cut UTF-8 sequence
        b"c\xc3\xa9@contoso.com;2019-04-23T15:18:02;2019-04-29T00:00:00\r\n"
    )
    report = run_upload(LocalFileSource(path), UploadOptions(job_id="j", dry_run=True), client=None, store=None)
    assert report.error is not None and "in row(s) 3" in report.error  # Excel's numbering: the header is row 1


def test_rejected_rows_of_a_utf16_unicode_text_export(tmp_path):
    """Excel's "Unicode Text" export: UTF-16 with a BOM, tab-separated."""
    text = "\t".join(HEADER) + "\r\n" + "jos\u00e9\t2019-04-23T15:18:02\t2019-04-29T00:00:00\r\n"
    path = tmp_path / "export.txt"
    path.write_bytes(text.encode("utf-16"))
    rejected = RejectedRowsWriter(tmp_path / "rejected.txt")
    report = run_upload(
        LocalFileSource(path), UploadOptions(job_id="j", dry_run=True), client=None, store=None, rejected_rows=rejected
    )
    assert report.rows.rejected == 1
    data = (tmp_path / "rejected.txt").read_bytes()
    assert data.startswith(codecs.BOM_UTF16_LE)
    back = list(csv.reader(io.StringIO(data.decode("utf-16"), newline=""), delimiter="\t"))
    assert back[1][0] == "2" and back[1][2] == "jos\u00e9"


def test_log_lines_never_land_on_the_progress_bars_line():
    import logging

    from hrconnector_core.cli import _BarAwareHandler, _ProgressPrinter
    from hrconnector_core.pipeline import Progress

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    terminal = Terminal()
    handler = _BarAwareHandler(terminal)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    logger = logging.getLogger("hrconnector_core.test_bar")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        bar = _ProgressPrinter(terminal)
        bar(Progress(50, 100, 1, 10))
        logger.warning("chunk 2 attempt 1: HTTP 503; retrying in 1.0 s")
        bar(Progress(100, 100, 2, 20))
        bar.end()
    finally:
        logger.removeHandler(handler)
    lines = terminal.getvalue().split("\n")
    assert lines[0].startswith("\r[##########") and "50.0% read" in lines[0]
    assert lines[1] == "WARNING chunk 2 attempt 1: HTTP 503; retrying in 1.0 s"  # a line of its own
    assert lines[2].startswith("\r[####################] 100.0% read") and lines[3] == ""


def test_unknown_scenario_message_lists_the_configured_values(tmp_path, emulator, job, make_client):
    """The values an admin can type in the scenario column, as the mapping file writes them (not
    the scenarios' titles, which a row may not hold)."""
    from hrconnector_core.mapping import load_mapping

    mapping_path = tmp_path / "mapping.json"
    mapping_path.write_text(
        '{"scenario_column": "Kind", "scenarios": [{"scenario": "resignation", "value": "LEAVER", "columns": '
        '{"EmailAddress": "Mail", "ResignationDate": "Notice", "LastWorkingDate": "Last"}}]}'
    )
    path = tmp_path / "hr.csv"
    path.write_text(
        "Kind,Mail,Notice,Last\r\nleaver,a@contoso.com,2019-04-23T15:18:02,2019-04-29T00:00:00\r\n"
        "Resignation,b@contoso.com,2019-04-23T15:18:02,2019-04-29T00:00:00\r\n"
    )
    report = run_upload(
        LocalFileSource(path),
        UploadOptions(job_id=job, mapping=load_mapping(mapping_path)),
        client=make_client(job),
        store=None,
    )
    assert emulator.state.rows(job) == [["LEAVER", "a@contoso.com", "2019-04-23T15:18:02", "2019-04-29T00:00:00"]]
    [issue] = report.issues
    assert (issue.row, issue.code) == (3, "unknown-scenario")
    assert issue.message == "the scenario value is not a mapped scenario value (mapped: 'LEAVER')"


def test_quoted_and_padded_sep_lines(tmp_path, emulator, job, make_client):
    """`"sep=;"` (quoted, as some tools write it) and `sep=;;;` (padded to the sheet's width, as
    Excel saves it back) name the delimiter and are no row, like `sep=;`."""
    for n, first in enumerate(['"sep=;"', "sep=;;;", '"sep=;";;']):
        path = tmp_path / f"sep{n}.csv"
        path.write_text(
            f"{first}\r\n{';'.join(HEADER)}\r\nn{n}@contoso.com;2019-04-23T15:18:02;2019-04-29T00:00:00\r\n"
            "bad;2019-04-23T15:18:02;2019-04-29T00:00:00\r\n",
            encoding="utf-8",
        )
        report = run_upload(LocalFileSource(path), UploadOptions(job_id=job), client=make_client(job), store=None)
        assert report.delimiter == ";"
        assert emulator.state.uploads[job][n].header == HEADER
        assert emulator.state.rows(job)[n:] == [[f"n{n}@contoso.com", "2019-04-23T15:18:02", "2019-04-29T00:00:00"]]
        assert [(i.row, i.code) for i in report.issues] == [(3, "invalid-email")]  # the header is row 1
