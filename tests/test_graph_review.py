"""The adversarial review of issue 14 (the SharePoint/OneDrive Graph source), its findings fixed.
Real parts: the emulator over HTTPS, Azurite, the registered functions called as the host would."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import subprocess
import sys
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
from azure.core.exceptions import HttpResponseError
from azure.storage.blob import BlobLeaseClient
from requests.structures import CaseInsensitiveDict

from hrconnector_core.emulator import Emulator
from hrconnector_core.errors import ConfigurationError
from hrconnector_core.graphmove import REJECTED, REPORT
from hrconnector_core.graphsource import SourceError
from hrconnector_core.settings import Settings

from . import test_graph_source
from .csvdata import HEADER, csv_bytes, rows
from .network_edge import Rule
from .test_graph_source import FOLDER, SharePoint, copies, data_rows, sent_rows

sharepoint = test_graph_source.sharepoint  # the fixture, shared


def _uploads(emulator: Emulator, job: str) -> int:
    return len(emulator.state.uploads.get(job.lower(), []))


# -- exactly once: a rename is not a new version of the data ------------------------------------------
def test_a_file_renamed_before_its_move_is_uploaded_once(emulator: Emulator, sharepoint: SharePoint) -> None:
    """A person renames a dropped export (same content, same item) after the source copied it but
    before the source's next run moved it. Graph changes the eTag on a rename, not the cTag: the
    same rows are not copied again, and the item is moved under its new name."""
    sp = sharepoint
    sp.run()
    data = csv_bytes(HEADER, rows(3))
    item = sp.put("leavers.csv", data)
    sp.run()
    sp.upload_all()
    sp.graph.move_item(sp.drive_id, item["id"], sp.folder_id, new_name="leavers-november.csv")
    sp.run()
    sp.upload_all()
    sp.run()
    assert sent_rows(emulator, sp.env.job) == data_rows(data), "the same rows were sent twice"
    # Moved all the same (a rename is no change of content), under the name the person gave it.
    assert sp.records() == {"moved": ["leavers.csv"]}
    assert sp.names(f"{FOLDER}/Processed") == ["leavers-november.csv", "leavers-november.csv.report.json"]


def test_a_renamed_baseline_file_is_not_sent(emulator: Emulator, sharepoint: SharePoint) -> None:
    """copy_existing false (default): old exports already there are never sent. Tidying them up
    (a rename) must not send them either."""
    sp = sharepoint
    old = csv_bytes(HEADER, rows(2))
    item = sp.put("old-export.csv", old)
    sp.run()  # baseline
    sp.graph.move_item(sp.drive_id, item["id"], sp.folder_id, new_name="archive-old-export.csv")
    sp.run()
    sp.upload_all()
    assert copies(sp) == {}, "an old export (baseline) was copied after a rename"
    assert sent_rows(emulator, sp.env.job) == []


@pytest.mark.parametrize("months_later", [False, True], ids=["soon-after", "after-retention"])
def test_moving_off_a_rename_after_the_upload_sends_nothing_again(
    emulator: Emulator, sharepoint: SharePoint, monkeypatch: pytest.MonkeyPatch, months_later: bool
) -> None:
    """Moving off: files stay in the folder for ever; a later rename (a new eTag, the same cTag)
    sends nothing again, also after retention (91 days on) cleared the file states: the item's
    record, never deleted, says it was sent."""
    from datetime import timedelta

    from hrconnector_core.service import utc_now

    sp = sharepoint
    monkeypatch.setenv("HR_SOURCE_MOVE", "false")
    sp.run()
    item = sp.put("stay.csv", csv_bytes(HEADER, rows(2, start=30)))
    sp.run()
    sp.upload_all()
    if months_later:
        sp.env.service.run_schedule(now=utc_now() + timedelta(days=91))
    sp.graph.move_item(sp.drive_id, item["id"], sp.folder_id, new_name="stay-done.csv")
    sp.run()
    sp.upload_all()
    assert _uploads(emulator, sp.env.job) == 1


def test_moved_out_and_back_before_upload_is_sent_once(emulator: Emulator, sharepoint: SharePoint) -> None:
    sp = sharepoint
    sp.run()
    data = csv_bytes(HEADER, rows(2, start=40))
    item = sp.put("roundtrip.csv", data)
    sp.run()
    archive = sp.graph.ensure_folder(sp.drive_id, f"{FOLDER}/Archive")
    sp.graph.move_item(sp.drive_id, item["id"], archive)
    sp.graph.move_item(sp.drive_id, item["id"], sp.folder_id)
    sp.run()
    sp.upload_all()
    sp.run()
    assert sent_rows(emulator, sp.env.job) == data_rows(data)


# -- the baseline -----------------------------------------------------------------------------------------
def test_a_first_run_with_one_failed_baseline_record_never_sends_that_old_file(
    emulator: Emulator, sharepoint: SharePoint, edge: Any
) -> None:
    """The first run records what is there as a baseline; one record write fails (storage
    hiccup). The next run is still 'first' (no run completed), so the old file whose baseline
    record is missing is recorded, not copied (copy_existing is false)."""
    sp = sharepoint
    old_a, old_b = csv_bytes(HEADER, rows(2)), csv_bytes(HEADER, rows(2, start=10))
    sp.put("old-a.csv", old_a)
    sp.put("old-b.csv", old_b)

    def record_write(request: requests.PreparedRequest) -> bool:
        return request.method == "PUT" and "/graph/main/items/" in urlsplit(request.url or "").path

    edge.answer(record_write, 403, times=1)
    with pytest.raises(SourceError):
        sp.run()
    edge.rules.clear()
    sp.run()
    sp.upload_all()
    assert copies(sp) == {}, "an export already there at the first run was copied"
    assert sent_rows(emulator, sp.env.job) == []


def test_a_file_added_during_the_first_enumeration_is_copied_later(sharepoint: SharePoint, edge: Any) -> None:
    sp = sharepoint
    sp.graph.page_size = 1
    sp.put("old.csv", csv_bytes(HEADER, rows(1)))
    new = csv_bytes(HEADER, rows(1, start=5))

    def second_page(request: requests.PreparedRequest) -> bool:
        return "/root/delta" in (request.url or "") and "token=" in (request.url or "")

    added: list[bool] = []

    def add(request: requests.PreparedRequest, response: requests.Response) -> None:
        if not added:
            added.append(True)
            sp.put("new.csv", new)

    edge.after(second_page, add)
    sp.run()
    sp.run()
    assert copies(sp) == {"new.csv": [new]}


# -- the move ---------------------------------------------------------------------------------------------
def test_the_library_root_as_the_folder(emulator: Emulator, sharepoint: SharePoint, monkeypatch) -> None:
    sp = sharepoint
    monkeypatch.setenv("HR_SOURCE_FOLDER", "")
    sp.run()
    data = csv_bytes(HEADER, rows(2))
    sp.put("root.csv", data, folder="")
    sp.run()
    sp.upload_all()
    sp.run()
    assert "Processed" in sp.names("")
    assert sorted(sp.names("Processed")) == ["root.csv", "root.csv.report.json"]
    assert sent_rows(emulator, sp.env.job) == data_rows(data)


def test_a_file_named_processed_in_the_folder_is_a_clear_error_and_the_move_follows_its_rename(
    emulator: Emulator, sharepoint: SharePoint
) -> None:
    """A person's file called 'Processed' (no extension) in the watched folder: Graph would refuse
    every move with an opaque 400. The run says which file is in the way; once it is renamed,
    the waiting item is moved."""
    sp = sharepoint
    sp.run()
    blocker = sp.put("Processed", b"notes")
    data = csv_bytes(HEADER, rows(2))
    sp.put("a.csv", data)
    sp.run()
    sp.upload_all()
    with pytest.raises(SourceError, match="holds a file named 'Processed'"):
        sp.run()
    assert sp.records() == {"copied": ["a.csv"]}
    sp.graph.move_item(sp.drive_id, blocker["id"], sp.folder_id, new_name="Processed notes.txt")
    sp.run()
    assert sp.records() == {"moved": ["a.csv"]}
    assert sp.names(f"{FOLDER}/Processed") == ["a.csv", "a.csv.report.json"]


def test_a_huge_rejected_rows_file_is_not_read_and_the_report_says_where_it_is(
    sharepoint: SharePoint, edge: Any
) -> None:
    """Rejected rows larger than Graph's simple upload (4 MB): the move never downloads them (their
    size comes from the blob's properties), reads the report in pieces of at most 1 MiB, and the
    report beside the file says where the rejected rows are. (Memory is observed as requests: the
    emulator serving Graph runs in this process, so a tracemalloc peak would count its copies.)"""
    sp = sharepoint
    sp.run()
    bad = [[f"not-an-email-{i}", "2024-01-01", "r" * 80, "3"] for i in range(90_000)]
    bad[0] = ["ok0@contoso.com", "2024-01-01", "fine", "3"]
    data = csv_bytes(HEADER, bad)
    assert len(data) > 8_000_000
    sp.put("big-bad.csv", data)
    sp.run()
    sp.upload_all()
    reads: list[tuple[str, str]] = []

    def storage_get(request: requests.PreparedRequest) -> bool:
        path = urlsplit(request.url or "").path  # Azurite's, not Graph's (/v1.0/...)
        return request.method == "GET" and not path.startswith("/v1.0/") and path.endswith((REJECTED, REPORT))

    def note(request: requests.PreparedRequest) -> None:
        ranged = request.headers.get("x-ms-range") or request.headers.get("Range") or ""
        reads.append((urlsplit(request.url or "").path, ranged))

    edge.rule(Rule(storage_get, before=note))
    sp.run()
    moved = [n for sub in ("Processed", "Failed") if sub in sp.names() for n in sp.names(f"{FOLDER}/{sub}")]
    assert "big-bad.csv" in moved and "big-bad.csv.rejected.csv" not in moved
    assert reads and not [p for p, _ in reads if p.endswith(".rejected.csv")], reads
    for _, ranged in reads:
        start, end = (int(n) for n in ranged.removeprefix("bytes=").split("-"))
        assert end - start + 1 <= 1 << 20, ranged
    sub = "Processed" if "Processed" in sp.names() else "Failed"
    report = json.loads(sp.graph.content(sp.drive_id, sp.children(f"{FOLDER}/{sub}")["big-bad.csv.report.json"]["id"]))
    assert report["rejected_rows_stored_at"].endswith("big-bad.csv.rejected.csv")
    assert report["rows"]["rejected"] > 80_000


# -- hostile Graph ----------------------------------------------------------------------------------------
def _json_answer(
    request: requests.PreparedRequest, status: int, body: Any, headers: dict[str, str] | None = None
) -> requests.Response:
    response = requests.Response()
    response.status_code = status
    raw = json.dumps(body).encode() if body is not None else b""
    response._content = raw
    response.headers = CaseInsensitiveDict({"Content-Type": "application/json", **(headers or {})})
    response.request = request
    response.url = request.url or ""
    return response


def test_an_item_name_with_dot_dot_cannot_leave_the_connectors_prefix(sharepoint: SharePoint, edge: Any) -> None:
    """A hostile (or buggy) Graph names an item `../../../other/x.csv`: the copy must stay under
    <connector>/sharepoint/ (another connector's prefix would upload it to another job)."""
    sp = sharepoint
    sp.run()
    item = sp.put("x.csv", csv_bytes(HEADER, rows(1)))
    sp.graph.items[item["id"]].name = "../../../other/x.csv"
    with pytest.raises(SourceError):  # refused (Azurite answers 400), not written elsewhere
        sp.run()
    names = list(sp.incoming())
    assert all(n.startswith("main/sharepoint/") and "/../" not in n for n in names), names


def test_a_download_redirect_to_plain_http_is_not_followed(sharepoint: SharePoint, edge: Any) -> None:
    sp = sharepoint
    sp.run()
    sp.put("a.csv", csv_bytes(HEADER, rows(1)))

    def content(request: requests.PreparedRequest) -> bool:
        return request.method == "GET" and urlsplit(request.url or "").path.endswith("/content")

    seen: list[str] = []

    def redirect(request: requests.PreparedRequest) -> requests.Response:
        return _json_answer(request, 302, None, {"Location": "http://127.0.0.1:9/steal"})

    edge.rule(Rule(content, before=redirect))

    def note(request: requests.PreparedRequest) -> None:
        seen.append(request.url or "")

    edge.rule(Rule(lambda r: "127.0.0.1:9/" in (r.url or ""), before=note))
    with pytest.raises(SourceError, match="not an https URL"):
        sp.run()
    assert seen == [] and sp.incoming() == {}


def test_an_html_200_for_a_json_call_is_a_clear_error(sharepoint: SharePoint, edge: Any) -> None:
    sp = sharepoint

    def site(request: requests.PreparedRequest) -> bool:
        return "/v1.0/sites/" in (request.url or "")

    def html(request: requests.PreparedRequest) -> requests.Response:
        response = _json_answer(request, 200, None, {"Content-Type": "text/html"})
        response._content = b"<html>sign in</html>"
        return response

    edge.rule(Rule(site, before=html, times=1))
    with pytest.raises(SourceError, match="without a JSON object"):
        sp.run()


def test_a_429_storm_on_every_call_ends_the_run_in_bounded_time(sharepoint: SharePoint, monkeypatch) -> None:
    """Every Graph call answered 429 with Retry-After: 3600. The sleeps are recorded, not slept."""
    from hrconnector_core.graph import GraphClient

    waits: list[float] = []
    monkeypatch.setitem(GraphClient.__init__.__kwdefaults__, "sleep", waits.append)
    sp = sharepoint
    sp.emulator.state.set_graph_faults(rate_429=1.0, rate_503=0, retry_after_seconds=3600, seed=1)
    with pytest.raises(SourceError, match="429"):
        sp.run()
    sp.emulator.state.set_graph_faults(rate_429=0, rate_503=0, retry_after_seconds=1)
    assert waits and max(waits) <= 60 and sum(waits) <= 600, waits


def test_a_half_429_storm_with_many_files_has_a_run_budget(sharepoint: SharePoint, monkeypatch) -> None:
    """Half the calls throttled with Retry-After 3600 (capped at 60 s each): the total a single
    timer run would sleep, with 12 new files."""
    from hrconnector_core.graph import GraphClient

    sp = sharepoint
    sp.run()
    for i in range(12):
        sp.put(f"f{i}.csv", csv_bytes(HEADER, rows(1, start=i)))
    waits: list[float] = []
    monkeypatch.setitem(GraphClient.__init__.__kwdefaults__, "sleep", waits.append)
    sp.emulator.state.set_graph_faults(rate_429=0.6, rate_503=0, retry_after_seconds=3600, seed=4)
    try:
        sp.run()
    except SourceError:
        pass
    finally:
        sp.emulator.state.set_graph_faults(rate_429=0, rate_503=0, retry_after_seconds=1)
    # The Flex Consumption default timeout is 30 minutes; the next timer tick comes after 5.
    assert sum(waits) <= 1800, f"one run would sleep {sum(waits) / 60:.0f} minutes"


# -- names --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "name",
    ["Überstunden-离职 2026.csv", "50% leavers #2.csv", "a" * 200 + ".csv", "x;y,z'(1).CSV"],
)
def test_odd_but_valid_names_go_all_the_way(emulator: Emulator, sharepoint: SharePoint, name: str) -> None:
    sp = sharepoint
    sp.run()
    data = csv_bytes(HEADER, rows(2))
    item = sp.graph.put_file(sp.drive_id, f"{FOLDER}/placeholder.csv", data)
    sp.graph.items[item["id"]].name = name  # '%' and '#' are allowed in SharePoint names today
    sp.run()
    sp.upload_all()
    sp.run()
    assert sent_rows(emulator, sp.env.job) == data_rows(data)
    assert sorted(sp.names(f"{FOLDER}/Processed")) == sorted([name, name + ".report.json"])


def test_a_delta_entry_without_an_etag_does_not_fail_every_run(sharepoint: SharePoint, edge: Any) -> None:
    """A delta entry for a csv with no eTag (odd Graph answer) must not fail every run for ever."""
    sp = sharepoint
    sp.run()
    good = csv_bytes(HEADER, rows(1))
    sp.put("good.csv", good)

    def delta(request: requests.PreparedRequest) -> bool:
        return "/root/delta" in (request.url or "")

    def strip(request: requests.PreparedRequest, response: requests.Response) -> None:
        body = response.json()
        body["value"].append({"id": "ODD1", "name": "odd.csv", "file": {}, "parentReference": {"id": sp.folder_id}})
        response._content = json.dumps(body).encode()

    edge.after(delta, strip)
    try:
        sp.run()
    except SourceError as exc:
        pytest.fail(f"one odd entry fails the run: {exc}")
    assert copies(sp) == {"good.csv": [good]}


def _item_get(item_id: str) -> Callable[[requests.PreparedRequest], bool]:
    """The GET of one drive item (its metadata) at the network edge."""

    def match(request: requests.PreparedRequest) -> bool:
        return request.method == "GET" and urlsplit(request.url or "").path.endswith(f"/items/{item_id}")

    return match


def _strip_etag(request: requests.PreparedRequest, response: requests.Response) -> None:
    """Graph's answer without the item's eTag."""
    body = response.json()
    body.pop("eTag")
    response._content = json.dumps(body).encode()


def test_an_item_graph_describes_without_an_etag_is_skipped_and_the_delta_link_moves_on(
    sharepoint: SharePoint, edge: Any, caplog
) -> None:
    """The item itself (read for its cTag) comes without an eTag, and another entry's
    parentReference is not an object: both are skipped with a warning, the good file is copied,
    and the delta link is stored (the next run reads one page, not the whole library)."""
    sp = sharepoint
    sp.run()
    good = csv_bytes(HEADER, rows(1))
    sp.put("good.csv", good)
    odd = sp.put("odd.csv", csv_bytes(HEADER, rows(1, start=4)))

    def delta(request: requests.PreparedRequest) -> bool:
        return "/root/delta" in (request.url or "")

    def bad_parent(request: requests.PreparedRequest, response: requests.Response) -> None:
        body = response.json()
        body["value"].append({"id": "ODD2", "name": "x.csv", "file": {}, "parentReference": "not an object"})
        response._content = json.dumps(body).encode()

    edge.after(_item_get(odd["id"]), _strip_etag)
    edge.after(delta, bad_parent)
    caplog.set_level(logging.INFO, logger="hrconnector_core")
    sp.run()
    assert copies(sp) == {"good.csv": [good]}
    assert any("without a usable eTag" in r.getMessage() for r in caplog.records)
    assert any("1 odd entries skipped" in r.getMessage() for r in caplog.records)
    doc = json.loads(sp.env.service.state.get_blob_client("graph/main/delta.json").download_blob().readall())
    assert doc["delta_link"] and doc["completed"] is True


def test_an_item_without_an_etag_at_its_move_is_not_moved_without_if_match(sharepoint: SharePoint, edge: Any) -> None:
    sp = sharepoint
    sp.run()
    item = sp.put("m.csv", csv_bytes(HEADER, rows(1)))
    sp.run()
    sp.upload_all()

    edge.after(_item_get(item["id"]), _strip_etag)
    sp.run()
    assert sp.records() == {"failed-to-move": ["m.csv"]}
    assert sp.names() == ["m.csv"]


# -- settings ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("env", "setting"),
    [
        ({"HR_GRAPH_URL": "http://graph.example"}, "HR_GRAPH_URL"),
        ({"HR_GRAPH_URL": "http://127.0.0.1:1"}, "HR_GRAPH_URL"),
        ({"HR_SOURCE_SITE": "http://contoso.sharepoint.com/sites/HR"}, "HR_SOURCE_SITE"),
        ({"HR_SOURCE_SITE": "contoso"}, "HR_SOURCE_SITE"),
        ({"HR_SOURCE_SITE": "contoso.sharepoint.com/sites/../HR"}, "HR_SOURCE_SITE"),
        ({"HR_SOURCE_FOLDER": "HR/../x"}, "HR_SOURCE_FOLDER"),
        ({"HR_SOURCE_LIBRARY": "Shared Documents/HR"}, "HR_SOURCE_LIBRARY"),
        ({"HR_SOURCE_COPY_EXISTING": "maybe"}, "HR_SOURCE_COPY_EXISTING"),
    ],
)
def test_bad_source_settings_name_the_setting(
    sharepoint: SharePoint, monkeypatch, env: dict[str, str], setting: str
) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    try:
        settings = Settings.from_env()
    except ConfigurationError as exc:
        assert setting in str(exc) or "Microsoft Graph URL" in str(exc), str(exc)
        return
    with pytest.raises(SourceError, match=setting):
        from hrconnector_core.graphsource import run_sources

        run_sources(settings)


def test_connectors_json_source_fields_of_the_wrong_type_name_the_field(sharepoint: SharePoint, monkeypatch) -> None:
    cases: list[tuple[str, Any]] = [("source_folder", ["HR", "Exports"]), ("source_library", {"x": 1})]
    cases += [("source_site", 5), ("source_move", [1])]
    for field, value in cases:
        connectors = {"main": {"job_id": sharepoint.env.job, "source_site": sharepoint.site, field: value}}
        monkeypatch.setenv("HR_CONNECTORS", json.dumps(connectors))
        try:
            settings = Settings.from_env()
        except ConfigurationError as exc:
            assert field in str(exc) and "'main'" in str(exc), str(exc)
            continue
        problems = " ".join(settings.problems)
        assert field in problems, f"{field}={value!r} accepted: {settings.connectors['main'].source}"


def test_graph_host_per_cloud() -> None:
    from hrconnector_core.clouds import resolve_cloud

    assert resolve_cloud("commercial").graph_scope == "https://graph.microsoft.com/.default"
    assert resolve_cloud("gcc").graph_url == "https://graph.microsoft.com"
    assert resolve_cloud("gcchigh").graph_url == "https://graph.microsoft.us"
    assert resolve_cloud("dod").graph_url == "https://dod-graph.microsoft.us"
    over = resolve_cloud("gcchigh", graph_url="https://127.0.0.1:8443")
    assert over.graph_url == "https://127.0.0.1:8443" and over.graph_scope == "https://graph.microsoft.us/.default"


# -- separate processes, kill -9 -------------------------------------------------------------------------------
KILL_WORKER = """
import os, signal, sys
from azure.storage.blob import BlobClient
from hrconnector_core.emulator.host import invoke_timer

where = sys.argv[1]
original_commit = BlobClient.commit_block_list
original_upload = BlobClient.upload_blob

def commit(self, *args, **kwargs):
    result = original_commit(self, *args, **kwargs)
    if where == "after-commit":
        os.kill(os.getpid(), signal.SIGKILL)
    return result

def upload(self, *args, **kwargs):
    if where == "before-delta" and self.blob_name.endswith("delta.json") and kwargs.get("overwrite"):
        os.kill(os.getpid(), signal.SIGKILL)
    return original_upload(self, *args, **kwargs)

original_stage = BlobClient.stage_block

def stage(self, *args, **kwargs):
    result = original_stage(self, *args, **kwargs)
    if where == "after-stage":
        os.kill(os.getpid(), signal.SIGKILL)
    return result

from hrconnector_core.graph import GraphClient

original_patch = GraphClient.patch

def patch(self, *args, **kwargs):
    if where == "before-move":
        os.kill(os.getpid(), signal.SIGKILL)
    result = original_patch(self, *args, **kwargs)
    if where == "after-move":
        os.kill(os.getpid(), signal.SIGKILL)
    return result

GraphClient.patch = patch
BlobClient.commit_block_list = commit
BlobClient.stage_block = stage
BlobClient.upload_blob = upload
invoke_timer("hr_graph_source")
"""


def _kill_a_source_run_at(sp: SharePoint, where: str) -> None:
    """A source run in its own process, killed with SIGKILL at `where`; then its lease on
    delta.json broken as its expiry would break it (no sleeping)."""
    from .conftest import REPO

    result = subprocess.run(
        [sys.executable, "-c", KILL_WORKER, where], env={**os.environ, "PYTHONPATH": str(REPO)}, cwd=REPO,
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == -9, result.stderr[-2000:]
    with contextlib.suppress(HttpResponseError):
        BlobLeaseClient(sp.env.service.state.get_blob_client("graph/main/delta.json")).break_lease(lease_break_period=0)


@pytest.mark.parametrize("where", ["after-stage", "after-commit", "before-delta"])
def test_kill_9_of_a_source_process_copies_nothing_twice(
    emulator: Emulator, sharepoint: SharePoint, where: str
) -> None:
    sp = sharepoint
    sp.run()
    data = csv_bytes(HEADER, rows(3, start=80))
    sp.put("killed.csv", data)
    _kill_a_source_run_at(sp, where)
    sp.run()
    sp.run()
    sp.upload_all()
    sp.run()
    assert sent_rows(emulator, sp.env.job) == data_rows(data)
    assert sp.records() == {"moved": ["killed.csv"]}


def test_no_hr_value_or_name_content_in_graph_error_logs(sharepoint: SharePoint, edge: Any, caplog) -> None:
    """A move refused by Graph (403): what is logged carries no token."""
    sp = sharepoint
    caplog.set_level(logging.INFO)
    sp.run()
    values = rows(2, start=90)
    sp.put("a.csv", csv_bytes(HEADER, values))
    sp.run()
    sp.upload_all()
    edge.answer(lambda r: r.method == "PATCH", 403)
    with pytest.raises(SourceError):
        sp.run()
    tokens = list(sp.emulator.state.tokens)
    for record in caplog.records:
        text = record.getMessage()
        assert not any(t in text for t in tokens)
        assert not any(v in text for row in values for v in row if len(v) > 5), text


# -- more: grants, a re-created folder, 410 mid-paging, re-created items ---------------------------------------
def test_a_read_grant_with_moving_on_says_which_grant_is_missing(
    sharepoint: SharePoint, function_identity: str
) -> None:
    sp = sharepoint
    sp.graph.grant_site(function_identity, sp.site_id, "read")
    sp.run()
    data = csv_bytes(HEADER, rows(2))
    sp.put("r.csv", data)
    sp.run()
    sp.upload_all()
    with pytest.raises(SourceError) as caught:
        sp.run()
    text = str(caught.value)
    assert "403" in text
    assert "`write`" in text and "HR_SOURCE_MOVE" in text, f"no hint at the grant or the setting: {text}"
    assert sp.records() == {"copied": ["r.csv"]}  # moved once the grant is right
    sp.graph.grant_site(function_identity, sp.site_id, "write")
    sp.run()
    assert sp.records() == {"moved": ["r.csv"]}


def test_a_folder_deleted_and_created_again_does_not_swallow_new_files(sharepoint: SharePoint) -> None:
    """The watched folder is re-created (new id) and an export dropped in before the next run:
    the connector has completed a run, so nothing is a baseline: the export is copied."""
    sp = sharepoint
    sp.run()
    sp.graph.delete_item(sp.drive_id, sp.folder_id)
    sp.graph.ensure_folder(sp.drive_id, FOLDER)
    data = csv_bytes(HEADER, rows(2, start=3))
    sp.put("new-after-recreate.csv", data)
    sp.run()
    assert copies(sp) == {"new-after-recreate.csv": [data]}


def test_the_folder_setting_changed_away_and_back_does_not_swallow_new_files(
    sharepoint: SharePoint, monkeypatch, caplog
) -> None:
    """A connector that has run is pointed at another folder, then back: the files dropped
    meanwhile (in either folder) are copied, with a warning, never taken as a baseline."""
    sp = sharepoint
    old = csv_bytes(HEADER, rows(1, start=90))
    sp.put("old.csv", old)
    sp.run()  # the first run: old.csv is a baseline
    other = csv_bytes(HEADER, rows(2, start=7))
    sp.put("other.csv", other, folder="HR/Other")
    monkeypatch.setenv("HR_SOURCE_FOLDER", "HR/Other")
    caplog.set_level(logging.WARNING, logger="hrconnector_core")
    sp.run()
    assert any("not the one of the last run" in r.getMessage() for r in caplog.records)
    new = csv_bytes(HEADER, rows(2, start=3))
    sp.put("new.csv", new)
    monkeypatch.setenv("HR_SOURCE_FOLDER", FOLDER)
    sp.run()
    assert copies(sp) == {"other.csv": [other], "new.csv": [new]}  # old.csv stays a baseline


def test_a_410_in_the_middle_of_incremental_paging_copies_each_once(sharepoint: SharePoint, edge: Any) -> None:
    sp = sharepoint
    sp.graph.page_size = 1
    sp.run()
    files = {f"p{i}.csv": csv_bytes(HEADER, rows(1, start=i)) for i in range(4)}
    for name, data in files.items():
        sp.put(name, data)
    expired: list[bool] = []

    def page(request: requests.PreparedRequest) -> bool:
        return "/root/delta?token=" in (request.url or "")

    def expire(request: requests.PreparedRequest, response: requests.Response) -> None:
        if not expired:
            expired.append(True)
            sp.graph.expire_delta_tokens()

    edge.after(page, expire)
    sp.run()
    sp.run()
    assert copies(sp) == {name: [data] for name, data in files.items()}


def test_a_file_deleted_and_created_again_with_the_same_name_is_sent_again(
    emulator: Emulator, sharepoint: SharePoint
) -> None:
    sp = sharepoint
    sp.run()
    first, second = csv_bytes(HEADER, rows(1)), csv_bytes(HEADER, rows(1, start=20))
    old = sp.put("same.csv", first)
    sp.run()
    sp.graph.delete_item(sp.drive_id, old["id"])
    sp.put("same.csv", second)
    sp.run()
    sp.upload_all()
    sp.run()
    assert sent_rows(emulator, sp.env.job) == data_rows(first, second)


def test_an_item_a_person_moved_into_processed_still_gets_its_report(sharepoint: SharePoint) -> None:
    """Copied and uploaded; before the source's move a person drags it into Processed
    themselves. The record says `moved`, and the report is put next to it."""
    sp = sharepoint
    sp.run()
    item = sp.put("manual.csv", csv_bytes(HEADER, rows(2)))
    sp.run()
    sp.upload_all()
    processed = sp.graph.ensure_folder(sp.drive_id, f"{FOLDER}/Processed")
    sp.graph.move_item(sp.drive_id, item["id"], processed)
    sp.run()
    assert sp.records() == {"moved": ["manual.csv"]}
    assert "manual.csv.report.json" in sp.names(f"{FOLDER}/Processed"), sp.names(f"{FOLDER}/Processed")


def _endless_delta(sp: SharePoint, edge: Any, token: Callable[[int], str]) -> list[int]:
    """Every delta page answered with a next link (`token(page)`) and never a delta link; returns
    the pages served (the test's own stop at 2000 pages keeps a looping run from hanging)."""
    pages: list[int] = []

    def delta(request: requests.PreparedRequest) -> bool:
        return "/root/delta" in (request.url or "")

    def endless(request: requests.PreparedRequest) -> requests.Response:
        pages.append(1)
        if len(pages) > 2000:
            raise requests.ConnectionError("test: the run is still paging after 2000 pages")
        base = (request.url or "").split("/v1.0/")[0]
        link = f"{base}/v1.0/drives/{sp.drive_id}/root/delta?token={token(len(pages))}"
        return _json_answer(request, 200, {"value": [], "@odata.nextLink": link})

    edge.rule(Rule(delta, before=endless))
    return pages


def test_a_delta_feed_that_never_ends_stops_the_run(sharepoint: SharePoint, edge: Any) -> None:
    """A buggy Graph answers every delta page with the same @odata.nextLink and no delta link.
    The run gives up (a repeated link), not loop until the Function's timeout holding the lease."""
    sharepoint.run()
    pages = _endless_delta(sharepoint, edge, lambda _page: "same")
    with pytest.raises(SourceError):
        sharepoint.run()
    assert len(pages) <= 1000, f"{len(pages)} identical pages read"


def test_a_delta_feed_of_new_links_that_never_ends_stops_at_the_page_cap(
    sharepoint: SharePoint, edge: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every page a new next link, never a delta link: the run stops at the cap with a clear error."""
    from hrconnector_core import graphsource

    monkeypatch.setattr(graphsource, "MAX_DELTA_PAGES", 20)
    sharepoint.run()
    pages = _endless_delta(sharepoint, edge, lambda page: f"page{page}")
    with pytest.raises(SourceError, match="past 20 pages"):
        sharepoint.run()
    assert len(pages) == 20


def test_the_failed_path_puts_the_report_and_rejected_rows_in_failed(sharepoint: SharePoint, edge: Any) -> None:
    """Some rows rejected, and the service refuses the upload: Failed holds the file, its report
    and the rejected rows."""
    from .network_edge import is_upload

    sp = sharepoint
    sp.run()
    data_ = rows(3, start=50)
    data_[1][0] = "not-an-email"
    sp.put("refused.csv", csv_bytes(HEADER, data_))
    sp.run()
    edge.answer(is_upload, 403)
    sp.upload_all()
    edge.rules.clear()
    sp.run()
    assert sp.records() == {"moved": ["refused.csv"]}
    names = sp.names(f"{FOLDER}/Failed")
    assert "refused.csv" in names and "refused.csv.report.json" in names, names
    report = sp.graph.content(sp.drive_id, sp.children(f"{FOLDER}/Failed")["refused.csv.report.json"]["id"])
    assert b"failed" in report


def test_an_empty_file_is_copied_and_ends_in_failed_with_a_report(sharepoint: SharePoint) -> None:
    sp = sharepoint
    sp.run()
    sp.put("empty.csv", b"")
    sp.run()
    assert copies(sp) == {"empty.csv": [b""]}
    sp.upload_all()
    sp.run()
    assert sp.records() == {"moved": ["empty.csv"]}
    assert sorted(sp.names(f"{FOLDER}/Failed")) == ["empty.csv", "empty.csv.report.json"]


@pytest.mark.parametrize("where", ["before-move", "after-move"])
def test_kill_9_around_the_move_leaves_one_item_and_one_report(
    emulator: Emulator, sharepoint: SharePoint, where: str
) -> None:
    sp = sharepoint
    sp.run()
    data = csv_bytes(HEADER, rows(2, start=70))
    sp.put("moving.csv", data)
    sp.run()
    sp.upload_all()
    _kill_a_source_run_at(sp, where)
    sp.run()
    assert sp.records() == {"moved": ["moving.csv"]}
    assert sp.names(f"{FOLDER}/Processed") == ["moving.csv", "moving.csv.report.json"]
    assert sp.names() == ["Processed"]


def test_an_earlier_files_report_left_in_processed_is_not_overwritten(sharepoint: SharePoint) -> None:
    """Processed holds `daily.csv.report.json` of an earlier file whose csv a person deleted
    (or moved on). The next `daily.csv` gets a free name for itself and its report together."""
    sp = sharepoint
    sp.run()
    sp.put("daily.csv", csv_bytes(HEADER, rows(2)))
    sp.run()
    sp.upload_all()
    sp.run()
    processed = f"{FOLDER}/Processed"
    earlier = sp.children(processed)
    report_one = sp.graph.content(sp.drive_id, earlier["daily.csv.report.json"]["id"])
    sp.graph.delete_item(sp.drive_id, earlier["daily.csv"]["id"])
    sp.put("daily.csv", csv_bytes(HEADER, rows(3, start=10)))
    sp.run()
    sp.upload_all()
    sp.run()
    reports = [n for n in sp.names(processed) if n.endswith(".report.json")]
    contents = [sp.graph.content(sp.drive_id, sp.children(processed)[n]["id"]) for n in reports]
    assert report_one in contents, f"the earlier report was replaced: {sp.names(processed)}"


HOLD_WORKER = """
import pathlib, sys, time
from hrconnector_core.graph import GraphClient
from hrconnector_core.emulator.host import invoke_timer

reached, go = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
original = GraphClient.download

def download(self, *args, **kwargs):
    reached.write_text("1")
    for _ in range(1200):  # waits for the test's signal (a file), at most 60 s
        if go.exists():
            break
        time.sleep(0.05)
    return original(self, *args, **kwargs)

GraphClient.download = download
invoke_timer("hr_graph_source")
"""


def test_two_source_processes_at_once_copy_once(emulator: Emulator, sharepoint: SharePoint, tmp_path, caplog) -> None:
    """Another process holds its run inside the download; this process's run meanwhile finds
    the connector leased. Then the other finishes: one copy."""
    import time

    from .conftest import REPO

    sp = sharepoint
    sp.run()
    data = csv_bytes(HEADER, rows(2, start=33))
    sp.put("both.csv", data)
    reached, go = tmp_path / "reached", tmp_path / "go"
    child = subprocess.Popen(
        [sys.executable, "-c", HOLD_WORKER, str(reached), str(go)], env={**os.environ, "PYTHONPATH": str(REPO)},
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        for _ in range(1200):
            if reached.exists() or child.poll() is not None:
                break
            time.sleep(0.05)
        assert reached.exists(), (child.stderr.read() if child.stderr else "") if child.poll() is not None else "never"
        caplog.set_level(logging.INFO, logger="hrconnector_core")
        sp.run()
        assert any("another run is reading" in r.getMessage() for r in caplog.records)
    finally:
        go.write_text("1")
        _, err = child.communicate(timeout=120)
    assert child.returncode == 0, err[-2000:]
    assert copies(sp) == {"both.csv": [data]}
    assert sp.records() == {"copied": ["both.csv"]}


def test_a_move_refused_with_412_leaves_no_orphan_report_in_processed(sharepoint: SharePoint, edge: Any) -> None:
    """The move is refused (the item changed between the check and the PATCH): the report is
    uploaded only after a move, so Processed holds no report for a file that is not there."""
    sp = sharepoint
    sp.run()
    sp.put("raced.csv", csv_bytes(HEADER, rows(2)))
    sp.run()
    sp.upload_all()
    edge.answer(lambda r: r.method == "PATCH", 412, times=1)
    sp.run()
    assert sp.records() == {"failed-to-move": ["raced.csv"]}
    assert sp.names() == ["raced.csv"] or "raced.csv" in sp.names()
    orphans = list(sp.names(f"{FOLDER}/Processed")) if "Processed" in sp.names() else []
    assert orphans == [], f"Processed holds {orphans} for an item that stayed in the folder"
