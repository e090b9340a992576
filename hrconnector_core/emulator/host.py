"""Calls the registered functions of function_app the way the Functions host and worker do.

No Core Tools here: the app's functions are taken from `app.get_functions()` (once per app
object), and a blob trigger's argument is made by the SDK-type binding's own converter from the
model-binding data the host sends, so the user function receives the same BlobClient it would
in Azure. Used by the demo and the tests.
"""

from __future__ import annotations

import json
from functools import cache
from types import SimpleNamespace
from typing import Any

import azure.functions as func
from azure.functions.timer import TimerRequest
from azurefunctions.extensions.base import Datum
from azurefunctions.extensions.bindings.blob.blobClientConverter import BlobClientConverter


@cache
def registered_functions() -> dict[str, Any]:
    """name -> the registered function object of function_app (imported once)."""
    import function_app

    return {str(f.get_function_name()): f for f in function_app.app.get_functions()}


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
