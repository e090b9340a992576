"""One run per file content and job: the checkpoint is keyed by content, the file state by name
and version, so the content has its own leased lock (hr-state/locks/<id>). Through the registered
blob function against Azurite and the emulator; uploads are held at the network edge."""

from __future__ import annotations

import json
import logging
from collections import Counter
from datetime import timedelta

import pytest

from hrconnector_core.service import HRConnectorService, utc_now
from hrconnector_core.settings import Settings

from . import network_edge
from .conftest import FunctionEnv
from .csvdata import HEADER, csv_bytes, rows
from .test_function_leases import Invocation, invoke, lapse_leases, listing

NAME = "main/same.csv"


def sent(emulator, env: FunctionEnv) -> Counter[tuple[str, ...]]:
    return Counter(tuple(r) for r in emulator.state.rows(env.job))


def sweep(env: FunctionEnv):
    return HRConnectorService(Settings.from_env()).run_schedule(utc_now() + timedelta(hours=1))


def test_a_file_overwritten_with_identical_bytes_mid_upload_sends_each_row_once(emulator, chunked, edge) -> None:
    env = chunked
    data = csv_bytes(HEADER, rows(60))
    env.drop(NAME, data)
    paused = edge.pause(network_edge.is_upload, nth=3)  # version 1 has sent 2 chunks; its 3rd is held
    first = Invocation(env, NAME)
    paused.wait_reached()
    env.drop(NAME, data)  # the HR system exports the same bytes again: a new version (ETag)
    invoke(env, NAME)  # version 2's event while version 1 uploads: it waits, sends nothing
    paused.release()
    first.join()
    assert first.error is None

    got = sent(emulator, env)
    assert len(got) == 60 and max(got.values()) == 1  # every row once
    states = {s.etag: s for s in env.service.files.history(NAME)}
    assert sorted(s.status for s in states.values()) == ["processed", "waiting"]
    (v1,) = [s for s in states.values() if s.status == "processed"]
    assert v1.note and "replaced" in v1.note  # version 1: the report only (its bytes are gone)
    incoming, processed, failed = listing(env)
    assert incoming == [NAME] and failed == []
    assert processed == [f"{v1.destination}.report.json"]

    summary = sweep(env)  # the timer finishes version 2: nothing left to send
    assert summary.failures == [] and [o.status for o in summary.swept] == ["processed"]
    assert sent(emulator, env) == got
    assert all(s.finished for s in env.service.files.history(NAME))
    incoming, processed, failed = listing(env)
    (v2,) = [s for s in env.service.files.history(NAME) if s.etag != v1.etag]
    assert incoming == [] and failed == []
    assert sorted(processed) == sorted([f"{v1.destination}.report.json", v2.destination,
                                        f"{v2.destination}.report.json"])  # fmt: skip
    report = env.read_json(env.settings.containers.processed, f"{v2.destination}.report.json")
    assert report["rows"]["uploaded"] == 0 and report["rows"]["previously_uploaded"] == 60


def test_two_names_with_the_same_bytes_at_once_send_each_row_once(emulator, chunked, edge) -> None:
    env = chunked
    data = csv_bytes(HEADER, rows(40))
    env.drop("main/a.csv", data)
    env.drop("main/b.csv", data)
    paused = edge.pause(network_edge.is_upload, nth=1)  # a.csv's first chunk is held
    a = Invocation(env, "main/a.csv")
    paused.wait_reached()
    invoke(env, "main/b.csv")  # another instance: the same content is busy, so it sends nothing
    assert [s.status for s in env.service.files.history("main/b.csv")] == ["waiting"]
    paused.release()
    a.join()
    assert a.error is None
    got = sent(emulator, env)
    assert len(got) == 40 and max(got.values()) == 1
    incoming, _, _ = listing(env)
    assert incoming == ["main/b.csv"]

    summary = sweep(env)
    assert summary.failures == [] and [(o.status, o.blob) for o in summary.swept] == [("processed", "main/b.csv")]
    assert sent(emulator, env) == got  # still each row once
    incoming, processed, failed = listing(env)
    assert incoming == [] and failed == [] and len(processed) == 4  # two copies, two reports


def test_a_waiting_version_replaced_before_the_sweep_is_closed_with_what_its_content_sent(
    emulator, chunked, edge
) -> None:
    """Version 2 (the same bytes) waits while version 1 uploads; the HR system then replaces the
    file before the sweep reaches version 2. Its bytes are gone: the sweep closes it with a report
    from the content checkpoint its state names, which version 1 finished (every row accepted)."""
    env = chunked
    data = csv_bytes(HEADER, rows(60))
    env.drop(NAME, data)
    paused = edge.pause(network_edge.is_upload, nth=3)
    first = Invocation(env, NAME)
    paused.wait_reached()
    env.drop(NAME, data)
    invoke(env, NAME)  # version 2 waits: nothing sent
    paused.release()
    first.join()
    (v2,) = [s for s in env.service.files.history(NAME) if s.status == "waiting"]
    assert v2.checkpoint  # named while waiting: the content's checkpoint

    env.drop(NAME, csv_bytes(HEADER, rows(10, start=100)))  # replaced before the sweep
    invoke(env, NAME)
    summary = sweep(env)
    assert summary.failures == [] and [o.status for o in summary.swept] == ["replaced"]
    closed = env.service.files.get(NAME, v2.etag)
    assert closed is not None and closed.status == "failed" and closed.report
    report = json.loads(env.service.failed.get_blob_client(closed.report.partition("/")[2]).download_blob().readall())
    assert report["status"] == "replaced" and report["rows"]["balanced"]
    assert (report["rows"]["in"], report["rows"]["uploaded"], report["rows"]["rejected"]) == (60, 60, 0)
    got = sent(emulator, env)
    assert len(got) == 70 and max(got.values()) == 1  # version 1's rows and the new version's, each once


@pytest.mark.parametrize("checkpoint", ["kept", "damaged"])
def test_a_version_left_unfinished_and_then_replaced_is_closed_by_the_sweep(
    emulator, chunked, edge, caplog, checkpoint: str
) -> None:
    """A run loses its lease (a storage outage: here the real Break Lease calls) and stops quietly;
    the name is then overwritten. The old version cannot be read any more: the sweep closes its state
    with a note and a report of the rows the service accepted of it (its three chunks) instead of
    leaving it `processing` for ever, and sends nothing for it. A damaged checkpoint does not keep
    it open: the report says what is not known."""
    env = chunked
    env.drop(NAME, csv_bytes(HEADER, rows(60)))
    paused = edge.pause(network_edge.is_upload, nth=3)
    first = Invocation(env, NAME)
    paused.wait_reached()
    lapse_leases(env, NAME)
    paused.release()
    first.join()
    assert first.error is None
    lost = [r for r in caplog.records if "this run stops and leaves the file" in r.getMessage()]
    assert lost and all(r.levelno == logging.WARNING for r in lost)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR and r.name.startswith("hrconnector_core")]
    (old,) = env.service.files.history(NAME)
    assert old.status == "processing"

    env.drop(NAME, csv_bytes(HEADER, rows(10, start=100)))  # the HR system replaces the file
    invoke(env, NAME)
    before = emulator.state.rows(env.job)
    assert len(before) == 30 + 10  # 3 chunks of the old version, then the new one

    if checkpoint == "damaged":
        env.service.state.upload_blob(f"checkpoints/{old.checkpoint}.json", b"{garbled", overwrite=True)
    summary = sweep(env)
    assert summary.failures == [] and [(o.status, o.blob) for o in summary.swept] == [("replaced", NAME)]
    assert emulator.state.rows(env.job) == before
    states = {s.etag: s for s in env.service.files.history(NAME)}
    assert states[old.etag].status == "failed" and states[old.etag].note
    assert all(s.finished for s in states.values())
    incoming, processed, failed = listing(env)
    assert incoming == [] and len(processed) == 2  # the new version and its report
    assert failed == [f"{states[old.etag].destination}.report.json"]  # the old version's report alone
    report = json.loads(env.service.failed.get_blob_client(failed[0]).download_blob().readall())
    accepted = 30 if checkpoint == "kept" else 0
    assert (report["status"], report["rows"]["uploaded"], report["rows"]["in"]) == ("replaced", accepted, accepted)
    assert checkpoint == "kept" or "is not known" in " ".join(report["notes"])
    assert states[old.etag].report == f"{env.settings.containers.failed}/{failed[0]}"
    assert sweep(env).swept == []  # closed once
