"""Tests written for mutations that survived scripts/mutation_check.py: each one fails when its
mutation is applied (checked by hand) and names the mutation it guards against.

They run against Azurite with the real Azure SDK, like the Function's own tests."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from azure.storage.blob import BlobServiceClient, ContainerClient

from hrconnector_core.blobstore import BlobSource, delete_if_unchanged
from hrconnector_core.emulator.azurite import Azurite
from hrconnector_core.errors import InputFileError

OLD = b"EmployeeId,Email\n1,a@example.com\n"
NEW = b"EmployeeId,Email\n2,b@example.com\n3,c@example.com\n"


@pytest.fixture
def container(azurite: Azurite) -> Iterator[ContainerClient]:
    service = BlobServiceClient.from_connection_string(azurite.connection_string)
    client = service.create_container(f"guards-{uuid.uuid4().hex[:8]}")
    yield client
    client.delete_container()


def test_a_replaced_file_is_not_read_at_its_new_version(container: ContainerClient) -> None:
    """Mutation "blobstore: the source is read at any version": the version the event named is
    gone, so reading must refuse rather than stream the new version under the old one's state."""
    blob = container.get_blob_client("hr.csv")
    old_etag = blob.upload_blob(OLD)["etag"]
    assert BlobSource(blob, old_etag, "hr.csv").open().read() == OLD
    blob.upload_blob(NEW, overwrite=True)
    with pytest.raises(InputFileError, match="replaced"):
        BlobSource(blob, old_etag, "hr.csv").open().read()


def test_a_replaced_file_is_not_deleted_by_the_run_of_its_old_version(container: ContainerClient) -> None:
    """Mutation "blobstore: the source is deleted at any version": the new version (its own event
    still to come) stays in place, unprocessed rows and all."""
    blob = container.get_blob_client("hr.csv")
    old_etag = blob.upload_blob(OLD)["etag"]
    new_etag = blob.upload_blob(NEW, overwrite=True)["etag"]
    assert delete_if_unchanged(blob, old_etag) is False
    assert blob.download_blob().readall() == NEW
    assert delete_if_unchanged(blob, new_etag) is True
    assert not blob.exists()


def test_the_function_app_registers_once_under_the_module_lock(monkeypatch: pytest.MonkeyPatch) -> None:
    """Mutation "emulator host: registration not thread-safe": `app.get_functions()` may run only
    once per app, so a concurrent first caller must find the registration lock held and wait.
    Checked from inside the registration itself (no threads, no timing)."""
    import function_app
    from hrconnector_core.emulator import host

    functions = list(host.registered_functions().values())  # the real registration, done once
    calls: list[bool] = []

    def get_functions() -> list[object]:
        calls.append(host._registration_lock.locked())  # a second caller would block here
        return functions

    monkeypatch.setattr(host, "_registered", None)
    monkeypatch.setattr(function_app.app, "get_functions", get_functions)
    first = host.registered_functions()
    assert host.registered_functions() is first
    assert calls == [True]
    assert set(first) == {str(f.get_function_name()) for f in functions}
