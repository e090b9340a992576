"""The SharePoint/OneDrive source, end to end: the registered timer called as the host would,
against the emulator's Graph (over HTTPS, with the real azure-identity managed-identity code and
requests) and Azurite, then the blob function on the copies, then the timer again for the moves.
"""

from __future__ import annotations

import contextlib
import json
import logging
import random
import threading
import tracemalloc
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests

from hrconnector_core.clouds import resolve_cloud
from hrconnector_core.credentials import TokenProvider, function_identity
from hrconnector_core.emulator import Emulator
from hrconnector_core.emulator.host import invoke_blob_trigger, invoke_timer, registered_functions, trigger
from hrconnector_core.graph import GraphClient, GraphError, GraphRetryPolicy
from hrconnector_core.graphsource import SourceError, run_sources
from hrconnector_core.graphstate import SourceState
from hrconnector_core.service import FileFailedError, utc_now
from hrconnector_core.settings import Settings

from .conftest import FunctionEnv
from .csvdata import HEADER, csv_bytes, parse, rows

SOURCE_FUNCTION = "hr_graph_source"
BLOB_FUNCTION = "hr_file_arrived"
FOLDER = "HR/Exports"


@dataclass
class SharePoint:
    """One test's SharePoint site, library and watched folder, and the Function around it."""

    emulator: Emulator
    env: FunctionEnv
    site_id: str
    drive_id: str
    folder_id: str
    site: str

    @property
    def graph(self) -> Any:
        return self.emulator.state.graph

    def put(self, name: str, data: bytes, folder: str = FOLDER) -> dict[str, Any]:
        return self.graph.put_file(self.drive_id, f"{folder}/{name}", data)  # type: ignore[no-any-return]

    def children(self, path: str = FOLDER) -> dict[str, dict[str, Any]]:
        return self.graph.children(self.drive_id, path)  # type: ignore[no-any-return]

    def names(self, path: str = FOLDER) -> list[str]:
        return sorted(self.children(path))

    def run(self) -> None:
        invoke_timer(SOURCE_FUNCTION)

    def incoming(self) -> dict[str, bytes]:
        container = self.env.service.incoming
        return {b.name: container.get_blob_client(b.name).download_blob().readall() for b in container.list_blobs()}

    def upload_all(self) -> None:
        """What Event Grid does: the blob function for every copy."""
        for name in sorted(self.incoming()):
            with contextlib.suppress(FileFailedError):  # a failed file is in hr-failed with its report
                invoke_blob_trigger(BLOB_FUNCTION, self.env.settings.containers.incoming, name)

    def records(self) -> dict[str, list[str]]:
        """status -> item names, from hr-state (graph/main/items/)."""
        state = SourceState(self.env.service.state, "main")
        out: dict[str, list[str]] = {}
        for blob in self.env.service.state.list_blobs(name_starts_with=state.prefix + "items/"):
            found = state.record(blob.name.rsplit("/", 1)[1].removesuffix(".json"))
            assert found is not None
            out.setdefault(found[0].status, []).append(found[0].name)
        return {k: sorted(v) for k, v in out.items()}

    def downloads(self) -> int:
        return sum(1 for method, path in self.graph.requests if method == "GET" and path.endswith("/content"))


@pytest.fixture
def sharepoint(
    emulator: Emulator, function_env: FunctionEnv, function_identity: str, monkeypatch
) -> Iterator[SharePoint]:
    graph = emulator.state.graph
    path = f"/sites/HR-{uuid.uuid4().hex[:8]}"
    site_id = graph.add_site("contoso.sharepoint.com", path)
    drive_id = graph.add_drive(site_id, "Documents")
    folder_id = graph.ensure_folder(drive_id, FOLDER)
    graph.grant_site(function_identity, site_id, "write")
    site = f"contoso.sharepoint.com{path}"
    monkeypatch.setenv("HR_SOURCE_SITE", site)
    monkeypatch.setenv("HR_SOURCE_FOLDER", FOLDER)
    page_size = graph.page_size
    try:
        yield SharePoint(emulator, function_env, site_id, drive_id, folder_id, site)
    finally:
        graph.page_size = page_size
        emulator.state.set_graph_faults(rate_429=0, rate_503=0, retry_after_seconds=1, seed=None)


def sent_rows(emulator: Emulator, job: str) -> list[tuple[str, ...]]:
    return sorted(map(tuple, emulator.state.rows(job)))


def data_rows(*files: bytes) -> list[tuple[str, ...]]:
    return sorted(tuple(r) for data in files for r in parse(data)[1:])


def copies(sp: SharePoint) -> dict[str, list[bytes]]:
    """item name -> the bytes of its copies in hr-incoming (a list when copied more than once)."""
    out: dict[str, Any] = {}
    for name, data in sp.incoming().items():
        assert name.startswith("main/sharepoint/"), name
        out.setdefault(name.rsplit("/", 1)[1], []).append(data)
    return out


# -- the binding --------------------------------------------------------------------------------------
def test_the_source_timer_reads_its_schedule_from_a_setting() -> None:
    binding = trigger(registered_functions()[SOURCE_FUNCTION]).get_dict_repr()
    assert binding["type"] == "timerTrigger"
    assert binding["schedule"] == "%HR_SOURCE_SCHEDULE%"
    assert binding["runOnStartup"] is False and binding["useMonitor"] is True


# -- copying --------------------------------------------------------------------------------------------
def test_new_files_are_copied_once_and_only_csv_and_xlsx_of_the_folder_itself(sharepoint: SharePoint) -> None:
    sp = sharepoint
    sp.run()  # the first run: an empty folder, a baseline of nothing
    a, b = csv_bytes(HEADER, rows(3)), csv_bytes(HEADER, rows(2, start=10))
    sp.put("a.csv", a)
    sp.put("b.CSV", b)
    sp.put("notes.txt", b"not an export")
    sp.put("~$a.xlsx", b"an Excel lock file")
    archived = sp.put("old.csv", a, folder=f"{FOLDER}/Archive")  # a subfolder is not watched
    elsewhere = sp.put("other.csv", a, folder="Elsewhere")  # nor the rest of the library
    sp.run()
    assert copies(sp) == {"a.csv": [a], "b.CSV": [b]}
    # Not even looked at: delta lists the whole library, only the folder's children are kept.
    assert not [p for m, p in sp.graph.requests if p.endswith((archived["id"], elsewhere["id"]))]
    assert sp.records() == {"copied": ["a.csv", "b.CSV"]}
    downloads = sp.downloads()
    sp.run()
    sp.run()
    assert copies(sp) == {"a.csv": [a], "b.CSV": [b]}
    assert sp.downloads() == downloads  # nothing read again


def test_a_changed_file_is_copied_once_more_and_only_once(sharepoint: SharePoint) -> None:
    sp = sharepoint
    sp.run()
    first, second = csv_bytes(HEADER, rows(2)), csv_bytes(HEADER, rows(3, start=5))
    v1 = sp.put("leavers.csv", first)
    sp.run()
    v2 = sp.put("leavers.csv", second)
    assert v2["id"] == v1["id"] and v2["eTag"] != v1["eTag"]
    sp.run()
    sp.run()
    assert sorted(copies(sp)["leavers.csv"]) == sorted([first, second])
    assert sp.records() == {"copied": ["leavers.csv", "leavers.csv"]}


def test_a_deleted_file_is_not_copied(sharepoint: SharePoint) -> None:
    sp = sharepoint
    sp.run()
    gone = sp.put("gone.csv", csv_bytes(HEADER, rows(2)))
    kept = csv_bytes(HEADER, rows(1))
    sp.put("kept.csv", kept)
    sp.graph.delete_item(sp.drive_id, gone["id"])
    sp.run()
    assert copies(sp) == {"kept.csv": [kept]}


def test_paging_copies_every_file_of_every_page_once(sharepoint: SharePoint) -> None:
    sp = sharepoint
    sp.graph.page_size = 2
    sp.run()
    files = {f"f{i}.csv": csv_bytes(HEADER, rows(1, start=i)) for i in range(7)}
    for name, data in files.items():
        sp.put(name, data)
    sp.run()
    sp.run()
    assert copies(sp) == {name: [data] for name, data in files.items()}
    pages = [p for m, p in sp.graph.requests if "/root/delta" in p and f"/drives/{sp.drive_id}/" in p]
    assert len(pages) >= 4  # the 7 files (and their folders) took several pages


def test_an_expired_delta_link_reads_everything_again_and_copies_nothing_twice(sharepoint: SharePoint, caplog) -> None:
    sp = sharepoint
    caplog.set_level(logging.INFO, logger="hrconnector_core")
    sp.run()
    old = {f"old{i}.csv": csv_bytes(HEADER, rows(1, start=i)) for i in range(3)}
    for name, data in old.items():
        sp.put(name, data)
    sp.run()
    assert copies(sp) == {name: [data] for name, data in old.items()}
    sp.graph.expire_delta_tokens()
    new = csv_bytes(HEADER, rows(2, start=50))
    sp.put("new.csv", new)
    sp.run()  # 410 resyncRequired -> a full enumeration: the old files have records
    assert copies(sp) == {**{name: [data] for name, data in old.items()}, "new.csv": [new]}
    assert sum("the delta link expired (resyncRequired)" in r.getMessage() for r in caplog.records) == 1
    sp.run()  # the new delta link works
    assert sum("the delta link expired" in r.getMessage() for r in caplog.records) == 1


def test_429_and_503_with_retry_after_are_retried(sharepoint: SharePoint) -> None:
    sp = sharepoint
    sp.run()
    files = {f"r{i}.csv": csv_bytes(HEADER, rows(2, start=i * 3)) for i in range(4)}
    for name, data in files.items():
        sp.put(name, data)
    sp.emulator.state.set_graph_faults(rate_429=0.25, rate_503=0.25, retry_after_seconds=0, seed=7)
    sp.run()
    sp.emulator.state.set_graph_faults(rate_429=0, rate_503=0)
    assert copies(sp) == {name: [data] for name, data in files.items()}


def test_the_client_waits_what_retry_after_says_capped(emulator: Emulator, sharepoint: SharePoint) -> None:
    """GraphClient on its own, its sleep recorded: each retry waits Retry-After (2 s), or the cap."""
    sp = sharepoint
    cloud = resolve_cloud("commercial", graph_url=emulator.url)
    tokens = TokenProvider(function_identity(sp.env.settings.identity_client_id), cloud.graph_scope)
    waits: list[float] = []
    capped = GraphClient(cloud.graph_url, tokens, policy=GraphRetryPolicy(max_attempts=30, max_delay=1.5),
                         sleep=waits.append)  # fmt: skip
    emulator.state.set_graph_faults(rate_429=0.5, rate_503=0.3, retry_after_seconds=2, seed=3)
    try:
        for _ in range(6):
            assert capped.get(f"/v1.0/drives/{sp.drive_id}/root")["id"]
    finally:
        emulator.state.set_graph_faults(rate_429=0, rate_503=0, retry_after_seconds=1)
    assert waits and set(waits) == {1.5}


def test_a_crash_between_the_copy_and_its_record_copies_nothing_twice(
    emulator: Emulator, sharepoint: SharePoint, edge: Any
) -> None:
    """The record's write fails at the network edge (every time): the copy is in
    hr-incoming without a record. The rerun finds it there and records it; and once the blob
    function has processed (and deleted) it, the file state still says it was copied."""
    sp = sharepoint
    sp.run()
    data = csv_bytes(HEADER, rows(4))
    sp.put("crash.csv", data)

    def record_write(request: requests.PreparedRequest) -> bool:
        return request.method == "PUT" and "/graph/main/items/" in urlsplit(request.url or "").path

    edge.answer(record_write, 403)  # not retried by the SDK: the run stops at the record
    with pytest.raises(SourceError, match=r"crash\.csv"):
        sp.run()
    assert copies(sp) == {"crash.csv": [data]}
    assert sp.records() == {}
    edge.rules.clear()
    sp.upload_all()  # the copy is uploaded and leaves hr-incoming
    assert sp.incoming() == {}
    sp.run()  # no record, no blob: the file state says it was copied already
    assert sp.incoming() == {}
    assert sp.records() == {"moved": ["crash.csv"]}
    assert sent_rows(emulator, sp.env.job) == data_rows(data)


def test_two_source_runs_at_once_copy_once(sharepoint: SharePoint, edge: Any, caplog) -> None:
    """The first run is held in its download at the network edge while the second runs: the
    second finds the connector leased and copies nothing."""
    sp = sharepoint
    sp.run()
    data = csv_bytes(HEADER, rows(3))
    sp.put("once.csv", data)
    caplog.set_level(logging.INFO, logger="hrconnector_core")
    pause = edge.pause(lambda r: "/graph-download/" in (r.url or ""))
    errors: list[BaseException] = []

    def first() -> None:
        try:
            sp.run()
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=first, name="first")
    thread.start()
    try:
        pause.wait_reached()
        sp.run()  # the second run, while the first holds the lease
    finally:
        pause.release()
        thread.join(60)
    assert errors == []
    assert any("another run is reading" in r.getMessage() for r in caplog.records if r.threadName != "first")
    assert copies(sp) == {"once.csv": [data]}


def test_files_already_there_on_the_first_run_are_a_baseline(sharepoint: SharePoint) -> None:
    sp = sharepoint
    sp.put("old.csv", csv_bytes(HEADER, rows(2)))
    sp.run()
    assert sp.incoming() == {}
    assert sp.records() == {"baseline": ["old.csv"]}
    new = csv_bytes(HEADER, rows(1, start=9))
    sp.put("new.csv", new)
    sp.run()
    assert copies(sp) == {"new.csv": [new]}
    assert sp.names() == ["new.csv", "old.csv"]  # moving waits for the upload


def test_copy_existing_copies_what_is_there_on_the_first_run(sharepoint: SharePoint, monkeypatch) -> None:
    sp = sharepoint
    monkeypatch.setenv("HR_SOURCE_COPY_EXISTING", "true")
    old = csv_bytes(HEADER, rows(2))
    sp.put("old.csv", old)
    sp.run()
    assert copies(sp) == {"old.csv": [old]}


# -- the whole path ---------------------------------------------------------------------------------
def test_copied_uploaded_then_moved_to_processed_and_failed_with_reports(
    emulator: Emulator, sharepoint: SharePoint, caplog
) -> None:
    sp = sharepoint
    caplog.set_level(logging.DEBUG)
    sp.run()
    good_rows = rows(5)
    mixed_rows = rows(3, start=20)
    mixed_rows[1][0] = "not-an-email"
    good, mixed = csv_bytes(HEADER, good_rows), csv_bytes(HEADER, mixed_rows)
    bad = b"Name,Dept\r\nAda,Finance\r\n"  # no column any scenario needs: the file fails
    sp.put("leavers.csv", good)
    sp.put("mixed.csv", mixed)
    sp.put("bad.csv", bad)
    sp.run()
    assert sorted(copies(sp)) == ["bad.csv", "leavers.csv", "mixed.csv"]
    sp.run()  # not uploaded yet: nothing moves
    assert sp.names() == ["bad.csv", "leavers.csv", "mixed.csv"]
    sp.upload_all()
    sp.run()

    expected = sorted([tuple(r) for r in good_rows] + [tuple(mixed_rows[0]), tuple(mixed_rows[2])])
    assert sent_rows(emulator, sp.env.job) == expected
    assert sp.names() == ["Failed", "Processed"]
    assert sp.names(f"{FOLDER}/Processed") == [
        "leavers.csv", "leavers.csv.report.json", "mixed.csv", "mixed.csv.rejected.csv", "mixed.csv.report.json",
    ]  # fmt: skip
    assert sp.names(f"{FOLDER}/Failed") == ["bad.csv", "bad.csv.report.json"]
    processed = sp.children(f"{FOLDER}/Processed")
    assert sp.graph.content(sp.drive_id, processed["leavers.csv"]["id"]) == good
    report = sp.graph.content(sp.drive_id, processed["leavers.csv.report.json"]["id"])
    names = sp.env.settings.containers
    (stored,) = [n for n in sp.env.listing()[names.processed] if n.endswith("leavers.csv.report.json")]
    assert report == sp.env.service.processed.get_blob_client(stored).download_blob().readall()
    rejected = sp.graph.content(sp.drive_id, processed["mixed.csv.rejected.csv"]["id"]).decode()
    assert "not-an-email" in rejected and good_rows[0][0] not in rejected
    failed = sp.children(f"{FOLDER}/Failed")
    assert b'"failed"' in sp.graph.content(sp.drive_id, failed["bad.csv.report.json"]["id"])
    assert sp.records() == {"moved": ["bad.csv", "leavers.csv", "mixed.csv"]}
    sp.run()  # the moves are not seen as new files, nothing is moved twice
    assert sp.records() == {"moved": ["bad.csv", "leavers.csv", "mixed.csv"]}
    assert sp.env.listing()[names.incoming] == []

    tokens = list(emulator.state.tokens)
    values = {v for r in good_rows + mixed_rows for v in r if len(v) > 6} | {"Finance"}
    for record in caplog.records:
        text = record.getMessage() + " " + str(record.__dict__)
        assert not any(t in text for t in tokens), record.getMessage()
        assert not any(v in text for v in values), record.getMessage()


def test_an_item_changed_or_deleted_after_its_copy_is_not_moved(emulator: Emulator, sharepoint: SharePoint) -> None:
    sp = sharepoint
    sp.run()
    first = csv_bytes(HEADER, rows(2))
    item = sp.put("changed.csv", first)
    doomed = sp.put("doomed.csv", csv_bytes(HEADER, rows(1, start=30)))
    sp.run()
    second = csv_bytes(HEADER, rows(2, start=40))
    sp.put("changed.csv", second)  # a new version after the first was copied
    sp.graph.delete_item(sp.drive_id, doomed["id"])
    sp.upload_all()
    sp.run()  # the new version is copied; the old version's record says it was not moved
    assert sp.records() == {"copied": ["changed.csv"], "failed-to-move": ["changed.csv", "doomed.csv"]}
    assert sp.names() == ["changed.csv"]
    assert sp.children()["changed.csv"]["id"] == item["id"]


def test_moving_off_leaves_the_items_where_they_are(sharepoint: SharePoint, monkeypatch) -> None:
    sp = sharepoint
    monkeypatch.setenv("HR_SOURCE_MOVE", "false")
    sp.run()
    sp.put("stay.csv", csv_bytes(HEADER, rows(2)))
    sp.run()
    sp.upload_all()
    sp.run()
    assert sp.names() == ["stay.csv"]
    assert sp.records() == {"copied": ["stay.csv"]}


# -- memory ------------------------------------------------------------------------------------------------
def test_a_file_larger_than_the_memory_budget_is_copied_in_blocks(sharepoint: SharePoint) -> None:
    sp = sharepoint
    run_sources(Settings.from_env())  # the baseline
    rng = random.Random(5)
    size = 24 << 20
    data = b"EmailAddress,Remarks\r\n" + bytes(rng.getrandbits(8) for _ in range(1 << 16)) * (size >> 16)
    sp.put("big.csv", data)
    tracemalloc.start()
    try:
        run_sources(Settings.from_env(), block_size=2 << 20)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert copies(sp) == {"big.csv": [data]}
    assert peak < size // 3, f"peak {peak >> 20} MiB for a {size >> 20} MiB file"


def test_a_link_to_another_host_is_not_followed_with_the_token() -> None:
    client = GraphClient("https://graph.example", TokenProvider(object(), "x"))  # type: ignore[arg-type]
    assert client.url("/v1.0/drives") == "https://graph.example/v1.0/drives"
    assert client.url("https://graph.example/v1.0/x?token=1") == "https://graph.example/v1.0/x?token=1"
    for link in ("https://evil.example/v1.0/x", "http://graph.example/v1.0/x", "https://graph.example.evil/x"):
        with pytest.raises(GraphError, match="another host"):
            client.url(link)


def test_an_item_changed_while_it_is_copied_is_not_committed_and_its_new_version_is(
    sharepoint: SharePoint, edge: Any
) -> None:
    """The download is held at the network edge while a person saves a new version: the old
    version's blocks are never committed, and the next run copies the new version."""
    sp = sharepoint
    sp.run()
    first, second = csv_bytes(HEADER, rows(2)), csv_bytes(HEADER, rows(2, start=60))
    sp.put("busy.csv", first)
    pause = edge.pause(lambda r: "/graph-download/" in (r.url or ""))
    thread = threading.Thread(target=sp.run, name="copying")
    thread.start()
    try:
        pause.wait_reached()
        sp.put("busy.csv", second)
    finally:
        pause.release()
        thread.join(60)
    assert sp.incoming() == {}
    assert sp.records() == {}
    sp.run()
    assert copies(sp) == {"busy.csv": [second]}


def test_the_token_never_goes_to_the_download_url(sharepoint: SharePoint) -> None:
    sp = sharepoint
    sp.run()
    sp.put("a.csv", csv_bytes(HEADER, rows(1)))
    start = len(sp.graph.calls)
    sp.run()
    calls = sp.graph.calls[start:]
    downloads = [c for c in calls if c.path.startswith("/graph-download/")]
    api = [c for c in calls if c.path.startswith("/v1.0/")]
    assert len(downloads) == 1 and downloads[0].status == 200 and downloads[0].authorization is False
    assert api and all(c.authorization for c in api)


def test_records_outlive_retention_so_a_resync_months_later_copies_nothing_again(
    sharepoint: SharePoint, monkeypatch
) -> None:
    """Moving off, the items stay in the folder. Retention (the other timer, 91 days later) deletes
    the copies' file state; a resync then lists every item again: the records alone keep the copy
    from happening twice."""
    sp = sharepoint
    monkeypatch.setenv("HR_SOURCE_MOVE", "false")
    sp.run()
    data = csv_bytes(HEADER, rows(2))
    sp.put("kept.csv", data)
    sp.run()
    sp.upload_all()
    sp.env.service.run_schedule(now=utc_now() + timedelta(days=91))
    assert not list(sp.env.service.state.list_blobs(name_starts_with="files/"))
    sp.graph.expire_delta_tokens()
    sp.run()
    assert sp.incoming() == {}
    assert sp.records() == {"copied": ["kept.csv"]}
    assert len(sp.emulator.state.uploads[sp.env.job]) == 1


def test_a_connector_whose_source_settings_cannot_be_read_fails_the_timer_naming_the_setting(
    sharepoint: SharePoint, monkeypatch
) -> None:
    sp = sharepoint
    monkeypatch.setenv("HR_SOURCE_MOVE", "sometimes")
    sp.put("a.csv", csv_bytes(HEADER, rows(1)))
    with pytest.raises(SourceError, match="HR_SOURCE_MOVE must be true or false"):
        sp.run()
    assert sp.incoming() == {}


def test_a_garbled_source_state_reads_the_folder_again_and_copies_what_has_no_record(sharepoint: SharePoint) -> None:
    """delta.json edited by hand: no baseline (new files would never be copied), no double copy."""
    sp = sharepoint
    sp.run()
    first = csv_bytes(HEADER, rows(1))
    sp.put("first.csv", first)
    sp.run()
    sp.env.service.state.upload_blob("graph/main/delta.json", b"{not json", overwrite=True)
    second = csv_bytes(HEADER, rows(1, start=3))
    sp.put("second.csv", second)
    sp.run()
    assert copies(sp) == {"first.csv": [first], "second.csv": [second]}


def test_without_a_site_grant_the_run_fails_with_graphs_answer_and_copies_nothing(
    emulator: Emulator, sharepoint: SharePoint, monkeypatch, caplog
) -> None:
    sp = sharepoint
    other = f"/sites/NoGrant-{uuid.uuid4().hex[:6]}"
    site_id = sp.graph.add_site("contoso.sharepoint.com", other)
    drive_id = sp.graph.add_drive(site_id, "Documents")
    sp.graph.ensure_folder(drive_id, FOLDER)
    sp.graph.put_file(drive_id, f"{FOLDER}/a.csv", csv_bytes(HEADER, rows(1)))
    monkeypatch.setenv("HR_SOURCE_SITE", f"contoso.sharepoint.com{other}")
    caplog.set_level(logging.INFO, logger="hrconnector_core")
    with pytest.raises(SourceError, match=r"site contoso\.sharepoint\.com/sites/NoGrant-\w+: .*HTTP 403 accessDenied"):
        sp.run()
    assert sp.incoming() == {}
    tokens = list(emulator.state.tokens)
    assert not any(t in r.getMessage() for r in caplog.records for t in tokens)


def test_a_read_grant_suffices_with_moving_off(sharepoint: SharePoint, function_identity: str, monkeypatch) -> None:
    sp = sharepoint
    sp.graph.grant_site(function_identity, sp.site_id, "read")
    monkeypatch.setenv("HR_SOURCE_MOVE", "false")
    sp.run()
    data = csv_bytes(HEADER, rows(2))
    sp.put("read.csv", data)
    sp.run()
    sp.upload_all()
    sp.run()
    assert copies(sp) == {} and sp.records() == {"copied": ["read.csv"]}
    assert sent_rows(sp.emulator, sp.env.job) == data_rows(data)


def test_a_copy_without_its_record_is_recorded_not_read_again(sharepoint: SharePoint, edge: Any) -> None:
    """The record's write fails after the copy was committed; the rerun (before any upload)
    finds the copy in hr-incoming: it writes the record and downloads nothing again."""
    sp = sharepoint
    sp.run()
    data = csv_bytes(HEADER, rows(2))
    sp.put("again.csv", data)
    edge.answer(lambda r: r.method == "PUT" and "/graph/main/items/" in urlsplit(r.url or "").path, 403)
    with pytest.raises(SourceError, match=r"again\.csv"):
        sp.run()
    edge.rules.clear()
    downloads = sp.downloads()
    sp.run()
    assert sp.downloads() == downloads
    assert copies(sp) == {"again.csv": [data]}
    assert sp.records() == {"copied": ["again.csv"]}


def test_a_download_cut_mid_file_or_refused_with_503_is_read_again_and_copied_whole(sharepoint: SharePoint) -> None:
    sp = sharepoint
    sp.run()
    data = csv_bytes(HEADER, rows(300))
    sp.put("cut.csv", data)
    sp.graph.cut_next_download(len(data) // 2)
    sp.graph.fail_next_download(503, retry_after_seconds=0)
    sp.run()
    assert copies(sp) == {"cut.csv": [data]}
    assert sp.records() == {"copied": ["cut.csv"]}


def test_a_feed_listing_stale_states_before_the_latest_copies_each_version_once(sharepoint: SharePoint) -> None:
    """Graph may list a changed item earlier in the feed in an older state: the last one counts."""
    sp = sharepoint
    sp.graph.repeat_in_delta = True
    try:
        sp.run()
        first, second = csv_bytes(HEADER, rows(1)), csv_bytes(HEADER, rows(1, start=8))
        sp.put("twice.csv", first)
        sp.run()
        sp.put("twice.csv", second)
        sp.run()
        sp.run()
    finally:
        sp.graph.repeat_in_delta = False
    assert sorted(copies(sp)["twice.csv"]) == sorted([first, second])
    assert sp.records() == {"copied": ["twice.csv", "twice.csv"]}


SOURCE_WORKER = """
import json, logging, sys

records = []

class Recorder(logging.Handler):
    def emit(self, record):
        records.append({"logger": record.name, "level": record.levelname, "message": record.getMessage()})

root = logging.getLogger()
root.setLevel(logging.INFO)
root.addHandler(Recorder(level=logging.NOTSET))

from hrconnector_core.emulator.host import invoke_blob_trigger, invoke_timer

invoke_timer("hr_graph_source")
invoke_blob_trigger("hr_file_arrived", sys.argv[1], sys.argv[2])
invoke_timer("hr_graph_source")
print(json.dumps(records))
"""


def test_only_the_sources_own_lines_reach_the_host_and_no_token_url_or_value(
    emulator: Emulator, sharepoint: SharePoint, monkeypatch
) -> None:
    """As the worker runs it (root logger at INFO, every record forwarded): copy, upload, move."""
    import os
    import subprocess
    import sys

    from hrconnector_core.graphstate import version_key

    from .conftest import FUNCTION_IDENTITY, REPO

    sp = sharepoint
    monkeypatch.setenv("HR_SOURCE_COPY_EXISTING", "true")
    data_rows_ = rows(6)
    item = sp.put("leavers.csv", csv_bytes(HEADER, data_rows_))
    blob = f"main/sharepoint/{version_key(item['id'], item['cTag'])[:12]}/leavers.csv"
    tokens_before = set(emulator.state.tokens)
    result = subprocess.run(
        [sys.executable, "-c", SOURCE_WORKER, sp.env.settings.containers.incoming, blob],
        env={**os.environ, "PYTHONPATH": str(REPO)}, cwd=REPO, capture_output=True, text=True, timeout=120,
        check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    records = json.loads(result.stdout.strip().splitlines()[-1])
    # azure-functions' own note when the worker indexes an app without HTTP functions (once per process).
    (indexing,) = [r for r in records if r["logger"] == "root"]
    assert indexing["message"].startswith("Auth level is not applied")
    records.remove(indexing)
    assert sp.names(f"{FOLDER}/Processed") == ["leavers.csv", "leavers.csv.report.json"]
    loggers = {(r["logger"], r["level"]) for r in records}
    assert loggers == {
        ("hrconnector_core.graphsource", "INFO"),  # copied; the run's summary
        ("hrconnector_core.graphmove", "INFO"),  # moved
        ("hrconnector_core.service", "INFO"),
        ("hrconnector_core.pipeline.chunks", "INFO"),
    }
    everything = json.dumps(records)
    tokens = set(emulator.state.tokens) - tokens_before
    assert tokens  # the worker signed in (Graph, Key Vault, ingestion)
    forbidden = {"http://", "https://", emulator.url, FUNCTION_IDENTITY, sp.drive_id, *tokens}
    forbidden |= {v for row in data_rows_ for v in row}
    assert sorted(v for v in forbidden if v in everything) == []
    assert len(records) < 20


def test_every_setting_a_binding_names_is_in_the_local_settings(emulator: Emulator, azurite: Any) -> None:
    """The host resolves %NAME% in bindings at start-up: a missing one stops every function."""
    import re

    from hrconnector_core.emulator.host import local_settings

    from .conftest import REPO

    named = set()
    for function in registered_functions().values():
        named |= set(re.findall(r"%(\w+)%", json.dumps(trigger(function).get_dict_repr(), default=str)))
    assert {"HR_SCHEDULE", "HR_SOURCE_SCHEDULE", "HR_INCOMING_CONTAINER"} <= named
    example = json.loads((REPO / "local.settings.json.example").read_text(encoding="utf-8"))["Values"]
    ours = local_settings("x", emulator, connector="c", job_id="j", tenant_id="t", app_id="a", identity="i",
                          secret_name="s")  # fmt: skip
    assert named <= set(example) and named <= set(ours)


def test_a_name_taken_in_processed_gets_a_timestamp_and_the_earlier_report_stays(sharepoint: SharePoint) -> None:
    sp = sharepoint
    sp.run()
    first, second = csv_bytes(HEADER, rows(2)), csv_bytes(HEADER, rows(3, start=70))
    sp.put("daily.csv", first)
    sp.run()
    sp.upload_all()
    sp.run()
    processed = f"{FOLDER}/Processed"
    report_one = sp.graph.content(sp.drive_id, sp.children(processed)["daily.csv.report.json"]["id"])
    sp.put("daily.csv", second)  # the next export under the same name: a new item
    sp.run()
    sp.upload_all()
    sp.run()
    names = sp.names(processed)
    (stamped,) = [n for n in names if n.startswith("daily-") and n.endswith("Z.csv")]
    assert sorted(names) == sorted(["daily.csv", "daily.csv.report.json", stamped, stamped + ".report.json"])
    children = sp.children(processed)
    assert sp.graph.content(sp.drive_id, children["daily.csv"]["id"]) == first
    assert sp.graph.content(sp.drive_id, children[stamped]["id"]) == second
    assert sp.graph.content(sp.drive_id, children["daily.csv.report.json"]["id"]) == report_one
    report_two = json.loads(sp.graph.content(sp.drive_id, children[stamped + ".report.json"]["id"]))
    assert report_two["rows"]["in"] == 3 and json.loads(report_one)["rows"]["in"] == 2
