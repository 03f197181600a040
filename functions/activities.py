"""Durable activities: each is idempotent and calls into shared/."""

from __future__ import annotations

import azure.durable_functions as df

bp = df.Blueprint()
