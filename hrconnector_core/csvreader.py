"""Streaming CSV reading: bytes -> header + records with their row numbers.

Rows are numbered as a spreadsheet shows them: the header is row 1, and a quoted field that
spans several lines still belongs to one row. Memory use does not depend on the file's size.
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import hashlib
import io
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import IO, Any, cast

from .errors import HRConnectorError, InputFileError

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
    # The file begins with Excel's `sep=X` line: not a row (Excel hides it), kept in rejected rows.
    sep_line: bool = False


DELIMITERS = (",", ";", "\t", "|")
# The two columns a rejected-rows file (report.RejectedRowsWriter) puts first: set aside on reading.
REJECTED_COLUMNS = ["RejectedRow", "RejectedReasons"]


def is_rejected_rows_header(header: list[str]) -> bool:
    """Whether a header is that of our rejected-rows file, dropped again."""
    return [cell.strip().lstrip("\ufeff") for cell in header[:2]] == REJECTED_COLUMNS


# Bytes Windows-1252 leaves undefined: a file holding them is no Windows-1252 text.
_CP1252_UNDEFINED = re.compile(b"[\x81\x8d\x8f\x90\x9d]")
_BLOCK = 1 << 20


@dataclass(frozen=True)
class FileFacts:
    """What one pass over the bytes tells: identity, size and how to read them."""

    sha256: str
    size: int
    format: CsvFormat
    # A rejected-rows file dropped again (header RejectedRow,RejectedReasons,...) whose fields may
    # start with the apostrophe it puts before a formula (report.neutralise): checked row by row
    # only when set. Any other file's leading apostrophes are data (an exported '+31 phone number).
    apostrophe_formulas: bool = False
    # "csv", or "xlsx": a ZIP archive, read as a workbook (xlsxreader) once its bytes are verified.
    kind: str = "csv"


# Excel's `sep=;` line; also quoted ("sep=;", as some tools write it) and padded with the
# delimiter to the sheet's width (sep=;;;, as Excel saves it back).
_SEP_LINE = re.compile(r'("?)sep=([^\r\n"])\1(?:\2*)\s*', re.IGNORECASE).fullmatch
_ZIP = (b"PK\x03\x04", b"PK\x05\x06")
_CFB = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"  # OLE compound file: .xls, .doc, encrypted .xlsx
_ENCRYPTED = "EncryptionInfo".encode("utf-16-le")
_OLE_WORKBOOK = ("Workbook".encode("utf-16-le"), "Book\x00".encode("utf-16-le"))
_SIGNATURES = (
    (b"%PDF-", "a PDF document"),
    (b"\x89PNG\r\n\x1a\n", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF87a", "a GIF image"),
    (b"GIF89a", "a GIF image"),
    (b"\x1f\x8b", "a gzip archive"),
    (b"7z\xbc\xaf\x27\x1c", "a 7-Zip archive"),
    (b"Rar!\x1a\x07", "a RAR archive"),
)


def _binary_file(head: bytes, stream: IO[bytes], digest: Any) -> tuple[int, str]:
    """A file recognised by its first bytes as no text: hash the rest (the size is returned) and
    say what it is; raises InputFileError for a kind that cannot be read, "xlsx" for a zip."""
    size = len(head)
    digest.update(head)
    cfb = head.startswith(_CFB)
    seen_encrypted = cfb and _ENCRYPTED in head
    seen_workbook = cfb and any(m in head for m in _OLE_WORKBOOK)
    tail = head[-40:]
    while block := stream.read(_BLOCK):
        digest.update(block)
        size += len(block)
        if cfb:
            window = tail + block
            seen_encrypted = seen_encrypted or _ENCRYPTED in window
            seen_workbook = seen_workbook or any(m in window for m in _OLE_WORKBOOK)
            tail = block[-40:]
    if head.startswith(_ZIP):
        return size, "xlsx"
    if cfb:
        if seen_encrypted:
            raise InputFileError(
                "the file is an encrypted (password-protected) Excel workbook: remove the password in Excel "
                "(File > Info > Protect Workbook) or save the sheet as CSV; nothing was sent"
            )
        if seen_workbook:
            raise InputFileError(
                "the file is a legacy Excel 97-2003 workbook (.xls), which is not read: save it as .xlsx or "
                "CSV (UTF-8); nothing was sent"
            )
        raise InputFileError(
            "the file is an Office 97-2003 document, not a CSV file or an Excel workbook; nothing was sent"
        )
    what = next(name for magic, name in _SIGNATURES if head.startswith(magic))
    raise InputFileError(f"the file is {what}, not a CSV file or an Excel workbook; nothing was sent")


def _is_binary(head: bytes) -> bool:
    return head.startswith((*_ZIP, _CFB, *(magic for magic, _ in _SIGNATURES)))


def _encoding_from_head(head: bytes) -> str | None:
    if head.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    # UTF-16 without a byte-order mark: a NUL beside every ASCII character (delimiters and line
    # breaks at least, even in a header of CJK names), nearly always on the same side, over 4 KiB.
    sample = head[: 4096 & ~1]
    if len(sample) >= 4:
        units = len(sample) // 2
        odd, even = sample[1::2].count(0), sample[0::2].count(0)
        # (a CJK character such as U+4E00 has a NUL byte too, on the other side: rarely)
        if odd * 8 >= units and even * 8 <= odd:
            return "utf-16-le"
        if even * 8 >= units and odd * 8 <= even:
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


# Decoding errors found by the first pass are marked with a lone surrogate, which no valid text
# holds, to find their rows in a second look at the file.
_MARK = "\udfff"


def _mark(exc: UnicodeError) -> tuple[str, int]:
    assert isinstance(exc, UnicodeDecodeError)
    return _MARK, exc.end


codecs.register_error("hrconnector-mark", _mark)
# A valid multi-byte UTF-8 sequence (RFC 3629).
_UTF8_MULTIBYTE = re.compile(
    b"[\xc2-\xdf][\x80-\xbf]|\xe0[\xa0-\xbf][\x80-\xbf]|[\xe1-\xec\xee\xef][\x80-\xbf]{2}"
    b"|\xed[\x80-\x9f][\x80-\xbf]|\xf0[\x90-\xbf][\x80-\xbf]{2}|[\xf1-\xf3][\x80-\xbf]{3}"
    b"|\xf4[\x80-\x8f][\x80-\xbf]{2}"
)
_ASCII = bytes(range(128))
_NOT_LEADS = bytes(b for b in range(256) if not 0xC2 <= b <= 0xF4)
_ROWS_NAMED = 5
# A file that is not valid UTF-8 is Windows-1252 when its invalid bytes outnumber its valid
# multi-byte sequences this many times (see inspect_stream).
_CP1252_RATIO = 10
# A field that starts (optionally quoted) with an apostrophe before a formula character.
_APOSTROPHE_FORMULA = r"""(?:^|[,;\t|\r\n])"?'[=+\-@\t\r]"""
_APOSTROPHE_BYTES = re.compile(_APOSTROPHE_FORMULA.encode()).search
_APOSTROPHE_TEXT = re.compile(_APOSTROPHE_FORMULA).search


# A two-byte UTF-8 sequence that Windows-1252 text holds by coincidence reads there as a capital
# letter (0xC3-0xDF: Ã..ß) followed by a symbol (0x80-0xBF: a right quote, ©, ¼...), as in
# MÜLLER + right quote + S, or Ã©: at the
# start of a word or after a capital. After a lower-case letter or another non-ASCII character,
# it is a UTF-8 accented letter (José, Müller, Zoë): Windows-1252 puts no capital inside a word.
_CP1252_COINCIDENCE = re.compile(b"(?<![a-z\x80-\xff])[\xc3-\xdf][\x80-\xbf]")


def _utf8_census(data: bytes) -> tuple[int, int, int]:
    """(valid multi-byte sequences, bytes outside any, sequences that are surely UTF-8, not a
    Windows-1252 coincidence) in data that is not all valid UTF-8."""
    valid = list(_UTF8_MULTIBYTE.finditer(data))
    non_ascii = len(data.translate(None, _ASCII))
    coincidences = sum(1 for m in valid if _CP1252_COINCIDENCE.match(data, m.start()))
    return len(valid), non_ascii - sum(m.end() - m.start() for m in valid), len(valid) - coincidences


class _QuoteScanner:
    """Follows csv.reader's quoting (non-strict, doubled quotes) over a file fed in pieces, at the
    speed of one regular expression, to find a quoted field that is never closed.

    A quote opens a field only at the start of one (after a delimiter or a line break); anywhere
    else it is an ordinary character, as csv.reader reads it. Offsets count the units fed (bytes
    for ASCII-compatible encodings, characters for UTF-16).
    """

    def __init__(self, delimiter: str, *, text: bool, start: int = 0) -> None:
        d = re.escape(delimiter)
        pattern = rf'(?:[^"]++|(?<=[{d}\r\n])"[^"]*+(?:""[^"]*+)*+"|(?<![{d}\r\n])")*+'
        self._match: Any = re.compile(pattern).match if text else re.compile(pattern.encode()).match
        self._buf: Any = "\n" if text else b"\n"  # one unit of context, then what is not settled
        self._base = start  # the offset of _buf[1]
        self.too_long_at: int | None = None

    def feed(self, piece: str | bytes, *, final: bool = False) -> None:
        buf = self._buf + piece
        limit = len(buf) if final else len(buf) - 1  # a quote at the very end may be half of ""
        end = self._match(buf, 1, max(limit, 1)).end()
        self._base += end - 1
        self._buf = buf[end - 1 :]
        pending = len(self._buf) - 2  # an open quoted field: its length so far
        if pending > MAX_FIELD_CHARS and self.too_long_at is None:
            content = self._buf[2:]
            text = content if isinstance(content, str) else content.decode("utf-8", "replace")
            if len(text) - text.count('""') > MAX_FIELD_CHARS:
                self.too_long_at = self._base

    def skip(self, piece: bytes) -> None:
        """A piece of bytes without a quote while no quoted field is open: nothing to follow."""
        if piece:
            self._base += len(self._buf) - 1 + len(piece)
            self._buf = piece[-1:]

    @property
    def open_field(self) -> bool:
        """Whether what is not settled yet holds a quote (an open field, or a held-back quote)."""
        return (b'"' if isinstance(self._buf, bytes) else '"') in self._buf[1:]

    def unclosed_at(self) -> int | None:
        """After the last piece: where the quoted field that never closes starts, if one does."""
        if self.too_long_at is not None:
            return self.too_long_at
        self.feed(self._buf[:0], final=True)
        return self._base if self.open_field else None


_CONTINUATION = bytes(range(0x80, 0xC0))


class _FieldRuns:
    """Finds a stretch longer than the csv field limit with no delimiter or line break: an
    unquoted field (or one whose quote is mid-field, an ordinary character) that csv.reader would
    refuse, so the first pass catches it before any row is sent. Offsets as in _QuoteScanner.

    For bytes, the length in characters is counted as UTF-8 (continuation bytes excluded) and as
    bytes (Windows-1252), the encoding being decided only at the end.
    """

    def __init__(self, delimiter: str, *, start: int = 0) -> None:
        self._seps = (delimiter, "\r", "\n")
        self._text_seps = re.compile("[" + re.escape(delimiter) + "\r\n]")
        self._bytes_seps = re.compile(self._text_seps.pattern.encode())
        self._base = start  # offset of the next unit fed
        self._run_start = start
        self._run_units = 0
        self._run_chars = 0  # UTF-8 characters in the run (bytes only)
        self.found: int | None = None  # where the first run over the limit in characters starts
        self.found_units: int | None = None  # ... over the limit in units (bytes: Windows-1252 characters)

    def _add(self, segment: str | bytes) -> None:
        self._run_units += len(segment)
        if isinstance(segment, bytes):
            self._run_chars += len(segment.translate(None, _CONTINUATION)) if not segment.isascii() else len(segment)
        else:
            self._run_chars += len(segment)
        if self._run_units > MAX_FIELD_CHARS and self.found_units is None:
            self.found_units = self._run_start
        if self._run_chars > MAX_FIELD_CHARS and self.found is None:
            self.found = self._run_start

    def _done(self) -> bool:
        return self.found is not None

    def feed(self, piece: str | bytes) -> None:
        if self._done() or not piece:
            self._base += len(piece)
            return
        seps: Any = [sep.encode() for sep in self._seps] if isinstance(piece, bytes) else self._seps
        text: Any = piece
        firsts = [i for i in (text.find(sep) for sep in seps) if i >= 0]
        if not firsts:
            self._add(piece)
            self._base += len(piece)
            return
        first = min(firsts)
        last = max(text.rfind(sep) for sep in seps)
        self._add(piece[:first])
        # A field longer than the limit between two separators of this piece would span every unit
        # from last-MAX-1 to first+MAX+1: one separator there rules it out, at the speed of find.
        lo, hi = max(last - MAX_FIELD_CHARS - 1, first), min(first + MAX_FIELD_CHARS + 2, last + 1)
        if last - first > MAX_FIELD_CHARS and (lo >= hi or all(text.find(sep, lo, hi) < 0 for sep in seps)):
            pattern: Any = self._bytes_seps if isinstance(piece, bytes) else self._text_seps
            previous = first
            for match in pattern.finditer(text, first + 1, last + 1):
                if match.start() - previous - 1 > MAX_FIELD_CHARS:
                    self._run_start, self._run_units, self._run_chars = self._base + previous + 1, 0, 0
                    self._add(piece[previous + 1 : match.start()])
                    if self._done():
                        break
                previous = match.start()
        self._run_start, self._run_units, self._run_chars = self._base + last + 1, 0, 0
        self._add(piece[last + 1 :])
        self._base += len(piece)

    def too_long_at(self, encoding: str) -> int | None:
        """Where the first field longer than the limit starts, in the encoding decided."""
        if encoding == "cp1252" and self.found_units is not None:
            return self.found_units
        return self.found


def inspect_stream(stream: IO[bytes], *, reopen: Callable[[], IO[bytes]] | None = None) -> FileFacts:
    """Hash the bytes, decide their encoding and delimiter, and prove the whole file decodes and
    parses as CSV, in one pass before any upload; `reopen` (or seeking) lets an error name rows.

    UTF-8 (with or without BOM) and UTF-16 (with a BOM, or detectable without one) are taken as
    they are, and every byte must decode. A file without a BOM that is not valid UTF-8 is read as
    Windows-1252 only when valid multi-byte UTF-8 sequences are absent or under a tenth of its
    invalid bytes (a Windows-1252 export, whose accented letters are single bytes, holds such
    sequences only by coincidence, like an Ü before a right quote); otherwise it is UTF-8 with a
    few bad bytes, an error naming their rows, never silently re-read as another encoding: a wrong
    guess must cost an error message, never mis-decoded names at the service.
    """
    digest = hashlib.sha256()
    size = 0
    head = b""
    bom_encoding: str | None = None
    decoder: codecs.IncrementalDecoder | None = None
    scanner: _QuoteScanner | None = None
    runs: _FieldRuns | None = None
    utf8_ok = cp1252_ok = True
    multibyte = invalid = genuine = 0  # genuine: multi-byte sequences no Windows-1252 text holds
    delimiter = ","
    decode_failed = utf16 = False
    apostrophes = rejected_file = nul = False
    tail = b""  # the last bytes of the previous block, for a hint split between blocks
    sep_line = False
    while block := stream.read(_BLOCK):
        if not head:
            if _is_binary(block):
                size, kind = _binary_file(block, stream, digest)
                return FileFacts(digest.hexdigest(), size, CsvFormat("utf-8-sig", ","), kind=kind)
            head = block[:4096]
            bom_encoding = _encoding_from_head(head)
            text = head.decode(bom_encoding or "utf-8", errors="replace")
            first_line = text.lstrip("\ufeff").splitlines()[0] if text.strip() else ""
            hint = _SEP_LINE(first_line)
            if hint is not None:  # Excel's delimiter hint: the header is on the next line
                delimiter, sep_line = hint.group(2), True
                lines = text.lstrip("\ufeff").splitlines()
                header_line = lines[1] if len(lines) > 1 else ""
            else:
                delimiter, header_line = sniff_delimiter(first_line), first_line
            rejected_file = is_rejected_rows_header(next(csv.reader([header_line], delimiter=delimiter), []))
            utf16 = bom_encoding is not None and bom_encoding.startswith("utf-16")
            decoder = codecs.getincrementaldecoder(bom_encoding or "utf-8")()
            # A UTF-8 BOM is no character: the first field starts after it.
            bom = len(codecs.BOM_UTF8) if bom_encoding == "utf-8-sig" else 0
            scanner = _QuoteScanner(delimiter, text=utf16, start=bom)
            runs = _FieldRuns(delimiter, start=bom)
            block_view = block[bom:]
        else:
            block_view = block
        assert decoder is not None and scanner is not None
        digest.update(block)
        size += len(block)
        if utf16:
            if not decode_failed:
                try:
                    piece = decoder.decode(block)
                except UnicodeDecodeError:
                    decode_failed = True
                else:
                    scanner.feed(piece)
                    runs.feed(piece)  # type: ignore[union-attr]
                    nul = nul or "\x00" in piece
                    apostrophes = apostrophes or _APOSTROPHE_TEXT(piece) is not None
            continue
        if not apostrophes and b"'" in block_view:
            apostrophes = _APOSTROPHE_BYTES(tail + block_view) is not None
        tail = block_view[-3:]
        nul = nul or b"\x00" in block_view
        # ASCII-compatible: quoting is followed over the bytes, whichever encoding wins.
        if scanner.open_field or b'"' in block_view:
            scanner.feed(block_view)
        else:
            scanner.skip(block_view)
        runs.feed(block_view)  # type: ignore[union-attr]
        if block.isascii() and not decoder.getstate()[0]:
            continue  # valid in every candidate encoding; the common case, checked at C speed
        if utf8_ok:
            try:
                decoder.decode(block)
                leads = len(block.translate(None, _NOT_LEADS))  # lead bytes: one per character
                multibyte, genuine = multibyte + leads, genuine + leads  # of a valid block: all UTF-8
            except UnicodeDecodeError:
                utf8_ok = False
                valid, bad, sure = _utf8_census(block)
                multibyte, invalid, genuine = multibyte + valid, invalid + bad, genuine + sure
        else:
            valid, bad, sure = _utf8_census(block)
            multibyte, invalid, genuine = multibyte + valid, invalid + bad, genuine + sure
        if cp1252_ok and _CP1252_UNDEFINED.search(block):
            cp1252_ok = False
    if decoder is not None and not decode_failed:
        try:
            if utf16:
                rest = decoder.decode(b"", final=True)
                scanner.feed(rest)  # type: ignore[union-attr]
                runs.feed(rest)  # type: ignore[union-attr]
            elif utf8_ok:
                decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            decode_failed = utf16
            if not utf16:  # the file ends inside a sequence whose lead byte was counted as valid
                utf8_ok = False
                multibyte, invalid, genuine = multibyte - 1, invalid + 1, max(genuine - 1, 0)
    encoding = bom_encoding
    if encoding is None:
        if utf8_ok:
            encoding = "utf-8"
        elif not genuine and multibyte * _CP1252_RATIO < invalid:  # Windows-1252; undefined bytes are errors
            encoding = "cp1252"
            decode_failed = not cp1252_ok
        else:
            encoding = "utf-8"
            decode_failed = True
    elif not utf16 and not utf8_ok:
        decode_failed = True
    csv_format = CsvFormat(encoding, delimiter, sep_line)
    if decode_failed:
        rows = _rows_where(stream, reopen, csv_format, None)
        where = f" in row(s) {rows}" if rows else ""
        if encoding == "utf-8" and bom_encoding is None and multibyte:
            utf8_rows = _rows_where(stream, reopen, csv_format, None, kind="utf-8") if genuine else ""
            mixed = f" (UTF-8 characters are in row(s) {utf8_rows}: the file mixes two encodings)" if utf8_rows else ""
            raise InputFileError(
                f"the file is UTF-8 except for {invalid or 'some'} invalid byte(s){where}{mixed}: fix those "
                "characters (if the whole file is Windows-1252 text, save it again as UTF-8); nothing was sent"
            )
        name = {"utf-8-sig": "UTF-8 (with BOM)", "utf-16": "UTF-16"}.get(encoding, encoding.upper())
        if encoding == "cp1252":
            raise InputFileError(
                "the file's encoding is not readable: it is neither UTF-8, UTF-16 nor Windows-1252"
                f" (bytes Windows-1252 does not define{where}); nothing was sent"
            )
        raise InputFileError(f"the file is not valid {name} text{where}; nothing was sent")
    if nul:
        # The service takes no NUL character, and a header holding them (UTF-16 read as something
        # else) is never shown: the rows are named, the file refused before anything is sent.
        rows = _rows_where(stream, reopen, csv_format, None, utf16=utf16, kind="nul")
        where = f" in row(s) {rows}" if rows else ""
        raise InputFileError(
            f"the file holds NUL characters{where}, which no HR value has (a UTF-16 file without its byte-order "
            "mark? save it again as UTF-8); nothing was sent"
        )
    assert scanner is not None or size == 0
    unclosed = scanner.unclosed_at() if scanner is not None else None
    long_at = runs.too_long_at(encoding) if runs is not None else None
    if long_at is not None and (unclosed is None or long_at < unclosed):
        rows = _rows_where(stream, reopen, csv_format, long_at, utf16=utf16)
        where = f"in row {rows}" if rows else "somewhere"
        raise InputFileError(
            f"the CSV cannot be parsed: a field {where} is longer than {MAX_FIELD_CHARS:,} characters "
            "(a field that large is no HR value: check the delimiter and line breaks); nothing was sent"
        )
    if unclosed is not None:
        rows = _rows_where(stream, reopen, csv_format, unclosed, utf16=utf16)
        where = f"in row {rows}" if rows else "somewhere"
        raise InputFileError(
            f"the CSV cannot be parsed: a quoted field that starts {where} is never closed (an unbalanced "
            f'quote "), or is longer than {MAX_FIELD_CHARS:,} characters; nothing was sent'
        )
    return FileFacts(digest.hexdigest(), size, csv_format, apostrophes and rejected_file)


def _rows_where(
    stream: IO[bytes],
    reopen: Callable[[], IO[bytes]] | None,
    csv_format: CsvFormat,
    offset: int | None,
    *,
    utf16: bool = False,
    kind: str = "invalid",
) -> str:
    """The spreadsheet rows of the bytes that do not decode (offset None; kind "utf-8": the rows
    with characters that do), or of the row holding `offset` (bytes, or characters for UTF-16),
    read again from the start; "" if it cannot be."""
    try:
        if reopen is not None:
            again = reopen()
        elif stream.seekable():
            stream.seek(0)
            again = stream
        else:
            return ""
    except (OSError, HRConnectorError):  # gone or replaced meanwhile: the error stands without rows
        return ""
    with contextlib.ExitStack() as stack:
        if again is not stream:
            stack.enter_context(again)
        raw: IO[bytes] = again
        if offset is not None and not utf16:
            raw = cast(IO[bytes], _Limited(again, offset))
        buffered = io.BufferedReader(cast(io.RawIOBase, raw))
        text = io.TextIOWrapper(buffered, encoding=csv_format.encoding, errors="hrconnector-mark", newline="")
        if again is stream:  # the caller's stream stays open for another look
            stack.callback(lambda: text.detach().detach())
        lines: Iterator[str] = iter(text)
        if offset is not None:
            lines = _up_to(lines, offset if utf16 else None)
        csv.field_size_limit(MAX_FIELD_CHARS)
        reader = csv.reader(lines, delimiter=csv_format.delimiter, strict=False)
        found: list[int] = []
        row = -1 if csv_format.sep_line else 0  # Excel hides the sep= line: the header is row 1
        try:
            for fields in reader:
                row += 1
                if offset is None and any(
                    (_MARK in f)
                    if kind == "invalid"
                    else ("\x00" in f)
                    if kind == "nul"
                    else not f.replace(_MARK, "").isascii()
                    for f in fields
                ):
                    found.append(row)
                    if len(found) > _ROWS_NAMED:
                        break
        except csv.Error:
            return ""
        if offset is not None:
            return str(row)
        named = ", ".join(map(str, found[:_ROWS_NAMED]))
        return named + (" and more" if len(found) > _ROWS_NAMED else "")


_SENTINEL = "\x00"


def _up_to(lines: Iterator[str], chars: int | None) -> Iterator[str]:
    """The lines up to an offset (characters, or wherever the limited bytes end), then one
    character more, so that the last record counted is the one holding the offset."""
    seen = 0
    last: str | None = None
    for line in lines:
        if chars is not None and seen + len(line) > chars:  # the offset is in this line
            if last is not None:
                yield last
            last = line[: chars - seen]
            break
        if last is not None:
            yield last
        last = line
        seen += len(line)
    if last is None:
        yield _SENTINEL
    elif last.endswith(("\n", "\r")):
        yield last
        yield _SENTINEL
    else:
        yield last + _SENTINEL


class _Limited(io.RawIOBase):
    """The first `limit` bytes of a stream."""

    def __init__(self, raw: IO[bytes], limit: int) -> None:
        self._raw = raw
        self._left = limit

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self._left <= 0:
            return 0
        data = self._raw.read(min(len(buffer), self._left))
        n = len(data)
        buffer[:n] = data
        self._left -= n
        return n


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
        if self.format.sep_line:
            self._next()
            self._row = 0  # Excel hides the sep= line: the header is row 1
        header = self._read_header()
        # A rejected-rows file dropped again: its RejectedRow and RejectedReasons columns are our
        # notes, never data for the service; the file's own columns follow them.
        self._skip = len(REJECTED_COLUMNS) if is_rejected_rows_header(header) else 0
        self.header = header[self._skip :]
        # Empty cells after the last name (a trailing delimiter) are no columns, as in a workbook:
        # a row's fields there are checked as extra fields (empty: dropped; a value: set aside).
        while self.header and not self.header[-1].strip():
            self.header.pop()
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
        skip = self._skip
        try:
            for fields in self._reader:
                row += 1
                yield row, fields[skip:] if skip else fields
        except (UnicodeDecodeError, csv.Error) as exc:
            self._row = row  # the error is in the row after the last one read
            raise self._error(exc) from exc
        finally:
            self._row = row
