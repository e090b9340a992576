"""The exceptions the core raises to its callers.

Messages never carry HR data or secrets: row numbers, column names, file names and the
service's own status and reason are fine, field values are not.
"""

from __future__ import annotations

from typing import Any


class HRConnectorError(Exception):
    """Base of every error the core raises on purpose."""


class ConfigurationError(HRConnectorError):
    """Settings or arguments that cannot work (exit code 2 on the command line)."""


class InputFileError(HRConnectorError):
    """The file as a whole cannot be read as CSV (encoding, no header, ...)."""


class StorageError(HRConnectorError):
    """Blob Storage refused or lost something the Function needs (state, checkpoint, a copy)."""


class CredentialError(HRConnectorError):
    """No token could be obtained for the ingestion resource."""


class UploadError(HRConnectorError):
    """A chunk could not be uploaded.

    `permanent` is True when retrying cannot help (a 4xx other than 408/429, a redirect, an
    unverifiable certificate). `body` and `reason` are the service's, redacted; `location` is a
    redirect's target (scheme, host, path); `retry_after` the wait the service last asked for.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        reason: str | None = None,
        body: str | None = None,
        permanent: bool = False,
        attempts: list[Any] | None = None,
        location: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.attempts = attempts or []
        self.status = status
        self.reason = reason
        self.body = body
        self.permanent = permanent
        self.location = location
        self.retry_after = retry_after
