"""Timer trigger: evaluates the retraining policy per model and publishes RetrainRequested."""

from __future__ import annotations

import azure.durable_functions as df

bp = df.Blueprint()
