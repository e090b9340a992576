"""The emulated Microsoft Graph drive API, over HTTPS with requests and the test CA.

The Graph folder source is tested against this emulator, so it must behave like Graph where the
source depends on it: delta paging and links, 410 on an expired token, the redirect download that
refuses a bearer token, conflict behaviours, If-Match, Sites.Selected grants, throttling.
"""

from __future__ import annotations

import base64
import threading
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests

from hrconnector_core.clouds import DEFAULT_RESOURCE
from hrconnector_core.emulator import Emulator
from hrconnector_core.emulator.graph import GraphState
from hrconnector_core.emulator.state import VAULT_RESOURCE

from .conftest import APP_ID, SECRET, TENANT

GRAPH = "https://graph.microsoft.com"
CONFLICT = "@microsoft.graph.conflictBehavior"


@pytest.fixture(autouse=True)
def _calm_graph(emulator: Emulator):
    yield
    emulator.state.graph.reset_faults()
    emulator.state.graph.page_size = 200
    emulator.state.graph.repeat_in_delta = False


def mi_token(emulator: Emulator, client_id: str, resource: str = GRAPH) -> str:
    """A token from the emulator's managed-identity endpoint (App Service protocol)."""
    response = requests.get(
        f"{emulator.url}/msi/token",
        params={"resource": resource, "client_id": client_id, "api-version": "2019-08-01"},
        headers={"X-IDENTITY-HEADER": emulator.state.identity_header},
        timeout=10,
    )
    response.raise_for_status()
    return str(response.json()["access_token"])


@dataclass
class Drive:
    emulator: Emulator
    graph: GraphState
    site_id: str
    drive_id: str
    folder_id: str
    client_id: str
    http: requests.Session

    def url(self, tail: str) -> str:
        return f"{self.emulator.url}/v1.0/drives/{self.drive_id}{tail}"

    def delta_all(self, url: str | None = None) -> tuple[list[list[dict[str, Any]]], str]:
        """Every page of one delta enumeration, and its delta link."""
        url = url or self.url("/root/delta")
        pages = []
        while True:
            response = self.http.get(url, timeout=10)
            assert response.status_code == 200, response.text
            body = response.json()
            pages.append(body["value"])
            if "@odata.deltaLink" in body:
                assert "@odata.nextLink" not in body
                return pages, body["@odata.deltaLink"]
            url = body["@odata.nextLink"]


def new_identity(emulator: Emulator) -> str:
    client_id = str(uuid.uuid4())
    emulator.state.register_managed_identity(client_id, TENANT, vault_reader=False)
    return client_id


@pytest.fixture
def drive(emulator: Emulator) -> Drive:
    """A fresh site with a Documents library and HR/Exports; an identity with a write grant."""
    graph = emulator.state.graph
    site_id = graph.add_site("contoso.sharepoint.com", f"/sites/HR-{uuid.uuid4().hex[:8]}")
    drive_id = graph.add_drive(site_id, "Documents")
    folder_id = graph.ensure_folder(drive_id, "HR/Exports")
    client_id = new_identity(emulator)
    graph.grant_site(client_id, site_id, "write")
    http = requests.Session()
    http.headers["Authorization"] = f"Bearer {mi_token(emulator, client_id)}"
    return Drive(emulator, graph, site_id, drive_id, folder_id, client_id, http)


def error_code(response: requests.Response) -> str:
    return str(response.json()["error"]["code"])


# -- resolution --------------------------------------------------------------------------------------
def test_site_library_and_folder_resolve_by_name_and_path(drive: Drive) -> None:
    site_path = drive.graph.sites[drive.site_id].path
    site = drive.http.get(f"{drive.emulator.url}/v1.0/sites/contoso.sharepoint.com:{site_path}", timeout=10)
    assert site.status_code == 200
    assert site.json()["id"] == drive.site_id
    assert site.json()["webUrl"] == f"https://contoso.sharepoint.com{site_path}"

    drives = drive.http.get(f"{drive.emulator.url}/v1.0/sites/{drive.site_id}/drives", timeout=10).json()["value"]
    assert [(d["id"], d["name"], d["driveType"]) for d in drives] == [(drive.drive_id, "Documents", "documentLibrary")]

    by_path = drive.http.get(f"{drive.emulator.url}/v1.0/sites/contoso.sharepoint.com:{site_path}:/drives", timeout=10)
    assert [d["id"] for d in by_path.json()["value"]] == [drive.drive_id]
    default = drive.http.get(f"{drive.emulator.url}/v1.0/sites/{drive.site_id}/drive", timeout=10)
    assert default.json()["id"] == drive.drive_id

    folder = drive.http.get(drive.url("/root:/HR/Exports"), timeout=10)
    assert folder.status_code == 200
    assert folder.json()["id"] == drive.folder_id
    assert "folder" in folder.json()
    assert folder.json()["parentReference"]["path"] == f"/drives/{drive.drive_id}/root:/HR"
    root = drive.http.get(drive.url("/root"), timeout=10).json()
    assert "root" in root
    hr = drive.http.get(drive.url(f"/items/{root['id']}:/HR"), timeout=10).json()
    assert hr["id"] == folder.json()["parentReference"]["id"]

    missing = drive.http.get(drive.url("/root:/HR/Nope"), timeout=10)
    assert missing.status_code == 404
    assert error_code(missing) == "itemNotFound"
    assert drive.http.get(drive.url(f"/items/{drive.folder_id}:/absent.csv"), timeout=10).status_code == 404
    other = drive.http.get(f"{drive.emulator.url}/v1.0/sites/contoso.sharepoint.com:/sites/none", timeout=10)
    assert other.status_code == 404


def test_item_has_graph_properties_and_child_lookup(drive: Drive) -> None:
    drive.graph.put_file(drive.drive_id, "HR/Exports/leavers.csv", b"a,b\n1,2\n")
    item = drive.http.get(drive.url(f"/items/{drive.folder_id}:/leavers.csv"), timeout=10)
    assert item.status_code == 200
    body = item.json()
    assert body["name"] == "leavers.csv"
    assert body["size"] == 8
    assert body["file"]["mimeType"] == "text/csv"
    assert body["parentReference"]["id"] == drive.folder_id
    assert body["parentReference"]["driveId"] == drive.drive_id
    assert body["eTag"] and body["cTag"] and body["lastModifiedDateTime"]
    assert drive.graph.children(drive.drive_id, "HR/Exports")["leavers.csv"]["id"] == body["id"]


# -- delta -------------------------------------------------------------------------------------------
def test_delta_pages_with_next_links_then_a_delta_link(drive: Drive) -> None:
    files = {f"f{n}.csv": drive.graph.put_file(drive.drive_id, f"HR/Exports/f{n}.csv", b"x" * n) for n in range(5)}
    drive.graph.page_size = 2
    pages, link = drive.delta_all()
    assert [len(page) for page in pages] == [2, 2, 2, 2]  # root, HR, Exports and five files
    assert all(len(page) <= 2 for page in pages)
    items = [item for page in pages for item in page]
    ids = [item["id"] for item in items]
    assert len(ids) == len(set(ids))  # each item once
    assert items[0].get("root") == {}  # parents before children
    children = {i["name"]: i for i in items if i.get("parentReference", {}).get("id") == drive.folder_id}
    assert {name: i["id"] for name, i in children.items()} == {name: f["id"] for name, f in files.items()}
    assert all("path" not in i["parentReference"] for i in items)  # as in OneDrive for Business
    assert link.startswith(f"{drive.emulator.url}/v1.0/drives/{drive.drive_id}/root/delta?token=")

    nothing, again = drive.delta_all(link)
    assert nothing == [[]]
    assert again != link


def test_changes_after_the_delta_link_appear_once_with_their_latest_state(drive: Drive) -> None:
    g, d = drive.graph, drive.drive_id
    edited = g.put_file(d, "HR/Exports/edited.csv", b"v1")
    renamed = g.put_file(d, "HR/Exports/renamed.csv", b"same")
    deleted = g.put_file(d, "HR/Exports/deleted.csv", b"gone")
    moved = g.put_file(d, "HR/Exports/moved.csv", b"moving")
    processed = g.ensure_folder(d, "HR/Exports/Processed")
    _, link = drive.delta_all()

    g.put_file(d, "HR/Exports/edited.csv", b"v2")
    g.put_file(d, "HR/Exports/edited.csv", b"v3")  # two versions: the latest once
    g.move_item(d, renamed["id"], drive.folder_id, "renamed-2.csv")
    g.delete_item(d, deleted["id"])
    g.move_item(d, moved["id"], processed)
    created = g.put_file(d, "HR/Exports/new.csv", b"new")

    pages, next_link = drive.delta_all(link)
    items = [i for page in pages for i in page]
    by_id: dict[str, list[dict[str, Any]]] = {}
    for i in items:
        by_id.setdefault(i["id"], []).append(i)
    assert all(len(v) == 1 for v in by_id.values()), "an item twice in one enumeration"
    assert by_id[drive.folder_id][0]["folder"]  # the changed folder comes too, as Graph sends parents

    assert all("cTag" not in i and "path" not in i["parentReference"] for i in items)  # as in OneDrive for Business

    def latest(item_id: str) -> dict[str, Any]:
        found = drive.http.get(drive.url(f"/items/{item_id}"), timeout=10)
        assert found.status_code == 200
        return found.json()  # type: ignore[no-any-return]

    now_edited = by_id[edited["id"]][0]
    assert now_edited["eTag"] != edited["eTag"] and latest(edited["id"])["cTag"] != edited["cTag"]
    assert now_edited["size"] == 2
    assert now_edited["eTag"] == latest(edited["id"])["eTag"]
    assert g.content(d, edited["id"]) == b"v3"
    now_renamed = by_id[renamed["id"]][0]
    assert now_renamed["name"] == "renamed-2.csv"
    assert now_renamed["eTag"] != renamed["eTag"]
    assert latest(renamed["id"])["cTag"] == renamed["cTag"]  # no content change
    assert by_id[deleted["id"]][0] == {
        "id": deleted["id"],
        "deleted": {"state": "deleted"},
        "parentReference": {k: v for k, v in deleted["parentReference"].items() if k != "path"},
    }
    now_moved = by_id[moved["id"]][0]
    assert now_moved["parentReference"]["id"] == processed
    assert now_moved["eTag"] != moved["eTag"] and latest(moved["id"])["cTag"] == moved["cTag"]
    assert by_id[created["id"]][0]["name"] == "new.csv"

    after, _ = drive.delta_all(next_link)
    assert after == [[]]  # seen once: nothing more after the new link
    assert drive.http.get(drive.url(f"/items/{deleted['id']}"), timeout=10).status_code == 404


def test_a_change_during_paging_comes_in_the_next_delta(drive: Drive) -> None:
    g, d = drive.graph, drive.drive_id
    for n in range(4):
        g.put_file(d, f"HR/Exports/p{n}.csv", b"x")
    g.page_size = 2
    first = drive.http.get(drive.url("/root/delta"), timeout=10).json()
    late = g.put_file(d, "HR/Exports/late.csv", b"late")  # after the enumeration began
    pages, link = drive.delta_all(first["@odata.nextLink"])
    assert late["id"] not in {i["id"] for page in [first["value"], *pages] for i in page}
    pages, _ = drive.delta_all(link)
    assert late["id"] in {i["id"] for page in pages for i in page}


def test_repeat_in_delta_lists_a_stale_state_before_the_latest(drive: Drive) -> None:
    g, d = drive.graph, drive.drive_id
    first = g.put_file(d, "HR/Exports/r.csv", b"v1")
    _, link = drive.delta_all()
    g.repeat_in_delta = True
    full, _ = drive.delta_all()  # a full enumeration lists each item once
    assert [i["id"] for page in full for i in page].count(first["id"]) == 1
    second = g.put_file(d, "HR/Exports/r.csv", b"v2")
    pages, _ = drive.delta_all(link)
    seen = [i for page in pages for i in page if i["id"] == first["id"]]
    assert [i["eTag"] for i in seen] == [first["eTag"], second["eTag"]]  # the last occurrence is the latest


def test_token_latest_gives_a_delta_link_for_now(drive: Drive) -> None:
    drive.graph.put_file(drive.drive_id, "HR/Exports/old.csv", b"old")
    body = drive.http.get(drive.url("/root/delta?token=latest"), timeout=10).json()
    assert body["value"] == []
    fresh = drive.graph.put_file(drive.drive_id, "HR/Exports/fresh.csv", b"fresh")
    pages, _ = drive.delta_all(body["@odata.deltaLink"])
    names = {i["name"] for page in pages for i in page}
    assert "fresh.csv" in names and "old.csv" not in names
    assert fresh["id"] in {i["id"] for page in pages for i in page}


def test_expired_delta_and_next_links_answer_410_resync_required(drive: Drive) -> None:
    for n in range(3):
        drive.graph.put_file(drive.drive_id, f"HR/Exports/e{n}.csv", b"x")
    _, link = drive.delta_all()
    drive.graph.page_size = 2
    first = drive.http.get(drive.url("/root/delta"), timeout=10).json()
    drive.graph.expire_delta_tokens()
    for url in (link, first["@odata.nextLink"]):
        gone = drive.http.get(url, timeout=10)
        assert gone.status_code == 410
        assert error_code(gone) == "resyncRequired"
        assert gone.headers["Location"] == drive.url("/root/delta")
    pages, new_link = drive.delta_all()  # a new full enumeration works
    assert {"e0.csv", "e1.csv", "e2.csv"} <= {i["name"] for page in pages for i in page}
    assert drive.http.get(new_link, timeout=10).status_code == 200
    drive.graph.expire_delta_tokens("resyncChangesApplyDifferences")
    assert error_code(drive.http.get(new_link, timeout=10)) == "resyncChangesApplyDifferences"
    forged = drive.http.get(drive.url("/root/delta?token=not-a-token"), timeout=10)
    assert forged.status_code == 410


def test_delta_is_served_on_the_root_only(drive: Drive) -> None:
    response = drive.http.get(drive.url(f"/items/{drive.folder_id}/delta"), timeout=10)
    assert response.status_code == 400


# -- faults ------------------------------------------------------------------------------------------
def test_queued_429_and_503_carry_retry_after(drive: Drive) -> None:
    drive.graph.fail_next(429, 503, retry_after_seconds=3)
    throttled = drive.http.get(drive.url("/root"), timeout=10)
    assert throttled.status_code == 429
    assert throttled.headers["Retry-After"] == "3"
    assert error_code(throttled) == "activityLimitReached"
    unavailable = drive.http.get(drive.url("/root"), timeout=10)
    assert unavailable.status_code == 503
    assert unavailable.headers["Retry-After"] == "3"
    assert drive.http.get(drive.url("/root"), timeout=10).status_code == 200


def test_fault_rates_are_seeded_and_separate_from_ingestion(drive: Drive) -> None:
    state = drive.emulator.state
    state.set_graph_faults(rate_429=1.0, retry_after_seconds=7, seed=1)
    assert state.faults.rate_429 == 0  # ingestion untouched
    response = drive.http.get(drive.url("/root"), timeout=10)
    assert response.status_code == 429 and response.headers["Retry-After"] == "7"

    def statuses() -> list[int]:
        state.set_graph_faults(rate_429=0.3, rate_503=0.3, seed=42)
        return [drive.http.get(drive.url("/root"), timeout=10).status_code for _ in range(12)]

    first = statuses()
    assert first == statuses()  # same seed, same sequence
    assert {429, 503, 200} <= set(first)
    drive.graph.fail_next(429)
    drive.graph.fail_next_download(503)
    drive.graph.reset_faults()
    assert drive.http.get(drive.url("/root"), timeout=10).status_code == 200


# -- download ----------------------------------------------------------------------------------------
def test_content_redirects_to_a_pre_authenticated_url_that_refuses_a_bearer_token(drive: Drive) -> None:
    data = b"id,name\n" + b"1,x\n" * 1000
    item = drive.graph.put_file(drive.drive_id, "HR/Exports/big.csv", data)
    redirect = drive.http.get(drive.url(f"/items/{item['id']}/content"), allow_redirects=False, timeout=10)
    assert redirect.status_code == 302
    location = redirect.headers["Location"]
    assert location.startswith(f"{drive.emulator.url}/graph-download/")

    plain = requests.get(location, timeout=10)  # no Authorization header
    assert plain.status_code == 200
    assert plain.content == data
    with_token = requests.get(location, headers=dict(drive.http.headers), timeout=10)
    assert with_token.status_code == 401
    # requests keeps the header on a same-host redirect: a client that follows it blindly is refused.
    assert drive.http.get(drive.url(f"/items/{item['id']}/content"), timeout=10).status_code == 401
    calls = [c for c in drive.graph.calls if c.path == urlsplit(location).path]
    assert [(c.status, c.authorization) for c in calls] == [(200, False), (401, True)]
    followed = drive.graph.calls[-1]
    assert followed.path.startswith("/graph-download/") and (followed.status, followed.authorization) == (401, True)

    by_path = drive.http.get(drive.url("/root:/HR/Exports/big.csv:/content"), allow_redirects=False, timeout=10)
    assert by_path.status_code == 302
    drive.graph.expire_download_urls()
    assert requests.get(location, timeout=10).status_code == 401
    assert requests.get(by_path.headers["Location"], timeout=10).status_code == 401


def test_download_serves_the_current_content(drive: Drive) -> None:
    item = drive.graph.put_file(drive.drive_id, "HR/Exports/c.csv", b"old")
    location = drive.http.get(drive.url(f"/items/{item['id']}/content"), allow_redirects=False, timeout=10).headers[
        "Location"
    ]
    drive.graph.put_file(drive.drive_id, "HR/Exports/c.csv", b"new!")
    assert requests.get(location, timeout=10).content == b"new!"
    drive.graph.delete_item(drive.drive_id, item["id"])
    assert requests.get(location, timeout=10).status_code == 404


# -- writes ------------------------------------------------------------------------------------------
def test_create_folder_conflict_behaviours(drive: Drive) -> None:
    url = drive.url(f"/items/{drive.folder_id}/children")
    created = drive.http.post(url, json={"name": "Processed", "folder": {}, CONFLICT: "fail"}, timeout=10)
    assert created.status_code == 201
    assert created.json()["parentReference"]["id"] == drive.folder_id
    again = drive.http.post(url, json={"name": "Processed", "folder": {}, CONFLICT: "fail"}, timeout=10)
    assert again.status_code == 409
    assert error_code(again) == "nameAlreadyExists"
    default = drive.http.post(url, json={"name": "processed", "folder": {}}, timeout=10)
    assert default.status_code == 409  # names are case-insensitive, and fail is the default
    renamed = drive.http.post(url, json={"name": "Processed", "folder": {}, CONFLICT: "rename"}, timeout=10)
    assert renamed.status_code == 201 and renamed.json()["name"] == "Processed 1"
    assert set(drive.graph.children(drive.drive_id, "HR/Exports")) == {"Processed", "Processed 1"}
    bad = drive.http.post(url, json={"name": "a:b", "folder": {}}, timeout=10)
    assert bad.status_code == 400


def test_move_honours_if_match_and_conflict_behaviour(drive: Drive) -> None:
    g, d = drive.graph, drive.drive_id
    item = g.put_file(d, "HR/Exports/leavers.csv", b"rows")
    target = g.ensure_folder(d, "HR/Exports/Processed")
    url = drive.url(f"/items/{item['id']}")
    body = {"parentReference": {"id": target}}

    stale = drive.http.patch(url, json=body, headers={"If-Match": '"{0},1"'}, timeout=10)
    assert stale.status_code == 412
    assert error_code(stale) == "resourceModified"  # OneDrive's code for an eTag mismatch
    assert "leavers.csv" in g.children(d, "HR/Exports")  # not moved

    moved = drive.http.patch(url, json=body, headers={"If-Match": item["eTag"]}, timeout=10)
    assert moved.status_code == 200
    assert moved.json()["parentReference"]["id"] == target
    assert moved.json()["eTag"] != item["eTag"] and moved.json()["cTag"] == item["cTag"]
    assert set(g.children(d, "HR/Exports/Processed")) == {"leavers.csv"}
    replay = drive.http.patch(url, json=body, headers={"If-Match": item["eTag"]}, timeout=10)
    assert replay.status_code == 412  # the old eTag no longer matches after the move

    twin = g.put_file(d, "HR/Exports/leavers.csv", b"next month")
    twin_url = drive.url(f"/items/{twin['id']}")
    conflict = drive.http.patch(twin_url, json=body, timeout=10)
    assert conflict.status_code == 409 and error_code(conflict) == "nameAlreadyExists"
    renamed = drive.http.patch(twin_url, params={CONFLICT: "rename"}, json=body, timeout=10)
    assert renamed.status_code == 200 and renamed.json()["name"] == "leavers 1.csv"
    with_name = g.put_file(d, "HR/Exports/third.csv", b"3")
    named = drive.http.patch(
        drive.url(f"/items/{with_name['id']}"),
        json={"parentReference": {"id": target}, "name": "third-2026.csv"},
        timeout=10,
    )
    assert named.status_code == 200
    assert set(g.children(d, "HR/Exports/Processed")) == {"leavers.csv", "leavers 1.csv", "third-2026.csv"}
    gone = g.put_file(d, "HR/Exports/x.csv", b"x")
    g.delete_item(d, gone["id"])
    assert drive.http.patch(drive.url(f"/items/{gone['id']}"), json=body, timeout=10).status_code == 404


def test_move_with_replace_deletes_the_other_item(drive: Drive) -> None:
    g, d = drive.graph, drive.drive_id
    target = g.ensure_folder(d, "HR/Exports/Failed")
    old = g.put_file(d, "HR/Exports/Failed/a.csv", b"old")
    new = g.put_file(d, "HR/Exports/a.csv", b"new")
    response = drive.http.patch(
        drive.url(f"/items/{new['id']}"), params={CONFLICT: "replace"}, json={"parentReference": {"id": target}}
    )
    assert response.status_code == 200
    assert g.children(d, "HR/Exports/Failed")["a.csv"]["id"] == new["id"]
    assert g.item(d, old["id"]) is None


def test_simple_upload_creates_then_replaces(drive: Drive) -> None:
    g, d = drive.graph, drive.drive_id
    url = drive.url(f"/items/{drive.folder_id}:/report.json:/content")
    first = drive.http.put(url, data=b'{"ok": 1}', timeout=10)
    assert first.status_code == 201
    item = first.json()
    assert item["name"] == "report.json" and item["size"] == 9
    assert item["parentReference"]["id"] == drive.folder_id
    assert g.content(d, item["id"]) == b'{"ok": 1}'

    second = drive.http.put(url, data=b'{"ok": 2}', timeout=10)
    assert second.status_code == 200
    assert second.json()["id"] == item["id"]
    assert second.json()["eTag"] != item["eTag"] and second.json()["cTag"] != item["cTag"]
    assert g.content(d, item["id"]) == b'{"ok": 2}'

    fail = drive.http.put(url, params={CONFLICT: "fail"}, data=b"x", timeout=10)
    assert fail.status_code == 409
    rename = drive.http.put(url, params={CONFLICT: "rename"}, data=b"y", timeout=10)
    assert rename.status_code == 201 and rename.json()["name"] == "report 1.json"
    by_root_path = drive.http.put(drive.url("/root:/HR/Exports/Processed/r.csv:/content"), data=b"z", timeout=10)
    assert by_root_path.status_code == 404  # the parent folder must exist
    g.ensure_folder(d, "HR/Exports/Processed")
    streamed = drive.http.put(
        drive.url("/root:/HR/Exports/Processed/s.csv:/content"), data=iter([b"a", b"b"]), timeout=10
    )
    assert streamed.status_code == 411  # a chunked body without a length is refused, not stored empty
    assert "s.csv" not in g.children(d, "HR/Exports/Processed")
    by_root_path = drive.http.put(drive.url("/root:/HR/Exports/Processed/r.csv:/content"), data=b"z", timeout=10)
    assert by_root_path.status_code == 201
    assert g.content(d, by_root_path.json()["id"]) == b"z"


# -- tokens and grants -------------------------------------------------------------------------------
def test_sites_selected_grants(emulator: Emulator, drive: Drive) -> None:
    g = drive.graph
    item = g.put_file(drive.drive_id, "HR/Exports/a.csv", b"a")
    site_url = f"{emulator.url}/v1.0/sites/{drive.site_id}"
    writes: list[tuple[str, str, dict[str, Any]]] = [
        ("POST", drive.url(f"/items/{drive.folder_id}/children"), {"json": {"name": "P", "folder": {}}}),
        ("PATCH", drive.url(f"/items/{item['id']}"), {"json": {"name": "b.csv"}}),
        ("PUT", drive.url(f"/items/{drive.folder_id}:/r.json:/content"), {"data": b"{}"}),
        ("DELETE", drive.url(f"/items/{item['id']}"), {}),
    ]
    reads = [site_url, f"{site_url}/drives", drive.url("/root/delta"), drive.url(f"/items/{item['id']}")]

    client_id = new_identity(emulator)
    http = requests.Session()
    http.headers["Authorization"] = f"Bearer {mi_token(emulator, client_id)}"
    for url in reads:
        denied = http.get(url, timeout=10)
        assert denied.status_code == 403, url
        assert error_code(denied) == "accessDenied"

    other_site = g.add_site("contoso.sharepoint.com", f"/sites/other-{uuid.uuid4().hex[:6]}")
    g.grant_site(client_id, other_site, "write")  # another site's grant does not help
    assert http.get(drive.url("/root/delta"), timeout=10).status_code == 403

    g.grant_site(client_id, drive.site_id, "read")
    assert all(http.get(url, timeout=10).status_code == 200 for url in reads)
    for method, url, kwargs in writes:
        response = http.request(method, url, timeout=10, **kwargs)
        assert response.status_code == 403, (method, url)
        assert error_code(response) == "accessDenied"
    assert set(g.children(drive.drive_id, "HR/Exports")) == {"a.csv"}

    g.grant_site(client_id, drive.site_id, "write")
    assert [http.request(m, u, timeout=10, **kw).status_code for m, u, kw in writes] == [201, 200, 201, 204]


def test_graph_tokens_and_other_tokens_are_not_interchangeable(emulator: Emulator, drive: Drive, job: str) -> None:
    graph_token = mi_token(emulator, drive.client_id)
    emulator.state.vault_readers.add(drive.client_id)
    emulator.state.set_secret("graph-token-test", "value")
    try:
        signals = requests.post(
            f"{emulator.url}/api/signals",
            params={"jobid": job},
            headers={"Authorization": f"Bearer {graph_token}"},
            files={"file": ("a.csv", b"a\n1\n")},
            timeout=10,
        )
        assert signals.status_code == 401
        vault = requests.get(
            f"{emulator.url}/secrets/graph-token-test", headers={"Authorization": f"Bearer {graph_token}"}, timeout=10
        )
        assert vault.status_code == 401
        vault_token = mi_token(emulator, drive.client_id, VAULT_RESOURCE)
        assert (
            requests.get(
                f"{emulator.url}/secrets/graph-token-test",
                headers={"Authorization": f"Bearer {vault_token}"},
                timeout=10,
            ).status_code
            == 200
        )  # the same identity, the right audience
    finally:
        emulator.state.vault_readers.discard(drive.client_id)

    for resource in (DEFAULT_RESOURCE, VAULT_RESOURCE):
        wrong = requests.get(
            drive.url("/root"), headers={"Authorization": f"Bearer {mi_token(emulator, drive.client_id, resource)}"}
        )
        assert wrong.status_code == 401
        assert error_code(wrong) == "InvalidAuthenticationToken"
    assert requests.get(drive.url("/root"), timeout=10).status_code == 401
    assert requests.get(drive.url("/root"), headers={"Authorization": "Bearer forged"}, timeout=10).status_code == 401
    assert drive.http.get(drive.url("/root"), timeout=10).status_code == 200


@pytest.mark.parametrize(
    "audience", ["https://graph.microsoft.com", "https://graph.microsoft.us", "https://dod-graph.microsoft.us"]
)
def test_an_app_gets_graph_tokens_for_each_cloud_from_the_v2_endpoint(
    emulator: Emulator, drive: Drive, audience: str
) -> None:
    response = requests.post(
        f"{emulator.url}/{TENANT}/oauth2/v2.0/token",
        data={
            "grant_type": "client_credentials",
            "client_id": APP_ID,
            "client_secret": SECRET,
            "scope": f"{audience}/.default",
        },
        timeout=10,
    )
    assert response.status_code == 200
    headers = {"Authorization": f"Bearer {response.json()['access_token']}"}
    assert requests.get(drive.url("/root"), headers=headers, timeout=10).status_code == 403  # no grant
    drive.graph.grant_all(APP_ID, "read")  # Files.Read.All: every site
    try:
        assert requests.get(drive.url("/root"), headers=headers, timeout=10).status_code == 200
    finally:
        drive.graph.grants.pop((APP_ID, "*"), None)


# -- the person's side, the request log, admin over HTTP, threads ---------------------------------------
def test_request_log_records_method_and_path(drive: Drive) -> None:
    before = len(drive.graph.requests)
    drive.http.get(drive.url("/root:/HR/Exports"), timeout=10)
    assert drive.graph.requests[before:] == [("GET", f"/v1.0/drives/{drive.drive_id}/root:/HR/Exports")]


def test_admin_endpoints_for_another_process(emulator: Emulator) -> None:
    client_id = new_identity(emulator)
    made = requests.post(
        f"{emulator.url}/admin/graph/sites",
        json={"hostname": "contoso-my.sharepoint.com", "path": f"/personal/jane_{uuid.uuid4().hex[:6]}",
              "library": "Documents", "grants": [{"client_id": client_id, "role": "read"}]},
        timeout=10,
    ).json()  # fmt: skip
    drive_id = made["drive_id"]
    put = requests.post(
        f"{emulator.url}/admin/graph/files",
        json={"drive_id": drive_id, "path": "Drop/x.csv", "content_b64": base64.b64encode(b"a,b\n").decode()},
        timeout=10,
    )
    assert put.status_code == 200
    listing = requests.get(
        f"{emulator.url}/admin/graph/children", params={"drive_id": drive_id, "path": "Drop"}, timeout=10
    ).json()
    assert list(listing) == ["x.csv"]
    assert emulator.state.graph.content(drive_id, listing["x.csv"]["id"]) == b"a,b\n"
    faults = requests.post(f"{emulator.url}/admin/graph/faults", json={"rate_503": 0.5, "seed": 3}, timeout=10)
    assert faults.json()["rate_503"] == 0.5
    assert emulator.state.graph.faults.rate_503 == 0.5
    headers = {"Authorization": f"Bearer {mi_token(emulator, client_id)}"}
    emulator.state.set_graph_faults(rate_503=0)
    root = requests.get(f"{emulator.url}/v1.0/drives/{drive_id}/root:/Drop", headers=headers, timeout=10)
    assert root.status_code == 200
    bad = requests.post(f"{emulator.url}/admin/graph/files", json={"drive_id": drive_id}, timeout=10)
    assert bad.status_code == 400


def test_concurrent_uploads_and_delta_keep_every_item(drive: Drive) -> None:
    barrier = threading.Barrier(8)
    results: list[int] = []

    def upload(n: int) -> None:
        barrier.wait()
        url = drive.url(f"/items/{drive.folder_id}:/c{n}.csv:/content")
        headers = {"Authorization": drive.http.headers["Authorization"]}
        results.append(requests.put(url, data=b"%d" % n, headers=headers, timeout=30).status_code)

    threads = [threading.Thread(target=upload, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [201] * 8
    pages, _ = drive.delta_all()
    names = [i["name"] for page in pages for i in page if i["parentReference"].get("id") == drive.folder_id]
    assert sorted(names) == sorted(f"c{n}.csv" for n in range(8))


def test_the_emulator_command_serves_a_granted_graph_site(tmp_path) -> None:
    """`python -m hrconnector_core.emulator --graph-site ...`: the printed Graph URL, site and identity work."""
    import json
    import os
    import subprocess
    import sys

    from hrconnector_core.emulator.__main__ import DEMO_IDENTITY

    from .conftest import REPO

    cmd = [
        *(sys.executable, "-m", "hrconnector_core.emulator", "--graph-site", "contoso.sharepoint.com/sites/HR"),
        *("--ca-file", str(tmp_path / "ca.pem"), "--data-dir", str(tmp_path / "emu")),
    ]
    env = dict(os.environ) | {"PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stderr is not None
    try:
        info = json.loads(proc.stdout.readline())
        lines: list[str] = []
        while "rows received" not in (line := proc.stderr.readline()):
            assert line, "".join(lines)
            lines.append(line)
        text = "".join(lines)
        assert f"HR_GRAPH_URL={info['graph_url']}" in text
        [site] = info["graph_sites"]
        assert site["site"] == "contoso.sharepoint.com/sites/HR" and site["library"] == "Documents"
        header = next(w.split("=", 1)[1] for w in text.split() if w.startswith("IDENTITY_HEADER="))
        token = requests.get(
            f"{info['url']}/msi/token",
            params={"resource": GRAPH, "client_id": DEMO_IDENTITY},
            headers={"X-IDENTITY-HEADER": header},
            verify=info["ca_file"],
            timeout=10,
        ).json()["access_token"]
        http = requests.Session()
        http.headers["Authorization"] = f"Bearer {token}"
        verify = info["ca_file"]  # per call: requests prefers REQUESTS_CA_BUNDLE over Session.verify
        site_url = f"{info['graph_url']}/v1.0/sites/contoso.sharepoint.com:/sites/HR"
        found = http.get(site_url, verify=verify, timeout=10).json()
        assert found["id"] == site["site_id"]
        dropped = requests.post(
            f"{info['url']}/admin/graph/files",
            json={
                "drive_id": site["drive_id"],
                "path": "Exports/a.csv",
                "content_b64": base64.b64encode(b"a").decode(),
            },
            verify=info["ca_file"],
            timeout=10,
        ).json()
        folder = http.put(
            f"{info['graph_url']}/v1.0/drives/{site['drive_id']}/items/{dropped['parentReference']['id']}:/r.json:/content",
            data=b"{}",
            verify=verify,
            timeout=10,
        )
        assert folder.status_code == 201  # the demo identity may write
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        proc.stdout.close()
        proc.stderr.close()


def test_download_faults_503_and_a_connection_lost_mid_file(drive: Drive) -> None:
    data = b"id\n" + b"12345\n" * 5000
    item = drive.graph.put_file(drive.drive_id, "HR/Exports/cut.csv", data)
    location = drive.http.get(drive.url(f"/items/{item['id']}/content"), allow_redirects=False, timeout=10).headers[
        "Location"
    ]
    drive.graph.fail_next_download(503, retry_after_seconds=2)
    busy = requests.get(location, timeout=10)
    assert busy.status_code == 503 and busy.headers["Retry-After"] == "2"

    drive.graph.cut_next_download(1000)
    received = bytearray()
    with requests.get(location, stream=True, timeout=10) as response, pytest.raises(requests.RequestException):
        assert response.status_code == 200
        for chunk in response.iter_content(256):
            received.extend(chunk)
    assert 0 < len(received) <= 1000  # the client saw part of the body, then the hang-up
    assert data.startswith(bytes(received))

    whole = requests.get(location, timeout=10)
    assert whole.content == data
    assert whole.headers["Content-Type"] == "text/csv"


def test_upload_and_delete_honour_if_match(drive: Drive) -> None:
    g, d = drive.graph, drive.drive_id
    item = g.put_file(d, "HR/Exports/r.json", b"1")
    g.put_file(d, "HR/Exports/r.json", b"2")  # a person saved a new version meanwhile
    url = drive.url(f"/items/{drive.folder_id}:/r.json:/content")
    stale = drive.http.put(url, data=b"3", headers={"If-Match": item["eTag"]}, timeout=10)
    assert stale.status_code == 412
    assert g.content(d, item["id"]) == b"2"
    gone = drive.http.delete(drive.url(f"/items/{item['id']}"), headers={"If-Match": item["eTag"]}, timeout=10)
    assert gone.status_code == 412
    assert g.item(d, item["id"]) is not None
    current = g.item(d, item["id"])
    assert current is not None
    deleted = drive.http.delete(drive.url(f"/items/{item['id']}"), headers={"If-Match": current["eTag"]}, timeout=10)
    assert deleted.status_code == 204
    assert g.item(d, item["id"]) is None


def test_admin_move_delete_and_expire(emulator: Emulator, drive: Drive) -> None:
    g, d = drive.graph, drive.drive_id
    a = g.put_file(d, "HR/Exports/a.csv", b"a")
    b = g.put_file(d, "HR/Exports/b.csv", b"b")
    target = g.ensure_folder(d, "HR/Exports/Processed")
    _, link = drive.delta_all()
    moved = requests.post(
        f"{emulator.url}/admin/graph/move",
        json={"drive_id": d, "item_id": a["id"], "parent_id": target, "name": "a2.csv"},
        timeout=10,
    )
    assert moved.status_code == 200 and moved.json()["name"] == "a2.csv"
    assert (
        requests.post(
            f"{emulator.url}/admin/graph/delete", json={"drive_id": d, "item_id": b["id"]}, timeout=10
        ).status_code
        == 200
    )
    assert set(g.children(d, "HR/Exports")) == {"Processed"}
    assert set(g.children(d, "HR/Exports/Processed")) == {"a2.csv"}
    missing = requests.post(f"{emulator.url}/admin/graph/delete", json={"drive_id": d, "item_id": b["id"]}, timeout=10)
    assert missing.status_code == 404
    expired = requests.post(f"{emulator.url}/admin/graph/expire-delta", json={}, timeout=10)
    assert expired.status_code == 200
    assert drive.http.get(link, timeout=10).status_code == 410
