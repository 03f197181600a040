"""Monitoring alerts (Event Grid events, Azure Monitor common alert schema) -> retrain."""

from __future__ import annotations

import azure.durable_functions as df

bp = df.Blueprint()
