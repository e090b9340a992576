"""Every app setting the Function reads, read in one place into typed objects.

Nothing else in the core reads the environment. `APP_SETTINGS` is the one list of names: the
infrastructure templates are tested against it, so a name cannot drift between code and infra.

Connectors: one connector needs only plain settings (HR_JOB_ID, HR_APP_ID, HR_SECRET_NAME, ...);
several are given as JSON in HR_CONNECTORS, keyed by name, each field but job_id and mapping
falling back to the plain setting of the same meaning. A file at `<incoming>/<connector>/<file>.csv`
goes to that connector; with a single connector, a file at the container's root goes to it too.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping as MappingType
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from .chunking import DEFAULT_RECORDS_PER_CALL
from .clouds import CloudEndpoints, UnknownCloudError, resolve_cloud
from .errors import ConfigurationError
from .mapping import Mapping
from .pipeline import DEFAULT_MAX_CONCURRENCY, Policy

# The blob trigger's connection: the host and our code read the same prefix. Either HR_STORAGE
# holds a connection string (Azurite, local runs) or the identity-based settings below are set.
STORAGE_CONNECTION = "HR_STORAGE"
INCOMING_CONTAINER_SETTING = "HR_INCOMING_CONTAINER"
SCHEDULE_SETTING = "HR_SCHEDULE"
SOURCE_SCHEDULE_SETTING = "HR_SOURCE_SCHEDULE"  # the SharePoint/OneDrive source's timer
SDK_LOG_LEVEL_SETTING = "HR_SDK_LOG_LEVEL"
SDK_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


class Reader(str, Enum):
    CODE = "code"  # read by hrconnector_core.settings
    HOST = "host"  # read by the Functions host or a library, set by the templates


@dataclass(frozen=True)
class AppSetting:
    name: str
    reader: Reader
    deployed: bool  # set by the Bicep and Terraform templates
    description: str


def _s(name: str, description: str, *, reader: Reader = Reader.CODE, deployed: bool = True) -> AppSetting:
    return AppSetting(name, reader, deployed, description)


APP_SETTINGS: tuple[AppSetting, ...] = (
    # Storage: the trigger's connection and the containers.
    _s(STORAGE_CONNECTION, "connection string (Azurite, local runs only)", deployed=False),
    _s(f"{STORAGE_CONNECTION}__blobServiceUri", "blob endpoint of the HR storage account"),
    _s(f"{STORAGE_CONNECTION}__queueServiceUri", "queue endpoint (the trigger's poison queue)", reader=Reader.HOST),
    _s(f"{STORAGE_CONNECTION}__credential", "managedidentity"),
    _s(f"{STORAGE_CONNECTION}__clientId", "client id of the user-assigned identity"),
    _s(INCOMING_CONTAINER_SETTING, "where files are dropped (default hr-incoming)"),
    _s("HR_PROCESSED_CONTAINER", "uploaded files and their reports (default hr-processed)"),
    _s("HR_REPORTS_CONTAINER", "rejected rows and reports (default hr-reports)"),
    _s("HR_FAILED_CONTAINER", "files that could not be uploaded (default hr-failed)"),
    _s("HR_STATE_CONTAINER", "per-file state, checkpoints, connector state (default hr-state)"),
    # Connectors.
    _s("HR_CONNECTORS", "JSON object: connector name -> definition (several connectors)"),
    _s("HR_CONNECTOR_NAME", "name of the single connector (default 'default')", deployed=False),
    _s("HR_JOB_ID", "job id of the single connector", deployed=False),
    _s("HR_TENANT_ID", "Entra tenant id (default for every connector)"),
    _s("HR_APP_ID", "Entra app id (default for every connector)"),
    _s("HR_CREDENTIAL", "key-vault-secret | key-vault-certificate | federated (default for every connector)"),
    _s("HR_KEY_VAULT_URL", "vault holding the app secret or certificate"),
    _s("HR_SECRET_NAME", "name of the secret (or certificate) in the vault (default for every connector)"),
    _s("HR_MAPPING", "JSON column mapping of the single connector", deployed=False),
    _s("HR_CLOUD", "commercial | gcc | gcchigh | dod"),
    _s("HR_AUTHORITY_HOST", "override of the cloud's sign-in host (emulator, proxies)", deployed=False),
    _s("HR_INGESTION_URL", "override of the cloud's ingestion host (emulator, proxies)", deployed=False),
    _s("HR_RECORDS_PER_CALL", f"records per upload call (default {DEFAULT_RECORDS_PER_CALL})"),
    _s("HR_MAX_CONCURRENCY", f"upload calls in flight per file (default {DEFAULT_MAX_CONCURRENCY})", deployed=False),
    _s("HR_POLICY", "upload-valid | reject-file (default upload-valid)"),
    _s("HR_KEY_VAULT_SKIP_CHALLENGE_CHECK", "true only for the local emulator", deployed=False),
    _s("HR_SECRET_CACHE_SECONDS", "how long a secret read from Key Vault is reused (default 300)", deployed=False),
    # The timer.
    _s(SCHEDULE_SETTING, "NCRONTAB schedule of the timer, UTC (e.g. 0 */15 * * * *)"),
    _s("HR_SWEEP_AFTER_MINUTES", "the timer processes files no event processed after this long (default 5)"),
    _s("HR_PROFILE_REFRESH_DAYS", "re-upload the latest employee profile after this many days (default 14)"),
    _s("HR_PROFILE_STALE_DAYS", "warn when the profile export itself is older (default 30)"),
    _s("HR_RETENTION_DAYS", "delete processed files, reports and state older than this (default 90)"),
    _s(
        "HR_EXPECTED_EVERY_HOURS",
        "a file is expected at least this often; the timer alerts when the last is older (0 or empty: no check)",
    ),
    _s("HR_LEASE_SECONDS", "lease on a file's state while it is processed, 15-60 (default 60)", deployed=False),
    _s("HR_SOURCE_SCHEDULE", "NCRONTAB schedule of the SharePoint/OneDrive source timer, UTC (e.g. 0 */5 * * * *)"),
    _s("HR_GRAPH_URL", "override of the cloud's Microsoft Graph host (emulator, proxies)", deployed=False),
    _s("HR_SOURCE_SITE", "SharePoint site (or OneDrive) of the single connector's source folder", deployed=False),
    _s("HR_SOURCE_LIBRARY", "document library of the single connector's source (default Documents)", deployed=False),
    _s("HR_SOURCE_FOLDER", "folder in the library watched for the single connector (default its root)", deployed=False),
    _s("HR_SOURCE_MOVE", "move source files to Processed/Failed after upload (default true)", deployed=False),
    _s(
        "HR_SOURCE_COPY_EXISTING",
        "copy files already in the folder when the source first runs (default false)",
        deployed=False,
    ),
    # Identity and telemetry.
    _s("AZURE_CLIENT_ID", "client id of the function's user-assigned identity (Key Vault, federation)"),
    _s("APPLICATIONINSIGHTS_CONNECTION_STRING", "Application Insights; OpenTelemetry is on when set"),
    _s(
        SDK_LOG_LEVEL_SETTING,
        "log level of the SDKs' loggers (azure, msal, urllib3, requests, opentelemetry); "
        "default WARNING, INFO or DEBUG for a support case",
        deployed=False,
    ),
    _s(
        "APPLICATIONINSIGHTS_AUTHENTICATION_STRING",
        "Authorization=AAD;ClientId=... (local auth is off)",
        reader=Reader.HOST,
    ),
    # The host's own storage, identity-based, in the service-URI form (valid in every cloud).
    _s("AzureWebJobsStorage__blobServiceUri", "blob endpoint of the host's storage account", reader=Reader.HOST),
    _s("AzureWebJobsStorage__queueServiceUri", "queue endpoint (the blob extension's event queue)", reader=Reader.HOST),
    _s("AzureWebJobsStorage__tableServiceUri", "table endpoint (the host's diagnostic events)", reader=Reader.HOST),
    _s("AzureWebJobsStorage__credential", "managedidentity", reader=Reader.HOST),
    _s("AzureWebJobsStorage__clientId", "client id of the user-assigned identity", reader=Reader.HOST),
)
APP_SETTING_NAMES = frozenset(s.name for s in APP_SETTINGS)


class CredentialKind(str, Enum):
    KEY_VAULT_SECRET = "key-vault-secret"  # noqa: S105 - a kind of credential, not one; the app's client secret, kept in Key Vault
    KEY_VAULT_CERTIFICATE = "key-vault-certificate"  # the app's certificate (PEM or PFX), kept in Key Vault
    FEDERATED = "federated"  # no secret: the app trusts the function's managed identity


@dataclass(frozen=True)
class GraphFolder:
    """A connector's SharePoint/OneDrive source: the folder whose new files are copied into
    hr-incoming/<connector>/ (see graphsource)."""

    hostname: str  # contoso.sharepoint.com
    site_path: str  # /sites/HR, /personal/jane_contoso_com; "" for the root site
    library: str = "Documents"
    folder: str = ""  # inside the library, no leading or trailing '/'; "" for the library's root
    move: bool = True  # after its upload, move the item to Processed/Failed beside it
    copy_existing: bool = False  # on the first run, copy what is already there (else a baseline)

    @property
    def site(self) -> str:
        return self.hostname + self.site_path

    @property
    def where(self) -> str:
        """For messages: site, library and folder."""
        return f"{self.site} / {self.library}" + (f" / {self.folder}" if self.folder else "")


@dataclass(frozen=True)
class Connector:
    name: str
    job_id: str
    tenant_id: str
    app_id: str
    credential: CredentialKind
    key_vault_url: str | None
    secret_name: str | None
    cloud: CloudEndpoints
    records_per_call: int = DEFAULT_RECORDS_PER_CALL
    max_concurrency: int = DEFAULT_MAX_CONCURRENCY
    policy: Policy = Policy.UPLOAD_VALID
    mapping: Mapping | None = None
    expected_every_hours: float | None = None  # a file at least this often, or the timer alerts
    source: GraphFolder | None = None  # a SharePoint/OneDrive folder the source timer copies from


@dataclass(frozen=True)
class StorageSettings:
    connection_string: str | None
    blob_service_uri: str | None
    client_id: str | None  # user-assigned identity; None: DefaultAzureCredential


@dataclass(frozen=True)
class Containers:
    incoming: str = "hr-incoming"
    processed: str = "hr-processed"
    reports: str = "hr-reports"
    failed: str = "hr-failed"
    state: str = "hr-state"

    def all(self) -> tuple[str, ...]:
        return (self.incoming, self.processed, self.reports, self.failed, self.state)


@dataclass(frozen=True)
class Settings:
    storage: StorageSettings
    containers: Containers
    connectors: dict[str, Connector]
    identity_client_id: str | None = None
    key_vault_verify_challenge: bool = True
    secret_cache_seconds: float = 300
    sweep_after_minutes: float = 5
    profile_refresh_days: float = 14
    profile_stale_days: float = 30
    retention_days: float = 90
    lease_seconds: int = 60
    appinsights_connection_string: str | None = None
    sdk_log_level: str = "WARNING"
    problems: tuple[str, ...] = field(default=())  # connector definitions that could not be read

    @classmethod
    def from_env(cls, environ: MappingType[str, str] | None = None) -> Settings:
        env = _Env(os.environ if environ is None else environ)
        prefix = STORAGE_CONNECTION
        storage = StorageSettings(
            connection_string=env.text(prefix),
            blob_service_uri=env.text(f"{prefix}__blobServiceUri"),
            client_id=env.text(f"{prefix}__clientId") if env.text(f"{prefix}__credential") else None,
        )
        if not storage.connection_string and not storage.blob_service_uri:
            raise ConfigurationError(
                f"no storage: set {prefix}__blobServiceUri (with {prefix}__credential and {prefix}__clientId) "
                f"or, for Azurite, {prefix} to a connection string"
            )
        containers = Containers(
            incoming=env.text(INCOMING_CONTAINER_SETTING) or Containers.incoming,
            processed=env.text("HR_PROCESSED_CONTAINER") or Containers.processed,
            reports=env.text("HR_REPORTS_CONTAINER") or Containers.reports,
            failed=env.text("HR_FAILED_CONTAINER") or Containers.failed,
            state=env.text("HR_STATE_CONTAINER") or Containers.state,
        )
        lease = env.number("HR_LEASE_SECONDS", 60)
        if not 15 <= lease <= 60:
            raise ConfigurationError("HR_LEASE_SECONDS must be between 15 and 60 (Blob Storage's lease limits)")
        connectors, problems = _connectors(env)
        return cls(
            storage=storage,
            containers=containers,
            connectors=connectors,
            identity_client_id=env.text("AZURE_CLIENT_ID"),
            key_vault_verify_challenge=not env.flag("HR_KEY_VAULT_SKIP_CHALLENGE_CHECK"),
            secret_cache_seconds=env.number("HR_SECRET_CACHE_SECONDS", 300),
            sweep_after_minutes=env.number("HR_SWEEP_AFTER_MINUTES", 5),
            profile_refresh_days=env.number("HR_PROFILE_REFRESH_DAYS", 14),
            profile_stale_days=env.number("HR_PROFILE_STALE_DAYS", 30),
            retention_days=env.number("HR_RETENTION_DAYS", 90),
            lease_seconds=int(lease),
            appinsights_connection_string=env.text("APPLICATIONINSIGHTS_CONNECTION_STRING"),
            sdk_log_level=sdk_log_level(environ),
            problems=tuple(problems),
        )

    def route(self, blob_name: str) -> tuple[Connector, str]:
        """The connector a blob belongs to and the file's name within it."""
        folder, _, rest = blob_name.partition("/")
        if rest and folder in self.connectors:
            return self.connectors[folder], rest
        if not rest and len(self.connectors) == 1:
            return next(iter(self.connectors.values())), blob_name
        known = ", ".join(sorted(self.connectors)) or "none"
        problems = f"; unreadable connector settings: {'; '.join(self.problems)}" if self.problems else ""
        where = f"folder {folder!r}" if rest else "the container's root"
        raise ConfigurationError(
            f"no connector for {where}: drop files in {self.containers.incoming}/<connector>/ "
            f"(connectors: {known}){problems}"
        )


def sdk_log_level(environ: MappingType[str, str] | None = None) -> str:
    """HR_SDK_LOG_LEVEL on its own: the Function quiets the SDKs at start-up, before any other
    setting is read (an unreadable value falls back to WARNING rather than stopping start-up)."""
    env = os.environ if environ is None else environ
    value = env.get(SDK_LOG_LEVEL_SETTING, "").strip().upper()
    return value if value in SDK_LOG_LEVELS else "WARNING"


class _Env:
    """Typed reads with the setting's name in every error."""

    def __init__(self, values: MappingType[str, str]) -> None:
        self.values = values

    def text(self, name: str) -> str | None:
        value = self.values.get(name, "").strip()
        return value or None

    def number(self, name: str, default: float) -> float:
        text = self.text(name)
        if text is None:
            return default
        try:
            value = float(text)
        except ValueError:
            raise ConfigurationError(f"{name} must be a number") from None
        if value <= 0:
            raise ConfigurationError(f"{name} must be greater than 0")
        return value

    def flag(self, name: str) -> bool:
        return (self.text(name) or "").lower() in ("1", "true", "yes")


# Fields of a connector definition in HR_CONNECTORS and the plain setting each falls back to.
_FIELDS: dict[str, str] = {
    "job_id": "HR_JOB_ID",
    "tenant_id": "HR_TENANT_ID",
    "app_id": "HR_APP_ID",
    "credential": "HR_CREDENTIAL",
    "key_vault_url": "HR_KEY_VAULT_URL",
    "secret_name": "HR_SECRET_NAME",
    "cloud": "HR_CLOUD",
    "authority_host": "HR_AUTHORITY_HOST",
    "ingestion_url": "HR_INGESTION_URL",
    "records_per_call": "HR_RECORDS_PER_CALL",
    "max_concurrency": "HR_MAX_CONCURRENCY",
    "policy": "HR_POLICY",
    "mapping": "HR_MAPPING",
    "expected_every_hours": "HR_EXPECTED_EVERY_HOURS",
    "source_site": "HR_SOURCE_SITE",
    "source_library": "HR_SOURCE_LIBRARY",
    "source_folder": "HR_SOURCE_FOLDER",
    "source_move": "HR_SOURCE_MOVE",
    "source_copy_existing": "HR_SOURCE_COPY_EXISTING",
}
# Fields that belong to one connector; never inherited by the connectors of HR_CONNECTORS.
_OWN_FIELDS = {"job_id", "mapping", "source_site", "source_library", "source_folder", "source_move",
               "source_copy_existing"}  # fmt: skip


def _connectors(env: _Env) -> tuple[dict[str, Connector], list[str]]:
    """Every connector that can be read; a broken definition is reported, never fatal to the others."""
    text = env.text("HR_CONNECTORS")
    definitions: dict[str, dict[str, Any]] = {}
    if text:
        try:
            parsed = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigurationError(f"HR_CONNECTORS is not JSON: {exc.msg} at position {exc.pos}") from None
        if not isinstance(parsed, dict) or not all(isinstance(v, dict) for v in parsed.values()):
            raise ConfigurationError('HR_CONNECTORS must be a JSON object: {"<connector>": {"job_id": ...}, ...}')
        definitions = parsed
    elif env.text("HR_JOB_ID"):
        definitions = {env.text("HR_CONNECTOR_NAME") or "default": {}}
    connectors: dict[str, Connector] = {}
    problems: list[str] = []
    for name, definition in definitions.items():
        try:
            connectors[name] = _connector(name, definition, env, single=not text)
        except ConfigurationError as exc:
            problems.append(str(exc))
    return connectors, problems


def _connector(name: str, definition: dict[str, Any], env: _Env, *, single: bool) -> Connector:
    if not name or "/" in name:
        raise ConfigurationError(f"connector name {name!r}: must be a non-empty folder name without '/'")
    unknown = set(definition) - set(_FIELDS)
    if unknown:
        raise ConfigurationError(f"connector {name!r}: unknown field(s) {', '.join(sorted(unknown))}")

    def get(key: str) -> Any:
        if key in definition and definition[key] not in (None, ""):
            return definition[key]
        if single or key not in _OWN_FIELDS:
            value = env.text(_FIELDS[key])
            if key == "mapping" and value:
                try:
                    return json.loads(value)
                except json.JSONDecodeError as exc:
                    raise ConfigurationError(f"HR_MAPPING is not JSON: {exc.msg}") from None
            return value
        return None

    def required(key: str) -> str:
        value = get(key)
        if not value:
            raise ConfigurationError(f"connector {name!r}: {key} is not set (or {_FIELDS[key]})")
        return str(value)

    def positive(key: str, default: int) -> int:
        value = get(key)
        try:
            number = int(value) if value is not None else default
        except (TypeError, ValueError):
            raise ConfigurationError(f"connector {name!r}: {key} must be a whole number") from None
        if number < 1:
            raise ConfigurationError(f"connector {name!r}: {key} must be at least 1")
        return number

    job_id, tenant_id, app_id = required("job_id"), required("tenant_id"), required("app_id")
    try:
        credential = CredentialKind(get("credential") or CredentialKind.KEY_VAULT_SECRET.value)
    except ValueError:
        choices = ", ".join(k.value for k in CredentialKind)
        raise ConfigurationError(f"connector {name!r}: credential must be one of {choices}") from None
    try:
        policy = Policy(get("policy") or Policy.UPLOAD_VALID.value)
    except ValueError:
        choices = ", ".join(p.value for p in Policy)
        raise ConfigurationError(f"connector {name!r}: policy must be one of {choices}") from None
    try:
        cloud = resolve_cloud(
            get("cloud") or "commercial",
            authority_host=get("authority_host"),
            ingestion_url=get("ingestion_url"),
            graph_url=env.text("HR_GRAPH_URL"),
        )
    except UnknownCloudError as exc:
        raise ConfigurationError(f"connector {name!r}: {exc}") from None
    mapping_data = get("mapping")
    mapping = Mapping.from_dict(mapping_data, source=f"connector {name!r}: mapping") if mapping_data else None
    key_vault_url = get("key_vault_url")
    secret_name = get("secret_name")
    if credential is not CredentialKind.FEDERATED and not (key_vault_url and secret_name):
        raise ConfigurationError(
            f"connector {name!r}: credential {credential.value} needs key_vault_url and secret_name "
            "(or HR_KEY_VAULT_URL and HR_SECRET_NAME)"
        )
    return Connector(
        name=name,
        job_id=job_id,
        tenant_id=tenant_id,
        app_id=app_id,
        credential=credential,
        key_vault_url=key_vault_url,
        secret_name=secret_name,
        cloud=cloud,
        records_per_call=positive("records_per_call", DEFAULT_RECORDS_PER_CALL),
        max_concurrency=positive("max_concurrency", DEFAULT_MAX_CONCURRENCY),
        policy=policy,
        mapping=mapping,
        expected_every_hours=_hours(name, get("expected_every_hours")),
        source=_source(name, get, single=single),
    )


def _source(name: str, get: Any, *, single: bool) -> GraphFolder | None:
    """The connector's SharePoint/OneDrive folder, if it has one (source_site set)."""

    def label(key: str) -> str:  # the setting the value came from, for the message
        return _FIELDS[key] if single else f"connector {name!r}: {key}"

    def text(key: str) -> str:  # a JSON list or object is refused, never turned into its str()
        value = get(key)
        if value is not None and not isinstance(value, str):
            raise ConfigurationError(f"{label(key)} must be text, not a JSON {type(value).__name__}")
        return value or ""

    site = text("source_site")
    own = ("source_library", "source_folder", "source_move", "source_copy_existing")
    others = [k for k in own if get(k) not in (None, "")]
    if not site:
        if others:
            raise ConfigurationError(f"{label(others[0])} is set but {label('source_site')} is not: which site?")
        return None
    hostname, site_path = _site(site, label("source_site"))
    library = (text("source_library") or "Documents").strip()
    if not library or "/" in library or "\\" in library:
        raise ConfigurationError(f"{label('source_library')} must be a document library's name, e.g. Documents")
    folder = _folder(text("source_folder"), label("source_folder"))
    return GraphFolder(
        hostname,
        site_path,
        library,
        folder,
        move=_bool(get("source_move"), True, label("source_move")),
        copy_existing=_bool(get("source_copy_existing"), False, label("source_copy_existing")),
    )


_HOST = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+")
_PATH_SEGMENT = re.compile(r"[^\\/:*?\"<>|#%\x00-\x1f]+")


def _site(value: str, what: str) -> tuple[str, str]:
    """`contoso.sharepoint.com/sites/HR` or `https://contoso.sharepoint.com/sites/HR` -> host, path."""
    text = value.strip()
    if "://" in text:
        scheme, _, text = text.partition("://")
        if scheme.lower() != "https":
            raise ConfigurationError(f"{what} must be a SharePoint site such as contoso.sharepoint.com/sites/HR "
                                     "(https:// or no scheme)")  # fmt: skip
    host, _, path = text.partition("/")
    segments = [s for s in path.split("/") if s]
    good = all(_PATH_SEGMENT.fullmatch(s) and s not in (".", "..") for s in segments)
    if not _HOST.fullmatch(host) or "?" in path or not good:
        raise ConfigurationError(f"{what} must be a SharePoint site such as contoso.sharepoint.com/sites/HR "
                                 "or contoso-my.sharepoint.com/personal/jane_contoso_com")  # fmt: skip
    return host.lower(), "".join("/" + s for s in segments)


def _folder(value: str, what: str) -> str:
    segments = [s.strip() for s in value.replace("\\", "/").split("/") if s.strip()]
    if not all(_PATH_SEGMENT.fullmatch(s) and s not in (".", "..") for s in segments):
        raise ConfigurationError(f"{what} must be a folder path inside the library, e.g. HR/Exports "
                                 '(no .., and none of \\ : * ? " < > | # %)')  # fmt: skip
    return "/".join(segments)


def _bool(value: Any, default: bool, what: str) -> bool:
    if value is None or (isinstance(value, str) and not value.strip()):
        return default
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "1", "yes"):
        return True
    if text in ("false", "0", "no"):
        return False
    raise ConfigurationError(f"{what} must be true or false")


def _hours(name: str, value: Any) -> float | None:
    """A cadence in hours; empty or 0 means no check (the templates' default)."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    try:
        hours = float(value)
    except (TypeError, ValueError):
        raise ConfigurationError(f"connector {name!r}: expected_every_hours must be a number of hours") from None
    if not hours >= 0 or hours == float("inf"):
        raise ConfigurationError(f"connector {name!r}: expected_every_hours must be 0 (no check) or more")
    return hours or None
