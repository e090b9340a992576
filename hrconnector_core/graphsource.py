"""The SharePoint/OneDrive source: new files in a connector's folder are copied into
hr-incoming/<connector>/, each version exactly once; the blob path does the rest.

One run per connector at a time (a lease on its `delta.json`), on the source timer:

1. resolve site -> library (drive) -> folder (ids);
2. ask the drive's delta query what changed since the stored delta link (Graph supports delta on
   a drive's root only, so only items whose parent is the watched folder are kept; Processed and
   Failed are subfolders and so never copied); an expired link (410) starts a full enumeration;
3. copy each new version (item id + content tag, cTag: a rename is not a new version) of a
   .csv/.xlsx into `<connector>/sharepoint/<key[:12]>/<name>`: streamed into staged blocks (bounded memory), the
   item re-read (changed meanwhile: nothing committed, the next delta brings the new version),
   then committed only if the blob does not exist. A version with a record, a blob, or file
   history in hr-state (a crash after the copy, the copy already processed) is not copied again;
   on the very first run, unless copy_existing, what is there is recorded as a baseline instead;
4. store the delta link only once every item is handled (a failed item is seen again next run);
5. move the items whose upload finished to Processed/Failed with their report (graphmove).
"""

from __future__ import annotations

import base64
import contextlib
import logging
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import AzureError, HttpResponseError, ResourceExistsError, ResourceModifiedError
from azure.storage.blob import BlobBlock, BlobClient, BlobLeaseClient, BlobServiceClient, ContainerClient

from .blobstore import (
    DamagedStateError,
    FileStateStore,
    KeptLease,
    LeaseLostError,
    StateConflictError,
    blob_service_client,
)
from .credentials import TokenProvider, function_identity
from .errors import HRConnectorError, StorageError
from .graph import DownloadInterruptedError, GraphClient, GraphError, quote_path, segment
from .graphmove import Folder, Mover, finished_state
from .graphstate import BASELINE, COPIED, FAILED_TO_MOVE, ItemRecord, SourceState, content_tag, version_key
from .service import is_input_file
from .settings import Connector, GraphFolder, Settings
from .telemetry import dimensions, log_context

log = logging.getLogger(__name__)

BLOCK_SIZE = 4 << 20  # bytes staged per block: the most a copy holds in memory
COPY_ATTEMPTS = 3  # a download that breaks off is started again this many times in one run
# Delta pages one run reads at most (Graph's pages hold up to a few hundred items: a library of
# about a million items); a feed that goes on past it is a fault, and the run says so.
MAX_DELTA_PAGES = 5000
RESYNC_CODES = ("resyncRequired", "resyncChangesApplyDifferences", "resyncChangesUploadDifferences")
# What one connector's failure raises: the next connector still runs.
CONNECTOR_ERRORS = (AzureError, HRConnectorError, KeyError, TypeError, ValueError)


class SourceError(HRConnectorError):
    """Some of the source's work failed; the rest was done (the invocation fails, the alert sees it)."""


@dataclass
class SourceSummary:
    """What one connector's run did."""

    connector: str
    copied: list[str] = field(default_factory=list)  # hr-incoming blob names
    baseline: int = 0
    skipped: int = 0  # versions already handled
    odd: int = 0  # entries Graph gave without what a file needs (id, name, eTag): skipped, warned
    moved: list[str] = field(default_factory=list)
    not_moved: list[str] = field(default_factory=list)
    resynced: bool = False
    busy: bool = False  # another run held the connector's lease
    failures: list[str] = field(default_factory=list)


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def run_sources(
    settings: Settings,
    *,
    service_client: BlobServiceClient | None = None,
    clock: Callable[[], datetime] = utc_now,
    block_size: int = BLOCK_SIZE,
) -> list[SourceSummary]:
    """The source timer: every connector with a source folder, one after the other. Raises
    SourceError at the end if any failed, after running all of them."""
    blobs = service_client or blob_service_client(settings.storage)
    summaries = []
    with log_context(run="source-" + uuid.uuid4().hex[:8]):
        for connector in settings.connectors.values():
            if connector.source is None:
                continue
            with log_context(connector=connector.name):
                source = GraphSource(settings, connector, connector.source, blobs, clock=clock, block_size=block_size)
                summaries.append(source.run())
    failures = [f"{s.connector}: {f}" for s in summaries for f in s.failures]
    for problem in settings.problems:  # a connector that cannot be read: its folder, if any, is not either
        log.error("connector settings that cannot be read (a SharePoint folder of theirs is not read): %s", problem)
        failures.append(problem)
    if failures:
        raise SourceError("; ".join(failures))
    return summaries


class _Lease(KeptLease):
    """The connector's lease on its delta.json, kept alive while the run works."""

    @property
    def client(self) -> BlobLeaseClient:  # to write delta.json under the lease
        return self._lease


class GraphSource:
    """One connector's source folder."""

    def __init__(
        self,
        settings: Settings,
        connector: Connector,
        folder: GraphFolder,
        blobs: BlobServiceClient,
        *,
        clock: Callable[[], datetime] = utc_now,
        block_size: int = BLOCK_SIZE,
        graph: GraphClient | None = None,
    ) -> None:
        self.settings = settings
        self.connector = connector
        self.folder = folder
        self.blobs = blobs
        self.clock = clock
        self.block_size = block_size
        names = settings.containers
        self.incoming: ContainerClient = blobs.get_container_client(names.incoming)
        self.state_container: ContainerClient = blobs.get_container_client(names.state)
        self.state = SourceState(self.state_container, connector.name)
        self.files = FileStateStore(self.state_container, lease_seconds=settings.lease_seconds)
        self._graph = graph

    @property
    def graph(self) -> GraphClient:
        if self._graph is None:
            cloud = self.connector.cloud
            tokens = TokenProvider(function_identity(self.settings.identity_client_id), cloud.graph_scope)
            self._graph = GraphClient(cloud.graph_url, tokens)
        return self._graph

    # -- the run ----------------------------------------------------------------------------------
    def run(self) -> SourceSummary:
        summary = SourceSummary(self.connector.name)
        try:
            with self._leased() as lease:
                if lease is None:
                    summary.busy = True
                    log.info("another run is reading this connector's SharePoint folder; leaving it to that run")
                    return summary
                self._run(lease, summary)
        except LeaseLostError as exc:
            summary.failures.append(str(exc))
            log.warning("%s; this run stops", exc)
        except CONNECTOR_ERRORS as exc:
            why = str(exc) if isinstance(exc, HRConnectorError) else type(exc).__name__
            summary.failures.append(why)
            log.error("SharePoint source %s failed: %s", self.folder.where, why)
        finally:
            if self._graph is not None:
                self._graph.close()
        log.info(
            "SharePoint source %s: %d file(s) copied, %d moved, %d not moved, %d recorded as already there, "
            "%d odd entries skipped, %d failure(s)", self.folder.where, len(summary.copied), len(summary.moved),
            len(summary.not_moved), summary.baseline, summary.odd, len(summary.failures),
            extra=dimensions(copied=len(summary.copied), moved=len(summary.moved), failures=len(summary.failures)),
        )  # fmt: skip
        return summary

    @contextlib.contextmanager
    def _leased(self) -> Iterator[_Lease | None]:
        """The connector's lease on its delta.json (created if absent); None when another run has it."""
        blob = self.state_container.get_blob_client(self.state.delta_name)
        with contextlib.suppress(ResourceExistsError):
            blob.upload_blob(b"{}", overwrite=False)
        try:
            lease = blob.acquire_lease(lease_duration=self.settings.lease_seconds)
        except HttpResponseError as exc:
            if exc.status_code == 409:  # LeaseAlreadyPresent
                yield None
                return
            raise StorageError(f"cannot lease {self.state.delta_name}: {type(exc).__name__}") from exc
        kept = _Lease(self.state.delta_name, lease, self.settings.lease_seconds, "the connector's source state")
        try:
            yield kept
        finally:
            kept.release()

    def _run(self, lease: _Lease, summary: SourceSummary) -> None:
        try:
            found = self.state.blobs.read(self.state.delta_name)
            doc, etag = found if found else ({}, None)
        except DamagedStateError as exc:  # never a baseline: new files would be recorded, not copied
            log.warning("%s; reading the whole folder again (records keep copies single)", exc)
            doc, etag = {"completed": True}, exc.etag
        drive_id, folder_id = self._resolve()
        # Only a connector whose source never completed a run takes what is there as a baseline
        # (unless copy_existing); a state from before `completed` was kept: a folder id meant one.
        completed = bool(doc.get("completed", bool(doc.get("folder_id"))))
        first = not completed
        link = doc.get("delta_link") if doc.get("drive_id") == drive_id else None
        if completed and doc.get("folder_id") != folder_id:
            log.warning(
                "the folder %s is not the one of the last run (created again, or the setting changed): "
                "every file in it is copied (records keep each version single), not taken as a baseline",
                self.folder.where,
            )
            link = None  # a full enumeration: the files already in that folder are not changes
        items, link = self._changes(drive_id, folder_id, link, summary)
        folder = Folder(drive_id, folder_id)
        baseline = first and not self.folder.copy_existing
        failed = False
        for item in items:
            try:
                self._handle(item, folder, baseline, lease, summary)
            except (AzureError, HRConnectorError, KeyError, TypeError) as exc:
                if isinstance(exc, LeaseLostError):
                    raise
                failed = True
                why = str(exc) if isinstance(exc, HRConnectorError) else type(exc).__name__
                summary.failures.append(f"{item.get('name')}: {why}")
                log.error("%s could not be copied: %s", item.get("name"), why)
        lease.check()
        doc.update(
            site=self.folder.site,
            library=self.folder.library,
            folder=self.folder.folder,
            drive_id=drive_id,
            folder_id=folder_id,
            last_run=self.clock().isoformat(timespec="seconds"),
        )
        if not failed:  # else the next run sees these changes again (the records keep it exact)
            doc["delta_link"] = link
        doc["completed"] = completed or not failed  # a first run stays first until all is recorded
        self.state.blobs.write(self.state.delta_name, doc, etag=etag, lease=lease.client)
        if self.folder.move:
            self._move_finished(folder, lease, summary)

    # -- where the folder is ----------------------------------------------------------------------
    def _resolve(self) -> tuple[str, str]:
        """Site, library and folder to the drive's and the folder's ids (names in errors)."""
        folder = self.folder
        where = (
            f"/v1.0/sites/{folder.hostname}:{quote_path(folder.site_path)}"
            if folder.site_path
            else (f"/v1.0/sites/{folder.hostname}")
        )
        try:
            site = self.graph.get(where)
        except GraphError as exc:
            raise GraphError(f"site {folder.site}: {exc}", status=exc.status, code=exc.code) from None
        drives = self.graph.get(f"/v1.0/sites/{segment(str(site['id']))}/drives").get("value") or []
        drive = next((d for d in drives if str(d.get("name", "")).lower() == folder.library.lower()), None)
        if drive is None:
            names = ", ".join(sorted(str(d.get("name")) for d in drives)) or "none visible"
            raise GraphError(f"site {folder.site} has no document library {folder.library!r} (libraries: {names})")
        drive_id = str(drive["id"])
        path = f"/v1.0/drives/{segment(drive_id)}/root"
        try:
            item = self.graph.get(f"{path}:/{quote_path(folder.folder)}" if folder.folder else path)
        except GraphError as exc:
            if exc.status == 404:
                raise GraphError(f"the folder {folder.folder!r} is not in {folder.site} / {folder.library}") from None
            raise
        if "folder" not in item and "root" not in item:
            raise GraphError(f"{folder.folder!r} in {folder.site} / {folder.library} is not a folder")
        return drive_id, str(item["id"])

    # -- what changed -----------------------------------------------------------------------------
    def _changes(
        self, drive_id: str, folder_id: str, link: str | None, summary: SourceSummary
    ) -> tuple[list[dict[str, Any]], str]:
        """The folder's items changed since `link` (all of them without one), the latest state of
        each, and the new delta link. Delta lists the whole library: only the folder's direct
        children are kept, so memory follows the folder, not the library. An expired link (410)
        starts a new full enumeration, once."""
        start = f"/v1.0/drives/{segment(drive_id)}/root/delta"
        url = link or start
        items: dict[str, dict[str, Any]] = {}
        seen: set[str] = set()  # the links read: one that comes again would be read for ever
        while True:
            if url in seen:
                raise GraphError("Graph gave a delta page link it had given before: the feed does not end; stopped")
            if len(seen) >= MAX_DELTA_PAGES:
                raise GraphError(f"the delta feed went on past {MAX_DELTA_PAGES} pages in one run; stopped")
            seen.add(url)
            try:
                page = self.graph.get(url)
            except GraphError as exc:
                if exc.status == 410 and url != start and not summary.resynced:
                    summary.resynced = True
                    items.clear()
                    seen.clear()
                    url = start
                    log.warning("the delta link expired (%s); reading the whole library again", exc.code or "410")
                    continue
                raise
            for item in page.get("value") or []:
                if not isinstance(item, dict) or not isinstance(item.get("id"), str):
                    continue  # not an item: nothing to keep or to drop
                parent = item.get("parentReference")
                if isinstance(parent, dict) and parent.get("id") == folder_id:
                    items[str(item["id"])] = item  # a later page's state of an item wins
                else:
                    items.pop(str(item["id"]), None)  # moved out of the folder since
            if page.get("@odata.nextLink"):
                url = str(page["@odata.nextLink"])
            elif page.get("@odata.deltaLink"):
                return list(items.values()), str(page["@odata.deltaLink"])
            else:
                raise GraphError("a delta page had neither a next link nor a delta link")

    # -- one item ---------------------------------------------------------------------------------
    def _handle(
        self, item: dict[str, Any], folder: Folder, baseline: bool, lease: KeptLease, summary: SourceSummary
    ) -> None:
        if "file" not in item:
            return  # a folder (only the watched folder's children are here: see _changes)
        if "deleted" in item:
            log.info("%s was deleted from the folder", item.get("name") or "an item")
            return
        if not self._wanted(item):
            return
        item_id = str(item["id"])
        if not item.get("cTag"):  # delta in OneDrive for Business and SharePoint carries none
            current = self._current(folder, item_id)
            if current is None or not self._wanted(current):
                return
            item = current
        if not all(isinstance(item.get(k), str) and item[k] for k in ("eTag", "name")) or not isinstance(
            item.get("cTag", ""), str
        ):
            summary.odd += 1  # one odd answer must not stop the delta link for every other file
            log.warning("Graph described %s without a usable eTag; it is skipped", item.get("name") or "an item")
            return
        name, etag, ctag = str(item["name"]), str(item["eTag"]), content_tag(item)
        key = version_key(item_id, ctag)
        if self.state.record(key) is not None:
            summary.skipped += 1  # this content of this item is handled (renamed or moved back since)
            return
        lease.check()  # a run that lost its lease writes and copies nothing more
        blob_name = f"{self.connector.name}/sharepoint/{key[:12]}/{name}"
        record = ItemRecord(key, item_id, etag, name, COPIED, ctag=ctag, blob=blob_name, at=self._now())
        if baseline:
            record.status, record.blob = BASELINE, None
            self.state.create(record)
            summary.baseline += 1
            return
        with log_context(file=blob_name):
            if self._already_copied(blob_name):
                log.info("%s was copied by an earlier run that stopped before its record", name)
            elif not self._copy(folder.drive_id, item_id, etag, ctag, blob_name, lease):
                return  # changed while it was read: the next delta brings the new version
            else:
                summary.copied.append(blob_name)
                log.info("%s copied from SharePoint to %s/%s", name, self.incoming.container_name, blob_name)
            record.copied_at = record.at
            self.state.create(record)

    @staticmethod
    def _wanted(item: dict[str, Any]) -> bool:
        name = item.get("name")
        return isinstance(name, str) and is_input_file(name)

    def _current(self, folder: Folder, item_id: str) -> dict[str, Any] | None:
        """The item as it is now (with its cTag), None when it left the folder meanwhile (the
        next delta says where it went)."""
        try:
            item = self.graph.get(f"/v1.0/drives/{segment(folder.drive_id)}/items/{segment(item_id)}")
        except GraphError as exc:
            if exc.status != 404:
                raise
            log.info("an item was deleted from the folder before it was read")
            return None
        parent = item.get("parentReference")
        if not isinstance(parent, dict) or parent.get("id") != folder.folder_id or "file" not in item:
            log.info("%s left the folder before it was read", item.get("name"))
            return None
        return item

    def _already_copied(self, blob_name: str) -> bool:
        """The copy exists, or the blob path has seen it already (processed and gone)."""
        if self.incoming.get_blob_client(blob_name).exists():
            return True
        return bool(self.files.history(blob_name))

    def _copy(self, drive_id: str, item_id: str, etag: str, ctag: str, blob_name: str, lease: KeptLease) -> bool:
        """Stream the item into staged blocks, then commit them only if its content tag is still
        `ctag` and the blob does not exist yet. False when the content changed while it was read. A
        download that breaks off starts again (blocks staged under the same ids are replaced)."""
        blob = self.incoming.get_blob_client(blob_name)
        for attempt in range(1, COPY_ATTEMPTS + 1):
            try:
                blocks, size = self._stage(blob, drive_id, item_id)
                break
            except DownloadInterruptedError as exc:
                if attempt == COPY_ATTEMPTS:
                    raise
                log.info("%s; reading the file again (attempt %d of %d)", exc, attempt + 1, COPY_ATTEMPTS)
        now = self.graph.get(f"/v1.0/drives/{segment(drive_id)}/items/{segment(item_id)}")
        if content_tag(now) != ctag:
            log.info("the item changed while it was copied; its new version is copied at the next run")
            return False
        lease.check()
        try:
            blob.commit_block_list(
                blocks,
                metadata={
                    "graph_item_id": item_id,
                    "graph_etag": etag.strip('"'),
                    "graph_ctag": ctag.strip('"'),
                    "bytes": str(size),
                },
                match_condition=MatchConditions.IfMissing,  # If-None-Match: *
            )
        except (ResourceExistsError, ResourceModifiedError):
            log.info("the copy exists already (another run committed it)")
        return True

    def _stage(self, blob: BlobClient, drive_id: str, item_id: str) -> tuple[list[BlobBlock], int]:
        """The item's bytes as uncommitted blocks of `block_size`: memory stays at about one block."""
        blocks: list[BlobBlock] = []
        buffer = bytearray()

        def stage(data: bytes) -> None:
            block_id = base64.b64encode(f"{len(blocks):08d}".encode()).decode()
            blob.stage_block(block_id, data)
            blocks.append(BlobBlock(block_id=block_id))

        size = 0
        for piece in self.graph.download(drive_id, item_id):
            buffer += piece
            size += len(piece)
            while len(buffer) >= self.block_size:
                stage(bytes(buffer[: self.block_size]))
                del buffer[: self.block_size]
        if buffer or not blocks:
            stage(bytes(buffer))
        return blocks, size

    # -- after the upload ---------------------------------------------------------------------------
    def _move_finished(self, folder: Folder, lease: KeptLease, summary: SourceSummary) -> None:
        mover = Mover(self.graph, self.blobs, folder, now=self.clock())
        for key in self.state.with_status(COPIED):
            lease.check()
            try:
                found = self.state.record(key)
            except DamagedStateError as exc:
                summary.failures.append(str(exc))
                continue
            if found is None or found[0].status != COPIED or not found[0].blob:
                continue
            record, etag = found
            state = finished_state(self.files.history(found[0].blob))
            if state is None:
                continue  # not uploaded yet (or the upload is still running)
            with log_context(file=record.blob):
                try:
                    record = mover.move(record, state)
                except (GraphError, AzureError) as exc:
                    why = str(exc) if isinstance(exc, GraphError) else type(exc).__name__
                    if isinstance(exc, GraphError) and exc.status == 403:
                        why += (
                            " (moving items and uploading reports needs the site grant `write`; with `read`, "
                            "set HR_SOURCE_MOVE, or source_move in HR_CONNECTORS, to false)"
                        )
                    summary.failures.append(f"moving {record.name}: {why}")
                    log.error("%s could not be moved: %s", record.name, why)
                    continue
                record.at = self._now()
                try:
                    self.state.update(record, etag)
                except StateConflictError:
                    continue  # another run recorded it
                (summary.not_moved if record.status == FAILED_TO_MOVE else summary.moved).append(record.name)

    def _now(self) -> str:
        return self.clock().isoformat(timespec="seconds")
