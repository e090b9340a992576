"""Do the tests fail when the code is wrong? A curated list of semantic mutations, one at a time.

Each mutation is a small, deliberate bug of the kind that matters here (a skipped checkpoint
mark, a doubled send, a dropped last chunk, a permanent error retried, an HR value logged, a
no-op lease, a write without its ETag condition ...), written as (file, exact old text, new
text, the tests that must catch it). The script copies the working tree to a temporary
directory (the live tree is never touched), applies each mutation there alone, runs its tests
with -x and a time limit, restores the file, and prints a caught/survived table. The chosen
mutations' tests first run once unmutated and must pass; a mutation counts as caught only when
a test fails (an assertion, read from pytest's junit XML), never when a test errors or times out.

It exits non-zero when a mutation survives, when its tests error out instead of failing (a
mutation that breaks the import proves nothing), or when its old text is no longer in the code
exactly once: the list has to be kept in step with the code.

    .venv/bin/python scripts/mutation_check.py             # everything (about 15 minutes)
    .venv/bin/python scripts/mutation_check.py --only pipeline --only lease
    .venv/bin/python scripts/mutation_check.py --list
    .venv/bin/python scripts/mutation_check.py --check     # seconds: is the list still in step?

Not part of the test suite: it runs the relevant tests about fifty times.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
LINKED = (".venv", ".venv-infra", "node_modules")  # big, unchanged by mutations: linked, not copied


@dataclass(frozen=True)
class Mutation:
    name: str
    file: str
    old: str
    new: str
    tests: tuple[str, ...]
    why: str = ""  # what would go wrong in production


F = "tests/test_function.py::"
# The Function's whole story: its own tests and (when present) the lease, race and schedule ones.
FUNCTION = (
    "tests/test_function.py",
    "tests/test_function_leases.py",
    "tests/test_function_races.py",
    "tests/test_function_schedule.py",
)
STATE = ("tests/test_upload.py", "tests/test_integrity_state.py")  # checkpoints and their failures
U = "tests/test_upload.py::"
CLI = "tests/test_cli.py::"
V = "tests/test_validation.py::"
I = "tests/test_ingestion.py::"  # noqa: E741 - a prefix, like the others
LEAKS = "tests/test_no_leaks.py"
IS = "tests/test_integrity_state.py::"
G = "tests/test_mutation_guards.py::"  # tests written for mutations that survived
GS = "tests/test_graph_source.py::"

MUTATIONS: list[Mutation] = [
    # -- service: the ten the audit found surviving (four here) ---------------------------------
    Mutation(
        "service: a file counts as uploaded when any row was",
        "hrconnector_core/service.py",
        "uploaded_all = not report.error and report.rows.not_uploaded == 0",
        "uploaded_all = report.rows.uploaded > 0",
        FUNCTION,
        "a run that fails partway is moved to hr-processed and reported as a success",
    ),
    Mutation(
        "service: a lost lease is ignored",
        # The service asks the claim before every chunk and before it writes or moves anything;
        # since issue 11 the "lost" test lives in FileClaim.check, so the bug is that it never says so.
        "hrconnector_core/blobstore.py",
        '        if not self._renew():\n            raise LeaseLostError(f"the lease on {self._what}',
        '        if not self._renew() and False:\n            raise LeaseLostError(f"the lease on {self._what}',
        FUNCTION,
        "a paused run finishes a file another run has taken over",
    ),
    Mutation(
        "service: a version's state never names its content checkpoint",
        "hrconnector_core/service.py",
        "        checkpoints.on_lock = lambda: _name_checkpoint(claim, checkpoints)\n",
        "        checkpoints.on_lock = None\n",
        ("tests/test_function_content_lock.py", "tests/test_fault_campaign.py"),
        "a version replaced after its run lost the lease is closed with a report that counts none of its rows",
    ),
    Mutation(
        "service: a version recorded late replaces a newer export's record",
        "hrconnector_core/service.py",
        "            if unless_after is not None and str(",
        "            if False and str(",
        ("tests/test_function_state_faults.py", "tests/test_review15c.py"),
        "the profile refresh sends an older export's values again after the sweep closed a version late",
    ),
    Mutation(
        "service: the profile clock starts when the file is recorded, not at its first accepted chunk",
        "hrconnector_core/service.py",
        "                first = _no_later(report.accepted_at, now)\n",
        "                first = None\n",
        ("tests/test_function_state_faults.py", "tests/test_review15c.py"),
        "an export whose rows were sent by an earlier run is sent again at the next timer run",
    ),
    Mutation(
        "service: no finished-state guard",
        "hrconnector_core/service.py",
        "                if claim.state.finished:\n",
        "                if False:\n",
        FUNCTION,
        "a redelivered event reprocesses a finished file that is still there",
    ),
    Mutation(
        "service: the sweep reprocesses finished files",
        "hrconnector_core/service.py",
        "            if state is not None and state.finished:\n                continue\n",
        "",
        FUNCTION,
        "every timer run re-examines (and may resend) finished files",
    ),
    # -- service: more ------------------------------------------------------------------------
    Mutation(
        "service: a failed file goes to hr-processed",
        "hrconnector_core/service.py",
        "target = self.processed if uploaded_all else self.failed",
        "target = self.processed",
        (F + "test_service_refusal_moves_the_file_to_failed_with_the_reason",),
    ),
    Mutation(
        "service: the report stored in place of the file",
        "hrconnector_core/service.py",
        "        copy_verified(blob, state.etag, target.get_blob_client(state.destination), int(props.size))\n",
        '        write_text(target, state.destination, report_json, "application/json")\n',
        (F + "test_unknown_connector_folder_is_kept_in_failed",),
        "the admin finds a report where the HR file should be, and the source is deleted",
    ),
    Mutation(
        "service: the source is never deleted",
        "hrconnector_core/service.py",
        "        if not delete_if_unchanged(blob, state.etag):\n",
        "        if False:\n",
        (F + "test_a_dropped_file_is_uploaded_reported_and_moved",),
    ),
    Mutation(
        "service: rejected rows are not kept",
        "hrconnector_core/service.py",
        "if report.rows.rejected and rejected.exists():",
        "if False:",
        (F + "test_rejected_rows_go_to_the_reports_container",),
    ),
    Mutation(
        "service: profiles refreshed half as often",
        "hrconnector_core/service.py",
        "if since < timedelta(days=self.settings.profile_refresh_days):",
        "if since < timedelta(days=self.settings.profile_refresh_days * 2):",
        (F + "test_profile_refresh_stale_export_warning_and_retention",),
        "employee profiles expire in the connector",
    ),
    Mutation(
        "service: retention deletes the file profiles refresh from",
        "hrconnector_core/service.py",
        "if item.last_modified >= cutoff or (container is self.processed and item.name in keep):",
        "if item.last_modified >= cutoff:",
        (F + "test_profile_refresh_stale_export_warning_and_retention",),
    ),
    # -- blobstore ---------------------------------------------------------------------------
    Mutation(
        "blobstore: the lease is never renewed",
        "hrconnector_core/blobstore.py",
        "                    self._lease.renew(retry_total=0, timeout=5, connection_timeout=5, read_timeout=10)\n",
        "                    pass\n",
        FUNCTION,
        "a long upload loses its lease and a second run starts on the same file",
    ),
    Mutation(
        "blobstore: no size check after the copy",
        "hrconnector_core/blobstore.py",
        'if props.copy.status not in (None, "success") or props.size != size:',
        'if props.copy.status not in (None, "success"):',
        FUNCTION,
        "a short copy is accepted and the original deleted",
    ),
    Mutation(
        "blobstore: state and checkpoints written without their ETag condition",
        "hrconnector_core/blobstore.py",
        "                    etag=etag,\n                    match_condition=MatchConditions.IfNotModified,\n"
        "                    lease=lease,\n                    metadata=metadata,",
        "                    lease=lease,\n                    metadata=metadata,",
        FUNCTION,
        "a run that lost its lease overwrites the newer run's checkpoint",
    ),
    Mutation(
        "blobstore: a busy file's lease is broken and taken (no-op lease)",
        "hrconnector_core/blobstore.py",
        "            if exc.status_code == 409:  # LeaseAlreadyPresent\n                return None\n",
        "            if exc.status_code == 409:  # LeaseAlreadyPresent\n"
        "                held = self._blobs.container.get_blob_client(name)\n"
        "                BlobLeaseClient(held).break_lease(lease_break_period=0)\n"
        "                lease = held.acquire_lease(\n"
        "                    lease_duration=self.lease_seconds\n"
        "                )\n",
        (F + "test_two_concurrent_invocations_upload_once",),
        "two invocations upload the same file",
    ),
    Mutation(
        "blobstore: the source is read at any version",
        "hrconnector_core/blobstore.py",
        "downloader = self.blob.download_blob(etag=self.etag, match_condition=MatchConditions.IfNotModified)",
        "downloader = self.blob.download_blob()",
        # The Function's tests do not see it: the block digests catch a change mid-read anyway.
        (G + "test_a_replaced_file_is_not_read_at_its_new_version", *FUNCTION),
        "a file replaced mid-run is uploaded as a mix of two versions",
    ),
    Mutation(
        "blobstore: the source is deleted at any version",
        "hrconnector_core/blobstore.py",
        "blob.delete_blob(etag=etag, match_condition=MatchConditions.IfNotModified)",
        "blob.delete_blob()",
        (G + "test_a_replaced_file_is_not_deleted_by_the_run_of_its_old_version", *FUNCTION),
        "a new version dropped during a run is deleted unprocessed",
    ),
    Mutation(
        "blobstore: a new state overwrites an existing one",
        "hrconnector_core/blobstore.py",
        "result = blob.upload_blob(body, overwrite=False, lease=lease, metadata=metadata)",
        "result = blob.upload_blob(body, overwrite=True, lease=lease, metadata=metadata)",
        FUNCTION,
        "a redelivered event resets a finished file's state and processes it again",
    ),
    # -- pipeline ----------------------------------------------------------------------------
    Mutation(
        "pipeline: a checkpoint write error is ignored",
        "hrconnector_core/pipeline.py",
        '            reason = str(exc) if isinstance(exc, HRConnectorError) else f"{type(exc).__name__}: {exc}"\n'
        '            status = "uploaded-not-recorded"\n'
        "            with self._report._lock:\n"
        "                self._unrecorded.append((chunk, reason))\n"
        "            self._fail(CheckpointError(reason))\n",
        "            pass\n",
        (
            IS + "test_a_checkpoint_write_that_fails_mid_run_stops_the_run_and_counts_what_was_accepted",
            *STATE,
            "tests/test_cli.py",
            *FUNCTION,
        ),
        "the run reports success with a checkpoint that does not know the chunks were sent",
    ),
    Mutation(
        "pipeline: accepted chunks are not marked",
        "hrconnector_core/pipeline.py",
        "            self._recorder.mark_done(chunk.index, chunk.record_count, chunk_digest(chunk.data))\n",
        "            pass\n",
        (U + "test_a_finished_file_is_not_sent_again_unless_forced",),
        "a rerun sends the whole file again",
    ),
    Mutation(
        "pipeline: a chunk marked done before the service has it",
        "hrconnector_core/pipeline.py",
        "        try:\n            result = self._client.upload(chunk)\n",
        "        self._recorder.mark_done(chunk.index, chunk.record_count, chunk_digest(chunk.data))\n"
        "        try:\n            result = self._client.upload(chunk)\n",
        ("tests/test_fault_campaign.py::test_a_fixed_seed_slice_of_the_campaign_loses_and_doubles_nothing",),
        "a run killed with chunks in flight: the rerun skips chunks the service never received (rows lost)",
    ),
    Mutation(
        "pipeline: every chunk sent twice",
        "hrconnector_core/pipeline.py",
        "            result = self._client.upload(chunk)\n",
        "            self._client.upload(chunk)\n            result = self._client.upload(chunk)\n",
        (U + "test_every_row_arrives_once_in_chunks_with_the_header",),
    ),
    Mutation(
        "pipeline: checkpointed chunks are sent again",
        "hrconnector_core/pipeline.py",
        "        if self._recorder.is_done(chunk.index):\n",
        "        if False:\n",
        (U + "test_a_resumed_run_sends_only_the_missing_chunks",),
    ),
    Mutation(
        "pipeline: uploads go on after a permanent failure",
        "hrconnector_core/pipeline.py",
        "            self._fail(error)\n            upload_error = error if",
        "            self.error = self.error or error  # recorded, but nothing stops\n"
        "            upload_error = error if",
        (U + "test_a_permanent_403_stops_at_once_with_the_services_reason",),
        "after a 403 every remaining chunk is sent (and refused) anyway",
    ),
    Mutation(
        "pipeline: --force does not forget the checkpoint",
        "hrconnector_core/pipeline.py",
        "    if checkpoint is not None and options.force:\n        if not options.dry_run:\n",
        "    if False:\n        if not options.dry_run:\n",
        (U + "test_a_finished_file_is_not_sent_again_unless_forced",),
    ),
    Mutation(
        "pipeline: the checkpoint key ignores the chunk size",
        "hrconnector_core/pipeline.py",
        "return CheckpointKey(content_id(facts, options), options.job_id, options.records_per_call, plan)",
        "return CheckpointKey(content_id(facts, options), options.job_id, 0, plan)",
        ("tests/test_checkpoint_plan.py",),
        "a rerun with another chunk size skips chunks by the old plan's indexes: rows lost",
    ),
    Mutation(
        "pipeline: the end of each chunk logged at DEBUG (an HR value leak)",
        "hrconnector_core/pipeline.py",
        '        chunk_log.info(\n            "chunk %d uploaded: rows %d-%d, %d records, %d attempt(s)",\n',
        '        log.debug("chunk %d ends with %r", chunk.index, chunk.data[-30:])\n'
        '        chunk_log.info(\n            "chunk %d uploaded: rows %d-%d, %d records, %d attempt(s)",\n',
        (LEAKS,),
        "remarks, ratings or names in Application Insights",
    ),
    # -- ingestion ---------------------------------------------------------------------------
    Mutation(
        "ingestion: permanent errors retried",
        "hrconnector_core/ingestion.py",
        "                if status not in RETRYABLE_STATUS:\n",
        "                if status not in RETRYABLE_STATUS | {400, 403}:\n",
        (U + "test_a_permanent_403_stops_at_once_with_the_services_reason",),
        "a wrong job id is retried for ten minutes",
    ),
    Mutation(
        "ingestion: any answer below 500 counts as accepted",
        "hrconnector_core/ingestion.py",
        "if 200 <= status < 300:",
        "if 200 <= status < 500:",
        (U + "test_a_permanent_403_stops_at_once_with_the_services_reason",),
    ),
    Mutation(
        "ingestion: Retry-After ignored",
        "hrconnector_core/ingestion.py",
        "wait = policy.backoff(number, self._rng) if retry_after is None else retry_after",
        "wait = policy.backoff(number, self._rng)",
        (
            I + "test_the_total_time_bound_stops_retries_before_the_attempt_bound",
            "tests/test_integrity_http.py::test_retry_after_within_the_budget_is_honoured_in_full",
        ),
    ),
    Mutation(
        "ingestion: one attempt more than the bound",
        "hrconnector_core/ingestion.py",
        "if number >= policy.max_attempts or over_budget:",
        "if number > policy.max_attempts or over_budget:",
        (I + "test_persistent_503_gives_up_after_the_attempt_bound",),
    ),
    Mutation(
        "ingestion: no total time bound",
        "hrconnector_core/ingestion.py",
        "if number >= policy.max_attempts or over_budget:",
        "if number >= policy.max_attempts:",
        (I + "test_the_total_time_bound_stops_retries_before_the_attempt_bound",),
    ),
    Mutation(
        "ingestion: a refused token is not replaced",
        "hrconnector_core/ingestion.py",
        "if status == 401 and not refreshed_token:",
        "if False:",
        (I + "test_a_revoked_token_is_replaced_once",),
    ),
    Mutation(
        "ingestion: 429 and 503 are permanent",
        "hrconnector_core/ingestion.py",
        "RETRYABLE_STATUS = frozenset({408, 429, 500, 502, 503, 504})",
        "RETRYABLE_STATUS = frozenset({408, 500, 502, 504})",
        (U + "test_faults_are_survived_with_no_row_lost_or_doubled",),
    ),
    Mutation(
        "ingestion: backoff without jitter",
        "hrconnector_core/ingestion.py",
        "return rng.uniform(0, min(self.max_delay, self.base_delay * 2 ** (attempt - 1)))",
        "return min(self.max_delay, self.base_delay * 2 ** (attempt - 1))",
        (I + "test_backoff_is_jittered_and_capped",),
        "every client retries in lockstep",
    ),
    # -- credentials ---------------------------------------------------------------------------
    Mutation(
        "credentials: the Key Vault cache ignores its maximum age",
        "hrconnector_core/credentials.py",
        "if refresh or self._value is None or self._clock() - self._read_at >= self._max_age:",
        "if refresh or self._value is None:",
        ("tests/test_credentials.py",),
        "a rotated secret is picked up only after Entra refuses the old one",
    ),
    Mutation(
        "credentials: a refused vault secret is not re-read",
        "hrconnector_core/credentials.py",
        "            fresh = self._material.get(refresh=True)\n",
        "            fresh = self._material.get()\n",
        (F + "test_a_rotated_key_vault_secret_is_used_without_a_restart",),
    ),
    Mutation(
        "credentials: a token used past its expiry",
        "hrconnector_core/credentials.py",
        "if self._token is None or self._token.expires_on - self._margin <= self._clock():",
        "if self._token is None:",
        (I + "test_token_is_reused_until_near_expiry",),
    ),
    Mutation(
        "credentials: a new token for every chunk",
        "hrconnector_core/credentials.py",
        "if self._token is None or self._token.expires_on - self._margin <= self._clock():",
        "if True:",
        (U + "test_every_row_arrives_once_in_chunks_with_the_header",),
    ),
    Mutation(
        "credentials: a revoked token is not forgotten",
        "hrconnector_core/credentials.py",
        "            if self._token is not None and self._token.token == token:\n                self._token = None\n",
        "            pass\n",
        (I + "test_a_revoked_token_is_replaced_once",),
    ),
    # -- checkpoint ----------------------------------------------------------------------------
    Mutation(
        "checkpoint: no fsync before the rename",
        "hrconnector_core/checkpoint.py",
        "                os.fsync(handle.fileno())  # the bytes are on disk before the name points at them\n",
        "                pass\n",
        (IS + "test_a_saved_checkpoint_survives_a_power_cut", *STATE),
        "after a power cut the renamed checkpoint may be empty",
    ),
    Mutation(
        "checkpoint: completed chunks not read back",
        "hrconnector_core/checkpoint.py",
        'completed = {int(i): int(n) for i, n in _mapping(data.get("completed", {})).items()}',
        "completed: dict[int, int] = {}",
        (U + "test_a_resumed_run_sends_only_the_missing_chunks",),
    ),
    Mutation(
        "checkpoint: a chunk marked in memory only",
        "hrconnector_core/checkpoint.py",
        "                self.checkpoint.digests[index] = digest\n"
        "            if self._store is not None:\n"
        "                self._store.save(self.checkpoint)\n",
        "                self.checkpoint.digests[index] = digest\n",
        (CLI + "test_a_run_killed_mid_file_resumes_with_only_the_missing_chunks",),
        "a crash resends everything sent before it",
    ),
    # -- chunking ------------------------------------------------------------------------------
    Mutation(
        "chunking: the last, partial chunk dropped",
        "hrconnector_core/chunking.py",
        "    while batch := list(islice(rows, records_per_call)):\n",
        "    while len(batch := list(islice(rows, records_per_call))) == records_per_call:\n",
        ("tests/test_chunking.py",),
    ),
    Mutation(
        "chunking: fields needing quotes written unquoted",
        "hrconnector_core/chunking.py",
        'if line.count(",") == commas and \'"\' not in line and "\\n" not in line and "\\r" not in line:',
        'if line.count(",") == commas:',
        ("tests/test_chunking.py",),
    ),
    Mutation(
        "chunking: last row number off by one",
        "hrconnector_core/chunking.py",
        "yield Chunk(index, batch[0][0], batch[-1][0], len(batch), data)",
        "yield Chunk(index, batch[0][0], batch[-1][0] + 1, len(batch), data)",
        ("tests/test_chunking.py",),
    ),
    Mutation(
        "chunking: chunk indexes skip",
        "hrconnector_core/chunking.py",
        "        index += 1\n",
        "        index += 2\n",
        ("tests/test_chunking.py",),
        "checkpoint indexes no longer name the same chunks",
    ),
    # -- validation ----------------------------------------------------------------------------
    Mutation(
        "validation: any e-mail accepted on the detailed path",
        "hrconnector_core/validation.py",
        "                if _EMAIL(value):\n",
        "                if True:\n",
        (V + "test_email_address_syntax",),
    ),
    Mutation(
        "validation: empty required values accepted",
        "hrconnector_core/validation.py",
        "                if required:\n                    errors.append(",
        "                if False:\n                    errors.append(",
        (V + "test_required_value_empty",),
    ),
    Mutation(
        "validation: extra fields silently cut off",
        "hrconnector_core/validation.py",
        "            if any(f.strip() for f in fields[width:]):\n",
        "            if False:\n",
        ("tests/test_chunking.py", V[:-2]),
    ),
    Mutation(
        "validation: length limit one too long on the fast path",
        "hrconnector_core/validation.py",
        'piece = f"[^{_TEXT_CONTROL}]{{0,{check.max_length}}}"',
        'piece = f"[^{_TEXT_CONTROL}]{{0,{check.max_length + 1}}}"',
        (V + "test_length_limits", "tests/test_validation_fastpath.py"),
    ),
    Mutation(
        "validation: duplicates never reported",
        "hrconnector_core/validation.py",
        "                if first != row:\n",
        "                if False:\n",
        (V + "test_duplicate_rows_are_a_warning_naming_the_first",),
    ),
    Mutation(
        "validation: a date not in the mapping's format passes as it is",
        "hrconnector_core/validation.py",
        "                    converted = _convert_date(value.strip(), fmt)\n",
        "                    converted = _convert_date(value.strip(), fmt) or value\n",
        (CLI + "test_validate_with_a_mapping_file",),
    ),
    Mutation(
        "validation: a date hint for a prefix match",
        "hrconnector_core/validation.py",
        "        if pattern.fullmatch(value):\n",
        "        if pattern.match(value):\n",
        (V + "test_other_date_formats_fail_with_a_hint_and_without_the_value",),
        "a wrong hint sends the admin after the wrong fix",
    ),
    Mutation(
        "validation: a date hint guessed when nothing fits",
        "hrconnector_core/validation.py",
        '            return f"; it looks like {looks_like}"\n    return ""\n',
        '            return f"; it looks like {looks_like}"\n    return "; it looks like a date in a local format"\n',
        (V + "test_other_date_formats_fail_with_a_hint_and_without_the_value",),
    ),
    Mutation(
        "validation: a too-long value quoted in its message (leak)",
        "hrconnector_core/validation.py",
        'f"{len(value)} characters; the limit is {check.max_length}"',
        'f"{len(value)} characters; the limit is {check.max_length}: {value}"',
        (V + "test_length_limits",),
    ),
    Mutation(
        "validation: a bad date quoted in its message (leak)",
        "hrconnector_core/validation.py",
        'message = f"not ISO 8601 ({DATE_FORMAT_HINT}){date_hint(trimmed, check.column)}"',
        'message = f"not ISO 8601 ({DATE_FORMAT_HINT}){date_hint(trimmed, check.column)}: {trimmed}"',
        (LEAKS, V + "test_other_date_formats_fail_with_a_hint_and_without_the_value"),
    ),
    # -- csvreader -----------------------------------------------------------------------------
    Mutation(
        "csvreader: blank lines dropped without being counted",
        "hrconnector_core/csvreader.py",
        "            for fields in self._reader:\n                row += 1\n",
        "            for fields in self._reader:\n                if not fields:\n                    continue\n"
        "                row += 1\n",
        (
            "tests/test_formats.py::test_random_bytes_never_raise",
            "tests/test_formats.py::test_mangled_csv_never_raises_and_always_balances",
        ),
        "rows vanish from the accounting and the row numbers shift",
    ),
    Mutation(
        "csvreader: always a comma",
        "hrconnector_core/csvreader.py",
        '    best = max(DELIMITERS, key=lambda d: (counts[d], d == ","))\n',
        '    best = ","\n',
        ("tests/test_formats.py",),
    ),
    Mutation(
        "csvreader: bytes undefined in Windows-1252 accepted",
        "hrconnector_core/csvreader.py",
        "        if cp1252_ok and _CP1252_UNDEFINED.search(block):\n",
        "        if False:\n",
        (V + "test_no_data_rows_and_an_unreadable_encoding_are_file_errors",),
    ),
    Mutation(
        "csvreader: a UTF-8 BOM kept in the first column name",
        "hrconnector_core/csvreader.py",
        '        return "utf-8-sig"\n',
        '        return "utf-8"\n',
        ("tests/test_chunking.py", "tests/test_formats.py"),
    ),
    # -- integrity (issue 10): block digests, chunk digests, locks, redirects, https, redaction --
    Mutation(
        "pipeline: the block digest check skipped while the file is read",
        "hrconnector_core/pipeline.py",
        "        if (block or expected is not None) and "
        "(expected is None or hashlib.sha256(block).digest() != expected):\n",
        "        if False:\n",
        (
            IS + "test_a_file_changed_between_the_hash_pass_and_the_read_pass_sends_nothing_past_the_change",
            "tests/test_integrity_state.py",
        ),
        "a file rewritten between the hash pass and the upload is sent as a mix of two versions",
    ),
    # Equivalent, so not listed: skipping the same comparison in _ChunkUploader.handle (`if
    # self._recorder.accepted_digest(...) == chunk_digest(...)` -> `if True`). It is a second line
    # of defence that cannot fire while _verify_skipped_chunks has passed: both passes read bytes
    # verified against the same block digests and make the chunks with the same format, mapping
    # and size, so the chunks handle() skips are those already compared. It survived the full run.
    Mutation(
        "pipeline: a resumed chunk is not compared with the one the service accepted",
        "hrconnector_core/pipeline.py",
        "            if chunk.index in checkpoint.completed and "
        "checkpoint.digests.get(chunk.index) != chunk_digest(chunk.data):\n",
        "            if False:\n",
        (
            IS + "test_resume_sends_nothing_when_a_chunk_it_would_skip_is_not_the_one_the_service_accepted",
            "tests/test_integrity_state.py",
        ),
        "a file read differently on resume skips rows the service never got",
    ),
    Mutation(
        "pipeline: the checkpoint lock is not taken",
        "hrconnector_core/pipeline.py",
        "    return store.lock(key)  # type: ignore[no-any-return]\n",
        "    return nullcontext()\n",
        (
            IS + "test_cli_a_second_run_of_the_same_file_and_job_exits_while_the_first_uploads",
            "tests/test_integrity_state.py",
        ),
        "two runs of one file upload it at once: rows doubled",
    ),
    Mutation(
        "ingestion: redirects followed",
        "hrconnector_core/ingestion.py",
        "            allow_redirects=False,",
        "            allow_redirects=True,",
        (
            "tests/test_integrity_http.py::test_redirects_are_permanent_errors_and_no_row_goes_anywhere_else",
            "tests/test_integrity_http.py",
        ),
        "a 3xx sends HR rows (and the token) to another host",
    ),
    Mutation(
        "clouds: plain http accepted for any host",
        "hrconnector_core/clouds.py",
        '    if scheme == "http" and not (loopback_http and _is_loopback(host)):\n',
        "    if False:\n",
        ("tests/test_integrity_http.py",),
        "secrets and HR data sent in clear",
    ),
    Mutation(
        "ingestion: redact returns its input",
        "hrconnector_core/ingestion.py",
        '    if not text:\n        return ""\n    values = _Values(chunk_data)\n',
        '    return text or ""\n    values = _Values(chunk_data)\n',
        ("tests/test_integrity_http.py", LEAKS),
        "an echoing endpoint puts row values into reports and logs",
    ),
    # -- the SharePoint/OneDrive source ---------------------------------------------------------
    Mutation(
        "graph source: no file-history check before copying",
        "hrconnector_core/graphsource.py",
        "        return bool(self.files.history(blob_name))",
        "        return False",
        (GS + "test_a_crash_between_the_copy_and_its_record_copies_nothing_twice",),
        "a crash between the copy and its record sends the file a second time once it was processed",
    ),
    Mutation(
        "graph source: no record check",
        "hrconnector_core/graphsource.py",
        "        if self.state.record(key) is not None:\n",
        "        if False:\n",
        (GS + "test_records_outlive_retention_so_a_resync_months_later_copies_nothing_again",),
        "after retention, a resync copies and uploads every old file again",
    ),
    Mutation(
        "graph source: an expired delta link is not read again",
        "hrconnector_core/graphsource.py",
        "if exc.status == 410 and url != start and not summary.resynced:",
        "if False:",
        (GS + "test_an_expired_delta_link_reads_everything_again_and_copies_nothing_twice",),
        "the source stops for good once its delta link expires",
    ),
    Mutation(
        "graph source: no content-tag check before the commit",
        "hrconnector_core/graphsource.py",
        "        if content_tag(now) != ctag:",
        "        if False:",
        (GS + "test_an_item_changed_while_it_is_copied_is_not_committed_and_its_new_version_is",),
        "a file saved while it is copied is uploaded half old, half new",
    ),
    Mutation(
        "graph source: files already there copied on the first run",
        "hrconnector_core/graphsource.py",
        "        baseline = first and not self.folder.copy_existing",
        "        baseline = False",
        (GS + "test_files_already_there_on_the_first_run_are_a_baseline",),
        "a team switching from the flow re-sends every old export",
    ),
    Mutation(
        "graph source: subfolders watched",
        "hrconnector_core/graphsource.py",
        '                if isinstance(parent, dict) and parent.get("id") == folder_id:',
        "                if True:",
        (GS + "test_new_files_are_copied_once_and_only_csv_and_xlsx_of_the_folder_itself",),
        "files in Processed (and any subfolder) are uploaded again",
    ),
    Mutation(
        "graph source: a leased connector is run anyway",
        "hrconnector_core/graphsource.py",
        "            if exc.status_code == 409:  # LeaseAlreadyPresent\n                yield None\n",
        "            if exc.status_code == 409:  # LeaseAlreadyPresent\n"
        "                yield _Lease(self.state.delta_name, BlobLeaseClient(blob), 15, 'x')\n",
        (GS + "test_two_source_runs_at_once_copy_once",),
        "two overlapping runs both copy (only If-None-Match stands between them)",
    ),
    Mutation(
        "graph move: moved whatever the item's version",
        "hrconnector_core/graphmove.py",
        "        if content_tag(item) != (record.ctag or record.etag):",
        "        if False:",
        (GS + "test_an_item_changed_or_deleted_after_its_copy_is_not_moved",),
        "a newer version someone saved is moved to Processed without being uploaded",
    ),
    Mutation(
        "graph client: a link to another host followed with the token",
        "hrconnector_core/graph.py",
        '            raise GraphError("Graph returned a link to another host; it is not followed with the token")',
        "            pass",
        (GS + "test_a_link_to_another_host_is_not_followed_with_the_token",),
        "the Function's Graph token is sent wherever a next link points",
    ),
    # -- the test host -------------------------------------------------------------------------
    Mutation(
        "emulator host: registration not thread-safe (the order-dependent flake)",
        "hrconnector_core/emulator/host.py",
        "    with _registration_lock:\n",
        "    with threading.Lock():  # a new lock per call excludes nobody\n",
        # The concurrent test sees it only when both first calls overlap (it survived a full run).
        (
            G + "test_the_function_app_registers_once_under_the_module_lock",
            F + "test_two_concurrent_invocations_upload_once",
        ),
        "the concurrent test fails alone: app.get_functions() called twice",
    ),
]


def check_texts(mutations: list[Mutation]) -> dict[str, str]:
    """name -> why its old text cannot be applied (absent or ambiguous in the current code)."""
    stale = {}
    for m in mutations:
        path = REPO / m.file
        count = path.read_text(encoding="utf-8").count(m.old) if path.exists() else 0
        if count != 1:
            stale[m.name] = f"old text found {count} times in {m.file}"
    return stale


def check_tests(mutations: list[Mutation]) -> dict[str, str]:
    """name -> which of its tests is missing (a file, or a test function named by its node id)."""
    missing: dict[str, str] = {}
    for m in mutations:
        for test in m.tests:
            file, _, node = test.partition("::")
            path = REPO / file
            if not path.is_file():
                missing[m.name] = f"no test file {file}"
                break
            function = node.split("::")[-1].split("[")[0]
            if function and f"def {function}(" not in path.read_text(encoding="utf-8"):
                missing[m.name] = f"no test {function} in {file}"
                break
    return missing


def check_list(mutations: list[Mutation]) -> int:
    """The fast check (no test runs): every old text occurs once, every named test exists."""
    problems = check_texts(mutations)
    for name, why in check_tests(mutations).items():
        problems[name] = f"{problems[name]}; {why}" if name in problems else why
    names = [m.name for m in mutations]
    for name in {n for n in names if names.count(n) > 1}:
        problems[name] = "two mutations share this name"
    for name, why in problems.items():
        print(f"STALE  {name}: {why}", file=sys.stderr)
    print(f"{len(mutations) - len(problems)} of {len(mutations)} mutations apply to the current tree")
    return 1 if problems else 0


def copy_tree(target: Path) -> None:
    """The working tree as it is (tracked and new files, not ignored ones), environments linked."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO, check=True, capture_output=True,
    ).stdout.decode().split("\0")  # fmt: skip
    for name in filter(None, listed):
        source = REPO / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    for name in LINKED:
        if (REPO / name).exists():
            (target / name).symlink_to(REPO / name)


def run_tests(copy: Path, tests: tuple[str, ...], timeout: float) -> tuple[str, float, str]:
    """Run `tests` in the copy. "caught" only when a test FAILED (an assertion, in the junit XML):
    a test that errors (a fixture that cannot start, an import error) proves nothing about the
    mutation, and neither does a time-out."""
    existing = [t for t in tests if (copy / t.split("::")[0]).exists()]
    if not existing:
        return "no tests", 0.0, f"none of {tests} exists"
    junit = copy / ".mutation-junit.xml"
    junit.unlink(missing_ok=True)
    command = [
        sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", "--timeout", "120",
        f"--junitxml={junit}", *existing,
    ]  # fmt: skip
    started = time.monotonic()
    try:
        result = subprocess.run(command, cwd=copy, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return "TIME-OUT", time.monotonic() - started, f"the tests ran past {timeout:.0f} s"
    elapsed = time.monotonic() - started
    tail = (result.stdout + result.stderr).strip().splitlines()[-1:] or [""]
    if result.returncode == 0:
        return "SURVIVED", elapsed, tail[0]
    failed, errored = _junit_outcomes(junit)
    if result.returncode == 1 and failed:
        return "caught", elapsed, tail[0]
    if errored:
        return "ERROR (a test errored, none failed)", elapsed, tail[0]
    return f"ERROR (pytest exit {result.returncode})", elapsed, tail[0]


def _junit_outcomes(junit: Path) -> tuple[int, int]:
    """(failed, errored) test cases in a junit XML report; (0, 0) when there is none."""
    import xml.etree.ElementTree as ElementTree

    try:
        root = ElementTree.parse(junit).getroot()  # noqa: S314 - pytest's own report, in our temp copy
    except (OSError, ElementTree.ParseError):
        return 0, 0
    cases = list(root.iter("testcase"))
    return (
        sum(1 for c in cases if c.find("failure") is not None),
        sum(1 for c in cases if c.find("error") is not None),
    )


def baseline(copy: Path, mutations: list[Mutation], timeout: float) -> str | None:
    """The chosen mutations' tests on the unmutated copy: they must pass, or a "caught" means nothing."""
    tests = tuple(dict.fromkeys(t for m in mutations for t in m.tests))
    outcome, _, tail = run_tests(copy, tests, timeout * 3)
    return None if outcome == "SURVIVED" else f"{outcome}: {tail}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", action="append", default=[], help="run mutations whose name contains this")
    parser.add_argument("--list", action="store_true", help="list the mutations and exit")
    parser.add_argument(
        "--check", action="store_true", help="only check that every mutation applies and its tests exist (seconds)"
    )
    parser.add_argument("--timeout", type=float, default=600, help="seconds for one mutation's tests")
    args = parser.parse_args(argv)
    chosen = [m for m in MUTATIONS if not args.only or any(o.lower() in m.name.lower() for o in args.only)]
    if not chosen:
        print("no mutation matches", file=sys.stderr)
        return 2
    if args.list:
        for m in chosen:
            print(f"{m.name}  [{m.file}]  -> {' '.join(m.tests)}")
        return 0
    if args.check:
        return check_list(chosen)
    stale = check_texts(chosen)
    rows: list[tuple[str, str, str, str]] = []
    with tempfile.TemporaryDirectory(prefix="hr-mutation-") as tmp:
        copy = Path(tmp)
        copy_tree(copy)
        probe = subprocess.run(
            [sys.executable, "-c", "import hrconnector_core; print(hrconnector_core.__file__)"],
            cwd=copy, capture_output=True, text=True, check=True,
        )  # fmt: skip
        if not Path(probe.stdout.strip()).resolve().is_relative_to(copy.resolve()):
            print(f"the copy imports hrconnector_core from {probe.stdout.strip()}, not from itself", file=sys.stderr)
            return 2
        broken = baseline(copy, [m for m in chosen if m.name not in stale], args.timeout)
        if broken is not None:
            print(f"the tests fail without any mutation ({broken}): fix them first", file=sys.stderr)
            return 2
        for number, m in enumerate(chosen, 1):
            if m.name in stale:
                rows.append((m.name, "STALE", "-", stale[m.name]))
                continue
            path = copy / m.file
            original = path.read_bytes()
            path.write_text(original.decode("utf-8").replace(m.old, m.new, 1), encoding="utf-8")
            try:
                outcome, seconds, tail = run_tests(copy, m.tests, args.timeout)
            finally:
                path.write_bytes(original)
            rows.append((m.name, outcome, f"{seconds:.0f}s", tail if outcome != "caught" else ""))
            print(f"[{number}/{len(chosen)}] {outcome:9} {m.name}", file=sys.stderr, flush=True)

    width = max(len(r[0]) for r in rows)
    print(f"\n| {'mutation':{width}} | result | time | note |")
    print(f"| {'-' * width} | --- | --- | --- |")
    for name, outcome, elapsed, note in rows:
        print(f"| {name:{width}} | {outcome} | {elapsed} | {note} |")
    caught = sum(r[1] == "caught" for r in rows)
    print(f"\n{caught} of {len(rows)} caught")
    return 0 if caught == len(rows) else 1


if __name__ == "__main__":
    os.environ.setdefault("PYTHONDONTWRITEBYTECODE", "1")
    sys.exit(main())
