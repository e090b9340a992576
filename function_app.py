"""Azure Functions entry point (v2 programming model).

Thin by design: triggers and bindings only; all behaviour lives in hrconnector_core. The
Event Grid blob trigger and the timer trigger are added with the Function issue.
"""

import azure.functions as func

app = func.FunctionApp()
