"""The HTTP API. Every route needs a function key except /api/health."""

from __future__ import annotations

import azure.durable_functions as df
import azure.functions as func

import shared
from functions.http import json_response
from shared.runtime import get_runtime

bp = df.Blueprint()


@bp.route(route="health", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def health(req: func.HttpRequest) -> func.HttpResponse:
    """Liveness + what this instance runs: version, platform adapter and the model specs it loaded."""
    runtime = get_runtime()
    return json_response(
        {
            "status": "ok",
            "version": shared.__version__,
            "platform": runtime.settings.platform,
            "settings": runtime.settings.describe(),
            "models": {
                name: {
                    "task": spec.task,
                    "endpoint": spec.endpoint_name,
                    "primary_metric": spec.promotion.primary_metric,
                }
                for name, spec in sorted(runtime.specs.items())
            },
        }
    )
