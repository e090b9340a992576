"""Calls the registered functions of function_app the way the Functions host and worker do.

No Core Tools here: the app's functions are taken from `app.get_functions()` (once per app
object), and a blob trigger's argument is made by the SDK-type binding's own converter from the
model-binding data the host sends, so the user function receives the same BlobClient it would
in Azure. Used by the demo and the tests.
"""

from __future__ import annotations

import json
import threading
from types import SimpleNamespace
from typing import Any

import azure.functions as func
from azure.functions.timer import TimerRequest
from azurefunctions.extensions.base import Datum
from azurefunctions.extensions.bindings.blob.blobClientConverter import BlobClientConverter

from .server import Emulator

_registration_lock = threading.Lock()
_registered: dict[str, Any] | None = None


def registered_functions() -> dict[str, Any]:
    """name -> the registered function object of function_app (imported once).

    `app.get_functions()` may run only once per app object (a second call fails with "does not
    have a unique function name"), so concurrent first callers wait on one lock rather than
    racing; `functools.cache` would let both threads call it.
    """
    global _registered
    with _registration_lock:
        if _registered is None:
            import function_app

            _registered = {str(f.get_function_name()): f for f in function_app.app.get_functions()}
        return _registered


def trigger(function: Any) -> Any:
    """The function's trigger binding."""
    return next(b for b in function.get_bindings() if b.type.endswith("Trigger"))


def blob_argument(function: Any, container: str, blob_name: str) -> Any:
    """What the worker passes for a blob trigger with an SDK-type annotation."""
    binding = trigger(function)
    user = function.get_user_function()
    pytype = user.__annotations__[binding.name]
    content = {"Connection": binding.connection, "ContainerName": container, "BlobName": blob_name}
    data = SimpleNamespace(
        version="1.0", source="AzureStorageBlobs", content_type="application/json", content=json.dumps(content)
    )
    return BlobClientConverter.decode(Datum(data, "model_binding_data"), trigger_metadata={}, pytype=pytype)


def invoke_blob_trigger(name: str, container: str, blob_name: str) -> Any:
    function = registered_functions()[name]
    return function.get_user_function()(blob_argument(function, container, blob_name))


def invoke_timer(name: str, *, past_due: bool = False) -> Any:
    timer: func.TimerRequest = TimerRequest(past_due=past_due)
    return registered_functions()[name].get_user_function()(timer)


def local_settings(
    storage_connection_string: str,
    emulator: Emulator,
    *,
    connector: str,
    job_id: str,
    tenant_id: str,
    app_id: str,
    identity: str,
    secret_name: str,
) -> dict[str, str]:
    """The app settings a deployment would have, pointed at Azurite and the emulator (whose
    managed-identity endpoint stands in for the Function's identity)."""
    return {
        "HR_STORAGE": storage_connection_string,
        "HR_INCOMING_CONTAINER": "hr-incoming",
        "HR_SCHEDULE": "0 */15 * * * *",
        "HR_SOURCE_SCHEDULE": "0 */5 * * * *",
        "HR_GRAPH_URL": emulator.url,
        "HR_CONNECTOR_NAME": connector,
        "HR_JOB_ID": job_id,
        "HR_TENANT_ID": tenant_id,
        "HR_APP_ID": app_id,
        "HR_KEY_VAULT_URL": emulator.url,
        "HR_SECRET_NAME": secret_name,
        "HR_KEY_VAULT_SKIP_CHALLENGE_CHECK": "true",
        "HR_AUTHORITY_HOST": emulator.url,
        "HR_INGESTION_URL": emulator.url,
        "AZURE_CLIENT_ID": identity,
        "IDENTITY_ENDPOINT": f"{emulator.url}/msi/token",
        "IDENTITY_HEADER": emulator.state.identity_header,
        "REQUESTS_CA_BUNDLE": str(emulator.ca_path),
    }
