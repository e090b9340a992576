"""Excel workbooks (.xlsx) as rows: the same header + records a CsvFile gives, from one sheet.

openpyxl (read-only mode) is imported only when a workbook is read, so CSV runs never load it.
It streams the sheet's XML out of the zip. The one part openpyxl would hold whole, the
shared-strings table (every distinct text of the workbook: one e-mail address per employee), is
kept in a temporary file instead (_DiskStrings), so memory does not grow with the workbook.

Cells become the text an admin would type in a CSV: dates and times in ISO 8601 as the
documentation writes them (yyyy-mm-ddThh:mm:ss; a date alone is midnight), whole numbers
without a decimal part (123456, not 123456.0), other numbers to Excel's 15 significant digits
without float noise, booleans as TRUE/FALSE. Rows are numbered as Excel shows them; empty rows
and cells after the last value are not rows or fields at all.
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

from .csvreader import CsvFormat, Record
from .errors import InputFileError

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
    if isinstance(value, dt.time):
        return value.isoformat()
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


def _rows_dropped(source: Any) -> Iterator[tuple[str, Any]]:
    """ElementTree's iterparse as openpyxl's sheet parser uses it, except that each <row> is taken
    out of the tree once the parser has had it: openpyxl clears a row but leaves the empty element
    in <sheetData>, about 90 bytes a row that would add up over a million rows."""
    from xml.etree.ElementTree import iterparse

    parents: list[Any] = []
    # The parser openpyxl itself uses (no defusedxml here): expat >= 2.4.1 caps entity expansion
    # (billion laughs) and ElementTree never fetches external entities.
    for event, element in iterparse(source, events=("start", "end")):  # noqa: S314
        if event == "start":
            parents.append(element)
            continue
        parents.pop()
        yield event, element
        if parents and element.tag == _ROW_TAG:
            parents[-1].remove(element)  # the only child left: the rows before it are gone


_ROW_TAG = "{http://schemas.openxmlformats.org/spreadsheetml/2006/main}row"


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
                    for _, node in iterparse(src):
                        if node.tag == tag:
                            strings.append(Text.from_tree(node).content.replace("x005F_", ""))
                            node.clear()
            strings.finish()
            self.shared_strings = strings

    reader = Reader(stream, read_only=True, data_only=True, keep_links=False)
    reader.read()
    return reader.wb


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
                problem = _kind_of_zip(set(archive.namelist()))
        except (zipfile.BadZipFile, OSError, EOFError) as exc:
            raise InputFileError(
                "the file starts like a ZIP archive (an .xlsx workbook is one) but cannot be read as one: "
                f"it is damaged or incomplete ({type(exc).__name__}); nothing was sent"
            ) from None
        if problem is not None:
            raise InputFileError(f"the file is {problem}; nothing was sent")
        stream.seek(0)
        self._strings = _DiskStrings()
        self._book: Any = None
        try:
            self._book = _load_workbook(stream, self._strings)
        except Exception as exc:  # openpyxl raises many kinds; its messages may quote content
            self.close()
            raise InputFileError(
                f"the workbook cannot be read ({type(exc).__name__}): open it in Excel and save it again as "
                ".xlsx or CSV; nothing was sent"
            ) from None
        names = [ws.title for ws in self._book.worksheets]
        if not names:
            self.close()
            raise InputFileError("the workbook has no worksheet (only charts); nothing was sent")
        self.first_sheet = names[0]
        if sheet is None:
            self.sheet = names[0]
        elif sheet in names:
            self.sheet = sheet
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
        self.header = self._read_header()
        self.header_row = self._row
        self._last_value_row = self._row

    def _next(self) -> list[str] | None:
        try:
            values = next(self._rows)
        except StopIteration:
            return None
        except Exception as exc:  # a damaged sheet part
            raise InputFileError(
                f"the workbook's sheet {self.sheet!r} cannot be read near row {self._row + 1} "
                f"({type(exc).__name__}); nothing more was read"
            ) from None
        self._row += 1
        fields = [cell_text(v) for v in values]
        while fields and not fields[-1].strip():
            fields.pop()
        return fields

    def _read_header(self) -> list[str]:
        while True:
            fields = self._next()
            if fields is None:
                self.close()
                raise InputFileError(
                    f"the workbook's sheet {self.sheet!r} is empty: there is no header row; nothing was sent"
                )
            if fields:
                return fields

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
