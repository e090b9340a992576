"""`hrconnector status`: the admin's view of a deployment, from what the Function leaves behind.

Reads only the state container (each connector's last file, its employee-profile upload and
expected cadence, written by the Function) and the reports of the files waiting in the failed
container. Never a CSV, so never an HR value. Exit 1 when anything needs attention.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, TextIO

from .errors import ConfigurationError
from .settings import Containers

if TYPE_CHECKING:  # azure-storage-blob is imported only when the command runs (the CLI starts fast)
    from azure.storage.blob import BlobServiceClient, ContainerClient

# The service deletes employee-profile records not refreshed within 30 days; the Function alerts
# at 20 (service.PROFILE_ALERT_DAYS): status says "attention" from the same day.
PROFILE_EXPIRY_DAYS = 30
PROFILE_ATTENTION_DAYS = 20

EXIT_OK, EXIT_ATTENTION, EXIT_USAGE = 0, 1, 2
# The table lists this many failed files; --json lists them all.
FAILED_SHOWN = 20


@dataclass
class FailedFile:
    connector: str
    file: str  # as kept in the failed container
    reason: str
    rows_uploaded: int | None = None
    rows_not_uploaded: int | None = None


@dataclass
class ConnectorStatus:
    name: str
    last_file: str | None = None
    last_file_at: str | None = None
    outcome: str | None = None
    rows_uploaded: int | None = None
    rows_previously_uploaded: int | None = None
    rows_rejected: int | None = None
    profile_uploaded_at: str | None = None
    profile_expires_on: str | None = None
    expected_every_hours: float | None = None
    export_overdue: bool | None = None  # None: no cadence set, or no file yet
    failed_files: list[FailedFile] = field(default_factory=list)
    attention: list[str] = field(default_factory=list)


@dataclass
class Status:
    checked_at: str
    connectors: list[ConnectorStatus]

    @property
    def attention(self) -> list[str]:
        return [f"{c.name}: {reason}" for c in self.connectors for reason in c.attention]

    def to_dict(self) -> dict[str, Any]:
        return {
            "checked_at": self.checked_at,
            "needs_attention": bool(self.attention),
            "attention": self.attention,
            "connectors": [asdict(c) for c in self.connectors],
        }


def collect(blobs: BlobServiceClient, containers: Containers, *, now: datetime | None = None) -> Status:
    """Every connector the Function has seen, and every file waiting in the failed container."""
    now = now or datetime.now(timezone.utc)
    state = blobs.get_container_client(containers.state)
    connectors: dict[str, ConnectorStatus] = {}
    for item in state.list_blobs(name_starts_with="connectors/"):
        name = item.name[len("connectors/") :].removesuffix(".json")
        data = _read_json(state, item.name)
        problem = None if data is None else data.pop(_UNREADABLE, None)
        try:
            connectors[name] = _connector(name, data or {}, now)
        except (AttributeError, KeyError, TypeError, ValueError):
            connectors[name] = ConnectorStatus(name)
            problem = problem or "has fields of the wrong type"
        if problem:
            connectors[name].attention.append(
                f"{containers.state}/{item.name} {problem}; the Function starts it afresh with the next file"
            )
    for failed in _failed_files(blobs.get_container_client(containers.failed)):
        connector = connectors.setdefault(failed.connector, ConnectorStatus(failed.connector))
        connector.failed_files.append(failed)
    for connector in connectors.values():
        if connector.failed_files:
            connector.attention.append(f"{len(connector.failed_files)} file(s) waiting in {containers.failed}")
    return Status(_iso(now), [connectors[name] for name in sorted(connectors)])


def _connector(name: str, data: dict[str, Any], now: datetime) -> ConnectorStatus:
    status = ConnectorStatus(name, expected_every_hours=data.get("expected_every_hours"))
    last = data.get("last_file") or {}
    if last:
        rows = last.get("rows") or {}
        status.last_file, status.last_file_at, status.outcome = last.get("blob"), last.get("at"), last.get("status")
        status.rows_uploaded, status.rows_rejected = rows.get("uploaded"), rows.get("rejected")
        status.rows_previously_uploaded = rows.get("previously_uploaded")
        if status.outcome == "failed":
            status.attention.append(f"the last file failed: {last.get('error') or 'see its report'}")
    if status.expected_every_hours and status.last_file_at:
        age = now - datetime.fromisoformat(status.last_file_at)
        status.export_overdue = age > timedelta(hours=status.expected_every_hours)
        if status.export_overdue:
            status.attention.append(
                f"export overdue: the last file is {age.total_seconds() / 3600:.0f} hours old "
                f"(expected every {status.expected_every_hours:g} hours)"
            )
    profile = data.get("profile") or {}
    uploaded = profile.get("uploaded_at")
    if uploaded:
        at = datetime.fromisoformat(uploaded)
        status.profile_uploaded_at = uploaded
        status.profile_expires_on = (at + timedelta(days=PROFILE_EXPIRY_DAYS)).date().isoformat()
        days = (now - at).days
        if days >= PROFILE_EXPIRY_DAYS:
            status.attention.append(f"employee profiles expired on {status.profile_expires_on}")
        elif days >= PROFILE_ATTENTION_DAYS:
            status.attention.append(f"employee profiles not refreshed for {days} days; they expire on "
                                    f"{status.profile_expires_on}")  # fmt: skip
    elif profile:
        status.attention.append("an employee-profile file was recorded but never uploaded")
    return status


def _failed_files(container: ContainerClient) -> list[FailedFile]:
    """Files in the failed container, each with the reason its report gives."""
    names = {b.name for b in container.list_blobs()}
    found = []
    # A report without its file: the file was replaced or deleted before it could be copied.
    files = {n for n in names if not n.endswith(".report.json")}
    files |= {n.removesuffix(".report.json") for n in names if n.endswith(".report.json")}
    for name in sorted(files):
        report = _read_json(container, f"{name}.report.json") or {}
        problem = report.pop(_UNREADABLE, None)
        rows: dict[str, Any] = report["rows"] if isinstance(report.get("rows"), dict) else {}
        error = report.get("error") if isinstance(report.get("error"), str) else None
        if problem:
            reason = f"its report {problem}"
        else:
            reason = error or ("some rows were not uploaded" if report else "no report found")
        if name not in names:
            reason = f"{reason} (only the report is kept: the file was replaced or deleted before it was copied)"
        connector = name.split("/", 1)[0] if "/" in name else ""
        found.append(FailedFile(connector, name, reason, _int(rows.get("uploaded")), _int(rows.get("not_uploaded"))))
    return found


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) else None


_UNREADABLE = "\0unreadable"  # a key no JSON document of ours has: why the document could not be read


def _read_json(container: ContainerClient, name: str) -> dict[str, Any] | None:
    from azure.core.exceptions import ResourceNotFoundError

    try:
        data = json.loads(container.get_blob_client(name).download_blob().readall())
    except ResourceNotFoundError:
        return None
    except ValueError:
        return {_UNREADABLE: "is not valid JSON"}
    return data if isinstance(data, dict) else {_UNREADABLE: "is not a JSON object"}


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="seconds")


# -- the command ----------------------------------------------------------------------------------
def add_parser(commands: Any) -> None:
    """Register `status` on the CLI's subcommands."""
    status = commands.add_parser(
        "status",
        help="what the Function has done, per connector; exit 1 when anything needs attention",
        description="Per connector: the last file and its outcome, rows uploaded and rejected, the employee "
        "profile's last upload and expiry, files waiting in the failed container with their reason, and "
        "whether the export is overdue. Reads only the state container and the reports.",
    )
    where = status.add_mutually_exclusive_group(required=True)
    where.add_argument("--account-url", help="https://<account>.blob.core.windows.net (DefaultAzureCredential)")
    where.add_argument("--connection-string-env", metavar="VAR", help="a connection string in this variable (Azurite)")
    status.add_argument("--state-container", default=Containers.state)
    status.add_argument("--failed-container", default=Containers.failed)
    status.add_argument("--json", action="store_true", help="print JSON instead of a table")
    status.add_argument("--verbose", "-v", action="store_true", help="debug logging")


def run(args: argparse.Namespace, *, out: TextIO | None = None, now: datetime | None = None) -> int:
    from azure.core.exceptions import AzureError

    if out is None:
        out = sys.stdout
        if isinstance(out, io.TextIOWrapper):  # a name the console's code page cannot show: escaped, not a crash
            out.reconfigure(errors="backslashreplace")
    containers = Containers(state=args.state_container, failed=args.failed_container)
    try:
        result = collect(_client(args), containers, now=now)
    except AzureError as exc:
        raise ConfigurationError(f"cannot read the storage account: {type(exc).__name__}: {exc.message}") from None
    if args.json:
        out.write(json.dumps(result.to_dict(), indent=2) + "\n")
    else:
        out.write(render(result))
    return EXIT_ATTENTION if result.attention else EXIT_OK


def _client(args: argparse.Namespace) -> BlobServiceClient:
    from azure.storage.blob import BlobServiceClient

    if args.account_url:
        from azure.identity import DefaultAzureCredential

        return BlobServiceClient(args.account_url, credential=DefaultAzureCredential())

    text = os.environ.get(args.connection_string_env, "").strip()
    if not text:
        raise ConfigurationError(f"{args.connection_string_env} is not set")
    return BlobServiceClient.from_connection_string(text)


def render(status: Status) -> str:
    """A table for a terminal, then the failed files and what needs attention."""
    header = ("connector", "last file", "at (UTC)", "outcome", "uploaded", "rejected", "profile uploaded",
              "profile expires", "export")  # fmt: skip
    table = [header]
    for c in status.connectors:
        if c.export_overdue is None:
            export = "no cadence" if c.expected_every_hours is None else "no file yet"
        else:
            export = "OVERDUE" if c.export_overdue else f"ok (every {c.expected_every_hours:g} h)"
        table.append((
            c.name,
            c.last_file or "-",
            (c.last_file_at or "-").replace("+00:00", ""),
            c.outcome or "-",
            _count(c.rows_uploaded, c.rows_previously_uploaded),
            "-" if c.rows_rejected is None else str(c.rows_rejected),
            (c.profile_uploaded_at or "-").replace("+00:00", ""),
            c.profile_expires_on or "-",
            export,
        ))  # fmt: skip
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    lines = [f"status at {status.checked_at}", ""]
    lines += ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in table]
    if not status.connectors:
        lines.append("(no connector has had a file yet)")
    failed = [f for c in status.connectors for f in c.failed_files]
    if failed:
        lines += ["", "files waiting in the failed container:"]
        lines += [f"  {f.file}: {f.reason}" for f in failed[:FAILED_SHOWN]]
        if len(failed) > FAILED_SHOWN:
            lines.append(f"  ... and {len(failed) - FAILED_SHOWN} more (--json lists them all)")
    lines += ["", "needs attention:" if status.attention else "nothing needs attention"]
    lines += [f"  {a}" for a in status.attention]
    return "\n".join(lines) + "\n"


def _count(uploaded: int | None, previously: int | None) -> str:
    if uploaded is None:
        return "-"
    return f"{uploaded} (+{previously} before)" if previously else str(uploaded)
