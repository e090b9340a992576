"""The Microsoft Graph drive API the Graph folder source uses, emulated (SharePoint / OneDrive for Business).

Why: the source must be tested over real HTTPS with the real token and HTTP code, against a
service that behaves like Graph where it matters: delta on the drive root with paging, a delta
link, 410 `resyncRequired` when a token has expired, deleted items with the `deleted` facet and no
`parentReference.path`, downloads by a 302 redirect to a pre-authenticated URL that refuses a
bearer token, create folder / move / simple upload with `@microsoft.graph.conflictBehavior` and
`If-Match`, `Sites.Selected` grants per site, and 429/503 with `Retry-After`.

Python API (tests and the demo call it directly; it bypasses tokens, grants and faults, as a person
working in SharePoint would):

    graph = state.graph
    site_id  = graph.add_site("contoso.sharepoint.com", "/sites/HR")     # "host,<guid>,<guid>"
    drive_id = graph.add_drive(site_id, "Documents")                      # a document library
    folder   = graph.ensure_folder(drive_id, "HR/Exports")                # folder item id
    item     = graph.put_file(drive_id, "HR/Exports/leavers.csv", b"...") # new item or new version -> dict
    graph.delete_item(drive_id, item_id)
    graph.move_item(drive_id, item_id, new_parent_id, new_name=None)
    graph.grant_site(client_id, site_id, "write")                         # Sites.Selected ("read" | "write")
    graph.expire_delta_tokens()                                           # every link issued so far -> 410
    graph.children(drive_id, "HR/Exports")                                # {name: item dict}
    graph.content(drive_id, item_id) -> bytes
    graph.page_size = 200                                                 # delta page size
    state.set_graph_faults(rate_429=..., rate_503=..., retry_after_seconds=1, seed=...)
    graph.requests                                                        # [(method, path with query)]

Additions to the shared design (documented here, as agreed):
- `add_drive(..., drive_type="documentLibrary")`; `item(drive_id, item_id)` and
  `item_by_path(drive_id, path)` -> item dict or None; `grant_all(client_id, role)` stands for the
  tenant-wide `Files.Read.All` / `Files.ReadWrite.All` application permission.
- `expire_delta_tokens(code="resyncRequired")`: the 410's error code (Graph also sends
  `resyncChangesApplyDifferences` / `resyncChangesUploadDifferences`).
- `fail_next(*statuses, retry_after_seconds=1)`: the next Graph API requests (not downloads) are
  answered with these statuses (429/503 carry `Retry-After`), in order: deterministic faults.
- `repeat_in_delta = True`: as Graph may, an incremental delta also lists each changed item
  earlier in the feed in its state before its last change (the client must use the last occurrence).
- `reset_faults()`: no rates, no queued faults (for a test fixture's teardown).
- `expire_download_urls()`: every pre-authenticated URL issued so far answers 401 (as after an hour).
- `fail_next_download(*statuses, retry_after_seconds=1)`: the next downloads (pre-authenticated
  URL) answer these statuses; `cut_next_download(after_bytes)`: the next download sends its
  headers (full Content-Length) and `after_bytes` bytes, then hangs up (a connection lost mid-file).
- `calls`: [GraphCall(method, path, status, authorization)] - each request with its answer and
  whether it carried an Authorization header (downloads must not).
- `set_faults(...)` on GraphState itself (EmulatorState.set_graph_faults delegates to it).
- Admin over HTTP (no auth, loopback tooling): `POST /admin/graph/files` {drive_id, path,
  content_b64} -> item; `POST /admin/graph/faults` {rate_429, rate_503, retry_after_seconds, seed}
  -> faults; `GET /admin/graph/children?drive_id=&path=` -> {name: item}; `POST /admin/graph/sites`
  {hostname, path, library, grants: [{client_id, role}]} -> {site_id, drive_id}; `POST
  /admin/graph/delete` {drive_id, item_id}; `POST /admin/graph/move` {drive_id, item_id,
  parent_id, name}; `POST /admin/graph/expire-delta` {code}.
- Also served: `GET /drives/{d}`, `GET .../children` (one page, not paged), `DELETE
  /drives/{d}/items/{id}` (204), `GET /sites/{host}` (root site), `GET /sites/{site-id}`,
  `GET /sites/{host}:/{path}:/drives`, `GET /sites/{site-id}/drive`, `GET .../root:/{path}:/content`,
  `PUT /drives/{d}/items/{id}/content` and `PUT /drives/{d}/root:/{path}:/content`. `GET` of a
  file item also carries `@microsoft.graph.downloadUrl` (the same pre-authenticated URL).

Access: every `/v1.0` route wants a bearer token the emulator issued for a Graph audience
(GRAPH_AUDIENCES; else 401 `InvalidAuthenticationToken`) whose app or managed identity holds a
grant on the item's site: `read` for GET, `write` for POST, PATCH, PUT and DELETE (else 403
`accessDenied`). Faults are drawn before the token is looked at, as a gateway would throttle.

The Python API raises GraphError (status, code) where the HTTP API would answer an error, and
KeyError for a folder `children` cannot find.

Delta: a request without a token enumerates every item of the drive (root first, parents before
children); with a token it returns the latest state of each item changed since that token, once
(a change to an item also lists its ancestor folders, as Graph does). An enumeration is cut into
pages of `page_size` when its first page is asked for; `@odata.nextLink` until the last page, which
carries `@odata.deltaLink`. `token=latest` answers no items and a delta link for now. eTag changes
on every content change, rename and move; cTag on content changes only. As in OneDrive for
Business, delta items carry no cTag and no parentReference.path, and a deleted item carries only
its id, parentReference and `deleted` (no name); `GET` of an item gives every property.
"""

from __future__ import annotations

import base64
import contextlib
import itertools
import json
import mimetypes
import random
import re
import secrets
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

if TYPE_CHECKING:
    from .server import Handler

GRAPH_AUDIENCES = ("https://graph.microsoft.com", "https://graph.microsoft.us", "https://dod-graph.microsoft.us")
DOWNLOAD_URL_SECONDS = 3600
ROLES = ("read", "write")
RESYNC_CODES = ("resyncRequired", "resyncChangesApplyDifferences", "resyncChangesUploadDifferences")
CONFLICT = "@microsoft.graph.conflictBehavior"
LATEST = "latest"  # delta?token=latest: no items, a delta link for now
_BAD_NAME = re.compile(r'["*:<>?/\\|]')


class GraphError(Exception):
    """An error answer in Graph's shape: {"error": {"code", "message"}}."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}


@dataclass
class GraphFaults:
    """Fault injection for the Graph API (separate from the ingestion faults); rates per request."""

    rate_429: float = 0.0
    rate_503: float = 0.0
    retry_after_seconds: int = 1
    seed: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class GraphCall:
    method: str
    path: str
    status: int
    authorization: bool


@dataclass
class _Site:
    id: str
    hostname: str
    path: str  # server-relative, "/sites/HR"; "/" for the root site
    display_name: str


@dataclass
class _Drive:
    id: str
    site_id: str
    name: str
    drive_type: str
    root_id: str


@dataclass
class _Item:
    id: str
    drive_id: str
    name: str
    parent_id: str | None  # None: the drive's root
    folder: bool
    guid: str = field(default_factory=lambda: str(uuid.uuid4()).upper())
    content: bytes = b""
    version: int = 1  # eTag: every content change, rename, move
    content_version: int = 1  # cTag: content changes only
    created: str = ""
    modified: str = ""
    deleted: bool = False
    seq: int = 0  # the change sequence number of its last change (delta)
    previous: dict[str, Any] | None = None  # its delta JSON before its last change (repeat_in_delta)


@dataclass
class _Cursor:
    """A delta link (`since`) or a page of an enumeration under way (`pages`)."""

    drive_id: str
    since: int = 0
    pages: list[list[dict[str, Any]]] | None = None
    page: int = 0
    end_seq: int = 0
    expired_code: str | None = None


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _item_id() -> str:
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
    return "01" + "".join(secrets.choice(alphabet) for _ in range(32))


def _parts(path: str) -> list[str]:
    return [p for p in path.strip("/").split("/") if p]


def _check_name(name: str) -> None:
    if not name or name.strip() != name or _BAD_NAME.search(name) or name in (".", ".."):
        raise GraphError(400, "invalidRequest", "The provided name is not valid.")


class GraphState:
    """Sites, drives, items and their change log; delta cursors; grants; faults; request log."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.lock = threading.RLock()
        self.clock = clock
        self.sites: dict[str, _Site] = {}
        self.drives: dict[str, _Drive] = {}
        self.items: dict[str, _Item] = {}
        self._kids: dict[str, dict[str, _Item]] = {}  # folder id -> {child id: child}, live items only
        self._by_drive: dict[str, list[_Item]] = {}  # drive id -> every item ever made in it
        self.grants: dict[tuple[str, str], str] = {}  # (client id, site id or "*") -> role
        self.page_size = 200
        # Graph: "the same item may appear more than once in a delta feed; use the last occurrence".
        # True: each changed item also comes earlier in the feed in its state before its last change.
        self.repeat_in_delta = False
        self.requests: list[tuple[str, str]] = []
        self.calls: list[GraphCall] = []
        self.faults = GraphFaults()
        self._rng = random.Random()
        self._queued: list[tuple[int, int]] = []  # (status, retry-after)
        self._download_faults: list[tuple[int, int]] = []  # (status, retry-after) or (0, bytes sent before hanging up)
        self._seq = 0
        self._cursors: dict[str, _Cursor] = {}
        self._downloads: dict[str, tuple[str, str, float]] = {}  # token -> drive, item, expires at

    # -- what a person (or an admin) does ----------------------------------------------------
    def add_site(self, hostname: str, path: str = "/", display_name: str | None = None) -> str:
        """A SharePoint site (or a OneDrive for Business personal site): its Graph id."""
        path = "/" + path.strip("/") if path.strip("/") else "/"
        site_id = f"{hostname.lower()},{uuid.uuid4()},{uuid.uuid4()}"
        name = display_name or (_parts(path)[-1] if _parts(path) else hostname.split(".")[0])
        with self.lock:
            self.sites[site_id] = _Site(site_id, hostname.lower(), path, name)
        return site_id

    def add_drive(self, site_id: str, name: str = "Documents", drive_type: str = "documentLibrary") -> str:
        """A document library of the site: its drive id (`b!...`), with an empty root folder."""
        drive_id = "b!" + base64.urlsafe_b64encode(secrets.token_bytes(48)).decode().rstrip("=")
        with self.lock:
            if site_id not in self.sites:
                raise KeyError(f"no site {site_id}")
            root = self._new_item(drive_id, "root", None, folder=True)
            self.drives[drive_id] = _Drive(drive_id, site_id, name, drive_type, root.id)
            self._touch(root)
        return drive_id

    def ensure_folder(self, drive_id: str, path: str) -> str:
        """The folder at `path` (created with its parents when absent): its item id."""
        with self.lock:
            current = self._root(drive_id)
            for name in _parts(path):
                child = self._child(current, name)
                if child is None:
                    _check_name(name)
                    child = self._new_item(drive_id, name, current.id, folder=True)
                    self._touch(child)
                elif not child.folder:
                    raise ValueError(f"{name!r} is a file")
                current = child
            return current.id

    def put_file(self, drive_id: str, path: str, data: bytes) -> dict[str, Any]:
        """Save a file at `path` (parents created): a new item, or a new version of the one there."""
        parts = _parts(path)
        if not parts:
            raise ValueError("a file path is needed")
        with self.lock:
            parent = self.items[self.ensure_folder(drive_id, "/".join(parts[:-1]))]
            return self._json(self._write(parent, parts[-1], data, "replace"))

    def delete_item(self, drive_id: str, item_id: str) -> None:
        with self.lock:
            self._delete(self._get(drive_id, item_id))

    def move_item(self, drive_id: str, item_id: str, new_parent_id: str, new_name: str | None = None) -> dict[str, Any]:
        with self.lock:
            item = self._get(drive_id, item_id)
            return self._json(self._move(item, self._get(drive_id, new_parent_id), new_name, "fail"))

    def grant_site(self, client_id: str, site_id: str, role: str) -> None:
        """A Sites.Selected permission on one site for an application (client id)."""
        if role not in ROLES:
            raise ValueError(f"role must be one of {ROLES}")
        with self.lock:
            self.grants[(client_id.lower(), site_id)] = role

    def grant_all(self, client_id: str, role: str) -> None:
        """Files.Read.All ("read") or Files.ReadWrite.All ("write"): every site."""
        self.grant_site(client_id, "*", role)

    def revoke_site(self, client_id: str, site_id: str) -> None:
        with self.lock:
            self.grants.pop((client_id.lower(), site_id), None)

    def expire_delta_tokens(self, code: str = "resyncRequired") -> None:
        """Every delta and next link issued so far answers 410 with this code."""
        if code not in RESYNC_CODES:
            raise ValueError(f"code must be one of {RESYNC_CODES}")
        with self.lock:
            for cursor in self._cursors.values():
                cursor.expired_code = code

    def expire_download_urls(self) -> None:
        with self.lock:
            self._downloads = {t: (d, i, 0.0) for t, (d, i, _) in self._downloads.items()}

    def children(self, drive_id: str, path: str = "") -> dict[str, dict[str, Any]]:
        """Direct children (files and folders) of the folder at `path`: {name: item dict}."""
        with self.lock:
            folder = self._resolve(drive_id, path)
            if folder is None or not folder.folder:
                raise KeyError(f"no folder {path!r}")
            return {c.name: self._json(c) for c in self._children(folder)}

    def content(self, drive_id: str, item_id: str) -> bytes:
        with self.lock:
            return self._get(drive_id, item_id).content

    def item(self, drive_id: str, item_id: str) -> dict[str, Any] | None:
        with self.lock:
            found = self.items.get(item_id)
            return None if found is None or found.deleted or found.drive_id != drive_id else self._json(found)

    def item_by_path(self, drive_id: str, path: str) -> dict[str, Any] | None:
        with self.lock:
            found = self._resolve(drive_id, path)
            return None if found is None else self._json(found)

    def set_faults(self, **values: Any) -> GraphFaults:
        with self.lock:
            self.faults = GraphFaults(**{**self.faults.to_dict(), **values})
            self._rng = random.Random(self.faults.seed)
            return self.faults

    def reset_faults(self) -> None:
        """No fault rates, no queued API or download faults (a test's clean start or end)."""
        with self.lock:
            self.faults = GraphFaults()
            self._rng = random.Random()
            self._queued.clear()
            self._download_faults.clear()

    def fail_next(self, *statuses: int, retry_after_seconds: int = 1) -> None:
        """The next Graph API requests get these statuses, one each, in order."""
        with self.lock:
            self._queued.extend((s, retry_after_seconds) for s in statuses)

    def fail_next_download(self, *statuses: int, retry_after_seconds: int = 1) -> None:
        """The next downloads from pre-authenticated URLs get these statuses, one each, in order."""
        with self.lock:
            self._download_faults.extend((s, retry_after_seconds) for s in statuses)

    def cut_next_download(self, after_bytes: int) -> None:
        """The next download hangs up after `after_bytes` bytes of its body."""
        with self.lock:
            self._download_faults.append((0, after_bytes))

    def take_download_fault(self) -> tuple[int, int] | None:
        with self.lock:
            return self._download_faults.pop(0) if self._download_faults else None

    # -- internals (called with the lock held) -----------------------------------------------
    def _new_item(self, drive_id: str, name: str, parent_id: str | None, *, folder: bool) -> _Item:
        now = _now()
        item = _Item(_item_id(), drive_id, name, parent_id, folder, created=now, modified=now)
        self.items[item.id] = item
        self._by_drive.setdefault(drive_id, []).append(item)
        if parent_id is not None:
            self._kids.setdefault(parent_id, {})[item.id] = item
        return item

    def _touch(self, item: _Item, *, also: _Item | None = None) -> None:
        """Record a change of `item`: its ancestors (and `also`'s, a move's old parent) first."""
        chain: list[_Item] = []
        for start in (also, self.items.get(item.parent_id or "")):
            node = start
            while node is not None:
                if node not in chain:
                    chain.append(node)
                node = self.items.get(node.parent_id or "")
        for node in reversed(chain):
            self._seq += 1
            node.seq = self._seq
        self._seq += 1
        item.seq = self._seq

    def _root(self, drive_id: str) -> _Item:
        drive = self.drives.get(drive_id)
        if drive is None:
            raise GraphError(404, "itemNotFound", "The drive cannot be found.")
        return self.items[drive.root_id]

    def _get(self, drive_id: str, item_id: str) -> _Item:
        item = self.items.get(item_id)
        if item is None or item.deleted or item.drive_id != drive_id:
            raise GraphError(404, "itemNotFound", "The resource could not be found.")
        return item

    def _children(self, folder: _Item) -> list[_Item]:
        return list(self._kids.get(folder.id, {}).values())

    def _child(self, folder: _Item, name: str) -> _Item | None:
        return next((c for c in self._children(folder) if c.name.lower() == name.lower()), None)

    def _resolve(self, drive_id: str, path: str, start: _Item | None = None) -> _Item | None:
        current: _Item | None = start or self._root(drive_id)
        for name in _parts(path):
            if current is None or not current.folder:
                return None
            current = self._child(current, name)
        return current

    def _path(self, item: _Item) -> str:
        names: list[str] = []
        node: _Item | None = item
        while node is not None and node.parent_id is not None:
            names.append(node.name)
            node = self.items.get(node.parent_id)
        return "/".join(reversed(names))

    def _free_name(self, folder: _Item, name: str) -> str:
        stem, dot, ext = name.rpartition(".") if "." in name.lstrip(".") else (name, "", "")
        for n in itertools.count(1):
            candidate = f"{stem} {n}{dot}{ext}"
            if self._child(folder, candidate) is None:
                return candidate
        raise AssertionError("unreachable")

    def _place(self, folder: _Item, name: str, behavior: str, moving: _Item | None = None) -> str:
        """The name to use in `folder` under the conflict behaviour (replace deletes the other)."""
        _check_name(name)
        existing = self._child(folder, name)
        if existing is None or existing is moving:
            return name
        if behavior == "rename":
            return self._free_name(folder, name)
        if behavior == "replace":
            self._delete(existing)
            return name
        raise GraphError(409, "nameAlreadyExists", "The specified item name already exists.")

    def _write(self, parent: _Item, name: str, data: bytes, behavior: str, if_match: str | None = None) -> _Item:
        if not parent.folder:
            raise GraphError(400, "invalidRequest", "The parent is not a folder.")
        existing = self._child(parent, name)
        if existing is not None and existing.folder:
            raise GraphError(409, "nameAlreadyExists", "A folder with this name already exists.")
        if existing is not None and behavior == "replace":
            self._check_match(existing, if_match)
            existing.previous = self._json(existing, delta=True)
            existing.content = data
            existing.version += 1
            existing.content_version += 1
            existing.modified = _now()
            self._touch(existing)
            return existing
        name = self._place(parent, name, behavior)
        item = self._new_item(parent.drive_id, name, parent.id, folder=False)
        item.content = data
        self._touch(item)
        return item

    def _create_folder(self, parent: _Item, name: str, behavior: str) -> _Item:
        if not parent.folder:
            raise GraphError(400, "invalidRequest", "The parent is not a folder.")
        name = self._place(parent, name, behavior)
        folder = self._new_item(parent.drive_id, name, parent.id, folder=True)
        self._touch(folder)
        return folder

    def _move(self, item: _Item, parent: _Item | None, name: str | None, behavior: str) -> _Item:
        if item.parent_id is None:
            raise GraphError(400, "invalidRequest", "The root cannot be moved or renamed.")
        target = parent or self.items[item.parent_id]
        if not target.folder:
            raise GraphError(400, "invalidRequest", "The new parent is not a folder.")
        node: _Item | None = target
        while node is not None:
            if node is item:
                raise GraphError(400, "invalidRequest", "A folder cannot be moved into itself.")
            node = self.items.get(node.parent_id or "")
        new_name = self._place(target, name or item.name, behavior, moving=item)
        old_parent = self.items[item.parent_id]
        if target is old_parent and new_name == item.name:
            return item
        self._kids[old_parent.id].pop(item.id, None)
        self._kids.setdefault(target.id, {})[item.id] = item
        item.previous = self._json(item, delta=True)
        item.parent_id = target.id
        item.name = new_name
        item.version += 1
        item.modified = _now()
        self._touch(item, also=old_parent if old_parent is not target else None)
        return item

    def _delete(self, item: _Item) -> None:
        if item.parent_id is None:
            raise GraphError(400, "invalidRequest", "The root cannot be deleted.")
        for child in self._children(item):
            self._delete(child)
        item.previous = self._json(item, delta=True)
        item.deleted = True
        self._kids.get(item.parent_id, {}).pop(item.id, None)
        self._touch(item)

    def _check_match(self, item: _Item, if_match: str | None) -> None:
        if if_match is None or if_match.strip() == "*":
            return
        tags = {t.removeprefix("W/") for t in re.findall(r'(?:W/)?"[^"]*"|[^,\s]+', if_match)}
        if self._etag(item) not in tags and self._ctag(item) not in tags:
            raise GraphError(
                412, "resourceModified", "The resource has changed since the caller last read it (eTag mismatch)."
            )

    def _etag(self, item: _Item) -> str:
        return f'"{{{item.guid}}},{item.version}"'

    def _ctag(self, item: _Item) -> str:
        return f'"c:{{{item.guid}}},{item.content_version}"'

    def _json(self, item: _Item, *, delta: bool = False) -> dict[str, Any]:
        """The driveItem as Graph returns it. In delta (OneDrive for Business and SharePoint):
        parentReference carries no path and there is no cTag; a deleted item is only its id, its
        parentReference and the `deleted` facet (no name, no cTag, no file or folder facet)."""
        drive = self.drives[item.drive_id]
        site = self.sites[drive.site_id]
        if delta and item.deleted:
            reference = {"driveType": drive.drive_type, "driveId": drive.id, "id": item.parent_id, "siteId": site.id}
            return {"id": item.id, "parentReference": reference, "deleted": {"state": "deleted"}}
        web = f"https://{site.hostname}{site.path.rstrip('/')}/{quote(drive.name)}"
        path = self._path(item)
        body: dict[str, Any] = {
            "id": item.id,
            "name": item.name,
            "eTag": self._etag(item),
            "cTag": self._ctag(item),
            "createdDateTime": item.created,
            "lastModifiedDateTime": item.modified,
            "webUrl": f"{web}/{quote(path)}" if path else web,
            "size": len(item.content) if not item.folder else self._size(item),
        }
        parent: dict[str, Any] = {"driveType": drive.drive_type, "driveId": drive.id, "siteId": site.id}
        if item.parent_id is not None:
            parent["id"] = item.parent_id
            if not delta:
                parent_path = self._path(self.items[item.parent_id])
                parent["path"] = f"/drives/{drive.id}/root:" + (f"/{parent_path}" if parent_path else "")
        body["parentReference"] = parent
        if item.folder:
            body["folder"] = {"childCount": len(self._children(item))}
        else:
            mime = mimetypes.guess_type(item.name)[0] or "application/octet-stream"
            body["file"] = {"mimeType": mime}
        if item.parent_id is None:
            body["root"] = {}
        if delta:
            body.pop("cTag")
        return body

    def _size(self, folder: _Item) -> int:
        return sum(len(c.content) if not c.folder else self._size(c) for c in self._children(folder))

    def _depth(self, item: _Item) -> int:
        depth, node = 0, item
        while node.parent_id is not None:
            depth += 1
            node = self.items[node.parent_id]
        return depth

    # -- delta ---------------------------------------------------------------------------------
    def _start_delta(self, drive_id: str, since: int | None, latest: bool = False) -> _Cursor:
        """Freeze the items of one enumeration into pages (a full one when `since` is None)."""
        items = self._by_drive.get(drive_id, [])
        if latest:
            chosen: list[_Item] = []
        elif since is None:
            chosen = sorted((i for i in items if not i.deleted), key=lambda i: (self._depth(i), i.seq))
        else:
            chosen = sorted((i for i in items if i.seq > since), key=lambda i: i.seq)
        values = [self._json(i, delta=True) for i in chosen]
        if self.repeat_in_delta and since is not None:
            values = [i.previous for i in chosen if i.previous is not None] + values
        size = max(1, self.page_size)
        pages = [values[n : n + size] for n in range(0, len(values), size)] or [[]]
        return _Cursor(drive_id, pages=pages, end_seq=self._seq)

    def _issue(self, cursor: _Cursor) -> str:
        token = base64.urlsafe_b64encode(secrets.token_bytes(24)).decode().rstrip("=")
        self._cursors[token] = cursor
        return token

    def delta_page(self, drive_id: str, token: str | None, base: str) -> dict[str, Any]:
        """One delta answer (JSON body) for `token` (None: start a full enumeration)."""
        with self.lock:
            self._root(drive_id)
            latest = token == LATEST
            if token is None or latest:
                cursor = self._start_delta(drive_id, None, latest=latest)
            else:
                found = self._cursors.get(token)
                if found is None or found.drive_id != drive_id or found.expired_code:
                    code = found.expired_code if found and found.expired_code else "resyncRequired"
                    raise GraphError(
                        410,
                        code,
                        "Resync required: the token is no longer valid. Start a new enumeration.",
                        {"Location": f"{base}/v1.0/drives/{drive_id}/root/delta"},
                    )
                cursor = found if found.pages is not None else self._start_delta(drive_id, found.since)
            assert cursor.pages is not None
            page = cursor.pages[cursor.page]
            link = f"{base}/v1.0/drives/{drive_id}/root/delta?token="
            body: dict[str, Any] = {"@odata.context": f"{base}/v1.0/$metadata#Collection(driveItem)", "value": page}
            if cursor.page + 1 < len(cursor.pages):
                following = _Cursor(drive_id, pages=cursor.pages, page=cursor.page + 1, end_seq=cursor.end_seq)
                body["@odata.nextLink"] = link + self._issue(following)
            else:
                body["@odata.deltaLink"] = link + self._issue(_Cursor(drive_id, since=cursor.end_seq))
            return body

    def download_url(self, drive_id: str, item_id: str, base: str) -> str:
        with self.lock:
            item = self._get(drive_id, item_id)
            if item.folder:
                raise GraphError(400, "invalidRequest", "Only files can be downloaded.")
            token = secrets.token_urlsafe(32)
            self._downloads[token] = (drive_id, item_id, self.clock() + DOWNLOAD_URL_SECONDS)
        return f"{base}/graph-download/{token}"

    def download(self, token: str) -> tuple[bytes, str]:
        """The current content of the URL's item, and its media type."""
        with self.lock:
            found = self._downloads.get(token)
            if found is None or found[2] <= self.clock():
                raise GraphError(401, "unauthenticated", "The download URL is invalid or has expired.")
            item = self._get(found[0], found[1])
            return item.content, mimetypes.guess_type(item.name)[0] or "application/octet-stream"

    # -- access ---------------------------------------------------------------------------------
    def allowed(self, client_id: str, site_id: str, role: str) -> bool:
        with self.lock:
            granted = {self.grants.get((client_id.lower(), site_id)), self.grants.get((client_id.lower(), "*"))}
        return "write" in granted or (role == "read" and "read" in granted)

    def roll_fault(self) -> tuple[int, int] | None:
        """The fault for the next API request, if any: (status, retry-after seconds)."""
        with self.lock:
            if self._queued:
                return self._queued.pop(0)
            if not (self.faults.rate_429 or self.faults.rate_503):
                return None
            roll = self._rng.random()
            if roll < self.faults.rate_429:
                return 429, self.faults.retry_after_seconds
            if roll < self.faults.rate_429 + self.faults.rate_503:
                return 503, self.faults.retry_after_seconds
            return None

    def record(self, method: str, path: str, status: int, authorization: bool) -> None:
        with self.lock:
            self.requests.append((method, path))
            self.calls.append(GraphCall(method, path, status, authorization))


# -- HTTP ----------------------------------------------------------------------------------------
_D = r"/drives/(?P<drive>[^/:]+)"
_I = r"/items/(?P<item>[^/:]+)"
_P = r":(?P<path>/[^:]*)"
_API: list[tuple[str, re.Pattern[str], str]] = [
    ("GET", re.compile(r"^/sites/(?P<host>[^/:,]+):(?P<path>/[^:]*):?$"), "site_by_path"),
    ("GET", re.compile(r"^/sites/(?P<site>[^/:]+)$"), "site"),
    ("GET", re.compile(r"^/sites/(?P<site>[^/:]+)/drives$"), "site_drives"),
    ("GET", re.compile(r"^/sites/(?P<host>[^/:,]+):(?P<path>/[^:]*):/drives$"), "site_drives"),
    ("GET", re.compile(r"^/sites/(?P<site>[^/:]+)/drive$"), "site_default_drive"),
    ("GET", re.compile(rf"^{_D}$"), "drive"),
    ("GET", re.compile(rf"^{_D}/root/delta(?:\(\))?$"), "delta"),
    ("GET", re.compile(rf"^{_D}{_I}/delta(?:\(\))?$"), "folder_delta"),
    ("GET", re.compile(rf"^{_D}/root$"), "get_item"),
    ("GET", re.compile(rf"^{_D}/root{_P}:?$"), "get_item"),
    ("GET", re.compile(rf"^{_D}{_I}$"), "get_item"),
    ("GET", re.compile(rf"^{_D}{_I}{_P}:?$"), "get_item"),
    ("GET", re.compile(rf"^{_D}/root/children$"), "list_children"),
    ("GET", re.compile(rf"^{_D}/root{_P}:/children$"), "list_children"),
    ("GET", re.compile(rf"^{_D}{_I}/children$"), "list_children"),
    ("GET", re.compile(rf"^{_D}{_I}/content$"), "get_content"),
    ("GET", re.compile(rf"^{_D}/root{_P}:/content$"), "get_content"),
    ("GET", re.compile(rf"^{_D}{_I}{_P}:/content$"), "get_content"),
    ("POST", re.compile(rf"^{_D}/root/children$"), "create_child"),
    ("POST", re.compile(rf"^{_D}{_I}/children$"), "create_child"),
    ("PATCH", re.compile(rf"^{_D}{_I}$"), "update_item"),
    ("DELETE", re.compile(rf"^{_D}{_I}$"), "delete"),
    ("PUT", re.compile(rf"^{_D}{_I}/content$"), "upload"),
    ("PUT", re.compile(rf"^{_D}/root{_P}:/content$"), "upload"),
    ("PUT", re.compile(rf"^{_D}{_I}{_P}:/content$"), "upload"),
]


class GraphApi:
    """Serves one Graph request for the emulator's HTTP handler (routes under /v1.0)."""

    def __init__(self, handler: Handler, graph: GraphState) -> None:
        self.handler = handler
        self.graph = graph
        split = urlsplit(handler.path)
        self.path = split.path
        self.query = {k: v[0] for k, v in parse_qs(split.query, keep_blank_values=True).items()}
        self.base = handler.server.base_url
        self.status = 0
        self.client_id = ""

    def send(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        self.status = status
        if payload is None:
            self.handler._send(status, b"", "text/plain", headers=headers)
        else:
            self.handler._send_json(status, payload, headers=headers)

    def error(self, exc: GraphError) -> None:
        inner = {"date": _now(), "request-id": str(uuid.uuid4()), "client-request-id": str(uuid.uuid4())}
        self.send(exc.status, {"error": {"code": exc.code, "message": exc.message, "innerError": inner}}, exc.headers)

    def serve(self, method: str) -> None:
        handler = self.handler
        has_auth = "Authorization" in handler.headers
        chunked = "chunked" in handler.headers.get("Transfer-Encoding", "").lower()
        body = handler._body() if method in ("POST", "PATCH", "PUT") and not chunked else b""
        try:
            if chunked:  # a body without a length would otherwise be read as empty: refuse it
                handler.close_connection = True
                _drain_chunked(handler.rfile)  # read first, so the client gets the answer, not a reset
                raise GraphError(411, "invalidRequest", "A Content-Length header is required.")
            self._serve(method, body)
        except GraphError as exc:
            self.error(exc)
        finally:
            self.graph.record(method, handler.path, self.status, has_auth)

    def _serve(self, method: str, body: bytes) -> None:
        fault = self.graph.roll_fault()
        if fault is not None:
            status, retry_after = fault
            code, message = (
                ("activityLimitReached", "The request has been throttled.")
                if status == 429
                else ("serviceNotAvailable", "The service is temporarily unavailable.")
            )
            raise GraphError(status, code, message, {"Retry-After": str(retry_after)})
        api_path = self.path.removeprefix("/v1.0")
        for verb, pattern, name in _API:
            match = pattern.match(api_path)
            if match and verb == method:
                self.client_id = self._authenticate()
                args = {k: unquote(v) if v is not None else None for k, v in match.groupdict().items()}
                getattr(self, name)(body=body, **args)
                return
        raise GraphError(400, "BadRequest", f"Resource not found for the segment in {method} {self.path}.")

    def _authenticate(self) -> str:
        auth = self.handler.headers.get("Authorization", "")
        info = self.handler.state.token_info(auth[7:]) if auth.startswith("Bearer ") else None
        if info is None:
            message = "Access token is empty." if not auth else "Access token validation failure."
            raise GraphError(401, "InvalidAuthenticationToken", message)
        if info.audience.rstrip("/") not in GRAPH_AUDIENCES:
            raise GraphError(401, "InvalidAuthenticationToken", "Access token validation failure. Invalid audience.")
        return info.app_id

    def _access(self, site_id: str, role: str) -> None:
        if not self.graph.allowed(self.client_id, site_id, role):
            raise GraphError(403, "accessDenied", "Access denied")

    def _drive(self, drive_id: str, role: str) -> _Drive:
        with self.graph.lock:
            drive = self.graph.drives.get(drive_id)
        if drive is None:
            raise GraphError(404, "itemNotFound", "The drive cannot be found.")
        self._access(drive.site_id, role)
        return drive

    def _item(self, drive: str, item: str | None, path: str | None) -> _Item:
        """The item named by the route: root, by id, by path from the root or from an item."""
        g = self.graph
        start = g._get(drive, item) if item else None
        found = g._resolve(drive, path or "", start)
        if found is None:
            raise GraphError(404, "itemNotFound", "The resource could not be found.")
        return found

    def _behavior(self, default: str, payload: dict[str, Any] | None = None) -> str:
        behavior = self.query.get(CONFLICT) or (payload or {}).get(CONFLICT) or default
        if behavior not in ("fail", "replace", "rename"):
            raise GraphError(400, "invalidRequest", "Invalid conflict behavior.")
        return str(behavior)

    def _json_body(self, body: bytes) -> dict[str, Any]:
        try:
            payload = json.loads(body or b"{}")
        except ValueError:
            raise GraphError(400, "invalidRequest", "Invalid request body.") from None
        if not isinstance(payload, dict):
            raise GraphError(400, "invalidRequest", "Invalid request body.")
        return payload

    # -- routes ------------------------------------------------------------------------------
    def _site_json(self, site: _Site) -> dict[str, Any]:
        return {
            "id": site.id,
            "name": _parts(site.path)[-1] if _parts(site.path) else site.display_name,
            "displayName": site.display_name,
            "webUrl": f"https://{site.hostname}{site.path.rstrip('/')}",
            "siteCollection": {"hostname": site.hostname},
        }

    def site_by_path(self, host: str, path: str, body: bytes) -> None:
        self.send(200, self._site_json(self._find_site(None, host, path)))

    def site(self, site: str, body: bytes) -> None:
        self.send(200, self._site_json(self._find_site(site)))

    def _drive_json(self, drive: _Drive) -> dict[str, Any]:
        site = self.graph.sites[drive.site_id]
        return {
            "id": drive.id,
            "name": drive.name,
            "driveType": drive.drive_type,
            "webUrl": f"https://{site.hostname}{site.path.rstrip('/')}/{quote(drive.name)}",
            "description": "",
        }

    def _find_site(self, site: str | None, host: str | None = None, path: str | None = None) -> _Site:
        """The site by id, or by host name and server-relative path; 403 without a read grant."""
        with self.graph.lock:
            sites = list(self.graph.sites.values())
        if site is not None and "," in site:
            found = next((s for s in sites if s.id == site.lower()), None)
        else:
            host = (host or site or "").lower()
            wanted = "/" + (path or "").strip("/") if (path or "").strip("/") else "/"
            found = next((s for s in sites if s.hostname == host and s.path.lower() == wanted.lower()), None)
        if found is None:
            raise GraphError(404, "itemNotFound", "Requested site could not be found")
        self._access(found.id, "read")
        return found

    def site_drives(
        self, body: bytes, site: str | None = None, host: str | None = None, path: str | None = None
    ) -> None:
        found = self._find_site(site, host, path)
        with self.graph.lock:
            drives = [self._drive_json(d) for d in self.graph.drives.values() if d.site_id == found.id]
        self.send(200, {"value": drives})

    def site_default_drive(self, site: str, body: bytes) -> None:
        found = self._find_site(site)
        with self.graph.lock:
            drives = [d for d in self.graph.drives.values() if d.site_id == found.id]
            if not drives:
                raise GraphError(404, "itemNotFound", "The site has no document library.")
            self.send(200, self._drive_json(drives[0]))

    def drive(self, drive: str, body: bytes) -> None:
        found = self._drive(drive, "read")
        with self.graph.lock:
            self.send(200, self._drive_json(found))

    def delta(self, drive: str, body: bytes) -> None:
        self._drive(drive, "read")
        page = self.graph.delta_page(drive, self.query.get("token"), self.base)
        self.send(200, page)

    def folder_delta(self, drive: str, item: str, body: bytes) -> None:
        self._drive(drive, "read")
        raise GraphError(400, "invalidRequest", "Delta is only supported on the root of a drive.")

    def get_item(self, drive: str, body: bytes, item: str | None = None, path: str | None = None) -> None:
        self._drive(drive, "read")
        with self.graph.lock:
            found = self._item(drive, item, path)
            payload = self.graph._json(found)
        if not found.folder:
            payload["@microsoft.graph.downloadUrl"] = self.graph.download_url(drive, found.id, self.base)
        self.send(200, payload)

    def list_children(self, drive: str, body: bytes, item: str | None = None, path: str | None = None) -> None:
        self._drive(drive, "read")
        with self.graph.lock:
            folder = self._item(drive, item, path)
            values = [self.graph._json(c) for c in self.graph._children(folder)]
        self.send(200, {"value": values})

    def get_content(self, drive: str, body: bytes, item: str | None = None, path: str | None = None) -> None:
        self._drive(drive, "read")
        with self.graph.lock:
            found = self._item(drive, item, path)
        location = self.graph.download_url(drive, found.id, self.base)
        self.send(302, None, {"Location": location})

    def create_child(self, drive: str, body: bytes, item: str | None = None) -> None:
        self._drive(drive, "write")
        payload = self._json_body(body)
        name = payload.get("name")
        if not isinstance(name, str) or "folder" not in payload:
            raise GraphError(400, "invalidRequest", "A folder facet and a name are required.")
        behavior = self._behavior("fail", payload)
        with self.graph.lock:
            parent = self._item(drive, item, None)
            created = self.graph._create_folder(parent, name, behavior)
            self.send(201, self.graph._json(created))

    def update_item(self, drive: str, item: str, body: bytes) -> None:
        self._drive(drive, "write")
        payload = self._json_body(body)
        behavior = self._behavior("fail", payload)
        reference = payload.get("parentReference") or {}
        if not isinstance(reference, dict):
            raise GraphError(400, "invalidRequest", "Invalid parentReference.")
        name = payload.get("name")
        if name is not None and not isinstance(name, str):
            raise GraphError(400, "invalidRequest", "Invalid name.")
        with self.graph.lock:
            found = self.graph._get(drive, item)
            self.graph._check_match(found, self.handler.headers.get("If-Match"))
            if reference.get("driveId") not in (None, drive):
                raise GraphError(400, "invalidRequest", "Items cannot be moved between drives with this request.")
            parent = self._item(drive, str(reference["id"]), None) if reference.get("id") else None
            if parent is None and reference.get("path"):
                parent = self.graph._resolve(drive, str(reference["path"]).split("root:", 1)[-1])
                if parent is None:
                    raise GraphError(404, "itemNotFound", "The resource could not be found.")
            moved = self.graph._move(found, parent, name, behavior)
            self.send(200, self.graph._json(moved))

    def delete(self, drive: str, item: str, body: bytes) -> None:
        self._drive(drive, "write")
        with self.graph.lock:
            found = self.graph._get(drive, item)
            self.graph._check_match(found, self.handler.headers.get("If-Match"))
            self.graph._delete(found)
        self.send(204, None)

    def upload(self, drive: str, body: bytes, item: str | None = None, path: str | None = None) -> None:
        self._drive(drive, "write")
        behavior = self._behavior("replace")
        if_match = self.handler.headers.get("If-Match")
        with self.graph.lock:
            if path is None:  # PUT /items/{id}/content: a new version of that file
                target = self._item(drive, item, None)
                if target.folder:
                    raise GraphError(400, "invalidRequest", "A folder has no content.")
                parent, name, behavior = self.graph.items[target.parent_id or ""], target.name, "replace"
            else:
                parts = _parts(path)
                if not parts:
                    raise GraphError(400, "invalidRequest", "A file name is required.")
                parent = self._item(drive, item, "/".join(parts[:-1]))
                name = parts[-1]
            existed = self.graph._child(parent, name) is not None
            written = self.graph._write(parent, name, body, behavior, if_match)
            replaced = existed and written.name.lower() == name.lower()
            self.send(200 if replaced else 201, self.graph._json(written))


def serve_download(handler: Handler, token: str) -> None:
    """GET /graph-download/<token>: the bytes, only without an Authorization header."""
    graph = handler.state.graph
    has_auth = "Authorization" in handler.headers
    status = 200
    try:
        if has_auth:
            raise GraphError(401, "unauthenticated", "This URL is pre-authenticated; send no Authorization header.")
        data, media_type = graph.download(token)
        fault = graph.take_download_fault()
        if fault is not None and fault[0]:
            raise GraphError(fault[0], "serviceNotAvailable", "Try again later.", {"Retry-After": str(fault[1])})
        if fault is not None:
            status = -1  # hung up mid-body
            handler.send_response(200)
            handler.send_header("Content-Type", media_type)
            handler.send_header("Content-Length", str(len(data)))
            handler.end_headers()
            handler.wfile.write(data[: fault[1]])
            handler.wfile.flush()
            handler.close_connection = True
            with contextlib.suppress(OSError):
                handler.connection.shutdown(socket.SHUT_RDWR)
            return
        handler._send(200, data, media_type)
    except GraphError as exc:
        status = exc.status
        handler._send_json(exc.status, {"error": {"code": exc.code, "message": exc.message}}, headers=exc.headers)
    finally:
        graph.record("GET", handler.path, status, has_auth)


def serve_admin(handler: Handler, method: str, action: str) -> None:
    """/admin/graph/<action>: loopback tooling for another process (demo, benchmarks); no auth."""
    graph = handler.state.graph
    query = {k: v[0] for k, v in parse_qs(urlsplit(handler.path).query).items()}
    try:
        payload = json.loads(handler._body() or b"{}") if method == "POST" else {}
        result: Any
        if method == "GET" and action == "children":
            result = graph.children(query["drive_id"], query.get("path", ""))
        elif method == "POST" and action == "files":
            data = base64.b64decode(payload["content_b64"], validate=True)
            result = graph.put_file(payload["drive_id"], payload["path"], data)
        elif method == "POST" and action == "faults":
            result = handler.state.set_graph_faults(**payload).to_dict()
        elif method == "POST" and action == "sites":
            site_id = graph.add_site(payload["hostname"], payload.get("path", "/"))
            drive_id = graph.add_drive(site_id, payload.get("library", "Documents"))
            for grant in payload.get("grants", []):
                graph.grant_site(grant["client_id"], site_id, grant["role"])
            result = {"site_id": site_id, "drive_id": drive_id}
        elif method == "POST" and action == "delete":
            graph.delete_item(payload["drive_id"], payload["item_id"])
            result = {}
        elif method == "POST" and action == "move":
            result = graph.move_item(payload["drive_id"], payload["item_id"], payload["parent_id"], payload.get("name"))
        elif method == "POST" and action == "expire-delta":
            graph.expire_delta_tokens(payload.get("code", "resyncRequired"))
            result = {}
        else:
            return handler._send_json(404, {"error": f"no admin action {method} {action}"})
    except GraphError as exc:
        return handler._send_json(exc.status, {"error": {"code": exc.code, "message": exc.message}})
    except (KeyError, ValueError, TypeError) as exc:
        return handler._send_json(400, {"error": f"{type(exc).__name__}: {exc}"})
    handler._send_json(200, result)


def _drain_chunked(stream: Any) -> None:
    """Read a chunked request body to its end (the answer refuses it; the bytes are discarded)."""
    while True:
        size = int(stream.readline().split(b";")[0].strip() or b"0", 16)
        if size == 0:
            while stream.readline() not in (b"\r\n", b"\n", b""):
                pass  # trailers
            return
        stream.read(size + 2)
