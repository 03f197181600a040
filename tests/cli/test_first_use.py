"""What a first use of the CLI meets: a quick start, --version, plain refusals of unusable input, messages
that say what happens next, and a host that will not serve without storage."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner, Result

from perennial_cli import host as host_module
from perennial_cli.azurite import free_port, refusing, storage_endpoints
from perennial_cli.main import app
from perennial_cli.upload import when_the_run_starts
from shared import __version__
from shared.spec import load_spec

ROOT = Path(__file__).resolve().parents[2]
SPEC = str(ROOT / "models" / "fraud.yaml")
#: What no command may load just to start or print its help (seconds together, on 2 cores).
HEAVY = (
    "scipy", "pandas", "pyarrow", "numpy", "torch", "sklearn", "devhost.host", "shared.validation", "shared.live",
    "azure.storage.blob", "azure.data.tables", "aiohttp",
)  # fmt: skip
COMMANDS = (
    "up",
    "host",
    "validate",
    "upload",
    "feedback",
    "score",
    "demo",
    "spec",
    "models",
    "retrain",
    "runs",
    "run",
    "approve",
)


def perennial(*args: str, env: dict[str, str | None] | None = None) -> Result:
    return CliRunner().invoke(app, list(args), env={"COLUMNS": "200", **(env or {})})


def _loaded_after(code: str) -> list[str]:
    script = f"import sys\n{code}\nprint(sorted(m for m in {HEAVY!r} if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stderr
    return list(json.loads(done.stdout.strip().splitlines()[-1].replace("'", '"')))


# ---------------------------------------------------------------- start-up


def test_importing_the_cli_loads_no_heavy_library() -> None:
    assert _loaded_after("import perennial_cli.main") == []


def test_every_command_s_help_loads_no_heavy_library() -> None:
    code = (
        "import contextlib\n"
        "from perennial_cli.main import app\n"
        f"for command in {COMMANDS!r}:\n"
        "    with contextlib.suppress(SystemExit), contextlib.redirect_stdout(None):\n"
        "        app([command, '--help'])\n"
    )
    assert _loaded_after(code) == []


# ---------------------------------------------------------------- --version


@pytest.mark.parametrize("flag", ["--version", "-V"])
def test_version_prints_the_package_version(flag: str) -> None:
    result = perennial(flag)
    assert result.exit_code == 0, result.output
    assert result.output == f"perennial {__version__}\n"


def test_version_is_listed_in_the_help() -> None:
    assert "--version" in perennial("--help").output


# ---------------------------------------------------------------- validate


def _one_line_usage_error(result: Result, path: Path, problem: str) -> None:
    assert result.exit_code == 2, result.output
    assert result.output.strip().splitlines() == [f"✗ {path}: {problem} (pass the path of a CSV or Parquet file)"]


def test_validate_refuses_a_missing_file_as_a_usage_error(tmp_path: Path) -> None:
    missing = tmp_path / "missing.csv"
    _one_line_usage_error(perennial("validate", str(missing), "--spec", SPEC), missing, "no such file")


def test_validate_refuses_a_directory_as_a_usage_error(tmp_path: Path) -> None:
    _one_line_usage_error(perennial("validate", str(tmp_path), "--spec", SPEC), tmp_path, "is a directory")


def test_validate_refuses_an_unreadable_file_as_a_usage_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    locked = tmp_path / "locked.csv"
    locked.write_text("transaction_id,amount\n1,3.5\n")
    opened = Path.open

    def refuse(self: Path, *args: object, **kwargs: object) -> object:
        if self == locked:  # chmod 000 does not stop root, who runs these tests in containers
            raise PermissionError(13, "Permission denied", str(self))
        return opened(self, *args, **kwargs)  # type: ignore[call-overload]

    monkeypatch.setattr(Path, "open", refuse)
    _one_line_usage_error(
        perennial("validate", str(locked), "--spec", SPEC), locked, "cannot be read (Permission denied)"
    )


def test_validate_checks_the_file_before_it_reads_the_spec(tmp_path: Path) -> None:
    result = perennial("validate", str(tmp_path / "missing.csv"), "--spec", str(tmp_path / "missing.yaml"))
    _one_line_usage_error(result, tmp_path / "missing.csv", "no such file")


def test_every_summary_in_the_command_list_is_one_line() -> None:
    """A docstring's first paragraph is the command's line in `perennial --help`, and rich keeps its line
    breaks: validate's used to break after "2 if" however wide the terminal."""
    lines = perennial("--help", env={"COLUMNS": "250"}).output.splitlines()
    for command in ("up", "host", "validate", "upload", "demo"):
        (row,) = [i for i, line in enumerate(lines) if line.startswith(f"│ {command} ")]
        assert not lines[row + 1].startswith("│   "), f"{command}'s summary breaks: {lines[row + 1]!r}"


# ---------------------------------------------------------------- upload


def test_upload_says_when_the_run_starts_from_the_spec(tmp_path: Path) -> None:
    spec = load_spec(SPEC)
    text = when_the_run_starts(spec, Path("models/fraud.yaml"))
    assert "within seconds" not in text
    assert "no new batch has landed in landing/fraud/ for 120 s" in text
    assert "triggers.debounce.quiet_seconds in models/fraud.yaml" in text
    assert "at the latest 900 s after the first batch" in text
    assert text.endswith("`perennial models` says when; follow the run with: perennial runs fraud")
    at_once = spec.model_copy(
        update={
            "triggers": spec.triggers.model_copy(
                update={"debounce": spec.triggers.debounce.model_copy(update={"quiet_seconds": 0.0})}
            )
        }
    )
    assert when_the_run_starts(at_once, Path("m.yaml")).startswith("A run starts within seconds")


@pytest.mark.azurite
def test_upload_prints_the_quiet_window_of_the_model_s_spec(
    azurite_connection_string: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in list(os.environ):
        if name.startswith("AzureWebJobsStorage"):
            monkeypatch.delenv(name)
    models = tmp_path / "models"
    models.mkdir()
    document = yaml.safe_load(Path(SPEC).read_text())
    document["triggers"]["debounce"]["quiet_seconds"] = 45
    (models / "fraud.yaml").write_text(yaml.safe_dump(document, sort_keys=False))
    batch = tmp_path / "batch-quiet.csv"
    batch.write_text("transaction_id,amount\n1,3.5\n")
    from azure.storage.blob import BlobServiceClient

    service = BlobServiceClient.from_connection_string(azurite_connection_string)
    if not service.get_container_client("landing").exists():
        service.create_container("landing")
    result = perennial(
        "upload",
        str(batch),
        "--model",
        "fraud",
        "--folder",
        f"quiet-{time.time_ns()}",
        "--models",
        str(models),
        env={"AzureWebJobsStorage": azurite_connection_string},
    )
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "announces new data within seconds" not in text
    assert "A run starts once no new batch has landed in landing/fraud/ for 45 s" in text
    assert "follow the run with: perennial runs fraud" in text


def test_upload_with_an_empty_storage_setting_says_none_is_set(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`AzureWebJobsStorage=` in a shell names no storage: the answer says so, not a failed connection."""
    for name in list(os.environ):
        if name.startswith("AzureWebJobsStorage"):
            monkeypatch.delenv(name)
    batch = tmp_path / "batch.csv"
    batch.write_text("transaction_id,amount\n1,3.5\n")
    result = perennial(
        "upload", str(batch), "--model", "fraud", "--models", str(ROOT / "models"), "--state", str(tmp_path / "none"),
        env={"AzureWebJobsStorage": ""},
    )  # fmt: skip
    assert result.exit_code != 0
    assert "AzureWebJobsStorage is not set" in " ".join(result.output.split())


# ---------------------------------------------------------------- host


@pytest.fixture
def listening() -> Iterator[int]:
    """A port on 127.0.0.1 where something accepts connections (and nothing more), closed after the test."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        yield int(server.getsockname()[1])


def _connection(blob: int, table: int) -> str:
    return (
        "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=a2V5;"
        f"BlobEndpoint=http://127.0.0.1:{blob}/devstoreaccount1;TableEndpoint=http://127.0.0.1:{table}/devstoreaccount1;"
    )


def test_host_refuses_to_start_when_its_storage_does_not_answer(tmp_path: Path) -> None:
    port = free_port()  # nobody listens here
    started = time.monotonic()
    result = perennial(
        "host",
        "--state",
        str(tmp_path / "state"),
        "--settings",
        str(tmp_path / "absent.json"),
        env={"AzureWebJobsStorage": _connection(port, port)},
    )
    assert result.exit_code == 2, result.output
    text = " ".join(result.output.split())
    assert f"no storage answers at http://127.0.0.1:{port}/devstoreaccount1" in text
    assert "AzureWebJobsStorage, from the environment" in text
    assert "`perennial up` starts Azurite" in text
    assert "set AzureWebJobsStorage" in text
    assert time.monotonic() - started < 10, "a quick probe, not the storage SDK's retries"
    assert not (tmp_path / "state").exists(), "refused before the host made anything"


def test_host_names_a_storage_setting_from_local_settings_json(tmp_path: Path) -> None:
    port = free_port()
    settings = tmp_path / "local.settings.json"
    settings.write_text(json.dumps({"Values": {"AzureWebJobsStorage": _connection(port, port)}}))
    result = perennial("host", "--settings", str(settings), env={"AzureWebJobsStorage": None})
    assert result.exit_code == 2, result.output
    assert f"AzureWebJobsStorage, from {settings}" in " ".join(result.output.split())


def test_host_checks_the_table_endpoint_too(tmp_path: Path, listening: int) -> None:
    down = free_port()
    result = perennial(
        "host", "--settings", str(tmp_path / "absent.json"), env={"AzureWebJobsStorage": _connection(listening, down)}
    )
    assert result.exit_code == 2, result.output
    text = " ".join(result.output.split())
    assert f"http://127.0.0.1:{down}/devstoreaccount1" in text
    assert f":{listening}/" not in text


def test_host_storage_check_passes_at_once_when_storage_answers(
    tmp_path: Path, listening: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AzureWebJobsStorage", _connection(listening, listening))
    started = time.monotonic()
    host_module._check_storage(tmp_path / "absent.json")  # returns: no exit
    assert time.monotonic() - started < 1


def test_storage_endpoints_of_a_connection_string() -> None:
    assert storage_endpoints("UseDevelopmentStorage=true") == {
        "blob": "http://127.0.0.1:10000/devstoreaccount1",
        "queue": "http://127.0.0.1:10001/devstoreaccount1",
        "table": "http://127.0.0.1:10002/devstoreaccount1",
    }
    assert storage_endpoints(_connection(1, 2)) == {
        "blob": "http://127.0.0.1:1/devstoreaccount1",
        "table": "http://127.0.0.1:2/devstoreaccount1",
    }
    public = "DefaultEndpointsProtocol=https;AccountName=st;AccountKey=a2V5;EndpointSuffix=core.windows.net"
    assert storage_endpoints(public) == {}


def test_only_loopback_endpoints_are_probed(listening: int) -> None:
    down = f"http://127.0.0.1:{free_port()}/devstoreaccount1"
    assert refusing([f"http://127.0.0.1:{listening}/x", down, "https://st.blob.core.windows.net"]) == [down]
    assert refusing(["http://127.0.0.1:notaport/x"]) == []


def test_validate_says_a_file_upload_would_refuse_for_its_name(tmp_path: Path) -> None:
    """validate reads a file by its bytes; the app takes landing blobs only by a .csv or .parquet name."""
    text = tmp_path / "batch.txt"
    text.write_text("transaction_id,amount\n1,3.5\n")
    result = perennial("validate", str(text), "--spec", SPEC)
    assert "batch.txt is not named .csv or .parquet" in " ".join(result.output.split())
    named = tmp_path / "batch.csv"
    named.write_text("transaction_id,amount\n1,3.5\n")
    assert "not named" not in perennial("validate", str(named), "--spec", SPEC).output


def test_a_score_request_saved_with_a_byte_order_mark_is_read(tmp_path: Path) -> None:
    """Notepad and PowerShell write UTF-8 with a BOM, which json refuses ("Unexpected UTF-8 BOM")."""
    from perennial_cli.score import _payload

    request = tmp_path / "request.json"
    request.write_bytes(b"\xef\xbb\xbf" + json.dumps({"data": [{"amount": 1.5}]}).encode())
    assert _payload(request) == {"data": [{"amount": 1.5}]}


def test_a_bad_request_id_is_refused_before_the_stack_is_looked_for(tmp_path: Path) -> None:
    """A usage error is one whatever runs: it was reported as "no `perennial up` runs" instead."""
    request = tmp_path / "request.json"
    request.write_text(json.dumps({"data": [{"amount": 1.5}]}))
    no_stack = ["--state", str(tmp_path / "no-stack"), "--models", str(ROOT / "models")]
    result = perennial("score", str(request), "--model", "fraud", "--request-id", "bad id", *no_stack)
    assert result.exit_code == 2, result.output
    assert "--request-id 'bad id' is not an id the endpoint records" in " ".join(result.output.split())
