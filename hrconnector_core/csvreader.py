"""Streaming CSV reading: bytes -> header + records with their row numbers.

Rows are numbered as a spreadsheet shows them: the header is row 1, and a quoted field that
spans several lines still belongs to one row. Memory use does not depend on the file's size.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import io
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, cast

from .errors import InputFileError

# Python's csv module refuses fields longer than this; HR fields are far shorter, but a file
# with an unbalanced quote would otherwise swallow the rest of the file into one field.
MAX_FIELD_CHARS = 1_000_000


# One data row: (its spreadsheet row number, its fields as read). A plain tuple: this is the
# per-row hot path, and a tuple costs a tenth of a dataclass to make.
Record = tuple[int, list[str]]


@dataclass(frozen=True)
class CsvFormat:
    """How the bytes of a file are to be read."""

    encoding: str = "utf-8"
    delimiter: str = ","


DELIMITERS = (",", ";", "\t", "|")
# Bytes Windows-1252 leaves undefined: a file holding them is no Windows-1252 text.
_CP1252_UNDEFINED = re.compile(b"[\x81\x8d\x8f\x90\x9d]")
_BLOCK = 1 << 20


@dataclass(frozen=True)
class FileFacts:
    """What one pass over the bytes tells: identity, size and how to read them."""

    sha256: str
    size: int
    format: CsvFormat


def _encoding_from_head(head: bytes) -> str | None:
    if head.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    # UTF-16 without a byte-order mark: ASCII text with a NUL beside every character.
    sample = head[:200]
    if len(sample) >= 4:
        if sample[1::2].count(0) > len(sample) // 4 and sample[0::2].count(0) == 0:
            return "utf-16-le"
        if sample[0::2].count(0) > len(sample) // 4 and sample[1::2].count(0) == 0:
            return "utf-16-be"
    return None


def sniff_delimiter(first_line: str) -> str:
    """The candidate that occurs most often outside quotes in the header line (comma on a tie)."""
    counts = dict.fromkeys(DELIMITERS, 0)
    quoted = False
    for char in first_line:
        if char == '"':
            quoted = not quoted
        elif not quoted and char in counts:
            counts[char] += 1
    best = max(DELIMITERS, key=lambda d: (counts[d], d == ","))
    return best if counts[best] else ","


def inspect_stream(stream: IO[bytes]) -> FileFacts:
    """Hash the bytes and decide their encoding and delimiter in one pass, before any upload.

    UTF-8 (with or without BOM) and UTF-16 (with a BOM, or detectable without one) are taken as
    they are; a file that is not valid UTF-8 is read as Windows-1252 unless it holds bytes that
    encoding leaves undefined, which makes it unreadable (InputFileError).
    """
    digest = hashlib.sha256()
    size = 0
    head = b""
    decoder: codecs.IncrementalDecoder | None = None
    utf8_ok = cp1252_ok = True
    encoding: str | None = None
    while block := stream.read(_BLOCK):
        if not head:
            head = block[:4096]
            encoding = _encoding_from_head(head)
            if encoding is None:
                decoder = codecs.getincrementaldecoder("utf-8")()
        digest.update(block)
        size += len(block)
        if block.isascii() and (decoder is None or not decoder.getstate()[0]):
            continue  # valid in every candidate encoding; the common case, checked at C speed
        if decoder is not None and utf8_ok:
            try:
                decoder.decode(block)
            except UnicodeDecodeError:
                utf8_ok = False
        if cp1252_ok and _CP1252_UNDEFINED.search(block):
            cp1252_ok = False
    if decoder is not None and utf8_ok:
        try:
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            utf8_ok = False
    if encoding is None:
        if utf8_ok:
            encoding = "utf-8"
        elif cp1252_ok:
            encoding = "cp1252"
        else:
            raise InputFileError("the file's encoding is not readable: it is neither UTF-8, UTF-16 nor Windows-1252")
    text = head.decode(encoding, errors="replace")
    first_line = text.lstrip("\ufeff").splitlines()[0] if text.strip() else ""
    return FileFacts(digest.hexdigest(), size, CsvFormat(encoding, sniff_delimiter(first_line)))


class CsvFile:
    """A CSV file opened for streaming: `header` first, then `records()` once."""

    def __init__(self, stream: IO[bytes], *, csv_format: CsvFormat | None = None) -> None:
        # Any readable binary stream (a file, BytesIO, a blob download) gains peek().
        buffered = stream if isinstance(stream, io.BufferedReader) else io.BufferedReader(cast(io.RawIOBase, stream))
        self.format = csv_format or CsvFormat(_encoding_from_head(buffered.peek(4096)[:4096]) or "utf-8")
        self._text = io.TextIOWrapper(buffered, encoding=self.format.encoding, newline="")
        csv.field_size_limit(MAX_FIELD_CHARS)
        self._reader = csv.reader(self._text, delimiter=self.format.delimiter, strict=False)
        self._row = 0
        self.header = self._read_header()
        self.header_row = self._row

    def _error(self, exc: Exception) -> InputFileError:
        if isinstance(exc, UnicodeDecodeError):
            return InputFileError(f"the file is not valid {self.format.encoding} text (near row {self._row + 1})")
        return InputFileError(f"the CSV cannot be parsed near row {self._row + 1}: {exc}")

    def _next(self) -> list[str] | None:
        try:
            fields = next(self._reader)
        except StopIteration:
            return None
        except (UnicodeDecodeError, csv.Error) as exc:
            raise self._error(exc) from exc
        self._row += 1
        return fields

    def _read_header(self) -> list[str]:
        while True:
            fields = self._next()
            if fields is None:
                raise InputFileError("the file is empty: there is no header row")
            if any(f.strip() for f in fields):
                return fields

    @property
    def data_rows(self) -> int:
        """Rows read after the header so far, blank ones included."""
        return self._row - self.header_row

    def records(self) -> Iterator[Record]:
        """Every row after the header, blank ones included (as empty field lists)."""
        row = self._row
        try:
            for fields in self._reader:
                row += 1
                yield row, fields
        except (UnicodeDecodeError, csv.Error) as exc:
            raise self._error(exc) from exc
        finally:
            self._row = row
