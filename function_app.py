"""The Azure Functions entry point (Python v2 model): build the app and register the blueprints.

Importing this module must stay cheap (no torch, no azure.ai.ml): it runs on every cold
start. Settings and model specs are validated here so a bad deployment fails at start-up
with a message that names the setting or spec field to fix.
"""

from __future__ import annotations

import azure.durable_functions as df
import azure.functions as func

from functions import activities, alerts, api, housekeeping, ingest, orchestrators, schedule
from shared.logs import configure_logging
from shared.runtime import get_runtime

_runtime = get_runtime()
configure_logging(_runtime.settings.log_format, in_azure=_runtime.settings.in_azure)

app = df.DFApp(http_auth_level=func.AuthLevel.FUNCTION)
for blueprint in (api.bp, ingest.bp, alerts.bp, schedule.bp, housekeeping.bp, orchestrators.bp, activities.bp):
    app.register_functions(blueprint)
