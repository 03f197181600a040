"""continuous_training validates a run's blobs in chunks (validate_blobs), and an orchestration recorded before
chunks existed replays as it ran (one validate_blob per blob), driven as the Durable SDK drives the generator.

A run's history is replayed whole at every step: one activity per blob made it grow by two events and the blob's
edges per blob, for every blob in the landing folder (or the training window), every run.
"""

from __future__ import annotations

from typing import Any

import pytest

from functions import orchestrators

from .test_rollout_orchestration import RUN_ID, BakeTimer, _drive

BLOBS = [
    {"url": f"http://s/landing/fraud/b{i}.csv", "container": "landing", "name": f"fraud/b{i}.csv", "etag": f"e{i}"}
    for i in range(120)
]
EDGES = {"amount": [0.0, 1.0]}


def _run(resolved: dict[str, Any]) -> tuple[dict[str, Any], list[tuple[str, Any]]]:
    """The run from its start to prepare_training (which answers "no data", ending it there), and each activity
    called with its payload."""
    given = {
        "model": "fraud",
        "run_id": RUN_ID,
        "trigger": {"kind": "manual", "reason": "r", "source_event_id": RUN_ID, "details": {}},
        "blobs": [],
    }
    called: list[tuple[str, Any]] = []

    def outcome(blob: dict[str, Any]) -> dict[str, Any]:
        return {"blob": blob, "ok": True, "summary": "ok", "rows": 500, "edges": EDGES}

    def answer(task: Any) -> Any:
        if isinstance(task, BakeTimer):
            return task
        if task[0] == "all":
            return [answer(t) for t in task[1]]
        called.append((task[1], task[2] if len(task) > 2 else None))
        return {
            "resolve_run_blobs": resolved,
            "validate_blob": outcome(task[2]["blob"]) if task[1] == "validate_blob" else None,
            "validate_blobs": [outcome(b) for b in task[2]["blobs"]] if task[1] == "validate_blobs" else None,
            "prepare_training": {"no_data": ["every blob changed"]},
        }.get(task[1])

    result, _ = _drive(orchestrators.continuous_training, given, answer)
    return result, called


def _validations(called: list[tuple[str, Any]]) -> list[tuple[str, int]]:
    return [
        (name, len(payload["blobs"]) if name == "validate_blobs" else 1)
        for name, payload in called
        if name.startswith("validate_")
    ]


def test_a_run_validates_its_blobs_in_chunks_on_the_same_edges() -> None:
    result, called = _run({"blobs": BLOBS, "edges": EDGES, "validate_chunk": 50})
    assert _validations(called) == [("validate_blobs", 50), ("validate_blobs", 50), ("validate_blobs", 20)]
    assert all(p["edges"] == EDGES for name, p in called if name == "validate_blobs")
    [prepare] = [p for name, p in called if name == "prepare_training"]
    assert [b["name"] for b in prepare["blobs"]] == [b["name"] for b in BLOBS]  # every valid blob, in order
    assert result["status"] == "no_valid_data"


def test_a_first_model_takes_its_edges_from_the_first_valid_blob_then_chunks_the_rest() -> None:
    _, called = _run({"blobs": BLOBS, "edges": None, "validate_chunk": 50})
    assert _validations(called) == [("validate_blob", 1), ("validate_blobs", 50), ("validate_blobs", 50),
                                    ("validate_blobs", 19)]  # fmt: skip
    assert all(p["edges"] == EDGES for name, p in called if name == "validate_blobs")
    [prepare] = [p for name, p in called if name == "prepare_training"]
    assert prepare["edges"] == EDGES, "the manifest step profiles a blob whose kept verdict expired on them"


@pytest.mark.parametrize("edges", [EDGES, None])
def test_a_run_recorded_before_chunks_replays_one_activity_per_blob(edges: Any) -> None:
    _, called = _run({"blobs": BLOBS, "edges": edges})  # resolve_run_blobs' answer of an older version
    assert _validations(called) == [("validate_blob", 1)] * len(BLOBS)


def test_chunks_are_bounded_by_bytes_too_when_the_answer_says_so() -> None:
    """Fifty 2 GB exports in one activity would outlast the host's function timeout: a chunk also stops at a size."""
    sized = [{**b, "size": 3 * 1024**3 if i in (10, 11) else 1024} for i, b in enumerate(BLOBS)]
    _, called = _run({"blobs": sized, "edges": EDGES, "validate_chunk": 50, "validate_chunk_bytes": 4 * 1024**3})
    chunks = [[b["name"] for b in p["blobs"]] for name, p in called if name == "validate_blobs"]
    assert [len(c) for c in chunks] == [11, 50, 50, 9]  # b10 ends the first chunk, b11 starts the next alone…
    assert chunks[1][0] == "fraud/b11.csv"  # …with the small ones after it
    assert [n for c in chunks for n in c] == [b["name"] for b in BLOBS], "every blob once, in order"


@pytest.mark.parametrize(
    ("sizes", "count", "max_bytes", "expected"),
    [
        ([1, 1, 1], 2, None, [2, 1]),
        ([5, 5, 5], 10, 10, [2, 1]),
        ([20, 1, 1], 10, 10, [1, 2]),  # a blob larger than the bound has a chunk of its own
        ([1, 20, 1], 10, 10, [1, 1, 1]),
        ([], 10, 10, []),
    ],
)
def test_validation_chunks(sizes: list[int], count: int, max_bytes: int | None, expected: list[int]) -> None:
    from shared.workflow import validation_chunks

    blobs = [{"name": str(i), "size": size} for i, size in enumerate(sizes)]
    chunks = validation_chunks(blobs, count, max_bytes)
    assert [len(c) for c in chunks] == expected
    assert [b for c in chunks for b in c] == blobs
