"""read -> validate -> chunk -> upload -> report: the one path used by the CLI and the Function."""

from __future__ import annotations

import contextvars
import gc
import hashlib
import io
import logging
import os
import re
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Generator, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, replace
from enum import Enum
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, BinaryIO, Protocol, cast

from .checkpoint import (
    Checkpoint,
    CheckpointError,
    CheckpointKey,
    CheckpointLockedError,
    CheckpointRecorder,
    CheckpointStore,
    DamagedCheckpointError,
    HeldLock,
    LockingStore,
    chunk_digest,
)
from .chunking import DEFAULT_RECORDS_PER_CALL, Chunk, make_chunks
from .csvreader import CsvFile, FileFacts, Record, inspect_stream
from .errors import ConfigurationError, HRConnectorError, InputFileError, UploadError
from .mapping import Mapping, describe_unplaced, header_name, infer_mapping
from .report import ChunkReport, RejectedRowsWriter, RunReport, reject_neutralised, utc_now
from .schema import SCENARIOS
from .validation import RowValidator
from .xlsxreader import WorkbookFile

if TYPE_CHECKING:  # a dry run never loads requests
    from .ingestion import IngestionClient

log = logging.getLogger(__name__)
# One line per chunk uploaded: INFO (the Function's log keeps it); the command line shows it only
# with --verbose, so that its progress bar keeps its line.
chunk_log = logging.getLogger(f"{__name__}.chunks")

DEFAULT_MAX_CONCURRENCY = 8
_HASH_BLOCK = 1 << 20


class Source(Protocol):
    """Where the CSV bytes come from: a local file here, a blob in the Function."""

    name: str

    def open(self) -> BinaryIO: ...


class LocalFileSource:
    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.name = self.path.name

    def open(self) -> BinaryIO:
        try:
            return self.path.open("rb")
        except OSError as exc:
            raise ConfigurationError(f"cannot open {str(self.path)!r}: {exc.strerror}") from exc


def inspect(source: Source) -> FileFacts:
    """The file's SHA-256, size and CSV format (one pass over its bytes; an error reads it again for rows)."""
    return _inspect(source)[0]


class FileChangedError(InputFileError):
    """The bytes read for upload are not the bytes the first pass hashed."""


@dataclass(frozen=True)
class _Blocks:
    """The SHA-256 of every _HASH_BLOCK bytes of the first pass: the read pass checks each block
    before its rows are parsed, so nothing is sent that the file's hash does not describe."""

    digests: tuple[bytes, ...]
    size: int


class _BlockHasher(io.RawIOBase):
    """Passes a stream through, keeping the digest of each block (for _VerifiedReader)."""

    def __init__(self, raw: BinaryIO) -> None:
        self._raw = raw
        self._digests: list[bytes] = []
        self._hash = hashlib.sha256()
        self._filled = 0
        self.size = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self._raw.read(len(buffer))
        n = len(data)
        buffer[:n] = data
        view = memoryview(data)
        while view:
            take = min(len(view), _HASH_BLOCK - self._filled)
            self._hash.update(view[:take])
            self._filled += take
            view = view[take:]
            if self._filled == _HASH_BLOCK:
                self._digests.append(self._hash.digest())
                self._hash, self._filled = hashlib.sha256(), 0
        self.size += n
        return n

    def blocks(self) -> _Blocks:
        while self.read(_HASH_BLOCK):  # whatever the first pass left unread
            pass
        tail = (self._hash.digest(),) if self._filled else ()
        return _Blocks((*self._digests, *tail), self.size)


class _VerifiedReader(io.RawIOBase):
    """The read pass: hands on a block of bytes only once it matches the first pass's block;
    counts the bytes for progress."""

    def __init__(self, raw: BinaryIO, blocks: _Blocks) -> None:
        self._raw = raw
        self._blocks = blocks
        self._index = 0
        self._buffer = memoryview(b"")
        self.count = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if not self._buffer:
            self._buffer = memoryview(self._next_block())
        n = min(len(buffer), len(self._buffer))
        buffer[:n] = self._buffer[:n]
        self._buffer = self._buffer[n:]
        return n

    def _next_block(self) -> bytes:
        parts, wanted = [], _HASH_BLOCK
        while wanted and (data := self._raw.read(wanted)):
            parts.append(data)
            wanted -= len(data)
        block = b"".join(parts)
        expected = self._blocks.digests[self._index] if self._index < len(self._blocks.digests) else None
        if (block or expected is not None) and (expected is None or hashlib.sha256(block).digest() != expected):
            raise FileChangedError(
                f"the file changed while it was being uploaded (from byte {self.count:,} on it differs from what "
                "was hashed before the upload); nothing past that point was sent. Run again when nothing writes "
                "to the file any more"
            )
        self._index += 1
        self.count += len(block)
        return block


RowFile = CsvFile | WorkbookFile


@contextmanager
def open_rows(
    source: Source, facts: FileFacts | None = None, blocks: _Blocks | None = None, *, sheet: str | None = None
) -> Iterator[tuple[RowFile, _VerifiedReader]]:
    """The file's rows (CSV, or a workbook's sheet), from bytes checked block by block against
    the first pass (`blocks`; None: the first pass is made here).

    A workbook is a zip, read from its end: its verified bytes are copied to a spooled temporary
    file first (in memory up to 1 MiB, on disk beyond), so memory stays flat for any size.
    """
    if facts is None or blocks is None:
        facts, blocks = _inspect(source)
    with source.open() as raw:
        counting = _VerifiedReader(raw, blocks)
        if facts.kind != "xlsx":
            yield CsvFile(io.BufferedReader(counting, buffer_size=_HASH_BLOCK), csv_format=facts.format), counting
            return
        with tempfile.SpooledTemporaryFile(max_size=_HASH_BLOCK) as copy:
            shutil.copyfileobj(counting, copy, _HASH_BLOCK)
            copy.seek(0)
            with WorkbookFile(copy, sheet=sheet) as workbook:
                yield workbook, counting


def _first_sheet_as_default(source: Source, facts: FileFacts, blocks: _Blocks, options: UploadOptions) -> UploadOptions:
    """--sheet naming the first sheet is the default: the same checkpoint, so the same upload is
    not sent twice under two names (costs one more read of the workbook, only with --sheet)."""
    with open_rows(source, facts, blocks, sheet=options.sheet) as (rows, _):
        assert isinstance(rows, WorkbookFile)
        first, found = rows.first_sheet, rows.sheet
    return replace(options, sheet=None if found == first else found)


def content_id(facts: FileFacts, options: UploadOptions) -> str:
    """What a checkpoint is kept for: the file's bytes, and for a workbook the sheet asked for."""
    if facts.kind != "xlsx" or options.sheet is None:
        return facts.sha256
    return hashlib.sha256(f"{facts.sha256}\nsheet:{options.sheet}".encode()).hexdigest()


def _inspect(source: Source) -> tuple[FileFacts, _Blocks]:
    named_xlsx = source.name.lower().endswith((".xlsx", ".xlsm"))
    not_workbook = InputFileError(
        "the file is named .xlsx but is not a workbook (an Excel lock file ~$name.xlsx, or another kind of "
        "file renamed); nothing was sent"
    )
    with source.open() as stream:
        hasher = _BlockHasher(stream)
        buffered = io.BufferedReader(hasher, buffer_size=_HASH_BLOCK)
        # A zip is a workbook (or says what it is); an OLE file is an encrypted workbook or an .xls.
        if named_xlsx and not buffered.peek(8)[:8].startswith((b"PK\x03\x04", b"PK\x05\x06", _OLE)):
            raise not_workbook
        facts = inspect_stream(buffered, reopen=source.open)
        return facts, hasher.blocks()


_OLE = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"


class Policy(str, Enum):
    UPLOAD_VALID = "upload-valid"  # upload the valid rows, set the invalid ones aside
    REJECT_FILE = "reject-file"  # upload nothing when any row is invalid


@dataclass(frozen=True)
class UploadOptions:
    job_id: str
    records_per_call: int = DEFAULT_RECORDS_PER_CALL
    max_concurrency: int = DEFAULT_MAX_CONCURRENCY
    force: bool = False
    dry_run: bool = False
    mapping: Mapping | None = None  # None: the documentation's column names
    policy: Policy = Policy.UPLOAD_VALID
    sheet: str | None = None  # a workbook's sheet; None: its first

    def __post_init__(self) -> None:
        if self.records_per_call < 1:
            raise ConfigurationError("records per call must be at least 1")
        if self.max_concurrency < 1:
            raise ConfigurationError("max concurrency must be at least 1")


@dataclass(frozen=True)
class Progress:
    bytes_read: int
    bytes_total: int
    chunks_done: int
    rows_uploaded: int


def run_upload(
    source: Source,
    options: UploadOptions,
    *,
    client: IngestionClient | None,
    store: CheckpointStore | None,
    progress: Callable[[Progress], None] | None = None,
    rejected_rows: RejectedRowsWriter | None = None,
) -> RunReport:
    """Upload every valid row of `source` once; never raises for a bad file or a failed upload.

    Errors end up in `report.error` and in the per-chunk entries; the report's status says
    whether every row reached the service. Rows set aside go to `rejected_rows` too.
    """
    expect_sha256 = None
    if options.policy is Policy.REJECT_FILE and not options.dry_run and not _uploaded_in_full(source, options, store):
        check = run_upload(source, replace(options, dry_run=True), client=None, store=None, rejected_rows=rejected_rows)
        if check.error or check.rows.rejected:
            return _nothing_sent(check, options)
        rejected_rows, expect_sha256 = None, check.file_sha256
    report = RunReport(
        file_name=source.name,
        job_id=options.job_id,
        records_per_call=options.records_per_call,
        max_concurrency=options.max_concurrency,
        dry_run=options.dry_run,
        policy=options.policy.value,
        rejected_rows=rejected_rows,
    )
    started = time.monotonic()
    interrupted: KeyboardInterrupt | None = None
    try:
        _run(source, options, client, store, report, progress, expect_sha256=expect_sha256)
    except CheckpointLockedError as exc:
        report.error, report.not_run = str(exc), True
        log.log(_level(exc), "%s: %s", source.name, exc, extra={"run_error": True})
    except HRConnectorError as exc:
        report.error = str(exc)
        log.log(_level(exc), "%s: %s", source.name, exc, extra={"run_error": True})
    except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM turned into one by the CLI: still report
        interrupted = exc
        report.error = (
            f"interrupted ({getattr(exc, 'reason', 'Ctrl-C')}): nothing more was sent; the checkpoint keeps what "
            "the service accepted, so running again sends the rest"
        )
    finally:
        report.duration_s = time.monotonic() - started
        report.finished_at = utc_now()
        if rejected_rows is not None:
            rejected_rows.close()
    if client is not None:
        report.token_fetches = client.token_fetches
    if interrupted is not None:
        raise RunInterrupted(report, getattr(interrupted, "reason", "Ctrl-C")) from interrupted
    return report


def _level(exc: HRConnectorError) -> int:
    """A run that stopped because another run owns the file (`quiet`) is not a failure: WARNING."""
    return logging.WARNING if getattr(exc, "quiet", False) else logging.ERROR


class RunInterrupted(KeyboardInterrupt):
    """A run stopped by Ctrl-C or SIGTERM, with its report (every row accounted for)."""

    def __init__(self, report: RunReport, reason: str) -> None:
        super().__init__(reason)
        self.report = report
        self.reason = reason


def _uploaded_in_full(source: Source, options: UploadOptions, store: CheckpointStore | None) -> bool:
    """Whether this content is known to be in the service already: then the reject-file policy's
    validation pass is not needed (the run says so), whatever today's rules make of the rows."""
    if store is None or options.force:
        return False
    try:
        checkpoint = store.load(
            CheckpointKey(content_id(inspect(source), options), options.job_id, options.records_per_call)
        )
    except HRConnectorError:
        return False  # the run proper reports it
    return checkpoint is not None and checkpoint.finished and _accepted_rows(checkpoint) > 0


def _accepted_rows(checkpoint: Checkpoint) -> int:
    return (
        checkpoint.rows.get("uploaded", sum(checkpoint.completed.values()))
        if checkpoint.rows
        else sum(checkpoint.completed.values())
    )


def _nothing_sent(check: RunReport, options: UploadOptions) -> RunReport:
    """The reject-file policy's answer: the validation pass's report, with nothing uploaded."""
    check.dry_run = False
    check.rows.not_uploaded += check.rows.planned
    check.rows.planned = 0
    for chunk in check.chunks:
        chunk.status = "not-attempted"
    if not check.error:
        check.error = (
            f"policy {options.policy.value}: {check.rows.rejected} invalid row(s); nothing was uploaded. "
            "Fix the rows listed and upload the file again, or use the upload-valid policy"
        )
    return check


def _run(
    source: Source,
    options: UploadOptions,
    client: IngestionClient | None,
    store: CheckpointStore | None,
    report: RunReport,
    progress: Callable[[Progress], None] | None,
    *,
    expect_sha256: str | None = None,
) -> None:
    if client is None and not options.dry_run:
        raise ConfigurationError("an ingestion client is needed unless this is a dry run")
    if client is not None:
        report.ingestion_url = client.url
    facts, blocks = _inspect(source)  # file-level checks (encoding) before anything is sent
    report.file_bytes, report.file_sha256 = facts.size, facts.sha256
    if facts.kind == "xlsx":
        report.encoding, report.delimiter = "xlsx", ""
    else:
        report.encoding, report.delimiter = facts.format.encoding, facts.format.delimiter
    if expect_sha256 is not None and facts.sha256 != expect_sha256:
        raise FileChangedError(
            "the file changed after it was validated; nothing was sent. Run again when it is complete"
        )
    if facts.kind == "xlsx" and options.sheet is not None:
        options = _first_sheet_as_default(source, facts, blocks, options)
    # One checkpoint (and one lock) per file content and job, whatever the settings.
    found = CheckpointKey(content_id(facts, options), options.job_id, options.records_per_call)
    with _lock(store, found, options) as held:
        checkpoint = _load(source, options, store, found)
        if checkpoint is not None and checkpoint.finished:
            if _accepted_rows(checkpoint) > 0:
                listed = bool(checkpoint.rows.get("rejected")) and _list_rejected_again(
                    source, options, report, facts, blocks, checkpoint
                )
                _already_uploaded(source, report, checkpoint, rejected_listed=listed)
                return
            # Nothing of this content reached the service (every row was rejected): nothing can
            # arrive twice, so it is read again under today's mapping and policy.
            log.info("%s: no row of this content was accepted before; reading it again", source.name)
            if not options.dry_run and store is not None:
                store.delete(found)
            checkpoint = None
        if checkpoint is None and not options.dry_run:
            _check_no_other_partial_upload(source, options, store, content_id(facts, options))
        _read_and_upload(source, options, client, store, report, progress, facts, blocks, checkpoint, held)


def _read_and_upload(
    source: Source,
    options: UploadOptions,
    client: IngestionClient | None,
    store: CheckpointStore | None,
    report: RunReport,
    progress: Callable[[Progress], None] | None,
    facts: FileFacts,
    blocks: _Blocks,
    checkpoint: Checkpoint | None,
    held: HeldLock | None = None,
) -> None:
    with open_rows(source, facts, blocks, sheet=options.sheet) as (csv_file, counting), _fewer_collections():
        if isinstance(csv_file, WorkbookFile):
            report.notes.append(f"read sheet {csv_file.sheet!r} of the workbook")
        check_header(csv_file.header)
        if report.rejected_rows is not None:
            report.rejected_rows.header = csv_file.header
            report.rejected_rows.csv_format = csv_file.format
        mapping = options.mapping if options.mapping is not None else default_mapping(csv_file.header)
        report.mapping = mapping.to_dict()
        validator = RowValidator(csv_file.header, mapping)
        report.header = csv_file.header  # only a header the mapping accepted is shown (never a data row)
        key = checkpoint_key(facts, options, mapping)
        if checkpoint is not None:
            _check_resumable(checkpoint, key)
            if checkpoint.completed:
                _verify_skipped_chunks(source, options, facts, blocks, mapping, checkpoint)
        recorder = CheckpointRecorder(
            None if options.dry_run else store, checkpoint or Checkpoint(key, file_name=source.name)
        )
        recorder.save()  # proves the store can be written before the first chunk is sent
        read = cast(Generator[Record, None, None], csv_file.records())  # closed if the run stops early
        chunks = make_chunks(
            sent_header(csv_file.header),
            validator.validate_rows(_records(csv_file, facts, report, read), report),
            records_per_call=options.records_per_call,
        )
        uploader = _ChunkUploader(client, recorder, report, options.max_concurrency, held)
        total = 0
        completed = False
        try:
            for chunk in chunks:
                total += 1
                uploader.handle(chunk, dry_run=options.dry_run)
                if progress is not None:
                    progress(Progress(counting.count, report.file_bytes, len(report.chunks), report.rows.uploaded))
            completed = True
        finally:
            # On Ctrl-C or SIGTERM no new chunk is handed over; those already handed over (at most
            # two per upload thread) finish and are recorded, so the checkpoint says what was sent.
            uploader.close()
            report.scenarios = validator.scenario_counts()
            if not completed:
                read.close()  # a run stopped between rows: the reader's count is final
                _account_unread(report, csv_file.data_rows)
            report.rows.rows_in = csv_file.data_rows
            unrecorded = uploader.unrecorded_error()
            if unrecorded is not None:
                uploader.error = unrecorded
        if progress is not None:
            progress(Progress(report.file_bytes, report.file_bytes, len(report.chunks), report.rows.uploaded))

    report.accepted_at = recorder.checkpoint.accepted_at
    if report.rows.rows_in == report.rows.skipped:
        raise InputFileError("the file has a header but no data rows")
    if not report.rows.balanced:  # a bug, never a bad file: say so rather than claim success
        raise HRConnectorError(f"row accounting does not balance: {report.to_dict()['rows']}")
    if uploader.error is not None:
        raise uploader.error
    if not options.dry_run and len(recorder.checkpoint.completed) == total and not recorder.checkpoint.finished:
        rows = report.rows
        recorder.finish(
            total,
            {
                "in": rows.rows_in,
                "uploaded": rows.uploaded + rows.previously_uploaded,
                "rejected": rows.rejected,
                "skipped": rows.skipped,
            },
            report.scenarios,
        )


def _account_unread(report: RunReport, rows_read: int) -> None:
    """A run stopped part-way (the file changed, an interrupt): rows read but not yet in a chunk
    count as not uploaded, so the report still balances; rows after them were never read."""
    rows = report.rows
    handed = rows.uploaded + rows.previously_uploaded + rows.rejected + rows.skipped + rows.not_uploaded + rows.planned
    if rows_read > handed:
        rows.not_uploaded += rows_read - handed
    report.notes.append(
        f"the run stopped after reading {rows_read} row(s): rows past them were not read (and not sent); "
        "rows read but not sent are counted as not uploaded"
    )


def _lock(store: CheckpointStore | None, key: CheckpointKey, options: UploadOptions) -> AbstractContextManager[Any]:
    """Two runs of one file content and job never upload at once (a store that can lock)."""
    if store is None or options.dry_run or not isinstance(store, LockingStore):
        return nullcontext()
    return store.lock(key)  # type: ignore[no-any-return]


def _check_no_other_partial_upload(
    source: Source, options: UploadOptions, store: CheckpointStore | None, sha256: str
) -> None:
    """A file replaced part-way through its upload (a re-export) is new content with a new
    checkpoint: sending it would send again every row the earlier content already delivered.
    Refuse unless forced, naming the earlier checkpoint (command line: stores that can list)."""
    unfinished = getattr(store, "unfinished", None)
    if unfinished is None:
        return
    others = [(path, cp) for path, cp in unfinished(source.name, options.job_id) if cp.key.file_sha256 != sha256]
    if not others:
        return
    if options.force:
        for path, cp in others:
            log.warning("%s: forced: forgetting the unfinished upload of earlier content (%s)", source.name, path)
            assert store is not None
            store.delete(cp.key)
        return
    path, cp = others[0]
    raise CheckpointError(
        f"an earlier upload of a file named {source.name!r} to this job stopped part-way "
        f"({len(cp.completed)} chunk(s), {sum(cp.completed.values())} rows accepted; checkpoint {str(path)!r}) "
        "and the file's content has changed since. Nothing was sent: sending this content would send again "
        "every row the earlier content already delivered. To finish the earlier upload, put the earlier file "
        "back and run again; to send this content in full anyway (rows already accepted arrive again), run "
        "with --force"
    )


def _load(
    source: Source, options: UploadOptions, store: CheckpointStore | None, key: CheckpointKey
) -> Checkpoint | None:
    """The checkpoint to resume from, or None; --force forgets it (a damaged one too)."""
    if store is None:
        return None
    try:
        checkpoint = store.load(key)
    except DamagedCheckpointError as exc:
        if not options.force:
            raise DamagedCheckpointError(
                f"{exc}. It records which chunks of this file the service already accepted, so it is not "
                f"ignored. To start over, run again with --force (in the Function: delete checkpoint {key.id}): every "
                "row is sent again (rows the service already accepted arrive twice)"
            ) from None
        if options.dry_run:
            return None
        log.warning("%s: forced: removing a damaged checkpoint; every row is sent again", source.name)
        store.delete(key)
        return None
    if checkpoint is not None and options.force:
        if not options.dry_run:
            log.info("%s: forced: forgetting %d uploaded chunk(s)", source.name, len(checkpoint.completed))
            store.delete(key)
        return None
    if checkpoint is not None and not checkpoint.finished:
        log.info("%s: resuming: %d chunk(s) already uploaded", source.name, len(checkpoint.completed))
    return checkpoint


def _already_uploaded(source: Source, report: RunReport, checkpoint: Checkpoint, *, rejected_listed: bool) -> None:
    """A file content uploaded in full to this job is not read again, whatever the settings now."""
    rows = checkpoint.rows or {"in": sum(checkpoint.completed.values()), "uploaded": sum(checkpoint.completed.values())}
    report.rows.rows_in = rows.get("in", 0)
    report.rows.previously_uploaded = rows.get("uploaded", 0)
    report.rows.rejected = rows.get("rejected", 0)
    report.rows.skipped = rows.get("skipped", 0)
    report.scenarios = checkpoint.scenarios  # what the file holds, e.g. for the Function's profile refresh
    report.accepted_at = checkpoint.accepted_at
    note = (
        f"this file's content was already uploaded in full to this job on {checkpoint.finished_at}; "
        "nothing was sent (use --force to send it again)"
    )
    rejected = rows.get("rejected", 0)
    if rejected:
        note = (
            f"this file's content was uploaded to this job on {checkpoint.finished_at}: "
            f"{rows.get('uploaded', 0)} row(s) accepted, {rejected} row(s) rejected then and never sent. "
            "Nothing was sent now. To send the rejected rows, fix them "
            f"({'listed again in this report' if rejected_listed else 'the rejected rows of that run list them'}) "
            "and upload a file holding only those rows; "
            "--force sends every row again (the accepted rows arrive twice)"
        )
    report.notes.append(note)
    log.info("%s: %s", source.name, note)


def _list_rejected_again(
    source: Source, options: UploadOptions, report: RunReport, facts: FileFacts, blocks: _Blocks, checkpoint: Checkpoint
) -> bool:
    """The rows an earlier run rejected, listed again with their reasons (issues, rejected-rows
    file) by a validation-only pass: that run may have died before it wrote them (a Function run
    that lost its lease after its last chunk). Only under the rules that run used; nothing is sent."""
    with open_rows(source, facts, blocks, sheet=options.sheet) as (csv_file, _), _fewer_collections():
        mapping = options.mapping if options.mapping is not None else default_mapping(csv_file.header)
        if checkpoint_key(facts, options, mapping).plan != checkpoint.key.plan:
            return False  # other rules now: they would list other rows
        if report.rejected_rows is not None:
            report.rejected_rows.header = csv_file.header
            report.rejected_rows.csv_format = csv_file.format
        listing = RunReport(file_name=source.name, job_id=options.job_id, rejected_rows=report.rejected_rows)
        for _ in RowValidator(csv_file.header, mapping).validate_rows(_records(csv_file, facts, listing), listing):
            pass
    report.issues, report.issue_counts = listing.issues, listing.issue_counts
    report.header, report.mapping = csv_file.header, mapping.to_dict()
    return True


def _check_resumable(checkpoint: Checkpoint, key: CheckpointKey) -> None:
    """A partial upload resumes only under the chunk plan it was made with, and only with chunk
    digests to check every chunk it skips against."""
    old = checkpoint.key
    if (old.records_per_call, old.plan) != (key.records_per_call, key.plan):
        raise ConfigurationError(
            f"this file was partly uploaded to this job ({len(checkpoint.completed)} chunk(s)) with other settings: "
            f"{_describe_plan(old)}; now {_describe_plan(key)}. Resuming under other settings could send rows "
            "twice. Run again with the earlier --records-per-call, --mapping and --policy (the connector's "
            "settings in the Function) to send the rest, or with --force to send every row again"
        )
    if set(checkpoint.completed) - set(checkpoint.digests):
        raise DamagedCheckpointError(
            "the checkpoint of this partial upload is damaged: it lists chunks without their digests, so they "
            "cannot be checked against the file. Run again with --force to send every row again (rows the "
            "service already accepted arrive twice)"
        )


def _records(
    csv_file: RowFile, facts: FileFacts, report: RunReport, records: Iterator[Record] | None = None
) -> Iterator[Record]:
    """The file's records; cells our rejected-rows file neutralised are set aside, not sent."""
    records = csv_file.records() if records is None else records
    if isinstance(csv_file, WorkbookFile):
        records = csv_file.set_aside(records, report)
    return reject_neutralised(records, report) if facts.apostrophe_formulas else records


def _verify_skipped_chunks(
    source: Source,
    options: UploadOptions,
    facts: FileFacts,
    blocks: _Blocks,
    mapping: Mapping,
    checkpoint: Checkpoint,
) -> None:
    """Before anything is sent on resume, re-make every chunk the checkpoint lists (reading up to
    the last of them, nothing is sent) and compare it with the digest of the chunk the service
    accepted: skipping a chunk that differs would leave rows unsent, sending around it twice."""
    last = max(checkpoint.completed)
    with open_rows(source, facts, blocks, sheet=options.sheet) as (csv_file, _):
        validator = RowValidator(csv_file.header, mapping)
        counts = RunReport(file_name=source.name, job_id=options.job_id)  # this pass's counts are not kept
        chunks = make_chunks(
            sent_header(csv_file.header),
            validator.validate_rows(_records(csv_file, facts, counts), counts),
            records_per_call=options.records_per_call,
        )
        for chunk in chunks:
            if chunk.index in checkpoint.completed and checkpoint.digests.get(chunk.index) != chunk_digest(chunk.data):
                raise CheckpointError(
                    f"chunk {chunk.index} (rows {chunk.first_row}-{chunk.last_row}) is not the chunk the service "
                    "accepted in an earlier run (the file is read differently now); nothing was sent. "
                    "Run again with --force to send every row again (rows already accepted arrive twice)"
                )
            if chunk.index == last:
                return
    raise CheckpointError(
        f"the checkpoint lists chunk {last} but the file makes fewer chunks now; nothing was sent. "
        "Run again with --force to send every row again (rows already accepted arrive twice)"
    )


def _describe_plan(key: CheckpointKey) -> str:
    mapping, _, policy = key.plan.partition(":")
    return f"{key.records_per_call} records per call, policy {policy or '?'}, mapping {mapping or '?'}"


# A header cell that holds a value rather than a name: an e-mail address, a date, a number.
_DATA_LIKE = re.compile(
    # (a number: the lookahead finds a digit, then one class run to the end: linear in the cell,
    # where two runs around the digit would backtrack quadratically on a long cell of digits)
    r"@|^\s*\d{1,4}[-/.]\d{1,2}[-/.]\d{1,4}|^(?=[^\d]*\d)[\s\d.,:+-]*$"
    r"|(?i:\b(?:jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)[a-z]*\.?\s+\d{1,2}(?:st|nd|rd|th)?,?\s+\d{4}\b)"
    r"|(?i:\b\d{1,2}(?:st|nd|rd|th)?\s+(?:jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)[a-z]*\.?,?\s+\d{4}\b)"
)


def check_header(header: list[str]) -> None:
    """A file without a header would show its first record as column names: in messages, logs
    and the report. Refuse it, naming only column positions. A column without a name cannot be
    mapped or sent (the service would get an empty column name): refused too."""
    unnamed = [str(n) for n, cell in enumerate(header, 1) if not cell.strip()]
    if unnamed:
        raise InputFileError(
            f"the file has a header cell without a name, column(s) {', '.join(unnamed[:10])}: name each column "
            "that holds data, or delete the empty column; nothing was sent"
        )
    positions = [str(n) for n, cell in enumerate(header, 1) if _DATA_LIKE.search(cell)]
    if positions:
        raise InputFileError(
            f"the first row looks like data, not a header: column(s) {', '.join(positions[:10])} hold an e-mail "
            "address, a date or a number. The file needs a header row naming its columns (see docs/mapping.md)"
        )


@contextmanager
def _fewer_collections() -> Iterator[None]:
    """Streaming makes millions of short-lived lists that never form cycles; the cyclic garbage
    collector's default gen-0 threshold (700) would scan them over and over. A higher threshold
    keeps collections (and memory bounds) while cutting their count a hundredfold."""
    thresholds = gc.get_threshold()
    gc.set_threshold(100_000, thresholds[1], thresholds[2])
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)


def sent_file_name(name: str) -> str:
    """The file name the service is given: what is sent is CSV, a workbook's rows included."""
    base = PurePosixPath(name.replace("\\", "/")).name
    return base[: -len(".xlsx")] + ".csv" if base.lower().endswith(".xlsx") else base


def sent_header(header: list[str]) -> list[str]:
    """The header as the service gets it: each name without surrounding spaces, so that the
    connector's mapping (which names EmailAddress, never "EmailAddress ") finds its columns."""
    return [header_name(cell) for cell in header]


def checkpoint_key(facts: FileFacts, options: UploadOptions, mapping: Mapping) -> CheckpointKey:
    """The file and job, and what decides the chunk plan: the chunk size and the rules."""
    plan = f"{mapping.digest()}:{options.policy.value}"
    return CheckpointKey(content_id(facts, options), options.job_id, options.records_per_call, plan)


def default_mapping(header: list[str]) -> Mapping:
    """The mapping the documentation's column names imply, or a file-level error naming what is missing."""
    inference = infer_mapping(header)
    if inference.mapping is not None:
        return inference.mapping
    key, best = min(inference.unplaced.items(), key=lambda item: len(item[1]))
    missing = describe_unplaced(best)
    raise InputFileError(
        f"required column(s) missing for {SCENARIOS[key].title} (the closest scenario): {missing}. "
        "Name the columns as the documentation does, "
        "or give a mapping file (hrconnector mapping infer proposes one)"
    )


class _ChunkUploader:
    """Runs uploads on a bounded pool; after a failure nothing new is sent."""

    def __init__(
        self,
        client: IngestionClient | None,
        recorder: CheckpointRecorder,
        report: RunReport,
        concurrency: int,
        held: HeldLock | None = None,
    ) -> None:
        self._held = held
        self._unrecorded: list[tuple[Chunk, str]] = []
        self._client = client
        self._recorder = recorder
        self._report = report
        self._pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="upload")
        # At most this many chunks in memory: the ones being sent plus one queued per worker.
        self._slots = threading.BoundedSemaphore(concurrency * 2)
        self._stop = threading.Event()
        self.error: HRConnectorError | None = None

    def _fail(self, error: HRConnectorError) -> None:
        self._stop.set()
        if self.error is None:
            self.error = error

    def unrecorded_error(self) -> CheckpointError | None:
        """Every chunk the service accepted but the checkpoint could not record, by name."""
        if not self._unrecorded:
            return None
        listed = sorted(self._unrecorded, key=lambda item: item[0].index)
        names = ", ".join(f"chunk {c.index} (rows {c.first_row}-{c.last_row})" for c, _ in listed)
        return CheckpointError(
            f"{listed[0][1]}. The service accepted {names} but the checkpoint does not record "
            f"{'it' if len(listed) == 1 else 'them'}, so a later run sends those rows again; nothing more was sent"
        )

    def handle(self, chunk: Chunk, *, dry_run: bool) -> None:
        if self._recorder.is_done(chunk.index):
            if self._recorder.accepted_digest(chunk.index) == chunk_digest(chunk.data):
                self._record(chunk, "previously-uploaded")
                return
            message = (
                f"chunk {chunk.index} (rows {chunk.first_row}-{chunk.last_row}) is not the chunk the service "
                "accepted in an earlier run (the file is read differently now); nothing more was sent. "
                "Run again with --force to send every row again (rows already accepted arrive twice)"
            )
            self._fail(CheckpointError(message))
            self._record(chunk, "not-attempted", error="not sent: differs from the chunk accepted earlier")
        elif dry_run:
            self._record(chunk, "planned")
        elif self._stop.is_set():
            self._record(chunk, "not-attempted", error="not sent: an earlier chunk failed")
        elif not self._lock_intact():
            self._record(chunk, "not-attempted", error="not sent: the run's lock file was removed")
        else:
            self._slots.acquire()
            # Each upload runs in a copy of the caller's context (the Function's log context).
            future = self._pool.submit(contextvars.copy_context().run, self._upload, chunk)
            future.add_done_callback(self._release)

    def _lock_intact(self) -> bool:
        """Whether this run still holds the lock file at its path; if not, it stops at once."""
        if self._held is None or self._held.intact():
            return True
        self._fail(
            CheckpointError(
                f"the lock file {str(self._held.path)!r} was removed or replaced while this run held it; "
                "nothing more was sent and the checkpoint is left to the run that holds the new lock, "
                "so that two runs never upload this file at once. Run again to send the rest"
            )
        )
        return False

    def _release(self, future: Future[None]) -> None:
        self._slots.release()

    def _record(self, chunk: Chunk, status: str, **extra: object) -> None:
        self._report.add_chunk(
            ChunkReport(chunk.index, chunk.first_row, chunk.last_row, chunk.record_count, status, **extra)  # type: ignore[arg-type]
        )

    def _upload(self, chunk: Chunk) -> None:
        assert self._client is not None
        if self._stop.is_set() or not self._lock_intact():
            self._record(chunk, "not-attempted", error="not sent: an earlier chunk failed")
            return
        t0 = time.monotonic()
        try:
            result = self._client.upload(chunk)
        except Exception as exc:  # the service refused it, no token could be had, or a bug
            error = (
                exc if isinstance(exc, HRConnectorError) else HRConnectorError(f"upload failed: {type(exc).__name__}")
            )
            self._fail(error)
            upload_error = error if isinstance(error, UploadError) else UploadError(str(error))
            self._record(
                chunk,
                "failed",
                http_status=upload_error.status,
                attempts=[a.to_dict() for a in upload_error.attempts],
                duration_ms=int((time.monotonic() - t0) * 1000),
                response_body=upload_error.body,
                error=str(error),
            )
            return
        status = "uploaded"
        try:
            if not self._lock_intact():  # another run owns the checkpoint now: do not overwrite it
                raise CheckpointError("this run's lock file was removed or replaced: it no longer saves the checkpoint")
            self._recorder.mark_done(chunk.index, chunk.record_count, chunk_digest(chunk.data))
        except Exception as exc:  # the service has the rows; the checkpoint could not say so: stop now
            reason = str(exc) if isinstance(exc, HRConnectorError) else f"{type(exc).__name__}: {exc}"
            status = "uploaded-not-recorded"
            with self._report._lock:
                self._unrecorded.append((chunk, reason))
            self._fail(CheckpointError(reason))
        self._record(
            chunk,
            status,
            http_status=result.status,
            attempts=[a.to_dict() for a in result.attempts],
            duration_ms=int((time.monotonic() - t0) * 1000),
            response_body=result.body or None,
        )
        chunk_log.info(
            "chunk %d uploaded: rows %d-%d, %d records, %d attempt(s)",
            chunk.index,
            chunk.first_row,
            chunk.last_row,
            chunk.record_count,
            len(result.attempts),
        )

    def close(self) -> None:
        self._pool.shutdown(wait=True)
