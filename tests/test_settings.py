"""Settings: connectors from plain settings or JSON, routing, and errors that name the setting."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from hrconnector_core.errors import ConfigurationError
from hrconnector_core.pipeline import Policy
from hrconnector_core.settings import APP_SETTING_NAMES, CredentialKind, Settings

from .conftest import REPO

BASE = {"HR_STORAGE": "UseDevelopmentStorage=true", "HR_TENANT_ID": "t", "HR_KEY_VAULT_URL": "https://kv.example"}
SINGLE = BASE | {"HR_JOB_ID": "job-1", "HR_APP_ID": "app-1", "HR_SECRET_NAME": "hr-secret"}


def test_a_single_connector_from_plain_settings_takes_files_at_the_root_too() -> None:
    settings = Settings.from_env(SINGLE)
    (connector,) = settings.connectors.values()
    assert (connector.name, connector.job_id, connector.app_id, connector.tenant_id) == (
        "default",
        "job-1",
        "app-1",
        "t",
    )
    assert connector.credential is CredentialKind.KEY_VAULT_SECRET and connector.cloud.name == "commercial"
    assert settings.route("default/a.csv") == (connector, "a.csv")
    assert settings.route("a.csv") == (connector, "a.csv")
    assert settings.containers.all() == ("hr-incoming", "hr-processed", "hr-reports", "hr-failed", "hr-state")


def test_several_connectors_from_json_inherit_the_shared_settings_only() -> None:
    connectors = {
        "leavers": {"job_id": "j1", "app_id": "a1", "secret_name": "s1", "records_per_call": 100},
        "profiles": {
            "job_id": "j2",
            "app_id": "a2",
            "credential": "federated",
            "cloud": "gcchigh",
            "policy": "reject-file",
        },
    }
    env = BASE | {"HR_CONNECTORS": json.dumps(connectors), "HR_JOB_ID": "ignored", "HR_RECORDS_PER_CALL": "250"}
    settings = Settings.from_env(env)
    leavers, profiles = settings.connectors["leavers"], settings.connectors["profiles"]
    assert (leavers.job_id, leavers.records_per_call, leavers.key_vault_url) == ("j1", 100, "https://kv.example")
    assert (profiles.records_per_call, profiles.policy, profiles.secret_name) == (250, Policy.REJECT_FILE, None)
    assert profiles.job_id == "j2"  # HR_JOB_ID belongs to the single-connector form only
    assert profiles.cloud.token_exchange_audience == "api://AzureADTokenExchangeUSGov"
    assert settings.route("profiles/x/y.csv") == (profiles, "x/y.csv")
    with pytest.raises(ConfigurationError, match=r"no connector for the container's root.*leavers, profiles"):
        settings.route("y.csv")


def test_a_broken_connector_does_not_stop_the_others_and_is_named_when_routing() -> None:
    connectors = {"ok": {"job_id": "j", "app_id": "a", "secret_name": "s"}, "broken": {"app_id": "a"}}
    settings = Settings.from_env(BASE | {"HR_CONNECTORS": json.dumps(connectors)})
    assert list(settings.connectors) == ["ok"]
    with pytest.raises(ConfigurationError, match=r"connector 'broken': job_id is not set \(or HR_JOB_ID\)"):
        settings.route("broken/f.csv")


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({}, "no storage: set HR_STORAGE__blobServiceUri"),
        (BASE | {"HR_CONNECTORS": "{not json"}, "HR_CONNECTORS is not JSON"),
        (BASE | {"HR_CONNECTORS": "[]"}, "HR_CONNECTORS must be a JSON object"),
        (BASE | {"HR_LEASE_SECONDS": "120"}, "HR_LEASE_SECONDS must be between 15 and 60"),
        (BASE | {"HR_RETENTION_DAYS": "soon"}, "HR_RETENTION_DAYS must be a number"),
    ],
)
def test_unusable_settings_name_the_setting(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        Settings.from_env(env)


@pytest.mark.parametrize(
    ("definition", "message"),
    [
        ({"job_id": "j", "app_id": "a", "secret_name": "s", "colour": "red"}, "unknown field"),
        ({"job_id": "j", "app_id": "a", "secret_name": "s", "credential": "password"}, "credential must be one of"),
        ({"job_id": "j", "app_id": "a", "secret_name": "s", "cloud": "mars"}, "unknown cloud 'mars'"),
        ({"job_id": "j", "app_id": "a", "secret_name": "s", "records_per_call": 0}, "must be at least 1"),
        ({"job_id": "j", "app_id": "a", "key_vault_url": ""}, "needs key_vault_url and secret_name"),
        ({"job_id": "j", "app_id": "a", "secret_name": "s", "mapping": {"scenarios": []}}, "mapping: scenarios"),
    ],
)
def test_connector_definition_errors(definition: dict[str, object], message: str) -> None:
    settings = Settings.from_env(BASE | {"HR_CONNECTORS": json.dumps({"c": definition})})
    assert settings.connectors == {}
    assert message in settings.problems[0]


def test_identity_based_storage_settings() -> None:
    env = {
        "HR_STORAGE__blobServiceUri": "https://hr.blob.core.windows.net",
        "HR_STORAGE__credential": "managedidentity",
        "HR_STORAGE__clientId": "cid",
    }
    storage = Settings.from_env(env).storage
    assert (storage.connection_string, storage.blob_service_uri, storage.client_id) == (
        None,
        "https://hr.blob.core.windows.net",
        "cid",
    )
    assert set(env) <= APP_SETTING_NAMES


def test_opentelemetry_is_configured_only_with_a_connection_string() -> None:
    """In a child process: configuring exporters is process-wide."""
    code = (
        "from hrconnector_core.telemetry import configure_opentelemetry as c; import sys;"
        "print(c(None, identity_client_id=None), c(sys.argv[1], identity_client_id=None))"
    )
    conn = "InstrumentationKey=00000000-0000-0000-0000-000000000000;IngestionEndpoint=https://127.0.0.1:9/"
    result = subprocess.run(
        [sys.executable, "-c", code, conn], cwd=REPO, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.stdout.split() == ["False", "True"], result.stderr


def test_every_setting_is_documented() -> None:
    doc = (REPO / "docs" / "function.md").read_text(encoding="utf-8")
    assert sorted(name for name in APP_SETTING_NAMES if f"`{name}`" not in doc) == []
