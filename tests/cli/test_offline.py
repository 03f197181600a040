"""The CLI without a Perennial host: nothing listening, a canned server for shapes devhost cannot produce, --help."""

from __future__ import annotations

import json
import socket
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from perennial_cli.azurite import port_is_free
from perennial_cli.client import local_key
from perennial_cli.main import app
from tests.azurite import free_port

ROOT = Path(__file__).resolve().parents[2]
COMMANDS = ["models", "retrain", "runs", "run", "approve", "reject", "abort", "rollback", "rollout"]

# path -> (status, content type, body) as an Azure Functions host might answer
CANNED: dict[str, tuple[int, str, bytes]] = {
    "/api/models/fraud/rollback": (
        202,
        "application/json",
        json.dumps({"run_id": "fraud-rollback-1", "from_version": "3", "to_version": "2"}).encode(),
    ),
    "/api/models/lending/rollback": (
        409,
        "application/problem+json",
        json.dumps(
            {
                "type": "about:blank",
                "title": "Nothing to roll back to",
                "status": 409,
                "detail": "model lending has no previous champion",
                "field": "model",
                "champion": "1",
            }
        ).encode(),
    ),
    "/api/models/fraud/versions/4/rollout": (
        202,
        "application/json",
        json.dumps({"run_id": "fraud-rollout-4", "version": "4"}).encode(),
    ),
    "/api/models": (401, "text/plain", b""),  # Azure sends an empty 401
    "/api/models/lending/runs": (
        503,
        "application/problem+json",
        json.dumps(
            {"title": "Storage unavailable", "status": 503, "detail": "down", "hint": "retry later; start Azurite"}
        ).encode(),
    ),
    "/api/models/fraud/runs": (502, "text/html", b"<html><body>Bad Gateway</body></html>"),
    "/api/models/lending/retrain": (
        409,
        "application/problem+json",
        json.dumps(
            {
                "title": "A run is in progress",
                "status": 409,
                "detail": "run lending-00000000000000aa is rolling_back; wait for it to end "
                "(GET /api/runs/lending-00000000000000aa)",
                "run_id": "lending-00000000000000aa",
                "trigger": "rollback",
                "abortable": False,
            }
        ).encode(),
    ),
    "/api/models/credit-scoring/runs": (
        200,
        "application/json",
        json.dumps(
            {
                "runs": [
                    {
                        "run_id": f"credit-scoring-{n:016x}",
                        "model": "credit-scoring",
                        "status": "running",
                        "stage": "awaiting_approval",
                        "trigger": {"kind": "blob_created", "reason": "new data", "event_id": "e"},
                        "created_at": "2026-11-30T16:05:00+00:00",
                        "updated_at": "2026-11-30T16:05:00+00:00",
                        "registered_version": "12",
                    }
                    for n in (0x6BF663297EDE0E45, 0x7D5B432B9FBFFB01)
                ],
                "next": None,
            }
        ).encode(),
    ),
}


CANNED["/api/runs/credit-scoring-6bf663297ede0e45"] = (
    200,
    "application/json",
    json.dumps(
        {
            **json.loads(CANNED["/api/models/credit-scoring/runs"][2])["runs"][0],
            "approval": {"version": "12", "until": "2026-12-01T16:05:00+00:00"},
            "evaluation": {
                "candidate": "c1",
                "primary_metric": "f1",
                "n_holdout": 900,
                "challenger": {"f1": 0.81},
                "champion": {"f1": 0.78},
                "per_class": {
                    "challenger": {
                        "billing": {"precision": 0.9, "recall": 0.95, "f1": 0.92, "support": 500},
                        "sales": {"precision": 0.8, "recall": 0.85, "f1": 0.82, "support": 355},
                        "urgent": {"precision": 0.5, "recall": 0.2, "f1": 0.29, "support": 45},
                    },
                    "champion": {
                        "billing": {"precision": 0.88, "recall": 0.9, "f1": 0.89, "support": 500},
                        "sales": {"precision": 0.79, "recall": 0.8, "f1": 0.79, "support": 355},
                        "urgent": {"precision": 0.6, "recall": 0.71, "f1": 0.65, "support": 45},
                    },
                },
            },
        }
    ).encode(),
)

RECEIVED: dict[str, bytes] = {}  # path -> the last request body


class _Canned(BaseHTTPRequestHandler):
    def _answer(self) -> None:
        status, content_type, body = CANNED.get(self.path.split("?")[0], (404, "text/plain", b""))
        RECEIVED[self.path] = self.rfile.read(int(self.headers.get("content-length") or 0))
        self.send_response(status)
        self.send_header("content-type", content_type)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _answer

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def canned() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Canned)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def perennial(*args: str) -> Result:
    return CliRunner().invoke(app, list(args), env={"COLUMNS": "200", "PERENNIAL_FUNCTION_KEY": "k"})


def test_no_host_says_how_to_start_one() -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    result = perennial("runs", "fraud", "--host", url)
    assert result.exit_code == 1
    assert f"no Perennial host is running at {url}" in result.output
    assert "perennial up" in result.output
    assert "make demo" in result.output


def test_the_console_script_exits_1_with_the_hint() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    done = subprocess.run(
        [str(ROOT / ".venv" / "bin" / "perennial"), "models"],
        env={"PATH": "/usr/bin:/bin", "PERENNIAL_HOST_URL": url},
        capture_output=True, text=True, timeout=60, cwd=ROOT,
    )  # fmt: skip
    assert done.returncode == 1, done.stderr
    assert f"no Perennial host is running at {url}" in done.stderr
    assert "perennial up" in done.stderr


def test_rollback_prints_whatever_the_host_accepted(canned: str) -> None:
    result = perennial("rollback", "fraud", "--reason", "bad week", "--host", canned)
    assert result.exit_code == 0, result.output
    assert "rollback of fraud accepted" in result.output
    assert "run_id: fraud-rollback-1" in result.output
    assert "to_version: 2" in result.output
    assert "perennial run fraud-rollback-1" in result.output


def test_rollback_without_a_previous_version_prints_the_problem(canned: str) -> None:
    result = perennial("rollback", "lending", "--host", canned)
    assert result.exit_code == 1
    for text in ("409 Nothing to roll back to", "no previous champion", "field: model", "champion: 1"):
        assert text in result.output


def test_rollout_prints_the_accepted_run(canned: str) -> None:
    result = perennial("rollout", "fraud", "4", "--reason", "quota raised", "--host", canned)
    assert result.exit_code == 0, result.output
    assert "rollout of fraud version 4 accepted" in result.output
    assert "perennial run fraud-rollout-4" in result.output
    sent = json.loads(RECEIVED["/api/models/fraud/versions/4/rollout"])
    assert sent["reason"] == "quota raised"
    assert sent["requested_by"]  # the OS user by default, as retrain/approve/reject record it


def test_rollback_records_who_asked(canned: str) -> None:
    result = perennial("rollback", "fraud", "--requested-by", "oncall-ana", "--host", canned)
    assert result.exit_code == 0, result.output
    assert json.loads(RECEIVED["/api/models/fraud/rollback"]) == {"requested_by": "oncall-ana"}
    result = perennial("rollback", "fraud", "--immediate", "--requested-by", "oncall-ana", "--host", canned)
    assert result.exit_code == 0, result.output
    assert json.loads(RECEIVED["/api/models/fraud/rollback"]) == {"requested_by": "oncall-ana", "immediate": True}


def test_an_empty_401_still_gets_the_key_hint(canned: str) -> None:
    result = perennial("models", "--host", canned)
    assert result.exit_code == 1
    assert "401" in result.output
    assert "PERENNIAL_FUNCTION_KEY" in result.output


def test_a_non_json_error_is_shown_not_raised(canned: str) -> None:
    result = perennial("runs", "fraud", "--host", f"{canned}/api/")
    assert result.exit_code == 1
    assert "502" in result.output
    assert "Bad Gateway" in result.output
    assert "Traceback" not in result.output


def test_a_server_that_is_not_a_perennial_host_says_so(canned: str) -> None:
    result = perennial("run", "fraud-1", "--host", canned)  # the canned server answers a bare 404 here
    assert result.exit_code == 1
    assert f"{canned} does not serve Perennial's API" in result.output
    assert "PERENNIAL_HOST_URL" in result.output


def test_a_problems_hint_is_printed_once_as_the_fix(canned: str) -> None:
    result = perennial("runs", "lending", "--host", canned)
    assert result.exit_code == 1
    assert result.output.count("retry later; start Azurite") == 1
    assert "fix: retry later; start Azurite" in result.output


def test_a_retrain_blocked_by_a_rollback_says_so_and_does_not_suggest_an_abort(canned: str) -> None:
    result = perennial("retrain", "lending", "--host", canned)
    assert result.exit_code == 1
    assert "a run of lending is already in progress: run lending-00000000000000aa" in result.output
    assert "wait for it to end" in result.output, "the host's advice for this kind of run"
    assert "perennial abort" not in result.output, "a rollback cannot be aborted"
    assert "follow it: perennial run lending-00000000000000aa" in result.output


@pytest.mark.parametrize("columns", ["80", "60"])
def test_run_ids_are_whole_in_a_narrow_terminal_or_a_pipe(canned: str, columns: str) -> None:
    """The run id is what a user copies into `run`, `approve` or `abort`; rich reads a pipe as 80 columns."""
    result = CliRunner().invoke(
        app, ["runs", "credit-scoring", "--host", canned], env={"COLUMNS": columns, "PERENNIAL_FUNCTION_KEY": "k"}
    )
    assert result.exit_code == 0, result.output
    for run_id in ("credit-scoring-6bf663297ede0e45", "credit-scoring-7d5b432b9fbffb01"):
        assert run_id in result.output
    assert max(len(line) for line in result.output.splitlines()) <= int(columns)


@pytest.mark.parametrize("command", ["up", "host", "demo"])
def test_a_port_out_of_range_is_a_usage_error(command: str) -> None:
    result = perennial(command, "--port", "99999")
    assert result.exit_code == 2
    assert "less than or equal to 65535" in " ".join(result.output.split())
    assert "Traceback" not in result.output


def test_a_port_left_in_time_wait_by_the_last_run_is_free() -> None:
    """Ctrl-C, then `perennial up` again at once: the server's side of a closed connection sits in TIME_WAIT."""
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", 0))
    server.listen()
    port = server.getsockname()[1]
    client = socket.create_connection(("127.0.0.1", port))
    accepted, _ = server.accept()
    accepted.close()  # the server closes first: its end goes to TIME_WAIT
    client.close()
    server.close()
    assert port_is_free(port)


def test_a_bad_host_url_is_a_clear_error() -> None:
    result = perennial("models", "--host", "127.0.0.1:7071")
    assert result.exit_code == 1
    assert "is not an http(s) URL" in result.output


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_useful_help(command: str) -> None:
    result = perennial(command, "--help")
    assert result.exit_code == 0, result.output
    assert "Example: perennial " in result.output
    assert "--host" in result.output
    assert "PERENNIAL_HOST_URL" in result.output
    assert "--key" in result.output
    assert "PERENNIAL_FUNCTION_KEY" in result.output
    assert "<bool>" not in result.output, "a flag must not read as if it took a value"


def test_a_local_host_key_is_found_only_for_loopback_urls(tmp_path: Path) -> None:
    key_file = tmp_path / "function_key"
    key_file.write_text("local-key\n")
    assert local_key("http://127.0.0.1:7071", key_file) == "local-key"
    assert local_key("http://localhost:7071", key_file) == "local-key"
    assert local_key("https://perennial-abc.azurewebsites.net", key_file) is None
    assert local_key("http://127.0.0.1:7071", tmp_path / "missing") is None


@pytest.mark.parametrize("url", ["http://[bad", "http://127.0.0.1:notaport"])
def test_a_malformed_host_url_is_a_message_not_a_traceback(url: str) -> None:
    result = perennial("models", "--host", url)
    assert result.exit_code == 1
    assert "is not a valid URL" in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception


def test_the_demo_never_wipes_a_folder_it_did_not_make(tmp_path: Path) -> None:
    state = tmp_path / ".perennial"  # e.g. `perennial host`'s state lives here
    (state / "devhost").mkdir(parents=True)
    key = state / "devhost" / "host.key"
    key.write_text("secret")
    result = perennial("demo", "--state", str(state))
    assert result.exit_code == 2, result.output
    assert "was not made by `perennial demo`" in result.output
    assert key.read_text() == "secret"


def test_a_bad_demo_spec_is_refused_before_the_previous_demo_s_state_is_touched(tmp_path: Path) -> None:
    state = tmp_path / "demo"
    state.mkdir()
    (state / ".perennial-demo").write_text("made by `perennial demo`")
    kept = state / "logs" / "host.log"
    kept.parent.mkdir()
    kept.write_text("yesterday's run")
    missing = perennial("demo", "--state", str(state), "--spec", str(tmp_path / "nope.yaml"))
    assert missing.exit_code == 2, missing.output
    assert "nope.yaml: no such file" in missing.output
    other = tmp_path / "other.yaml"
    other.write_text(Path("models/fraud.yaml").read_text().replace("name: fraud", "name: other", 1))
    renamed = perennial("demo", "--state", str(state), "--spec", str(other))
    assert renamed.exit_code == 2, renamed.output
    assert f"{other}: the demo plays the model 'fraud'; set name: fraud" in renamed.output.replace("\n", "")
    assert kept.read_text() == "yesterday's run"


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["run", ""], "give a run id"),
        (["abort", " "], "give a run id"),
        (["approve", ""], "give a run id"),
        (["runs", ""], "give the model's name"),
        (["runs", "fraud", "--after", ""], "give a run id"),
        (["retrain", ""], "give the model's name"),
    ],
)
def test_a_blank_model_or_run_id_is_a_usage_error_not_a_request(args: list[str], says: str) -> None:
    # Sent, it would reach no route: the host could only answer a bare "not found".
    result = perennial(*args, "--host", "http://127.0.0.1:9")
    assert result.exit_code == 2
    assert "is empty" in result.output
    assert says in " ".join(result.output.split())
    assert "Traceback" not in result.output


def test_a_run_waiting_for_approval_says_until_when_and_how_to_answer(canned: str) -> None:
    result = perennial("run", "credit-scoring-6bf663297ede0e45", "--host", canned, "--key", "k")
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert (
        "for a person's approval of version 12 until 2026-12-01 16:05:00 UTC (then it ends approval_timed_out)" in text
    )
    assert "perennial approve credit-scoring-6bf663297ede0e45" in text
    assert "perennial reject credit-scoring-6bf663297ede0e45 --comment WHY" in text


def test_a_multiclass_run_shows_each_class_against_the_champion(canned: str) -> None:
    """A macro average can hide a class that stopped being found: the run shows each class's recall."""
    result = perennial("run", "credit-scoring-6bf663297ede0e45", "--host", canned, "--key", "k")
    assert result.exit_code == 0, result.output
    assert "Per class (holdout, one-vs-rest)" in result.output
    [urgent] = [line for line in result.output.splitlines() if "urgent" in line]
    assert "45" in urgent
    assert "0.2000 (was 0.7100)" in urgent
