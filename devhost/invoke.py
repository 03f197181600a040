"""Calling the app's functions as the Python worker does: bind arguments, run, log one line per invocation.

Coroutine functions run on the host's event loop; plain functions run in a thread pool (the
worker's default), so a slow handler never blocks other requests.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from devhost.app_loader import AppFunction

logger = logging.getLogger("devhost")


@dataclass(frozen=True)
class InvocationContext:
    """What ``func.Context`` offers, for functions that declare a ``context`` parameter."""

    invocation_id: str
    function_name: str
    function_directory: str


class Invoker:
    def __init__(self, workers: int = 8) -> None:
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="function")

    def shutdown(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)

    async def call(self, fn: AppFunction, arguments: dict[str, Any], function_dir: str, **log: Any) -> Any:
        """Run ``fn`` with ``arguments`` (plus ``context`` if it asks for one); log function, id, duration, outcome."""
        invocation_id = str(uuid.uuid4())
        target = fn.user_function
        original = getattr(target, "client_function", target)  # durable_client_input wraps the user code
        if "context" in inspect.signature(original).parameters and "context" not in arguments:
            arguments = {**arguments, "context": InvocationContext(invocation_id, fn.name, function_dir)}
        started = time.perf_counter()
        outcome = "Succeeded"
        try:
            if inspect.iscoroutinefunction(target):
                return await target(**arguments)
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self.pool, lambda: target(**arguments))
        except Exception:
            outcome = "Failed"
            raise
        finally:
            duration = round((time.perf_counter() - started) * 1000, 2)
            logger.info(
                "Executed 'Functions.%s' (%s, Id=%s, Duration=%sms)",
                fn.name,
                outcome,
                invocation_id,
                duration,
                extra={
                    "function": fn.name,
                    "invocation_id": invocation_id,
                    "duration_ms": duration,
                    "outcome": outcome,
                    **log,
                },
            )
