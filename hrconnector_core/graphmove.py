"""After its upload, a copied SharePoint/OneDrive file goes to `Processed` or `Failed` beside it,
with its report (and the rejected rows, if any) next to it: the people who drop files see the
outcome where they dropped them.

Order, so that a crash at any step is finished by the next run and nothing is done twice: the
item is looked at first (already in the target folder: only the record is missing), then the
report is uploaded (replacing any earlier attempt's), then the item, if its content is still the
copied one (its cTag; a rename does not matter), is moved under If-Match the eTag just read, then
the record says `moved`. An item deleted, changed or moved away by a person
meanwhile is left alone and the record says why.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from pathlib import PurePosixPath

from azure.core.exceptions import AzureError, ResourceNotFoundError
from azure.storage.blob import BlobServiceClient

from .blobstore import FileState
from .graph import GraphClient, GraphError, quote_path, segment
from .graphstate import FAILED_TO_MOVE, MOVED, ItemRecord, content_tag

log = logging.getLogger(__name__)

PROCESSED_FOLDER, FAILED_FOLDER = "Processed", "Failed"
SIMPLE_UPLOAD_LIMIT = 4 * 1000 * 1000  # Graph's simple upload (PUT .../content) takes up to 4 MB


@dataclass(frozen=True)
class Folder:
    """The watched folder of one run: its drive and item id."""

    drive_id: str
    folder_id: str


class Mover:
    def __init__(self, graph: GraphClient, blobs: BlobServiceClient, folder: Folder, *, now: datetime) -> None:
        self.graph = graph
        self.blobs = blobs
        self.folder = folder
        self.now = now
        self._targets: dict[str, str] = {}

    def _item_path(self, item_id: str) -> str:
        return f"/v1.0/drives/{segment(self.folder.drive_id)}/items/{segment(item_id)}"

    def target(self, name: str, *, create: bool = True) -> str | None:
        """The id of `Processed` or `Failed` in the watched folder, created when first needed."""
        if name not in self._targets:
            child = f"{self._item_path(self.folder.folder_id)}:/{segment(name)}"
            try:
                found = self.graph.get(child)
            except GraphError as exc:
                if exc.status != 404:
                    raise
                if not create:
                    return None
                try:
                    found = self.graph.post(
                        f"{self._item_path(self.folder.folder_id)}/children",
                        {"name": name, "folder": {}, "@microsoft.graph.conflictBehavior": "fail"},
                    )
                except GraphError as conflict:
                    if conflict.status != 409:  # created meanwhile by another run or a person: use it
                        raise
                    found = self.graph.get(child)
            self._targets[name] = str(found["id"])
        return self._targets[name]

    def exists(self, parent_id: str, name: str) -> bool:
        try:
            self.graph.get(f"{self._item_path(parent_id)}:/{quote_path(name)}")
        except GraphError as exc:
            if exc.status == 404:
                return False
            raise
        return True

    def move(self, record: ItemRecord, state: FileState) -> ItemRecord:
        """Move the record's item after its upload `state`; returns the record as it now is."""
        folder_name = PROCESSED_FOLDER if state.status == "processed" else FAILED_FOLDER
        try:
            item = self.graph.get(self._item_path(record.item_id))
        except GraphError as exc:
            if exc.status != 404:
                raise
            return self._not_moved(record, "the item was deleted from the folder after it was copied")
        parent = (item.get("parentReference") or {}).get("id")
        # Already there: moved by an earlier run that stopped before its record.
        if parent is not None and parent != self.folder.folder_id and parent == self.target(folder_name, create=False):
            record.status, record.moved_to = MOVED, f"{folder_name}/{item.get('name')}"
            return record
        if parent != self.folder.folder_id:
            return self._not_moved(record, "the item was moved out of the folder after it was copied")
        if content_tag(item) != (record.ctag or record.etag):  # renamed only: still the copied content
            changed = "the item was changed after it was copied (the new version is copied on its own)"
            return self._not_moved(record, changed)
        target = self.target(folder_name)
        assert target is not None
        name = str(item.get("name") or record.name)  # as a person may have renamed it
        for attempt in range(2):
            final = self._free_name(target, name, force_suffix=attempt > 0)
            self._upload_reports(target, final, state)
            try:
                self.graph.patch(
                    self._item_path(record.item_id),
                    {"parentReference": {"id": target}, "name": final},
                    if_match=str(item["eTag"]),  # as just read: a change since refuses the move
                    **{"@microsoft.graph.conflictBehavior": "fail"},
                )
            except GraphError as exc:
                if exc.status == 409 and attempt == 0:  # the name was taken meanwhile
                    continue
                if exc.status == 412:
                    return self._not_moved(record, "the item was changed after it was copied")
                if exc.status == 404:
                    return self._not_moved(record, "the item was deleted from the folder after it was copied")
                raise
            record.status, record.moved_to = MOVED, f"{folder_name}/{final}"
            log.info("%s moved to %s with its report", record.name, record.moved_to)
            return record
        raise GraphError(f"could not find a free name for {record.name} in {folder_name}")

    def _free_name(self, target: str, name: str, *, force_suffix: bool) -> str:
        """`name`, or with a timestamp before its extension when the target folder has one already."""
        if not force_suffix and not self.exists(target, name):
            return name
        path = PurePosixPath(name)
        stamp = f"{self.now:%Y%m%dT%H%M%SZ}"
        return f"{path.stem}-{stamp}{path.suffix}"

    def _upload_reports(self, target: str, final: str, state: FileState) -> None:
        for stored, suffix, content_type in (
            (state.report, ".report.json", "application/json"),
            (state.rejected_rows, ".rejected.csv", "text/csv"),
        ):
            if not stored:
                continue
            data = self._read(stored)
            if data is None:
                continue
            if len(data) > SIMPLE_UPLOAD_LIMIT:
                log.warning("%s%s is larger than 4 MB; it stays in %s only", final, suffix, stored)
                continue
            path = f"{self._item_path(target)}:/{quote_path(final + suffix)}:/content"
            self.graph.put_content(path, data, content_type)

    def _read(self, stored: str) -> bytes | None:
        container, _, name = stored.partition("/")
        try:
            return bytes(self.blobs.get_blob_client(container, name).download_blob().readall())
        except ResourceNotFoundError:
            log.warning("%s is gone (retention?); the item is moved without it", stored)
            return None
        except AzureError as exc:
            raise GraphError(f"cannot read {stored}: {type(exc).__name__}") from exc

    @staticmethod
    def _not_moved(record: ItemRecord, why: str) -> ItemRecord:
        record.status, record.note = FAILED_TO_MOVE, why
        log.warning("%s not moved: %s", record.name, why)
        return record


def finished_state(states: list[FileState]) -> FileState | None:
    """The finished upload of the copy (one version: the copy is written once), if any."""
    return next((s for s in states if s.finished), None)
