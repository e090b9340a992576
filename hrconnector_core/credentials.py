"""Tokens for the ingestion resource through azure-identity.

The sample script fetches a token for every chunk; here one token is reused by every upload
until it is close to expiry, then fetched again (thread-safe, for parallel uploads).
"""

from __future__ import annotations

import base64
import functools
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from azure.core.credentials import AccessToken, TokenCredential
from azure.core.exceptions import AzureError, ClientAuthenticationError

from .clouds import CLOUDS, CloudEndpoints
from .errors import ConfigurationError, CredentialError

log = logging.getLogger(__name__)

# Fetch a new token this long before the old one expires.
REFRESH_MARGIN_SECONDS = 300

_KNOWN_AUTHORITIES = {c.authority_host for c in CLOUDS.values()}


def _identity_options(cloud: CloudEndpoints) -> dict[str, Any]:
    # An authority outside Microsoft's known hosts (a proxy, the local emulator) cannot be
    # checked by instance discovery, which would call the public cloud.
    custom = cloud.authority_host not in _KNOWN_AUTHORITIES
    return {"authority": cloud.authority_host, "disable_instance_discovery": custom}


def secret_credential(tenant_id: str, client_id: str, secret: str, cloud: CloudEndpoints) -> TokenCredential:
    from azure.identity import ClientSecretCredential

    return ClientSecretCredential(tenant_id, client_id, secret, **_identity_options(cloud))


def certificate_credential(
    tenant_id: str, client_id: str, certificate_path: str, cloud: CloudEndpoints, *, password: str | None = None
) -> TokenCredential:
    from azure.identity import CertificateCredential

    try:
        return CertificateCredential(
            tenant_id,
            client_id,
            certificate_path,
            password=password,
            **_identity_options(cloud),
        )
    except (OSError, ValueError) as exc:
        raise ConfigurationError(f"cannot load the certificate {certificate_path!r}: {exc}") from exc


def secret_from_key_vault(
    vault_url: str,
    secret_name: str,
    *,
    credential: TokenCredential | None = None,
    verify_challenge_resource: bool = True,
) -> str:
    """Read the app secret from Key Vault (DefaultAzureCredential unless one is given).

    `verify_challenge_resource=False` is for vaults answering on a host that is not a
    subdomain of the challenge's resource (the local emulator).
    """
    from azure.identity import DefaultAzureCredential
    from azure.keyvault.secrets import SecretClient

    client = SecretClient(
        vault_url,
        credential or DefaultAzureCredential(),
        verify_challenge_resource=verify_challenge_resource,
    )
    try:
        value = client.get_secret(secret_name).value
    except AzureError as exc:
        raise CredentialError(
            f"cannot read secret {secret_name!r} from Key Vault {vault_url}: {type(exc).__name__}: {_first_line(exc)}"
        ) from exc
    if not value:
        raise CredentialError(f"secret {secret_name!r} in Key Vault {vault_url} is empty")
    return value


@functools.cache
def function_identity(client_id: str | None) -> TokenCredential:
    """The Function's own identity: its user-assigned managed identity in Azure, the developer's
    sign-in (Azure CLI, VS Code, ...) on a workstation. One per process and client id, so its
    token cache serves every invocation."""
    from azure.identity import DefaultAzureCredential

    return DefaultAzureCredential(managed_identity_client_id=client_id, exclude_interactive_browser_credential=True)


class VaultValue:
    """A Key Vault secret kept for `max_age` seconds, and read again early when it was refused.

    Shared by the invocations of one Function instance, so a burst of files reads the vault once,
    and a rotated secret is picked up without a restart.
    """

    def __init__(
        self,
        vault_url: str,
        name: str,
        credential: TokenCredential,
        *,
        max_age: float,
        verify_challenge_resource: bool = True,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.vault_url = vault_url
        self.name = name
        self._credential = credential
        self._max_age = max_age
        self._verify = verify_challenge_resource
        self._clock = clock
        self._lock = threading.Lock()
        self._value: str | None = None
        self._read_at = 0.0
        self.reads = 0

    def get(self, *, refresh: bool = False) -> str:
        with self._lock:
            if refresh or self._value is None or self._clock() - self._read_at >= self._max_age:
                self._value = secret_from_key_vault(
                    self.vault_url, self.name, credential=self._credential, verify_challenge_resource=self._verify
                )
                self._read_at = self._clock()
                self.reads += 1
            return self._value


class VaultBackedCredential:
    """An app credential (secret or certificate) whose material lives in Key Vault.

    When the token endpoint refuses it, the vault is read again: if a newer version is there
    (the secret was rotated), that one is used; if not, the refusal stands.
    """

    def __init__(self, material: VaultValue, build: Callable[[str], TokenCredential]) -> None:
        self._material = material
        self._build = build
        self._lock = threading.Lock()
        self._built: tuple[str, TokenCredential] | None = None

    def _credential(self, value: str) -> TokenCredential:
        with self._lock:
            if self._built is None or self._built[0] != value:
                self._built = (value, self._build(value))
            return self._built[1]

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        value = self._material.get()
        try:
            return self._credential(value).get_token(*scopes, **kwargs)
        except ClientAuthenticationError:
            fresh = self._material.get(refresh=True)
            if fresh == value:
                raise
            log.info("the credential in Key Vault secret %r was refused; using its newer version", self._material.name)
            return self._credential(fresh).get_token(*scopes, **kwargs)


def key_vault_secret_credential(
    tenant_id: str, client_id: str, material: VaultValue, cloud: CloudEndpoints
) -> TokenCredential:
    """The app's client secret, read from Key Vault."""
    return VaultBackedCredential(material, lambda secret: secret_credential(tenant_id, client_id, secret, cloud))


def key_vault_certificate_credential(
    tenant_id: str, client_id: str, material: VaultValue, cloud: CloudEndpoints
) -> TokenCredential:
    """The app's certificate with its private key, as Key Vault returns it: PEM text or base64 PFX."""
    from azure.identity import CertificateCredential

    def build(value: str) -> TokenCredential:
        data = value.encode() if value.lstrip().startswith("-----BEGIN") else _base64(value, material.name)
        try:
            return CertificateCredential(tenant_id, client_id, certificate_data=data, **_identity_options(cloud))
        except ValueError as exc:
            raise CredentialError(f"Key Vault secret {material.name!r} holds no usable certificate: {exc}") from exc

    return VaultBackedCredential(material, build)


def _base64(value: str, name: str) -> bytes:
    try:
        return base64.b64decode(value, validate=True)
    except ValueError:
        raise CredentialError(f"Key Vault secret {name!r} is neither PEM nor base64 PFX") from None


def federated_credential(
    tenant_id: str, client_id: str, cloud: CloudEndpoints, *, identity_client_id: str | None
) -> TokenCredential:
    """No secret at all: the app trusts the Function's managed identity (a federated identity
    credential on the app), whose token for the exchange audience is the client assertion."""
    from azure.identity import ClientAssertionCredential, ManagedIdentityCredential

    identity = ManagedIdentityCredential(client_id=identity_client_id)
    audience = cloud.token_exchange_audience + "/.default"

    def assertion() -> str:
        token: str = identity.get_token(audience).token
        return token

    return ClientAssertionCredential(tenant_id, client_id, assertion, **_identity_options(cloud))


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else ""


class TokenProvider:
    """One bearer token for a scope, shared by all uploads until shortly before it expires."""

    def __init__(
        self,
        credential: TokenCredential,
        scope: str,
        *,
        renew: Callable[[], TokenCredential] | None = None,
        refresh_margin: float = REFRESH_MARGIN_SECONDS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._credential = credential
        self._renew = renew
        self._scope = scope
        self._margin = refresh_margin
        self._clock = clock
        self._lock = threading.Lock()
        self._token: AccessToken | None = None
        self.fetches = 0

    def token(self) -> str:
        with self._lock:
            if self._token is None or self._token.expires_on - self._margin <= self._clock():
                self._token = self._fetch()
            return self._token.token

    def invalidate(self, token: str) -> None:
        """Forget `token` (the service refused it) so the next call fetches a new one. An
        azure-identity credential hands back its cached token until that expires, revoked or not,
        so the new one comes from a new credential when `renew` makes one."""
        with self._lock:
            if self._token is not None and self._token.token == token:
                self._token = None
                if self._renew is not None:
                    self._credential = self._renew()

    def _fetch(self) -> AccessToken:
        try:
            token = self._credential.get_token(self._scope)
        except ClientAuthenticationError as exc:
            raise CredentialError(f"the identity platform refused the credential: {_first_line(exc)}") from exc
        except AzureError as exc:
            raise CredentialError(f"no token could be obtained: {type(exc).__name__}: {_first_line(exc)}") from exc
        self.fetches += 1
        log.debug("token fetched for %s (fetch %d)", self._scope, self.fetches)
        return token
