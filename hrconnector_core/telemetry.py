"""Logging context and OpenTelemetry for the Function.

Every log record made while a file is handled carries the file, the connector and the run id,
as attributes (custom dimensions in Application Insights) and, for the core's own records, as
a prefix of the message (the host's plain log stream shows only messages). Context travels to
upload threads through contextvars. Log values never include HR data or secrets.
"""

from __future__ import annotations

import contextvars
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

log = logging.getLogger(__name__)

_CONTEXT: contextvars.ContextVar[dict[str, str] | None] = contextvars.ContextVar("hrconnector_context", default=None)
_installed = False
_configured = False


@contextmanager
def log_context(**values: str | None) -> Iterator[None]:
    """Adds `hr.<name>` attributes to every log record made inside the block (and its threads)."""
    _install_record_factory()
    merged = {**(_CONTEXT.get() or {}), **{f"hr.{k}": v for k, v in values.items() if v}}
    token = _CONTEXT.set(merged)
    try:
        yield
    finally:
        _CONTEXT.reset(token)


def _install_record_factory() -> None:
    global _installed
    if _installed:
        return
    previous = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        context = _CONTEXT.get()
        if context:
            record.__dict__.update(context)
            if record.name.startswith("hrconnector_core") and isinstance(record.msg, str):
                tags = " ".join(f"{k[3:]}={v}" for k, v in context.items())
                record.msg = f"[{tags}] {record.msg}"
        return record

    logging.setLogRecordFactory(factory)
    _installed = True


# The libraries whose records the worker would forward at INFO: azure-core's http_logging_policy
# dumps every request and response (URLs with container, file and secret names), azure-identity
# names the identity's client id. Off (WARNING) by default; HR_SDK_LOG_LEVEL turns them on.
SDK_LOGGERS = ("azure", "msal", "urllib3", "requests", "opentelemetry")


def set_sdk_log_level(level: str) -> None:
    """Set the SDKs' loggers to `level` (the Function's own `hrconnector_core` lines are not touched)."""
    for name in SDK_LOGGERS:
        logging.getLogger(name).setLevel(level)


def dimensions(**counts: object) -> dict[str, object]:
    """`extra=` for a log call: each count becomes a custom dimension `hr.<name>`."""
    return {f"hr.{k}": v for k, v in counts.items()}


def configure_opentelemetry(connection_string: str | None, *, identity_client_id: str | None) -> bool:
    """Send the core's logs to Application Insights through OpenTelemetry, when a connection string
    is set and azure-monitor-opentelemetry is installed. Entra authentication (the resource's local
    auth is off) uses the Function's identity. Never fails start-up: a problem is logged."""
    global _configured
    if not connection_string or _configured:
        return _configured
    try:
        from azure.monitor.opentelemetry import configure_azure_monitor

        from .credentials import function_identity

        configure_azure_monitor(
            connection_string=connection_string,
            credential=function_identity(identity_client_id),
            logger_name="hrconnector_core",
        )
    except ImportError:
        log.warning("APPLICATIONINSIGHTS_CONNECTION_STRING is set but azure-monitor-opentelemetry is not installed")
        return False
    except Exception as exc:
        log.warning("OpenTelemetry could not be configured: %s", type(exc).__name__)
        return False
    _configured = True
    return True
