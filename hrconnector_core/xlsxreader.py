"""Excel workbooks (.xlsx) as rows: the same header + records a CsvFile gives, from one sheet.

openpyxl (read-only mode) is imported only when a workbook is read, so CSV runs never load it.
It streams the sheet's XML out of the zip. The one part openpyxl would hold whole, the
shared-strings table (every distinct text of the workbook: one e-mail address per employee), is
kept in a temporary file instead (_DiskStrings), so memory does not grow with the workbook.

Cells become the text an admin would type in a CSV: dates and times in ISO 8601 as the
documentation writes them (yyyy-mm-ddThh:mm:ss; a date alone is midnight), whole numbers
without a decimal part (123456, not 123456.0), other numbers to Excel's 15 significant digits
without float noise, booleans as TRUE/FALSE. Rows are numbered as Excel shows them; empty rows
and cells after the last value are not rows or fields at all. A time cell reads like a datetime's
time part (09:30:15, or 09:30:15.500 with a fraction).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import struct
import tempfile
import zipfile
from collections.abc import Iterator
from decimal import Decimal
from typing import IO, Any

from .csvreader import MAX_FIELD_CHARS, CsvFormat, Record
from .errors import InputFileError
from .validation import Issue, Severity

# What the rejected rows of a workbook are written as: CSV that Excel opens with its accents.
WORKBOOK_REJECTS_FORMAT = CsvFormat("utf-8-sig", ",")


def cell_text(value: Any) -> str:
    """A typed cell as the text a CSV export would hold."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, dt.datetime):  # the documentation's form, yyyy-mm-ddThh:mm:ss (no zone in Excel)
        return value.isoformat(timespec="seconds" if not value.microsecond else "milliseconds")
    if isinstance(value, dt.date):
        return f"{value.isoformat()}T00:00:00"
    if isinstance(value, dt.time):  # as a datetime's time part: milliseconds only when there are any
        return value.isoformat(timespec="seconds" if not value.microsecond else "milliseconds")
    if isinstance(value, dt.timedelta):
        return str(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if value.is_integer() and abs(value) < 1e16:
            return str(int(value))
        if value != value or value in (float("inf"), float("-inf")):
            return str(value)
        return format(Decimal(format(value, ".15g")).normalize(), "f")
    return str(value)


_OFFSET = struct.Struct("<Q")


class _DiskStrings:
    """A workbook's shared-strings table in temporary files (texts, and their end offsets), read
    back by index: what openpyxl's sheet parser looks up (`table[int(value)]`), at flat memory.
    The most recent lookups are cached: a scenario or department name repeats on every row."""

    def __init__(self) -> None:
        # Closed in close(), which WorkbookFile calls on every path.
        self._texts = tempfile.TemporaryFile()  # noqa: SIM115
        self._ends = tempfile.TemporaryFile()  # noqa: SIM115
        self._count = 0
        self._end = 0
        self.lookup = functools.lru_cache(maxsize=4096)(self._read)

    def append(self, text: str) -> None:
        data = text.encode("utf-8", "surrogatepass")
        self._texts.write(data)
        self._end += len(data)
        self._ends.write(_OFFSET.pack(self._end))
        self._count += 1

    def finish(self) -> None:
        self._texts.flush()
        self._ends.flush()

    def __len__(self) -> int:
        return self._count

    def __getitem__(self, index: int) -> str:
        if not 0 <= index < self._count:
            raise IndexError(index)
        return self.lookup(index)

    def _read(self, index: int) -> str:
        if index:
            self._ends.seek((index - 1) * _OFFSET.size)
            start, end = struct.unpack("<QQ", self._ends.read(2 * _OFFSET.size))
        else:
            self._ends.seek(0)
            start, end = 0, _OFFSET.unpack(self._ends.read(_OFFSET.size))[0]
        self._texts.seek(start)
        return self._texts.read(end - start).decode("utf-8", "surrogatepass")

    def close(self) -> None:
        self._texts.close()
        self._ends.close()


# Excel's limit for a cell is 32,767 characters; a cell's XML may hold a text up to the CSV limit
# (each character at most 10 bytes as a character reference) and little else.
_MAX_CELL_BYTES = 10 * MAX_FIELD_CHARS + (1 << 20)
# A workbook's parts, uncompressed: far beyond a million-row sheet (about 300 MB), short of a bomb.
MAX_UNCOMPRESSED = 4 << 30
# Deflate reaches about 1000:1 only on repeated bytes; real sheets compress 10 to 50 times.
_MAX_RATIO, _RATIO_FLOOR = 400, 16 << 20

_NS = "{http://schemas.openxmlformats.org/spreadsheetml/2006/main}"
_ROW_TAG, _CELL_TAG, _F_TAG, _V_TAG = f"{_NS}row", f"{_NS}c", f"{_NS}f", f"{_NS}v"
# What a formula cell without a saved result reads as: NUL never occurs in XML text.
NO_RESULT = "\x00formula without a saved result"


class _CappedXml:
    """A part's XML with a cap on the bytes of any one cell (or shared string): expat hands
    ElementTree a text whole, so one 400 MB cell would be 400 MB (and more) in memory. The count
    restarts at each end marker; after `stop` (the end of <sheetData>) nothing is counted."""

    def __init__(self, raw: IO[bytes], markers: tuple[bytes, ...], stop: bytes | None, what: str, after: str) -> None:
        self._raw, self._markers, self._stop, self._what, self._after = raw, markers, stop, what, after
        self._run = 0

    def read(self, size: int = -1) -> bytes:
        data = self._raw.read(size if size and size > 0 else 1 << 16)
        if self._markers:
            if self._stop is not None and data.find(self._stop) >= 0:
                self._markers = ()
                return data
            end = max(data.rfind(m) for m in self._markers)
            self._run = self._run + len(data) if end < 0 else len(data) - end
            if self._run > _MAX_CELL_BYTES:
                raise InputFileError(
                    f"the workbook's {self._what} holds a text longer than {MAX_FIELD_CHARS:,} characters "
                    f"(Excel's own limit is 32,767); {self._after}"
                )
        return data


def _rows_dropped(source: Any) -> Iterator[tuple[str, Any]]:
    """ElementTree's iterparse as openpyxl's sheet parser uses it, except that each <row> is taken
    out of the tree once the parser has had it: openpyxl clears a row but leaves the empty element
    in <sheetData>, about 90 bytes a row that would add up over a million rows. A formula cell
    without a saved result (openpyxl and some tools write none) reads as NO_RESULT, not empty."""
    from xml.etree.ElementTree import iterparse

    parents: list[Any] = []
    formula_cell: Any = None
    # Rows are sent while the sheet is read: the rows before the long cell may have been sent.
    capped = _CappedXml(source, (b"</c>", b"</row>"), b"</sheetData>", "sheet", "nothing more was read")
    # The parser openpyxl itself uses (no defusedxml here): expat >= 2.4.1 caps entity expansion
    # (billion laughs) and ElementTree never fetches external entities.
    for event, element in iterparse(capped, events=("start", "end")):  # noqa: S314
        if event == "start":
            parents.append(element)
            continue
        parents.pop()
        tag = element.tag
        if tag == _F_TAG:
            formula_cell = parents[-1] if parents else None
        elif element is formula_cell:
            formula_cell = None
            value = element.find(_V_TAG)
            # Excel saves an empty text result as t="str" with an empty <v>: that is a result.
            if value is None or (not value.text and element.get("t") != "str"):
                element.set("t", "str")
                if value is None:
                    value = element.makeelement(_V_TAG, {})
                    element.append(value)
                value.text = NO_RESULT
        yield event, element
        if parents and tag == _ROW_TAG:
            parents[-1].remove(element)  # the only child left: the rows before it are gone


def _load_workbook(stream: IO[bytes], strings: _DiskStrings) -> Any:
    """openpyxl's load_workbook (read-only, cached values of formulas, no external links), with
    the shared strings read into `strings` rather than a list."""
    import openpyxl.worksheet._reader as sheet_reader
    from openpyxl.cell.text import Text
    from openpyxl.reader.excel import ExcelReader
    from openpyxl.xml.constants import SHARED_STRINGS, SHEET_MAIN_NS
    from openpyxl.xml.functions import iterparse

    tag = f"{{{SHEET_MAIN_NS}}}si"
    # The sheet parser's module-level iterparse (openpyxl 3.1, pinned; tests/test_xlsx.py reads
    # every kind of sheet through it): rows are dropped from the tree as they are parsed.
    sheet_reader.iterparse = _rows_dropped

    class Reader(ExcelReader):  # type: ignore[misc]
        def read_strings(self) -> None:
            part = self.package.find(SHARED_STRINGS)
            if part is not None:
                with self.archive.open(part.PartName[1:]) as src:
                    for _, node in iterparse(
                        _CappedXml(src, (b"</si>",), None, "shared-strings table", "nothing was sent")
                    ):
                        if node.tag == tag:
                            strings.append(Text.from_tree(node).content.replace("x005F_", ""))
                            node.clear()
            strings.finish()
            self.shared_strings = strings

    reader = Reader(stream, read_only=True, data_only=True, keep_links=False)
    reader.read()
    return reader.wb


def _casefold_match(name: str, names: list[str]) -> str | None:
    """The sheet --sheet names, as Excel matches sheet names: case-insensitively."""
    folded = name.strip().casefold()
    return next((n for n in names if n.casefold() == folded), None)


def _kind_of_zip(names: set[str]) -> str | None:
    """What a zip that is no .xlsx workbook is, for the error message (None: an .xlsx)."""
    if "xl/workbook.xml" in names:
        return None
    if "xl/workbook.bin" in names:
        return "an Excel binary workbook (.xlsb); save it as .xlsx or CSV"
    if "content.xml" in names and "mimetype" in names:
        return "an OpenDocument file (.ods), not an Excel workbook; save it as .xlsx or CSV"
    if "word/document.xml" in names or "ppt/presentation.xml" in names:
        return "a Word or PowerPoint file, not a CSV file or an Excel workbook"
    return "a ZIP archive, not a CSV file or an Excel workbook (.xlsx)"


class WorkbookFile:
    """One sheet of an .xlsx workbook opened for streaming: `header` first, then `records()` once.

    `stream` must be seekable (a zip's directory is at its end); the caller hands in bytes it has
    already verified against the file's hash. Close it (or use it as a context manager).
    """

    format = WORKBOOK_REJECTS_FORMAT

    def __init__(self, stream: IO[bytes], *, sheet: str | None = None) -> None:
        try:
            with zipfile.ZipFile(stream) as archive:
                members = archive.infolist()
                problem = _kind_of_zip({m.filename for m in members})
        except (zipfile.BadZipFile, OSError, EOFError) as exc:
            raise InputFileError(
                "the file starts like a ZIP archive (an .xlsx workbook is one) but cannot be read as one: "
                f"it is damaged or incomplete ({type(exc).__name__}); nothing was sent"
            ) from None
        if problem is not None:
            raise InputFileError(f"the file is {problem}; nothing was sent")
        # Sizes a zip declares are the sizes zipfile will read (it stops and fails past them).
        if sum(m.file_size for m in members) > MAX_UNCOMPRESSED or any(
            m.file_size > _RATIO_FLOOR and m.file_size > _MAX_RATIO * max(m.compress_size, 1) for m in members
        ):
            raise InputFileError(
                "the workbook unpacks to far more than its size on disk (over "
                f"{MAX_UNCOMPRESSED >> 30} GiB, or a part over {_MAX_RATIO} times its packed size), as a "
                "zip bomb does; open it in Excel and save it again, or save it as CSV; nothing was sent"
            )
        stream.seek(0)
        self._strings = _DiskStrings()
        self._book: Any = None
        try:
            self._book = _load_workbook(stream, self._strings)
        except InputFileError:
            self.close()
            raise
        except Exception as exc:  # openpyxl raises many kinds; its messages may quote content
            self.close()
            raise InputFileError(
                f"the workbook cannot be read ({type(exc).__name__}): open it in Excel and save it again as "
                ".xlsx or CSV; nothing was sent"
            ) from None
        names = [ws.title for ws in self._book.worksheets]
        # Hidden sheets are lookup tables and the like: the default is the first one Excel shows.
        visible = [ws.title for ws in self._book.worksheets if getattr(ws, "sheet_state", "visible") == "visible"]
        if not names:
            self.close()
            raise InputFileError("the workbook has no worksheet (only charts); nothing was sent")
        self.first_sheet = visible[0] if visible else names[0]
        if sheet is None:
            self.sheet = self.first_sheet
        elif (found := sheet if sheet in names else _casefold_match(sheet, names)) is not None:
            self.sheet = found
        else:
            self.close()
            raise InputFileError(
                f"the workbook has no sheet named {sheet!r}; its sheets: {', '.join(map(repr, names))}"
            )
        worksheet = self._book[self.sheet]
        # The dimension Excel records may claim thousands of empty rows or columns: ignore it and
        # read the cells that are there.
        worksheet.reset_dimensions()
        self._rows: Iterator[tuple[Any, ...]] = iter(worksheet.iter_rows(values_only=True))
        self._row = 0
        self._last_value_row = 0
        self._lead = 0  # empty columns left of the header: not part of the table
        self._problems: dict[int, list[Issue]] = {}  # row -> why it is set aside (see set_aside)
        self.header = self._read_header()
        self.header_row = self._row
        self._last_value_row = self._row

    def _next(self) -> list[str] | None:
        try:
            values = next(self._rows)
        except StopIteration:
            return None
        except InputFileError:
            raise
        except Exception as exc:  # a damaged sheet part
            raise InputFileError(
                f"the workbook's sheet {self.sheet!r} cannot be read near row {self._row + 1} "
                f"({type(exc).__name__}); nothing more was read"
            ) from None
        self._row += 1
        fields = [cell_text(v) for v in values]
        while fields and not fields[-1].strip():
            fields.pop()
        if sum(map(len, fields)) > MAX_FIELD_CHARS and any(len(f) > MAX_FIELD_CHARS for f in fields):
            raise InputFileError(
                f"the workbook's sheet {self.sheet!r} has a cell longer than {MAX_FIELD_CHARS:,} characters in "
                f"row {self._row}; nothing more was read"
            )
        lead = self._lead
        if lead and any(f.strip() for f in fields[:lead]):
            self._problem(
                "value-outside-table",
                [i for i in range(lead) if fields[i].strip()],
                "holds a value left of the table (the header starts further right): move it into a named column",
            )
        if NO_RESULT in fields:
            self._problem(
                "formula-without-result",
                [i for i, f in enumerate(fields) if f == NO_RESULT],
                "holds a formula without a saved result: open the workbook in Excel and save it, or paste values",
            )
            fields = ["" if f == NO_RESULT else f for f in fields]
        return fields[lead:] if lead else fields

    def _problem(self, code: str, columns: list[int], what: str) -> None:
        from openpyxl.utils import get_column_letter

        header = getattr(self, "header", None)
        for i in columns:
            letter = get_column_letter(i + 1)
            if header is None:  # the header row itself: nothing can be sent without it
                self.close()
                raise InputFileError(
                    f"the workbook's sheet {self.sheet!r}: header cell {letter}{self._row} {what}; nothing was sent"
                )
            name = header[i - self._lead] if 0 <= i - self._lead < len(header) else None
            column = f"column {letter}" + (f" ({name})" if name else "")
            self._problems.setdefault(self._row, []).append(
                Issue(self._row, name, code, f"cell {letter}{self._row} ({column}) {what}", Severity.ERROR)
            )

    def _read_header(self) -> list[str]:
        while True:
            fields = self._next()
            if fields is None:
                self.close()
                raise InputFileError(
                    f"the workbook's sheet {self.sheet!r} is empty: there is no header row; nothing was sent"
                )
            if fields:
                # The table starts at its first named column (a sheet may leave column A empty).
                self._lead = next(i for i, f in enumerate(fields) if f.strip())
                return fields[self._lead :]

    def set_aside(self, records: Iterator[Record], sink: Any) -> Iterator[Record]:
        """`records` without the rows this reader found unfit to send (a formula without a saved
        result, a value left of the table): those go to `sink.rejected` with their reasons."""
        problems = self._problems
        for record in records:
            issues = problems.pop(record[0], None) if problems else None
            if issues is None:
                yield record
            else:
                sink.rejected(record, issues)

    @property
    def data_rows(self) -> int:
        """Rows after the header up to the last one holding a value (empty ones between included)."""
        return self._last_value_row - self.header_row

    def records(self) -> Iterator[Record]:
        """Every row after the header up to the last with a value; empty ones as empty field lists."""
        width = len(self.header)
        while (fields := self._next()) is not None:
            if not fields:
                continue  # yielded later, only if a row with values follows
            for blank in range(self._last_value_row + 1, self._row):
                yield blank, []
            self._last_value_row = self._row
            if len(fields) < width:
                fields.extend([""] * (width - len(fields)))
            yield self._row, fields

    def close(self) -> None:
        with contextlib.suppress(Exception):
            if self._book is not None:
                self._book.close()
        self._strings.close()

    def __enter__(self) -> WorkbookFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
