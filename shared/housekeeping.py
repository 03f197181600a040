"""Keep a model's endpoint tidy between runs (the glue between the platform, the registry and the policy).

Traffic: with no run in flight only the champion takes traffic; a split or mirror left by a rollout or
rollback whose compensation gave up is put right (``shared.policy.traffic_to_repair``).

Retiring deployments nobody needs any more:

The previous champion's deployment is kept, idle, for ``rollout.retire_after_hours`` after a promotion —
that is what makes ``POST /api/models/{model}/rollback`` instant — and then deleted; anything else idle
on a model's endpoint (left by a crash or a failed rollout) goes at once. The decision is
``shared.policy.deployments_to_retire``; this module only gathers its inputs and acts on its answer.
"""

from __future__ import annotations

import contextlib
import logging
from datetime import UTC, datetime, timedelta

from shared.platform import (
    DeploymentRef,
    MLPlatform,
    NotFoundError,
    Traffic,
    TrafficInvariantError,
    TrafficUpdate,
)
from shared.policy import Retirement, TrafficRepair, deployments_to_retire, traffic_to_repair
from shared.registry import Registry, Run
from shared.spec import ModelSpec
from shared.storage import BlobStore
from shared.workflow import BlobItem, deployment_name, unclaimed_blobs

logger = logging.getLogger("perennial.housekeeping")


def retire_idle_deployments(
    model: str,
    spec: ModelSpec,
    platform: MLPlatform,
    registry: Registry,
    now: datetime,
    *,
    finishing_run: str | None = None,
) -> list[Retirement]:
    """Delete the model's idle deployments the policy lets go; returns what was deleted, and why.

    ``finishing_run``: the run calling this as it completes its own rollout (it does not count as in progress).
    """
    endpoint = spec.endpoint_name
    try:
        # Only this model's: a deployment someone made by hand on the endpoint is not ours to retire.
        deployments = [d.name for d in platform.list_deployments(endpoint) if d.model_name == model]
    except NotFoundError:
        return []  # no endpoint yet: nothing deployed
    if not deployments:
        return []
    traffic = platform.get_traffic(endpoint)
    champion = registry.champion(model)
    in_progress = bool(registry.active_runs(model, excluding=finishing_run))
    plan = deployments_to_retire(
        now=now,
        deployments=deployments,
        live=traffic.live,
        mirror=traffic.mirror,
        champion=champion.deployment if champion else None,
        previous=deployment_name(model, champion.previous_version) if champion and champion.previous_version else None,
        champion_since=champion.since if champion else None,
        retire_after_hours=spec.rollout.retire_after_hours,
        run_in_progress=in_progress,
    )
    done: list[Retirement] = []
    for retirement in plan:
        # The port refuses to delete a deployment that took traffic meanwhile: then it simply stays.
        with contextlib.suppress(NotFoundError, TrafficInvariantError):
            platform.delete_deployment(DeploymentRef(endpoint, retirement.deployment))
            logger.info("retired %s/%s: %s", endpoint, retirement.deployment, retirement.reason)
            done.append(retirement)
    return done


def repair_traffic(model: str, spec: ModelSpec, platform: MLPlatform, registry: Registry) -> TrafficRepair | None:
    """Put the champion back at 100 % (mirror cleared) if no run is in flight and the endpoint says otherwise;
    returns what was repaired, or None."""
    endpoint = spec.endpoint_name
    try:
        deployments = [d.name for d in platform.list_deployments(endpoint) if d.model_name == model]
    except NotFoundError:
        return None
    # Runs are read before and after champion and traffic: a run that finished (a promotion) or started between
    # the reads would otherwise make the champion and the traffic disagree, and the repair undo a promotion.
    newest_before = registry.runs(model, limit=1)
    champion = registry.champion(model)
    traffic = platform.get_traffic(endpoint)
    settled = registry.runs(model, limit=1) == newest_before and not registry.active_runs(model)
    repair = traffic_to_repair(
        live=traffic.live,
        mirror=traffic.mirror,
        champion=champion.deployment if champion else None,
        deployments=deployments,
        run_in_progress=not settled,
    )
    if repair is not None:
        platform.set_traffic(TrafficUpdate(endpoint, Traffic(live=repair.live, mirror={})))
        logger.warning("repaired the traffic of %s: %s", endpoint, repair.reason)
    return repair


#: Orchestration runtime states (the Durable client's names) in which nothing runs a run any more.
ENDED_STATES = frozenset({"Completed", "Failed", "Terminated", "Canceled"})
#: claim_run marks a run running just before its coordinator's next episode creates the run's instance, and a
#: failed run's outcome is the coordinator's to record (retried for minutes): a missing instance, or a failed one,
#: means a stranded run only after this long.
STRANDED_GRACE = timedelta(minutes=10)
#: How often the housekeeping timer runs (``functions.housekeeping``): retire_after_hours is measured in hours, so this
#: is precise enough and cheap. A request left pending is handed over within STRANDED_GRACE + this.
HOUSEKEEPING_EVERY = timedelta(minutes=10)
#: Ended orchestrations (runs, jobs, rollouts) are kept this long, then purged by the housekeeping timer: the
#: registry holds every outcome, and a Durable task hub that keeps every history grows without end.
HISTORY_RETENTION = timedelta(days=30)
#: The oldest creation time a purge looks at (the Durable API needs a lower bound).
HISTORY_EPOCH = datetime(2020, 1, 1, tzinfo=UTC)


def stranded_reason(
    run: Run,
    run_state: str | None,
    rollout_state: str | None,
    state_since: datetime | None,
    now: datetime,
) -> str | None:
    """Why nothing runs ``run`` although its record says running, or None when something may still run it.

    ``run_state`` / ``rollout_state``: the runtime states of the run's orchestration and of its rollout (None: no
    such instance); ``state_since``: when the run's orchestration last changed (None: unknown). A failed one waits
    ``STRANDED_GRACE`` from its failure, a missing one from the run's last change."""
    if run.status != "running" or (rollout_state is not None and rollout_state not in ENDED_STATES):
        return None  # a rollout whose parent was terminated goes on (termination does not cascade)
    instance = run.instance_id or run.run_id
    if run_state == "Failed":
        since = state_since or run.updated_at
        settled = now - since > STRANDED_GRACE
        return f"its orchestration {instance} is Failed without an outcome recorded" if settled else None
    if run_state in ENDED_STATES:
        return f"its orchestration {instance} is {run_state} without an outcome recorded"
    if run_state is None and now - run.updated_at > STRANDED_GRACE:
        return f"its orchestration {instance} does not exist"
    return None


def undelivered_reason(
    run: Run, coordinator_state: str | None, coordinator_stage: str | None, now: datetime
) -> str | None:
    """Why a request recorded as ``pending`` will not be picked up unless its work is sent again, or None.

    A request is recorded before its work is sent to the model's coordinator; if that send failed (the API
    answered 503) or the event was lost while the coordinator waited, nothing would ever claim the request.
    ``coordinator_state`` is the coordinator's runtime state (None: no such instance) and ``coordinator_stage``
    the stage of its custom status. A coordinator busy with a run (or debouncing) looks in storage when it is
    done, so only a missing, ended or idle one needs the request again, and only after ``STRANDED_GRACE``."""
    if run.status != "pending" or now - run.created_at <= STRANDED_GRACE:
        return None
    if coordinator_state is None:
        return "the model's coordinator does not exist"
    if coordinator_state in ENDED_STATES:
        return f"the model's coordinator is {coordinator_state}"
    if coordinator_stage == "idle":
        return "the model's coordinator is idle: the request's work never reached it"
    return None


def unclaimed_landing(spec: ModelSpec, store: BlobStore, registry: Registry, now: datetime) -> list[BlobItem]:
    """``spec``'s landing blobs (within its training window) whose version no run has claimed: work that a
    coordinator must find whether or not its event reached it (``pending_work``, and the housekeeping timer's
    check that a coordinator is there to find it)."""
    window = spec.training.landed_since(now)
    listing = [
        BlobItem(url=b.url, container=b.container, name=b.name, etag=b.etag, size=b.size)
        for b in store.list_landing(spec.name, window)
    ]
    return unclaimed_blobs(listing, registry.seen_etags(spec.name, claimed_since=window))


def coordinator_to_revive(coordinator_state: str | None, unclaimed: int) -> str | None:
    """Why a model's coordinator must be started again, or None: it has ended (an operator terminated it, or it
    failed on a bug) or never existed, while landed blobs wait that no run has claimed. Left alone, they would
    wait for the next blob's event or a retrain request."""
    if unclaimed == 0:
        return None
    if coordinator_state is None:
        return f"{unclaimed} landed blob(s) wait and the model's coordinator does not exist"
    if coordinator_state in ENDED_STATES:
        return f"{unclaimed} landed blob(s) wait and the model's coordinator is {coordinator_state}"
    return None
