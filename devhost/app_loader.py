"""Load a Python v2-model Functions app the way the host does and index its functions by trigger.

``app.get_functions()`` may run only once per app object (a second call fails on "unique
function name"), so it is called here once and the result is kept in a :class:`FunctionIndex`.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import azure.functions as func

from devhost.errors import AppLoadError

logger = logging.getLogger("devhost")

#: Trigger types devhost serves; anything else is listed at start-up as not served.
SERVED = {"httpTrigger", "eventGridTrigger", "timerTrigger", "orchestrationTrigger", "activityTrigger"}


@dataclass(frozen=True)
class AppFunction:
    """One indexed function: its name, trigger and the Python callable the worker would call."""

    name: str
    trigger_type: str
    trigger_arg: str
    trigger: Any
    user_function: Any
    durable_client_arg: str | None
    bindings: list[dict[str, Any]]

    @property
    def auth_level(self) -> str:
        level = getattr(self.trigger, "auth_level", None)
        return str(getattr(level, "value", level) or "function").lower()

    @property
    def route(self) -> str:
        return str(getattr(self.trigger, "route", None) or self.name)

    @property
    def methods(self) -> list[str]:
        methods = getattr(self.trigger, "methods", None) or []
        return [str(getattr(m, "value", m)).upper() for m in methods]


@dataclass
class FunctionIndex:
    """The app's functions, by trigger type and by the name each trigger is addressed with."""

    app_path: Path
    functions: list[AppFunction]
    task_hub: str
    http: list[AppFunction] = field(default_factory=list)
    eventgrid: dict[str, AppFunction] = field(default_factory=dict)
    timers: list[AppFunction] = field(default_factory=list)
    orchestrators: dict[str, AppFunction] = field(default_factory=dict)
    activities: dict[str, AppFunction] = field(default_factory=dict)
    unserved: list[AppFunction] = field(default_factory=list)

    @classmethod
    def build(cls, app_path: Path, functions: list[AppFunction], task_hub: str) -> FunctionIndex:
        index = cls(app_path, functions, task_hub)
        for fn in functions:
            kind = fn.trigger_type
            if kind == "httpTrigger":
                index.http.append(fn)
            elif kind == "eventGridTrigger":
                index.eventgrid[fn.name] = fn
            elif kind == "timerTrigger":
                index.timers.append(fn)
            elif kind == "orchestrationTrigger":
                # The host addresses an orchestrator by its function name; `orchestration=` renames it.
                index.orchestrators[getattr(fn.trigger, "orchestration", None) or fn.name] = fn
                index.orchestrators.setdefault(fn.name, fn)
            elif kind == "activityTrigger":
                index.activities[getattr(fn.trigger, "activity", None) or fn.name] = fn
                # call_activity(<function object>) sends the function name: accept it too.
                index.activities.setdefault(fn.name, fn)
            else:
                index.unserved.append(fn)
        return index


def _find_app(module: ModuleType, path: Path) -> func.FunctionRegister:
    apps = [v for v in vars(module).values() if isinstance(v, func.FunctionRegister)]
    if len(apps) != 1:
        raise AppLoadError(
            f"{path} defines {len(apps)} FunctionApp objects at module level",
            "define exactly one, e.g. `app = df.DFApp()` or `app = func.FunctionApp()`, as the Python worker requires",
        )
    return apps[0]


def _task_hub(app_dir: Path) -> str:
    host_json = app_dir / "host.json"
    try:
        document = json.loads(host_json.read_text(encoding="utf-8")) if host_json.exists() else {}
    except (OSError, json.JSONDecodeError) as exc:
        raise AppLoadError(f"{host_json} is not valid JSON: {exc}", "fix the file or remove it") from None
    hub = document.get("extensions", {}).get("durableTask", {}).get("hubName")
    return str(hub) if hub else "TestHubName"


def _to_app_function(raw: Any) -> AppFunction:
    trigger = raw.get_trigger()
    client_arg = next((b.name for b in raw.get_bindings() if b.type == "durableClient"), None)
    return AppFunction(
        name=raw.get_function_name(),
        trigger_type=trigger.type,
        trigger_arg=trigger.name,
        trigger=trigger,
        user_function=raw.get_user_function(),
        durable_client_arg=client_arg,
        bindings=[json.loads(b) for b in raw.get_raw_bindings()],
    )


def load_app(app_path: str | Path) -> FunctionIndex:
    """Import ``app_path`` (its folder first on ``sys.path``, as the worker does) and index its functions."""
    path = Path(app_path).resolve()
    if not path.is_file():
        raise AppLoadError(f"{path} does not exist", "pass --app path/to/function_app.py")
    app_dir = str(path.parent)
    if app_dir not in sys.path:
        sys.path.insert(0, app_dir)
    module_name = path.stem
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise AppLoadError(f"{path} cannot be imported as a Python module", "pass a .py file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        sys.modules.pop(module_name, None)
        raise AppLoadError(
            f"importing {path} failed: {type(exc).__name__}: {exc}",
            "fix the error above; the real host would refuse to start the same way",
        ) from exc
    app = _find_app(module, path)
    try:
        raw_functions = app.get_functions()
    except Exception as exc:
        raise AppLoadError(f"indexing {path} failed: {exc}", "fix the decorators it names") from exc
    functions = [_to_app_function(f) for f in raw_functions]
    return FunctionIndex.build(path, functions, _task_hub(path.parent))
