"""A tiny Durable app for the engine's continue_as_new event tests (test fixture, not Perennial)."""

from __future__ import annotations

import azure.durable_functions as df
import azure.functions as func

app = df.DFApp(http_auth_level=func.AuthLevel.FUNCTION)


@app.orchestration_trigger(context_name="context")
def collector(context: df.DurableOrchestrationContext):  # type: ignore[no-untyped-def]
    # One external event per generation: events that arrive together show what continue_as_new keeps.
    state = context.get_input()
    item = yield context.wait_for_external_event("item")
    seen = [*state["seen"], item]
    if len(seen) >= state["want"]:
        return {"seen": seen, "generation": state["generation"]}
    context.continue_as_new({"seen": seen, "want": state["want"], "generation": state["generation"] + 1})
    return None
