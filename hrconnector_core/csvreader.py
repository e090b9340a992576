"""Streaming CSV reading: bytes -> header + records with their row numbers.

Rows are numbered as a spreadsheet shows them: the header is row 1, and a quoted field that
spans several lines still belongs to one row. Memory use does not depend on the file's size.
"""

from __future__ import annotations

import codecs
import csv
import io
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, cast

from .errors import InputFileError

# Python's csv module refuses fields longer than this; HR fields are far shorter, but a file
# with an unbalanced quote would otherwise swallow the rest of the file into one field.
MAX_FIELD_CHARS = 1_000_000

_BOMS = (
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)


@dataclass(frozen=True, slots=True)
class Record:
    """One data row: its spreadsheet row number and its fields as read."""

    row: int
    fields: list[str]


@dataclass(frozen=True)
class CsvFormat:
    """How the bytes of a file are to be read."""

    encoding: str = "utf-8"
    delimiter: str = ","


def detect_format(head: bytes) -> CsvFormat:
    """Pick the encoding from a byte-order mark; without one the file must be UTF-8."""
    for bom, encoding in _BOMS:
        if head.startswith(bom):
            return CsvFormat(encoding=encoding)
    return CsvFormat()


class CsvFile:
    """A CSV file opened for streaming: `header` first, then `records()` once."""

    def __init__(self, stream: IO[bytes], *, csv_format: CsvFormat | None = None) -> None:
        # Any readable binary stream (a file, BytesIO, a blob download) gains peek().
        buffered = stream if isinstance(stream, io.BufferedReader) else io.BufferedReader(cast(io.RawIOBase, stream))
        self.format = csv_format or detect_format(buffered.peek(4)[:4])
        self._text = io.TextIOWrapper(buffered, encoding=self.format.encoding, newline="")
        csv.field_size_limit(MAX_FIELD_CHARS)
        self._reader = csv.reader(self._text, delimiter=self.format.delimiter, strict=False)
        self._row = 0
        self.header = self._read_header()

    def _next(self) -> list[str] | None:
        try:
            fields = next(self._reader)
        except StopIteration:
            return None
        except UnicodeDecodeError as exc:
            raise InputFileError(
                f"the file is not valid {self.format.encoding} text (near row {self._row + 1})"
            ) from exc
        except csv.Error as exc:
            raise InputFileError(f"the CSV cannot be parsed near row {self._row + 1}: {exc}") from exc
        self._row += 1
        return fields

    def _read_header(self) -> list[str]:
        while True:
            fields = self._next()
            if fields is None:
                raise InputFileError("the file is empty: there is no header row")
            if any(f.strip() for f in fields):
                return fields

    def records(self) -> Iterator[Record]:
        """Every row after the header, blank ones included (as empty field lists)."""
        while (fields := self._next()) is not None:
            yield Record(self._row, fields)
