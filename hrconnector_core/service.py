"""What the Function does: handle one incoming file exactly once, and the scheduled work.

function_app.py only adapts triggers to these calls. A file's life:

    hr-incoming/<connector>/<file>.csv
      -> state (name + ETag) created, leased     hr-state/files/<name>/<etag>.json
      -> validated and uploaded, chunk by chunk    hr-state/checkpoints/<key>.json
      -> report beside the copy                   hr-processed|hr-failed/<connector>/<stamp>/<file>.csv
      -> rejected rows (+ report)                 hr-reports/<connector>/<stamp>/<file>.csv.rejected.csv
      -> source deleted once the copy is verified, state finished

A second event for the same version finds the state finished (or leased) and does nothing. A run
that loses its lease, or finds its checkpoint written by another run, stops before its next chunk
and leaves the file to that run: only the lease holder reports, moves and deletes.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import tempfile
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path, PurePosixPath
from typing import Any

from azure.core.credentials import TokenCredential
from azure.core.exceptions import AzureError, HttpResponseError, ResourceExistsError, ResourceNotFoundError
from azure.storage.blob import BlobClient, BlobProperties, BlobServiceClient, ContainerClient

from .blobstore import (
    BlobCheckpointStore,
    BlobSource,
    DamagedStateError,
    FileClaim,
    FileState,
    FileStateStore,
    JsonBlobs,
    LeaseLostError,
    SourceChangedError,
    StateConflictError,
    bare_etag,
    blob_service_client,
    copy_verified,
    delete_if_unchanged,
    json_object,
    write_text,
)
from .checkpoint import CheckpointError
from .chunking import Chunk
from .credentials import (
    TokenProvider,
    VaultValue,
    federated_credential,
    function_identity,
    key_vault_certificate_credential,
    key_vault_secret_credential,
)
from .errors import HRConnectorError, StorageError
from .ingestion import IngestionClient, UploadResult
from .pipeline import UploadOptions, run_upload, sent_file_name
from .report import RejectedRowsWriter, RowCounts, RunReport
from .schema import SCENARIOS
from .settings import Connector, CredentialKind, Settings
from .telemetry import dimensions, log_context

log = logging.getLogger(__name__)
INPUT_SUFFIXES = (".csv", ".xlsx")  # what hr-incoming takes: CSV files and Excel workbooks


def is_input_file(name: str) -> bool:
    """A CSV file or a workbook, not the lock file Excel leaves beside an open workbook (`~$...`)."""
    return name.lower().endswith(INPUT_SUFFIXES) and not name.rpartition("/")[2].startswith("~$")


PROFILE_TITLE = SCENARIOS["employee_profile"].title
# Employee profiles expire in the connector after 30 days; past this age a failed refresh alerts.
PROFILE_ALERT_DAYS = 20
PROFILE_ALERT = "profile-not-refreshed"
# The service deletes employee-profile records not refreshed within this many days.
PROFILE_EXPIRY_DAYS = 30
# What a garbled state document or a storage error raises: one timer step records it, the rest run.
STEP_ERRORS = (AzureError, HRConnectorError, KeyError, TypeError, ValueError)
# A connector with an expected cadence whose last file is older: the timer logs this dimension.
EXPORT_ALERT = "export-overdue"


class FileFailedError(HRConnectorError):
    """A file could not be uploaded; it is in the failed container with its report."""


class ScheduleError(HRConnectorError):
    """Some scheduled work failed; the rest was done."""


@dataclass
class Outcome:
    """What one invocation did with one blob."""

    status: str  # processed | failed | already-done | busy | lost | gone | ignored | replaced
    blob: str
    destination: str | None = None
    report: dict[str, Any] | None = None


@dataclass
class ScheduleSummary:
    swept: list[Outcome] = field(default_factory=list)
    refreshed: list[str] = field(default_factory=list)
    stale_exports: list[str] = field(default_factory=list)
    overdue_exports: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


# Shared by the invocations of one instance: secrets are read from Key Vault once per cache period.
_cache_lock = threading.Lock()
_vault_values: dict[tuple[str, str], VaultValue] = {}


def connector_credential(connector: Connector, settings: Settings) -> TokenCredential:
    """The credential the connector's app signs in with (see settings.CredentialKind)."""
    if connector.credential is CredentialKind.FEDERATED:
        return federated_credential(
            connector.tenant_id, connector.app_id, connector.cloud, identity_client_id=settings.identity_client_id
        )
    assert connector.key_vault_url is not None and connector.secret_name is not None
    key = (connector.key_vault_url, connector.secret_name)
    identity = function_identity(settings.identity_client_id)
    with _cache_lock:
        material = _vault_values.get(key)
        if material is None:
            material = _vault_values[key] = VaultValue(
                *key,
                identity,
                max_age=settings.secret_cache_seconds,
                verify_challenge_resource=settings.key_vault_verify_challenge,
            )
    build = (
        key_vault_certificate_credential
        if connector.credential is CredentialKind.KEY_VAULT_CERTIFICATE
        else key_vault_secret_credential
    )
    return build(connector.tenant_id, connector.app_id, material, connector.cloud)


class OwnedIngestionClient(IngestionClient):
    """An IngestionClient that sends a chunk only while `guard()` passes: the run still holds the
    file's lease and no other run has written its checkpoint."""

    def __init__(self, *args: Any, guard: Callable[[], None], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._guard = guard

    def upload(self, chunk: Chunk) -> UploadResult:
        self._guard()
        return super().upload(chunk)


class HRConnectorService:
    def __init__(
        self,
        settings: Settings,
        *,
        service_client: BlobServiceClient | None = None,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.settings = settings
        self.clock = clock
        self.blobs = service_client or blob_service_client(settings.storage)
        names = settings.containers
        self.incoming = self.blobs.get_container_client(names.incoming)
        self.processed = self.blobs.get_container_client(names.processed)
        self.reports = self.blobs.get_container_client(names.reports)
        self.failed = self.blobs.get_container_client(names.failed)
        self.state = self.blobs.get_container_client(names.state)
        self.files = FileStateStore(self.state, lease_seconds=settings.lease_seconds)
        self.connector_states = JsonBlobs(self.state)

    def ensure_containers(self) -> None:
        """Create the containers (local runs; the templates create them in Azure)."""
        for container in (self.incoming, self.processed, self.reports, self.failed, self.state):
            with contextlib.suppress(ResourceExistsError):
                container.create_container()

    def client(
        self, connector: Connector, file_name: str, *, guard: Callable[[], None] | None = None
    ) -> IngestionClient:
        def credential() -> TokenCredential:  # a new one after a 401: its token cache starts empty
            return connector_credential(connector, self.settings)

        tokens = TokenProvider(credential(), connector.cloud.scope, renew=credential)
        tokens.token()  # a wrong app, tenant or secret fails here, before the file is read
        name = sent_file_name(PurePosixPath(file_name).name)
        if guard is None:
            return IngestionClient(connector.cloud, connector.job_id, tokens, file_name=name)
        return OwnedIngestionClient(connector.cloud, connector.job_id, tokens, file_name=name, guard=guard)

    # -- one file ---------------------------------------------------------------------------
    def process(self, blob: BlobClient) -> Outcome:
        """Handle the blob an event named; safe to call any number of times, from any instance."""
        name = blob.blob_name
        with log_context(file=name):
            if not is_input_file(name):
                log.warning("not a .csv or .xlsx file; left where it is")
                return Outcome("ignored", name)
            try:
                props = blob.get_blob_properties()
            except ResourceNotFoundError:
                done = [s.status for s in self.files.history(name)]
                log.info("the file is no longer there (earlier runs: %s); nothing to do", ", ".join(done) or "none")
                return Outcome("gone", name)
            claim = self.files.claim(name, props.etag)
            if claim is None:
                log.info("another run is processing this file; leaving it to that run")
                return Outcome("busy", name)
            with claim:
                if claim.state.finished:
                    log.info("already %s at %s; nothing to do", claim.state.status, claim.state.finished_at)
                    return Outcome("already-done", name, claim.state.destination)
                try:
                    return self._process_claimed(blob, props, claim)
                except LeaseLostError as exc:  # another run owns the file: it moves and reports it
                    log.warning("%s; this run stops and leaves the file to it", exc)
                    return Outcome("lost", name)

    def _process_claimed(self, blob: BlobClient, props: BlobProperties, claim: FileClaim) -> Outcome:
        state = claim.state
        run_id = uuid.uuid4().hex[:12]
        now = self.clock()
        connector, relative, route_error = self._route(state.blob)
        route_error = (claim.damaged and state.error) or route_error
        state.connector = connector.name if connector else None
        state.status, state.run_id, state.started_at = "processing", run_id, _iso(now)
        state.runs += 1
        state.destination = state.destination or _destination(state, relative, now)
        claim.save()

        with log_context(connector=state.connector, run=run_id), tempfile.TemporaryDirectory() as tmp:
            log.info("processing (attempt %d)", state.runs)
            rejected_path = Path(tmp) / "rejected.csv"
            checkpoints = BlobCheckpointStore(self.state, lease_seconds=self.settings.lease_seconds)
            if connector is None or route_error:
                job = connector.job_id if connector else ""
                report = RunReport(file_name=relative, job_id=job, error=route_error)
            else:
                rejected = RejectedRowsWriter(rejected_path)
                report = self._upload(blob, state.etag, relative, connector, rejected, claim, checkpoints)
            if checkpoints.conflict:
                raise LeaseLostError(f"the checkpoint of {state.blob} was written by another run, which owns the file")
            if checkpoints.busy:
                return self._wait_for_other_run(claim, checkpoints)
            return self._finish(blob, props, claim, report, rejected_path)

    def _route(self, blob: str) -> tuple[Connector | None, str, str | None]:
        """The connector, the name below its folder, and why there is none."""
        try:
            connector, relative = self.settings.route(blob)
        except HRConnectorError as exc:
            return None, blob, str(exc)
        return connector, relative, None

    def _wait_for_other_run(self, claim: FileClaim, checkpoints: BlobCheckpointStore) -> Outcome:
        """Another run (another name, or another version of this name, with the same bytes) is
        uploading this content: this run sent nothing. The file stays in incoming, unfinished,
        so the timer's sweep processes it once that run is done (it then sends only what is left)."""
        state = claim.state
        _name_checkpoint(claim, checkpoints, save=False)
        state.status = "waiting"
        state.note = "another run was uploading the same content; the timer's sweep finishes this file"
        claim.save()
        log.warning("another run is uploading the same content; nothing sent, the sweep finishes this file")
        return Outcome("busy", state.blob)

    def _upload(
        self,
        blob: BlobClient,
        etag: str,
        relative: str,
        connector: Connector,
        rejected: RejectedRowsWriter,
        claim: FileClaim,
        checkpoints: BlobCheckpointStore,
    ) -> RunReport:
        def still_ours() -> None:  # before every chunk: stop as soon as another run owns the file
            if checkpoints.conflict:
                raise LeaseLostError("the checkpoint was written by another run, which owns the file")
            if checkpoints.held is not None:
                checkpoints.held.check()
            claim.check()

        # The state names the content checkpoint as soon as the run holds the content's lock: before
        # any chunk, and also when the content turns out to be uploaded already (see _close_replaced).
        checkpoints.on_lock = lambda: _name_checkpoint(claim, checkpoints)
        options = upload_options(connector)
        try:
            client = self.client(connector, relative, guard=still_ours)
        except HRConnectorError as exc:
            return RunReport(file_name=relative, job_id=connector.job_id, error=str(exc))
        return run_upload(
            BlobSource(blob, etag, relative), options, client=client, store=checkpoints, rejected_rows=rejected
        )

    def _finish(
        self, blob: BlobClient, props: BlobProperties, claim: FileClaim, report: RunReport, rejected: Path
    ) -> Outcome:
        """Report, then a verified copy, then delete the source, then mark the state finished.
        Only the lease holder gets here: the lease is checked before anything is written or moved."""
        state = claim.state
        assert state.destination is not None
        claim.check()
        uploaded_all = not report.error and report.rows.not_uploaded == 0
        target = self.processed if uploaded_all else self.failed
        report_json = report.to_json()
        state.report = write_text(target, f"{state.destination}.report.json", report_json, "application/json")
        if report.rows.rejected and rejected.exists():
            base = f"{state.destination}.rejected"
            with rejected.open("rb") as handle:
                self.reports.upload_blob(f"{base}.csv", handle, overwrite=True)
            write_text(self.reports, f"{base}.report.json", report_json, "application/json")
            state.rejected_rows = f"{self.reports.container_name}/{base}.csv"
        moved_to: str | None = f"{target.container_name}/{state.destination}"
        try:
            copy_verified(blob, state.etag, target.get_blob_client(state.destination), int(props.size))
        except SourceChangedError:
            # A newer version (its own event, its own state) or a delete: this version's bytes are
            # gone, so there is nothing to copy; the report says what was sent.
            moved_to = None
            state.note = "the file was replaced or deleted before it could be copied; the report says what was sent"
            log.warning("the file was replaced or deleted before it could be copied; only its report is kept")
        else:
            claim.check()
            if not delete_if_unchanged(blob, state.etag):
                log.warning("the file was replaced while it was processed; the new version is handled on its own")
        state.status = "processed" if uploaded_all else "failed"
        state.finished_at = _iso(self.clock())
        state.error = report.error
        summary = report.to_dict()
        state.rows = summary["rows"]
        claim.save()
        where = moved_to or f"{target.container_name}/{state.destination}.report.json (the report only)"
        if state.connector:
            self._remember_file(state.connector, state, report, copied=moved_to is not None)
        rows = {f"rows_{k}": v for k, v in state.rows.items()}
        counts = dimensions(status=state.status, job_id=report.job_id, **rows)
        if uploaded_all:
            log.info("%s: %d rows uploaded, %d rejected; moved to %s", report.status, report.rows.uploaded,
                     report.rows.rejected, where, extra=counts)  # fmt: skip
            return Outcome("processed", state.blob, moved_to, summary)
        log.error("not uploaded: %s; moved to %s", report.error or "rows not uploaded", where, extra=counts)
        raise FileFailedError(
            f"{state.blob}: not uploaded ({report.error or 'some rows were not uploaded'}); "
            f"the file and its report are in {where}"
        )

    # -- employee profile: keep the latest file alive ----------------------------------------
    def _connector_state(self, name: str) -> tuple[dict[str, Any], str | None]:
        """The connector's document; an unreadable one is started afresh (every field is rebuilt
        by the next file), with a warning: the next write replaces it at its ETag."""
        try:
            found = self.connector_states.read(f"connectors/{name}.json")
        except DamagedStateError as exc:
            log.warning("%s; starting it afresh (the next file rebuilds it)", exc)
            return {}, exc.etag
        if found and not all(isinstance(found[0].get(k) or {}, dict) for k in ("profile", "last_file")):
            log.warning("hr-state connectors/%s.json has fields of the wrong type; starting it afresh", name)
            return {}, found[1]
        return found if found else ({}, None)

    def _update_connector(self, connector: str, change: Callable[[dict[str, Any]], bool]) -> None:
        """Read-modify-write `connectors/<name>.json` under its ETag (another instance may write in
        between); `change` edits the document and says whether there is anything to write."""
        for _ in range(5):
            data, etag = self._connector_state(connector)
            if not change(data):
                return
            try:
                self.connector_states.write(f"connectors/{connector}.json", data, etag=etag)
                return
            except StateConflictError:
                continue
        raise StorageError(f"could not record the state of connector {connector!r}")

    def _remember_file(
        self, connector: str, state: FileState, report: RunReport, *, copied: bool, unless_after: str | None = None
    ) -> None:
        """The connector's last file (for `hrconnector status` and the missing-export check) and,
        for an employee-profile file, the file the timer refreshes from. Only rows the service
        accepted in this run count as an upload: an identical export sends nothing, so the profile's
        last upload stays where it was and the timer refreshes on time. `unless_after`: a version
        recorded late (by the sweep) leaves the record alone if the file recorded is of a run that
        started at or after this one's start (`unless_after`)."""
        now = _iso(self.clock())
        rows = report.rows
        last_file = {
            "blob": state.blob,
            "at": now,
            "started_at": state.started_at,  # its run's start: what a late recording is ordered by
            "status": state.status,
            "destination": state.destination,
            "report": state.report,
            "rows": {"in": rows.rows_in, "uploaded": rows.uploaded, "previously_uploaded": rows.previously_uploaded,
                     "rejected": rows.rejected, "not_uploaded": rows.not_uploaded},
            "error": state.error,
        }  # fmt: skip
        profile_file = copied and state.status == "processed" and report.scenarios.get(PROFILE_TITLE, {}).get("valid")

        known = self.settings.connectors.get(connector)
        cadence = known.expected_every_hours if known else None

        def change(data: dict[str, Any]) -> bool:
            recorded = data.get("last_file") or {}
            if unless_after is not None and str(recorded.get("started_at") or recorded.get("at") or "") >= unless_after:
                return False  # the file recorded is of a run that started later: the newer export
            data["last_file"] = last_file
            data["expected_every_hours"] = cadence  # for hrconnector status, which has no app settings
            if profile_file and not rows.uploaded and (data.get("profile") or {}).get("blob"):
                # Nothing new reached the service: this content was sent before (the same export
                # again, or an older one re-dropped). The file refreshed from stays the one whose
                # values the service got last, so a refresh never brings older values back.
                data["profile"]["exported_at"] = now
            elif profile_file:
                previous = data.get("profile") or {}
                # Rows all sent by an earlier run (one that lost its lease, or died, before recording
                # the file): they expire from when the service first took them, as the checkpoint says.
                # Rows this run sent after resuming count from the first accepted chunk too: those
                # expire first (and the sweep records a version late, long after its rows were sent).
                first = _no_later(report.accepted_at, now)
                uploaded_at = (first or now) if rows.uploaded else first or previous.get("uploaded_at")
                # A refresh of the previous file that finished while this one uploaded may have
                # landed after it: then this file is due for a refresh at the next timer.
                if str(previous.get("refreshed_at") or "") >= str(state.started_at or "~"):
                    uploaded_at = None
                data["profile"] = {
                    "blob": state.destination,
                    "exported_at": now,
                    "uploaded_at": uploaded_at,
                    "refreshes": previous.get("refreshes", 0),
                }
            return True

        try:
            self._update_connector(connector, change)
        except (StorageError, AzureError) as exc:  # the file is done; the timer's view is a day late at worst
            log.error("could not record the connector's last file: %s", exc)

    def _remember_refresh(self, connector: str, now: datetime, refreshed: str) -> None:
        def change(data: dict[str, Any]) -> bool:
            profile = data.setdefault("profile", {})
            if profile.get("blob") not in (None, refreshed):
                return False  # a newer file was recorded meanwhile: its own upload counts
            profile.update(uploaded_at=_iso(now), refreshes=profile.get("refreshes", 0) + 1,
                           refreshed_at=_iso(self.clock()))  # fmt: skip
            return True

        self._update_connector(connector, change)

    # -- the timer ------------------------------------------------------------------------------
    def run_schedule(self, now: datetime | None = None) -> ScheduleSummary:
        """Sweep missed files, refresh employee profiles, apply retention. Raises at the end if
        anything failed, after doing everything else."""
        now = now or self.clock()
        summary = ScheduleSummary()
        with log_context(run="timer-" + uuid.uuid4().hex[:8]):
            for step in (self._sweep, self._refresh_profiles, self._check_exports, self._retention):
                try:
                    step(now, summary)
                except STEP_ERRORS as exc:  # the other steps still run
                    what = step.__name__.strip("_").replace("_", " ")
                    why = exc if isinstance(exc, HRConnectorError) else type(exc).__name__
                    summary.failures.append(f"{what}: {why}")
                    log.error("%s failed: %s", what, summary.failures[-1])
            log.info(
                "schedule: %d missed file(s) processed, %d profile(s) refreshed, %d export(s) overdue, "
                "%d old blob(s) deleted, %d failure(s)",
                len(summary.swept), len(summary.refreshed), len(summary.overdue_exports), len(summary.deleted),
                len(summary.failures),
                extra=dimensions(swept=len(summary.swept), refreshed=len(summary.refreshed),
                                 overdue=len(summary.overdue_exports), deleted=len(summary.deleted),
                                 failures=len(summary.failures)),
            )  # fmt: skip
        if summary.failures:
            raise ScheduleError("; ".join(summary.failures))
        return summary

    def _sweep(self, now: datetime, summary: ScheduleSummary) -> None:
        """Files no event processed: older than a few minutes, with no finished state."""
        cutoff = now - timedelta(minutes=self.settings.sweep_after_minutes)
        present = set()
        for item in self.incoming.list_blobs():
            present.add((item.name, bare_etag(item.etag)))
            if not item.name.lower().endswith(INPUT_SUFFIXES) or item.last_modified > cutoff:
                continue
            try:
                state = self.files.get(item.name, item.etag)
            except DamagedStateError:
                state = None  # processing it fails it with the reason
            except AzureError as exc:
                summary.failures.append(f"sweep: cannot read the state of {item.name}: {type(exc).__name__}")
                continue
            if state is not None and state.finished:
                continue
            log.warning("no event processed %s; processing it now", item.name)
            try:
                summary.swept.append(self.process(self.incoming.get_blob_client(item.name)))
            except HRConnectorError as exc:
                summary.failures.append(str(exc))
            except AzureError as exc:
                summary.failures.append(f"sweep: {item.name}: {type(exc).__name__}")
        for name, etag in self.files.unfinished(cutoff):
            if (name, etag) not in present:
                try:  # one version that cannot be closed does not keep the others open
                    self._close_replaced(name, etag, summary)
                except HRConnectorError as exc:
                    summary.failures.append(f"sweep: closing {name}: {exc}")
                except AzureError as exc:
                    summary.failures.append(f"sweep: closing {name}: {type(exc).__name__}")

    def _close_replaced(self, name: str, etag: str, summary: ScheduleSummary) -> None:
        """A version left unfinished (its run lost its lease, or it waited for another run of the
        same content) whose bytes are gone from hr-incoming (replaced, deleted, or moved by that run
        just before it lost the lease): the report its run wrote stands; if none, it is closed as
        failed with a report of what the service accepted of it (from the content checkpoint its
        state names). A newer version has its own state and event."""
        claim = self.files.claim(name, etag)
        if claim is None:
            return
        with claim, log_context(file=name):
            state = claim.state
            if state.finished:
                return
            if self._content_busy(state):
                log.info("a version left unfinished was replaced or deleted; its content is being uploaded: "
                         "closed by a later sweep, with every row counted")  # fmt: skip
                return
            connector, relative, _ = self._route(state.blob)
            now = self.clock()
            state.connector = state.connector or (connector.name if connector else None)
            state.destination = state.destination or _destination(state, relative, now)
            where = f"{state.destination}.report.json"
            # Its run may have written the report and lost the lease before recording the end: it stands.
            found = self._report_at(where)
            by_its_run = found is not None
            if found is None:
                report = self._closing_report(state, relative, connector.job_id if connector else "")
                report.started_at, report.finished_at = state.started_at or _iso(now), _iso(now)
                write_text(self.failed, where, report.to_json(), "application/json")
                found = self.failed, report.to_dict()
            target, summary_of = found
            state.report = f"{target.container_name}/{where}"
            state.status = "processed" if target is self.processed else "failed"
            state.finished_at, state.rows = _iso(now), summary_of.get("rows") or {}
            state.error = state.error or summary_of.get("error")
            state.note = ("this version's file was gone from incoming (replaced, deleted or moved) before its state "
                          "was finished; its report says what the service accepted of it")  # fmt: skip
            claim.save()
            log.warning("a version left unfinished is no longer in incoming; closed with its report (%s)", state.report)
            summary.swept.append(Outcome("replaced", name, state.destination))
            if by_its_run and state.connector:  # what its run would have recorded, unless a newer file is
                copied = target.get_blob_client(state.destination).exists()
                try:
                    ran = _report_from(summary_of)
                except (TypeError, ValueError, OverflowError):  # e.g. a count of 1e400 (infinity)
                    log.warning("the report %s is not one this version wrote; the connector's record is kept", where)
                    return
                ran.accepted_at = self._accepted_at(state)
                self._remember_file(state.connector, state, ran, copied=copied, unless_after=state.started_at)

    def _accepted_at(self, state: FileState) -> str | None:
        """When the service first accepted a chunk of the content the state names (its checkpoint);
        None when not known (then the sweep's own time stands in)."""
        if not _is_checkpoint_id(state.checkpoint):
            return None
        try:
            checkpoint = BlobCheckpointStore(self.state).read(state.checkpoint or "")
        except (CheckpointError, AzureError):
            return None
        return checkpoint.accepted_at if checkpoint else None

    def _content_busy(self, state: FileState) -> bool:
        """A run holds the lock of the content the state names: it may still send rows of it (its
        chunks in flight, or every row for a version that waited), so a report now would miss them."""
        if not _is_checkpoint_id(state.checkpoint):
            return False
        try:
            props = self.state.get_blob_client(f"locks/{state.checkpoint}").get_blob_properties()
        except ResourceNotFoundError:
            return False
        return bool(props.lease.state == "leased")

    def _report_at(self, name: str) -> tuple[ContainerClient, dict[str, Any]] | None:
        """The report already written at `name` in hr-processed or hr-failed, if one is readable."""
        for container in (self.processed, self.failed):
            with contextlib.suppress(ResourceNotFoundError, ValueError, TypeError):
                return container, json_object(container.get_blob_client(name).download_blob().readall())
        return None

    def _closing_report(self, state: FileState, relative: str, job_id: str) -> RunReport:
        """What is known of a version whose bytes went before a run finished it: the rows of its
        content the service accepted, as the checkpoint named in its state records (by any run)."""
        report = RunReport(file_name=relative, job_id=job_id, replaced=True)
        report.error = "the file was replaced or deleted before this version was finished"
        if state.checkpoint and not _is_checkpoint_id(state.checkpoint):  # a garbled state: never a blob name
            report.notes.append("what the service accepted of it is not known: its state names no valid checkpoint")
            return report
        try:
            checkpoint = BlobCheckpointStore(self.state).read(state.checkpoint) if state.checkpoint else None
        except CheckpointError as exc:  # damaged: the version is closed all the same, saying so
            report.notes.append(f"what the service accepted of it is not known: {exc}")
            return report
        if checkpoint is None and state.checkpoint:  # named, then deleted (retention, an admin)
            report.notes.append(f"what the service accepted of it is not known: its checkpoint {state.checkpoint} "
                                "is gone")  # fmt: skip
            return report
        if checkpoint is None:
            report.notes.append("its state names no checkpoint: no row of this version is known to have been sent")
            return report
        key, rows = checkpoint.key, report.rows
        report.file_sha256, report.job_id, report.records_per_call = key.file_sha256, key.job_id, key.records_per_call
        if checkpoint.finished:
            rows.rows_in, rows.uploaded = checkpoint.rows.get("in", 0), checkpoint.rows.get("uploaded", 0)
            rows.rejected, rows.skipped = checkpoint.rows.get("rejected", 0), checkpoint.rows.get("skipped", 0)
            report.scenarios = checkpoint.scenarios
            report.notes.append(
                f"its checkpoint records every valid row as accepted by the service and {rows.rejected} row(s) "
                "rejected; the reasons of rejected rows cannot be listed again, as the file is gone"
            )
        else:
            rows.rows_in = rows.uploaded = sum(checkpoint.completed.values())
            report.notes.append(
                f"the service accepted {rows.uploaded} row(s) of it in {len(checkpoint.completed)} chunk(s), as its "
                "checkpoint records; 'in' counts only those. The rest of the file was never sent, and any rows its "
                "run rejected are not known: drop this version again if its other rows are still needed"
            )
        return report

    def _refresh_profiles(self, now: datetime, summary: ScheduleSummary) -> None:
        """Employee profile data expires after 30 days: re-upload the latest file in time."""
        for connector in self.settings.connectors.values():
            try:
                profile = self._connector_state(connector.name)[0].get("profile")
                if profile:
                    self._refresh_profile(connector, profile, now, summary)
            except STEP_ERRORS as exc:  # the next connector still runs
                why = exc if isinstance(exc, HRConnectorError) else type(exc).__name__
                summary.failures.append(f"profile refresh of connector {connector.name!r}: {why}")
                log.error("profile refresh of connector %r failed: %s", connector.name, why,
                          extra=dimensions(alert=PROFILE_ALERT))  # fmt: skip

    def _refresh_profile(
        self, connector: Connector, profile: dict[str, Any], now: datetime, summary: ScheduleSummary
    ) -> None:
        with log_context(connector=connector.name, file=profile["blob"]):
            age = now - datetime.fromisoformat(profile["exported_at"])
            if age > timedelta(days=self.settings.profile_stale_days):
                summary.stale_exports.append(connector.name)
                log.warning(
                    "the latest employee-profile file is %d days old: is the HR system still exporting?",
                    age.days, extra=dimensions(profile_age_days=age.days),
                )  # fmt: skip
            # Unknown (rows sent by an earlier run, with a checkpoint older than `accepted_at`): due now.
            uploaded_at = profile.get("uploaded_at")
            never = timedelta(days=PROFILE_EXPIRY_DAYS)
            since = now - datetime.fromisoformat(uploaded_at) if uploaded_at else never
            if since < timedelta(days=self.settings.profile_refresh_days):
                return
            try:
                self._refresh(connector, profile, now, summary)
            except (HRConnectorError, AzureError) as exc:
                why = exc if isinstance(exc, HRConnectorError) else f"storage error ({type(exc).__name__})"
                summary.failures.append(f"profile refresh of connector {connector.name!r}: {why}")
                # The infrastructure's alert rule looks for this dimension.
                overdue = since >= timedelta(days=PROFILE_ALERT_DAYS)
                alert = dimensions(alert=PROFILE_ALERT, profile_days=since.days) if overdue else None
                log.error("profile refresh failed (last upload %d days ago): %s", since.days, why, extra=alert)

    def _refresh(self, connector: Connector, profile: dict[str, Any], now: datetime, summary: ScheduleSummary) -> None:
        """Re-upload the connector's latest profile file. A newer export may be processed while
        this one is on the wire and land before it: so the refresh re-reads which file is latest
        afterwards and, if it changed, refreshes again from that one (the newest values land last)."""
        for _ in range(3):
            self._refresh_file(connector, profile["blob"], now)
            latest = self._connector_state(connector.name)[0].get("profile") or {}
            if latest.get("blob") in (None, profile["blob"]):
                break
            log.warning("a newer employee-profile file arrived during the refresh; refreshing from it")
            profile = latest
        else:
            raise HRConnectorError("newer employee-profile files kept arriving during the refresh")
        self._remember_refresh(connector.name, now, profile["blob"])
        summary.refreshed.append(connector.name)

    def _refresh_file(self, connector: Connector, destination: str, now: datetime) -> None:
        blob = self.processed.get_blob_client(destination)
        file_name = relative_name(destination)
        try:
            etag = blob.get_blob_properties().etag
        except ResourceNotFoundError:
            gone = f"{self.processed.container_name}/{destination}"
            raise StorageError(f"{gone} is gone; drop a new export") from None
        report = run_upload(
            BlobSource(blob, etag, file_name),
            upload_options(connector, force=True),  # the same rows again, on purpose
            client=self.client(connector, file_name),
            store=BlobCheckpointStore(self.state, lease_seconds=self.settings.lease_seconds),
        )
        stamp = f"{now:%Y%m%dT%H%M%SZ}"
        write_text(self.reports, f"{connector.name}/{stamp}/refresh-{file_name}.report.json",
                   report.to_json(), "application/json")  # fmt: skip
        if report.error or report.rows.not_uploaded or not report.rows.uploaded:
            raise HRConnectorError(report.error or "no row was accepted")
        log.info("employee profile re-uploaded: %d rows", report.rows.uploaded)

    def _check_exports(self, now: datetime, summary: ScheduleSummary) -> None:
        """A connector with an expected cadence whose last file is older than that: the HR system
        may have stopped exporting. Logged with the alert dimension the infrastructure watches."""
        for connector in self.settings.connectors.values():
            every = connector.expected_every_hours
            if every is None:
                continue
            last = (self._connector_state(connector.name)[0].get("last_file") or {}).get("at")
            if last is None:
                continue  # no file yet: nothing to compare with (hrconnector status says so)
            hours = (now - datetime.fromisoformat(last)).total_seconds() / 3600
            if hours <= every:
                continue
            summary.overdue_exports.append(connector.name)
            with log_context(connector=connector.name):
                log.error(
                    "no file for %.0f hours (one is expected every %g hours): is the HR system still exporting?",
                    hours, every, extra=dimensions(alert=EXPORT_ALERT, hours_since_last_file=int(hours),
                                                   expected_every_hours=every),
                )  # fmt: skip

    def _retention(self, now: datetime, summary: ScheduleSummary) -> None:
        """Delete processed files, reports and finished state past the retention period; the file
        each profile connector refreshes from is kept. Failed files wait for an admin."""
        cutoff = now - timedelta(days=self.settings.retention_days)
        keep = set()
        for connector in self.settings.connectors.values():
            profile = self._connector_state(connector.name)[0].get("profile")
            if profile:
                keep.update({profile["blob"], f"{profile['blob']}.report.json"})
        targets = [(self.processed, None), (self.reports, None), (self.state, "files/"), (self.state, "checkpoints/"),
                   (self.state, "locks/")]  # fmt: skip
        for container, prefix in targets:
            for item in container.list_blobs(name_starts_with=prefix):
                if item.last_modified >= cutoff or (container is self.processed and item.name in keep):
                    continue
                try:
                    container.delete_blob(item.name)
                except ResourceNotFoundError:
                    continue
                except HttpResponseError as exc:
                    if exc.status_code in (409, 412) and item.name.startswith("locks/"):
                        continue  # a content lock leased by a running upload
                    summary.failures.append(f"retention: cannot delete {container.container_name}/{item.name}: "
                                            f"{type(exc).__name__}")  # fmt: skip
                    continue
                except AzureError as exc:
                    summary.failures.append(f"retention: cannot delete {container.container_name}/{item.name}: "
                                            f"{type(exc).__name__}")  # fmt: skip
                    continue
                summary.deleted.append(f"{container.container_name}/{item.name}")


def _destination(state: FileState, relative: str, now: datetime) -> str:
    """The version's own folder: two versions of a name in the same second never collide."""
    version = hashlib.sha256(bare_etag(state.etag).encode()).hexdigest()[:8]
    return f"{state.connector or '_unrouted'}/{now:%Y%m%dT%H%M%SZ}-{version}/{relative}"


def _no_later(at: Any, now: str) -> str | None:
    """A checkpoint's `accepted_at` as this clock's time, at the latest `now`; None when garbled
    (hand-edited): a profile's upload time must stay readable, or every refresh would fail."""
    try:
        moment = datetime.fromisoformat(at)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:
        return None
    return min(_iso(moment.astimezone(timezone.utc)), now)


def _report_from(summary: dict[str, Any]) -> RunReport:
    """The counts of a report read back (what recording a file needs of it)."""
    rows, scenarios = summary.get("rows") or {}, summary.get("scenarios") or {}
    if not isinstance(rows, dict) or not isinstance(scenarios, dict):
        raise TypeError("not a report")
    if not all(isinstance(counts, dict) for counts in scenarios.values()):
        raise TypeError("not a report")  # edited by hand: recording it would break the sweep
    report = RunReport(file_name="", job_id=str(summary.get("job_id") or ""), scenarios=scenarios)
    names = ("in", "uploaded", "previously_uploaded", "rejected", "skipped", "not_uploaded", "planned")
    report.rows = RowCounts(*(int(rows.get(name) or 0) for name in names))
    return report


def _is_checkpoint_id(value: Any) -> bool:
    """A CheckpointKey.id (40 hex digits): anything else in a state is garbled, not a blob to read."""
    return isinstance(value, str) and len(value) == 40 and all(c in "0123456789abcdef" for c in value)


def _name_checkpoint(claim: FileClaim, checkpoints: BlobCheckpointStore, *, save: bool = True) -> None:
    """Record in the version's state which content checkpoint its rows are counted in, so that a
    version whose bytes go before a run finishes it can still be reported (see _close_replaced)."""
    key = checkpoints.key
    if key is not None and claim.state.checkpoint != key.id:
        claim.state.checkpoint = key.id
        if save:
            claim.save()


def upload_options(connector: Connector, *, force: bool = False) -> UploadOptions:
    return UploadOptions(
        job_id=connector.job_id,
        records_per_call=connector.records_per_call,
        max_concurrency=connector.max_concurrency,
        mapping=connector.mapping,
        policy=connector.policy,
        force=force,
    )


def relative_name(destination: str) -> str:
    """`<connector>/<stamp>/<file>` -> `<file>`."""
    return destination.split("/", 2)[-1]


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds")
