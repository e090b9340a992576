"""The infrastructure: checkov over both templates, every file parses, terraform fmt, and both
templates set exactly the app settings hrconnector_core.settings reads and describe the same system."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import hcl2
import pytest
from pycep import BicepParser

from hrconnector_core.settings import APP_SETTINGS

from .conftest import REPO

INFRA = REPO / "infra"
BICEP_FILES = sorted((INFRA / "bicep").rglob("*.bicep"))
TF_FILES = sorted((INFRA / "terraform").glob("*.tf"))
CHECKOV = REPO / ".venv-infra" / "bin" / "checkov"
DEPLOYED = {s.name for s in APP_SETTINGS if s.deployed}
# Flex Consumption manages these itself; setting them breaks or is ignored.
FLEX_FORBIDDEN = ("FUNCTIONS_WORKER_RUNTIME", "FUNCTIONS_EXTENSION_VERSION", "WEBSITE_RUN_FROM_PACKAGE")
ROLE_IDS = {
    "b7e6dc6d-f1e8-4753-8033-0f276bb0955b": "Storage Blob Data Owner",
    "ba92f5b4-2d11-453d-a403-e96b0029c9fe": "Storage Blob Data Contributor",
    "974c5e8b-45b9-4653-ba55-5f855dd0fb88": "Storage Queue Data Contributor",
    "4633458b-17de-408a-b874-0445c86b69e6": "Key Vault Secrets User",
    "3913510d-42f4-4e42-8a64-420c390055eb": "Monitoring Metrics Publisher",
}


def bicep(path: Path) -> dict[str, Any]:
    parsed: dict[str, Any] = dict(BicepParser().parse(file_path=path))
    return parsed


def terraform(name: str) -> dict[str, Any]:
    with (INFRA / "terraform" / name).open(encoding="utf-8") as handle:
        return hcl2.load(handle)


def unquote(value: str) -> str:
    return value.strip('"')


# -- static analysis ------------------------------------------------------------------------------
@pytest.mark.parametrize("framework", ["bicep", "terraform"])
def test_checkov_passes_and_every_skip_says_why(framework: str, tmp_path: Path) -> None:
    assert CHECKOV.exists(), "checkov is missing: run scripts/bootstrap.sh"
    result = subprocess.run(
        [str(CHECKOV), "-d", str(INFRA / framework), "--framework", framework, "--skip-download", "-o", "json"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
        check=False,
    )
    report = json.loads(result.stdout)
    report = report[0] if isinstance(report, list) else report
    summary = report["summary"]
    failed = [f"{c['check_id']} {c['resource']}" for c in report["results"]["failed_checks"]]
    assert failed == [] and result.returncode == 0
    assert summary["parsing_errors"] == 0 and summary["passed"] > 20
    skips = [
        line.strip()
        for path in (INFRA / framework).rglob("*.*")
        for line in path.read_text(encoding="utf-8").splitlines()
        if "checkov:skip=" in line
    ]
    assert skips and all(re.search(r"checkov:skip=CKV2?_AZURE_\d+:\s*\S.{15,}", s) for s in skips), skips
    assert summary["skipped"] == len(report["results"]["skipped_checks"]) > 0


@pytest.mark.parametrize("path", BICEP_FILES, ids=lambda p: p.name)
def test_every_bicep_file_parses_and_describes_every_parameter(path: Path) -> None:
    parsed = bicep(path)
    assert parsed.get("resources") or parsed.get("modules")
    for name, parameter in parsed.get("parameters", {}).items():
        assert any(d["type"] == "description" for d in parameter["decorators"]), f"{path.name}: {name}"


@pytest.mark.parametrize("path", TF_FILES, ids=lambda p: p.name)
def test_every_terraform_file_parses(path: Path) -> None:
    with path.open(encoding="utf-8") as handle:
        assert hcl2.load(handle)


def test_every_terraform_variable_is_typed_and_described() -> None:
    for block in terraform("variables.tf")["variable"]:
        ((name, spec),) = block.items()
        assert {"type", "description"} <= set(spec), name


def test_terraform_fmt() -> None:
    if shutil.which("terraform") is None:
        pytest.skip("terraform is not installed on this machine")
    result = subprocess.run(
        ["terraform", "fmt", "-check", "-recursive", "-diff", str(INFRA / "terraform")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


# -- no drift between the code and the templates -------------------------------------------------
def bicep_app_settings() -> set[str]:
    function = bicep(INFRA / "bicep" / "main.bicep")["modules"]["function"]
    return set(function["config"]["params"]["appSettings"])


def terraform_app_settings() -> set[str]:
    (locals_,) = terraform("locals.tf")["locals"]
    names = set(locals_["app_settings"])
    main = (INFRA / "terraform" / "main.tf").read_text(encoding="utf-8")
    # The provider owns this one and sets it from site_config.
    if "application_insights_connection_string = azurerm_application_insights.hr.connection_string" in main:
        names.add("APPLICATIONINSIGHTS_CONNECTION_STRING")
    return names


def test_bicep_sets_exactly_the_deployed_settings_the_code_reads() -> None:
    assert bicep_app_settings() == DEPLOYED


def test_terraform_sets_exactly_the_deployed_settings_the_code_reads() -> None:
    assert terraform_app_settings() == DEPLOYED


def test_no_setting_flex_consumption_manages_itself() -> None:
    for path in [*BICEP_FILES, *TF_FILES]:
        lines = path.read_text(encoding="utf-8").splitlines()
        code = "\n".join(line for line in lines if not line.lstrip().startswith(("//", "#")))
        assert not [name for name in FLEX_FORBIDDEN if name in code], path.name


def test_the_templates_have_the_same_parameters() -> None:
    def snake(name: str) -> str:
        return re.sub(r"(?<!^)([A-Z])", r"_\1", name).lower()

    bicep_params = {snake(p) for p in bicep(INFRA / "bicep" / "main.bicep")["parameters"]}
    tf_vars = {unquote(next(iter(v))) for v in terraform("variables.tf")["variable"]}
    assert tf_vars - bicep_params == {"resource_group_name"}  # Bicep deploys into the deployment's group
    assert bicep_params - tf_vars == set()


def test_the_templates_create_the_same_containers_roles_and_alerts() -> None:
    main_bicep = bicep(INFRA / "bicep" / "main.bicep")
    bicep_containers = set(main_bicep["variables"]["containers"]["value"].values())
    (locals_,) = terraform("locals.tf")["locals"]
    assert bicep_containers == {unquote(v) for v in locals_["containers"].values()}
    assert {"hr-incoming", "hr-processed", "hr-reports", "hr-failed", "hr-state"} < bicep_containers

    bicep_text = "\n".join(p.read_text(encoding="utf-8") for p in BICEP_FILES)
    bicep_roles = {ROLE_IDS[g] for g in re.findall(r"'([0-9a-f-]{36})'", bicep_text) if g in ROLE_IDS}
    tf_roles = {unquote(v) for v in locals_["role"].values()}
    assert bicep_roles == tf_roles == set(ROLE_IDS.values())

    monitoring = bicep(INFRA / "bicep" / "modules" / "monitoring.bicep")
    bicep_alerts = {a["name"] for a in monitoring["variables"]["alerts"]["value"]}
    assert (
        bicep_alerts
        == {unquote(k) for k in locals_["alerts"]}
        == {
            "hr-run-failed",
            "hr-profile-not-refreshed",
            "hr-timer-stopped",
        }
    )


def test_the_event_subscription_targets_the_blob_function_and_filters_the_same_way() -> None:
    from hrconnector_core.emulator.host import registered_functions

    assert "hr_file_arrived" in registered_functions()
    for path in (INFRA / "bicep" / "modules" / "eventgrid.bicep", INFRA / "terraform" / "main.tf"):
        text = path.read_text(encoding="utf-8")
        assert "functionName=Host.Functions.hr_file_arrived" in text
        assert "blobs_extension" in text and "Microsoft.Storage.BlobCreated" in text
        assert "/blobServices/default/containers/" in text
        assert "'.csv'" in text or '".csv"' in text
    script = (INFRA / "scripts" / "subscribe-events.sh").read_text(encoding="utf-8")
    assert "functionName=Host.Functions.hr_file_arrived" in script and "--subject-ends-with .csv" in script


# -- the package -------------------------------------------------------------------------------------
def test_the_function_package_leaves_out_tests_infra_samples_and_the_emulator() -> None:
    ignored = {line.strip() for line in (REPO / ".funcignore").read_text().splitlines()}
    assert {"tests/", "infra/", "samples/", "benchmarks/", "hrconnector_core/emulator/"} <= ignored
    code = "import sys, function_app; print(sorted(m for m in sys.modules if m.startswith('hrconnector_core')))"
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    loaded = json.loads(result.stdout.replace("'", '"'))
    assert "hrconnector_core.service" in loaded
    assert not [m for m in loaded if m.startswith("hrconnector_core.emulator")]
