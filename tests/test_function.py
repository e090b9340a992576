"""The registered functions, called as the host would, against Azurite and the emulator."""

from __future__ import annotations

import threading

import azurefunctions.extensions.bindings.blob as blob_ext
import pytest
from azurefunctions.extensions.bindings.blob.blobClientConverter import BlobClientConverter

from hrconnector_core.emulator.host import invoke_blob_trigger, registered_functions, trigger
from hrconnector_core.service import FileFailedError

from .conftest import APP_ID, OTHER_APP_ID, SAMPLES, SECRET, TENANT, FunctionEnv
from .csvdata import HEADER, csv_bytes, parse, rows

BLOB_FUNCTION = "hr_file_arrived"
TIMER_FUNCTION = "hr_schedule"


def rows_of(data: bytes) -> list[list[str]]:
    return parse(data)[1:]


def drop_and_invoke(env: FunctionEnv, name: str, data: bytes) -> None:
    env.drop(name, data)
    invoke_blob_trigger(BLOB_FUNCTION, env.settings.containers.incoming, name)


# -- bindings ---------------------------------------------------------------------------------------
def test_blob_trigger_binding_is_event_grid_with_identity_connection() -> None:
    function = registered_functions()[BLOB_FUNCTION]
    binding = trigger(function).get_dict_repr()
    assert binding["type"] == "blobTrigger"
    assert binding["path"] == "%HR_INCOMING_CONTAINER%/{name}"
    assert binding["connection"] == "HR_STORAGE"  # a prefix: HR_STORAGE__blobServiceUri, __credential, __clientId
    assert binding["source"] == "EventGrid"
    # The SDK-type binding: the worker streams through a BlobClient instead of loading the bytes.
    annotation = function.get_user_function().__annotations__[binding["name"]]
    assert annotation is blob_ext.BlobClient
    assert BlobClientConverter.check_input_type_annotation(annotation)


def test_timer_binding_reads_its_schedule_from_a_setting() -> None:
    binding = trigger(registered_functions()[TIMER_FUNCTION]).get_dict_repr()
    assert binding["type"] == "timerTrigger"
    assert binding["schedule"] == "%HR_SCHEDULE%"
    assert binding["runOnStartup"] is False


# -- one file -----------------------------------------------------------------------------------------
def test_a_dropped_file_is_uploaded_reported_and_moved(emulator, function_env: FunctionEnv) -> None:
    env = function_env
    data = (SAMPLES / "resignation.csv").read_bytes()
    drop_and_invoke(env, "main/resignation.csv", data)

    assert emulator.state.rows(env.job) == rows_of(data)
    names = env.settings.containers
    listing = env.listing()
    assert listing[names.incoming] == []
    assert listing[names.failed] == []
    assert listing[names.reports] == []  # no rejected rows
    moved = [n for n in listing[names.processed] if n.endswith("/resignation.csv")]
    assert len(moved) == 1 and moved[0].startswith("main/")
    assert listing[names.processed] == [moved[0], moved[0] + ".report.json"]
    copy = env.service.processed.get_blob_client(moved[0]).download_blob().readall()
    assert copy == data
    report = env.read_json(names.processed, moved[0] + ".report.json")
    assert report["status"] == "succeeded"
    assert report["rows"]["uploaded"] == len(rows_of(data))
    assert report["job_id"] == env.job
    states = env.service.files.history("main/resignation.csv")
    assert [s.status for s in states] == ["processed"]
    assert states[0].destination == moved[0] and states[0].runs == 1


def test_rejected_rows_go_to_the_reports_container(emulator, function_env: FunctionEnv) -> None:
    env = function_env
    good, bad = rows(2, start=1)
    bad[0] = "not-an-email"
    data = csv_bytes(HEADER, [good, bad])
    drop_and_invoke(env, "main/mixed.csv", data)
    assert emulator.state.rows(env.job) == [rows_of(data)[0]]
    reports = env.listing()[env.settings.containers.reports]
    assert [n.rsplit("/", 1)[1] for n in reports] == ["mixed.csv.rejected.csv", "mixed.csv.rejected.report.json"]
    rejected = env.service.reports.get_blob_client(reports[0]).download_blob().readall().decode()
    assert "not-an-email" in rejected and good[0] not in rejected
    report = env.read_json(env.settings.containers.reports, reports[1])
    assert report["rows"]["rejected"] == 1 and report["rows"]["uploaded"] == 1
    assert "not-an-email" not in str(report)


def test_the_same_event_three_times_uploads_once(emulator, function_env: FunctionEnv) -> None:
    env = function_env
    data = (SAMPLES / "resignation.csv").read_bytes()
    env.drop("main/again.csv", data)
    for _ in range(3):
        invoke_blob_trigger(BLOB_FUNCTION, env.settings.containers.incoming, "main/again.csv")
    assert emulator.state.rows(env.job) == rows_of(data)
    assert len(emulator.state.uploads[env.job]) == 1


def test_two_concurrent_invocations_upload_once(emulator, function_env: FunctionEnv) -> None:
    env = function_env
    data = csv_bytes(HEADER, rows(40))
    env.drop("main/race.csv", data)
    emulator.state.set_faults(latency_ms=300)  # the first is mid-upload when the second arrives
    errors: list[BaseException] = []

    def invoke() -> None:
        try:
            invoke_blob_trigger(BLOB_FUNCTION, env.settings.containers.incoming, "main/race.csv")
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=invoke) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sorted(emulator.state.rows(env.job)) == sorted(rows_of(data))
    assert len(emulator.state.rows(env.job)) == 40


def test_service_refusal_moves_the_file_to_failed_with_the_reason(emulator, function_env: FunctionEnv) -> None:
    env = function_env
    emulator.state.register_job(env.job, OTHER_APP_ID)  # the job now belongs to another app: 403
    data = (SAMPLES / "resignation.csv").read_bytes()
    env.drop("main/refused.csv", data)
    with pytest.raises(FileFailedError, match="403"):
        invoke_blob_trigger(BLOB_FUNCTION, env.settings.containers.incoming, "main/refused.csv")
    names = env.settings.containers
    listing = env.listing()
    assert listing[names.incoming] == [] and listing[names.processed] == []
    moved, report_name = listing[names.failed]
    assert report_name == moved + ".report.json"
    report = env.read_json(names.failed, report_name)
    assert report["status"] == "failed"
    assert "jobId and corresponding appId do not match" in report["error"]
    assert env.service.failed.get_blob_client(moved).download_blob().readall() == data
    assert [s.status for s in env.service.files.history("main/refused.csv")] == ["failed"]
    assert emulator.state.rows(env.job) == []


def test_unknown_connector_folder_is_kept_in_failed(emulator, function_env: FunctionEnv) -> None:
    env = function_env
    with pytest.raises(FileFailedError, match="no connector for folder 'payroll'"):
        drop_and_invoke(env, "payroll/x.csv", (SAMPLES / "resignation.csv").read_bytes())
    failed = env.listing()[env.settings.containers.failed]
    assert [n.endswith(("payroll/x.csv", "payroll/x.csv.report.json")) for n in failed] == [True, True]
    assert emulator.state.rows(env.job) == []


__all__ = ["APP_ID", "SECRET", "TENANT"]
