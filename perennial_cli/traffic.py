"""Scoring traffic for a model's online endpoint, as a client application would send it.

The bank's authorisation service scores one transaction per request, many at a time; later the
chargebacks arrive and become delayed labels (``feedback/<model>/<name>.csv``: request_id,label).
:class:`ScoringTraffic` plays that role for the demo and the end-to-end tests: it sends rows of a
labelled frame to the endpoint, remembers which deployment answered each request, and writes the
labels of the answered requests as feedback.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pandas as pd

#: (scoring URI, key) of the endpoint, asked for before every batch (the router may have moved port).
AddressFn = Callable[[], tuple[str, str]]


class ScoringTraffic:
    """Scores the rows of ``frame`` (its ``label`` column held back) one per request, ``workers`` at a time."""

    def __init__(self, address: AddressFn, frame: pd.DataFrame, label: str = "is_fraud", prefix: str = "req") -> None:
        self.address = address
        rows = frame.copy()
        self.labels: list[int] = [int(v) for v in rows.pop(label).tolist()]
        rows = rows.astype(object).where(rows.notna(), None)
        self.rows: list[dict[str, Any]] = rows.to_dict(orient="records")
        self.prefix = prefix
        self.sent = 0
        #: (request id, deployment that answered, HTTP status, true label) per request sent
        self.answers: list[tuple[str, str | None, int, int]] = []

    def send(self, count: int, workers: int = 8) -> dict[str, int]:
        """Score ``count`` transactions (cycling through the frame); returns how many each deployment answered."""
        uri, key = self.address()
        start = self.sent
        self.sent += count

        # One pooled client for the batch: creating a client per request (httpx.post) costs more than scoring.
        limits = httpx.Limits(max_connections=workers, max_keepalive_connections=workers)
        with httpx.Client(timeout=30, limits=limits) as client:

            def one(index: int) -> tuple[str, str | None, int, int]:
                row = index % len(self.rows)
                request_id = f"{self.prefix}-{index:08d}"
                response = client.post(
                    uri,
                    json={"data": [self.rows[row]]},
                    headers={"Authorization": f"Bearer {key}", "x-ms-client-request-id": request_id},
                )
                answered = response.headers.get("azureml-model-deployment")
                status = response.status_code
                return response.headers.get("x-request-id", request_id), answered, status, self.labels[row]

            with ThreadPoolExecutor(workers) as pool:
                answers = list(pool.map(one, range(start, start + count)))
        self.answers += answers
        return dict(Counter(str(deployment) for _, deployment, _, _ in answers))

    def statuses(self, since: int = 0) -> dict[int, int]:
        """How many requests (from the ``since``-th on) got each HTTP status."""
        return dict(Counter(status for _, _, status, _ in self.answers[since:]))

    def feedback_csv(self, since: int = 0) -> bytes:
        """The delayed labels of the requests answered with 200 (from the ``since``-th on), as feedback CSV."""
        lines = ["request_id,label"]
        lines += [f"{rid},{label}" for rid, _, status, label in self.answers[since:] if status == 200]
        return ("\n".join(lines) + "\n").encode()
