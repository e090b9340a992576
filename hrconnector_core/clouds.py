"""Endpoints of the HR connector per Microsoft cloud.

The sample script needs one copy per cloud; here a cloud is a row in a table and every
endpoint can be overridden (for sovereign changes, proxies or the local emulator).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, replace

from .errors import ConfigurationError

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
    # Microsoft Graph (the SharePoint/OneDrive source): where requests go, and the token's audience,
    # which stays the cloud's real Graph host when graph_url is overridden (emulator, proxy).
    graph_url: str = "https://graph.microsoft.com"
    graph_resource: str = "https://graph.microsoft.com"

    @property
    def scope(self) -> str:
        """The OAuth 2.0 v2 scope for the ingestion resource."""
        return self.resource.rstrip("/") + "/.default"

    @property
    def signals_url(self) -> str:
        """The upload endpoint; the job id goes in the `jobid` query parameter."""
        return f"{self.ingestion_url}/api/signals"

    @property
    def graph_scope(self) -> str:
        """The OAuth 2.0 v2 scope for Microsoft Graph (application permissions: .default)."""
        return self.graph_resource.rstrip("/") + "/.default"


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
        graph_url="https://graph.microsoft.us",
        graph_resource="https://graph.microsoft.us",
    ),
    "dod": CloudEndpoints(
        "dod",
        "https://login.microsoftonline.us",
        "https://webhook-itarl5.ingestion.apps.mil",
        token_exchange_audience="api://AzureADTokenExchangeUSGov",  # noqa: S106 - an audience
        graph_url="https://dod-graph.microsoft.us",
        graph_resource="https://dod-graph.microsoft.us",
    ),
}


class UnknownCloudError(ValueError):
    """The cloud name is not one of the table's."""


class InsecureEndpointError(ConfigurationError):
    """An endpoint override that would send the bearer token or HR data in clear, or is no URL."""


# Which option or setting each override comes from (for the message), and whether plain http is
# allowed on loopback: for the ingestion URL yes (local tests); azure-identity accepts no http authority,
# and the Graph URL gets the Function's own token, which never travels in clear (the emulator is https).
_OVERRIDES = {
    "authority_host": ("authority host (--authority-host, HR_AUTHORITY_HOST)", False),
    "ingestion_url": ("ingestion URL (--ingestion-url, HR_INGESTION_URL)", True),
    "graph_url": ("Microsoft Graph URL (HR_GRAPH_URL)", False),
}


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback  # 127.0.0.0/8 and ::1
    except ValueError:
        return False


# Characters no endpoint URL needs and parsers disagree on: a backslash (urlsplit and urllib3 split
# `http://a\\@127.0.0.1` at different places), whitespace and control characters.
_ODD = re.compile(r"[\\\s\x00-\x1f\x7f]")


def check_endpoint(url: str, what: str, *, loopback_http: bool = True) -> str:
    """`url` without a trailing slash, if it is https (or http on a loopback address, for local tests).

    Plain http would carry the bearer token and the HR data in clear; redirects are never
    followed, so the URL given is the one the data goes to. The URL is parsed as urllib3 (under
    requests) parses it, so the host checked is the host connected to; anything parsers may
    read differently (backslashes, whitespace, control characters) and user:password@ (a secret
    in a setting, which requests would send as Basic auth) are refused. Messages never echo the URL.
    """
    from urllib3.exceptions import LocationParseError  # here: validate and --dry-run start without urllib3
    from urllib3.util import parse_url

    url = url.strip()
    if _ODD.search(url):
        raise InsecureEndpointError(f"the {what} must not contain backslashes, spaces or control characters")
    try:
        parts = parse_url(url)
    except (LocationParseError, ValueError):
        raise InsecureEndpointError(f"the {what} is not a URL") from None
    if parts.auth is not None or "@" in (parts.netloc or "") or "@" in url.split("//", 1)[-1].split("/", 1)[0]:
        raise InsecureEndpointError(
            f"the {what} must not contain a user name or password (user:password@): give credentials "
            "through their own settings"
        )
    scheme = (parts.scheme or "").lower()
    host = (parts.host or "").strip("[]")
    if scheme not in ("https", "http") or not host or not url.lower().startswith(scheme + "://"):
        raise InsecureEndpointError(f"the {what} must be an https:// URL with a host name")
    if scheme == "http" and not (loopback_http and _is_loopback(host)):
        allowed = "(http is accepted only for loopback addresses: localhost, 127.0.0.0/8, ::1)"
        raise InsecureEndpointError(
            f"the {what} must use https: plain http would send secrets and HR data in clear"
            + (f" {allowed}" if loopback_http else "")
        )
    if parts.query is not None or parts.fragment is not None or "?" in url or "#" in url:
        raise InsecureEndpointError(f"the {what} must not carry a query or fragment")
    return url.rstrip("/")


def resolve_cloud(
    name: str = "commercial",
    *,
    authority_host: str | None = None,
    ingestion_url: str | None = None,
    resource: str | None = None,
    graph_url: str | None = None,
) -> CloudEndpoints:
    """The endpoints of a named cloud with any overrides applied (InsecureEndpointError for plain http)."""
    try:
        cloud = CLOUDS[name.strip().lower()]
    except KeyError:
        known = ", ".join(CLOUDS)
        raise UnknownCloudError(f"unknown cloud {name!r}; expected one of: {known}") from None
    overrides = {
        "authority_host": authority_host,
        "ingestion_url": ingestion_url,
        "resource": resource,
        "graph_url": graph_url,
    }
    checked = {
        k: check_endpoint(v, _OVERRIDES[k][0], loopback_http=_OVERRIDES[k][1]) if k in _OVERRIDES else v.rstrip("/")
        for k, v in overrides.items()
        if v
    }
    return replace(cloud, **checked)
