"""An argument the client cannot send is a usage error (exit 2) that names it and says what to fix, found before any
request: a function key a header cannot carry (smart quotes pasted from a document, a line break, a non-ASCII
letter), or text that is not UTF-8 (a shell hands Python the bytes of a non-UTF-8 terminal as lone surrogates,
'\\xff' as '\\udcff')."""

from __future__ import annotations

import socket

import httpx
import pytest
from typer.testing import CliRunner, Result

from perennial_cli.client import BadArgument, PerennialClient
from perennial_cli.main import app

#: What a connection attempt would print: none of these cases may get that far.
REFUSED = "no Perennial host is running"


def _closed_port() -> str:
    """A loopback URL nothing listens on: a request there would say REFUSED instead."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def perennial(*args: str, key: str = "k") -> Result:
    env = {"PERENNIAL_HOST_URL": _closed_port(), "PERENNIAL_FUNCTION_KEY": key, "COLUMNS": "200"}
    return CliRunner().invoke(app, list(args), env=env)


def _refused_before_sending(result: Result, *says: str) -> str:
    text = " ".join(result.output.split())
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit), repr(result.exception)  # a message, not a traceback
    assert "Traceback" not in result.output
    assert REFUSED not in text, "it must be refused before any connection is attempted"
    assert "perennial up" not in text, "the fix is the argument, not starting a host"
    assert text.startswith("✗ "), text
    assert "fix: " in text, text
    for said in says:
        assert said in text, text
    return text


@pytest.mark.parametrize(
    ("key", "says"),
    [
        ("é", "character 1 is 'é' (U+00E9)"),
        ("a\nb", "character 2 is '\\n'"),
        ("abc def", "character 4 is ' '"),
        ("abc\udcff", "character 4 is the byte 0xff"),  # a PERENNIAL_FUNCTION_KEY that is not UTF-8
    ],
)
def test_a_key_a_header_cannot_carry_is_a_usage_error(key: str, says: str) -> None:
    result = perennial("models", "--key", key)
    text = _refused_before_sending(result, "--key", "must be printable ASCII", says)
    assert ".perennial/devhost/function_key" in text  # where a local host's key is


def test_smart_quotes_pasted_around_the_key_are_named() -> None:
    result = perennial("models", key="“abc”")  # from PERENNIAL_FUNCTION_KEY, as pasted from a document
    text = _refused_before_sending(result, "PERENNIAL_FUNCTION_KEY", "character 1 is '“' (U+201C)")
    assert "remove the typographic quotes" in text


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["retrain", "fraud", "--reason", "\udcff\udcfe"], "--reason is not UTF-8 text: the byte 0xff"),
        (["abort", "fraud-00000000000000b1", "--reason", "bad\udcff"], "--reason is not UTF-8 text: the byte 0xff"),
        (["retrain", "fraud", "--requested-by", "d\udce9na"], "--requested-by is not UTF-8 text: the byte 0xe9"),
        (["retrain", "fraud", "--blob", "landing/fraud/\udcff.csv"], "--blob is not UTF-8 text"),
        (["approve", "fraud-00000000000000b1", "--comment", "ok\udcff"], "--comment is not UTF-8 text"),
        (["reject", "fraud-00000000000000b1", "--by", "\udcffx"], "--by is not UTF-8 text"),
        (["rollback", "fraud", "--reason", "\udcff"], "--reason is not UTF-8 text"),
        (["rollout", "fraud", "4", "--reason", "\udcff"], "--reason is not UTF-8 text"),
    ],
)
def test_an_option_that_is_not_utf8_is_a_usage_error(args: list[str], says: str) -> None:
    _refused_before_sending(perennial(*args), says, "UTF-8 terminal")


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["run", "fraud-\udcff"], "RUN_ID 'fraud-\\xff' is not UTF-8 text"),
        (["run", "fraud-\udcff", "--json"], "RUN_ID 'fraud-\\xff' is not UTF-8 text"),
        (["runs", "fr\udcffaud"], "MODEL 'fr\\xffaud' is not UTF-8 text"),
        (["runs", "fraud", "--after", "fraud-\udcff"], "--after 'fraud-\\xff' is not UTF-8 text"),
        (["retrain", "fr\udcffaud"], "MODEL 'fr\\xffaud' is not UTF-8 text"),
        (["approve", "\udcff"], "RUN_ID '\\xff' is not UTF-8 text"),
        (["rollout", "fraud", "4\udcff"], "VERSION '4\\xff' is not UTF-8 text"),
    ],
)
def test_a_model_run_id_or_version_that_is_not_utf8_is_a_usage_error(args: list[str], says: str) -> None:
    _refused_before_sending(perennial(*args), says)


@pytest.mark.parametrize("args", [["retrain", "fraud", "--reason", "prix révisés “été”"], ["runs", "café"]])
def test_utf8_text_beyond_ascii_is_sent(args: list[str]) -> None:
    result = perennial(*args)
    assert result.exit_code == 1, result.output
    assert REFUSED in " ".join(result.output.split()), "it was sent: only the missing host stopped it"


def test_a_host_url_that_is_not_utf8_is_a_message_not_a_traceback() -> None:
    result = perennial("models", "--host", "http://\udcff")
    assert result.exit_code == 1, result.output  # as for every other bad --host
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert "--host 'http://\\xff' is not a valid URL" in result.output


def test_the_client_sends_nothing_it_cannot_send() -> None:
    seen: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(202, json={"run_id": "fraud-00000000000000c1"})

    with pytest.raises(BadArgument, match="--key"):
        PerennialClient("http://127.0.0.1:7071", "“k”", transport=httpx.MockTransport(handle))
    client = PerennialClient("http://127.0.0.1:7071", "k", transport=httpx.MockTransport(handle))
    with pytest.raises(BadArgument, match="--reason"):
        client.retrain("fraud", "bad\udcff", "dana")
    with pytest.raises(BadArgument, match="RUN_ID"):
        client.abort("fraud-\udcff")
    with pytest.raises(BadArgument, match="--after"):
        client.runs_page("fraud", after="x\udcff")
    assert seen == []
    assert client.retrain("fraud", "prix révisés", "dana").run_id == "fraud-00000000000000c1"
    assert seen[0].content.decode("utf-8").count("prix révisés") == 1
