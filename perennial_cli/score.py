"""``perennial score``: send one scoring request to a model's local endpoint, as a client application would.

The answer comes with the request id the endpoint recorded, which is what a delayed label names
(``perennial feedback``). Locally only: in Azure, call the endpoint's scoring URI with an Entra ID token
(``az ml online-endpoint invoke``), setting ``x-ms-client-request-id``.
"""

from __future__ import annotations

import json
import re
import sys
import uuid
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape

from perennial_cli.up import DEFAULT_STATE
from perennial_cli.upload import ModelsOption, fail, first_line, known_models

#: The request ids the scoring script records as sent (training_jobs/score.py keeps any other as a new id).
REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")


def score(
    payload: Path = typer.Argument(
        ...,
        metavar="FILE",
        help='The request body, JSON: {"data": [{column: value, ...}, ...]}; - reads it from stdin.',
    ),
    model: str = typer.Option(..., "--model", "-m", help="The model whose endpoint scores it, e.g. fraud."),
    request_id: str | None = typer.Option(
        None, "--request-id", help="The id to record the request under (default: a new one); labels name it."
    ),
    deployment: str | None = typer.Option(
        None, "--deployment", help="Score with this deployment, not as the endpoint's traffic split chooses."
    ),
    state: Path = typer.Option(DEFAULT_STATE, "--state", help="The state folder of the running `perennial up`."),
    models: ModelsOption = Path("models"),
) -> None:
    """Score rows with MODEL's endpoint of the running `perennial up`; print the answer and its request id.

    The endpoint records the request under its id, with each row's prediction. A delayed label names that id (and the row, for a request of several rows): put request_id,label[,row] in a file and send it with perennial feedback FILE --model MODEL; the live checks and the canary join the two.

    Example: echo '{"data": [{"amount": 12.5, "hour": 3}]}' | perennial score - --model fraud --request-id order-1
    """
    import httpx

    from perennial_cli.localstack import StackPaths
    from shared.platform import PlatformError
    from shared.platform.local import LocalPlatform

    out = Console(highlight=False)
    known = known_models(models)
    if model not in known:
        fail(f"no model spec named {model!r} in {models}", f"use one of: {', '.join(sorted(known)) or 'none'}", 2)
    body = _payload(payload)
    rid = request_id or f"cli-{uuid.uuid4().hex[:12]}"
    if not REQUEST_ID.fullmatch(rid):  # the endpoint would record another id, which no label could name
        fail(
            f"--request-id {rid!r} is not an id the endpoint records",
            "use 1-128 ASCII letters, digits and . _ : - (e.g. ticket-42), as score.py keeps them",
            2,
        )
    paths = StackPaths(state)
    if not paths.storage_connection.is_file():
        fail(
            f"no `perennial up` runs on {state}",
            "start it (from this folder, or pass its --state); in Azure, call the endpoint's scoring URI with "
            "az ml online-endpoint invoke",
        )
    endpoint = known[model].endpoint_name
    platform = LocalPlatform(paths.state)
    try:
        platform.get_endpoint(endpoint)
        uri, key = platform.scoring_address(endpoint)
    except PlatformError as exc:
        fail(f"{model}'s endpoint {endpoint!r} cannot score yet: {first_line(exc)}", "a first model must ship first")
    # As a client calls it: the request id header is what the endpoint records the request under.
    headers = {"Authorization": f"Bearer {key}", "x-ms-client-request-id": rid}
    if deployment:
        headers["azureml-model-deployment"] = deployment
    try:
        answer = httpx.post(uri, json=body, headers=headers, timeout=60)
    except httpx.HTTPError as exc:
        fail(f"{endpoint} did not answer at {uri}: {first_line(exc)}", "is `perennial up` still running?")
    try:
        shown = json.dumps(answer.json(), indent=2)
    except ValueError:
        shown = answer.text
    ok = answer.is_success
    colour = "green" if ok else "red"
    answered = answer.headers.get("azureml-model-deployment") or endpoint
    rid = answer.headers.get("x-request-id") or rid  # the id the endpoint recorded the request under
    out.print(
        f"[{colour}]{answer.status_code}[/{colour}] from {escape(answered)} "
        f"({answer.elapsed.total_seconds() * 1000:.0f} ms), request id [bold]{escape(rid)}[/bold]",
        soft_wrap=True,
    )
    out.print(escape(shown), soft_wrap=True)
    if ok:
        label = "<class index>" if known[model].task == "multiclass" else "<label>"
        rows = len(body.get("data") or []) if isinstance(body, dict) and isinstance(body.get("data"), list) else 1
        row = f",<row 0-{rows - 1}>" if rows > 1 else ""
        out.print(
            f"Labels for it: a file of request_id,label{',row' if row else ''} rows ({escape(rid)},{label}{row}), "
            f"then perennial feedback FILE --model {escape(model)}. Scoring URI {escape(uri)} (key {escape(key)}).",
            soft_wrap=True,
        )
    else:
        raise typer.Exit(1)


def _payload(path: Path) -> Any:
    """The request body: JSON from the file, or stdin for ``-``; exits 2 with the reason when it is not JSON."""
    try:
        # utf-8-sig: a byte-order mark (Notepad, PowerShell) is not part of the JSON.
        text = sys.stdin.read() if str(path) == "-" else path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        fail(f"{path}: cannot be read: {first_line(exc)}", 'give a UTF-8 JSON file: {"data": [{column: value}]}', 2)
    try:
        return json.loads(text)
    except ValueError as exc:
        fail(f"{path} is not JSON: {first_line(exc)}", 'write the request body: {"data": [{column: value, ...}]}', 2)
