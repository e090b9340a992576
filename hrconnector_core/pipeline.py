"""read -> validate -> chunk -> upload -> report: the one path used by the CLI and the Function."""

from __future__ import annotations

import hashlib
import io
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Protocol

from .checkpoint import Checkpoint, CheckpointKey, CheckpointRecorder, CheckpointStore
from .chunking import DEFAULT_RECORDS_PER_CALL, Chunk, make_chunks
from .csvreader import CsvFile
from .errors import ConfigurationError, HRConnectorError, UploadError
from .ingestion import IngestionClient
from .report import ChunkReport, RunReport, utc_now
from .validation import conform_rows

log = logging.getLogger(__name__)

DEFAULT_MAX_CONCURRENCY = 8
_HASH_BLOCK = 1 << 20


class Source(Protocol):
    """Where the CSV bytes come from: a local file here, a blob in the Function."""

    name: str

    def open(self) -> BinaryIO: ...

    def size(self) -> int: ...


class LocalFileSource:
    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.name = self.path.name

    def open(self) -> BinaryIO:
        try:
            return self.path.open("rb")
        except OSError as exc:
            raise ConfigurationError(f"cannot open {str(self.path)!r}: {exc.strerror}") from exc

    def size(self) -> int:
        return self.path.stat().st_size


def sha256_of(source: Source) -> str:
    digest = hashlib.sha256()
    with source.open() as stream:
        while block := stream.read(_HASH_BLOCK):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class UploadOptions:
    job_id: str
    records_per_call: int = DEFAULT_RECORDS_PER_CALL
    max_concurrency: int = DEFAULT_MAX_CONCURRENCY
    force: bool = False
    dry_run: bool = False

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
) -> RunReport:
    """Upload every valid row of `source` once; never raises for a bad file or a failed upload.

    Errors end up in `report.error` and in the per-chunk entries; the report's status says
    whether every row reached the service.
    """
    report = RunReport(
        file_name=source.name,
        job_id=options.job_id,
        records_per_call=options.records_per_call,
        max_concurrency=options.max_concurrency,
        dry_run=options.dry_run,
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
    if client is not None:
        report.token_fetches = client.token_fetches
    return report


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
    report.file_bytes = source.size()
    report.file_sha256 = sha256_of(source)
    if client is not None:
        report.ingestion_url = client.url
    key = CheckpointKey(report.file_sha256, options.job_id, options.records_per_call)
    checkpoint = store.load(key) if store is not None else None
    if checkpoint is not None and options.force and not options.dry_run:
        log.info(
            "%s: --force: forgetting the checkpoint of %d uploaded chunk(s)", source.name, len(checkpoint.completed)
        )
        assert store is not None
        store.delete(key)
        checkpoint = None
    if checkpoint is not None and checkpoint.finished:
        log.info("%s: already uploaded in full at %s; nothing to send", source.name, checkpoint.finished_at)
    elif checkpoint is not None:
        log.info("%s: resuming: %d chunk(s) already uploaded", source.name, len(checkpoint.completed))
    recorder = CheckpointRecorder(None if options.dry_run else store, checkpoint or Checkpoint(key))

    with source.open() as raw:
        counting = _CountingReader(raw)
        csv_file = CsvFile(io.BufferedReader(counting, buffer_size=_HASH_BLOCK))
        report.header = csv_file.header
        records = _counted(csv_file.records(), report)
        chunks = make_chunks(
            csv_file.header, conform_rows(csv_file.header, records, report), records_per_call=options.records_per_call
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
        if progress is not None:
            progress(Progress(report.file_bytes, report.file_bytes, len(report.chunks), report.rows.uploaded))

    if not report.rows.balanced:  # a bug, never a bad file: say so rather than claim success
        raise HRConnectorError(f"row accounting does not balance: {report.to_dict()['rows']}")
    if uploader.error is not None:
        raise uploader.error
    if not options.dry_run and len(recorder.checkpoint.completed) == total and not recorder.checkpoint.finished:
        recorder.finish(total)


def _counted(records: Iterator, report: RunReport) -> Iterator:  # type: ignore[type-arg]
    for record in records:
        report.rows.rows_in += 1
        yield record


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
            future = self._pool.submit(self._upload, chunk)
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
        self._recorder.mark_done(chunk.index, chunk.record_count)
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
