"""The scenario ``perennial demo`` plays on a :class:`~perennial_cli.localstack.LocalStack`, stage by stage.

Each stage acts as a user or a producer would (blobs into Azurite's landing container, scoring requests
to the model's endpoint, delayed labels into the feedback container, calls to the HTTP API), narrates
what Perennial does in response — read back through the same API and storage a person would use —
and checks that it did what the stage claims. A failed check raises :class:`StageFailed`.

The host runs on a virtual clock: the scenario moves it only when nothing else can happen (a debounce
window, a bake whose traffic has been served, a job poll once every job has finished), so 30-minute
bakes take seconds and no bake is judged on less traffic than the spec asks for.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
from rich.console import Console
from rich.markup import escape
from rich.status import Status
from rich.table import Table

from perennial_cli.client import ClientError
from perennial_cli.localstack import LocalStack, StackPaths
from perennial_cli.status_style import status_markup
from perennial_cli.synthetic import fraud_batch
from perennial_cli.traffic import ScoringTraffic
from shared.live import deployment_live_counts
from shared.platform import DeploymentRef
from shared.platform.local import FaultSpec
from shared.spec import ModelSpec
from shared.storage import LANDING, QUARANTINE
from shared.validation import Example, locate
from shared.workflow import deployment_name

MODEL = "fraud"
ACTIVE = ("pending", "running")
#: How strongly the demo world's features drive fraud (perennial_cli.synthetic): the best possible PR-AUC is
#: about 0.65, and the spec's candidates (8 epochs) trained on 20,000 rows clear the 0.30 first-run floor.
SIGNAL = 2.5
#: The new world: bigger amounts, more online and foreign payments, and a card-testing ring.
DRIFT = 0.5
FRAUD_RING = 0.02
#: The fault injected into stage 4's challenger: this share of its requests answer HTTP 500.
FAULT_ERROR_RATE = 0.3
#: The longest a run may take (real time) before the demo gives up on it.
RUN_TIMEOUT_S = 420.0
#: Concurrent scoring clients. The local scoring server answers one request at a time per deployment, so
#: with more clients the latencies the canary compares are mostly queueing, which drifts apart between two
#: identical deployments (a healthy challenger judged slower); two keep them service times.
CLIENTS = 2


class StageFailed(Exception):
    """A stage did not do what it claims; the message says what was expected and what happened."""

    def __init__(self, stage: int, title: str, message: str) -> None:
        self.stage = stage
        self.title = title
        self.message = message
        super().__init__(f"stage {stage} ({title}): {message}")


@dataclass(frozen=True)
class Batch:
    name: str
    label: str
    frame: pd.DataFrame
    path: Path

    @property
    def fraud_rate(self) -> float:
        return float(pd.to_numeric(self.frame["is_fraud"], errors="coerce").mean())


@dataclass
class Stage:
    number: int
    title: str
    checks: list[str] = field(default_factory=list)


def make_batches(folder: Path, rows: int) -> dict[str, Batch]:
    """The scenario's data: a reference batch of ``rows`` rows, then a drifted batch (with a new fraud ring)
    and a corrupt export of half as many."""
    folder.mkdir(parents=True, exist_ok=True)
    half = rows // 2
    reference = fraud_batch(rows, seed=1, signal=SIGNAL)
    drifted = fraud_batch(half, seed=2, drift=DRIFT, start_id=rows, fraud_ring=FRAUD_RING, signal=SIGNAL)
    corrupt = fraud_batch(half, seed=3, start_id=rows + half, signal=SIGNAL)
    corrupt["amount"] = corrupt["amount"].astype(object)
    corrupt.loc[corrupt.index[::7], "amount"] = "n/a"  # a broken export: "n/a" (read as missing) in a required column …
    corrupt = corrupt.drop(columns=["merchant_category"])  # … and a column gone
    batches = {}
    for key, label, frame, name in (
        ("reference", "the reference world", reference, "batch-001.csv"),
        ("drifted", "the new world (drift + a fraud ring)", drifted, "batch-002-drifted.csv"),
        ("corrupt", "a corrupt export", corrupt, "batch-003-corrupt.csv"),
    ):
        path = folder / name
        frame.to_csv(path, index=False)
        batches[key] = Batch(name, label, frame, path)
    return batches


class Scenario:
    """Plays the demo's stages on a started stack, narrating each and checking what it claims."""

    def __init__(self, stack: LocalStack, spec: ModelSpec, batches: dict[str, Batch], console: Console) -> None:
        self.stack = stack
        self.spec = spec
        self.batches = batches
        self.console = console
        self.started = time.monotonic()
        self.stage = Stage(0, "set-up")
        self.endpoint = spec.endpoint_name
        self.run_ids: list[str] = []
        self.reference_traffic = ScoringTraffic(
            self._address, fraud_batch(3000, seed=16, start_id=9_000_000, signal=SIGNAL), prefix="ref"
        )
        self.new_world_traffic = ScoringTraffic(
            self._address,
            fraud_batch(6000, seed=12, drift=DRIFT, start_id=9_100_000, fraud_ring=FRAUD_RING, signal=SIGNAL),
            prefix="new",
        )
        self._status: Status | None = None

    # ================================================================= narration

    def _address(self) -> tuple[str, str]:
        return self.stack.platform().scoring_address(self.endpoint)

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def say(self, text: str) -> None:
        self.console.print(f"[dim]{self.elapsed():4.0f}s[/dim] {text}", soft_wrap=True)

    def note(self, text: str) -> None:
        self.console.print(f"        [dim]{text}[/dim]", soft_wrap=True)

    def begin(self, number: int, title: str, story: str) -> None:
        self.stage = Stage(number, title)
        self.console.print()
        self.console.rule(f"[bold]Stage {number} · {escape(title)}")
        self.console.print(f"[italic]{escape(story)}[/italic]", soft_wrap=True)

    def check(self, ok: bool, claim: str, failure: str = "") -> None:
        """Print ``✓ stage N check: claim``, or stop the stage with ``failure`` (what happened instead)."""
        if not ok:
            raise StageFailed(self.stage.number, self.stage.title, f"{claim}: NO — {failure}" if failure else claim)
        self.stage.checks.append(claim)
        self.console.print(f"  [green]✓ stage {self.stage.number} check:[/green] {escape(claim)}", soft_wrap=True)

    def fail(self, message: str) -> StageFailed:
        return StageFailed(self.stage.number, self.stage.title, message)

    @contextmanager
    def waiting(self, text: str) -> Iterator[Status]:
        """A spinner (on a terminal) saying what the demo waits for; :meth:`progress` updates it."""
        with self.console.status(text, spinner="dots") as status:
            self._status = status
            try:
                yield status
            finally:
                self._status = None

    def progress(self, text: str) -> None:
        if self._status is not None:
            self._status.update(f"[dim]{self.elapsed():4.0f}s[/dim] {escape(text)}")

    # ================================================================= reading the system

    def run(self, run_id: str) -> dict[str, Any]:
        return self.stack.api.run_document(run_id)

    def champion(self) -> dict[str, Any]:
        for model in self.stack.api.models():
            if model.model == MODEL and model.champion is not None:
                return model.champion.model_dump(mode="json")
        return {}

    def traffic(self) -> tuple[dict[str, int], dict[str, int]]:
        traffic = self.stack.platform().get_traffic(self.endpoint)
        return dict(traffic.live), dict(traffic.mirror)

    def deployments(self) -> list[str]:
        return sorted(d.name for d in self.stack.platform().list_deployments(self.endpoint))

    # ================================================================= driving runs

    def land(self, batch: Batch) -> None:
        store = self.stack.store
        assert store is not None
        store.upload_landing(MODEL, batch.name, batch.path.read_bytes())
        self.say(
            f"[bold]landed[/bold] {LANDING}/{MODEL}/{batch.name} in Azurite: {len(batch.frame):,} rows from "
            f"{batch.label}, fraud rate {batch.fraud_rate:.1%}"
        )

    def wait_for_blob_run(self) -> str:
        """After a blob landed: Event Grid → ingest → the model's coordinator debounces; skip its quiet window
        on the virtual clock and return the id of the run it starts."""
        known = {r.run_id for r in self.stack.api.runs(MODEL, 100)}
        quiet = self.spec.triggers.debounce.quiet_seconds
        deadline = time.monotonic() + 90
        with self.waiting("waiting for devhost's Event Grid to deliver BlobCreated…"):
            while True:
                status = self.stack.custom_status(f"model-{MODEL}") or {}
                if status.get("stage") == "debouncing":
                    break
                self._alive_or_fail(deadline, "the BlobCreated event to reach the model's coordinator")
                time.sleep(0.2)
        self.say(
            f"Event Grid delivered [bold]BlobCreated[/bold] → ingest → coordinator model-{MODEL} debounces the burst "
            f"(quiet window {quiet:g} s: the virtual clock skips it)"
        )
        self.stack.advance(quiet + 1)
        with self.waiting("waiting for the coordinator to claim the blob as a run…"):
            while True:
                new = [r.run_id for r in self.stack.api.runs(MODEL, 100) if r.run_id not in known]
                if new:
                    return new[0]
                self._alive_or_fail(deadline, "the coordinator to start a run")
                self.stack.advance(5)
                time.sleep(0.2)

    def _alive_or_fail(self, deadline: float, what: str) -> None:
        if not self.stack.alive():
            raise self.fail(f"devhost exited while waiting for {what}; its log ends:\n{self.stack.log_tail()}")
        if time.monotonic() > deadline:
            raise self.fail(f"timed out waiting for {what}; the host log ends:\n{self.stack.log_tail()}")

    def follow(self, run_id: str, on_bake: Callable[[int, int], None] | None = None) -> dict[str, Any]:
        """Narrate ``run_id`` until it ends, moving the clock when only a durable timer can make progress.

        ``on_bake(step_index, bake)`` is called once per bake window of its rollout (step -1 is the shadow
        phase), before the clock moves past the bake: that is when the bake's scoring traffic is sent.
        """
        self.run_ids.append(run_id)
        self.say(f"run [bold]{run_id}[/bold] started")
        deadline = time.monotonic() + RUN_TIMEOUT_S
        stage: str | None = None
        shown: set[str] = set()
        printed_steps = 0
        baked: set[tuple[int, int]] = set()
        last_advance = 0.0
        bake_seconds = self.spec.rollout.bake_minutes * 60 + 1
        with self.waiting(f"following run {run_id}"):
            while True:
                doc = self.run(run_id)
                if doc["stage"] != stage:
                    stage = str(doc["stage"])
                    self._narrate_stage(doc, shown)
                steps = sorted(doc.get("rollout") or [], key=lambda s: int(s["index"]))
                for step in steps[printed_steps:]:
                    self._narrate_step(step)
                printed_steps = len(steps)
                if doc["status"] not in ACTIVE:
                    self._narrate_stage(doc, shown)
                    self.say(f"run {run_id} ended: [bold]{status_markup(doc['status'])}[/bold]")
                    return doc
                self._alive_or_fail(deadline, f"run {run_id} (at stage {stage})")
                now = time.monotonic()
                if stage in ("training", "evaluating"):
                    jobs = [j for j in self.stack.platform().list_jobs() if j.name.startswith(run_id)]
                    running = [j.name.removeprefix(f"{run_id}-") for j in jobs if not j.terminal]
                    self.progress(f"{stage}: {len(running)} job(s) running ({', '.join(running) or 'polling'})")
                    # Job polls are durable timers: once every job has finished, let the next poll come now.
                    if jobs and not running and now - last_advance > 1.0:
                        self.stack.advance(300)
                        last_advance = now
                elif stage == "rolling_out":
                    status = self.stack.custom_status(f"{run_id}-rollout") or {}
                    if status.get("stage") == "stepping_back":
                        # A stepped rollback's pause between two traffic moves: let it pass.
                        self.progress(f"rolling back: traffic move {status.get('move')}/{status.get('moves')}")
                        if now - last_advance > 1.0:
                            self.stack.advance(float(status.get("pause_minutes", 0)) * 60 + 1)
                            last_advance = now
                        time.sleep(0.25)
                        continue
                    if status.get("stage") == "baking":
                        key = (int(status["step_index"]), int(status["bake"]))
                        if key not in baked:
                            baked.add(key)
                            if on_bake is not None:
                                on_bake(*key)
                            self.progress(f"{_step_name(self.spec, key[0])}: the bake's time passes (virtual clock)")
                            self.stack.advance(bake_seconds)
                            last_advance = time.monotonic()
                            continue
                        if now - last_advance > 5.0:  # a bake longer than one step's: move on again
                            self.stack.advance(bake_seconds)
                            last_advance = now
                    self.progress(f"rolling out: {status.get('stage', 'deploying')}")
                else:
                    self.progress(str(stage))
                time.sleep(0.25)

    def _narrate_stage(self, doc: dict[str, Any], shown: set[str]) -> None:
        """A line for each pipeline stage the run has reached (also those it passed between two polls), and
        what it has produced so far: drift, candidates, the decision (each shown once)."""
        pipeline = {
            "validating": "[bold]validating[/bold] every landing blob against the data contract (streaming)",
            "planning": "[bold]planning[/bold]: data manifest with a sha256 per blob, merged profile, drift against "
            "the champion's training data, candidates",
            "training": f"[bold]training[/bold] {self.spec.training.max_candidates} candidates as jobs on the local "
            "compute (an ml_job sub-orchestration each, polled with durable timers)",
            "evaluating": "[bold]evaluating[/bold] the best candidate against the champion on one holdout",
            "registering": "[bold]registering[/bold] the winner with its lineage",
            "rolling_out": "[bold]staged rollout[/bold]",
        }
        stage = str(doc["stage"])
        order = list(pipeline)
        reached = order.index(stage) + 1 if stage in pipeline else 0
        finished = doc["status"] not in ACTIVE
        if finished and doc.get("candidates"):
            reached = max(reached, order.index("training") + 1)
        elif doc["status"] == "no_valid_data":
            reached = max(reached, order.index("validating") + 1)
        version_rollout = doc.get("trigger", {}).get("kind") == "rollout"
        for name in order[:reached]:
            if name in shown or (version_rollout and name != "rolling_out"):
                continue
            if name == "rolling_out" and not (doc.get("rollout") or stage == name):
                continue
            # What the stages before this one produced, just before it starts.
            if name == "training":
                self._show(doc, shown, "drift")
            elif name == "evaluating":
                self._show(doc, shown, "candidates")
            elif name == "rolling_out":
                self._show(doc, shown, "decision")
            shown.add(name)
            self.say(f"  → {pipeline[name]}")
        if finished:
            for product in ("drift", "candidates", "decision"):
                self._show(doc, shown, product)

    def _show(self, doc: dict[str, Any], shown: set[str], product: str) -> None:
        """Print the run's drift summary, candidates or decision once, when the run has recorded it."""
        if product in shown:
            return
        if product == "drift" and doc.get("drift"):
            self.print_drift(doc)
        elif product == "candidates" and any(c.get("metrics") for c in doc.get("candidates") or []):
            self.print_candidates(doc)
        elif product == "decision" and doc.get("decision"):
            self.print_decision(doc)
        else:
            return
        shown.add(product)

    def _narrate_step(self, step: dict[str, Any]) -> None:
        name, verdict = step["step"], step.get("verdict", "")
        evidence = step.get("evidence") or {}
        line = f"    {escape(name)} {status_markup(verdict)}"
        traffic = _traffic_text(step.get("traffic") or {}, step.get("mirror_traffic") or {})
        if traffic:
            line += f" at {traffic}"
        if name == "deploy":
            line += f": deployment {escape(str(evidence.get('deployment', '')))} created"
        elif name == "smoke":
            line += f": the sample input answered {escape(str(evidence.get('result', '')).split(':')[0])}"
        elif "action" in evidence:
            line += f" → {escape(str(evidence['action']))}"
        self.say(line)
        canary = evidence.get("verdict")
        if isinstance(canary, dict):
            for metric in canary.get("metrics", []):
                mark = {"pass": "✓", "worse": "✗", "breach": "✗"}.get(str(metric.get("outcome")), "·")
                self.note(f"{mark} {escape(str(metric.get('reason', '')))}")
        elif name == "rollback":
            for reason in evidence.get("reasons", []):
                self.note(escape(str(reason)))

    # ================================================================= traffic and labels

    def serve(self, traffic: ScoringTraffic, count: int, why: str) -> dict[int, int]:
        """Send ``count`` scoring requests, then land their delayed labels as a feedback blob."""
        store = self.stack.store
        assert store is not None
        first = len(traffic.answers)
        self.progress(f"sending {count} scoring requests ({why})")
        answered = traffic.send(count, workers=CLIENTS)
        statuses = traffic.statuses(first)
        store.upload_feedback(MODEL, f"labels-{traffic.prefix}-{traffic.sent:06d}.csv", traffic.feedback_csv(first))
        errors = "".join(f", {n} × HTTP {s}" for s, n in sorted(statuses.items()) if s != 200)
        self.say(
            f"    {count} scoring requests ({why}) answered by "
            + ", ".join(f"{d} {n}" for d, n in sorted(answered.items()))
            + f"{errors}; their delayed labels landed in feedback/{MODEL}/"
        )
        return statuses

    def live_metrics(self, deployment: str, start: datetime) -> dict[str, float]:
        store = self.stack.store
        assert store is not None
        counts = deployment_live_counts(
            self.stack.platform(), store, self.spec, self.endpoint, deployment, start, datetime.now(UTC)
        )
        positives = counts.true_positive + counts.false_negative
        return {
            "labelled": float(counts.labelled),
            "frauds": float(positives),
            "caught": float(counts.true_positive),
            **counts.metrics(),
        }

    # ================================================================= stage 1

    def stage1_first_model(self) -> dict[str, Any]:
        spec = self.spec
        self.begin(
            1,
            "the first batch lands → the first model ships",
            "A producer drops the first batch of card transactions into the landing container. Nothing is "
            "deployed yet: Perennial validates the batch, trains candidates, checks that the best one clears "
            "the first-run floor, registers it and ships it.",
        )
        self.land(self.batches["reference"])
        run_id = self.wait_for_blob_run()
        doc = self.follow(run_id, on_bake=self._first_model_bake)

        self.check(doc["status"] == "promoted", f"run {run_id} shipped its model", f"it ended {doc['status']}")
        candidates = doc.get("candidates") or []
        done = [c for c in candidates if c.get("status") == "completed" and c.get("metrics")]
        self.check(
            len(done) == spec.training.max_candidates,
            f"{spec.training.max_candidates} candidates trained, each with validation metrics",
            f"{len(done)} of {len(candidates)} completed",
        )
        version = doc.get("version") or {}
        evaluation = (version.get("evaluation") or {}).get("challenger") or {}
        for metric, minimum in spec.promotion.first_run_floor.items():
            value = evaluation.get(metric)
            self.check(
                value is not None and float(value) >= minimum,
                f"the first model's {metric} {_num(value)} clears the first-run floor {minimum:g}",
                "it does not",
            )
        champion = self.champion()
        self.check(
            version.get("version") is not None and champion.get("version") == version.get("version"),
            f"version {version.get('version')} is registered with its lineage and is the champion",
            f"the champion is {champion.get('version')}",
        )
        live, mirror = self.traffic()
        self.check(
            live == {champion.get("deployment"): 100} and not mirror,
            f"{champion.get('deployment')} takes 100 % of {self.endpoint}'s traffic",
            f"traffic is {live} (mirror {mirror})",
        )
        return doc

    def _first_model_bake(self, step_index: int, bake: int) -> None:
        self.say(
            f"  bake ({self.spec.rollout.bake_minutes:g} min): a first model has no champion to split traffic with, "
            "so it takes 100 % at once and is judged on the absolute gates"
        )
        self.serve(self.reference_traffic, 100, "the reference world")

    # ================================================================= stage 2

    def stage2_drift(self, first: dict[str, Any]) -> dict[str, Any]:
        spec = self.spec
        self.begin(
            2,
            "traffic flows; the world drifts → retrain → staged rollout",
            "The bank's authorisation service scores every transaction on the endpoint; chargebacks come back "
            "later as labels. Then the world changes — bigger, more online and foreign payments, and a "
            "card-testing ring the first model has never seen — and a batch from the new world lands.",
        )
        v1 = str(self.champion().get("deployment"))
        start = datetime.now(UTC)
        statuses = self.serve(self.reference_traffic, 300, "the reference world")
        before = self.live_metrics(v1, start)
        start = datetime.now(UTC)
        statuses_new = self.serve(self.new_world_traffic, 300, "the new world")
        after = self.live_metrics(v1, start)
        self.print_live(v1, before, after)
        self.check(
            statuses == {200: 300} and statuses_new == {200: 300},
            f"600 scoring requests answered by {v1}, all with HTTP 200",
            f"statuses {statuses} / {statuses_new}",
        )
        self.check(
            before.get("labelled") == 300 and after.get("labelled") == 300,
            "every delayed label joined back to its prediction by request id",
            f"labelled {before.get('labelled')} and {after.get('labelled')} of 300",
        )

        self.land(self.batches["drifted"])
        run_id = self.wait_for_blob_run()
        doc = self.follow(run_id, on_bake=self._bake)

        drift = doc.get("drift") or {}
        self.check(
            bool(drift.get("drifted")),
            f"drift detected against the champion's training data: {', '.join(drift.get('drifted_columns', []))} "
            f"({float(drift.get('drifted_share', 0)):.0%} of the features)",
            f"the run recorded {drift or 'no drift summary'}",
        )
        self.check(doc["status"] == "promoted", f"run {run_id} promoted its challenger", f"it ended {doc['status']}")
        version = doc.get("version") or {}
        difference = (version.get("evaluation") or {}).get("difference") or {}
        estimate, p_value = difference.get("estimate"), difference.get("p_value")
        self.check(
            estimate is not None
            and p_value is not None
            and float(estimate) >= spec.promotion.min_improvement
            and float(p_value) < spec.promotion.significance / 2,  # one-sided p: the two-sided interval's test
            f"the challenger beats the champion on {spec.promotion.primary_metric} by {_num(estimate)} "
            f"(one-sided p={_num(p_value)}; the spec asks ≥ {spec.promotion.min_improvement:g} with its "
            f"{1 - spec.promotion.significance:.0%} interval above 0)",
            "not significantly",
        )
        self.check_steps_passed(doc)
        champion = self.champion()
        first_version = (first.get("version") or {}).get("version")
        self.check(
            champion.get("version") == version.get("version") and champion.get("previous_version") == first_version,
            f"version {version.get('version')} is the champion; version {first_version} stays deployed for a "
            "one-command rollback",
            f"champion {champion}",
        )
        live, mirror = self.traffic()
        self.check(
            live == {champion.get("deployment"): 100} and not mirror,
            f"{champion.get('deployment')} takes 100 % of the traffic",
            f"traffic is {live} (mirror {mirror})",
        )
        return doc

    def _bake(self, step_index: int, bake: int) -> None:
        """One bake window of a rollout with a champion: enough new-world traffic for the challenger's share
        to reach the spec's min_samples, and its labels."""
        rollout = self.spec.rollout
        if step_index == -1:
            share = rollout.shadow.mirror_percent
            what = f"{share}% of requests mirrored to the challenger, every answer from the champion"
            minutes = rollout.shadow.bake_minutes
        else:
            percent = rollout.steps[step_index]
            share = min(percent, 100 - percent) or 100
            what = f"{percent}% of live traffic on the challenger"
            minutes = rollout.bake_minutes
        count = max(150, int(rollout.gates.min_samples * 1.5 * 100 / share))
        self.say(f"  bake{f' {bake}' if bake > 1 else ''} of [bold]{_step_name(self.spec, step_index)}[/bold] "
                 f"({minutes:g} min): {what}")  # fmt: skip
        self.serve(self.new_world_traffic, count, "the new world")

    def check_steps_passed(self, doc: dict[str, Any]) -> None:
        rollout = self.spec.rollout
        steps = sorted(doc.get("rollout") or [], key=lambda s: int(s["index"]))
        names = ["deploy", "smoke", *(["shadow"] if rollout.shadow.enabled else [])]
        names += [f"traffic-{p}" for p in rollout.steps]
        final = {s["step"]: s["verdict"] for s in steps}  # each step's last verdict (after any extended bake)
        self.check(
            all(final.get(n) == "pass" for n in names) and not any(s["verdict"] == "fail" for s in steps),
            "the staged rollout passed every step: " + " → ".join(names),
            f"steps were {[(s['step'], s['verdict']) for s in steps]}",
        )

    # ================================================================= stage 3

    def stage3_corrupt(self) -> dict[str, Any]:
        self.begin(
            3,
            "a corrupt batch lands → quarantined",
            "An upstream export breaks: text in the amount column, and a column gone. It must never reach "
            "training, the champion must not notice, and whoever owns the feed needs a report that says what "
            "is wrong and how to fix it.",
        )
        before = self.champion(), self.traffic()
        batch = self.batches["corrupt"]
        self.land(batch)
        run_id = self.wait_for_blob_run()
        doc = self.follow(run_id)
        for reason in doc.get("reasons") or []:
            self.note(f"• {escape(str(reason))}")
        store = self.stack.store
        assert store is not None
        name = f"{MODEL}/{batch.name}"
        quarantined = {b.name for b in store.container(QUARANTINE).list_blobs(name_starts_with=f"{MODEL}/")}
        landing = {b.name for b in store.container(LANDING).list_blobs(name_starts_with=f"{MODEL}/")}
        report: dict[str, Any] = {}
        if f"{name}.report.json" in quarantined:
            report = store.quarantine_report(MODEL, batch.name)
            self.print_report(report, f"{QUARANTINE}/{name}.report.json")

        self.check(
            doc["status"] == "no_valid_data",
            f"run {run_id} stopped before training (no_valid_data)",
            f"it ended {doc['status']}",
        )
        self.check(not doc.get("candidates"), "nothing was trained", f"{len(doc.get('candidates') or [])} candidates")
        self.check(
            name in quarantined and f"{name}.report.json" in quarantined and name not in landing,
            f"the batch moved from {LANDING}/ to {QUARANTINE}/{name}, its report beside it",
            f"quarantine holds {sorted(quarantined)}, landing {sorted(landing)}",
        )
        columns = {str(f.get("column")) for f in report.get("findings", []) if f.get("severity") == "error"}
        self.check(
            report.get("ok") is False and {"amount", "merchant_category"} <= columns,
            "the report names both problems: amount has gaps (n/a in a required column), merchant_category is missing",
            f"error findings on columns {sorted(columns)}",
        )
        after = self.champion(), self.traffic()
        self.check(
            after == before,
            f"the champion is untouched: version {after[0].get('version')} at {_traffic_text(*after[1])}",
            f"before {before}, after {after}",
        )
        return doc

    # ================================================================= stage 4

    def stage4_faulty(self) -> dict[str, Any]:
        spec = self.spec
        self.begin(
            4,
            "a challenger that fails under load → rolled back",
            "Someone ships a registered version by hand with POST /api/models/fraud/versions/{v}/rollout — "
            "here version 1 again, rebuilt with a broken dependency: it passes its smoke test, then fails "
            f"{FAULT_ERROR_RATE:.0%} of its requests under load (the local ML service's fault injection, switched "
            "on once the smoke test has passed). The canary analysis must catch it at its first step and leave "
            "the champion serving.",
        )
        before = self.champion()
        version = before.get("previous_version")
        if not version:
            raise self.fail("there is no previous version to ship (stage 2 should have left one)")
        challenger = deployment_name(MODEL, str(version))
        try:
            accepted = self.stack.api.rollout(MODEL, str(version), f"re-ship version {version} (rebuilt)", "demo")
        except ClientError as exc:
            raise self.fail(f"POST …/versions/{version}/rollout: {exc}") from None
        if not accepted.run_id:
            raise self.fail(f"POST …/versions/{version}/rollout accepted no run")
        run_id = accepted.run_id
        self.say(f"POST /api/models/{MODEL}/versions/{version}/rollout → 202 Accepted")
        injected: list[bool] = []

        def bake(step_index: int, bake: int) -> None:
            if not injected:
                injected.append(True)
                self.stack.platform().inject_faults(
                    DeploymentRef(self.endpoint, challenger), FaultSpec(error_rate=FAULT_ERROR_RATE)
                )
                self.say(
                    f"  [red]fault injected[/red]: {challenger} answers {FAULT_ERROR_RATE:.0%} of requests with 500"
                )
            self._bake(step_index, bake)

        doc = self.follow(run_id, on_bake=bake)
        steps = sorted(doc.get("rollout") or [], key=lambda s: int(s["index"]))
        first_step = "shadow" if spec.rollout.shadow.enabled else f"traffic-{spec.rollout.steps[0]}"
        failed = next((s for s in steps if s["verdict"] == "fail"), None)
        self.print_evidence(failed)
        for reason in doc.get("reasons") or []:
            self.note(f"• {escape(str(reason))}")

        self.check(doc["status"] == "rolled_back", f"run {run_id} rolled back", f"it ended {doc['status']}")
        self.check(
            failed is not None and failed["step"] == first_step,
            f"it failed at its first step after the smoke test ({first_step}) and went no further",
            f"the first failure was {failed['step'] if failed else 'none'}",
        )
        canary = ((failed or {}).get("evidence") or {}).get("verdict") or {}
        bad = [m["metric"] for m in canary.get("metrics", []) if m.get("outcome") in ("worse", "breach")]
        self.check("error_rate" in bad, "the evidence: its error rate breached the gate", f"failed metrics {bad}")
        later = [s["step"] for s in steps if s["index"] > (failed or {}).get("index", 99) and s["step"] != "rollback"]
        self.check(not later, "no step after it ran", f"later steps {later}")
        after = self.champion()
        live, mirror = self.traffic()
        self.check(
            after.get("version") == before.get("version") and live == {before.get("deployment"): 100} and not mirror,
            f"the champion {before.get('deployment')} serves 100 % again, nothing mirrored",
            f"champion {after.get('version')}, traffic {live}, mirror {mirror}",
        )
        self.check(
            challenger not in self.deployments(),
            f"the faulty deployment {challenger} is deleted",
            f"deployments {self.deployments()}",
        )
        return doc

    # ================================================================= stage 5

    def stage5_summary(self, paths: StackPaths) -> None:
        self.begin(5, "summary", "What happened, as the registry recorded it, and where everything lives.")
        runs = list(reversed(self.stack.api.runs(MODEL, 100)))
        documents = {run.run_id: self.run(run.run_id) for run in runs}
        table = Table(title="Runs, oldest first", title_justify="left")
        for heading in ("run", "trigger", "outcome", "ver.", "what happened"):
            table.add_column(heading, overflow="fold", no_wrap=heading != "what happened")
        for run in runs:
            table.add_row(
                escape(f"…{run.run_id[-6:]}"),
                escape(run.trigger.kind),
                status_markup(run.status),
                escape(run.registered_version or ""),
                escape(_why(documents[run.run_id])),
            )
        self.console.print(table)
        history = Table(title=f"Traffic history of endpoint {self.endpoint}", title_justify="left")
        for heading in ("run", "step", "live traffic %", "mirror %", "verdict"):
            history.add_column(heading, overflow="fold")
        for run in runs:
            for step in sorted(documents[run.run_id].get("rollout") or [], key=lambda s: int(s["index"])):
                if step.get("traffic") or step.get("mirror_traffic"):
                    history.add_row(
                        escape(f"…{run.run_id[-6:]}"),
                        escape(step["step"]),
                        escape(_pairs(step.get("traffic") or {})),
                        escape(_pairs(step.get("mirror_traffic") or {})),
                        status_markup(step.get("verdict", "")),
                    )
        self.console.print(history)
        champion = self.champion()
        self.say(
            f"champion: version {champion.get('version')} ({champion.get('deployment')}) at "
            f"{_traffic_text(*self.traffic())}; previous version {champion.get('previous_version')}; "
            f"deployments: {', '.join(self.deployments())}"
        )
        places = Table(title="Where the state lives (wiped by the next `perennial demo`)", title_justify="left")
        places.add_column("where", no_wrap=True)
        places.add_column("what", overflow="fold")
        for where, what in (
            (paths.root / "data", "the generated batches"),
            (paths.models, "the model spec the demo played"),
            (paths.azurite, "Azurite: landing, quarantine, manifests, feedback; the run registry tables"),
            (paths.state, "local ML service: jobs and outputs, registered models, endpoints, scoring logs"),
            (paths.devhost, "devhost: durable orchestration histories (SQLite), the virtual clock"),
            (paths.host_log, "the host's log"),
        ):
            places.add_row(escape(f"{where}/" if where != paths.host_log else str(where)), what)
        self.console.print(places)
        self.check(len(runs) == 4, f"{len(runs)} runs recorded, one per stage", f"{len(runs)} runs")

    # ================================================================= printing

    def print_candidates(self, doc: dict[str, Any]) -> None:
        candidates = doc.get("candidates") or []
        table = Table(title="Candidates (metrics on their validation split; ★ the best)", title_justify="left")
        for heading in ("", "lr", "width", "depth", "drop", "pr_auc", "roc_auc", "f1"):
            table.add_column(heading, no_wrap=True)
        primary = self.spec.promotion.primary_metric

        def score(c: Mapping[str, Any]) -> float:
            metrics = c.get("metrics") or {}
            value = metrics.get(primary, metrics.get(f"val_{primary}"))
            return float(value) if c.get("status") == "completed" and value is not None else float("-inf")

        best = max(candidates, key=score)["candidate_id"] if candidates else None
        for c in candidates:
            params, metrics = c.get("params") or {}, c.get("metrics") or {}

            def metric(name: str, metrics: Mapping[str, Any] = metrics) -> str:
                return _num(metrics.get(name) if name in metrics else metrics.get(f"val_{name}"), 3)

            status = str(c.get("status", ""))
            table.add_row(
                escape(str(c["candidate_id"]))
                + (" ★" if c["candidate_id"] == best else "")
                + (f" ({status_markup(status)})" if status != "completed" else ""),
                _num(params.get("lr"), 2),
                str(params.get("width", "")),
                str(params.get("depth", "")),
                str(params.get("dropout", "")),
                metric("pr_auc"),
                metric("roc_auc"),
                metric("f1"),
            )
        self.console.print(table)

    def print_decision(self, doc: dict[str, Any]) -> None:
        decision = doc.get("decision") or "none"
        colour = "green" if decision == "promote" else "yellow"
        evaluation = (doc.get("version") or {}).get("evaluation") or {}
        challenger, champion = evaluation.get("challenger") or {}, evaluation.get("champion") or {}
        if challenger:
            names = ("pr_auc", "roc_auc", "precision", "recall", "f1")
            table = Table(
                title=f"Evaluation of the best candidate ({evaluation.get('n_holdout', '?')} holdout rows)",
                title_justify="left",
            )
            table.add_column("")
            for name in names:
                table.add_column(name)
            table.add_row("challenger", *(_num(challenger.get(n), 3) for n in names))
            if champion:
                table.add_row("champion", *(_num(champion.get(n), 3) for n in names))
            self.console.print(table)
        self.console.print(f"[bold]Decision:[/bold] [{colour}]{escape(decision)}[/{colour}]")
        for reason in doc.get("reasons") or []:
            self.console.print(f"  • {escape(str(reason))}", soft_wrap=True)
        version = doc.get("version") or {}
        if version:
            self.console.print(
                f"[bold]Registered version {escape(str(version.get('version')))}[/bold] (candidate "
                f"{escape(str(version.get('candidate_id')))}), lineage: trigger {escape(str(version.get('trigger_kind')))}, "
                f"{version.get('data_files') or len(version.get('data_hashes') or {})} blob(s) pinned by sha256 in "
                f"{escape(str(version.get('manifest_url')))}, "
                f"code {escape(str(version.get('code_version') or '?'))}",
                soft_wrap=True,
            )

    def print_evidence(self, step: dict[str, Any] | None) -> None:
        if step is None:
            return
        canary = (step.get("evidence") or {}).get("verdict") or {}
        self.console.print(
            f"[bold]Evidence at {escape(step['step'])}[/bold]: verdict {status_markup(str(canary.get('verdict')))}"
            f"{' (hard failure: immediate rollback)' if canary.get('hard_failure') else ''}, "
            f"analysis {canary.get('mode')} at confidence {canary.get('confidence')}"
        )
        for metric in canary.get("metrics", []):
            outcome = str(metric.get("outcome"))
            colour = "red" if outcome in ("worse", "breach") else "green" if outcome == "pass" else "dim"
            self.console.print(
                f"  [{colour}]{outcome:6}[/{colour}] {escape(str(metric.get('reason')))}", soft_wrap=True
            )
            if outcome in ("worse", "breach"):
                numbers = {k: v for k, v in (metric.get("evidence") or {}).items() if v is not None}
                self.console.print(f"         [dim]{escape(_pairs(numbers))}[/dim]", soft_wrap=True)

    def print_drift(self, doc: dict[str, Any]) -> None:
        drift = doc.get("drift") or {}
        columns: Mapping[str, Any] = drift.get("columns") or {}
        verdict = "[red]DRIFTED[/red]" if drift.get("drifted") else "[green]no dataset drift[/green]"
        self.console.print(
            f"[bold]Drift of this run's data vs the champion's training data:[/bold] {verdict} — "
            f"{len(drift.get('drifted_columns', []))} of {len(columns)} features drifted "
            f"({float(drift.get('drifted_share', 0)):.0%}; the spec's threshold is "
            f"{float(drift.get('threshold_share') or 0):.0%})",
            soft_wrap=True,
        )
        thresholds = self.spec.triggers.drift
        table = Table(
            caption=f"drifted when Wasserstein > {thresholds.wasserstein:g} std or PSI > {thresholds.psi:g} "
            f"(numeric), Jensen-Shannon > {thresholds.jensen_shannon:g} or PSI > {thresholds.psi:g} (categories)",
            caption_justify="left",
        )
        for heading in ("feature", "PSI", "Wasserstein", "JS", "KS p", "drifted"):
            table.add_column(heading, no_wrap=True)
        for name, c in columns.items():
            table.add_row(
                escape(name),
                _num(c.get("psi"), 3),
                _num(c.get("wasserstein"), 3),
                _num(c.get("jensen_shannon"), 3),
                _num(c.get("ks_pvalue"), 3),
                "[red]yes[/red]" if c.get("drifted") else "",
            )
        self.console.print(table)

    def print_live(self, deployment: str, before: Mapping[str, float], after: Mapping[str, float]) -> None:
        table = Table(title=f"{deployment} as seen through the delayed labels", title_justify="left")
        for heading in ("traffic", "labelled", "frauds", "caught", "accuracy", "roc_auc"):
            table.add_column(heading)
        for label, values in (("reference world", before), ("new world", after)):
            table.add_row(
                label,
                str(int(values.get("labelled", 0))),
                str(int(values.get("frauds", 0))),
                str(int(values.get("caught", 0))),
                _num(values.get("accuracy"), 3),
                _num(values.get("roc_auc"), 3),
            )
        self.console.print(table)

    def print_report(self, report: Mapping[str, Any], where: str) -> None:
        findings = report.get("findings") or []
        errors = [f for f in findings if f.get("severity") == "error"]
        self.console.print(
            f"[bold]Quarantine report[/bold] {escape(where)}: {int(report.get('rows') or 0):,} rows read, "
            f"{len(errors)} error(s), {len(findings) - len(errors)} warning(s)"
        )
        for f in findings:
            colour = "red" if f.get("severity") == "error" else "yellow"
            column = f" [bold]{escape(str(f['column']))}[/bold]" if f.get("column") else ""
            places = [Example(e.get("row"), str(e.get("value") or ""), e.get("line")) for e in f.get("examples") or []]
            examples = locate(places[:3], values=True)
            self.console.print(
                f"  [{colour}]{escape(str(f.get('severity')))}[/{colour}] {escape(str(f.get('check')))}{column}: "
                f"{escape(str(f.get('message')))}" + (f" ({escape(examples)})" if examples else ""),
                soft_wrap=True,
            )
            self.console.print(f"      [dim]fix: {escape(str(f.get('remediation', '')))}[/dim]", soft_wrap=True)


# --------------------------------------------------------------------------- formatting


def _why(doc: Mapping[str, Any]) -> str:
    """One line on what a run did, from its record."""
    status = doc.get("status")
    reasons = [str(r) for r in doc.get("reasons") or []]
    if doc.get("trigger", {}).get("kind") == "rollout":
        failed = next((s for s in doc.get("rollout") or [] if s.get("verdict") == "fail"), None)
        if failed is not None:
            canary = (failed.get("evidence") or {}).get("verdict") or {}
            bad = [m["metric"] for m in canary.get("metrics", []) if m.get("outcome") in ("worse", "breach")]
            return f"rolled back at {failed['step']}: {', '.join(bad) or 'failed'}"
    if status == "no_valid_data":
        quarantined = [r.split(":")[0] for r in reasons if r.startswith(f"{MODEL}/")]
        return f"quarantined {', '.join(quarantined)}; nothing new to train on"
    drift = doc.get("drift") or {}
    parts = [f"drift in {', '.join(drift['drifted_columns'])}"] if drift.get("drifted") else []
    parts += [reasons[0].removeprefix("promote: ")] if reasons else []
    return "; ".join(parts)


def _num(value: Any, digits: int = 4) -> str:
    if value is None or value == "" or isinstance(value, bool):
        return "" if value is None else str(value)
    if isinstance(value, int):
        return str(value)
    try:
        number = float(value)
    except (TypeError, ValueError):
        return str(value)
    if number != 0 and abs(number) < 10 ** -(digits - 1):
        return f"{number:.{max(digits - 2, 1)}g}"
    return f"{number:.{digits}f}".rstrip("0").rstrip(".") if abs(number) < 10 else f"{number:.1f}"


def _pairs(values: Mapping[str, Any]) -> str:
    return ", ".join(f"{k} {_num(v)}" for k, v in sorted(values.items()))


def _traffic_text(live: Mapping[str, Any], mirror: Mapping[str, Any]) -> str:
    text = _pairs(live)
    if mirror:
        text += f" (mirror {_pairs(mirror)})"
    return escape(text)


def _step_name(spec: ModelSpec, step_index: int) -> str:
    return "shadow" if step_index == -1 else f"traffic-{spec.rollout.steps[step_index]}"
