"""`python -m hrconnector_core.emulator`: run the emulator until interrupted.

Prints one JSON line on stdout with the URL and the CA file (and writes it to --ready-file), so
scripts can point clients at it with REQUESTS_CA_BUNDLE=<ca> and --authority-host/--ingestion-url
<url> (the Graph folder source: HR_GRAPH_URL=<url>); then, on stderr, what it accepts (tenants,
apps, secrets, jobs, Key Vault secrets, Graph sites) and the commands that use it.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
from pathlib import Path

from .server import Emulator
from .state import EmulatorState

DEMO_TENANT = "00000000-0000-4000-8000-000000000001"
DEMO_APP = "11111111-1111-4111-8111-111111111111"
DEMO_SECRET = "emulator-demo-secret"  # noqa: S105 - a public test value for the local emulator only
DEMO_JOB = "22222222-2222-4222-8222-222222222222"
DEMO_IDENTITY = "33333333-3333-4333-8333-333333333333"  # a managed identity (Function runs), may read the vault
DEMO_SECRET_ENV = "HRCONNECTOR_DEMO_SECRET"  # noqa: S105 - a variable name, read by demo_upload_command


def demo_upload_command(url: str, file: Path, *extra: str) -> list[str]:
    """`hrconnector upload` of `file` as the demo app to an emulator at `url` (demo, benchmarks).

    The secret is read from DEMO_SECRET_ENV; the caller sets it to DEMO_SECRET.
    """
    return [
        sys.executable, "-m", "hrconnector_core", "upload",
        "--tenant-id", DEMO_TENANT, "--app-id", DEMO_APP, "--app-secret-env", DEMO_SECRET_ENV,
        "--job-id", DEMO_JOB, "--file", str(file), "--authority-host", url, "--ingestion-url", url,
        *extra,
    ]  # fmt: skip


def _vault_secret(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not name or not all(c.isalnum() or c == "-" for c in name):
        raise argparse.ArgumentTypeError("expected NAME or NAME=VALUE (a Key Vault secret name: letters, digits, -)")
    return name, value if sep else DEMO_SECRET


def _graph_site(text: str) -> tuple[str, str]:
    host, _, path = text.removeprefix("https://").partition("/")
    if "." not in host:
        raise argparse.ArgumentTypeError("expected HOST/PATH, e.g. contoso.sharepoint.com/sites/HR")
    return host, "/" + path.strip("/")


def usage_text(url: str, ca_file: str, state: EmulatorState, vault_names: list[str], given_apps: set[str]) -> str:
    """What the emulator accepts and how to point the command line at it (printed at start)."""
    lines = [f"HR connector emulator at {url} (Entra token endpoint, ingestion API, Key Vault, Graph in one)", ""]
    lines.append("apps it accepts (tenant / app id / secret):")
    for (tenant, app_id), app in sorted(state.apps.items()):
        shown = "(the secret given with --app)" if app_id in given_apps else (app.secret or "(a certificate)")
        lines.append(f"  {tenant} / {app_id} / {shown}")
    lines.append("jobs (job id -> the app that owns it):")
    lines.extend(f"  {job} -> {app}" for job, app in sorted(state.jobs.items()))
    if vault_names:
        lines.append(f"Key Vault secrets (readable by {', '.join(sorted(state.vault_readers))}):")
        lines.extend(f"  {name}" for name in vault_names)
    lines += [
        "",
        "point the command line at it:",
        f"  export REQUESTS_CA_BUNDLE={ca_file}",
        f"  export {DEMO_SECRET_ENV}={DEMO_SECRET}",
        f"  hrconnector upload --tenant-id {DEMO_TENANT} --app-id {DEMO_APP} --app-secret-env {DEMO_SECRET_ENV} \\",
        f"    --job-id {DEMO_JOB} --authority-host {url} --ingestion-url {url} --file samples/resignation.csv",
    ]
    if vault_names:
        lines += [
            "with the secret from its Key Vault (DefaultAzureCredential signs in as its managed identity):",
            f"  export AZURE_CLIENT_ID={DEMO_IDENTITY} IDENTITY_ENDPOINT={url}/msi/token \\",
            f"    IDENTITY_HEADER={state.identity_header}",
            f"  hrconnector upload --tenant-id {DEMO_TENANT} --app-id {DEMO_APP} --key-vault-url {url} \\",
            f"    --secret-name {vault_names[0]} --key-vault-skip-challenge-check --job-id {DEMO_JOB} \\",
            f"    --authority-host {url} --ingestion-url {url} --file samples/resignation.csv",
        ]
    graph = state.graph
    lines.append(f"Microsoft Graph drive API: HR_GRAPH_URL={url} (requests go to {url}/v1.0/...)")
    for drive in graph.drives.values():
        site = graph.sites[drive.site_id]
        readers = sorted(c for (c, s), _ in graph.grants.items() if s == site.id)
        lines.append(f"  site {site.hostname}{site.path} ({site.id}), library {drive.name} ({drive.id})")
        lines.append(f"    granted to {', '.join(readers) or 'nobody'}; drop files: POST {url}/admin/graph/files")
    if graph.drives:
        lines.append(
            f"  as the demo identity: AZURE_CLIENT_ID={DEMO_IDENTITY} IDENTITY_ENDPOINT={url}/msi/token "
            f"IDENTITY_HEADER={state.identity_header}"
        )
    lines.append(f"rows received: GET {url}/api/jobs/<job id>/log (with the CA above)")
    return "\n".join(lines)


def _registration(text: str, parts: int, what: str) -> list[str]:
    values = text.split(":", parts - 1)
    if len(values) != parts or not all(values):
        raise argparse.ArgumentTypeError(f"expected {what}")
    return values


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m hrconnector_core.emulator",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s)")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument(
        "--ca-file", type=Path, default=Path(".demo/emulator-ca.pem"), help="where to write the CA certificate"
    )
    parser.add_argument("--data-dir", type=Path, default=Path(".demo/emulator"), help="per-job logs are written here")
    parser.add_argument("--ready-file", type=Path, help="write the URL and CA path as JSON here once listening")
    parser.add_argument(
        "--app",
        action="append",
        default=[],
        metavar="TENANT:APPID:SECRET",
        type=lambda t: _registration(t, 3, "TENANT:APPID:SECRET"),
        help="also accept this app (client credentials with this secret); repeatable",
    )
    parser.add_argument(
        "--job",
        action="append",
        default=[],
        metavar="JOBID:APPID",
        type=lambda t: _registration(t, 2, "JOBID:APPID"),
        help="a connector job owned by this app (uploads by another app get 403); repeatable",
    )
    parser.add_argument(
        "--key-vault-secret",
        action="append",
        default=[],
        metavar="NAME[=VALUE]",
        type=_vault_secret,
        help="put a secret into the emulator's Key Vault (default value: the demo app's secret), readable by a demo "
        "managed identity, for trying --key-vault-url; repeatable",
    )
    parser.add_argument(
        "--graph-site",
        action="append",
        default=[],
        metavar="HOST/PATH",
        type=_graph_site,
        help="an emulated SharePoint site (e.g. contoso.sharepoint.com/sites/HR) with a Documents library, "
        "granted (Sites.Selected, write) to the demo managed identity; repeatable",
    )
    parser.add_argument("--no-demo", action="store_true", help="do not register the demo tenant, app and job")
    parser.add_argument("--discard-rows", action="store_true", help="count rows but do not keep them (benchmarks)")
    faults = parser.add_argument_group("fault injection (ingestion only; Graph: POST /admin/graph/faults)")
    faults.add_argument("--rate-429", type=float, default=0.0, help="share of uploads answered 429 (0-1)")
    faults.add_argument("--rate-503", type=float, default=0.0, help="share of uploads answered 503 (0-1)")
    faults.add_argument("--rate-drop", type=float, default=0.0, help="hang up without an answer")
    faults.add_argument(
        "--rate-lost-response", type=float, default=0.0, help="record the rows, then hang up without an answer"
    )
    faults.add_argument("--retry-after", type=int, default=1, help="seconds, sent with 429")
    faults.add_argument("--latency-ms", type=int, default=0, help="added to every upload")
    faults.add_argument("--bandwidth", type=int, default=0, help="bytes per second per upload; 0: no cap")
    faults.add_argument("--seed", type=int, help="random seed, for repeatable fault sequences")
    parser.add_argument("--verbose", action="store_true", help="log every request (debug)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING)

    state = EmulatorState(keep_rows=not args.discard_rows)
    if not args.no_demo:
        state.register_app(DEMO_TENANT, DEMO_APP, DEMO_SECRET)
        state.register_job(DEMO_JOB, DEMO_APP)
    for tenant, app, secret in args.app:
        state.register_app(tenant, app, secret)
    for job, app in args.job:
        state.register_job(job, app)
    for name, value in args.key_vault_secret:
        state.set_secret(name, value)
    for host, path in args.graph_site:
        site_id = state.graph.add_site(host, path)
        state.graph.add_drive(site_id, "Documents")
        state.graph.grant_site(DEMO_IDENTITY, site_id, "write")
    if args.key_vault_secret or args.graph_site:
        # The identity DefaultAzureCredential finds (App Service's managed-identity protocol): it may read the vault.
        state.register_managed_identity(DEMO_IDENTITY, DEMO_TENANT, vault_reader=bool(args.key_vault_secret))
    state.set_faults(
        rate_429=args.rate_429,
        rate_503=args.rate_503,
        rate_drop=args.rate_drop,
        rate_lost_response=args.rate_lost_response,
        retry_after_seconds=args.retry_after,
        latency_ms=args.latency_ms,
        bandwidth_bytes_per_s=args.bandwidth,
        seed=args.seed,
    )

    emulator = Emulator(host=args.host, port=args.port, state=state, ca_path=args.ca_file, data_dir=args.data_dir)
    emulator.start()
    ready: dict[str, object] = {
        "url": emulator.url,
        "ca_file": str(args.ca_file.resolve()),
        "data_dir": str(args.data_dir.resolve()),
        "graph_url": emulator.url,
        "graph_sites": [
            {"site": f"{state.graph.sites[d.site_id].hostname}{state.graph.sites[d.site_id].path}",
             "site_id": d.site_id, "drive_id": d.id, "library": d.name}
            for d in state.graph.drives.values()
        ],
    }  # fmt: skip
    if args.ready_file:
        args.ready_file.parent.mkdir(parents=True, exist_ok=True)
        args.ready_file.write_text(json.dumps(ready), encoding="utf-8")
    print(json.dumps(ready), flush=True)
    vault_names = [name for name, _ in args.key_vault_secret]
    given = {app.lower() for _, app, _ in args.app}
    print(usage_text(emulator.url, str(ready["ca_file"]), state, vault_names, given), file=sys.stderr, flush=True)

    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    emulator.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
