"""Event Grid BlobCreated on the landing container -> the per-model ingest orchestration."""

from __future__ import annotations

import azure.durable_functions as df

bp = df.Blueprint()
