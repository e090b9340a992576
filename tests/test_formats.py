"""Input normalisation: every encoding, delimiter and line ending gives the same rows and report.

Files are uploaded to the emulator; what arrives must be identical, UTF-8 and comma-separated.
"""

from __future__ import annotations

import codecs
import csv
import io
import itertools

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from hrconnector_core.pipeline import UploadOptions, run_upload

ROWS = [
    ["EmailAddress", "EffectiveDate", "Remarks", "Rating"],
    ["zoe@contoso.com", "2024-04-23T15:18:02Z", "Très bien; über alles | naïve", "5 \u2013 top"],
    ["jose@contoso.com", "2024-04-24T09:15:49.1234567+01:00", 'said "ok", then\nleft', "3"],
    ["anna@contoso.com", "2024-04-25", "date without time", ""],
]
ENCODINGS = {
    "utf-8": lambda t: t.encode("utf-8"),
    "utf-8-bom": lambda t: codecs.BOM_UTF8 + t.encode("utf-8"),
    "utf-16-excel": lambda t: t.encode("utf-16"),  # Excel "Unicode text": UTF-16 LE with a BOM
    "utf-16-le-no-bom": lambda t: t.encode("utf-16-le"),
    "utf-16-be-bom": lambda t: codecs.BOM_UTF16_BE + t.encode("utf-16-be"),
    "windows-1252": lambda t: t.encode("cp1252"),
}


def render(delimiter: str, newline: str) -> str:
    out = io.StringIO()
    csv.writer(out, delimiter=delimiter, lineterminator=newline).writerows(ROWS)
    return out.getvalue()


class BytesSource:
    def __init__(self, name: str, data: bytes) -> None:
        self.name, self._data = name, data

    def open(self):
        return io.BytesIO(self._data)


COMBOS = [
    (enc, delim, newline)
    for (enc, delim), newline in zip(
        itertools.product(ENCODINGS, [",", ";", "\t", "|"]), itertools.cycle(["\r\n", "\n", "\r"]), strict=False
    )
]


@pytest.mark.parametrize(("encoding", "delimiter", "newline"), COMBOS)
def test_every_encoding_and_delimiter_uploads_the_same_utf8_rows(
    emulator, job, make_client, encoding, delimiter, newline
):
    data = ENCODINGS[encoding](render(delimiter, newline))
    report = run_upload(BytesSource("x.csv", data), UploadOptions(job_id=job), client=make_client(job), store=None)

    uploads = emulator.state.uploads[job]
    assert [u.header for u in uploads] == [ROWS[0]]
    assert emulator.state.rows(job) == ROWS[1:3]  # the quoted line break arrives as it was written
    summary = (
        report.rows.rows_in,
        report.rows.uploaded,
        report.rows.rejected,
        [(i.row, i.column, i.code) for i in report.issues],
    )
    assert summary == (3, 2, 1, [(4, "EffectiveDate", "invalid-date")])
    assert report.delimiter == delimiter


def test_chunks_are_utf8_comma_separated_without_bom(emulator, job, make_client):
    data = ENCODINGS["utf-16-excel"](render("\t", "\r\n"))
    run_upload(BytesSource("x.csv", data), UploadOptions(job_id=job), client=make_client(job), store=None)
    upload = emulator.state.uploads[job][0]
    assert upload.header == ROWS[0] and upload.rows[0][2] == ROWS[1][2]


# -- never raises, always balances --------------------------------------------------------------

HEADERS = [
    b"EmailAddress,EffectiveDate,Remarks\r\n",
    b"HRScenario,EmailAddress,ResignationDate,LastWorkingDate\n",
    b"EmailAddress;EffectiveDate\n",
    b"",
    b"\xff\xfeE\x00,\x00",
]
cells = st.sampled_from(
    [
        b"a@x.com",
        b"2024-01-01T00:00:00Z",
        b"",
        b'"',
        b'"q,"',
        b"\r\n",
        b"\n",
        b",",
        b";",
        b"Resignation",
        b"\x00",
        b"\xe9",
        b"\xc3\xa9",
        b"\x81",
        b" ",
        b"x" * 300,
    ]
)


# What a file-level error may say: a clear reason, never a Python exception escaping as text.
FILE_ERRORS = (  # every file-level error the first pass or the header check can give
    "the file ",  # empty, not valid text, UTF-8 except some bytes, mixed encodings, NUL characters, a PDF...
    "the file's encoding is not readable",
    "the CSV cannot be parsed",
    "the workbook",
    "required column(s) missing",
    "the header names these columns more than once",
    "the first row looks like data, not a header",
)


def independent_row_count(data: bytes, encoding: str, delimiter: str) -> int:
    """Data rows (blank ones included) as Python's csv module reads the same text."""
    records = list(csv.reader(io.StringIO(data.decode(encoding), newline=""), delimiter=delimiter, strict=False))
    header_at = next(i for i, fields in enumerate(records) if any(f.strip() for f in fields))
    return len(records) - header_at - 1


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(header=st.sampled_from(HEADERS), body=st.lists(cells, max_size=60), noise=st.binary(max_size=40))
def test_mangled_csv_never_raises_and_always_balances(header, body, noise):
    data = header + b"".join(body) + noise
    report = run_upload(
        BytesSource("fuzz.csv", data),
        UploadOptions(job_id="j", dry_run=True, records_per_call=3),
        client=None,
        store=None,
    )
    assert report.rows.balanced
    assert report.status in ("planned", "partial", "failed")
    if report.error is None:
        assert report.rows.rows_in == report.rows.planned + report.rows.rejected + report.rows.skipped
        assert report.rows.rows_in == independent_row_count(data, report.encoding, report.delimiter)


@settings(max_examples=150, deadline=None)
@given(header=st.sampled_from([b"", *HEADERS[:3]]), data=st.binary(max_size=400))
@example(header=HEADERS[0], data=b"a@x.com,2024-01-01T00:00:00Z,x\r\n\r\n\n\xff,\n")  # blank lines, cp1252
def test_random_bytes_never_raise(header, data):
    """Random bytes, alone or after a real header: a clear file-level error with nothing planned,
    or every row the csv module sees in the report, each planned row in exactly one chunk."""
    report = run_upload(
        BytesSource("random.csv", header + data), UploadOptions(job_id="j", dry_run=True, records_per_call=3),
        client=None, store=None,
    )  # fmt: skip
    assert report.rows.balanced
    if report.error is not None:
        assert report.error.startswith(FILE_ERRORS), report.error
        assert report.status == "failed" and report.rows.planned == 0
        return
    rows = report.rows
    assert rows.rows_in == independent_row_count(header + data, report.encoding, report.delimiter)
    assert sum(c.records for c in report.chunks) == rows.planned
    assert all(c.status == "planned" and c.records <= 3 for c in report.chunks)
    assert all(i.row is None or 2 <= i.row <= rows.rows_in + 1 for i in report.issues)
    assert report.status == ("planned" if rows.planned == rows.rows_in - rows.skipped else "partial")


def test_encoding_is_decided_over_the_whole_file_across_block_boundaries():
    from hrconnector_core.csvreader import inspect_stream

    block = 1 << 20
    header = b"EmailAddress,EffectiveDate\r\n"

    def a(n: int) -> bytes:  # n bytes of short fields (one field over 1,000,000 characters is refused)
        return (b"a," * n)[:n]

    split_char = header + a(block - len(header) - 1) + "é".encode() + b"\r\n" + b"b" * 10
    assert inspect_stream(io.BytesIO(split_char)).format.encoding == "utf-8"
    late_cp1252 = header + a(2 * block) + "é".encode("cp1252")
    assert inspect_stream(io.BytesIO(late_cp1252)).format.encoding == "cp1252"
    truncated_utf8 = header + a(block - len(header) - 1) + "é".encode()[:1]
    assert inspect_stream(io.BytesIO(truncated_utf8)).format.encoding == "cp1252"
