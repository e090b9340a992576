"""Command line: `python -m hrconnector_core upload ...`, a drop-in for the sample script.

Exit codes: 0 every row uploaded (or planned, with --dry-run); 1 anything not uploaded;
2 usage or configuration errors; 130 stopped by Ctrl-C, 143 by SIGTERM (the report is still
written and the checkpoint keeps what the service accepted).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from . import status as status_command
from .checkpoint import LocalCheckpointStore, default_state_dir
from .chunking import DEFAULT_RECORDS_PER_CALL
from .clouds import CLOUDS, CloudEndpoints, resolve_cloud
from .errors import ConfigurationError, CredentialError, HRConnectorError
from .mapping import describe_unplaced, infer_mapping, load_mapping
from .pipeline import (
    DEFAULT_MAX_CONCURRENCY,
    LocalFileSource,
    Policy,
    Progress,
    RunInterrupted,
    UploadOptions,
    check_header,
    open_rows,
    run_upload,
    sent_file_name,
)
from .report import RejectedRowsWriter, RunReport
from .schema import SCENARIOS
from .validation import Severity

if TYPE_CHECKING:  # validate and --dry-run never load azure-core or requests (start-up time)
    from .ingestion import IngestionClient

EXIT_OK, EXIT_INCOMPLETE, EXIT_USAGE = 0, 1, 2
EXIT_INTERRUPTED, EXIT_TERMINATED = 130, 143
EXIT_CODES = """exit codes:
  0  every row uploaded (or planned, with --dry-run), or already uploaded by an earlier run
  1  anything not uploaded: a bad file, rejected rows, a failed upload (see the report)
  2  usage or configuration errors (arguments, credential, mapping file)
  130  stopped by Ctrl-C; 143 stopped by SIGTERM (the report is written, the checkpoint keeps
       what the service accepted: run again to send the rest)"""


def _version() -> str:
    import importlib.metadata  # only for --version: importing it costs every other run 20-40 ms

    try:
        return importlib.metadata.version("hrconnector")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


class _VersionAction(argparse.Action):
    """argparse's version action, with the version looked up only when asked for."""

    def __init__(self, option_strings: list[str], dest: str = argparse.SUPPRESS, **kwargs: object) -> None:
        super().__init__(option_strings, dest, default=argparse.SUPPRESS, nargs=0, help="show the version and exit")

    def __call__(self, parser: argparse.ArgumentParser, *args: object) -> None:
        print(f"{parser.prog} {_version()}")
        parser.exit()


log = logging.getLogger("hrconnector_core.cli")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hrconnector",
        description="Validate and upload HR data CSV files to a Microsoft Purview HR connector.",
    )
    parser.add_argument("--version", action=_VersionAction)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    up = commands.add_parser(
        "upload",
        help="upload a CSV file to an HR connector job",
        description="Upload a CSV file in chunks, resuming from the last checkpoint. The sample "
        "script's parameter names (-tenantId, -appId, -appSecret, -jobId, -filePath) also work.",
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ident = up.add_argument_group("connector")
    ident.add_argument("--tenant-id", "-tenantId", dest="tenant_id", help="Entra tenant id")
    ident.add_argument("--app-id", "-appId", dest="app_id", help="the Entra app (client) id of the connector")
    ident.add_argument("--job-id", "-jobId", dest="job_id", required=True, help="the HR connector's job id")
    ident.add_argument(
        "--file", "-filePath", dest="file", required=True, type=Path, help="the CSV file or Excel workbook (.xlsx)"
    )

    cred = up.add_argument_group("credential (one of)")
    cred.add_argument(
        "--app-secret",
        "-appSecret",
        dest="app_secret",
        help="the app secret (visible to other users of this machine: prefer --app-secret-env or Key Vault)",
    )
    cred.add_argument("--app-secret-env", metavar="VAR", help="read the app secret from this environment variable")
    cred.add_argument(
        "--key-vault-url", metavar="URL", help="read the app secret from this Key Vault (DefaultAzureCredential)"
    )
    cred.add_argument("--secret-name", metavar="NAME", help="the secret's name in --key-vault-url")
    cred.add_argument(
        "--key-vault-skip-challenge-check",
        action="store_true",
        help="accept a vault whose host is not a subdomain of the challenge's resource (the local emulator only)",
    )
    cred.add_argument(
        "--certificate", metavar="PATH", type=Path, help="a PEM or PKCS12 certificate with its private key"
    )
    cred.add_argument(
        "--certificate-password-env", metavar="VAR", help="environment variable holding the certificate's password"
    )

    net = up.add_argument_group("endpoints")
    net.add_argument("--cloud", default="commercial", choices=sorted(CLOUDS), help="default: %(default)s")
    net.add_argument("--authority-host", metavar="URL", help="override the cloud's Entra login host")
    net.add_argument("--ingestion-url", metavar="URL", help="override the cloud's ingestion host")
    net.add_argument("--resource", metavar="URI", help="override the ingestion resource (token audience)")

    run = up.add_argument_group("run")
    run.add_argument(
        "--records-per-call",
        type=_positive_int,
        default=DEFAULT_RECORDS_PER_CALL,
        metavar="N",
        help="records per upload call (default: %(default)s)",
    )
    run.add_argument(
        "--max-concurrency",
        type=_positive_int,
        default=DEFAULT_MAX_CONCURRENCY,
        metavar="N",
        help="chunks uploaded at once (default: %(default)s)",
    )
    run.add_argument(
        "--state-dir", type=Path, metavar="DIR", help=f"where checkpoints are kept (default: {default_state_dir()})"
    )
    run.add_argument(
        "--force",
        action="store_true",
        help="forget this file's checkpoint (finished, partial, damaged or made with other settings) and send every "
        "row again",
    )
    run.add_argument(
        "--dry-run", action="store_true", help="read and chunk the file, print the plan; no token, no network"
    )
    run.add_argument("--report", type=Path, metavar="OUT.json", help="write the run report here")
    run.add_argument("--verbose", "-v", action="store_true", help="debug logging (never secrets or HR data)")
    _validation_arguments(up)
    up.add_argument(
        "--policy",
        choices=[p.value for p in Policy],
        default=Policy.UPLOAD_VALID.value,
        help="upload-valid: upload the valid rows and set the invalid ones aside (default); "
        "reject-file: upload nothing when any row is invalid",
    )

    check = commands.add_parser(
        "validate",
        help="check a CSV file against the connector's mapping; nothing is sent",
        description="Check a file as upload would, without a token or a network. Exit 0 when every row is "
        "valid, 1 when any row or the file is invalid.",
    )
    check.add_argument("file", type=Path, help="the CSV file or Excel workbook (.xlsx)")
    _validation_arguments(check)
    check.add_argument("--report", type=Path, metavar="OUT.json", help="write the validation report here")
    check.add_argument("--verbose", "-v", action="store_true", help="debug logging")

    status_command.add_parser(commands)
    mapping = commands.add_parser("mapping", help="work with column mappings")
    mapping_commands = mapping.add_subparsers(dest="mapping_command", required=True, metavar="ACTION")
    infer = mapping_commands.add_parser(
        "infer",
        help="propose a mapping from a sample file's header",
        description="Print the mapping the documentation's column names imply (JSON), or which required "
        "fields could not be placed and the closest header for each.",
    )
    infer.add_argument("file", type=Path, help="a sample CSV file or workbook (only its header is read)")
    _sheet_argument(infer)
    infer.add_argument("--verbose", "-v", action="store_true", help="debug logging")
    return parser


def _sheet_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--sheet", metavar="NAME", help="the sheet of an Excel workbook to read (default: its first sheet)"
    )


def _validation_arguments(parser: argparse.ArgumentParser) -> None:
    _sheet_argument(parser)
    parser.add_argument(
        "--mapping",
        type=Path,
        metavar="M.json",
        help="the connector's column mapping (docs/mapping.md); default: the documentation's column names",
    )
    parser.add_argument(
        "--rejected", type=Path, metavar="OUT.csv", help="write the rows set aside, with their reasons, here"
    )


def _configure_logging(verbose: bool) -> None:
    """Log lines to stderr; --verbose turns on DEBUG for every library (azure, msal, urllib3)."""
    root = logging.getLogger()
    if not any(getattr(h, "_hrconnector", False) for h in root.handlers):
        handler = _BarAwareHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        # A run's error is printed once, with the summary on stdout, not also as a log line.
        handler.addFilter(lambda record: not getattr(record, "run_error", False))
        handler._hrconnector = True  # type: ignore[attr-defined]
        root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbose else logging.WARNING)
    logging.getLogger("hrconnector_core").setLevel(logging.DEBUG if verbose else logging.INFO)
    logging.getLogger("hrconnector_core.pipeline.chunks").setLevel(logging.DEBUG if verbose else logging.WARNING)


def _secret(args: argparse.Namespace) -> str | None:
    given = [
        name
        for name, value in (
            ("--app-secret", args.app_secret),
            ("--app-secret-env", args.app_secret_env),
            ("--key-vault-url", args.key_vault_url),
            ("--certificate", args.certificate),
        )
        if value
    ]
    if len(given) > 1:
        raise ConfigurationError(f"give one credential, not {' and '.join(given)}")
    if not given:
        raise ConfigurationError(
            "no credential: give --app-secret-env VAR, --key-vault-url with --secret-name, "
            "--certificate or --app-secret"
        )
    if args.app_secret_env:
        value = os.environ.get(args.app_secret_env)
        if not value:
            raise ConfigurationError(f"environment variable {args.app_secret_env} is not set or empty")
        return value
    if args.key_vault_url:
        if not args.secret_name:
            raise ConfigurationError("--key-vault-url needs --secret-name")
        from .credentials import secret_from_key_vault

        return secret_from_key_vault(
            args.key_vault_url, args.secret_name, verify_challenge_resource=not args.key_vault_skip_challenge_check
        )
    return args.app_secret  # type: ignore[no-any-return]  # None when a certificate is used


def _client(args: argparse.Namespace, cloud: CloudEndpoints) -> IngestionClient:
    if not args.tenant_id or not args.app_id:
        raise ConfigurationError("--tenant-id and --app-id are required to upload")
    from azure.core.credentials import TokenCredential

    from .credentials import TokenProvider, certificate_credential, secret_credential
    from .ingestion import IngestionClient

    secret = _secret(args)
    password = os.environ.get(args.certificate_password_env) if args.certificate_password_env else None

    def credential() -> TokenCredential:  # a new one after a 401: its token cache starts empty
        if secret is not None:
            return secret_credential(args.tenant_id, args.app_id, secret, cloud)
        return certificate_credential(args.tenant_id, args.app_id, str(args.certificate), cloud, password=password)

    tokens = TokenProvider(credential(), cloud.scope, renew=credential)
    tokens.token()  # fail fast on a wrong app, tenant or secret, before reading the file
    return IngestionClient(cloud, args.job_id, tokens, file_name=sent_file_name(args.file.name))


class _BarAwareHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Log lines to stderr that never land on the progress bar's line: a line drawn there is
    ended first, and the bar is drawn again below at the next progress."""

    def emit(self, record: logging.LogRecord) -> None:
        bar = _ProgressPrinter.drawn
        if bar is not None and bar.stream is self.stream:
            bar.break_line()
        super().emit(record)


class _ProgressPrinter:
    """A bar on a terminal; on anything else a plain line at most every few seconds."""

    drawn: _ProgressPrinter | None = None  # the printer whose bar is on the terminal's last line

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._tty = stream.isatty()
        self._last = 0.0

    @property
    def stream(self) -> TextIO:
        return self._stream

    def break_line(self) -> None:
        """End the bar's line, so that what is written next starts on a line of its own."""
        self._stream.write("\n")
        _ProgressPrinter.drawn = None

    def __call__(self, p: Progress) -> None:
        pct = 100 * p.bytes_read / p.bytes_total if p.bytes_total else 100.0
        if self._tty:
            filled = int(pct / 5)
            self._stream.write(
                f"\r[{'#' * filled}{'.' * (20 - filled)}] {pct:5.1f}% read, "
                f"{p.chunks_done} chunks, {p.rows_uploaded} rows uploaded"
            )
            self._stream.flush()
            _ProgressPrinter.drawn = self
        elif time.monotonic() - self._last >= 5 or pct >= 100:
            self._last = time.monotonic()
            self._stream.write(f"progress: {pct:.0f}% read, {p.chunks_done} chunks, {p.rows_uploaded} rows uploaded\n")

    def end(self) -> None:
        if _ProgressPrinter.drawn is self:
            self.break_line()


def _summary(report: RunReport) -> str:
    r = report.rows
    parts = [
        (r.uploaded, "uploaded"),
        (r.previously_uploaded, "uploaded by an earlier run"),
        (r.planned, "planned"),
        (r.rejected, "rejected"),
        (r.skipped, "blank lines skipped"),
        (r.not_uploaded, "NOT uploaded"),
    ]
    counts = ", ".join(f"{n} {what}" for n, what in parts if n) or "nothing to upload"
    if report.not_run:
        return f"{report.file_name}: not run: {report.error}"
    if report.error and not r.rows_in and not report.chunks:  # a file-level error: its rows were never counted
        lines = [f"{report.file_name}: {report.status}: the file was not read through (see the error below)."]
    else:
        lines = [
            f"{report.file_name}: {report.status}: {r.rows_in} rows read: {counts}; "
            f"{len(report.chunks)} chunk(s) of up to {report.records_per_call} records in {report.duration_s:.1f} s."
        ]
    if report.issue_counts:
        lines.append(f"  {'severity':<8} {'code':<32} {'count':>7}  first rows")
    for code, count in sorted(report.issue_counts.items(), key=lambda item: (_severity_rank(report, item[0]), item[0])):
        listed = [i for i in report.issues if i.code == code]
        numbers = list(dict.fromkeys(i.row for i in listed if i.row))  # one row may hold several issues
        rows = ", ".join(map(str, numbers[:5])) + (", ..." if len(numbers) > 5 or count > len(listed) else "")
        severity = listed[0].severity.value if listed else ""
        lines.append(f"  {severity:<8} {code:<32} {count:>7}  {rows}")
        if listed:
            first = listed[0]
            column = f"{first.column}: " if first.column else ""
            lines.append(f"  {'':<8} {'':<32} {'':>7}  e.g. row {first.row}: {column}{first.message}")
    lines.extend(f"note: {note}" for note in report.notes)
    if report.error:
        lines.append(f"error: {report.error}")
    return "\n".join(lines)


def _severity_rank(report: RunReport, code: str) -> int:
    severity = next((i.severity for i in report.issues if i.code == code), Severity.INFO)
    return [Severity.ERROR, Severity.WARNING, Severity.INFO].index(severity)


def _write_report(report: RunReport, path: Path | None) -> None:
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(report.to_json(), encoding="utf-8")


def _existing_file(path: Path) -> LocalFileSource:
    if path.is_dir():
        raise ConfigurationError(f"{str(path)!r} is a directory: give the path of one file")
    if not path.is_file():
        raise ConfigurationError(f"no such file: {str(path)!r}")
    return LocalFileSource(path)


def _check_outputs(args: argparse.Namespace, inputs: list[Path]) -> None:
    """An output over an input would truncate it while it is read (the HR file, the mapping):
    refused by identity (a link, a hard link, another spelling of the path), not by name alone."""
    outputs = [(flag, getattr(args, attr, None)) for flag, attr in (("--rejected", "rejected"), ("--report", "report"))]
    given = [(flag, path) for flag, path in outputs if path is not None]
    for flag, out in given:
        for source in inputs:
            if _same_file(out, source):
                raise ConfigurationError(
                    f"{flag} {str(out)!r} is the input file {str(source)!r}: writing it would destroy the input. "
                    f"Give {flag} another path"
                )
    if len(given) == 2 and _same_file(given[0][1], given[1][1]):
        raise ConfigurationError("--rejected and --report name the same file: give each its own path")


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:  # one does not exist (yet): compare the paths as the OS would resolve them
        return os.path.normcase(os.path.realpath(a)) == os.path.normcase(os.path.realpath(b))


def validate(args: argparse.Namespace) -> int:
    source = _existing_file(args.file)
    _check_outputs(args, [args.file, *([args.mapping] if args.mapping else [])])
    mapping = load_mapping(args.mapping) if args.mapping else None
    options = UploadOptions(job_id="(validation)", dry_run=True, mapping=mapping, sheet=args.sheet)
    rejected = RejectedRowsWriter(args.rejected) if args.rejected else None
    report = run_upload(source, options, client=None, store=None, rejected_rows=rejected)
    _write_report(report, args.report)
    print(_summary(report))
    if rejected is not None and rejected.count:
        print(f"{rejected.count} rejected row(s) written to {args.rejected}")
    return EXIT_OK if report.status == "planned" else EXIT_INCOMPLETE


def mapping_infer(args: argparse.Namespace) -> int:
    source = _existing_file(args.file)
    with open_rows(source, sheet=args.sheet) as (rows, _):
        header = rows.header
    check_header(header)  # a data row would otherwise be echoed as "closest header" hints
    inference = infer_mapping(header)
    if inference.mapping is not None:
        print(json.dumps(inference.mapping.to_dict(), indent=2))
    if inference.mapping is None:
        print(f"no mapping: {inference.note}", file=sys.stderr)
        for key, fields in inference.unplaced.items():
            missing = describe_unplaced(fields)
            print(f"  {SCENARIOS[key].title}: not placed: {missing}", file=sys.stderr)
        return EXIT_INCOMPLETE
    if inference.note:
        print(f"note: {inference.note}", file=sys.stderr)
    return EXIT_OK


def upload(args: argparse.Namespace) -> int:
    cloud = resolve_cloud(
        args.cloud, authority_host=args.authority_host, ingestion_url=args.ingestion_url, resource=args.resource
    )
    source = _existing_file(args.file)
    _check_outputs(args, [args.file, *([args.mapping] if args.mapping else [])])
    mapping = load_mapping(args.mapping) if args.mapping else None
    store = LocalCheckpointStore(args.state_dir or default_state_dir())
    if not args.dry_run:
        store.ensure_writable()  # before a token is fetched or a row is sent
    client = None if args.dry_run else _client(args, cloud)
    options = UploadOptions(
        job_id=args.job_id,
        records_per_call=args.records_per_call,
        max_concurrency=args.max_concurrency,
        force=args.force,
        dry_run=args.dry_run,
        mapping=mapping,
        policy=Policy(args.policy),
        sheet=args.sheet,
    )
    rejected = RejectedRowsWriter(args.rejected) if args.rejected else None
    printer = _ProgressPrinter(sys.stderr)
    try:
        report = run_upload(source, options, client=client, store=store, progress=printer, rejected_rows=rejected)
    except RunInterrupted as stopped:
        printer.end()
        _write_report(stopped.report, args.report)
        print(_summary(stopped.report))
        return EXIT_TERMINATED if stopped.reason == "SIGTERM" else EXIT_INTERRUPTED
    printer.end()
    _write_report(report, args.report)
    print(_summary(report))
    if rejected is not None and rejected.count:
        print(f"{rejected.count} rejected row(s) written to {args.rejected}")
    if args.dry_run:
        for chunk in sorted(report.chunks, key=lambda c: c.index):
            print(
                f"  chunk {chunk.index}: rows {chunk.first_row}-{chunk.last_row}, "
                f"{chunk.records} records, {chunk.status}"
            )
    return EXIT_OK if report.status in ("succeeded", "planned") else EXIT_INCOMPLETE


class _Terminated(KeyboardInterrupt):
    """SIGTERM (a service manager stopping the run), handled as Ctrl-C is."""

    reason = "SIGTERM"


def _on_sigterm(signum: int, frame: object) -> None:
    raise _Terminated("SIGTERM")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _configure_logging(args.verbose)
    commands = {"upload": upload, "validate": validate, "mapping": mapping_infer, "status": status_command.run}
    previous = signal.signal(signal.SIGTERM, _on_sigterm) if _main_thread() else None
    try:
        code = commands[args.command](args)
        sys.stdout.flush()  # a closed pipe shows here, where it is handled, not at interpreter exit
        return code
    except (ConfigurationError, CredentialError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except HRConnectorError as exc:  # the file itself (mapping infer reads it outside the pipeline), state
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_INCOMPLETE
    except KeyboardInterrupt as exc:
        print("interrupted: the checkpoint keeps what was uploaded; run again to resume", file=sys.stderr)
        return EXIT_TERMINATED if isinstance(exc, _Terminated) else EXIT_INTERRUPTED
    except BrokenPipeError:  # `hrconnector validate ... | head`: the reader left; not an error of ours
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # so the interpreter's final flush does not fail again
        return EXIT_INCOMPLETE
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()
