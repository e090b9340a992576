"""The SharePoint/OneDrive source's settings and the Graph endpoints per cloud."""

from __future__ import annotations

import json

import pytest

from hrconnector_core.clouds import CLOUDS, InsecureEndpointError, resolve_cloud
from hrconnector_core.settings import APP_SETTINGS, SOURCE_SCHEDULE_SETTING, GraphFolder, Settings

BASE = {"HR_STORAGE": "UseDevelopmentStorage=true", "HR_TENANT_ID": "t", "HR_KEY_VAULT_URL": "https://kv.example"}
SINGLE = BASE | {"HR_JOB_ID": "job-1", "HR_APP_ID": "app-1", "HR_SECRET_NAME": "hr-secret"}


SITE = {"HR_SOURCE_SITE": "c.sharepoint.com/sites/HR"}


def single(**values: str) -> Settings:
    return Settings.from_env(SINGLE | values)


def only(settings: Settings):
    (connector,) = settings.connectors.values()
    return connector


# -- clouds ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("cloud", "host"),
    [
        ("commercial", "https://graph.microsoft.com"),
        ("gcc", "https://graph.microsoft.com"),
        ("gcchigh", "https://graph.microsoft.us"),
        ("dod", "https://dod-graph.microsoft.us"),
    ],
)
def test_each_cloud_has_its_graph_host_as_url_and_audience(cloud: str, host: str) -> None:
    endpoints = CLOUDS[cloud]
    assert (endpoints.graph_url, endpoints.graph_resource) == (host, host)
    assert endpoints.graph_scope == f"{host}/.default"


def test_the_graph_override_moves_requests_but_keeps_the_clouds_audience() -> None:
    cloud = resolve_cloud("gcchigh", graph_url="https://127.0.0.1:8443/")
    assert cloud.graph_url == "https://127.0.0.1:8443"
    assert cloud.graph_scope == "https://graph.microsoft.us/.default"


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8443",
        "http://graph.example",
        "https://user:pw@graph.example",
        "https://g.example/?x=1",
        "ftp://x",
    ],
)
def test_the_graph_override_must_be_https_without_credentials(url: str) -> None:
    with pytest.raises(InsecureEndpointError, match="HR_GRAPH_URL"):
        resolve_cloud("commercial", graph_url=url)


def test_hr_graph_url_reaches_every_connector_and_a_bad_one_is_refused_naming_it() -> None:
    assert only(single(HR_GRAPH_URL="https://localhost:9999")).cloud.graph_url == "https://localhost:9999"
    settings = single(HR_GRAPH_URL="http://localhost:9999")
    assert settings.connectors == {}
    assert "HR_GRAPH_URL" in settings.problems[0] and "https" in settings.problems[0]


# -- the source's settings --------------------------------------------------------------------------
def test_no_site_means_no_source() -> None:
    assert only(single()).source is None


def test_a_single_connectors_source_from_plain_settings_with_defaults() -> None:
    source = only(single(HR_SOURCE_SITE="contoso.sharepoint.com/sites/HR")).source
    assert source == GraphFolder("contoso.sharepoint.com", "/sites/HR", "Documents", "", move=True, copy_existing=False)
    assert source.where == "contoso.sharepoint.com/sites/HR / Documents"


def test_every_source_setting_is_read() -> None:
    source = only(
        single(
            HR_SOURCE_SITE="https://Contoso-my.sharepoint.com/personal/jane_contoso_com/",
            HR_SOURCE_LIBRARY="Shared Exports",
            HR_SOURCE_FOLDER="/HR/Exports 2026/",
            HR_SOURCE_MOVE="false",
            HR_SOURCE_COPY_EXISTING="yes",
        )
    ).source
    assert source == GraphFolder(
        "contoso-my.sharepoint.com", "/personal/jane_contoso_com", "Shared Exports", "HR/Exports 2026",
        move=False, copy_existing=True,
    )  # fmt: skip


def test_source_fields_in_hr_connectors_belong_to_one_connector() -> None:
    connectors = {
        "sp": {"job_id": "j1", "app_id": "a", "secret_name": "s", "source_site": "contoso.sharepoint.com/sites/HR",
               "source_folder": "Exports", "source_move": False},
        "blob": {"job_id": "j2", "app_id": "a", "secret_name": "s"},
    }  # fmt: skip
    # Plain HR_SOURCE_* settings are the single connector's: never inherited here.
    env = BASE | {"HR_CONNECTORS": json.dumps(connectors), "HR_SOURCE_SITE": "other.sharepoint.com/sites/X"}
    settings = Settings.from_env(env)
    assert settings.connectors["blob"].source is None
    source = settings.connectors["sp"].source
    assert source is not None
    assert (source.site, source.folder, source.move, source.copy_existing) == (
        "contoso.sharepoint.com/sites/HR", "Exports", False, False,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"HR_SOURCE_SITE": "http://contoso.sharepoint.com/sites/HR"}, "HR_SOURCE_SITE must be a SharePoint site"),
        ({"HR_SOURCE_SITE": "not a host/sites/HR"}, "HR_SOURCE_SITE must be a SharePoint site"),
        ({"HR_SOURCE_SITE": "contoso.sharepoint.com/sites/../x"}, "HR_SOURCE_SITE"),
        (SITE | {"HR_SOURCE_FOLDER": "a/../b"}, "HR_SOURCE_FOLDER must be"),
        (SITE | {"HR_SOURCE_FOLDER": "a:b"}, "HR_SOURCE_FOLDER must be"),
        (SITE | {"HR_SOURCE_LIBRARY": "a/b"}, "HR_SOURCE_LIBRARY must be"),
        (SITE | {"HR_SOURCE_MOVE": "maybe"}, "HR_SOURCE_MOVE must be true or false"),
        (SITE | {"HR_SOURCE_COPY_EXISTING": "2"}, "HR_SOURCE_COPY_EXISTING must"),
        ({"HR_SOURCE_FOLDER": "Exports"}, "HR_SOURCE_FOLDER is set but HR_SOURCE_SITE is not"),
    ],
)
def test_a_bad_source_setting_is_refused_naming_the_setting(values: dict[str, str], message: str) -> None:
    settings = single(**values)
    assert settings.connectors == {}
    assert message in settings.problems[0]


def test_a_bad_source_field_in_hr_connectors_names_the_connector_and_field() -> None:
    connectors = {"sp": {"job_id": "j", "app_id": "a", "secret_name": "s", "source_site": "c.sharepoint.com",
                         "source_move": "often"}}  # fmt: skip
    settings = Settings.from_env(BASE | {"HR_CONNECTORS": json.dumps(connectors)})
    assert settings.problems == ("connector 'sp': source_move must be true or false",)


def test_a_root_site_has_an_empty_path() -> None:
    source = only(single(HR_SOURCE_SITE="contoso.sharepoint.com")).source
    assert source is not None and (source.hostname, source.site_path) == ("contoso.sharepoint.com", "")


def test_the_new_settings_are_listed_once_with_the_schedule_deployed() -> None:
    by_name = {s.name: s for s in APP_SETTINGS}
    assert by_name[SOURCE_SCHEDULE_SETTING].deployed
    for name in ("HR_GRAPH_URL", "HR_SOURCE_SITE", "HR_SOURCE_LIBRARY", "HR_SOURCE_FOLDER", "HR_SOURCE_MOVE",
                 "HR_SOURCE_COPY_EXISTING"):  # fmt: skip
        assert not by_name[name].deployed
    assert len(by_name) == len(APP_SETTINGS)
