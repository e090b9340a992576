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

from hrconnector_core import service
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
    # Something parsed (an empty result would pass the rest); connector.bicep only checks its parameters.
    assert parsed.get("resources") or parsed.get("modules") or path.name == "connector.bicep"
    assert parsed.get("parameters")
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
    bicep_alert_list = monitoring["variables"]["alerts"]["value"]
    bicep_alerts = {a["name"] for a in bicep_alert_list}
    assert (
        bicep_alerts
        == {unquote(k) for k in locals_["alerts"]}
        == {"hr-run-failed", "hr-profile-not-refreshed", "hr-export-overdue", "hr-timer-stopped"}
    )
    # Every alert dimension the code logs has a rule that looks for it, in both templates.
    for dimension in (service.PROFILE_ALERT, service.EXPORT_ALERT):
        wanted = f'customDimensions["hr.alert"]) == "{dimension}"'
        assert any(wanted in a["query"] for a in bicep_alert_list), dimension
        assert any(wanted in a["query"][1:-1].replace('\\"', '"') for a in locals_["alerts"].values()), dimension


def test_the_event_subscription_targets_the_blob_function_and_filters_the_same_way() -> None:
    from hrconnector_core.emulator.host import registered_functions

    assert "hr_file_arrived" in registered_functions()
    for path in (INFRA / "bicep" / "modules" / "eventsubscription.bicep", INFRA / "terraform" / "main.tf"):
        text = path.read_text(encoding="utf-8")
        assert "functionName=Host.Functions.hr_file_arrived" in text
        assert "blobs_extension" in text and "Microsoft.Storage.BlobCreated" in text
        assert "/blobServices/default/containers/" in text
        suffixes = re.findall(r"""['"](\.\w+)['"]""", text)
        assert set(service.INPUT_SUFFIXES) <= set(suffixes)  # an event for every file hr-incoming takes
        assert "subjectEndsWith" not in text and "subject_ends_with" not in text
    script = (INFRA / "scripts" / "subscribe-events.sh").read_text(encoding="utf-8")
    assert "functionName=Host.Functions.hr_file_arrived" in script
    assert "--advanced-filter subject StringEndsWith .csv .xlsx" in script


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
    filters = "--advanced-filter subject StringEndsWith .csv .xlsx"
    for flag in (filters, "--max-events-per-batch 1", "--deadletter-identity systemassigned"):
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
    module = bicep(INFRA / "bicep" / "main.bicep")["modules"]["eventSubscription"]
    assert module["detail"]["path"] == "modules/eventsubscription.bicep"
    assert module["config"]["condition"] == "subscribeEvents"
    # The seeded mistake of the old template: the subscription back in the topic's module, conditional.
    old = bicep(INFRA / "bicep" / "modules" / "eventsubscription.bicep")
    old["resources"]["webhookSubscription"]["config"] = {
        "condition": "subscribe",
        "config": old["resources"]["webhookSubscription"]["config"],
    }
    assert _conditional_resources_with_list_keys(old) == ["webhookSubscription"]


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


# -- Bicep symbols that hide a built-in function (BCP265) --------------------------------------------
# Bicep's built-in functions, az and sys namespaces (learn.microsoft.com/azure/azure-resource-manager/
# bicep/bicep-functions). A parameter, variable, resource, module, type, function, import or loop
# variable of the same name hides the function in that file: `subscription().id` then fails with
# BCP265 ("is not a function"). Outputs live in another namespace and hide nothing.
_BICEP_FUNCTION_NAMES = """
    any array concat contains empty indexOf first flatten intersection last lastIndexOf length min max range
    skip take union parseCidr cidrSubnet cidrHost dateTimeAdd dateTimeFromEpoch dateTimeToEpoch utcNow
    deployer deployment environment loadFileAsBase64 loadJsonContent loadYamlContent loadTextContent
    loadDirectoryFileInfo filter groupBy map mapValues reduce sort toObject bool int json items
    objectKeys shallowMerge readEnvironmentVariable externalInput getSecret extensionResourceId
    listAccountSas listKeys listSecrets managementGroupResourceId pickZones providers reference resourceId
    subscriptionResourceId tenantResourceId toLogicalZone toLogicalZones toPhysicalZone toPhysicalZones
    managementGroup resourceGroup subscription tenant base64 base64ToJson base64ToString dataUri
    dataUriToString endsWith format guid join newGuid padLeft replace split startsWith string substring
    toLower toUpper trim uniqueString uri uriComponent uriComponentToString tryGet buildUri parseUri fail
"""
BICEP_FUNCTIONS = frozenset(_BICEP_FUNCTION_NAMES.split())
_DECLARATION = re.compile(r"^\s*(?:@\w+\([^)]*\)\s*)*(param|var|resource|module|type|func)\s+(\w+)", re.M)
_LOOP_VARIABLE = re.compile(r"\[\s*for\s+(?:\(\s*(\w+)\s*,\s*(\w+)\s*\)|(\w+))\s+in\b")
_LAMBDA_VARIABLE = re.compile(r"(?:\(\s*(\w+)(?:\s*,\s*(\w+))?\s*\)|\b(\w+))\s*=>")


def shadowed_functions(text: str) -> list[str]:
    """Declared names (comments left out) that are also a built-in function's name."""
    # One pass, left to right: a quote inside a comment or a // inside a string is not misread.
    code = re.sub(r"//[^\n]*|/\*.*?\*/|'(?:[^'\\\n]|\\.)*'", lambda m: "''" if m[0][0] == "'" else "", text, flags=re.S)
    names = {f"{kind} {name}" for kind, name in _DECLARATION.findall(code)}
    for groups in _LOOP_VARIABLE.findall(code) + _LAMBDA_VARIABLE.findall(code):
        names |= {f"loop or lambda variable {name}" for name in groups if name}
    return sorted(n for n in names if n.split()[-1] in BICEP_FUNCTIONS)


@pytest.mark.parametrize("path", BICEP_FILES, ids=lambda p: p.name)
def test_no_bicep_symbol_hides_a_built_in_function(path: Path) -> None:
    assert shadowed_functions(path.read_text(encoding="utf-8")) == []


def test_seeded_symbols_that_hide_functions_are_caught() -> None:
    seeded = """
param location string = resourceGroup().location // the group's location; module subscription
var environment = 'x'
@batchSize(1)
module subscription 'modules/eventsubscription.bicep' = if (on) {
  name: 'module tenant // in a string: not a declaration'
  url: 'https://example.com/x' // it's a comment
}
resource reference 'Microsoft.Storage/storageAccounts@2023-05-01' existing = { name: 'a' }
output subscription string = subscription().id
var names = [for (range, i) in items: range]
var upper = map(names, string => toUpper(string))
"""
    assert shadowed_functions(seeded) == [
        "loop or lambda variable range",
        "loop or lambda variable string",
        "module subscription",
        "resource reference",
        "var environment",
    ]


# -- the same limits on the same inputs ----------------------------------------------------------------
GUID = "^[0-9a-fA-F-]{36}$"


def test_bicep_refuses_an_empty_app_id_or_job_id_as_terraform_does() -> None:
    main = bicep(INFRA / "bicep" / "main.bicep")
    limits = {d["type"]: d["argument"] for d in main["parameters"]["appId"]["decorators"]}
    assert limits["min_length"] == limits["max_length"] == 36
    # Each connector's job_id goes, once per connector, to a parameter of the same limits.
    check = main["modules"]["connectorChecks"]
    assert check["detail"]["path"] == "modules/connector.bicep"
    loop = check["config"]["loop_type"]["detail"]["array_name"]
    assert loop == {"function": {"type": "items", "parameters": {"arg_1": "connectors"}}}
    job_id = json.dumps(check["config"]["config"]["params"]["jobId"])
    assert '"operand_1": "connector"' in job_id and '"operand_2": "job_id"' in job_id
    module = bicep(INFRA / "bicep" / "modules" / "connector.bicep")
    job_limits = {d["type"]: d["argument"] for d in module["parameters"]["jobId"]["decorators"]}
    assert job_limits["min_length"] == job_limits["max_length"] == 36
    assert module.get("resources", {}) == {}  # it deploys nothing
    variables = (INFRA / "terraform" / "variables.tf").read_text(encoding="utf-8")
    assert variables.count(GUID) == 2  # app_id and each connector's job_id


# The connectors of docs/function.md's example (its placeholders made GUIDs): strings, a number and a
# `mapping` object side by side in one connector.
def documented_connectors() -> dict[str, Any]:
    text = (REPO / "docs" / "function.md").read_text(encoding="utf-8")
    example = re.search(r"```json\n(\{\s*\"leavers\".*?)```", text, re.S)
    assert example, "the connectors example of docs/function.md"
    connectors: dict[str, Any] = json.loads(example.group(1).replace("\u2026", "00000000-0000-0000-0000-000000000000"))
    assert any(isinstance(c.get("mapping"), dict) for c in connectors.values())
    return connectors


def terraform_variables_accept(values: dict[str, Any], scratch: Path) -> tuple[bool, str]:
    """Plans variables.tf alone (no provider, offline) with `values`: the type and validations decide."""
    shutil.copy(INFRA / "terraform" / "variables.tf", scratch / "variables.tf")
    (scratch / "values.auto.tfvars.json").write_text(json.dumps(values), encoding="utf-8")
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(scratch), "TF_IN_AUTOMATION": "1"}
    env["CHECKPOINT_DISABLE"] = "1"  # no version check over the network
    run = [shutil.which("terraform") or "terraform", "-chdir=" + str(scratch)]
    subprocess.run([*run, "init", "-input=false", "-no-color"], env=env, capture_output=True, check=True)
    plan = subprocess.run([*run, "plan", "-input=false", "-no-color"], env=env, capture_output=True, text=True)
    return plan.returncode == 0, plan.stdout + plan.stderr


REQUIRED = {"environment_name": "hrprod", "resource_group_name": "rg", "location": "eastus2"}
APP_ID = "00000000-0000-0000-0000-000000000000"


@pytest.mark.skipif(shutil.which("terraform") is None, reason="terraform not installed")
def test_terraform_accepts_the_documented_connectors_and_refuses_empty_ids(tmp_path: Path) -> None:
    documented = {**REQUIRED, "app_id": APP_ID, "connectors": documented_connectors()}
    ok, output = terraform_variables_accept(documented, tmp_path)
    assert ok, output
    # The example file too, and its commented connector once uncommented (the same shape in HCL).
    example = (INFRA / "terraform" / "terraform.tfvars.example").read_text(encoding="utf-8")
    uncommented = re.sub(r"^  # (?=\s*(?:\w+ +=|\}))", "  ", example, flags=re.M).replace(
        '"<job id>"', '"' + APP_ID + '"'
    )
    for tfvars in (example, uncommented):
        (tmp_path / "terraform.tfvars").write_text(tfvars, encoding="utf-8")
        ok, output = terraform_variables_accept({}, tmp_path)
        assert ok, output
    (tmp_path / "terraform.tfvars").unlink()
    main = {"job_id": APP_ID}
    for values, message in [
        ({"app_id": APP_ID, "connectors": {"main": {"job_id": ""}}}, "each with a job_id that is a GUID"),
        ({"app_id": APP_ID, "connectors": {"main": {"records_per_call": 10}}}, "each with a job_id that is a GUID"),
        ({"app_id": APP_ID, "connectors": {}}, "At least one connector"),
        ({"app_id": "", "connectors": {"main": main}}, "An app (client) id is a GUID"),
    ]:
        ok, output = terraform_variables_accept({**REQUIRED, **values}, tmp_path)
        assert not ok and message in " ".join(output.split()), (values, output)


# -- the hooks, run against a stand-in `az` (the network edge) -----------------------------------------
FAKE_AZ = r"""#!/bin/sh
printf '%s\n' "$*" >> "$AZ_LOG"
case "$*" in
  "eventgrid system-topic list"*) echo evgt-hr ;;
  "storage account show"*) echo /subscriptions/s/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/sthr ;;
  "functionapp show"*) echo func-hr.azurewebsites.net ;;
  "functionapp keys list"*)
    calls=$(grep -c "^functionapp keys list" "$AZ_LOG")
    if [ "$calls" -eq 1 ]; then echo "ERROR: (ServiceUnavailable) the host is starting" >&2; exit 1; fi
    if [ "$calls" -ge "$KEY_FROM_CALL" ]; then echo "s3cr3t/Key+Q=="; fi ;;
  "eventgrid system-topic event-subscription create"*) for arg in "$@"; do printf '%s\n' "$arg"; done > "$AZ_CREATE" ;;
  *) echo "unexpected az call: $*" >&2; exit 2 ;;
esac
"""
HOOK_ENV = {"AZURE_RESOURCE_GROUP": "rg", "AZURE_FUNCTION_NAME": "func-hr", "HR_STORAGE_ACCOUNT": "sthr"}


def run_shell_hook(tmp_path: Path, key_from_call: int, attempts: int) -> tuple[subprocess.CompletedProcess[str], Path]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "az").write_text(FAKE_AZ, encoding="utf-8")
    (bin_dir / "az").chmod(0o755)
    env = {
        **HOOK_ENV,
        "PATH": f"{bin_dir}:/usr/bin:/bin",
        "AZ_LOG": str(tmp_path / "calls"),
        "AZ_CREATE": str(tmp_path / "create"),
        "KEY_FROM_CALL": str(key_from_call),
        "HR_HOOK_KEY_ATTEMPTS": str(attempts),
        "HR_HOOK_KEY_WAIT_SECONDS": "0",
    }
    hook = INFRA / "scripts" / "subscribe-events.sh"
    result = subprocess.run(["sh", str(hook)], env=env, capture_output=True, text=True, timeout=60)
    return result, tmp_path


def test_the_shell_hook_waits_for_the_key_then_subscribes_with_the_whole_url(tmp_path: Path) -> None:
    result, where = run_shell_hook(tmp_path, key_from_call=3, attempts=18)
    assert result.returncode == 0, result.stderr
    calls = (where / "calls").read_text().splitlines()
    assert sum(c.startswith("functionapp keys list") for c in calls) == 3  # an error, nothing, the key
    args = (where / "create").read_text().splitlines()
    assert args[args.index("--endpoint") + 1] == (
        "https://func-hr.azurewebsites.net/runtime/webhooks/blobs"
        "?functionName=Host.Functions.hr_file_arrived&code=s3cr3t/Key+Q=="
    )
    assert "s3cr3t" not in result.stdout + result.stderr


def test_the_shell_hook_gives_up_after_its_attempts_with_what_to_do(tmp_path: Path) -> None:
    result, where = run_shell_hook(tmp_path, key_from_call=99, attempts=4)
    assert result.returncode == 1
    assert "after 4 attempts" in result.stderr and "re-run azd deploy" in result.stderr
    calls = (where / "calls").read_text().splitlines()
    assert sum(c.startswith("functionapp keys list") for c in calls) == 4
    assert not (where / "create").exists()


def test_the_powershell_hook_waits_the_same_way_and_quotes_the_url_for_az_cmd() -> None:
    pwsh = (INFRA / "scripts" / "subscribe-events.ps1").read_text(encoding="utf-8")
    shell = (INFRA / "scripts" / "subscribe-events.sh").read_text(encoding="utf-8")
    for setting in ("HR_HOOK_KEY_ATTEMPTS", "HR_HOOK_KEY_WAIT_SECONDS", "re-run azd deploy"):
        assert setting in pwsh and setting in shell
    assert re.search(r"for \(\$attempt = 1; \$attempt -le \$attempts; \$attempt\+\+\)", pwsh)
    assert "Start-Sleep -Seconds $waitSeconds" in pwsh
    # az is az.cmd on Windows: cmd.exe would cut an unquoted URL at '&' (and run the rest, key and
    # all, as a command). The URL goes to az as one variable, wrapped in double quotes on Windows only.
    command = pwsh[pwsh.index("event-subscription create") :]
    assert "--endpoint $endpoint `" in command and "&code=" not in command
    windows = re.search(r"if \(\$IsWindows\) \{(.*?)\n\}", pwsh, re.S)
    assert windows and "$endpoint = '\"' + $endpoint + '\"'" in windows.group(1)
    assert "$PSNativeCommandArgumentPassing = 'Legacy'" in windows.group(1)


# -- Terraform: private networking, the webhook key, the host storage setting ---------------------------
def test_terraform_never_needs_the_storage_data_plane_which_private_networking_closes() -> None:
    (provider,) = terraform("terraform.tf")["provider"]
    (storage,) = provider['"azurerm"']["features"][0]["storage"]
    assert storage["data_plane_available"] is False  # the schema test holds the name to azurerm 4.55.0
    # What would still need the data plane: the blocks the flag turns off, or a container by account name.
    main = json.dumps(terraform("main.tf"))
    for data_plane in ("queue_properties", "static_website", "storage_account_name"):
        assert data_plane not in main, data_plane


def test_an_empty_blobs_extension_key_stops_the_apply_with_a_clear_message() -> None:
    (keys,) = [
        body
        for entry in terraform("main.tf")["data"]
        for type_, named in entry.items()
        if unquote(type_) == "azurerm_function_app_host_keys"
        for body in named.values()
    ]
    (lifecycle,) = keys["lifecycle"]
    (check,) = lifecycle["postcondition"]
    assert re.fullmatch(r'\$\{self\.blobs_extension_key != ""\}', check["condition"])
    assert "deploy the code" in check["error_message"] and "subscribe_events" in check["error_message"]


def test_the_empty_host_storage_setting_is_not_hidden_by_ignore_changes() -> None:
    # The provider writes its own AzureWebJobsStorage (a connection string with an empty key, useless
    # with shared keys off) when it updates the app; the "" in app_settings is what puts it right
    # again, so every plan shows that diff (docs/deploy.md explains it) and it must not be ignored.
    main = (INFRA / "terraform" / "main.tf").read_text(encoding="utf-8")
    assert "ignore_changes" not in main
    assert terraform_app_settings()["AzureWebJobsStorage"] == '""'
    guide = " ".join((REPO / "docs" / "deploy.md").read_text(encoding="utf-8").split())
    assert "every `terraform plan` shows `AzureWebJobsStorage`" in guide


# -- the SharePoint/OneDrive source: its timer's setting, its failures, its connector fields -------------
SOURCE_FUNCTION = "hr_graph_source"
RUN_FAILED = "hr-run-failed"


def watched_functions(query: str) -> set[str]:
    """The functions a `requests | where operation_Name in (...)` (or ==) query looks at."""
    listed = re.search(r"operation_Name in \(([^)]*)\)", query) or re.search(r'operation_Name == ("[^"]*")', query)
    return set(re.findall(r'"(\w+)"', listed.group(1))) if listed else set()


def failure_alert_functions() -> dict[str, set[str]]:
    """template -> the functions whose failed runs the hr-run-failed rule counts."""
    monitoring = bicep(INFRA / "bicep" / "modules" / "monitoring.bicep")
    (bicep_rule,) = [a for a in monitoring["variables"]["alerts"]["value"] if a["name"] == RUN_FAILED]
    (locals_,) = terraform("locals.tf")["locals"]
    tf_query = locals_["alerts"][f'"{RUN_FAILED}"']["query"][1:-1].replace('\\"', '"')
    assert "success == false" in bicep_rule["query"] and "success == false" in tf_query
    return {"bicep": watched_functions(bicep_rule["query"]), "terraform": watched_functions(tf_query)}


def test_the_failure_alert_watches_every_function_the_app_runs_in_both_templates() -> None:
    from hrconnector_core.emulator.host import registered_functions

    # The source's function by name too: the templates must watch it whether or not this checkout's
    # function_app already registers it.
    functions = set(registered_functions()) | {SOURCE_FUNCTION}
    watched = failure_alert_functions()
    assert watched["bicep"] == watched["terraform"]
    assert functions <= watched["bicep"], functions - watched["bicep"]


def test_seeded_alert_without_the_source_function_is_caught() -> None:
    query = 'requests | where operation_Name in ("hr_file_arrived", "hr_schedule") and success == false'
    assert SOURCE_FUNCTION not in watched_functions(query)
    assert watched_functions(query.replace('"hr_schedule")', f'"hr_schedule", "{SOURCE_FUNCTION}")')) == {
        "hr_file_arrived",
        "hr_schedule",
        SOURCE_FUNCTION,
    }
    assert watched_functions('requests | where operation_Name == "hr_schedule"') == {"hr_schedule"}


def schedule_settings() -> set[str]:
    """The app settings function_app's timers read their schedules from (`%NAME%`)."""
    from hrconnector_core.emulator.host import registered_functions, trigger

    names = set()
    for function in registered_functions().values():
        binding = trigger(function)
        if binding.type == "timerTrigger":
            names |= set(re.findall(r"%(\w+)%", str(binding.schedule)))
    return names


# Bicep parameter, Terraform variable, app setting: each schedule the host reads as %SETTING%.
SCHEDULES = [("schedule", "schedule", "HR_SCHEDULE"), ("sourceSchedule", "source_schedule", "HR_SOURCE_SCHEDULE")]


def _example_value(bicep_name: str, tf_name: str) -> tuple[str, str]:
    """The value the example parameter files give (main.bicepparam, terraform.tfvars.example)."""
    param = (INFRA / "bicep" / "main.bicepparam").read_text(encoding="utf-8")
    found = re.search(rf"^param {bicep_name} = '([^']*)'", param, re.M)
    example = hcl2.loads((INFRA / "terraform" / "terraform.tfvars.example").read_text(encoding="utf-8"))
    return (found.group(1) if found else ""), unquote(str(example.get(tf_name, "")))


@pytest.mark.parametrize(("bicep_name", "tf_name", "setting"), SCHEDULES, ids=[s[2] for s in SCHEDULES])
def test_each_timer_schedule_is_set_by_both_templates_with_the_same_default(
    bicep_name: str, tf_name: str, setting: str
) -> None:
    # The host resolves %SETTING% when it loads the timer: a missing setting stops the whole app.
    assert setting in DEPLOYED
    assert bicep_app_settings()[setting] == bicep_name
    assert terraform_app_settings()[setting] == f"${{var.{tf_name}}}"
    params = bicep(INFRA / "bicep" / "main.bicep")["parameters"]
    defaults = {_default(params, bicep_name), _tf_default(tf_name), *_example_value(bicep_name, tf_name)}
    assert len(defaults) == 1, defaults
    assert re.fullmatch(r"\S+( \S+){5}", defaults.pop())  # NCRONTAB: six fields, seconds first


def test_the_source_timer_runs_every_five_minutes_by_default() -> None:
    params = bicep(INFRA / "bicep" / "main.bicep")["parameters"]
    assert _default(params, "sourceSchedule") == _tf_default("source_schedule") == "0 */5 * * * *"


def test_every_schedule_setting_of_a_timer_is_one_the_templates_set() -> None:
    assert {s[2] for s in SCHEDULES} >= schedule_settings() >= {"HR_SCHEDULE"}
    assert "HR_SOURCE_SCHEDULE" in DEPLOYED


# The connector fields of the SharePoint/OneDrive source, with the code's defaults (docs/function.md).
SOURCE_FIELDS = {
    "source_site": ("sourceSite", "string", ""),
    "source_library": ("sourceLibrary", "string", "Documents"),
    "source_folder": ("sourceFolder", "string", ""),
    "source_move": ("sourceMove", "bool", True),
    "source_copy_existing": ("sourceCopyExisting", "bool", False),
}


def test_bicep_checks_the_type_of_each_source_field_and_fills_in_the_codes_default() -> None:
    module = bicep(INFRA / "bicep" / "modules" / "connector.bicep")
    params = bicep(INFRA / "bicep" / "main.bicep")["modules"]["connectorChecks"]["config"]["config"]["params"]
    for field, (name, type_, default) in SOURCE_FIELDS.items():
        assert module["parameters"][name]["type"] == type_, name
        given = params[name]["operator"]
        assert given["type"] == "conditional", name
        condition = given["operands"]["condition"]["function"]
        assert condition["type"] == "contains" and condition["parameters"]["item_to_find"] == field
        assert field in json.dumps(given["operands"]["true_value"])
        assert given["operands"]["false_value"] == default, name
    limits = {d["type"]: d["argument"] for d in module["parameters"]["sourceLibrary"]["decorators"]}
    assert limits["min_length"] == 1


SOURCE = {"source_site": "contoso.sharepoint.com/sites/HR", "source_library": "Documents", "source_folder": "Exports"}


@pytest.mark.skipif(shutil.which("terraform") is None, reason="terraform not installed")
def test_terraform_accepts_source_fields_and_refuses_wrong_ones(tmp_path: Path) -> None:
    job = {"job_id": APP_ID}
    good = {
        "sharepoint": {**job, **SOURCE, "source_move": False, "source_copy_existing": True},
        "onedrive": {**job, "source_site": "https://contoso-my.sharepoint.com/personal/jane_contoso_com"},
        "plain": job,
    }
    ok, output = terraform_variables_accept({**REQUIRED, "app_id": APP_ID, "connectors": good}, tmp_path)
    assert ok, output
    for wrong in (
        {"source_site": "HR"},  # no host
        {"source_site": "contoso.sharepoint.com/sites/HR?web=1"},
        {"source_library": ""},
        {"source_folder": 7},
        {"source_move": "yes"},
        {"source_copy_existing": "true"},  # a string, not a bool
    ):
        connectors = {"main": {**job, **SOURCE, **wrong}}
        ok, output = terraform_variables_accept({**REQUIRED, "app_id": APP_ID, "connectors": connectors}, tmp_path)
        assert not ok and "SharePoint/OneDrive source" in " ".join(output.split()), (wrong, output)


def test_the_identity_ids_the_graph_grant_needs_are_outputs_of_both_templates() -> None:
    outputs = bicep(INFRA / "bicep" / "main.bicep")["outputs"]
    principal = json.dumps(outputs["AZURE_FUNCTION_IDENTITY_PRINCIPAL_ID"]["value"])
    client = json.dumps(outputs["AZURE_FUNCTION_IDENTITY_CLIENT_ID"]["value"])
    assert '"identity"' in principal and "principalId" in principal
    assert '"identity"' in client and "clientId" in client
    tf = {unquote(next(iter(o))): next(iter(o.values()))["value"] for o in terraform("outputs.tf")["output"]}
    assert tf["AZURE_FUNCTION_IDENTITY_PRINCIPAL_ID"] == "${azurerm_user_assigned_identity.function.principal_id}"
    assert tf["AZURE_FUNCTION_IDENTITY_CLIENT_ID"] == "${azurerm_user_assigned_identity.function.client_id}"
