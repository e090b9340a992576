"""The templates against Azure's own schemas, offline.

Terraform: every argument and block of every azurerm resource, data source and the provider block
exists in the schema of the exact provider version terraform.tf pins, read from the jsii assembly
of the prebuilt CDK provider package (requirements-infra-schema.txt), and no required argument is
missing. Bicep: every resource type, API version and property path exists in the REST models of
the azure-mgmt-* packages pinned in requirements-infra.txt (dumped by infra/checks/arm_models.py in
.venv-infra). Both are parsed once and cached under .venv-infra/cache, keyed by the package's hash.
Each checker is also shown to catch a seeded mistake, so a checker that sees nothing fails here.
"""

from __future__ import annotations

import hashlib
import inspect
import io
import json
import re
import subprocess
import tarfile
import zipfile
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from .conftest import REPO
from .test_infra import bicep, terraform, write_cache

INFRA = REPO / "infra"
VENV_INFRA = REPO / ".venv-infra"
CACHE = VENV_INFRA / "cache"
PROVIDER_WHEELS = VENV_INFRA / "schemas"
TF_FILES = sorted((INFRA / "terraform").glob("*.tf"))
BICEP_FILES = sorted((INFRA / "bicep").rglob("*.bicep"))
DOCS_LINK = re.compile(
    r"registry\.terraform\.io/providers/hashicorp/azurerm/([\d.]+)/docs(?:/(resources|data-sources)/(\w+))?"
)
ANCHOR = re.compile(r"/docs[^#\s]*#(\w+) ")
# Terraform's own meta-arguments: valid in every resource and data source.
META = {"count", "for_each", "depends_on", "lifecycle", "provider", "provisioner", "connection"}
# Bicep keywords of a resource body that are not REST properties.
BICEP_KEYWORDS = {"name", "parent", "scope", "dependsOn"}


def unquote(value: str) -> str:
    return value.strip('"')


# -- the azurerm provider's schema, from the jsii assembly ------------------------------------------
def provider_wheel() -> Path:
    wheels = sorted(PROVIDER_WHEELS.glob("cdktf_cdktf_provider_azurerm-*.whl"))
    assert len(wheels) == 1, "the provider schema is missing: run scripts/bootstrap.sh"
    return wheels[0]


def _snake(camel: str) -> str:
    return re.sub(r"(?<!^)([A-Z])", r"_\1", camel).lower()


def _block(types: dict[str, Any], fqn: str) -> dict[str, Any]:
    """A Terraform block: {"args": {name: required}, "blocks": {name: block}} from a jsii datatype."""
    args: dict[str, bool] = {}
    blocks: dict[str, Any] = {}
    for prop in types[fqn].get("properties", []):
        docs = prop.get("docs", {})
        anchor = ANCHOR.search(docs.get("remarks", "") + " " + docs.get("summary", "") + " ")
        name = anchor.group(1) if anchor else _snake(prop["name"])
        nested = [f for f in re.findall(r'"fqn": "([^"]+)"', json.dumps(prop["type"])) if f in types and f != fqn]
        nested = [f for f in nested if types[f].get("datatype")]
        if nested:
            blocks[name] = {**_block(types, nested[0]), "required": not prop.get("optional", False)}
        else:
            args[name] = not prop.get("optional", False)
    return {"args": args, "blocks": blocks}


def _extract_provider_schema(wheel: Path) -> dict[str, Any]:
    with zipfile.ZipFile(wheel) as archive:
        (name,) = [n for n in archive.namelist() if n.endswith(".jsii.tgz")]
        with tarfile.open(fileobj=io.BytesIO(archive.read(name))) as tar:
            member = tar.extractfile("package/.jsii")
            assert member is not None
            assembly = json.loads(member.read())
    types = assembly["types"]
    schema: dict[str, Any] = {"version": None, "resource": {}, "data": {}, "provider": None}
    for type_ in types.values():
        summary = type_.get("docs", {}).get("summary", "")
        link = DOCS_LINK.search(summary)
        if type_.get("kind") != "class" or not summary.startswith("Represents a") or not link:
            continue
        config = type_["initializer"]["parameters"][2]["type"]["fqn"]
        version, kind, tf_name = link.groups()
        if kind is None:
            schema["version"], schema["provider"] = version, _block(types, config)
        else:
            schema["resource" if kind == "resources" else "data"][f"azurerm_{tf_name}"] = _block(types, config)
    return schema


@cache
def provider_schema() -> dict[str, Any]:
    wheel = provider_wheel()
    # Keyed by the wheel and by the extraction code, so a change to either extracts again.
    code = inspect.getsource(_block) + inspect.getsource(_extract_provider_schema)
    digest = hashlib.sha256(wheel.read_bytes() + code.encode()).hexdigest()[:16]
    cached = CACHE / f"azurerm-schema-{digest}.json"
    if not cached.exists():
        write_cache(cached, json.dumps(_extract_provider_schema(wheel)))
    result: dict[str, Any] = json.loads(cached.read_text())
    return result


# -- checking a parsed Terraform body ----------------------------------------------------------------
def _body_problems(where: str, body: dict[str, Any], block: dict[str, Any], meta: set[str]) -> list[str]:
    problems = []
    present = set()
    for key, value in body.items():
        if key.startswith("__") or key in meta:
            continue
        if key == "dynamic":
            for dynamic in value:
                for label, spec in dynamic.items():
                    name = unquote(label)
                    present.add(name)
                    if name not in block["blocks"]:
                        problems.append(f"{where}: unknown block {name}")
                        continue
                    for content in spec.get("content", []):
                        problems += _body_problems(f"{where}.{name}", content, block["blocks"][name], set())
            continue
        present.add(key)
        if key in block["blocks"]:
            for item in value if isinstance(value, list) else [value]:
                if isinstance(item, dict):
                    problems += _body_problems(f"{where}.{key}", item, block["blocks"][key], set())
        elif key not in block["args"]:
            problems.append(f"{where}: unsupported argument {key}")
    for name, required in block["args"].items():
        if required and name not in present:
            problems.append(f"{where}: missing required argument {name}")
    for name, nested in block["blocks"].items():
        if nested["required"] and name not in present:
            problems.append(f"{where}: missing required block {name}")
    return problems


def terraform_problems(parsed: dict[str, list[dict[str, Any]]]) -> list[str]:
    """Every azurerm resource/data source and the provider block of `parsed` (one file) against the schema."""
    schema = provider_schema()
    problems = []
    for kind in ("resource", "data"):
        for entry in parsed.get(kind, []):
            for type_label, named in entry.items():
                type_ = unquote(type_label)
                if not type_.startswith("azurerm_"):
                    continue
                for name_label, body in named.items():
                    where = f"{kind} {type_}.{unquote(name_label)}"
                    if type_ not in schema[kind]:
                        problems.append(f"{where}: no such {kind} in azurerm {schema['version']}")
                        continue
                    problems += _body_problems(where, body, schema[kind][type_], META)
    for entry in parsed.get("provider", []):
        for label, body in entry.items():
            if unquote(label) == "azurerm":
                problems += _body_problems("provider azurerm", body, schema["provider"], {"alias"})
    return problems


def load_tf(path: Path) -> dict[str, Any]:
    return terraform(path.name)


def pinned_provider_version() -> str:
    (terraform,) = load_tf(INFRA / "terraform" / "terraform.tf")["terraform"]
    (providers,) = terraform["required_providers"]
    return unquote(providers["azurerm"]["version"])


def test_the_pinned_provider_version_is_the_one_whose_schema_is_checked() -> None:
    assert re.fullmatch(r"=?\s*\d+\.\d+\.\d+", pinned_provider_version()), "pin one exact version"
    assert pinned_provider_version().lstrip("= ") == provider_schema()["version"] == "4.55.0"


def test_the_schema_was_read_from_the_assembly() -> None:
    schema = provider_schema()
    assert len(schema["resource"]) > 900 and len(schema["data"]) > 300
    flex = schema["resource"]["azurerm_function_app_flex_consumption"]
    assert flex["args"]["runtime_name"] is True and flex["args"]["app_settings"] is False
    assert flex["blocks"]["site_config"]["required"] is True
    assert "application_insights_connection_string" in flex["blocks"]["site_config"]["args"]
    assert "rbac_authorization_enabled" in schema["resource"]["azurerm_key_vault"]["args"]
    assert "subscription_id" in schema["provider"]["args"]


@pytest.mark.parametrize("path", TF_FILES, ids=lambda p: p.name)
def test_every_terraform_argument_exists_in_the_pinned_provider(path: Path) -> None:
    assert terraform_problems(load_tf(path)) == []


def _main_tf() -> dict[str, Any]:
    return load_tf(INFRA / "terraform" / "main.tf")


def _resource(parsed: dict[str, Any], type_: str, name: str) -> dict[str, Any]:
    for entry in parsed["resource"]:
        for label, named in entry.items():
            if unquote(label) == type_:
                for name_label, body in named.items():
                    if unquote(name_label) == name:
                        result: dict[str, Any] = body
                        return result
    raise KeyError(f"{type_}.{name}")


def test_seeded_unknown_argument_is_caught() -> None:
    parsed = _main_tf()
    _resource(parsed, "azurerm_function_app_flex_consumption", "hr")["key_vault_reference_identity_id"] = "x"
    assert terraform_problems(parsed) == [
        "resource azurerm_function_app_flex_consumption.hr: unsupported argument key_vault_reference_identity_id"
    ]


def test_seeded_unknown_nested_argument_and_block_are_caught() -> None:
    parsed = _main_tf()
    account = _resource(parsed, "azurerm_storage_account", "hr")
    account["blob_properties"][0]["versioning"] = True
    account["blob_propertie"] = [{"__is_block__": True}]
    assert sorted(terraform_problems(parsed)) == [
        "resource azurerm_storage_account.hr.blob_properties: unsupported argument versioning",
        "resource azurerm_storage_account.hr: unsupported argument blob_propertie",
    ]


def test_seeded_missing_required_argument_and_unknown_resource_are_caught() -> None:
    parsed = _main_tf()
    del _resource(parsed, "azurerm_storage_account", "hr")["account_tier"]
    parsed["resource"].append({'"azurerm_function_app_flex"': {'"x"': {"name": '"x"'}}})
    assert sorted(terraform_problems(parsed)) == [
        "resource azurerm_function_app_flex.x: no such resource in azurerm 4.55.0",
        "resource azurerm_storage_account.hr: missing required argument account_tier",
    ]


# -- Azure's REST models, from the azure-mgmt-* packages ----------------------------------------------
@cache
def arm_models() -> dict[str, Any]:
    python = VENV_INFRA / "bin" / "python"
    assert python.exists(), "run scripts/bootstrap.sh"
    dumper = INFRA / "checks" / "arm_models.py"
    key = hashlib.sha256((REPO / "requirements-infra.txt").read_bytes() + dumper.read_bytes()).hexdigest()[:16]
    cached = CACHE / f"arm-models-{key}.json"
    if not cached.exists():
        out = subprocess.run([str(python), str(dumper)], capture_output=True, text=True, check=True, timeout=300)
        write_cache(cached, out.stdout)
    result: dict[str, Any] = json.loads(cached.read_text())
    return result


def _is_expression(value: Any) -> bool:
    """pycep writes Bicep expressions as {"operator": {...}} or {"function": {...}}."""
    if not isinstance(value, dict) or len(value) != 1:
        return False
    ((key, inner),) = value.items()
    return key in ("operator", "function") and isinstance(inner, dict) and "type" in inner


def _unwrap(config: dict[str, Any]) -> dict[str, Any]:
    """The body of a resource, inside a loop or a condition."""
    while isinstance(config, dict) and "config" in config and ("loop_type" in config or "condition" in config):
        config = config["config"]
    return config


def _value_problems(where: str, value: Any, field: dict[str, Any], models: dict[str, Any]) -> list[str]:
    if _is_expression(value) or field["model"] is None:
        return []
    if field["kind"] == "list" and isinstance(value, list):
        return [p for i, v in enumerate(value) for p in _value_problems(f"{where}[{i}]", v, _one(field), models)]
    if field["kind"] == "map" and isinstance(value, dict):
        return [p for k, v in value.items() for p in _value_problems(f"{where}.{k}", v, _one(field), models)]
    if field["kind"] == "model" and isinstance(value, dict):
        return _object_problems(where, value, field["model"], models)
    return []


def _one(field: dict[str, Any]) -> dict[str, Any]:
    return {"kind": "model", "model": field["model"]}


def _object_problems(where: str, body: dict[str, Any], model: str, models: dict[str, Any]) -> list[str]:
    node = models[model]
    fields = dict(node["fields"])
    discriminator = node["discriminator"]
    if discriminator and node["variants"]:
        chosen = body.get(discriminator)
        variants = [node["variants"][chosen]] if chosen in node["variants"] else list(node["variants"].values())
        for variant in variants:
            fields.update(models[variant]["fields"])
    problems = []
    for key, value in body.items():
        name = key.strip("'")
        if name not in fields:
            problems.append(f"{where}: no property {name}")
        elif fields[name].get("readonly"):
            problems.append(f"{where}: {name} is read-only")
        else:
            problems += _value_problems(f"{where}.{name}", value, fields[name], models)
    return problems


def bicep_problems(parsed: dict[str, Any]) -> list[str]:
    """Every resource of a parsed Bicep file: type, API version and each property path."""
    data = arm_models()
    problems = []
    for name, resource in parsed.get("resources", {}).items():
        type_, version = resource["type"], resource["api_version"]
        where = f"{name} ({type_}@{version})"
        known = data["types"].get(type_)
        if known is None:
            problems.append(f"{where}: type not in the pinned azure-mgmt packages")
            continue
        if version not in known["api_versions"]:
            problems.append(f"{where}: {known['package']} has {known['api_versions']}")
            continue
        if resource.get("existing"):
            continue
        body = {k: v for k, v in _unwrap(resource["config"]).items() if k not in BICEP_KEYWORDS}
        problems += _object_problems(where, body, known["root"], data["models"])
    return problems


def parse_bicep(path: Path) -> dict[str, Any]:
    return bicep(path)


@pytest.mark.parametrize("path", BICEP_FILES, ids=lambda p: p.name)
def test_every_bicep_type_version_and_property_exists_in_azure_models(path: Path) -> None:
    assert bicep_problems(parse_bicep(path)) == []


def test_the_models_cover_every_type_the_templates_use() -> None:
    used = {r["type"] for p in BICEP_FILES for r in parse_bicep(p).get("resources", {}).values()}
    assert used == set(arm_models()["types"]), "keep infra/checks/arm_models.py's TYPES to what is deployed"


def test_seeded_unknown_and_read_only_bicep_properties_are_caught() -> None:
    parsed = parse_bicep(INFRA / "bicep" / "modules" / "function.bicep")
    site = _unwrap(parsed["resources"]["site"]["config"])
    site["properties"]["functionAppConfig"]["scaleAndConcurrency"]["maxInstances"] = 40
    site["properties"]["keyVaultReferenceIdentityId"] = "x"
    site["properties"]["defaultHostName"] = "x.azurewebsites.net"
    site_ = "site (Microsoft.Web/sites@2024-04-01).properties"
    assert sorted(bicep_problems(parsed)) == [
        f"{site_}.functionAppConfig.scaleAndConcurrency: no property maxInstances",
        f"{site_}: defaultHostName is read-only",
        f"{site_}: no property keyVaultReferenceIdentityId",
    ]


def test_seeded_wrong_api_version_and_discriminated_property_are_caught() -> None:
    parsed = parse_bicep(INFRA / "bicep" / "modules" / "eventsubscription.bicep")
    parsed["resources"]["topic"]["api_version"] = "2024-06-01-preview"
    parsed["resources"]["topic"]["existing"] = False
    subscription = _unwrap(parsed["resources"]["webhookSubscription"]["config"])
    subscription["properties"]["destination"]["properties"]["queueName"] = "x"  # a StorageQueue property
    problems = bicep_problems(parsed)
    assert len(problems) == 2
    assert problems[0].startswith("topic (Microsoft.EventGrid/systemTopics@2024-06-01-preview): azure-mgmt-eventgrid")
    assert problems[1].endswith("properties.destination.properties: no property queueName")


# -- Bicep modules: what a module is given against what it declares ------------------------------
def module_problems(path: Path, parsed: dict[str, Any]) -> list[str]:
    """Every parameter passed to a local module exists there; every parameter without a default is passed."""
    problems = []
    for name, module in parsed.get("modules", {}).items():
        target = path.parent / module["detail"]["path"]
        declared = parse_bicep(target).get("parameters", {})
        given = set(_unwrap(module["config"]).get("params", {}))
        problems += [f"module {name}: {target.name} has no parameter {p}" for p in sorted(given - set(declared))]
        required = {p for p, spec in declared.items() if spec.get("default") is None}
        problems += [f"module {name}: {target.name} needs {p}" for p in sorted(required - given)]
    return problems


@pytest.mark.parametrize("path", BICEP_FILES, ids=lambda p: p.name)
def test_every_module_gets_exactly_parameters_it_declares(path: Path) -> None:
    assert module_problems(path, parse_bicep(path)) == []


def test_seeded_unknown_and_missing_module_parameters_are_caught() -> None:
    main = INFRA / "bicep" / "main.bicep"
    parsed = parse_bicep(main)
    params = _unwrap(parsed["modules"]["function"]["config"])["params"]
    params["maxInstances"] = 40
    del params["instanceMemoryMB"]
    assert module_problems(main, parsed) == [
        "module function: function.bicep has no parameter maxInstances",
        "module function: function.bicep needs instanceMemoryMB",
    ]
