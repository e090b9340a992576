"""Tokens for the ingestion resource through azure-identity.

The sample script fetches a token for every chunk; here one token is reused by every upload
until it is close to expiry, then fetched again (thread-safe, for parallel uploads).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from azure.core.credentials import AccessToken, TokenCredential
from azure.core.exceptions import AzureError, ClientAuthenticationError

from .clouds import CLOUDS, CloudEndpoints
from .errors import ConfigurationError, CredentialError

log = logging.getLogger(__name__)

# Fetch a new token this long before the old one expires.
REFRESH_MARGIN_SECONDS = 300

_KNOWN_AUTHORITIES = {c.authority_host for c in CLOUDS.values()}


def _identity_options(cloud: CloudEndpoints) -> dict[str, object]:
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
        refresh_margin: float = REFRESH_MARGIN_SECONDS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._credential = credential
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
        """Forget `token` (the service refused it) so the next call fetches a new one."""
        with self._lock:
            if self._token is not None and self._token.token == token:
                self._token = None

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
