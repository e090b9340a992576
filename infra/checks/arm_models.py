"""Dump the REST shape of the resource types infra/bicep deploys, read from the azure-mgmt-* models.

Runs in .venv-infra (where the azure-mgmt-* packages are pinned), prints JSON on stdout; the test
suite (tests/test_infra_schema.py) caches it and walks every Bicep property path through it.
Output: {"types": {"<type>": {"api_versions": [...], "root": "<model>", "package": "<dist>==<v>"}},
"models": {"<model>": {"fields": {"<rest name>": {"kind": "scalar|list|map|model", "model": ...,
"readonly": bool}},
"discriminator": "<rest name>" | null, "variants": {"<value>": "<model>"}}}}.
Modules are imported by name at run time: the test environment does not have them.
"""

from __future__ import annotations

import enum
import importlib
import importlib.metadata
import importlib.util
import json
import re
import sys
import typing
from pathlib import Path
from typing import Any

# type -> (distribution, models package for the API version, operations module, request builder).
# The builder's default api-version is the API version the package speaks for that type.
TYPES: dict[str, tuple[str, str, str, str, str]] = {
    "Microsoft.ManagedIdentity/userAssignedIdentities": (
        "azure-mgmt-msi",
        "azure.mgmt.msi.v2023_01_31",
        "_user_assigned_identities_operations",
        "build_create_or_update_request",
        "Identity",
    ),
    "Microsoft.Storage/storageAccounts": (
        "azure-mgmt-storage",
        "azure.mgmt.storage.v2023_05_01",
        "_storage_accounts_operations",
        "build_create_request",
        "StorageAccountCreateParameters",
    ),
    "Microsoft.Storage/storageAccounts/blobServices": (
        "azure-mgmt-storage",
        "azure.mgmt.storage.v2023_05_01",
        "_blob_services_operations",
        "build_set_service_properties_request",
        "BlobServiceProperties",
    ),
    "Microsoft.Storage/storageAccounts/blobServices/containers": (
        "azure-mgmt-storage",
        "azure.mgmt.storage.v2023_05_01",
        "_blob_containers_operations",
        "build_create_request",
        "BlobContainer",
    ),
    "Microsoft.Storage/storageAccounts/managementPolicies": (
        "azure-mgmt-storage",
        "azure.mgmt.storage.v2023_05_01",
        "_management_policies_operations",
        "build_create_or_update_request",
        "ManagementPolicy",
    ),
    "Microsoft.KeyVault/vaults": (
        "azure-mgmt-keyvault",
        "azure.mgmt.keyvault.v2023_07_01",
        "_vaults_operations",
        "build_create_or_update_request",
        "VaultCreateOrUpdateParameters",
    ),
    "Microsoft.Web/serverfarms": (
        "azure-mgmt-web",
        "azure.mgmt.web.v2024_04_01",
        "_app_service_plans_operations",
        "build_create_or_update_request",
        "AppServicePlan",
    ),
    "Microsoft.Web/sites": (
        "azure-mgmt-web",
        "azure.mgmt.web.v2024_04_01",
        "_web_apps_operations",
        "build_create_or_update_request",
        "Site",
    ),
    "Microsoft.Web/sites/config": (
        "azure-mgmt-web",
        "azure.mgmt.web.v2024_04_01",
        "_web_apps_operations",
        "build_update_application_settings_request",
        "StringDictionary",
    ),
    "Microsoft.Web/sites/basicPublishingCredentialsPolicies": (
        "azure-mgmt-web",
        "azure.mgmt.web.v2024_04_01",
        "_web_apps_operations",
        "build_update_scm_allowed_request",
        "CsmPublishingCredentialsPoliciesEntity",
    ),
    "Microsoft.EventGrid/systemTopics": (
        "azure-mgmt-eventgrid",
        "azure.mgmt.eventgrid",
        "_system_topics_operations",
        "build_create_or_update_request",
        "SystemTopic",
    ),
    "Microsoft.EventGrid/systemTopics/eventSubscriptions": (
        "azure-mgmt-eventgrid",
        "azure.mgmt.eventgrid",
        "_system_topic_event_subscriptions_operations",
        "build_create_or_update_request",
        "EventSubscription",
    ),
    "Microsoft.Authorization/roleAssignments": (
        "azure-mgmt-authorization",
        "azure.mgmt.authorization.v2022_04_01",
        "_role_assignments_operations",
        "build_create_request",
        "RoleAssignmentCreateParameters",
    ),
    "Microsoft.OperationalInsights/workspaces": (
        "azure-mgmt-loganalytics",
        "azure.mgmt.loganalytics",
        "_operations",
        "build_workspaces_create_or_update_request",
        "Workspace",
    ),
    "Microsoft.Insights/components": (
        "azure-mgmt-applicationinsights",
        "azure.mgmt.applicationinsights.v2020_02_02",
        "_components_operations",
        "build_create_or_update_request",
        "ApplicationInsightsComponent",
    ),
    "Microsoft.Insights/actionGroups": (
        "azure-mgmt-monitor",
        "azure.mgmt.monitor",
        "_action_groups_operations",
        "build_create_or_update_request",
        "ActionGroupResource",
    ),
    "Microsoft.Insights/scheduledQueryRules": (
        "azure-mgmt-monitor",
        "azure.mgmt.monitor",
        "_scheduled_query_rules_operations",
        "build_create_or_update_request",
        "ScheduledQueryRuleResource",
    ),
    "Microsoft.Network/networkSecurityGroups": (
        "azure-mgmt-network",
        "azure.mgmt.network",
        "_operations",
        "build_network_security_groups_create_or_update_request",
        "NetworkSecurityGroup",
    ),
    "Microsoft.Network/virtualNetworks": (
        "azure-mgmt-network",
        "azure.mgmt.network",
        "_operations",
        "build_virtual_networks_create_or_update_request",
        "VirtualNetwork",
    ),
    "Microsoft.Network/privateEndpoints": (
        "azure-mgmt-network",
        "azure.mgmt.network",
        "_operations",
        "build_private_endpoints_create_or_update_request",
        "PrivateEndpoint",
    ),
    "Microsoft.Network/privateEndpoints/privateDnsZoneGroups": (
        "azure-mgmt-network",
        "azure.mgmt.network",
        "_operations",
        "build_private_dns_zone_groups_create_or_update_request",
        "PrivateDnsZoneGroup",
    ),
    "Microsoft.Network/privateDnsZones": (
        "azure-mgmt-privatedns",
        "azure.mgmt.privatedns",
        "_private_zones_operations",
        "build_create_or_update_request",
        "PrivateZone",
    ),
    "Microsoft.Network/privateDnsZones/virtualNetworkLinks": (
        "azure-mgmt-privatedns",
        "azure.mgmt.privatedns",
        "_virtual_network_links_operations",
        "build_create_or_update_request",
        "VirtualNetworkLink",
    ),
}


def api_version(package: str, operations: str, builder: str) -> str:
    """The default api-version of the request builder: what the package sends for this type."""
    spec = importlib.util.find_spec(package)
    assert spec is not None and spec.submodule_search_locations, package
    source = (Path(next(iter(spec.submodule_search_locations))) / "operations" / f"{operations}.py").read_text()
    start = source.index(f"def {builder}(")
    found = re.search(r'"api-version",\s*"([^"]+)"|api_version", "([^"]+)"', source[start:])
    assert found, (package, builder)
    return found.group(1) or found.group(2)


class Dumper:
    def __init__(self) -> None:
        self.models: dict[str, dict[str, Any]] = {}

    def model(self, module: Any, cls: type) -> str:
        name = f"{cls.__module__.split('.models')[0]}:{cls.__name__}"
        if name in self.models:
            return name
        node: dict[str, Any] = {"fields": {}, "discriminator": None, "variants": {}}
        self.models[name] = node
        if hasattr(cls, "_attribute_map"):
            self._msrest(module, cls, name, node)
        else:
            self._typespec(module, cls, node)
        return name

    # msrest models (older generators): _attribute_map keys are REST paths, flattened with dots.
    def _msrest(self, module: Any, cls: Any, name: str, node: dict[str, Any]) -> None:
        for attr, spec in cls._attribute_map.items():
            path = [p.replace("\\.", ".") for p in re.split(r"(?<!\\)\.", spec["key"])]
            target = node
            for i, part in enumerate(path[:-1]):
                inner = f"{name}#{'.'.join(path[: i + 1])}"
                self.models.setdefault(inner, {"fields": {}, "discriminator": None, "variants": {}})
                target["fields"][part] = {"kind": "model", "model": inner}
                target = self.models[inner]
            target["fields"][path[-1]] = {
                **self._msrest_type(module, spec["type"]),
                "readonly": bool(getattr(cls, "_validation", {}).get(attr, {}).get("readonly")),
            }
            if attr in getattr(cls, "_subtype_map", {}):
                node["discriminator"] = path[-1]
        for attr, variants in getattr(cls, "_subtype_map", {}).items():
            node["discriminator"] = cls._attribute_map[attr]["key"]
            for value, sub in variants.items():
                node["variants"][value] = self.model(module, getattr(module, sub))

    def _msrest_type(self, module: Any, text: str) -> dict[str, Any]:
        if text.startswith("[") and text.endswith("]"):
            inner = self._msrest_type(module, text[1:-1])
            return {"kind": "list", "model": inner.get("model")}
        if text.startswith("{") and text.endswith("}"):
            inner = self._msrest_type(module, text[1:-1])
            return {"kind": "map", "model": inner.get("model")}
        cls = getattr(module, text, None)
        if isinstance(cls, type) and hasattr(cls, "_attribute_map"):
            return {"kind": "model", "model": self.model(module, cls)}
        return {"kind": "scalar", "model": None}

    # typespec models (newer generators): rest_field descriptors and type hints.
    def _typespec(self, module: Any, cls: Any, node: dict[str, Any]) -> None:
        cls.__new__(cls)  # computes cls._attr_to_rest_field
        namespace = {**vars(sys.modules[cls.__module__]), "_models": module}
        hints = typing.get_type_hints(cls, namespace)
        for attr, field in cls._attr_to_rest_field.items():
            node["fields"][field._rest_name] = {
                **self._hint(module, hints.get(attr, Any)),
                "readonly": list(field._visibility or []) == ["read"],
            }
            if field._is_discriminator:
                node["discriminator"] = field._rest_name
        for value, sub in (getattr(cls, "__mapping__", None) or {}).items():
            if isinstance(sub, type) and sub is not cls:
                node["variants"][value] = self.model(module, sub)

    def _hint(self, module: Any, hint: Any) -> dict[str, Any]:
        origin, args = typing.get_origin(hint), typing.get_args(hint)
        if origin is typing.Union:
            models = [a for a in args if a is not type(None)]
            if len(models) == 1:
                return self._hint(module, models[0])
            return {"kind": "scalar", "model": None}
        if origin in (list, typing.List):  # noqa: UP006
            return {"kind": "list", "model": self._hint(module, args[0]).get("model")}
        if origin in (dict, typing.Dict):  # noqa: UP006
            return {"kind": "map", "model": self._hint(module, args[1]).get("model")}
        if isinstance(hint, type) and not issubclass(hint, enum.Enum) and hasattr(hint, "_is_model"):
            return {"kind": "model", "model": self.model(module, hint)}
        return {"kind": "scalar", "model": None}


def main() -> None:
    dumper = Dumper()
    types: dict[str, Any] = {}
    for type_, (dist, package, operations, builder, root) in TYPES.items():
        module = importlib.import_module(f"{package}.models")
        types[type_] = {
            "api_versions": [api_version(package, operations, builder)],
            "root": dumper.model(module, getattr(module, root)),
            "package": f"{dist}=={importlib.metadata.version(dist)}",
        }
    json.dump({"types": types, "models": dumper.models}, sys.stdout, sort_keys=True)


if __name__ == "__main__":
    main()
