"""The README's first command: the Function's real code on the embedded default.

Starts Azurite (Blob Storage) and the HTTPS emulator (Entra, the managed-identity endpoint,
Key Vault and the HR connector's ingestion service), sets the Function's app settings, drops
every sample file into the incoming container, invokes the registered blob function for each as
the host would after an Event Grid event, runs the timer once, and shows what the containers
hold, what each report says, what the connector received, and `hrconnector status`. Reports are
copied to .demo/.

A second connector takes its files from an (emulated) SharePoint folder: a sample is dropped
there, the source timer copies it into hr-incoming, the blob function uploads the copy as it
would after Event Grid's event, and the source timer's next run moves the item to Processed with
its report beside it.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from hrconnector_core.cli import main as cli_main  # noqa: E402
from hrconnector_core.emulator import Emulator, EmulatorState  # noqa: E402
from hrconnector_core.emulator.__main__ import DEMO_APP, DEMO_JOB, DEMO_SECRET, DEMO_TENANT  # noqa: E402
from hrconnector_core.emulator.azurite import Azurite  # noqa: E402
from hrconnector_core.emulator.host import invoke_blob_trigger, invoke_timer, local_settings  # noqa: E402
from hrconnector_core.errors import HRConnectorError  # noqa: E402
from hrconnector_core.service import HRConnectorService  # noqa: E402
from hrconnector_core.settings import Settings  # noqa: E402

OUT = REPO / ".demo"
CONNECTOR = "demo"
IDENTITY = "33333333-3333-4333-8333-333333333333"  # the Function's user-assigned managed identity
SECRET_NAME = "hr-connector-app-secret"  # noqa: S105 - the name of the secret in the (emulated) vault
SP_CONNECTOR = "leavers-sp"  # the SharePoint-sourced connector
SP_JOB = "44444444-4444-4444-8444-444444444444"
SP_SITE, SP_FOLDER = ("contoso.sharepoint.com", "/sites/HR"), "HR/Exports"


def main() -> int:
    state = EmulatorState()
    state.register_app(DEMO_TENANT, DEMO_APP, DEMO_SECRET)
    state.register_job(DEMO_JOB, DEMO_APP)
    state.register_managed_identity(IDENTITY, DEMO_TENANT)
    state.set_secret(SECRET_NAME, DEMO_SECRET)
    state.register_job(SP_JOB, DEMO_APP)
    graph = state.graph
    site_id = graph.add_site(*SP_SITE)
    drive_id = graph.add_drive(site_id, "Documents")
    graph.ensure_folder(drive_id, SP_FOLDER)
    graph.grant_site(IDENTITY, site_id, "write")  # Sites.Selected: this site only (docs/deploy.md)
    OUT.mkdir(exist_ok=True)
    failures = 0
    with (
        Azurite(REPO, log_file=OUT / "azurite.log") as azurite,
        Emulator(state=state, ca_path=OUT / "emulator-ca.pem", data_dir=OUT / "emulator") as emulator,
    ):
        settings = local_settings(
            azurite.connection_string,
            emulator,
            connector=CONNECTOR,
            job_id=DEMO_JOB,
            tenant_id=DEMO_TENANT,
            app_id=DEMO_APP,
            identity=IDENTITY,
            secret_name=SECRET_NAME,
        )
        settings["HR_EXPECTED_EVERY_HOURS"] = "24"  # the HR system exports daily: status and the timer check it
        # Two connectors: the blob-fed one, and one whose files come from a SharePoint folder.
        settings["HR_CONNECTORS"] = json.dumps({
            CONNECTOR: {"job_id": DEMO_JOB},
            SP_CONNECTOR: {"job_id": SP_JOB, "source_site": "".join(SP_SITE), "source_folder": SP_FOLDER},
        })  # fmt: skip
        os.environ.update(settings)
        print(f"Azurite: {azurite.blob_endpoint}")
        print(f"emulator (Entra, managed identity, Key Vault, ingestion): {emulator.url}")
        service = HRConnectorService(Settings.from_env())
        service.ensure_containers()
        incoming = service.incoming.container_name

        print(f"\n1. Each sample dropped into {incoming}/{CONNECTOR}/, then the blob function invoked:")
        for sample in sorted((REPO / "samples").glob("*.csv")):
            name = f"{CONNECTOR}/{sample.name}"
            service.incoming.upload_blob(name, sample.read_bytes(), overwrite=True)
            try:
                invoke_blob_trigger("hr_file_arrived", incoming, name)
                print(f"   {name}: done")
            except HRConnectorError as exc:
                failures += 1
                print(f"   {name}: FAILED: {exc}")

        print("\n2. The same event delivered again (Event Grid delivers at least once):")
        invoke_blob_trigger("hr_file_arrived", incoming, f"{CONNECTOR}/resignation.csv")
        print(f"   {CONNECTOR}/resignation.csv: nothing to do, nothing sent")

        print("\n3. The timer (missed files, employee-profile refresh, retention):")
        invoke_timer("hr_schedule")
        print("   done")

        failures += sharepoint(graph, drive_id, service)

        print("\n5. What the containers hold:")
        for container in (service.incoming, service.processed, service.reports, service.failed, service.state):
            blobs = sorted(b.name for b in container.list_blobs())
            print(f"   {container.container_name}/ ({len(blobs)} blobs)")
            for blob in blobs:
                print(f"     {blob}")

        print("\n6. The reports (copied to .demo/reports/):")
        reports_dir = OUT / "reports"
        reports_dir.mkdir(exist_ok=True)
        for container in (service.processed, service.failed):
            for blob in sorted(b.name for b in container.list_blobs() if b.name.endswith(".report.json")):
                report = json.loads(container.get_blob_client(blob).download_blob().readall())
                (reports_dir / blob.rsplit("/", 1)[1]).write_text(json.dumps(report, indent=2), encoding="utf-8")
                rows = report["rows"]
                issues = ", ".join(f"{code} x{n}" for code, n in report["issues"]["counts"].items()) or "no issues"
                print(
                    f"   {report['file']['name']}: {report['status']}: {rows['in']} rows, {rows['uploaded']} uploaded, "
                    f"{rows['rejected']} rejected ({issues})"
                )

        for n, (name, job) in enumerate(((CONNECTOR, DEMO_JOB), (SP_CONNECTOR, SP_JOB))):
            log = state.log.get(job, [])
            print(
                f"\n7{'ab'[n]}. Connector {name!r}, job {job}: {len(log)} uploads, "
                f"{sum(e['RecordsSaved'] for e in log)} records saved (the portal's 'Download log'):"
            )
            for entry in log:
                print("   " + json.dumps({k: entry[k] for k in ("FileName", "RecordsSaved", "Status")}))

        print("\n8. The admin's view: hrconnector status (reads only hr-state and the reports):\n")
        sys.stdout.flush()
        status_code = cli_main(["status", "--connection-string-env", "HR_STORAGE"])
        print(f"   (exit {status_code}: {'something needs attention' if status_code else 'all well'})")
    return 1 if failures else 0


def sharepoint(graph: Any, drive_id: str, service: HRConnectorService) -> int:
    """The SharePoint-sourced connector: drop, source timer, blob function, source timer."""
    where = f"{''.join(SP_SITE)} / Documents / {SP_FOLDER}"
    print(f"\n4. Connector {SP_CONNECTOR!r} takes its files from SharePoint ({where}):")
    invoke_timer("hr_graph_source")
    print("   the source timer's first run: the folder's content so far is a baseline (nothing copied)")
    graph.put_file(drive_id, f"{SP_FOLDER}/resignation.csv", (REPO / "samples" / "resignation.csv").read_bytes())
    print(f"   resignation.csv dropped into {SP_FOLDER}/")
    invoke_timer("hr_graph_source")
    incoming = service.incoming.container_name
    copied = sorted(b.name for b in service.incoming.list_blobs(name_starts_with=f"{SP_CONNECTOR}/"))
    print(f"   the source timer copied it: {', '.join(f'{incoming}/{n}' for n in copied) or 'NOTHING'}")
    failures = 0 if copied else 1
    for name in copied:
        try:
            invoke_blob_trigger("hr_file_arrived", incoming, name)
            print(f"   the blob function (as after Event Grid's event) uploaded {name}")
        except HRConnectorError as exc:
            failures += 1
            print(f"   {name}: FAILED: {exc}")
    invoke_timer("hr_graph_source")
    print(f"   the source timer's next run; the SharePoint folder {SP_FOLDER}/ now holds:")
    top = graph.children(drive_id, SP_FOLDER)
    moved = graph.children(drive_id, f"{SP_FOLDER}/Processed") if "Processed" in top else {}
    for prefix, listing in (("", top), ("Processed/", moved)):
        for name, item in sorted(listing.items()):
            kind = "folder" if "folder" in item else f"{item.get('size', '?')} bytes"
            print(f"     {prefix}{name} ({kind})")
    if "resignation.csv" not in moved or "resignation.csv.report.json" not in moved:
        failures += 1
        print("   FAILED: resignation.csv was not moved to Processed with its report")
    return failures


if __name__ == "__main__":
    sys.exit(main())
