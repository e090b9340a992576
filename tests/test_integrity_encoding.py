"""Issue 10, cases 7 and 8: the first pass proves the whole file decodes and parses as CSV before
anything is sent, names the right row, and never re-reads broken UTF-8 as Windows-1252."""

from __future__ import annotations

import codecs
import csv
import io
from typing import Any

import pytest

from hrconnector_core.csvreader import inspect_stream
from hrconnector_core.errors import InputFileError
from hrconnector_core.pipeline import UploadOptions, run_upload

from .test_formats import BytesSource

HEADER = ["EmailAddress", "EmployeeFirstName", "EmployeeLastName", "EmployeeAddressLine1", "EmployeeZipCode"]
NAMES = [("José", "Müller"), ("Zoë", "Ångström"), ("Anna", "Smith"), ("François", "Lefèvre")]


def profiles(n: int) -> list[list[str]]:
    return [
        [f"user{i}@contoso.com", *NAMES[i % len(NAMES)], f"{i} Rue de l'Église, bât. B", f"{10000 + i}"]
        for i in range(n)
    ]


def text(data: list[list[str]], delimiter: str = ",") -> str:
    out = io.StringIO()
    csv.writer(out, delimiter=delimiter, lineterminator="\r\n").writerows([HEADER, *data])
    return out.getvalue()


ENCODERS = {
    "utf-8": lambda t: t.encode("utf-8"),
    "utf-8-bom": lambda t: codecs.BOM_UTF8 + t.encode("utf-8"),
    "utf-16-le-bom": lambda t: t.encode("utf-16"),
    "utf-16-be-bom": lambda t: codecs.BOM_UTF16_BE + t.encode("utf-16-be"),
    "utf-16-le": lambda t: t.encode("utf-16-le"),
    "cp1252": lambda t: t.encode("cp1252"),
}
# A byte sequence no reader of that encoding accepts, placed in a field of the last row.
BAD = {
    "utf-8": b"\xff",
    "utf-8-bom": b"\xff",
    "utf-16-le-bom": b"\x00\xd8,\x00",  # a lone high surrogate
    "utf-16-be-bom": b"\xd8\x00\x00,",
    "utf-16-le": b"\x00\xd8,\x00",
    "cp1252": b"\x81",  # undefined in Windows-1252
}
ROWS = 25_000
LAST_ROW = ROWS + 2  # header row 1, good rows 2..25001, then the bad one


def with_last_row(encoding: str, last: str, bad: bytes = b"") -> Any:
    encode: Any = ENCODERS[encoding]
    body = encode(text(profiles(ROWS)))
    head, _, tail = last.partition("|")
    last_bytes = encode(head)
    if encoding.endswith("-bom") or encoding == "utf-16-le-bom":
        last_bytes = last_bytes[len(encode("")) :]  # no second BOM
    return body + last_bytes + bad + (encode(tail)[len(encode("")) :] if tail else b"")


def upload(emulator_job, make_client, data: bytes):
    return run_upload(
        BytesSource("hr.csv", data), UploadOptions(job_id=emulator_job, records_per_call=1000),
        client=make_client(emulator_job), store=None,
    )  # fmt: skip


@pytest.mark.parametrize("encoding", list(ENCODERS))
def test_a_bad_byte_after_25000_rows_sends_nothing_and_names_the_row(emulator, job, make_client, encoding):
    data = with_last_row(encoding, "last@contoso.com,Ann|,Lee,1 Main St,12345\r\n", BAD[encoding])
    report = upload(job, make_client, data)
    assert job not in emulator.state.uploads  # not one of the 25,000 good rows was sent
    assert report.status == "failed" and report.rows.uploaded == 0
    assert f"row(s) {LAST_ROW}" in report.error and "nothing was sent" in report.error


@pytest.mark.parametrize("encoding", list(ENCODERS))
def test_an_unbalanced_quote_after_25000_rows_sends_nothing_and_names_its_row(emulator, job, make_client, encoding):
    data = with_last_row(encoding, 'last@contoso.com,"Ann,Lee,1 Main St,12345\r\nmore@contoso.com,B,C,D,1\r\n')
    report = upload(job, make_client, data)
    assert job not in emulator.state.uploads
    assert report.status == "failed"
    assert f"starts in row {LAST_ROW} is never closed" in report.error


@pytest.mark.parametrize("encoding", list(ENCODERS))
def test_quoted_fields_with_line_breaks_across_blocks_are_fine(encoding):
    long_remark = "x" * 600_000 + '\r\n"quoted", ok'  # with the rows before it, across the 1 MiB block edge
    data = ENCODERS[encoding](text([*profiles(8000), ["a@contoso.com", long_remark, "L", "1 St", "1"], *profiles(3)]))
    facts = inspect_stream(io.BytesIO(data))
    assert facts.format.delimiter == ","


def test_utf8_with_one_stray_byte_is_an_error_naming_the_row_not_windows_1252(emulator, job, make_client):
    data = text(profiles(20_000)).encode("utf-8")
    lines = data.split(b"\r\n")
    lines[12_345] = lines[12_345].replace(b"Rue", b"Rue\xa0", 1)  # one NBSP from a cp1252 paste: row 12,346
    report = upload(job, make_client, b"\r\n".join(lines))
    assert job not in emulator.state.uploads
    assert report.status == "failed"
    assert "UTF-8 except for 1 invalid byte(s) in row(s) 12346" in report.error


def test_a_real_windows_1252_export_is_read_as_windows_1252(emulator, job, make_client):
    data = profiles(200)
    data[7][2] = "MÜLLER\u2019S"  # Ü then a right quote: DC 92, a valid UTF-8 sequence by coincidence
    data[8][1] = "Ã©lise"  # and so is Ã© (C3 A9)
    report = upload(job, make_client, text(data).encode("cp1252"))
    assert report.encoding == "cp1252" and report.status == "succeeded"
    assert emulator.state.rows(job) == data  # José, Müller, Ångström arrive as written


def test_a_utf8_export_is_read_as_utf8(emulator, job, make_client):
    data = profiles(200)
    report = upload(job, make_client, text(data).encode("utf-8"))
    assert report.encoding == "utf-8" and report.status == "succeeded"
    assert emulator.state.rows(job) == data


def test_utf8_with_few_accents_and_more_stray_bytes_is_still_an_error_not_mojibake():
    data = [[f"u{i}@contoso.com", "Ann", "Lee", "1 Main St", "1"] for i in range(50)]
    data[3][1] = "Zoë"  # the one valid multi-byte sequence
    raw = text(data).encode("utf-8").replace(b"Main", b"Ma\x92n", 3)  # three cp1252 bytes pasted in
    with pytest.raises(InputFileError, match=r"UTF-8 except for 3 invalid byte\(s\) in row\(s\) 2, 3, 4"):
        inspect_stream(io.BytesIO(raw))


def test_the_function_reads_the_blob_again_to_name_the_row_and_sends_nothing(emulator, function_env):
    from hrconnector_core.emulator.host import invoke_blob_trigger
    from hrconnector_core.service import FileFailedError

    env = function_env
    env.drop("main/profiles.csv", with_last_row("utf-8-bom", "last@contoso.com,Ann|,Lee,1 Main St,12345\r\n", b"\xff"))
    with pytest.raises(FileFailedError, match=rf"not valid UTF-8 \(with BOM\) text in row\(s\) {LAST_ROW}"):
        invoke_blob_trigger("hr_file_arrived", env.settings.containers.incoming, "main/profiles.csv")
    assert env.job not in emulator.state.uploads
    failed = env.listing()[env.settings.containers.failed]
    report = env.read_json(env.settings.containers.failed, next(n for n in failed if n.endswith(".report.json")))
    assert report["status"] == "failed" and report["rows"]["uploaded"] == 0
