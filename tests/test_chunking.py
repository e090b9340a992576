"""Reading and chunking without a network: what each chunk's bytes hold."""

from __future__ import annotations

import codecs
import csv
import io

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hrconnector_core.chunking import encode_rows, make_chunks
from hrconnector_core.csvreader import CsvFile, inspect_stream
from hrconnector_core.errors import InputFileError
from hrconnector_core.report import RunReport
from hrconnector_core.validation import conform_rows

from .csvdata import HEADER, parse, rows, write_csv


def chunk_file(data: bytes, per_call: int):
    report = RunReport(file_name="t.csv", job_id="j")
    csv_file = CsvFile(io.BytesIO(data))
    chunks = list(
        make_chunks(
            csv_file.header, conform_rows(csv_file.header, csv_file.records(), report), records_per_call=per_call
        )
    )
    return csv_file, chunks, report


def test_chunks_repeat_the_header_and_keep_every_row_whole(tmp_path):
    data = rows(23)
    path = write_csv(tmp_path / "x.csv", HEADER, data)
    _, chunks, report = chunk_file(path.read_bytes(), 5)

    assert [c.record_count for c in chunks] == [5, 5, 5, 5, 3]
    received = []
    for chunk in chunks:
        parsed = parse(chunk.data)
        assert parsed[0] == HEADER
        received.extend(parsed[1:])
        assert not chunk.data.startswith(codecs.BOM_UTF8)
    assert received == data  # multiline remarks with quotes and commas arrive intact, in order
    assert [(c.first_row, c.last_row) for c in chunks] == [(2, 6), (7, 11), (12, 16), (17, 21), (22, 24)]
    assert report.issue_counts == {}


def test_a_multiline_field_is_never_split_across_chunks():
    text = 'Email,Remarks\r\na@x.com,"line one\r\nline two, with comma"\r\nb@x.com,plain\r\n'
    _, chunks, _ = chunk_file(text.encode(), 1)
    assert [parse(c.data) for c in chunks] == [
        [["Email", "Remarks"], ["a@x.com", "line one\r\nline two, with comma"]],
        [["Email", "Remarks"], ["b@x.com", "plain"]],
    ]
    assert chunks[1].first_row == 3  # row numbers count records, not physical lines


def test_short_rows_are_padded_and_long_rows_set_aside_with_their_row_numbers():
    text = "A,B,C\n1,2,3\n4,5\n6,7,8,9\n\n10,11,12,\n"
    _csv_file, chunks, report = chunk_file(text.encode(), 100)
    assert parse(chunks[0].data) == [["A", "B", "C"], ["1", "2", "3"], ["4", "5", ""], ["10", "11", "12"]]
    by_code = {i.code: i.row for i in report.issues}
    assert by_code == {"too-few-fields": 3, "too-many-fields": 4, "blank-row": 5, "extra-empty-fields": 6}
    assert (report.rows.rejected, report.rows.skipped) == (1, 1)


def test_the_files_own_header_names_are_kept_and_a_bom_is_not_sent():
    text = "\ufeffE-mail Address,Date Of Leaving\r\nx@y.com,2024-01-01\r\n"
    csv_file, chunks, _ = chunk_file(text.encode("utf-8"), 10)
    assert csv_file.header == ["E-mail Address", "Date Of Leaving"]
    assert chunks[0].data == b"E-mail Address,Date Of Leaving\r\nx@y.com,2024-01-01\r\n"


def test_utf16_with_bom_is_read():
    text = "Email,Name\r\nz@y.com,Zoë\r\n"
    _, chunks, _ = chunk_file(text.encode("utf-16"), 10)
    assert parse(chunks[0].data) == [["Email", "Name"], ["z@y.com", "Zoë"]]


@pytest.mark.parametrize(
    ("data", "message"),
    [(b"", "no header"), (b"\r\n\r\n", "no header"), (b"Email\r\n\xff\xfe\xfa\r\n", "not valid utf-8")],
)
def test_unreadable_files_raise_a_clear_error_without_values(data, message):
    with pytest.raises(InputFileError, match=message):
        _, _chunks, _ = chunk_file(data, 10)


def test_the_chunk_plan_depends_only_on_the_rows_and_the_chunk_size():
    """A checkpoint names chunks by index, so chunk k must hold the same rows, bytes and row
    numbers whatever form the file came in: computed here independently of make_chunks."""
    data = rows(50)
    plain = csv_text(HEADER, data, delimiter=",", newline="\r\n").encode("utf-8")
    excel = csv_text(HEADER, data, delimiter="\t", newline="\n").encode("utf-16")  # "Unicode text"
    batches = [data[i : i + 7] for i in range(0, 50, 7)]
    expected = [(k, 2 + 7 * k, 1 + 7 * k + len(b), len(b), encode_rows(HEADER, b)) for k, b in enumerate(batches)]
    for source in (plain, excel):
        csv_file = CsvFile(io.BytesIO(source), csv_format=inspect_stream(io.BytesIO(source)).format)
        valid = conform_rows(csv_file.header, csv_file.records(), RunReport(file_name="t.csv", job_id="j"))
        chunks = list(make_chunks(csv_file.header, valid, records_per_call=7))
        assert [(c.index, c.first_row, c.last_row, c.record_count, c.data) for c in chunks] == expected


def csv_text(header: list[str], data: list[list[str]], *, delimiter: str, newline: str) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, delimiter=delimiter, lineterminator=newline).writerows([header, *data])
    return buffer.getvalue()


field_text = st.text(alphabet=st.sampled_from(list('ab ,"\r\n;\t\x1fé')), max_size=6)


@settings(max_examples=400, deadline=None)
@given(rows=st.lists(st.lists(field_text, min_size=3, max_size=3), max_size=8))
def test_encoding_matches_csv_writer_exactly(rows):
    expected = io.StringIO()
    writer = csv.writer(expected, lineterminator="\r\n")
    writer.writerow(["A", "B", "C"])
    writer.writerows(rows)
    assert encode_rows(["A", "B", "C"], rows) == expected.getvalue().encode("utf-8")


def test_a_single_column_keeps_empty_values_as_rows():
    assert encode_rows(["A"], [[""], ["x"]]) == b'A\r\n""\r\nx\r\n'
