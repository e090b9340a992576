"""Blob Storage for the Function: the file as a Source, checkpoints, per-file state, verified moves.

Every write that could race another instance carries a condition: state and checkpoints are
written with the ETag they were read with (or only if absent), a file's state is leased while
it is processed, the source is read and deleted only at the ETag the event named.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any, BinaryIO

from azure.core import MatchConditions
from azure.core.exceptions import (
    AzureError,
    HttpResponseError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.storage.blob import BlobClient, BlobLeaseClient, BlobServiceClient, ContainerClient

from .checkpoint import Checkpoint, CheckpointKey, CheckpointLockedError, parse_checkpoint
from .credentials import function_identity
from .errors import InputFileError, StorageError
from .settings import StorageSettings

log = logging.getLogger(__name__)

COPY_POLL_SECONDS = 0.5
COPY_TIMEOUT_SECONDS = 600


def blob_service_client(storage: StorageSettings) -> BlobServiceClient:
    """The same account and identity as the trigger's connection (see settings.STORAGE_CONNECTION)."""
    if storage.connection_string:
        return BlobServiceClient.from_connection_string(storage.connection_string)
    assert storage.blob_service_uri is not None
    return BlobServiceClient(storage.blob_service_uri, credential=function_identity(storage.client_id))


def bare_etag(etag: str) -> str:
    return etag.strip('"')


# -- the file -------------------------------------------------------------------------------
class BlobSource:
    """A pipeline Source: streams exactly the version of the blob the event was about."""

    def __init__(self, blob: BlobClient, etag: str, name: str) -> None:
        self.blob = blob
        self.etag = etag
        self.name = name

    def open(self) -> BinaryIO:
        try:
            downloader = self.blob.download_blob(etag=self.etag, match_condition=MatchConditions.IfNotModified)
        except ResourceModifiedError:
            raise InputFileError("the file was replaced while it was being processed") from None
        except ResourceNotFoundError:
            raise InputFileError("the file was deleted while it was being processed") from None
        except AzureError as exc:
            raise StorageError(f"cannot read the file: {type(exc).__name__}") from exc
        return io.BufferedReader(_DownloadStream(downloader), buffer_size=1 << 20)


class _DownloadStream(io.RawIOBase):
    """A StorageStreamDownloader as a file: memory stays at one download chunk."""

    def __init__(self, downloader: Any) -> None:
        self._downloader = downloader

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        try:
            data = self._downloader.read(len(buffer))
        except AzureError as exc:
            raise StorageError(f"reading the file failed: {type(exc).__name__}") from exc
        n = len(data)
        buffer[:n] = data
        return n


# -- JSON documents with ETag conditions ------------------------------------------------------
class JsonBlobs:
    """JSON documents in one container, each written only over the version last read."""

    def __init__(self, container: ContainerClient) -> None:
        self.container = container

    def read(self, name: str, parse: Callable[[bytes], Any] | None = None) -> tuple[Any, str] | None:
        """The document and its ETag; None when absent. DamagedStateError (with the ETag) when
        it is not what `parse` (default: a JSON object) accepts, so each caller decides."""
        try:
            downloader = self.container.get_blob_client(name).download_blob()
            raw, etag = downloader.readall(), downloader.properties.etag
        except ResourceNotFoundError:
            return None
        try:
            return (parse or json_object)(raw), etag
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            where = f"{self.container.container_name}/{name}"
            raise DamagedStateError(f"{where} is unreadable ({type(exc).__name__})", etag) from None

    def write(
        self,
        name: str,
        data: dict[str, Any],
        *,
        etag: str | None,
        lease: BlobLeaseClient | None = None,
        metadata: dict[str, str] | None = None,
    ) -> str:
        """Create (etag None: only if absent) or replace (only at `etag`); returns the new ETag."""
        body = json.dumps(data, indent=1).encode()
        blob = self.container.get_blob_client(name)
        try:
            if etag is None:
                result = blob.upload_blob(body, overwrite=False, lease=lease, metadata=metadata)
            else:
                result = blob.upload_blob(
                    body,
                    overwrite=True,
                    etag=etag,
                    match_condition=MatchConditions.IfNotModified,
                    lease=lease,
                    metadata=metadata,
                )
        except (ResourceExistsError, ResourceModifiedError) as exc:
            raise StateConflictError(f"{self.container.container_name}/{name} was changed by another run") from exc
        except HttpResponseError as exc:
            if exc.status_code == 412:  # the lease is gone or held by another run
                raise StateConflictError(f"{self.container.container_name}/{name}: lease lost") from exc
            raise StorageError(f"cannot write {self.container.container_name}/{name}: {type(exc).__name__}") from exc
        except AzureError as exc:
            raise StorageError(f"cannot write {self.container.container_name}/{name}: {type(exc).__name__}") from exc
        return str(result["etag"])


def json_object(raw: bytes) -> dict[str, Any]:
    data = json.loads(raw)
    if not isinstance(data, dict):
        raise TypeError("not a JSON object")
    return data


class DamagedStateError(StorageError):
    """A state document that is not valid JSON of the expected shape (edited by hand, or garbled)."""

    def __init__(self, message: str, etag: str) -> None:
        super().__init__(message)
        self.etag = etag


class StateConflictError(StorageError):
    """Another run wrote the same state or checkpoint first."""


class BlobCheckpointStore:
    """The upload engine's CheckpointStore in Blob Storage, with optimistic concurrency.

    A save that meets another writer's version raises StateConflictError and sets `conflict`:
    another run owns the file now, and this one must stop (see service)."""

    def __init__(self, container: ContainerClient, prefix: str = "checkpoints/", *, lease_seconds: int = 60) -> None:
        self._blobs = JsonBlobs(container)
        self._prefix = prefix
        self._etags: dict[str, str] = {}
        self._lease_seconds = lease_seconds
        self.conflict = False
        self.busy = False  # another run held the content's lock: this one sent nothing
        self.held: ContentLock | None = None
        self.key: CheckpointKey | None = None  # the content this run uploads (known once it locks)
        self.on_lock: Callable[[], None] | None = None  # called once the lock is held, before anything is read

    @contextlib.contextmanager
    def lock(self, key: CheckpointKey) -> Iterator[ContentLock]:
        """Lease `locks/<id>` (created if absent) for the run; CheckpointLockedError (and `busy`)
        when another run of the same content and job holds it."""
        self.key = key
        name = f"locks/{key.id}"
        blob = self._blobs.container.get_blob_client(name)
        where = f"{self._blobs.container.container_name}/{name}"
        with contextlib.suppress(ResourceExistsError):
            blob.upload_blob(b"", overwrite=False)
        try:
            lease = blob.acquire_lease(lease_duration=self._lease_seconds)
        except HttpResponseError as exc:
            if exc.status_code == 409:  # LeaseAlreadyPresent
                self.busy = True
                raise ContentBusyError(
                    "another run is uploading the same content to this job; nothing was sent by this run"
                ) from None
            raise StorageError(f"cannot lease {where}: {type(exc).__name__}") from exc
        except AzureError as exc:
            raise StorageError(f"cannot lease {where}: {type(exc).__name__}") from exc
        held = self.held = ContentLock(where, lease, self._lease_seconds, f"{where} (this content's lock)")
        try:
            if self.on_lock is not None:
                self.on_lock()
            yield held
        finally:
            held.release()

    def _name(self, key_id: str) -> str:
        return f"{self._prefix}{key_id}.json"

    def load(self, key: CheckpointKey) -> Checkpoint | None:
        checkpoint = self.read(key.id)
        return checkpoint if checkpoint is not None and checkpoint.key.same_file(key) else None  # any settings

    def read(self, key_id: str) -> Checkpoint | None:
        """The checkpoint stored under `key_id` (a CheckpointKey's id), or None."""
        name = self._name(key_id)
        where = f"{self._blobs.container.container_name}/{name}"
        found = self._blobs.read(name, lambda raw: parse_checkpoint(raw, where))
        if found is None:
            return None
        checkpoint, self._etags[key_id] = found
        return checkpoint  # type: ignore[no-any-return]

    def save(self, checkpoint: Checkpoint) -> None:
        key = checkpoint.key
        try:
            etag = self._blobs.write(self._name(key.id), checkpoint.to_dict(), etag=self._etags.get(key.id))
        except StateConflictError:
            self.conflict = True
            raise
        self._etags[key.id] = etag

    def delete(self, key: CheckpointKey) -> None:
        with contextlib.suppress(ResourceNotFoundError):
            self._blobs.container.delete_blob(self._name(key.id))
        self._etags.pop(key.id, None)


# -- per-file state -----------------------------------------------------------------------------
FINISHED = ("processed", "failed")


@dataclass
class FileState:
    """What happened to one version (name + ETag) of one incoming file. No HR data."""

    blob: str
    etag: str
    connector: str | None = None
    status: str = "received"  # received -> processing (-> waiting: same content busy) -> processed | failed
    runs: int = 0
    run_id: str | None = None
    destination: str | None = None  # chosen once, so a rerun overwrites rather than duplicates
    started_at: str | None = None
    finished_at: str | None = None
    report: str | None = None
    rejected_rows: str | None = None
    error: str | None = None
    note: str | None = None
    rows: dict[str, Any] = field(default_factory=dict)
    checkpoint: str | None = None  # the content checkpoint's id, recorded once a run holds its lock

    @property
    def finished(self) -> bool:
        return self.status in FINISHED

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FileState:
        state = cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})
        texts = (state.blob, state.etag, state.status)
        if (
            not all(isinstance(v, str) for v in texts)
            or not isinstance(state.runs, int)
            or not isinstance(state.rows, dict)
        ):
            raise TypeError("a field has the wrong type")
        return state

    @classmethod
    def parse(cls, raw: bytes) -> FileState:
        return cls.from_dict(json_object(raw))


class FileStateStore:
    """`files/<incoming blob name>/<etag>.json` in the state container."""

    def __init__(self, container: ContainerClient, *, lease_seconds: int = 60) -> None:
        self._blobs = JsonBlobs(container)
        self.lease_seconds = lease_seconds

    @staticmethod
    def name(blob: str, etag: str) -> str:
        return f"files/{blob}/{bare_etag(etag)}.json"

    def get(self, blob: str, etag: str) -> FileState | None:
        """DamagedStateError when the state is unreadable."""
        found = self._blobs.read(self.name(blob, etag), FileState.parse)
        return found[0] if found else None

    def history(self, blob: str) -> list[FileState]:
        """Every readable version of `blob` seen so far (an unreadable one is logged and skipped)."""
        prefix = f"files/{blob}/"
        states = []
        for item in self._blobs.container.list_blobs(name_starts_with=prefix):
            if "/" not in item.name[len(prefix) :]:
                try:
                    found = self._blobs.read(item.name, FileState.parse)
                except DamagedStateError as exc:
                    log.warning("%s; skipped", exc)
                    continue
                if found:
                    states.append(found[0])
        return states

    def unfinished(self, older_than: Any) -> list[tuple[str, str]]:
        """(name, etag) of versions whose state says they are not finished and that no run holds,
        last written before `older_than`: from the listing alone (the status is in the metadata)."""
        found = []
        for item in self._blobs.container.list_blobs(name_starts_with="files/", include=["metadata"]):
            status = (item.metadata or {}).get("status")
            if status is None or status in FINISHED or item.lease.state == "leased" or item.last_modified > older_than:
                continue
            blob, _, version = item.name[len("files/") :].rpartition("/")
            found.append((blob, version.removesuffix(".json")))
        return found

    def claim(self, blob: str, etag: str) -> FileClaim | None:
        """The state, leased to this run; None when another run holds it."""
        name = self.name(blob, etag)
        with contextlib.suppress(StateConflictError):  # it exists: an earlier or a concurrent delivery
            self._blobs.write(name, asdict(FileState(blob, etag)), etag=None, metadata={"status": "received"})
        try:
            lease = self._blobs.container.get_blob_client(name).acquire_lease(lease_duration=self.lease_seconds)
        except HttpResponseError as exc:
            if exc.status_code == 409:  # LeaseAlreadyPresent
                return None
            raise StorageError(f"cannot lease the state of {blob}: {type(exc).__name__}") from exc
        try:
            found = self._blobs.read(name, FileState.parse)
        except DamagedStateError as exc:  # a fresh state under the lease; the service fails the file with this reason
            damaged = FileState(blob, etag, error=f"the file's processing state {exc}; it was reset")
            return FileClaim(self._blobs, name, lease, damaged, exc.etag, self.lease_seconds, damaged=str(exc))
        assert found is not None
        return FileClaim(self._blobs, name, lease, found[0], found[1], self.lease_seconds)


# Renewals per lease period: a renewal that fails transiently is retried until the lease would lapse.
RENEWALS_PER_LEASE = 3
# Answers to a renewal that mean "try again", not "the lease is gone".
TRANSIENT_STATUS = frozenset({408, 429, 500, 502, 503, 504})


class LeaseLostError(StorageError):
    """This run no longer holds the lease on the file's state: another run may own the file."""

    quiet = True  # not this run's failure: logged at WARNING (see pipeline._level)


class ContentBusyError(CheckpointLockedError):
    """Another run holds the lock of this content and job: this run sends nothing and waits."""

    quiet = True


def is_transient(exc: AzureError) -> bool:
    if isinstance(exc, (ServiceRequestError, ServiceResponseError)):
        return True
    return isinstance(exc, HttpResponseError) and exc.status_code in TRANSIENT_STATUS


class KeptLease:
    """A blob lease kept alive in the background until released.

    `check()` renews the lease on the spot; the service calls it before each chunk and before it
    moves or deletes anything, so a run that lost the lease stops there. Transient errors while
    renewing are retried until the lease would have lapsed; only a definite answer (the lease is
    broken, expired and taken, or gone) or that deadline counts as lost.
    """

    def __init__(self, name: str, lease: BlobLeaseClient, lease_seconds: int, what: str) -> None:
        self._name = name
        self._lease = lease
        self._lease_seconds = lease_seconds
        self._what = what
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._renewed_at = time.monotonic()
        self.lost = False
        self.renewals = 0
        self._renewer = threading.Thread(
            target=self._renew_loop, args=(lease_seconds / RENEWALS_PER_LEASE,), name="lease-renewal", daemon=True
        )
        self._renewer.start()

    def _renew_loop(self, every: float) -> None:
        while not self._stop.wait(every) and not self.lost:
            self._renew()

    def _renew(self) -> bool:
        """Renew now, retrying transient errors while the lease still runs; False once lost."""
        with self._lock:
            if self.lost:
                return False
            # A margin for the call itself: past this point the lease may already be someone else's.
            deadline = self._renewed_at + self._lease_seconds - 2
            wait = 0.2
            while True:
                try:
                    # No SDK retries (its back-off outlasts a 15 s lease) and short time-outs: this loop retries.
                    self._lease.renew(retry_total=0, timeout=5, connection_timeout=5, read_timeout=10)
                except AzureError as exc:
                    transient = is_transient(exc)
                    if transient and time.monotonic() + wait < deadline and not self._stop.is_set():
                        log.warning("renewing the lease on %s failed (%s); retrying", self._name, type(exc).__name__)
                        time.sleep(wait)
                        wait = min(wait * 2, 2.0)
                        continue
                    self.lost = True
                    log.warning("lost the lease on %s (%s); this run stops", self._name, type(exc).__name__)
                    return False
                self._renewed_at = time.monotonic()
                self.renewals += 1
                return True

    def check(self) -> None:
        """Raise LeaseLostError unless this run still holds the lease (renewed on the spot)."""
        if not self._renew():
            raise LeaseLostError(f"the lease on {self._what} was lost; another run owns the file")

    def release(self) -> None:
        self._stop.set()
        self._renewer.join()
        if self.lost:
            return
        with contextlib.suppress(AzureError):  # expired already: it freed itself
            self._lease.release()


class FileClaim(KeptLease):
    """A leased file state: kept alive in the background, saved only under the lease and ETag."""

    def __init__(
        self,
        blobs: JsonBlobs,
        name: str,
        lease: BlobLeaseClient,
        state: FileState,
        etag: str,
        lease_seconds: int,
        *,
        damaged: str | None = None,
    ) -> None:
        self._blobs = blobs
        self.state = state
        self._etag = etag
        self.damaged = damaged  # the stored state was unreadable: why
        super().__init__(name, lease, lease_seconds, f"the state of {state.blob}")

    def save(self) -> None:
        try:
            self._etag = self._blobs.write(
                self._name,
                asdict(self.state),
                etag=self._etag,
                lease=self._lease,
                metadata={"status": self.state.status},
            )
        except StateConflictError as exc:
            self.lost = True
            raise LeaseLostError(f"the state of {self.state.blob} was taken over by another run") from exc

    def __enter__(self) -> FileClaim:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


class ContentLock(KeptLease):
    """The lease on `locks/<checkpoint id>`: one run per file content and job at a time, whatever
    the file's name or version (the checkpoint is keyed by content, the file state by name)."""

    @property
    def path(self) -> str:  # named in the pipeline's message if the lock is lost mid-run
        return self._name

    def intact(self) -> bool:
        return not self.lost


# -- moving files -------------------------------------------------------------------------------
class SourceChangedError(StorageError):
    """The version to copy is no longer there (replaced or deleted)."""


def copy_verified(source: BlobClient, etag: str, target: BlobClient, size: int) -> None:
    """Server-side copy of exactly version `etag`, then check the copy is complete and the same size."""
    try:
        try:
            target.start_copy_from_url(
                source.url, source_etag=etag, source_match_condition=MatchConditions.IfNotModified
            )
        except (ResourceModifiedError, ResourceNotFoundError) as exc:
            raise SourceChangedError(f"{source.blob_name} was replaced or deleted before it could be copied") from exc
        except HttpResponseError as exc:
            if exc.status_code in (404, 412):
                raise SourceChangedError(
                    f"{source.blob_name} was replaced or deleted before it could be copied"
                ) from exc
            raise
        deadline = time.monotonic() + COPY_TIMEOUT_SECONDS
        while True:
            props = target.get_blob_properties()
            if props.copy.status != "pending" or time.monotonic() > deadline:
                break
            time.sleep(COPY_POLL_SECONDS)
    except AzureError as exc:
        raise StorageError(f"cannot copy {source.blob_name} to {target.container_name}: {type(exc).__name__}") from exc
    if props.copy.status not in (None, "success") or props.size != size:
        raise StorageError(
            f"the copy of {source.blob_name} in {target.container_name} is not complete "
            f"(copy status {props.copy.status}, {props.size} of {size} bytes); the original is kept"
        )


def delete_if_unchanged(blob: BlobClient, etag: str) -> bool:
    """Delete `blob` only at `etag`; False when it was replaced (the new version has its own event)."""
    try:
        blob.delete_blob(etag=etag, match_condition=MatchConditions.IfNotModified)
    except ResourceModifiedError:
        return False
    except ResourceNotFoundError:
        return True
    return True


def write_text(container: ContainerClient, name: str, text: str, content_type: str) -> str:
    from azure.storage.blob import ContentSettings

    container.upload_blob(name, text.encode(), overwrite=True, content_settings=ContentSettings(content_type))
    return f"{container.container_name}/{name}"
