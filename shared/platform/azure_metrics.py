"""Deployment health from Azure Monitor metrics (azure-monitor-querymetrics' MetricsClient).

Azure ML publishes request metrics on the *endpoint* resource, split by a ``deployment``
dimension: ``RequestsPerMinute`` (also split by ``statusCodeClass``: 2xx, 4xx, 5xx) and
``RequestLatency_P50/_P95/_P99`` (milliseconds). The ``deployments`` resource only has
instance metrics (CPU, memory, capacity), so we query the endpoint and filter on the
deployment. Azure Monitor gives per-minute aggregates, never raw samples: the window's
percentiles are the request-weighted mean of the per-minute percentiles (an approximation
stated here so nobody mistakes it for an exact p95), and ``DeploymentMetrics.has_samples`` is False.
The per-minute p95s themselves are kept too (``DeploymentMetrics.p95_windows``, with each minute's
request count): the canary compares them minute by minute with the champion's.

``MetricsQueryClient`` left azure-monitor-query in 2.0.0; ``MetricsClient`` (azure-monitor-querymetrics)
queries the regional data-plane endpoint ``https://<region>.metrics.monitor.azure.com``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from shared.platform import DeploymentMetrics, LatencyWindow, MetricsQuery

ENDPOINT_NAMESPACE = "Microsoft.MachineLearningServices/workspaces/onlineEndpoints"
REQUESTS_METRIC = "RequestsPerMinute"
LATENCY_METRICS = {"p50": "RequestLatency_P50", "p95": "RequestLatency_P95", "p99": "RequestLatency_P99"}


def metrics_endpoint(location: str) -> str:
    return f"https://{location.replace(' ', '').lower()}.metrics.monitor.azure.com"


def _series(results: Sequence[Any], metric_name: str) -> list[Any]:
    return [
        series
        for result in results
        for metric in result.metrics
        if metric.name == metric_name
        for series in metric.timeseries
    ]


def query_deployment_metrics(
    client: Any, endpoint_resource_id: str, query: MetricsQuery, granularity: timedelta = timedelta(minutes=1)
) -> DeploymentMetrics:
    """Run the two metric queries for one deployment (``client`` is a ``MetricsClient``) and summarise them."""
    deployment = query.deployment.replace("'", "''")
    timespan = (query.start, query.end)
    requests = client.query_resources(
        resource_ids=[endpoint_resource_id],
        metric_namespace=ENDPOINT_NAMESPACE,
        metric_names=[REQUESTS_METRIC],
        timespan=timespan,
        granularity=granularity,
        aggregations=["Total"],
        filter=f"deployment eq '{deployment}' and statusCodeClass eq '*'",
    )
    latency = client.query_resources(
        resource_ids=[endpoint_resource_id],
        metric_namespace=ENDPOINT_NAMESPACE,
        metric_names=list(LATENCY_METRICS.values()),
        timespan=timespan,
        granularity=granularity,
        aggregations=["Average"],
        filter=f"deployment eq '{deployment}'",
    )
    return summarise(query, requests, latency, granularity)


def summarise(
    query: MetricsQuery,
    requests: Sequence[Any],
    latency: Sequence[Any],
    granularity: timedelta = timedelta(minutes=1),
) -> DeploymentMetrics:
    """Totals per status class, request-weighted latency percentiles and the per-interval p95s from
    MetricsQueryResult lists (``granularity``: the interval the queries asked for)."""
    total = errors = 0
    per_minute: dict[datetime, float] = defaultdict(float)
    for series in _series(requests, REQUESTS_METRIC):
        status_class = str(_metadata(series).get("statuscodeclass", ""))
        for value in series.data:
            count = float(value.total or 0.0)
            total += round(count)
            per_minute[value.timestamp] += count
            if status_class.startswith("5"):
                errors += round(count)
    percentiles: dict[str, float | None] = {}
    for key, metric_name in LATENCY_METRICS.items():
        weighted = weight = 0.0
        for series in _series(latency, metric_name):
            for value in series.data:
                if value.average is None:
                    continue
                w = per_minute.get(value.timestamp, 0.0) or 1.0
                weighted += float(value.average) * w
                weight += w
        percentiles[key] = weighted / weight if weight else None
    return DeploymentMetrics(
        endpoint=query.endpoint,
        deployment=query.deployment,
        start=query.start,
        end=query.end,
        requests=total,
        errors=errors,
        p50_ms=percentiles["p50"],
        p95_ms=percentiles["p95"],
        p99_ms=percentiles["p99"],
        has_samples=False,
        p95_windows=_p95_windows(latency, per_minute, granularity),
    )


def _p95_windows(
    latency: Sequence[Any], per_minute: Mapping[datetime, float], granularity: timedelta
) -> tuple[LatencyWindow, ...]:
    """One window per interval with a p95 value, oldest first. An interval whose request count is known to be
    zero is left out; one the request metric does not mention keeps ``requests=None``."""
    values: dict[datetime, list[float]] = defaultdict(list)
    for series in _series(latency, LATENCY_METRICS["p95"]):
        for value in series.data:
            if value.average is not None:
                values[value.timestamp].append(float(value.average))
    windows: list[LatencyWindow] = []
    for stamp in sorted(values):
        count = per_minute.get(stamp)
        if count is not None and round(count) == 0:
            continue
        windows.append(
            LatencyWindow(
                start=stamp,
                seconds=granularity.total_seconds(),
                p95_ms=sum(values[stamp]) / len(values[stamp]),  # one series per deployment; more are averaged
                requests=None if count is None else round(count),
            )
        )
    return tuple(windows)


def _metadata(series: Any) -> Mapping[str, object]:
    # Dimension names come back in the service's casing (statusCodeClass or statuscodeclass).
    return {str(k).lower(): v for k, v in (series.metadata_values or {}).items()}
