"""Azure Functions entry point (v2 programming model).

Thin by design: three triggers that hand over to hrconnector_core.service. Everything they
read is in hrconnector_core.settings; docs/function.md describes the behaviour.
"""

import logging

import azure.functions as func
import azurefunctions.extensions.bindings.blob as blob

from hrconnector_core.errors import ConfigurationError
from hrconnector_core.graphsource import run_sources
from hrconnector_core.service import HRConnectorService
from hrconnector_core.settings import (
    INCOMING_CONTAINER_SETTING,
    SCHEDULE_SETTING,
    SOURCE_SCHEDULE_SETTING,
    STORAGE_CONNECTION,
    Settings,
    sdk_log_level,
)
from hrconnector_core.telemetry import configure_opentelemetry, set_sdk_log_level

log = logging.getLogger("hrconnector_core.function_app")


def _service() -> HRConnectorService:
    return HRConnectorService(Settings.from_env())


# The worker forwards every record at INFO and above: keep the SDKs' chatter out unless asked.
set_sdk_log_level(sdk_log_level())

try:  # telemetry never blocks start-up; a settings problem is reported by the first invocation
    _startup = Settings.from_env()
    configure_opentelemetry(_startup.appinsights_connection_string, identity_client_id=_startup.identity_client_id)
except ConfigurationError:
    pass

app = func.FunctionApp()


@app.function_name("hr_file_arrived")
@app.blob_trigger(
    arg_name="client",
    path=f"%{INCOMING_CONTAINER_SETTING}%/{{name}}",
    connection=STORAGE_CONNECTION,
    source=func.BlobSource.EVENT_GRID,
)
def hr_file_arrived(client: blob.BlobClient) -> None:
    """A file landed in the incoming container: validate, upload, report, move (exactly once)."""
    _service().process(client)


@app.function_name("hr_schedule")
@app.timer_trigger(arg_name="timer", schedule=f"%{SCHEDULE_SETTING}%", run_on_startup=False, use_monitor=True)
def hr_schedule(timer: func.TimerRequest) -> None:
    """Missed files, employee-profile refresh, retention (UTC schedule from HR_SCHEDULE)."""
    if timer.past_due:
        log.info("the schedule is running late")
    _service().run_schedule()


@app.function_name("hr_graph_source")
@app.timer_trigger(arg_name="timer", schedule=f"%{SOURCE_SCHEDULE_SETTING}%", run_on_startup=False, use_monitor=True)
def hr_graph_source(timer: func.TimerRequest) -> None:
    """New files in the connectors' SharePoint/OneDrive folders -> hr-incoming; finished ones moved."""
    run_sources(Settings.from_env())
