"""The traffic invariants, as pure functions both adapters call before they send anything.

Azure ML checks some of these on the service side (the SDK checks none), the local stand-in
would check none: so the port checks them all, once, here. Each violation raises
:class:`TrafficInvariantError` naming the deployment and saying what to do instead.

- live traffic is a whole percentage per deployment and sums to 100 (or 0 when the endpoint
  has no deployments);
- mirrored traffic goes to at most one deployment, at most 50 percent, and never to a
  deployment that takes live traffic;
- only deployments that exist are named;
- a deployment that takes live or mirrored traffic is not deleted.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping

from shared.platform import Traffic, TrafficInvariantError

MAX_MIRROR_PERCENT = 50


def _percentages(kind: str, values: Mapping[str, int]) -> None:
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 100:
            raise TrafficInvariantError(
                f"{kind} traffic for {name!r} is {value!r}", "give each deployment a whole percentage from 0 to 100"
            )


def check_traffic_shape(traffic: Traffic) -> None:
    """The checks that need nothing but the traffic itself (run before any request, even a read)."""
    _percentages("live", traffic.live)
    _percentages("mirror", traffic.mirror)
    total = sum(traffic.live.values())
    if total not in (0, 100):
        shares = ", ".join(f"{k}={v}" for k, v in traffic.live.items())
        raise TrafficInvariantError(
            f"live traffic sums to {total} ({shares})", "make the live percentages add up to exactly 100"
        )
    mirrored = {name: value for name, value in traffic.mirror.items() if value > 0}
    if len(mirrored) > 1:
        raise TrafficInvariantError(
            f"mirror traffic names {len(mirrored)} deployments ({', '.join(sorted(mirrored))})",
            "mirror to one deployment at a time",
        )
    for name, value in mirrored.items():
        if value > MAX_MIRROR_PERCENT:
            raise TrafficInvariantError(
                f"mirror traffic to {name!r} is {value}%", f"mirror at most {MAX_MIRROR_PERCENT}% (Azure ML's limit)"
            )
        if traffic.live.get(name, 0) > 0:
            raise TrafficInvariantError(
                f"{name!r} takes {traffic.live[name]}% live traffic and would also get mirrored traffic",
                "mirror only to a deployment with no live traffic (set its live share to 0 first)",
            )
    if mirrored and total == 0:
        raise TrafficInvariantError(
            "mirror traffic is set but no deployment takes live traffic",
            "give a deployment 100% live traffic before mirroring",
        )


def check_traffic(traffic: Traffic, deployments: Collection[str], *, allow_no_live_traffic: bool = False) -> Traffic:
    """Every invariant, given the names of the endpoint's deployments; returns the traffic with zeros removed
    (Azure ML strips them too, so both adapters store and return the same shape).

    ``allow_no_live_traffic`` (explicit, never the default) lets live traffic sum to 0 while deployments
    exist: the one way to take a failed first model off an endpoint that has no champion to return to."""
    check_traffic_shape(traffic)
    known = set(deployments)
    for name in [*traffic.live, *traffic.mirror]:
        if name not in known:
            raise TrafficInvariantError(
                f"deployment {name!r} does not exist on this endpoint (it has: {', '.join(sorted(known)) or 'none'})",
                "create the deployment first, or name only existing deployments",
            )
    if sum(traffic.live.values()) == 0 and known and not allow_no_live_traffic:
        raise TrafficInvariantError(
            "live traffic sums to 0 while the endpoint has deployments",
            "route 100% of live traffic to a deployment (e.g. the champion)",
        )
    return Traffic(
        live={k: v for k, v in traffic.live.items() if v > 0},
        mirror={k: v for k, v in traffic.mirror.items() if v > 0},
    )


def check_deletable(deployment: str, current: Traffic) -> None:
    """Refuse to delete a deployment that still takes live or mirrored traffic."""
    live, mirror = current.live_percent(deployment), current.mirror_percent(deployment)
    if live or mirror:
        raise TrafficInvariantError(
            f"deployment {deployment!r} still takes {live}% live and {mirror}% mirrored traffic",
            "move its traffic to another deployment (set_traffic) before deleting it",
        )
