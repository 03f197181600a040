"""A batch's bytes are read once in its life, not once per run: validation verdicts kept per blob version, and the
hash taken from the validation's own read (through the app's activities on this module's own Azurite).

Every run trains on the landing folder (or its ``training.window_days``), so before this every run downloaded every
batch twice (to validate it, then to hash it for the manifest), however often it had been judged before.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from functions import clients
from perennial_cli.synthetic import fraud_batch
from shared.registry import Run
from shared.runtime import get_runtime
from shared.storage import LANDING, MANIFESTS, VERDICTS, BlobMissingError, BlobRef
from shared.verdicts import verdict_name
from shared.workflow import BlobItem

pytestmark = pytest.mark.azurite
GOOD = fraud_batch(1500, seed=11).to_csv(index=False).encode()
OTHER = fraud_batch(1500, seed=12).to_csv(index=False).encode()


class LandingReads:
    """Counts downloads of landing blobs (validation reads and manifest hashing), without changing them."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.names: list[str] = []
        store = clients.store()
        iter_chunks = store.iter_chunks

        def counted(ref: BlobRef) -> Iterator[bytes]:
            if ref.container == LANDING:
                self.names.append(ref.name)
            return iter_chunks(ref)

        monkeypatch.setattr(store, "iter_chunks", counted)


def _land(name: str, data: bytes) -> BlobItem:
    clients.store().container(LANDING).upload_blob(f"fraud/{name}", data, overwrite=True)
    ref = clients.store().ref(LANDING, f"fraud/{name}")
    return BlobItem(url=ref.url, container=ref.container, name=ref.name, etag=ref.etag, size=ref.size)


def _validate(activity: Any, run_id: str, blob: BlobItem, edges: Any = None) -> dict[str, Any]:
    payload: dict[str, Any] = {"model": "fraud", "run_id": run_id, "blob": blob.dump()}
    if edges is not None:
        payload["edges"] = edges
    outcome: dict[str, Any] = activity("validate_blob", payload)
    return outcome


def _kept(model: str = "fraud") -> list[str]:
    """The names of the verdicts kept for ``model`` (``verdicts/<model>/<key>.json``)."""
    return sorted(b.name for b in clients.store().container(VERDICTS).list_blobs(name_starts_with=f"{model}/"))


def _profiles(run_id: str) -> list[str]:
    """Per-run profile copies (what validation wrote before verdicts were kept)."""
    return clients.store().names(MANIFESTS, "fraud", f"{run_id}/profiles")


@pytest.mark.parametrize("suffix", ["csv", "parquet"])
def test_a_second_run_reuses_the_verdict_without_reading_the_batch(
    activity: Any, monkeypatch: pytest.MonkeyPatch, suffix: str
) -> None:
    data = GOOD if suffix == "csv" else fraud_batch(1500, seed=11).to_parquet(index=False)
    blob = _land(f"k1.{suffix}", data)
    first_run, second_run = f"fraud-c1-{suffix}", f"fraud-c2-{suffix}"
    first = _validate(activity, first_run, blob)
    assert first["ok"] is True
    assert first["blob"]["sha256"] == hashlib.sha256(data).hexdigest()  # hashed by the validation's own read

    reads = LandingReads(monkeypatch)
    again = _validate(activity, second_run, blob)
    assert reads.names == []
    assert {k: again[k] for k in ("ok", "rows", "summary", "edges", "warnings")} == {
        k: first[k] for k in ("ok", "rows", "summary", "edges", "warnings")
    }
    assert again["blob"] == first["blob"]
    # Nothing is written for the second run either: its manifest step reads the profile kept with the verdict.
    assert again["blob"]["verdict"] in _kept()
    assert clients.store().names(MANIFESTS, "fraud", "verdicts") == []  # not beside the manifests any more
    assert _profiles(first_run) == _profiles(second_run) == []


def test_the_manifest_takes_the_validation_hash_and_still_leaves_out_a_changed_batch(
    activity: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_id = "fraud-00000000000000c3"
    clients.registry().create_run(Run("fraud", run_id, "manual", "t", run_id, status="running", stage="validating"))
    kept, changed = _land("k3-a.csv", GOOD), _land("k3-b.csv", GOOD)
    validated = [BlobItem.load(_validate(activity, run_id, b)["blob"]) for b in (kept, changed)]
    _land("k3-b.csv", OTHER)  # re-exported after the run validated it
    hashed: list[str] = []
    sha256 = clients.store().sha256
    monkeypatch.setattr(clients.store(), "sha256", lambda ref: hashed.append(ref.name) or sha256(ref))

    activity("prepare_training", {"model": "fraud", "run_id": run_id, "blobs": [b.dump() for b in validated]})

    assert hashed == []  # no second download to hash what the validation read (the local staging copy aside)
    manifest = clients.store().read_manifest("fraud", run_id)
    assert [(e.name, e.etag, e.sha256) for e in manifest.blobs] == [
        (kept.name, kept.etag, hashlib.sha256(GOOD).hexdigest())
    ]


def test_another_contract_or_new_edges_read_the_batch_again(activity: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    blob = _land("k4.csv", GOOD)
    first = _validate(activity, "fraud-00000000000000c4", blob)
    reads = LandingReads(monkeypatch)
    edges = {name: [e * 1.5 for e in values] for name, values in first["edges"].items()}  # a new champion's
    assert _validate(activity, "fraud-00000000000000c5", blob, edges=edges)["ok"] is True
    assert reads.names == [blob.name]
    spec = get_runtime().spec("fraud")
    changed = spec.data.model_copy(update={"min_rows": 2})
    assert verdict_name("fraud", blob.url, blob.etag, changed, None) != verdict_name(
        "fraud", blob.url, blob.etag, spec.data, None
    )


@pytest.mark.parametrize(
    "kept",
    [
        b"{not json",
        b'{"outcome": {"ok": true}, "profile": {}}',  # an outcome without its blob
        b'{"outcome": {"blob": {"url": "u", "container": "c", "name": "n", "etag": "e"}, "ok": true}, '
        b'"profile": {"version": 99}}',  # a profile of another format: the run's manifest step could not merge it
    ],
    ids=["not-json", "bad-outcome", "bad-profile"],
)
def test_an_unusable_kept_verdict_means_validating_again_not_failing(
    activity: Any, monkeypatch: pytest.MonkeyPatch, kept: bytes
) -> None:
    blob = _land("k6.csv", GOOD)
    assert _validate(activity, "fraud-00000000000000c6", blob)["ok"] is True
    spec = get_runtime().spec("fraud")
    name = verdict_name("fraud", blob.url, blob.etag, spec.data, None)
    clients.store().container(VERDICTS).upload_blob(name, kept, overwrite=True)
    reads = LandingReads(monkeypatch)
    outcome = _validate(activity, "fraud-00000000000000c7", blob)
    assert outcome["ok"] is True
    assert reads.names == [blob.name]
    assert clients.store().get_json(VERDICTS, name)["outcome"]["blob"]["name"] == blob.name  # kept afresh


def test_verdicts_are_kept_in_a_container_of_their_own() -> None:
    """``verdicts/<model>/<key>.json``: one lifecycle rule on that container bounds them (infra/modules/storage.bicep),
    which it could not beside the run manifests (lineage, never deleted) under ``manifests/``."""
    spec = get_runtime().spec("fraud")
    name = verdict_name("fraud", "https://acct.blob.core.windows.net/landing/fraud/a.csv", '"0x1"', spec.data, None)
    assert re.fullmatch(r"fraud/[0-9a-f]{64}\.json", name), name
    clients.store().path(VERDICTS, name)  # a name the store accepts in that container


def test_a_verdict_kept_where_an_older_version_kept_them_is_not_found(
    activity: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No migration: a verdict under ``manifests/<model>/verdicts/`` is simply not looked at, so the blob is read and
    judged once more and its verdict kept in the new container."""
    blob = _land("k11.csv", GOOD)
    first = _validate(activity, "fraud-00000000000000cd", blob)
    name = first["blob"]["verdict"]
    store = clients.store()
    old = f"fraud/verdicts/{name.split('/', 1)[1]}"
    store.container(MANIFESTS).upload_blob(old, store.container(VERDICTS).download_blob(name).readall())
    store.container(VERDICTS).delete_blob(name)  # as if only the old location held it

    reads = LandingReads(monkeypatch)
    again = _validate(activity, "fraud-00000000000000ce", blob)
    assert again["ok"] is True
    assert reads.names == [blob.name]
    assert again["blob"]["verdict"] == name
    assert name in _kept()


def test_a_change_to_the_judging_code_is_a_new_rules_version(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from shared import verdicts

    source = tmp_path / "judge.py"
    source.write_text("LIMIT = 1\n", encoding="utf-8")
    monkeypatch.setattr(verdicts, "JUDGES", (SimpleNamespace(__file__=str(source)),))
    before = verdicts._rules_version()
    source.write_text("LIMIT = 2\n", encoding="utf-8")
    assert verdicts._rules_version() != before


def test_every_module_the_judges_use_is_a_judge() -> None:
    """A module the validator reads through (shared.parquet_size, say) decides verdicts too: a change to it must be a
    new rules version, or blobs judged by the old code keep verdicts the new code would not give. shared.spec is the
    exception: the contract it parses is part of every verdict's key."""
    import ast

    from shared import verdicts

    judges = {Path(str(m.__file__)).stem for m in verdicts.JUDGES}
    used: set[str] = set()
    for module in verdicts.JUDGES:
        tree = ast.parse(Path(str(module.__file__)).read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module == "shared":
                used |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("shared."):
                used.add(str(node.module).split(".")[1])
    assert used - judges - {"spec"} == set()


def test_a_failing_verdict_is_not_kept(activity: Any) -> None:
    bad = fraud_batch(1500, seed=13).assign(hour=99).to_csv(index=False).encode()
    blob = _land("k8.csv", bad)
    assert _validate(activity, "fraud-00000000000000c8", blob)["ok"] is False
    spec = get_runtime().spec("fraud")
    name = verdict_name("fraud", blob.url, blob.etag, spec.data, None)
    assert name not in _kept()


def test_a_blob_an_older_version_of_the_app_validated_still_trains(activity: Any) -> None:
    """A run in flight across the upgrade: its outcomes carry no hash or verdict, and its profiles are per run."""
    from functions.activities import _legacy_profile_name

    run_id = "fraud-00000000000000c9"
    clients.registry().create_run(Run("fraud", run_id, "manual", "t", run_id, status="running", stage="validating"))
    blob = _land("k9.csv", GOOD)
    kept = clients.store().get_json(VERDICTS, _validate(activity, "fraud-00000000000000ca", blob)["blob"]["verdict"])
    clients.store().put_json(MANIFESTS, _legacy_profile_name("fraud", run_id, blob.name), kept["profile"])

    activity("prepare_training", {"model": "fraud", "run_id": run_id, "blobs": [blob.dump()]})

    [entry] = clients.store().read_manifest("fraud", run_id).blobs
    assert entry.sha256 == hashlib.sha256(GOOD).hexdigest()
    assert clients.store().get_json(MANIFESTS, f"fraud/{run_id}/profile.json")["rows"] == 1500


def test_a_verdict_that_expired_after_validation_is_profiled_again_not_failing_the_run(activity: Any) -> None:
    """A lifecycle rule deletes kept verdicts (infra/modules/storage.bicep): one may go between a run's validation
    and its manifest step, which then reads that blob again on the run's edges instead of failing the run."""
    run_id = "fraud-00000000000000cf"
    clients.registry().create_run(Run("fraud", run_id, "manual", "t", run_id, status="running", stage="validating"))
    first = _validate(activity, run_id, _land("k12-a.csv", GOOD))  # a first model: its edges bin the rest
    second = _validate(activity, run_id, _land("k12-b.csv", OTHER), edges=first["edges"])
    clients.store().container(VERDICTS).delete_blob(second["blob"]["verdict"])

    payload = {"model": "fraud", "run_id": run_id, "blobs": [first["blob"], second["blob"]], "edges": first["edges"]}
    prepared = activity("prepare_training", payload)

    assert prepared["candidates"], prepared
    assert clients.store().get_json(MANIFESTS, f"fraud/{run_id}/profile.json")["rows"] == 3000  # both blobs


def test_a_verdict_that_cannot_be_kept_does_not_fail_the_batch(activity: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Verdicts are a cache: a write that fails (the container gone, a blip) costs the next run a read, no more."""
    from functions import activities
    from shared.storage import StorageError

    def refuse(*args: Any) -> None:
        raise StorageError("the specified container does not exist", "provision it")

    monkeypatch.setattr(activities, "keep_verdict", refuse)
    run_id = "fraud-00000000000000d1"
    clients.registry().create_run(Run("fraud", run_id, "manual", "t", run_id, status="running", stage="validating"))
    outcome = _validate(activity, run_id, _land("k13.csv", GOOD))
    assert outcome["ok"] is True
    assert outcome["blob"]["verdict"] not in _kept()
    prepared = activity(
        "prepare_training", {"model": "fraud", "run_id": run_id, "blobs": [outcome["blob"]], "edges": outcome["edges"]}
    )
    assert prepared["candidates"], "profiled again on the run's edges"


def test_a_chunk_is_judged_in_order_each_blob_as_alone(activity: Any) -> None:
    good, bad, other = _land("k10-a.csv", GOOD), _land("k10-b.csv", fraud_batch(1500, seed=14).assign(hour=99)
        .to_csv(index=False).encode()), _land("k10-c.csv", OTHER)  # fmt: skip
    edges = _validate(activity, "fraud-00000000000000cb", good)["edges"]
    payload = {"model": "fraud", "run_id": "fraud-00000000000000cc", "edges": edges}
    outcomes = activity("validate_blobs", {**payload, "blobs": [b.dump() for b in (good, bad, other)]})
    assert [(o["blob"]["name"], o["ok"]) for o in outcomes] == [
        (good.name, True),
        (bad.name, False),
        (other.name, True),
    ]
    assert outcomes[1]["quarantined_to"]
    assert not clients.store().container(LANDING).get_blob_client(bad.name).exists()
    assert all(o["edges"] is None for o in outcomes)  # only a first model's first blob is asked for its edges
    assert [o["blob"]["sha256"] for o in outcomes if o["ok"]] == [
        hashlib.sha256(GOOD).hexdigest(),
        hashlib.sha256(OTHER).hexdigest(),
    ]


def test_a_verdict_gone_on_a_blob_that_fails_when_judged_again_says_to_start_the_run_again(activity: Any) -> None:
    """The same bytes under the same rules pass again; failing now means the judging code changed mid-run, which
    must stop the run with that said, not train on a batch the rules now refuse."""
    from shared.verdicts import VerdictChangedError, verdict_profile

    blob = _land("k14.csv", GOOD)
    ref = BlobRef(container=LANDING, name=blob.name, url=blob.url, etag=blob.etag, size=blob.size)
    stricter = get_runtime().spec("fraud").data.model_copy(update={"min_rows": 10_000})  # as changed rules would
    with pytest.raises(VerdictChangedError, match="start the run again"):
        verdict_profile(clients.store(), "fraud/never-kept.json", ref, stricter, {"amount": [0.0, 1.0]})
    with pytest.raises(BlobMissingError):  # an older orchestration's payload: no edges to judge it again on
        verdict_profile(clients.store(), "fraud/never-kept.json", ref, stricter, None)
