"""A checkpoint names chunks by index, so it may only be reused by the same chunk plan."""

from __future__ import annotations

from hrconnector_core.checkpoint import Checkpoint, LocalCheckpointStore
from hrconnector_core.pipeline import (
    LocalFileSource,
    UploadOptions,
    checkpoint_key,
    default_mapping,
    inspect,
    run_upload,
)

from .csvdata import HEADER, rows, write_csv


def test_a_rerun_with_another_chunk_size_does_not_skip_by_the_old_plan(tmp_path, emulator, job, make_client):
    """A run of 7-record chunks died after two (rows 2-15 sent). Rerun with 10-record chunks:
    skipping the new plan's chunks 0 and 1 would skip rows 2-21, and rows 16-21 would never be
    sent; sending the whole file would send rows 2-15 twice. A different chunk size is a different
    plan: the rerun is refused, nothing is sent, and the message names both plans."""
    data = rows(30)
    path = write_csv(tmp_path / "hr.csv", HEADER, data)
    store = LocalCheckpointStore(tmp_path / "state")
    facts, mapping = inspect(LocalFileSource(path)), default_mapping(HEADER)
    old_plan = checkpoint_key(facts, UploadOptions(job_id=job, records_per_call=7), mapping)
    store.save(Checkpoint(old_plan, {0: 7, 1: 7}))

    report = run_upload(
        LocalFileSource(path), UploadOptions(job_id=job, records_per_call=10), client=make_client(job), store=store
    )

    assert report.status == "failed"
    assert report.rows.uploaded == report.rows.previously_uploaded == 0
    assert report.error is not None and "7 records per call" in report.error and "now 10 records" in report.error
    assert emulator.state.rows(job) == []
    assert store.load(old_plan) == Checkpoint(old_plan, {0: 7, 1: 7})  # the old plan's record is left alone
