"""read -> validate -> chunk -> upload -> report: the one path used by the CLI and the Function."""

from __future__ import annotations

import contextvars
import gc
import io
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, replace
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Protocol

from .checkpoint import Checkpoint, CheckpointKey, CheckpointRecorder, CheckpointStore
from .chunking import DEFAULT_RECORDS_PER_CALL, Chunk, make_chunks
from .csvreader import CsvFile, FileFacts, inspect_stream
from .errors import ConfigurationError, HRConnectorError, InputFileError, UploadError
from .mapping import Mapping, describe_unplaced, infer_mapping
from .report import ChunkReport, RejectedRowsWriter, RunReport, utc_now
from .schema import SCENARIOS
from .validation import RowValidator

if TYPE_CHECKING:  # a dry run never loads requests
    from .ingestion import IngestionClient

log = logging.getLogger(__name__)

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
    """The file's SHA-256, size and CSV format (one pass over its bytes)."""
    with source.open() as stream:
        return inspect_stream(stream)


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


class _CountingReader(io.RawIOBase):
    """Counts the bytes the CSV reader has consumed, for progress."""

    def __init__(self, raw: BinaryIO) -> None:
        self._raw = raw
        self.count = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self._raw.read(len(buffer))
        n = len(data)
        buffer[:n] = data
        self.count += n
        return n


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
    if options.policy is Policy.REJECT_FILE and not options.dry_run:
        check = run_upload(source, replace(options, dry_run=True), client=None, store=None, rejected_rows=rejected_rows)
        if check.error or check.rows.rejected:
            return _nothing_sent(check, options)
        rejected_rows = None
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
    try:
        _run(source, options, client, store, report, progress)
    except HRConnectorError as exc:
        report.error = str(exc)
        log.error("%s: %s", source.name, exc)
    finally:
        report.duration_s = time.monotonic() - started
        report.finished_at = utc_now()
        if rejected_rows is not None:
            rejected_rows.close()
    if client is not None:
        report.token_fetches = client.token_fetches
    return report


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
            "Fix the rows listed and drop the file again, or use the upload-valid policy"
        )
    return check


def _run(
    source: Source,
    options: UploadOptions,
    client: IngestionClient | None,
    store: CheckpointStore | None,
    report: RunReport,
    progress: Callable[[Progress], None] | None,
) -> None:
    if client is None and not options.dry_run:
        raise ConfigurationError("an ingestion client is needed unless this is a dry run")
    if client is not None:
        report.ingestion_url = client.url
    facts = inspect(source)  # file-level checks (encoding) before anything is sent
    report.file_bytes, report.file_sha256 = facts.size, facts.sha256
    report.encoding, report.delimiter = facts.format.encoding, facts.format.delimiter

    with source.open() as raw, _fewer_collections():
        counting = _CountingReader(raw)
        csv_file = CsvFile(io.BufferedReader(counting, buffer_size=_HASH_BLOCK), csv_format=facts.format)
        report.header = csv_file.header
        if report.rejected_rows is not None:
            report.rejected_rows.header = csv_file.header
        mapping = options.mapping if options.mapping is not None else default_mapping(csv_file.header)
        report.mapping = mapping.to_dict()
        validator = RowValidator(csv_file.header, mapping)
        recorder = _recorder(source, options, store, checkpoint_key(facts, options, mapping))
        chunks = make_chunks(
            csv_file.header,
            validator.validate_rows(csv_file.records(), report),
            records_per_call=options.records_per_call,
        )
        uploader = _ChunkUploader(client, recorder, report, options.max_concurrency)
        total = 0
        try:
            for chunk in chunks:
                total += 1
                uploader.handle(chunk, dry_run=options.dry_run)
                if progress is not None:
                    progress(Progress(counting.count, report.file_bytes, len(report.chunks), report.rows.uploaded))
        finally:
            uploader.close()
            report.scenarios = validator.scenario_counts()
            report.rows.rows_in = csv_file.data_rows
        if progress is not None:
            progress(Progress(report.file_bytes, report.file_bytes, len(report.chunks), report.rows.uploaded))

    if report.rows.rows_in == report.rows.skipped:
        raise InputFileError("the file has a header but no data rows")
    if not report.rows.balanced:  # a bug, never a bad file: say so rather than claim success
        raise HRConnectorError(f"row accounting does not balance: {report.to_dict()['rows']}")
    if uploader.error is not None:
        raise uploader.error
    if not options.dry_run and len(recorder.checkpoint.completed) == total and not recorder.checkpoint.finished:
        recorder.finish(total)


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


def checkpoint_key(facts: FileFacts, options: UploadOptions, mapping: Mapping) -> CheckpointKey:
    """Everything that decides the chunk plan: the bytes, the job, the chunk size, the rules."""
    plan = f"{mapping.digest()}:{options.policy.value}"
    return CheckpointKey(facts.sha256, options.job_id, options.records_per_call, plan)


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


def _recorder(
    source: Source, options: UploadOptions, store: CheckpointStore | None, key: CheckpointKey
) -> CheckpointRecorder:
    checkpoint = store.load(key) if store is not None else None
    if checkpoint is not None and options.force and not options.dry_run:
        log.info("%s: forced: forgetting %d uploaded chunk(s)", source.name, len(checkpoint.completed))
        assert store is not None
        store.delete(key)
        checkpoint = None
    if checkpoint is not None and checkpoint.finished:
        log.info("%s: already uploaded in full at %s; nothing to send", source.name, checkpoint.finished_at)
    elif checkpoint is not None:
        log.info("%s: resuming: %d chunk(s) already uploaded", source.name, len(checkpoint.completed))
    return CheckpointRecorder(None if options.dry_run else store, checkpoint or Checkpoint(key))


class _ChunkUploader:
    """Runs uploads on a bounded pool; after a failure nothing new is sent."""

    def __init__(
        self, client: IngestionClient | None, recorder: CheckpointRecorder, report: RunReport, concurrency: int
    ) -> None:
        self._client = client
        self._recorder = recorder
        self._report = report
        self._pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="upload")
        # At most this many chunks in memory: the ones being sent plus one queued per worker.
        self._slots = threading.BoundedSemaphore(concurrency * 2)
        self._stop = threading.Event()
        self.error: HRConnectorError | None = None

    def handle(self, chunk: Chunk, *, dry_run: bool) -> None:
        if self._recorder.is_done(chunk.index):
            self._record(chunk, "previously-uploaded")
        elif dry_run:
            self._record(chunk, "planned")
        elif self._stop.is_set():
            self._record(chunk, "not-attempted", error="not sent: an earlier chunk failed")
        else:
            self._slots.acquire()
            # Each upload runs in a copy of the caller's context (the Function's log context).
            future = self._pool.submit(contextvars.copy_context().run, self._upload, chunk)
            future.add_done_callback(self._release)

    def _release(self, future: Future[None]) -> None:
        self._slots.release()

    def _record(self, chunk: Chunk, status: str, **extra: object) -> None:
        self._report.add_chunk(
            ChunkReport(chunk.index, chunk.first_row, chunk.last_row, chunk.record_count, status, **extra)  # type: ignore[arg-type]
        )

    def _upload(self, chunk: Chunk) -> None:
        assert self._client is not None
        if self._stop.is_set():
            self._record(chunk, "not-attempted", error="not sent: an earlier chunk failed")
            return
        t0 = time.monotonic()
        try:
            result = self._client.upload(chunk)
        except HRConnectorError as exc:  # the service refused it, or no token could be had
            self._stop.set()
            if self.error is None:
                self.error = exc
            upload_error = exc if isinstance(exc, UploadError) else UploadError(str(exc))
            self._record(
                chunk,
                "failed",
                http_status=upload_error.status,
                attempts=[a.to_dict() for a in upload_error.attempts],
                duration_ms=int((time.monotonic() - t0) * 1000),
                response_body=upload_error.body,
                error=str(exc),
            )
            return
        try:
            self._recorder.mark_done(chunk.index, chunk.record_count)
        except HRConnectorError as exc:  # the service has the rows; the checkpoint could not say so
            self._stop.set()
            if self.error is None:
                self.error = exc
        self._record(
            chunk,
            "uploaded",
            http_status=result.status,
            attempts=[a.to_dict() for a in result.attempts],
            duration_ms=int((time.monotonic() - t0) * 1000),
            response_body=result.body or None,
        )
        log.info(
            "chunk %d uploaded: rows %d-%d, %d records, %d attempt(s)",
            chunk.index,
            chunk.first_row,
            chunk.last_row,
            chunk.record_count,
            len(result.attempts),
        )

    def close(self) -> None:
        self._pool.shutdown(wait=True)
