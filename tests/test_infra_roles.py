"""Each role of the Function's identity is granted on the resource the code path needs, in both
templates, and nothing more: the host storage (what the Functions docs list for an identity-based
AzureWebJobsStorage with a blob trigger, including the queue the blob extension's Event Grid webhook
writes to), the HR storage (blob trigger and the code; its poison queue), the vault (read the app
credential) and Application Insights (telemetry with local auth off). The Event Grid topic's identity
may only write dead letters. A dropped or widened role is reported by name."""

from __future__ import annotations

import copy
import re
from typing import Any

import pytest

from .test_infra import INFRA, ROLE_IDS, bicep, terraform, unquote

# target -> roles the Function's identity needs there, and why (the comments in the templates say more).
EXPECTED = {
    "host storage": {
        "Storage Blob Data Owner",  # host keys, timer locks, blob receipts, the deployment package
        "Storage Queue Data Contributor",  # azure-webjobs-blobtrigger-<host id>: every Event Grid delivery
        "Storage Account Contributor",  # listed by the Functions docs for a blob trigger on this connection
        "Storage Table Data Contributor",  # the host's diagnostic events
    },
    "HR storage": {"Storage Blob Data Owner", "Storage Queue Data Contributor"},  # trigger, code, poison queue
    "Key Vault": {"Key Vault Secrets User"},
    "Application Insights": {"Monitoring Metrics Publisher"},
}
EVENT_GRID = {"HR storage/hr-deadletter": {"Storage Blob Data Contributor"}}

# rbac.bicep's parameter naming the scope -> main.bicep's module whose output it is -> target.
BICEP_TARGETS = {"hrStorage": "HR storage", "hostStorage": "host storage", "vault": "Key Vault"}
BICEP_TARGETS["monitoring"] = "Application Insights"
TF_TARGETS = {
    "azurerm_storage_account.hr.id": "HR storage",
    "azurerm_storage_account.host.id": "host storage",
    "azurerm_key_vault.hr.id": "Key Vault",
    "azurerm_application_insights.hr.id": "Application Insights",
    'azurerm_storage_container.hr["dead_letter"].id': "HR storage/hr-deadletter",
}


def _accessor(value: Any) -> list[str]:
    """pycep's property accessor chain (a.b.c) as a list of names."""
    if isinstance(value, str):
        return [value]
    operands = value["operator"]["operands"]
    return [*_accessor(operands["operand_1"]), *_accessor(operands["operand_2"])]


def bicep_grants(rbac: dict[str, Any], main: dict[str, Any]) -> dict[str, set[str]]:
    """target -> roles granted to the Function's identity by modules/rbac.bicep, as wired in main.bicep."""
    roles = rbac["variables"]["roles"]["value"]
    params = main["modules"]["rbac"]["config"]["params"]
    assert _accessor(params["principalId"]) == ["identity", "properties", "principalId"]
    grants: dict[str, set[str]] = {}
    for resource in rbac["resources"].values():
        if resource["type"] != "Microsoft.Authorization/roleAssignments":
            continue
        config = resource["config"]
        assert config["properties"]["principalId"] == "principalId", "a role for someone else than the Function"
        scope = rbac["resources"][config["scope"]]  # an existing resource, named by a parameter
        module = _accessor(params[scope["config"]["name"]])[0]
        role_key = _accessor(config["properties"]["roleDefinitionId"]["function"]["parameters"]["resource_name_1"])
        grants.setdefault(BICEP_TARGETS[module], set()).add(ROLE_IDS[roles[role_key[1]]])
    return grants


def bicep_event_grid_grants(events: dict[str, Any]) -> dict[str, set[str]]:
    grants: dict[str, set[str]] = {}
    guid = events["variables"]["blobDataContributor"]["value"]
    for resource in events["resources"].values():
        if resource["type"] == "Microsoft.Authorization/roleAssignments":
            config = resource["config"]
            assert _accessor(config["properties"]["principalId"]) == ["topic", "identity", "principalId"]
            assert config["scope"] == "deadLetter"
            container = events["resources"]["deadLetter"]
            assert container["type"] == "Microsoft.Storage/storageAccounts/blobServices/containers"
            grants.setdefault("HR storage/hr-deadletter", set()).add(ROLE_IDS[guid])
    return grants


def terraform_grants(main: dict[str, Any], locals_: dict[str, Any], principal: str) -> dict[str, set[str]]:
    """target -> roles granted to `principal` by main.tf."""
    grants: dict[str, set[str]] = {}
    for entry in main["resource"]:
        for label, named in entry.items():
            if unquote(label) != "azurerm_role_assignment":
                continue
            for body in named.values():
                if body["principal_id"] != principal:
                    continue
                scope = re.fullmatch(r"\$\{(.+)\}", body["scope"])
                role = re.fullmatch(r"\$\{local\.role\.(\w+)\}", body["role_definition_name"])
                assert scope and role, body
                target = TF_TARGETS[scope.group(1)]
                grants.setdefault(target, set()).add(unquote(locals_["role"][role.group(1)]))
    return grants


FUNCTION = "${azurerm_user_assigned_identity.function.principal_id}"
TOPIC = "${azurerm_eventgrid_system_topic.hr.identity[0].principal_id}"


def _bicep() -> tuple[dict[str, Any], dict[str, Any]]:
    return bicep(INFRA / "bicep" / "modules" / "rbac.bicep"), bicep(INFRA / "bicep" / "main.bicep")


def _terraform() -> tuple[dict[str, Any], dict[str, Any]]:
    (locals_,) = terraform("locals.tf")["locals"]
    return terraform("main.tf"), locals_


@pytest.mark.parametrize("template", ["bicep", "terraform"])
def test_every_function_role_is_scoped_to_what_its_code_path_needs(template: str) -> None:
    grants = bicep_grants(*_bicep()) if template == "bicep" else terraform_grants(*_terraform(), FUNCTION)
    assert grants == EXPECTED


def test_the_event_grid_topic_may_only_write_dead_letters() -> None:
    assert bicep_event_grid_grants(bicep(INFRA / "bicep" / "modules" / "eventgrid.bicep")) == EVENT_GRID
    assert terraform_grants(*_terraform(), TOPIC) == EVENT_GRID


def test_nobody_else_gets_a_role() -> None:
    main, _locals = _terraform()
    principals = {
        body["principal_id"]
        for entry in main["resource"]
        for label, named in entry.items()
        if unquote(label) == "azurerm_role_assignment"
        for body in named.values()
    }
    assert principals == {FUNCTION, TOPIC}
    role_files = [p.name for p in (INFRA / "bicep").rglob("*.bicep") if "roleAssignments@" in p.read_text()]
    assert sorted(role_files) == ["eventgrid.bicep", "rbac.bicep"]


def test_seeded_dropped_queue_role_is_caught_in_both_templates() -> None:
    rbac, main = _bicep()
    del rbac["resources"]["hostQueues"]
    assert bicep_grants(rbac, main)["host storage"] == EXPECTED["host storage"] - {"Storage Queue Data Contributor"}

    tf_main, locals_ = _terraform()
    for entry in tf_main["resource"]:
        named = entry.get('"azurerm_role_assignment"', {})
        named.pop('"host_queues"', None)
    grants = terraform_grants(tf_main, locals_, FUNCTION)
    assert grants["host storage"] == EXPECTED["host storage"] - {"Storage Queue Data Contributor"}


def test_seeded_role_on_the_wrong_account_is_caught() -> None:
    rbac, main = _bicep()
    moved = copy.deepcopy(rbac)
    moved["resources"]["hostQueues"]["config"]["scope"] = "hrStorage"
    grants = bicep_grants(moved, main)
    assert "Storage Queue Data Contributor" not in grants["host storage"]
    assert grants != EXPECTED
