"""Endpoints of the HR connector per Microsoft cloud.

The sample script needs one copy per cloud; here a cloud is a row in a table and every
endpoint can be overridden (for sovereign changes, proxies or the local emulator).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

# The ingestion resource (token audience) used by the current sample script (since 2025-03).
DEFAULT_RESOURCE = "https://microsoft.onmicrosoft.com/86dfdabb-5089-4a0c-880a-cfa5a790c5b1"
# The audience used by older versions of the sample script.
LEGACY_RESOURCE = "https://microsoft.onmicrosoft.com/4e476d41-2395-42be-89ff-34cb9186a1ac"


@dataclass(frozen=True)
class CloudEndpoints:
    """Where to get a token and where to send the CSV for one cloud."""

    name: str
    authority_host: str
    ingestion_url: str
    resource: str = DEFAULT_RESOURCE
    # The audience of a managed identity's token that an app's federated credential trusts.
    token_exchange_audience: str = "api://AzureADTokenExchange"  # noqa: S105 - an audience, not a secret

    @property
    def scope(self) -> str:
        """The OAuth 2.0 v2 scope for the ingestion resource."""
        return self.resource.rstrip("/") + "/.default"

    @property
    def signals_url(self) -> str:
        """The upload endpoint; the job id goes in the `jobid` query parameter."""
        return f"{self.ingestion_url}/api/signals"


CLOUDS: dict[str, CloudEndpoints] = {
    "commercial": CloudEndpoints(
        "commercial", "https://login.microsoftonline.com", "https://webhook.ingestion.office.com"
    ),
    "gcc": CloudEndpoints("gcc", "https://login.microsoftonline.com", "https://webhook-gcc.ingestion.office365.us"),
    "gcchigh": CloudEndpoints(
        "gcchigh",
        "https://login.microsoftonline.us",
        "https://webhook-itarl4.ingestion.office365.us",
        token_exchange_audience="api://AzureADTokenExchangeUSGov",  # noqa: S106 - an audience
    ),
    "dod": CloudEndpoints(
        "dod",
        "https://login.microsoftonline.us",
        "https://webhook-itarl5.ingestion.apps.mil",
        token_exchange_audience="api://AzureADTokenExchangeUSGov",  # noqa: S106 - an audience
    ),
}


class UnknownCloudError(ValueError):
    """The cloud name is not one of the table's."""


def resolve_cloud(
    name: str = "commercial",
    *,
    authority_host: str | None = None,
    ingestion_url: str | None = None,
    resource: str | None = None,
) -> CloudEndpoints:
    """The endpoints of a named cloud with any overrides applied."""
    try:
        cloud = CLOUDS[name.strip().lower()]
    except KeyError:
        known = ", ".join(CLOUDS)
        raise UnknownCloudError(f"unknown cloud {name!r}; expected one of: {known}") from None
    overrides = {
        "authority_host": authority_host,
        "ingestion_url": ingestion_url,
        "resource": resource,
    }
    return replace(cloud, **{k: v.rstrip("/") for k, v in overrides.items() if v})
