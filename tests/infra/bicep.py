"""A small offline reader and rule checker for our Bicep (no Bicep compiler installs here).

tree-sitter-bicep parses ordinary Bicep into a syntax tree; this module turns that tree into
the few things our rules need (resources with their full type and API version, parameters
with their decorators, variables, outputs, modules) and evaluates simple literal expressions.
Each ``*_problems`` function returns human-readable problems, empty when the rule holds, so a
test can both run a rule on ``infra/`` and show it fails on a deliberately bad snippet.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tree_sitter_bicep
from tree_sitter import Language, Node, Parser

_LANGUAGE = Language(tree_sitter_bicep.language())
GUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


@dataclass(frozen=True)
class Unresolved:
    """An expression this reader does not evaluate (a function call, a resource property, ...)."""

    text: str


@dataclass
class Resource:
    symbol: str
    type: str  # the full type, e.g. Microsoft.Storage/storageAccounts/blobServices/containers
    api_version: str | None  # None for a nested child that inherits its parent's version
    existing: bool
    body: Node  # the object literal of the declaration
    condition: Node | None
    line: int
    parent: Resource | None = None

    def get(self, dotted: str) -> Node | None:
        return get(self.body, dotted)


@dataclass
class Param:
    name: str
    type: str
    default: Node | None
    decorators: list[str]  # decorator function names, e.g. ["secure", "description"]
    line: int


@dataclass
class Module:
    symbol: str
    path: str
    body: Node
    line: int
    condition: Node | None = None  # the expression of ``= if (...)``, None when always deployed


@dataclass
class BicepDoc:
    """One parsed ``.bicep`` file."""

    name: str
    source: bytes
    root: Node
    target_scope: str = "resourceGroup"
    params: dict[str, Param] = field(default_factory=dict)
    variables: dict[str, Node] = field(default_factory=dict)
    outputs: dict[str, Node] = field(default_factory=dict)
    resources: list[Resource] = field(default_factory=list)
    modules: list[Module] = field(default_factory=list)

    @classmethod
    def parse(cls, text: str | bytes, name: str = "<snippet>") -> BicepDoc:
        source = text.encode() if isinstance(text, str) else text
        tree = Parser(_LANGUAGE).parse(source)
        doc = cls(name=name, source=source, root=tree.root_node)
        doc._read()
        return doc

    @classmethod
    def load(cls, path: Path) -> BicepDoc:
        return cls.parse(path.read_bytes(), str(path))

    # ------------------------------------------------------------------ reading the tree

    def _read(self) -> None:
        pending: list[str] = []
        for node in self.root.named_children:
            if node.type == "decorators":
                pending = [_decorator_name(d) for d in node.named_children]
                continue
            if node.type == "target_scope_assignment":
                value = self.value(node.named_children[-1])
                self.target_scope = value if isinstance(value, str) else "resourceGroup"
            elif node.type == "parameter_declaration":
                name, type_node, *rest = node.named_children
                self.params[_text(name)] = Param(
                    _text(name), _text(type_node), rest[0] if rest else None, pending, _line(node)
                )
            elif node.type == "variable_declaration":
                self.variables[_text(node.named_children[0])] = node.named_children[-1]
            elif node.type == "output_declaration":
                self.outputs[_text(node.named_children[0])] = node.named_children[-1]
            elif node.type == "resource_declaration":
                self._read_resource(node, None)
            elif node.type == "module_declaration":
                symbol, path, value = node.named_children[0], node.named_children[1], node.named_children[-1]
                body, condition = _declaration_body(value)
                self.modules.append(Module(_text(symbol), str(self.value(path)), body, _line(node), condition))
            pending = []

    def _read_resource(self, node: Node, parent: Resource | None) -> None:
        symbol, type_string = node.named_children[0], node.named_children[1]
        declared = _string_text(type_string)
        type_name, _, version = declared.partition("@")
        if parent is not None and "/" not in type_name:
            type_name = f"{parent.type}/{type_name}"
        existing = any(child.type == "existing" for child in node.children)
        body, condition = _declaration_body(node.named_children[-1])
        resource = Resource(
            symbol=_text(symbol),
            type=type_name,
            api_version=version or None,
            existing=existing,
            body=body,
            condition=condition,
            line=_line(node),
            parent=parent,
        )
        self.resources.append(resource)
        for prop in body.named_children:
            for child in prop.named_children:
                if child.type == "resource_declaration":
                    self._read_resource(child, resource)

    # ------------------------------------------------------------------ evaluating

    def value(self, node: Node | None, depth: int = 0) -> Any:
        """A Python value for literal expressions and variables; :class:`Unresolved` otherwise."""
        if node is None:
            return None
        if depth > 20:
            return Unresolved(_text(node))
        kind = node.type
        if kind == "string":
            if any(child.type == "interpolation" for child in node.named_children):
                return Unresolved(_text(node))
            return _string_text(node)
        if kind == "number":
            return int(_text(node))
        if kind == "boolean":
            return _text(node) == "true"
        if kind == "null":
            return None
        if kind == "array":
            return [self.value(child, depth + 1) for child in node.named_children if child.type != "comment"]
        if kind == "object":
            return {
                _key(prop): self.value(prop.named_children[-1], depth + 1)
                for prop in node.named_children
                if prop.type == "object_property"
            }
        if kind == "identifier" and _text(node) in self.variables:
            return self.value(self.variables[_text(node)], depth + 1)
        if kind == "member_expression":
            target = self.value(node.child_by_field_name("object"), depth + 1)
            prop = node.child_by_field_name("property")
            if isinstance(target, dict) and prop is not None and _text(prop) in target:
                return target[_text(prop)]
        if kind == "parenthesized_expression":
            return self.value(node.named_children[0], depth + 1)
        return Unresolved(_text(node))

    def template(self, node: Node | None) -> str:
        """A string literal with the variables it interpolates filled in (others kept as ``${...}``)."""
        if node is None:
            return ""
        if node.type != "string":
            value = self.value(node)
            return value if isinstance(value, str) else _text(node)
        parts: list[str] = []
        for child in node.named_children:
            if child.type == "interpolation":
                inner = self.value(child.named_children[0]) if child.named_children else None
                parts.append(inner if isinstance(inner, str) else _text(child))
            elif child.type in ("string_content", "escape_sequence"):
                parts.append(_unescape(_text(child)))
        return "".join(parts)

    def param_default(self, name: str) -> Any:
        param = self.params[name]
        return self.value(param.default) if param.default is not None else None

    def resources_of(self, type_name: str, *, include_existing: bool = False) -> list[Resource]:
        return [
            r for r in self.resources if r.type.lower() == type_name.lower() and (include_existing or not r.existing)
        ]

    def where(self, node: Node) -> str:
        return f"{self.name}:{_line(node)}"


# ---------------------------------------------------------------------- tree helpers


def _text(node: Node | None) -> str:
    return (node.text or b"").decode() if node is not None else ""


def _line(node: Node) -> int:
    return node.start_point[0] + 1


def _unescape(text: str) -> str:
    return text.replace("\\'", "'").replace("\\\\", "\\").replace("\\n", "\n").replace("\\$", "$")


def _string_text(node: Node) -> str:
    return "".join(_unescape(_text(c)) for c in node.named_children if c.type in ("string_content", "escape_sequence"))


def _key(prop: Node) -> str:
    key = prop.named_children[0]
    return _string_text(key) if key.type == "string" else _text(key)


def _decorator_name(decorator: Node) -> str:
    call = decorator.named_children[0]
    function = call.child_by_field_name("function") if call.type == "call_expression" else call
    name = _text(function) if function is not None else _text(call)
    return name.rsplit(".", 1)[-1]  # @sys.description -> description


def _declaration_body(value: Node) -> tuple[Node, Node | None]:
    """The object literal of a resource/module declaration, unwrapping ``if (...)`` and ``[for ...]``."""
    condition: Node | None = None
    node = value
    while node.type != "object":
        if node.type == "if_statement":
            condition = node.named_children[0]
        candidates = [c for c in node.named_children if c.type in ("object", "if_statement", "for_statement")]
        if not candidates:
            raise ValueError(f"cannot find the body of: {_text(value)[:80]}")
        node = candidates[-1]
    return node, condition


def get(obj: Node | None, dotted: str) -> Node | None:
    """The value node at ``a.b.c`` inside an object literal, or None."""
    node = obj
    for part in dotted.split("."):
        if node is None or node.type != "object":
            return None
        node = next(
            (p.named_children[-1] for p in node.named_children if p.type == "object_property" and _key(p) == part),
            None,
        )
    return node


def keys(obj: Node | None) -> list[str]:
    if obj is None or obj.type != "object":
        return []
    return [_key(p) for p in obj.named_children if p.type == "object_property"]


def walk(node: Node) -> Iterator[Node]:
    yield node
    for child in node.children:
        yield from walk(child)


def syntax_errors(source: bytes, name: str = "<snippet>") -> list[str]:
    """Where tree-sitter-bicep found ERROR or MISSING nodes: code outside the subset it parses."""
    root = Parser(_LANGUAGE).parse(source).root_node
    return [
        f"{name}:{_line(n)}:{n.start_point[1] + 1}: cannot parse {_text(n)[:60]!r}"
        for n in walk(root)
        if n.type == "ERROR" or n.is_missing
    ]


# ---------------------------------------------------------------------- rules


def api_version_problems(doc: BicepDoc, allowed: dict[str, set[str]]) -> list[str]:
    """Every declared ``Type@apiVersion`` is in the pinned allow-list; nested children inherit theirs."""
    lowered = {t.lower(): versions for t, versions in allowed.items()}
    problems = []
    for r in doc.resources:
        if r.api_version is None:
            if r.parent is None:
                problems.append(f"{doc.name}:{r.line}: {r.symbol} declares {r.type!r} without an API version")
            continue
        versions = lowered.get(r.type.lower())
        if versions is None:
            problems.append(
                f"{doc.name}:{r.line}: {r.type} is not in the pinned allow-list (add it with a version that exists)"
            )
        elif r.api_version not in versions:
            problems.append(
                f"{doc.name}:{r.line}: {r.type}@{r.api_version} is not a pinned version ({sorted(versions)})"
            )
    return problems


ROLE_ASSIGNMENT = "Microsoft.Authorization/roleAssignments"


def _normalise(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


def _role_guid(doc: BicepDoc, node: Node | None) -> tuple[str | None, str]:
    """The GUID a ``roleDefinitionId`` names, and the expression that names it."""
    if node is None:
        return None, ""
    if node.type == "call_expression":
        function = node.child_by_field_name("function")
        args = [a for a in (node.child_by_field_name("arguments") or node).named_children]
        names_a_role = (
            _text(function) in ("subscriptionResourceId", "tenantResourceId", "resourceId")
            and len(args) == 2
            and doc.value(args[0]) == "Microsoft.Authorization/roleDefinitions"
        )
        if names_a_role:
            value = doc.value(args[1])
            return (value if isinstance(value, str) else None), _text(args[1])
        return None, _text(node)
    value = doc.value(node)
    if isinstance(value, str):
        match = GUID.search(value)
        return (match.group(0) if match else None), _text(node)
    return None, _text(node)


def role_assignment_problems(doc: BicepDoc, pinned: dict[str, str], forbidden: dict[str, str]) -> list[str]:
    """Role assignments are scoped to one declared resource, named guid(scope, principal, role),
    carry principalType, and grant only pinned built-in roles (never the forbidden ones)."""
    problems = []
    declared = {r.symbol for r in doc.resources} | {m.symbol for m in doc.modules}
    for r in doc.resources_of(ROLE_ASSIGNMENT):
        where = f"{doc.name}:{r.line}: {r.symbol}"
        scope = r.get("scope")
        if scope is None:
            problems.append(
                f"{where}: has no scope, so it applies to the whole {doc.target_scope}; scope it to one resource"
            )
        else:
            root = scope
            while root.type in ("resource_expression", "member_expression"):
                root = root.named_children[0]
            if root.type != "identifier" or _text(root) not in declared:
                problems.append(
                    f"{where}: scope {_text(scope)!r} is not a resource declared in this file; scope it to one resource"
                )
        role, role_expr = _role_guid(doc, r.get("properties.roleDefinitionId"))
        if role is None:
            problems.append(
                f"{where}: roleDefinitionId must be subscriptionResourceId('Microsoft.Authorization/roleDefinitions', <a pinned role id>)"
            )
        elif role.lower() in forbidden:
            problems.append(
                f"{where}: grants {forbidden[role.lower()]}, which is never allowed; use a narrow built-in role"
            )
        elif role.lower() not in pinned:
            problems.append(f"{where}: role {role} is not one of the pinned built-in roles")
        principal = r.get("properties.principalId")
        if r.get("properties.principalType") is None:
            problems.append(f"{where}: principalType is missing (set 'ServicePrincipal' for managed identities)")
        name = r.get("name")
        expected = f"guid({_text(scope) if scope is not None else '<scope>'}.id, {_text(principal) if principal is not None else '<principal>'}, {role_expr})"
        if name is None or re.sub(r"\s+", "", _text(name)) != re.sub(r"\s+", "", expected):
            problems.append(f"{where}: name must be {expected}, not {_text(name) if name is not None else 'missing'}")
    return problems


def role_table_problems(doc: BicepDoc, pinned: dict[str, str], forbidden: dict[str, str]) -> list[str]:
    """Every GUID in the file is a pinned role id, held under a key that spells its built-in name."""
    problems = []
    for node in walk(doc.root):
        if node.type != "string" or any(c.type == "interpolation" for c in node.named_children):
            continue
        for guid in GUID.findall(_string_text(node)):
            where = doc.where(node)
            if guid.lower() in forbidden:
                problems.append(f"{where}: {guid} is {forbidden[guid.lower()]}, which is never allowed")
                continue
            if guid.lower() not in pinned:
                problems.append(f"{where}: {guid} is not a pinned built-in role id")
                continue
            prop = node.parent
            if prop is None or prop.type != "object_property":
                problems.append(f"{where}: role id {guid} must sit in the roles table under its name")
            elif _normalise(_key(prop)) != _normalise(pinned[guid.lower()]):
                problems.append(f"{where}: {guid} is {pinned[guid.lower()]!r} but is named {_key(prop)!r}")
    return problems


def storage_hardening_problems(doc: BicepDoc) -> list[str]:
    """Storage accounts: no shared keys, no public blobs, TLS 1.2, HTTPS only; private containers."""
    required = {
        "properties.allowSharedKeyAccess": False,
        "properties.allowBlobPublicAccess": False,
        "properties.minimumTlsVersion": "TLS1_2",
        "properties.supportsHttpsTrafficOnly": True,
    }
    problems = []
    for r in doc.resources_of("Microsoft.Storage/storageAccounts"):
        for path, wanted in required.items():
            actual = doc.value(r.get(path)) if r.get(path) is not None else "<missing>"
            if actual != wanted:
                problems.append(f"{doc.name}:{r.line}: {r.symbol}.{path} is {actual!r}; set it to {wanted!r}")
    for r in doc.resources_of("Microsoft.Storage/storageAccounts/blobServices/containers"):
        access = r.get("properties.publicAccess")
        if access is not None and doc.value(access) != "None":
            problems.append(f"{doc.name}:{r.line}: container {r.symbol} allows public access; set publicAccess: 'None'")
    return problems


_SECRET_NAME = re.compile(r"(password|secret|token|connectionstring|sas|key)s?$|password|secret", re.IGNORECASE)


def secure_param_problems(doc: BicepDoc) -> list[str]:
    """Parameters that look like secrets are @secure(); no output looks like one."""
    problems = []
    for param in doc.params.values():
        if _SECRET_NAME.search(param.name) and "secure" not in param.decorators:
            problems.append(f"{doc.name}:{param.line}: param {param.name} looks like a secret; mark it @secure()")
    for name, node in doc.outputs.items():
        if _SECRET_NAME.search(name):
            problems.append(
                f"{doc.name}:{_line(node)}: output {name} looks like a secret; outputs are stored in plain text"
            )
    return problems


# Things that only appear when a key, password or SAS is being handled.
_SECRET_PATTERNS = {
    "a list*() call that returns keys or secrets": re.compile(
        r"\blist(Keys|Secrets|Credentials?|AccountSas|ServiceSas|ConnectionStrings)\s*\(", re.I
    ),
    "a storage account key": re.compile(r"AccountKey\s*=", re.I),
    "a connection string with a key": re.compile(r"DefaultEndpointsProtocol\s*=|SharedAccessKey\s*=", re.I),
    "a SAS token": re.compile(r"[?&]sig=[A-Za-z0-9%+/=]{16,}|SharedAccessSignature\s*=", re.I),
    "a private key": re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
    "an Application Insights instrumentation key": re.compile(r"InstrumentationKey\s*=\s*[0-9a-f]{8}-", re.I),
    "a password literal": re.compile(
        r"(password|secret)\w*['\"]?\s*[:=]\s*['\"](?![0-9a-f]{8}-)[^'\"$]{4,}['\"]", re.I
    ),
    "a function or host key": re.compile(
        r"\bcode=[A-Za-z0-9_\-]{20,}|x-functions-key|functionapp keys|systemKeys", re.I
    ),
}


def secret_problems(name: str, text: str) -> list[str]:
    """Lines that hold, fetch or pass a secret (we use managed identities for everything)."""
    problems = []
    for number, line in enumerate(text.splitlines(), start=1):
        for what, pattern in _SECRET_PATTERNS.items():
            if pattern.search(line):
                problems.append(f"{name}:{number}: {what}: {line.strip()[:100]}")
    return problems


def compute_problems(doc: BicepDoc) -> list[str]:
    """AmlCompute clusters scale to zero: minNodeCount 0, a max and an idle scale-down time."""
    problems = []
    for r in doc.resources_of("Microsoft.MachineLearningServices/workspaces/computes"):
        if doc.value(r.get("properties.computeType")) != "AmlCompute":
            continue
        scale = r.get("properties.properties.scaleSettings")
        minimum = doc.value(get(scale, "minNodeCount")) if get(scale, "minNodeCount") is not None else "<missing>"
        if minimum != 0:
            problems.append(
                f"{doc.name}:{r.line}: {r.symbol} minNodeCount is {minimum!r}; it must be 0 so the idle cluster costs nothing"
            )
        for needed in ("maxNodeCount", "nodeIdleTimeBeforeScaleDown"):
            if get(scale, needed) is None:
                problems.append(f"{doc.name}:{r.line}: {r.symbol} scaleSettings.{needed} is missing")
    return problems


EVENT_SUBSCRIPTION_TYPES = (
    "Microsoft.EventGrid/systemTopics/eventSubscriptions",
    "Microsoft.EventGrid/topics/eventSubscriptions",
    "Microsoft.EventGrid/eventSubscriptions",
)


def event_subscriptions(doc: BicepDoc) -> list[Resource]:
    return [r for t in EVENT_SUBSCRIPTION_TYPES for r in doc.resources_of(t)]


def subscription_delivery_problems(doc: BicepDoc) -> list[str]:
    """Every Event Grid subscription retries and dead-letters (with an identity, since keys are off)."""
    problems = []
    for r in event_subscriptions(doc):
        where = f"{doc.name}:{r.line}: {r.symbol}"
        retry = doc.value(r.get("properties.retryPolicy"))
        if not isinstance(retry, dict) or "maxDeliveryAttempts" not in retry or "eventTimeToLiveInMinutes" not in retry:
            problems.append(f"{where}: needs retryPolicy {{maxDeliveryAttempts, eventTimeToLiveInMinutes}}")
        dead = doc.value(r.get("properties.deadLetterWithResourceIdentity"))
        destination = dead.get("deadLetterDestination") if isinstance(dead, dict) else None
        if not isinstance(destination, dict) or destination.get("endpointType") != "StorageBlob":
            problems.append(
                f"{where}: needs deadLetterWithResourceIdentity to a StorageBlob container (the account has no keys)"
            )
    return problems


def function_destinations(doc: BicepDoc) -> dict[str, str]:
    """Subscription symbol -> the function name its AzureFunction destination points at."""
    found: dict[str, str] = {}
    for r in event_subscriptions(doc):
        if doc.value(r.get("properties.destination.endpointType")) != "AzureFunction":
            continue
        target = r.get("properties.destination.properties.resourceId")
        text = doc.template(target) if target is not None else ""
        found[r.symbol] = text.rsplit("/functions/", 1)[-1] if "/functions/" in text else ""
    return found


MANAGEMENT_POLICY = "Microsoft.Storage/storageAccounts/managementPolicies"


def _array_items(node: Node | None) -> list[Node] | None:
    """The element nodes of an array literal (comments left out); None when ``node`` is not one."""
    if node is None or node.type != "array":
        return None
    return [child for child in node.named_children if child.type != "comment"]


def lifecycle_problems(doc: BicepDoc, container: str, days: str) -> list[str]:
    """The account's one lifecycle policy (named 'default', the only name Azure takes) deletes block blobs in
    ``container`` only, ``days`` (a parameter's name) days after they were last modified. Every rule, enabled or
    not, is kept to ``<container>/``: a rule without a prefix, or with one that another container's names could
    start with (``manifests/``, ``verdicts`` without its slash), could delete what must be kept."""
    policies = doc.resources_of(MANAGEMENT_POLICY)
    if len(policies) != 1:
        return [f"{doc.name}: needs exactly one {MANAGEMENT_POLICY} resource, not {len(policies)}"]
    (policy,) = policies
    where = f"{doc.name}:{policy.line}: {policy.symbol}"
    problems = []
    if doc.value(policy.get("name")) != "default":
        problems.append(f"{where}: name must be 'default' (Azure takes no other), not {_text(policy.get('name'))!r}")
    rules = _array_items(policy.get("properties.policy.rules"))
    if not rules:
        return [*problems, f"{where}: properties.policy.rules holds no rule"]
    expiring = 0
    for index, rule in enumerate(rules):
        here = (
            f"{where}: rule {doc.value(get(rule, 'name'))!r}"
            if get(rule, "name") is not None
            else f"{where}: rule {index}"
        )
        if doc.value(get(rule, "type")) != "Lifecycle":
            problems.append(f"{here}: type must be 'Lifecycle'")
        blob_types = doc.value(get(rule, "definition.filters.blobTypes"))
        if blob_types != ["blockBlob"]:
            problems.append(f"{here}: filters.blobTypes must be ['blockBlob'], not {blob_types!r}")
        prefixes = _array_items(get(rule, "definition.filters.prefixMatch"))
        if not prefixes:
            problems.append(f"{here}: no filters.prefixMatch, so it reaches every container (manifests/ too)")
        for prefix in prefixes or []:
            text = doc.template(prefix)
            if not text.startswith(f"{container}/"):
                problems.append(
                    f"{here}: prefixMatch {text!r} reaches beyond the {container!r} container; start it with '{container}/'"
                )
        actions = get(rule, "definition.actions")
        delete = get(actions, "baseBlob.delete")
        if keys(actions) != ["baseBlob"] or keys(get(actions, "baseBlob")) != ["delete"]:
            problems.append(
                f"{here}: its only action must be baseBlob.delete, not {keys(actions)} / {keys(get(actions, 'baseBlob'))}"
            )
        elif (
            keys(delete) != ["daysAfterModificationGreaterThan"]
            or _text(get(delete, "daysAfterModificationGreaterThan")) != days
        ):
            problems.append(
                f"{here}: baseBlob.delete must be {{daysAfterModificationGreaterThan: {days}}}, not {_text(delete)!r}"
            )
        elif doc.value(get(rule, "enabled")) is True:
            expiring += 1
    if expiring == 0:
        problems.append(f"{where}: no enabled rule deletes the {container!r} container's blobs after {days} days")
    return problems
