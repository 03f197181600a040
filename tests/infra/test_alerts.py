"""The on-call alerts (infra/modules/alerts.bicep): deployed only with an address, every rule notifies it,
the log alerts look for the lines the code really logs, the metric alerts watch metrics that exist."""

from __future__ import annotations

import ast
import json
import logging
import re
from pathlib import Path
from typing import Any

import pytest

from tests.infra import bicep
from tests.infra.bicep import BicepDoc, Resource
from tests.infra.conftest import INFRA, ROOT

ALERTS = "modules/alerts.bicep"
ACTION_GROUP = "Microsoft.Insights/actionGroups"
LOG_ALERT = "Microsoft.Insights/scheduledQueryRules"
METRIC_ALERT = "Microsoft.Insights/metricAlerts"
ALERT_TYPES = (ACTION_GROUP, LOG_ALERT, METRIC_ALERT)

# Metric names per namespace an alert may watch: each checked against Azure Monitor's reference (Event Grid:
# "Monitor data reference for Azure Event Grid's push event delivery"; Microsoft.Web/sites: Http5xx, "Http Server
# Errors"), so a misspelt one, which Azure would reject only at deployment, fails here.
ALLOWED_METRICS: dict[str, set[str]] = {
    "Microsoft.EventGrid/topics": {"DeadLetteredCount", "DroppedEventCount"},
    "Microsoft.EventGrid/systemTopics": {"DeadLetteredCount", "DroppedEventCount"},
    "Microsoft.Web/sites": {"Http5xx"},
}

# What the run-ended alert's query looks for, and where the code logs it (file, function, the run status the
# message is about). Renaming the message in the code, or the fragment in the query, breaks a test below.
RUN_ENDED_FRAGMENTS: dict[str, tuple[str, str, dict[str, str]]] = {
    "ended failed": ("functions/activities.py", "finish_run", {"status": "failed"}),
    "ended training_failed": ("functions/activities.py", "finish_run", {"status": "training_failed"}),
    "ended rolled_back": ("functions/activities.py", "finish_run", {"status": "rolled_back"}),
    "ended approval_timed_out": ("functions/activities.py", "finish_run", {"status": "approval_timed_out"}),
    "closed by housekeeping": ("functions/stranded.py", "close_stranded_runs", {}),
}

# Python's level -> Application Insights' severityLevel (what the Functions host writes for a worker's line).
SEVERITY = {logging.DEBUG: 0, logging.INFO: 1, logging.WARNING: 2, logging.ERROR: 3, logging.CRITICAL: 4}


def _squash(text: str) -> str:
    return re.sub(r"\s+", "", text)


def _alerts(docs: dict[str, BicepDoc]) -> BicepDoc:
    return docs[ALERTS]


def _rule(doc: BicepDoc, symbol: str) -> Resource:
    (found,) = [r for r in doc.resources if r.symbol == symbol]
    return found


def _query(doc: BicepDoc, rule: Resource) -> str:
    (criterion,) = bicep._array_items(rule.get("properties.criteria.allOf")) or []
    return doc.template(bicep.get(criterion, "query"))


def _action_group(doc: BicepDoc) -> Resource:
    (group,) = doc.resources_of(ACTION_GROUP)
    return group


# ---------------------------------------------------------------------- only with an address


def test_the_alert_email_is_an_optional_parameter_azd_fills_from_perennial_alert_email(
    docs: dict[str, BicepDoc],
) -> None:
    main = docs["main.bicep"]
    param = main.params["alertEmail"]
    assert param.type == "string"
    assert main.param_default("alertEmail") == "", "empty by default: no alerts unless someone asks for them"
    parameters = json.loads((INFRA / "main.parameters.json").read_text(encoding="utf-8"))["parameters"]
    assert parameters["alertEmail"] == {"value": "${PERENNIAL_ALERT_EMAIL}"}


def test_alerts_are_deployed_only_when_an_alert_email_is_set(docs: dict[str, BicepDoc]) -> None:
    # Every action group and alert rule lives in alerts.bicep...
    elsewhere = [
        f"{doc.name}:{r.line}: {r.type}"
        for name, doc in docs.items()
        if name != ALERTS
        for r in doc.resources
        if r.type in ALERT_TYPES and not r.existing
    ]
    assert elsewhere == []
    # ...which only main.bicep deploys, under the condition that an address was given, and passes it on.
    deployments = [
        (name, m)
        for name, doc in docs.items()
        for m in doc.modules
        if (INFRA / name).parent.joinpath(m.path).resolve() == (INFRA / ALERTS).resolve()
    ]
    assert [name for name, _ in deployments] == ["main.bicep"]
    (_, module) = deployments[0]
    assert module.condition is not None, "alerts.bicep must be deployed only `if (!empty(alertEmail))`"
    assert _squash(bicep._text(module.condition)) == "(!empty(alertEmail))"
    assert bicep._text(bicep.get(module.body, "params.alertEmail")) == "alertEmail"
    # Inside, nothing can be deployed without it: the address has no default.
    assert _alerts(docs).params["alertEmail"].default is None


def test_the_action_group_emails_the_address_with_the_common_alert_schema(docs: dict[str, BicepDoc]) -> None:
    doc = _alerts(docs)
    group = _action_group(doc)
    assert doc.value(group.get("location")) == "global"
    assert doc.value(group.get("properties.enabled")) is True
    short = doc.value(group.get("properties.groupShortName"))
    assert isinstance(short, str)
    assert 1 <= len(short) <= 12, "Azure takes at most 12 characters"
    (receiver,) = bicep._array_items(group.get("properties.emailReceivers")) or []
    assert bicep._text(bicep.get(receiver, "emailAddress")) == "alertEmail"
    assert doc.value(bicep.get(receiver, "useCommonAlertSchema")) is True


def test_every_alert_rule_notifies_the_action_group(docs: dict[str, BicepDoc]) -> None:
    doc = _alerts(docs)
    group = f"{_action_group(doc).symbol}.id"
    log_rules = doc.resources_of(LOG_ALERT)
    metric_rules = doc.resources_of(METRIC_ALERT)
    assert {r.symbol for r in log_rules} == {"runEndedBadlyAlert", "errorsAlert"}
    assert {r.symbol for r in metric_rules} == {"deadLetteredAlerts", "droppedAlerts", "http5xxAlert"}
    for rule in log_rules:
        assert doc.value(rule.get("kind")) == "LogAlert", rule.symbol
        targets = [bicep._text(n) for n in bicep._array_items(rule.get("properties.actions.actionGroups")) or []]
        assert targets == [group], rule.symbol
    for rule in metric_rules:
        actions = bicep._array_items(rule.get("properties.actions")) or []
        assert [bicep._text(bicep.get(a, "actionGroupId")) for a in actions] == [group], rule.symbol
    for rule in [*log_rules, *metric_rules]:
        assert doc.value(rule.get("properties.enabled")) is True, rule.symbol


# ---------------------------------------------------------------------- log alerts vs what the code logs


def _function(path: Path, name: str) -> ast.FunctionDef | ast.AsyncFunctionDef:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    (found,) = [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef) and n.name == name]
    return found


def _module_sets(path: Path) -> dict[str, set[str]]:
    """Module-level names bound to a literal set of strings (``X = frozenset({...})`` or ``X = {...}``)."""
    found: dict[str, set[str]] = {}
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.AnnAssign):
            target, value = node.target, node.value
        elif isinstance(node, ast.Assign) and len(node.targets) == 1:
            target, value = node.targets[0], node.value
        else:
            continue
        if isinstance(value, ast.Call) and isinstance(value.func, ast.Name) and value.func.id in ("frozenset", "set"):
            value = value.args[0] if value.args else None
        if isinstance(target, ast.Name) and isinstance(value, ast.Set | ast.Tuple | ast.List):
            found[target.id] = {e.value for e in value.elts if isinstance(e, ast.Constant) and isinstance(e.value, str)}
    return found


def _locals(function: ast.AST) -> dict[str, ast.expr]:
    """Names assigned once in ``function``, with what they are assigned."""
    assigned: dict[str, list[ast.expr]] = {}
    for node in ast.walk(function):
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            assigned.setdefault(node.targets[0].id, []).append(node.value)
    return {name: values[0] for name, values in assigned.items() if len(values) == 1}


def _last_name(node: ast.expr) -> str:
    """``status`` for ``status`` and ``run.status``."""
    return node.attr if isinstance(node, ast.Attribute) else node.id if isinstance(node, ast.Name) else ""


class _Reader:
    """Renders the messages a function logs, with some of its values known (e.g. {"status": "failed"})."""

    def __init__(self, path: Path, function: str, known: dict[str, str]) -> None:
        self.function = _function(path, function)
        self.sets = _module_sets(path)
        self.locals = _locals(self.function)
        self.known = known

    def text(self, node: ast.expr) -> str:
        """The value of a str expression, with ``{expr}`` for what is only known at run time."""
        name = _last_name(node)
        if name in self.known:
            return self.known[name]
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            return node.value
        if isinstance(node, ast.JoinedStr):
            return "".join(
                self.text(part.value) if isinstance(part, ast.FormattedValue) else self.text(part)
                for part in node.values
            )
        if isinstance(node, ast.Name) and node.id in self.locals:
            return self.text(self.locals[node.id])
        return "{" + ast.unparse(node) + "}"

    def level(self, node: ast.expr) -> int | None:
        """A logging level expression's value: logging.X, a local name, or ``A if <x> in SET else B``."""
        if isinstance(node, ast.Attribute) and isinstance(getattr(logging, node.attr, None), int):
            return int(getattr(logging, node.attr))
        if isinstance(node, ast.Name) and node.id in self.locals:
            return self.level(self.locals[node.id])
        if isinstance(node, ast.IfExp) and isinstance(node.test, ast.Compare) and len(node.test.ops) == 1:
            (op,), (right,) = node.test.ops, node.test.comparators
            value = self.known.get(_last_name(node.test.left))
            if isinstance(op, ast.In | ast.NotIn) and isinstance(right, ast.Name) and right.id in self.sets and value:
                inside = (value in self.sets[right.id]) == isinstance(op, ast.In)
                return self.level(node.body if inside else node.orelse)
        return None

    def messages(self) -> list[tuple[int | None, str]]:
        """(level, message) of every ``logger.<level>(...)`` / ``logger.log(level, ...)`` call in the function."""
        found = []
        for call in ast.walk(self.function):
            if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute)):
                continue
            method, args = call.func.attr, call.args
            if _last_name(call.func.value) != "logger" or not args:
                continue
            if method == "log":
                level, args = self.level(args[0]), args[1:]
            elif method in ("debug", "info", "warning", "error", "exception", "critical"):
                level = getattr(logging, "ERROR" if method == "exception" else method.upper())
            else:
                continue
            template, *values = args
            rendered = iter([self.text(v) for v in values])
            text = self.text(template)
            if values:  # %-style arguments, whatever their conversion (%s, %d, %r, ...)
                text = re.sub(
                    r"%[-#0 +]*\d*(?:\.\d+)?[sdrifxXeEgGc]", lambda _, values=rendered: next(values, "{?}"), text
                )
            found.append((level, text.replace("%%", "%")))
        return found


def test_the_run_ended_alert_looks_for_warnings_the_code_logs_word_for_word(docs: dict[str, BicepDoc]) -> None:
    doc = _alerts(docs)
    query = _query(doc, _rule(doc, "runEndedBadlyAlert"))
    assert query.split()[0] == "traces", "the Functions host writes the worker's log lines to traces"
    fragments = re.findall(r'message\s+contains(?:_cs)?\s+"([^"]+)"', query)
    assert set(fragments) == set(RUN_ENDED_FRAGMENTS), "a new fragment needs its source in RUN_ENDED_FRAGMENTS"
    threshold = re.search(r"severityLevel\s*>=\s*(\d)", query)
    assert threshold is not None
    for fragment, (path, function, known) in RUN_ENDED_FRAGMENTS.items():
        logged = _Reader(ROOT / path, function, known).messages()
        matching = [(level, text) for level, text in logged if fragment in text]
        assert matching, f"{path}:{function} logs no message with {fragment!r}: {logged}"
        assert any(level is not None and SEVERITY[level] >= int(threshold.group(1)) for level, _ in matching), (
            f"{path}:{function} logs {fragment!r} below the query's severityLevel >= {threshold.group(1)}: {matching}"
        )


def test_the_run_ended_alert_reads_the_message_finish_run_writes() -> None:
    # What the reader makes of finish_run, so that a failure above shows what it compared.
    def ended(status: str) -> list[tuple[int | None, str]]:
        logged = _Reader(ROOT / "functions/activities.py", "finish_run", {"status": status}).messages()
        return [(level, text.split(": ", 1)[0]) for level, text in logged if " ended " in text]

    assert ended("rolled_back") == [(logging.WARNING, "run {run.run_id} of {run.model} ended rolled_back")]
    assert ended("failed") == [(logging.WARNING, "run {run.run_id} of {run.model} ended failed")]
    assert ended("promoted") == [(logging.INFO, "run {run.run_id} of {run.model} ended promoted")]


def test_the_errors_alert_counts_error_traces_of_the_last_15_minutes(docs: dict[str, BicepDoc]) -> None:
    doc = _alerts(docs)
    rule = _rule(doc, "errorsAlert")
    query = _query(doc, rule)
    assert query.split()[0] == "traces"
    assert re.search(r"severityLevel\s*>=\s*3\b", query), "Error (3) and Critical (4)"
    # The host keeps the worker's lines under Function.<name>.User and its own failed invocations under
    # Function.<name>; the Python logger's name (perennial.*) is not kept, so it cannot be filtered on.
    assert 'startswith "Function."' in query
    assert doc.value(rule.get("properties.windowSize")) == "PT15M"


@pytest.mark.parametrize("symbol", ["runEndedBadlyAlert", "errorsAlert"])
def test_the_log_alerts_fire_on_any_matching_line_of_the_app_insights_the_app_logs_to(
    docs: dict[str, BicepDoc], symbol: str
) -> None:
    doc = _alerts(docs)
    rule = _rule(doc, symbol)
    assert [bicep._text(n) for n in bicep._array_items(rule.get("properties.scopes")) or []] == [
        "applicationInsights.id"
    ]
    (component,) = [r for r in doc.resources if r.symbol == "applicationInsights"]
    assert component.type == "Microsoft.Insights/components"
    assert bicep._text(component.get("name")) == "applicationInsightsName"
    main = docs["main.bicep"]
    (module,) = [m for m in main.modules if m.symbol == "alerts"]
    assert bicep._text(bicep.get(module.body, "params.applicationInsightsName")) == (
        "monitoring.outputs.applicationInsightsName"
    ), "the component function-app.bicep sends the app's telemetry to"
    (criterion,) = bicep._array_items(rule.get("properties.criteria.allOf")) or []
    assert doc.value(bicep.get(criterion, "timeAggregation")) == "Count"
    assert doc.value(bicep.get(criterion, "operator")) == "GreaterThan"
    assert doc.value(bicep.get(criterion, "threshold")) == 0


# ---------------------------------------------------------------------- metric alerts


def _topics(doc: BicepDoc) -> list[dict[str, Any]]:
    """The objects of alerts.bicep's eventGridTopics (built with concat: both arrays' objects)."""
    node = doc.variables["eventGridTopics"]
    return [doc.value(n) for n in bicep.walk(node) if n.type == "object"]


def _criteria(doc: BicepDoc, rule: Resource) -> list[dict[str, Any]]:
    return [doc.value(n) for n in bicep._array_items(rule.get("properties.criteria.allOf")) or []]


def test_metric_alerts_watch_metrics_that_exist(docs: dict[str, BicepDoc]) -> None:
    doc = _alerts(docs)
    topic_namespaces = {t["namespace"] for t in _topics(doc)}
    watched = []
    for rule in doc.resources_of(METRIC_ALERT):
        for criterion in _criteria(doc, rule):
            namespace = criterion["metricNamespace"]
            # In a loop over the topics, the namespace is each topic's.
            namespaces = topic_namespaces if isinstance(namespace, bicep.Unresolved) else {namespace}
            assert namespaces <= set(ALLOWED_METRICS), (rule.symbol, namespaces)
            for each in namespaces:
                assert criterion["metricName"] in ALLOWED_METRICS[each], (rule.symbol, each, criterion["metricName"])
            watched.append((rule.symbol, criterion["metricName"], doc.value(rule.get("properties.windowSize"))))
            assert criterion["operator"] == "GreaterThan"
            assert criterion["threshold"] == 0
            assert criterion["timeAggregation"] == "Total"
    assert sorted(watched) == [
        ("deadLetteredAlerts", "DeadLetteredCount", "PT1H"),
        ("droppedAlerts", "DroppedEventCount", "PT1H"),
        ("http5xxAlert", "Http5xx", "PT15M"),
    ]


def test_event_grid_alerts_cover_every_topic_eventgrid_bicep_creates(docs: dict[str, BicepDoc]) -> None:
    doc = _alerts(docs)
    for symbol in ("deadLetteredAlerts", "droppedAlerts"):
        loop = _rule(doc, symbol).body.parent
        assert loop is not None
        assert loop.type == "for_statement", f"{symbol} must loop over eventGridTopics"
        assert [bicep._text(n) for n in loop.named_children[:2]] == ["topic", "eventGridTopics"]
        assert [bicep._text(n) for n in bicep._array_items(_rule(doc, symbol).get("properties.scopes")) or []] == [
            "topic.id"
        ]
    # One entry per topic: each names the existing topic whose name main.bicep passes from eventgrid.bicep.
    ids = {t["id"].text for t in _topics(doc)}
    assert ids == {"customTopic.id", "storageSystemTopic.id", "workspaceSystemTopic.id"}
    created = docs["modules/eventgrid.bicep"].resources_of("Microsoft.EventGrid/topics") + docs[
        "modules/eventgrid.bicep"
    ].resources_of("Microsoft.EventGrid/systemTopics")
    assert len(created) == len(ids)
    namespaces = {t["id"].text.removesuffix(".id"): t["namespace"] for t in _topics(doc)}
    existing = {r.symbol: r for r in doc.resources if r.existing}
    main = docs["main.bicep"]
    (module,) = [m for m in main.modules if m.symbol == "alerts"]
    for symbol, namespace in namespaces.items():
        topic = existing[symbol]
        assert topic.type == namespace, (symbol, topic.type, namespace)
        name_param = re.sub(r"^.*\?\s*'unused'\s*:\s*", "", bicep._text(topic.get("name")))
        output = bicep._text(bicep.get(module.body, f"params.{name_param}"))
        assert output.startswith("eventGrid.outputs."), (symbol, output)
        assert output.removeprefix("eventGrid.outputs.") in docs["modules/eventgrid.bicep"].outputs


def test_the_http_alert_watches_the_function_app_main_deploys(docs: dict[str, BicepDoc]) -> None:
    doc = _alerts(docs)
    rule = _rule(doc, "http5xxAlert")
    assert [bicep._text(n) for n in bicep._array_items(rule.get("properties.scopes")) or []] == ["functionApp.id"]
    (site,) = [r for r in doc.resources if r.symbol == "functionApp"]
    assert site.existing
    assert site.type == "Microsoft.Web/sites"
    (module,) = [m for m in docs["main.bicep"].modules if m.symbol == "alerts"]
    assert bicep._text(bicep.get(module.body, "params.functionAppName")) == "functionApp.outputs.name"
