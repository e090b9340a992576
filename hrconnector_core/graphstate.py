"""What the SharePoint/OneDrive source remembers, in hr-state (no HR data):

    graph/<connector>/delta.json              drive, folder, site, delta link, last run; leased by a run
    graph/<connector>/items/<key>.json        one record per item version (item id + content tag)

A version is the item's id and its content tag (cTag, which changes with the bytes only): a
rename, or a move out of the folder and back, changes the eTag but not the data, so it is not a
new version and nothing is sent again, however long after the upload. A record says what became
of one version: `baseline` (there before the source's first run, not
copied), `copied` (in hr-incoming under `blob`), `moved` (to Processed/Failed with its report),
`failed-to-move` (deleted, changed or moved away meanwhile: left where it was). Records are never
deleted by retention: they are what makes a new full enumeration (an expired delta link) copy
nothing twice. The record's status is also its blob metadata, so pending moves are found from a
listing alone.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from typing import Any

from azure.core.exceptions import AzureError
from azure.storage.blob import ContainerClient

from .blobstore import JsonBlobs, StateConflictError, json_object
from .errors import StorageError

BASELINE, COPIED, MOVED, FAILED_TO_MOVE = "baseline", "copied", "moved", "failed-to-move"


def version_key(item_id: str, ctag: str) -> str:
    """One key per version of an item's content: the same item and cTag always give the same key
    (and blob name)."""
    return hashlib.sha256(f"{item_id}\n{ctag}".encode()).hexdigest()[:32]


def content_tag(item: dict[str, Any]) -> str:
    """The item's content tag (cTag: changes with its bytes, not with a rename or a move); its
    eTag where an answer carries no cTag (then a rename counts as a new version)."""
    return str(item.get("cTag") or item["eTag"])


@dataclass
class ItemRecord:
    key: str
    item_id: str
    etag: str  # the eTag when it was recorded (a move is made If-Match the eTag it reads then)
    name: str
    status: str
    ctag: str | None = None  # the content tag of the version (key); None in records of before
    blob: str | None = None  # hr-incoming name of the copy
    at: str | None = None  # when the status was set
    copied_at: str | None = None
    moved_to: str | None = None  # Processed/<name> or Failed/<name>
    note: str | None = None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ItemRecord:
        record = cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})
        if not all(isinstance(v, str) for v in (record.key, record.item_id, record.etag, record.name, record.status)):
            raise TypeError("a field has the wrong type")
        return record


class SourceState:
    """One connector's source documents in the state container."""

    def __init__(self, container: ContainerClient, connector: str) -> None:
        self.blobs = JsonBlobs(container)
        self.prefix = f"graph/{connector}/"
        self.delta_name = f"{self.prefix}delta.json"

    def record_name(self, key: str) -> str:
        return f"{self.prefix}items/{key}.json"

    def record(self, key: str) -> tuple[ItemRecord, str] | None:
        """The record and its ETag, None when there is none (DamagedStateError when unreadable)."""
        found = self.blobs.read(self.record_name(key), lambda raw: ItemRecord.from_dict(json_object(raw)))
        return (found[0], found[1]) if found else None

    def create(self, record: ItemRecord) -> bool:
        """Write a new record; False when one exists already (another run wrote it)."""
        try:
            self.blobs.write(
                self.record_name(record.key), asdict(record), etag=None, metadata={"status": record.status}
            )
        except StateConflictError:
            return False
        return True

    def update(self, record: ItemRecord, etag: str) -> None:
        self.blobs.write(self.record_name(record.key), asdict(record), etag=etag, metadata={"status": record.status})

    def with_status(self, status: str) -> list[str]:
        """Keys of the records whose status is `status`, from the listing's metadata."""
        try:
            items = self.blobs.container.list_blobs(name_starts_with=f"{self.prefix}items/", include=["metadata"])
            return [
                item.name.rsplit("/", 1)[1].removesuffix(".json")
                for item in items
                if (item.metadata or {}).get("status") == status
            ]
        except AzureError as exc:
            raise StorageError(f"cannot list the source's records: {type(exc).__name__}") from exc
