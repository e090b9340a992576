"""After its upload, a copied SharePoint/OneDrive file goes to `Processed` or `Failed` beside it,
with its report (and the rejected rows, if any) next to it: the people who drop files see the
outcome where they dropped them.

Order, so that a crash at any step is finished by the next run and nothing is done twice or
overwritten: the item is looked at first (already in the target folder, moved there by an
earlier run or by a person: only its report and record are missing); then, if its content is
still the copied one (its cTag; a rename does not matter), it is moved under If-Match the eTag
just read, to a name that is free for the file and its report and rejected rows together; only
then are the report and rejected rows uploaded (never replacing a file), then the record says
`moved`. A refused move leaves nothing in the target folder. An item deleted, changed or moved
away by a person meanwhile is left alone and the record says why.
"""

from __future__ import annotations

import json
import logging
import tempfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import PurePosixPath
from typing import IO

from azure.core.exceptions import AzureError, ResourceNotFoundError
from azure.storage.blob import BlobServiceClient

from .blobstore import FileState
from .graph import GraphClient, GraphError, quote_path, segment
from .graphstate import FAILED_TO_MOVE, MOVED, ItemRecord, content_tag

log = logging.getLogger(__name__)

PROCESSED_FOLDER, FAILED_FOLDER = "Processed", "Failed"
SIMPLE_UPLOAD_LIMIT = 4 * 1000 * 1000  # Graph's simple upload (PUT .../content) takes up to 4 MB
REPORT, REJECTED = ".report.json", ".rejected.csv"  # put beside the moved file's name
FAIL = {"@microsoft.graph.conflictBehavior": "fail"}  # never replace what is in the folder
PIECE = 1 << 20  # bytes of a report read from storage at a time
NAME_TRIES = 5  # free names tried for one move (the name, then timestamped ones)


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
        """The id of `Processed` or `Failed` in the watched folder, created when first needed. A
        file of that name there is an error naming it (Graph would refuse every move opaquely)."""
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
                        f"{self._item_path(self.folder.folder_id)}/children", {"name": name, "folder": {}, **FAIL}
                    )
                except GraphError as conflict:
                    if conflict.status != 409:  # created meanwhile by another run or a person: use it
                        raise
                    found = self.graph.get(child)
            if "folder" not in found:
                raise GraphError(
                    f"the watched folder holds a file named {name!r}, so no item can be moved to a {name} "
                    "folder: rename or remove that file"
                )
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
        if not isinstance(item.get("eTag"), str) or not item["eTag"]:  # odd: never moved without If-Match
            return self._not_moved(record, "Graph described the item without an eTag")
        parent = (item.get("parentReference") or {}).get("id")
        name = str(item.get("name") or record.name)  # as a person may have renamed it
        # Already there: moved by an earlier run that stopped before its report and record, or
        # by a person. Its report is put beside it (unless there already).
        if parent is not None and parent != self.folder.folder_id and parent == self.target(folder_name, create=False):
            self._upload_reports(parent, name, state, earlier=True)
            record.status, record.moved_to = MOVED, f"{folder_name}/{name}"
            return record
        if parent != self.folder.folder_id:
            return self._not_moved(record, "the item was moved out of the folder after it was copied")
        if content_tag(item) != (record.ctag or record.etag):  # renamed only: still the copied content
            changed = "the item was changed after it was copied (the new version is copied on its own)"
            return self._not_moved(record, changed)
        target = self.target(folder_name)
        assert target is not None
        for attempt in range(NAME_TRIES):
            final = self._free_name(target, name, attempt)
            if final is None:
                continue
            try:
                self.graph.patch(
                    self._item_path(record.item_id),
                    {"parentReference": {"id": target}, "name": final},
                    if_match=item["eTag"],  # as just read: a change since refuses the move
                    **FAIL,
                )
            except GraphError as exc:
                if exc.status == 409:  # the name was taken meanwhile
                    continue
                if exc.status == 412:
                    return self._not_moved(record, "the item was changed after it was copied")
                if exc.status == 404:
                    return self._not_moved(record, "the item was deleted from the folder after it was copied")
                raise
            self._upload_reports(target, final, state)
            record.status, record.moved_to = MOVED, f"{folder_name}/{final}"
            log.info("%s moved to %s with its report", record.name, record.moved_to)
            return record
        raise GraphError(f"could not find a free name for {name} in {folder_name}")

    def _free_name(self, target: str, name: str, attempt: int) -> str | None:
        """`name` (first try), else with a UTC timestamp (and a number) before its extension, when
        neither it nor its report and rejected-rows names are taken in the target folder."""
        path = PurePosixPath(name)
        stamp = f"{self.now:%Y%m%dT%H%M%SZ}" + (f"-{attempt}" if attempt > 1 else "")
        final = name if attempt == 0 else f"{path.stem}-{stamp}{path.suffix}"
        if any(self.exists(target, final + extra) for extra in ("", REPORT, REJECTED)):
            return None
        return final

    def _upload_reports(self, target: str, final: str, state: FileState, *, earlier: bool = False) -> None:
        """The report and rejected rows beside `final`, never replacing a file of that name. Each
        goes through a temporary file a piece at a time (memory stays at a piece). Rejected rows
        larger than a simple upload are not put beside it: the report says where they are."""
        elsewhere = None
        if state.rejected_rows:
            size = self._size(state.rejected_rows)
            if size is not None and size > SIMPLE_UPLOAD_LIMIT:
                elsewhere = state.rejected_rows
                log.warning("%s%s is larger than 4 MB; it stays in %s only", final, REJECTED, elsewhere)
            elif size is not None:
                self._put(target, final + REJECTED, state.rejected_rows, size, "text/csv", earlier)
        size = self._size(state.report) if state.report else None
        if state.report and size is not None:
            note = f'"rejected_rows_stored_at": {json.dumps(elsewhere)},' if elsewhere else ""
            self._put(target, final + REPORT, state.report, size, "application/json", earlier, note.encode())

    def _put(
        self, target: str, name: str, stored: str, size: int, content_type: str, earlier: bool, note: bytes = b""
    ) -> None:
        """`stored` (container/blob) uploaded as `name` in `target`; `note` inserted after the
        opening brace of a JSON object."""
        if size + len(note) > SIMPLE_UPLOAD_LIMIT:
            log.warning("%s is larger than 4 MB; it is not put beside the file (it is in %s)", name, stored)
            return
        path = f"{self._item_path(target)}:/{quote_path(name)}:/content"
        try:
            with tempfile.TemporaryFile() as spool:
                if not self._spool(stored, size, spool, note):
                    return
                self.graph.put_content(path, spool, content_type, **FAIL)
        except GraphError as exc:
            if exc.status != 409:
                raise
            if not earlier:  # a person's file of that name appeared meanwhile: theirs stays
                log.warning("%s appeared in the folder meanwhile; it is left as it is", name)

    def _size(self, stored: str) -> int | None:
        container, _, name = stored.partition("/")
        try:
            return int(self.blobs.get_blob_client(container, name).get_blob_properties().size)
        except ResourceNotFoundError:
            log.warning("%s is gone (retention?); the item is moved without it", stored)
            return None
        except AzureError as exc:
            raise GraphError(f"cannot read {stored}: {type(exc).__name__}") from exc

    def _spool(self, stored: str, size: int, spool: IO[bytes], note: bytes) -> bool:
        """`stored` into `spool` a piece at a time (`note` after its first `{`); False when gone."""
        container, _, name = stored.partition("/")
        blob = self.blobs.get_blob_client(container, name)
        try:
            for offset in range(0, size, PIECE):
                piece = blob.download_blob(offset=offset, length=min(PIECE, size - offset)).readall()
                if offset == 0 and note and piece.lstrip().startswith(b"{"):
                    head, _, rest = piece.partition(b"{")
                    empty = rest.lstrip().startswith(b"}")  # no member follows: no comma
                    piece = head + b"{" + (note.rstrip(b",") if empty else note) + rest
                spool.write(piece)
        except ResourceNotFoundError:
            log.warning("%s is gone (retention?); the item is moved without it", stored)
            return False
        except AzureError as exc:
            raise GraphError(f"cannot read {stored}: {type(exc).__name__}") from exc
        return True

    @staticmethod
    def _not_moved(record: ItemRecord, why: str) -> ItemRecord:
        record.status, record.note = FAILED_TO_MOVE, why
        log.warning("%s not moved: %s", record.name, why)
        return record


def finished_state(states: list[FileState]) -> FileState | None:
    """The finished upload of the copy (one version: the copy is written once), if any."""
    return next((s for s in states if s.finished), None)
