"""The infrastructure: checkov over both templates (cached by the templates' hash), every file parses,
terraform fmt, both templates set exactly the app settings hrconnector_core.settings lists and describe
the same system. The schema checks are in test_infra_schema.py, the role scopes in test_infra_roles.py."""

from __future__ import annotations

import copy
import hashlib
import json
import re
import shutil
import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import Any

import hcl2
import pytest
from pycep import BicepParser

from hrconnector_core.settings import APP_SETTINGS, STORAGE_CONNECTION

from .conftest import REPO

INFRA = REPO / "infra"
BICEP_FILES = sorted((INFRA / "bicep").rglob("*.bicep"))
TF_FILES = sorted((INFRA / "terraform").glob("*.tf"))
CHECKOV = REPO / ".venv-infra" / "bin" / "checkov"
CHECKOV_CACHE = REPO / ".venv-infra" / "cache"
DEPLOYED = {s.name for s in APP_SETTINGS if s.deployed}
# Flex Consumption manages these itself; setting them breaks or is ignored.
FLEX_FORBIDDEN = ("FUNCTIONS_WORKER_RUNTIME", "FUNCTIONS_EXTENSION_VERSION", "WEBSITE_RUN_FROM_PACKAGE")
ROLE_IDS = {
    "b7e6dc6d-f1e8-4753-8033-0f276bb0955b": "Storage Blob Data Owner",
    "ba92f5b4-2d11-453d-a403-e96b0029c9fe": "Storage Blob Data Contributor",
    "974c5e8b-45b9-4653-ba55-5f855dd0fb88": "Storage Queue Data Contributor",
    "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3": "Storage Table Data Contributor",
    "17d1049b-9a84-46fb-8f53-869881c3d3ab": "Storage Account Contributor",
    "4633458b-17de-408a-b874-0445c86b69e6": "Key Vault Secrets User",
    "3913510d-42f4-4e42-8a64-420c390055eb": "Monitoring Metrics Publisher",
}


@cache
def _parse_bicep(path: Path, mtime: float) -> dict[str, Any]:
    parsed: dict[str, Any] = dict(BicepParser().parse(file_path=path))
    return parsed


def bicep(path: Path) -> dict[str, Any]:
    """The parsed file, a fresh copy each call (tests mutate it to seed mistakes); parsed once."""
    return copy.deepcopy(_parse_bicep(path, path.stat().st_mtime))


@cache
def _parse_terraform(name: str, mtime: float) -> dict[str, Any]:
    with (INFRA / "terraform" / name).open(encoding="utf-8") as handle:
        parsed: dict[str, Any] = hcl2.load(handle)
    return parsed


def terraform(name: str) -> dict[str, Any]:
    return copy.deepcopy(_parse_terraform(name, (INFRA / "terraform" / name).stat().st_mtime))


def unquote(value: str) -> str:
    return value.strip('"')


# -- static analysis ------------------------------------------------------------------------------
def checkov_report(framework: str, scratch: Path) -> dict[str, Any]:
    """checkov's JSON report for infra/<framework>, cached under .venv-infra/cache by a hash of the
    templates and of checkov's pinned requirements: unchanged templates cost a file read."""
    sources = sorted(p for p in (INFRA / framework).rglob("*") if p.is_file())
    digest = hashlib.sha256((REPO / "requirements-infra.txt").read_bytes())
    for path in sources:
        digest.update(str(path.relative_to(INFRA)).encode() + b"\0" + path.read_bytes())
    cached = CHECKOV_CACHE / f"checkov-{framework}-{digest.hexdigest()[:16]}.json"
    if cached.exists():
        report: dict[str, Any] = json.loads(cached.read_text())
        return report
    assert CHECKOV.exists(), "checkov is missing: run scripts/bootstrap.sh"
    result = subprocess.run(
        [str(CHECKOV), "-d", str(INFRA / framework), "--framework", framework, "--skip-download", "-o", "json"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=scratch,
        check=False,
    )
    raw: Any = json.loads(result.stdout)
    report = raw[0] if isinstance(raw, list) else raw
    report["returncode"] = result.returncode
    write_cache(cached, json.dumps(report))
    return report


def write_cache(path: Path, text: str) -> None:
    """Write a cache entry atomically and drop the entries of the same kind it replaces."""
    path.parent.mkdir(parents=True, exist_ok=True)
    kind = path.name.rsplit("-", 1)[0]
    for old in path.parent.glob(f"{kind}-*.json"):
        if old != path and re.fullmatch(re.escape(kind) + r"-[0-9a-f]{16}\.json", old.name):
            old.unlink(missing_ok=True)
    path.with_suffix(".tmp").write_text(text)
    path.with_suffix(".tmp").replace(path)


@pytest.mark.parametrize("framework", ["bicep", "terraform"])
def test_checkov_passes_and_every_skip_says_why(framework: str, tmp_path: Path) -> None:
    report = checkov_report(framework, tmp_path)
    summary = report["summary"]
    failed = [f"{c['check_id']} {c['resource']}" for c in report["results"]["failed_checks"]]
    assert failed == [] and report["returncode"] == 0
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
# The one setting a template sets that the code does not list, on purpose: azurerm injects an
# AzureWebJobsStorage connection string with an empty key into every Flex Consumption app; the
# empty value overrides it so that the host uses the AzureWebJobsStorage__* identity settings.
TERRAFORM_ONLY = {"AzureWebJobsStorage": '""'}
# The identity-based connections (host storage and the blob trigger's HR storage): the settings the
# host and the blob extension read, in the service-URI form that holds in every cloud.
CONNECTIONS = {
    "AzureWebJobsStorage": {"__blobServiceUri", "__queueServiceUri", "__tableServiceUri", "__credential", "__clientId"},
    STORAGE_CONNECTION: {"__blobServiceUri", "__queueServiceUri", "__credential", "__clientId"},
}


def bicep_app_settings(parsed: dict[str, Any] | None = None) -> dict[str, Any]:
    main = parsed or bicep(INFRA / "bicep" / "main.bicep")
    settings: dict[str, Any] = main["modules"]["function"]["config"]["params"]["appSettings"]
    return settings


def terraform_app_settings(locals_: dict[str, Any] | None = None) -> dict[str, Any]:
    if locals_ is None:
        (locals_,) = terraform("locals.tf")["locals"]
    settings = dict(locals_["app_settings"])
    main = (INFRA / "terraform" / "main.tf").read_text(encoding="utf-8")
    # The provider owns this one and sets it from site_config.
    if "application_insights_connection_string = azurerm_application_insights.hr.connection_string" in main:
        settings["APPLICATIONINSIGHTS_CONNECTION_STRING"] = "site_config"
    return settings


def setting_drift(names: set[str]) -> dict[str, set[str]]:
    """What a template sets that no code reads, and what the code reads that it does not set."""
    return {"unknown": names - DEPLOYED, "missing": DEPLOYED - names}


def test_bicep_sets_exactly_the_deployed_settings_the_code_reads() -> None:
    assert setting_drift(set(bicep_app_settings())) == {"unknown": set(), "missing": set()}


def test_terraform_sets_exactly_the_deployed_settings_the_code_reads() -> None:
    settings = terraform_app_settings()
    for name, value in TERRAFORM_ONLY.items():
        assert settings.pop(name) == value, f"{name} must be set to {value}"
    assert setting_drift(set(settings)) == {"unknown": set(), "missing": set()}


def test_seeded_renamed_setting_is_caught() -> None:
    main = bicep(INFRA / "bicep" / "main.bicep")
    settings = bicep_app_settings(main)
    settings["HR_POLICIES"] = settings.pop("HR_POLICY")
    assert setting_drift(set(bicep_app_settings(main))) == {"unknown": {"HR_POLICIES"}, "missing": {"HR_POLICY"}}
    (locals_,) = terraform("locals.tf")["locals"]
    del locals_["app_settings"]["AzureWebJobsStorage__queueServiceUri"]
    drift = setting_drift(set(terraform_app_settings(locals_)) - set(TERRAFORM_ONLY))
    assert drift == {"unknown": set(), "missing": {"AzureWebJobsStorage__queueServiceUri"}}


@pytest.mark.parametrize("template", ["bicep", "terraform"])
def test_identity_connections_use_service_uris_of_the_right_account(template: str) -> None:
    settings = bicep_app_settings() if template == "bicep" else terraform_app_settings()
    for prefix, suffixes in CONNECTIONS.items():
        assert {n[len(prefix) :] for n in settings if n.startswith(prefix + "__")} == suffixes, prefix
        assert "managedidentity" in json.dumps(settings[prefix + "__credential"])
    # Each connection points at its own account: the host's at the host storage, HR_STORAGE at HR data.
    host = json.dumps([settings[f"AzureWebJobsStorage__{s}ServiceUri"] for s in ("blob", "queue", "table")])
    hr = json.dumps([settings[f"{STORAGE_CONNECTION}__{s}ServiceUri"] for s in ("blob", "queue")])
    if template == "bicep":
        assert host.count("hostStorage") == 3 and "hrStorage" not in host
        assert hr.count("hrStorage") == 2 and "hostStorage" not in hr
    else:
        assert host.count("azurerm_storage_account.host.primary_") == 3 and ".hr." not in host
        assert hr.count("azurerm_storage_account.hr.primary_") == 2 and ".host." not in hr


def test_no_setting_flex_consumption_manages_itself() -> None:
    for path in [*BICEP_FILES, *TF_FILES]:
        lines = path.read_text(encoding="utf-8").splitlines()
        code = "\n".join(line for line in lines if not line.lstrip().startswith(("//", "#")))
        assert not [name for name in FLEX_FORBIDDEN if name in code], path.name


def test_the_templates_have_the_same_parameters() -> None:
    def snake(name: str) -> str:
        return re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", name).lower()

    bicep_params = {snake(p) for p in bicep(INFRA / "bicep" / "main.bicep")["parameters"]}
    tf_vars = {unquote(next(iter(v))) for v in terraform("variables.tf")["variable"]}
    # Bicep deploys into the deployment's group and subscription; azurerm 4.x needs the subscription.
    assert tf_vars - bicep_params == {"resource_group_name", "subscription_id"}
    assert bicep_params - tf_vars == set()


def _default(parsed_params: dict[str, Any], name: str) -> Any:
    return parsed_params[name]["default"]


def _tf_default(name: str) -> Any:
    for block in terraform("variables.tf")["variable"]:
        ((label, spec),) = block.items()
        if unquote(label) == name:
            value = spec.get("default")
            return unquote(value) if isinstance(value, str) else value
    raise KeyError(name)


def test_the_templates_run_the_same_app_with_the_same_storage_settings() -> None:
    params = bicep(INFRA / "bicep" / "main.bicep")["parameters"]
    for bicep_name, tf_name in [
        ("pythonVersion", "python_version"),
        ("maximumInstanceCount", "maximum_instance_count"),
        ("instanceMemoryMB", "instance_memory_mb"),
        ("retentionDays", "retention_days"),
        ("recordsPerCall", "records_per_call"),
    ]:
        assert str(_default(params, bicep_name)) == str(_tf_default(tf_name)), bicep_name
    storage = bicep(INFRA / "bicep" / "modules" / "storage.bicep")["resources"]["account"]["config"]
    encryption = storage["properties"]["encryption"]
    assert encryption["requireInfrastructureEncryption"] is True
    assert {s: v["keyType"] for s, v in encryption["services"].items()} == {
        "blob": "Account",
        "queue": "Account",
        "table": "Account",
    }
    assert storage["sku"]["name"] == "Standard_ZRS" and storage["properties"]["minimumTlsVersion"] == "TLS1_2"
    for entry in terraform("main.tf")["resource"]:
        for label, named in entry.items():
            if unquote(label) == "azurerm_storage_account":
                for name, account in named.items():
                    assert account["infrastructure_encryption_enabled"] is True, name
                    # Blob encryption always uses the account key; queue and table must be asked for.
                    assert unquote(account["queue_encryption_key_type"]) == "Account", name
                    assert unquote(account["table_encryption_key_type"]) == "Account", name
                    assert unquote(account["account_replication_type"]) == "ZRS", name
                    assert unquote(account["min_tls_version"]) == "TLS1_2", name


def test_the_templates_have_the_same_outputs() -> None:
    bicep_outputs = set(bicep(INFRA / "bicep" / "main.bicep")["outputs"])
    tf_outputs = {unquote(next(iter(o))) for o in terraform("outputs.tf")["output"]}
    assert bicep_outputs == tf_outputs


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
    for path in (INFRA / "bicep" / "modules" / "eventsubscription.bicep", INFRA / "terraform" / "main.tf"):
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


# -- the azd hooks -------------------------------------------------------------------------------------
def _cli_flags(script: str) -> set[str]:
    command = script[script.index("event-subscription create") :]
    return set(re.findall(r"(--[a-z-]+)\s+\S", command))


def test_the_windows_hook_is_powershell_and_subscribes_exactly_like_the_shell_one() -> None:
    azure_yaml = (REPO / "azure.yaml").read_text(encoding="utf-8")
    windows = azure_yaml[azure_yaml.index("windows:") :]
    assert "shell: pwsh" in windows and "run: ./infra/scripts/subscribe-events.ps1" in windows
    assert "sh ./" not in windows  # no Git Bash needed
    posix = azure_yaml[azure_yaml.index("posix:") : azure_yaml.index("windows:")]
    assert "run: ./infra/scripts/subscribe-events.sh" in posix
    shell = (INFRA / "scripts" / "subscribe-events.sh").read_text(encoding="utf-8")
    pwsh = (INFRA / "scripts" / "subscribe-events.ps1").read_text(encoding="utf-8")
    assert _cli_flags(shell) == _cli_flags(pwsh) and len(_cli_flags(shell)) >= 12
    for flag in ("--subject-ends-with .csv", "--max-events-per-batch 1", "--deadletter-identity systemassigned"):
        assert flag in shell and flag in pwsh
    for name in ("AZURE_RESOURCE_GROUP", "AZURE_FUNCTION_NAME", "HR_STORAGE_ACCOUNT"):
        assert name in shell and name in pwsh  # outputs of both templates (test_the_templates_have_the_same_outputs)


# -- first deployment, redeployment, federation ---------------------------------------------------
def _conditional_resources_with_list_keys(parsed: dict[str, Any]) -> list[str]:
    return [
        name
        for name, resource in parsed.get("resources", {}).items()
        if isinstance(resource["config"], dict)
        and resource["config"].get("condition") is not None
        and re.search(r"list_?keys", json.dumps(resource["config"]), re.IGNORECASE)
    ]


def test_list_keys_is_only_evaluated_when_the_subscription_is_deployed() -> None:
    # ARM evaluates listKeys() in a resource whose condition is false; a module that is not
    # deployed is not evaluated. So listKeys lives in a module main.bicep deploys conditionally.
    for path in BICEP_FILES:
        assert _conditional_resources_with_list_keys(bicep(path)) == [], path.name
    users = [
        p.name
        for p in BICEP_FILES
        if any("listKeys(" in line and not line.lstrip().startswith("//") for line in p.read_text().splitlines())
    ]
    assert users == ["eventsubscription.bicep"]
    module = bicep(INFRA / "bicep" / "main.bicep")["modules"]["subscription"]
    assert module["detail"]["path"] == "modules/eventsubscription.bicep"
    assert module["config"]["condition"] == "subscribeEvents"
    # The seeded mistake of the old template: the subscription back in the topic's module, conditional.
    old = bicep(INFRA / "bicep" / "modules" / "eventsubscription.bicep")
    old["resources"]["subscription"]["config"] = {
        "condition": "subscribe",
        "config": old["resources"]["subscription"]["config"],
    }
    assert _conditional_resources_with_list_keys(old) == ["subscription"]


def test_the_federated_issuer_is_the_identitys_tenant_in_both_templates() -> None:
    issuer = bicep(INFRA / "bicep" / "main.bicep")["outputs"]["FEDERATED_CREDENTIAL"]["value"]["issuer"]
    assert "subscription().tenantId" in json.dumps(issuer) or "tenant_id" in json.dumps(issuer)
    text = (INFRA / "bicep" / "main.bicep").read_text(encoding="utf-8")
    assert "${subscription().tenantId}/v2.0" in text and "${tenantId}/v2.0" not in text
    outputs = (INFRA / "terraform" / "outputs.tf").read_text(encoding="utf-8")
    assert "${data.azurerm_subscription.current.tenant_id}/v2.0" in outputs and "local.tenant_id}/v2.0" not in outputs


def test_a_redeploy_within_the_soft_delete_period_can_reuse_or_rename_the_vault() -> None:
    main = bicep(INFRA / "bicep" / "main.bicep")
    assert main["parameters"]["keyVaultName"]["default"] == ""
    assert "keyVaultName" in json.dumps(main["modules"]["vault"]["config"]["params"]["name"])
    (provider,) = terraform("terraform.tf")["provider"]
    (key_vault,) = provider['"azurerm"']["features"][0]["key_vault"]
    assert key_vault["recover_soft_deleted_key_vaults"] is True
    assert key_vault["purge_soft_delete_on_destroy"] is False
    (locals_,) = terraform("locals.tf")["locals"]
    assert "var.key_vault_name" in locals_["key_vault_name"]
    assert "local.key_vault_name" in json.dumps(terraform("main.tf"))
