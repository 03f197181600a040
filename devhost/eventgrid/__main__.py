"""``python -m devhost.eventgrid --host-url URL [--port 7072] [--subscriptions FILE] [--function-key KEY]``."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from pathlib import Path

from devhost.eventgrid.delivery import DeliveryOptions
from devhost.eventgrid.grid import LocalEventGrid
from devhost.eventgrid.standalone import StandaloneHost, serve_standalone
from devhost.eventgrid.subscriptions import DEFAULT_FILE, SubscriptionsError, load_subscriptions
from shared.settings import SettingsError, apply_local_settings


async def _serve(args: argparse.Namespace) -> None:
    grid = LocalEventGrid(
        load_subscriptions(args.subscriptions),
        topic_key=args.topic_key,
        options=DeliveryOptions(
            retry_base_seconds=args.retry_base,
            max_attempts=args.max_attempts,
            duplicate_probability=args.duplicates,
        ),
    )
    host = StandaloneHost(args.host_url.rstrip("/"), args.state, tuple(args.function_key))
    running = await serve_standalone(grid, host, args.port)
    print(f"local Event Grid on {running.url}; custom topics at {running.url}/eventgrid/topics/<topic>/api/events")
    print(f"  topic key: {grid.topic_key}  (set PERENNIAL_EVENTGRID_KEY to choose it)", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await running.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devhost.eventgrid", description="Run the local Event Grid.")
    parser.add_argument("--host-url", default="http://127.0.0.1:7071", help="the Functions host to deliver to")
    parser.add_argument("--port", type=int, default=7072, help="port on 127.0.0.1 for the custom-topic endpoint")
    parser.add_argument("--subscriptions", type=Path, default=DEFAULT_FILE, help="the subscriptions JSON file")
    parser.add_argument("--state", type=Path, default=Path(".perennial/devhost"), help="state folder")
    parser.add_argument("--function-key", action="append", default=[], help="key for the host's webhook")
    parser.add_argument("--topic-key", default=None, help="custom topic key (default: PERENNIAL_EVENTGRID_KEY)")
    parser.add_argument("--retry-base", type=float, default=1.0, help="first retry delay in seconds (doubles)")
    parser.add_argument("--max-attempts", type=int, default=None, help="cap on delivery attempts")
    parser.add_argument("--duplicates", type=float, default=0.0, help="probability of delivering an event twice")
    parser.add_argument("--settings", type=Path, default=Path("local.settings.json"), help="local.settings.json")
    args = parser.parse_args(argv)
    try:
        apply_local_settings(args.settings)
        asyncio.run(_serve(args))
    except (SubscriptionsError, SettingsError) as exc:
        print(f"devhost.eventgrid: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
