"""``python -m devhost [--app function_app.py] [--port 7071] [--state .perennial/devhost] [--clock real|virtual]
[--settings local.settings.json] [--component module:factory ...] [--parent-pid PID]``."""

from __future__ import annotations

import argparse
from pathlib import Path

from devhost.run import HostOptions, run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devhost", description="Run a Functions app locally (devhost).")
    parser.add_argument("--app", type=Path, default=Path("function_app.py"), help="the app's entry module")
    parser.add_argument("--port", type=int, default=7071, help="port on 127.0.0.1 (0 = any free port)")
    parser.add_argument("--state", type=Path, default=Path(".perennial/devhost"), help="state folder (SQLite, key)")
    parser.add_argument(
        "--clock", choices=["real", "virtual"], default="real", help="virtual: POST /admin/clock moves it"
    )
    parser.add_argument("--settings", type=Path, default=None, help="local.settings.json (default: beside --app)")
    parser.add_argument(
        "--component", action="append", default=[], metavar="MODULE:FACTORY", help="plug-in to run in the host"
    )
    parser.add_argument(
        "--parent-pid",
        type=int,
        default=None,
        metavar="PID",
        help="stop cleanly once process PID (the launcher) has exited, so a killed launcher leaves no host behind",
    )
    args = parser.parse_args(argv)
    return run(
        HostOptions(args.app, args.port, args.state, args.clock, args.settings, list(args.component), args.parent_pid)
    )


if __name__ == "__main__":
    raise SystemExit(main())
