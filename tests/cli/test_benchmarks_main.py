"""``python -m benchmarks``: --help/--list name the benchmarks, an unknown name exits 2, no name runs all."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from benchmarks import __main__ as runner

ROOT = Path(__file__).resolve().parents[2]
BENCHMARKS = sorted(p.stem for p in (ROOT / "benchmarks").glob("bench_*.py"))


def _fake_benchmarks(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Stand-ins for every benchmark module (the real ones run for minutes); returns the names run, in order."""
    ran: list[str] = []
    for name in BENCHMARKS:
        module = SimpleNamespace(main=lambda name=name: ran.append(name) or 0)
        monkeypatch.setitem(sys.modules, f"benchmarks.{name}", module)
    return ran


def test_list_names_every_benchmark_with_its_docstring(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "200")  # the list shortens each line to the terminal's width
    assert BENCHMARKS
    assert runner.main(["--list"]) == 0
    listed = " ".join(capsys.readouterr().out.split())
    for name in BENCHMARKS:
        docstring = ast.get_docstring(ast.parse((ROOT / "benchmarks" / f"{name}.py").read_text(encoding="utf-8")))
        assert docstring
        assert f"{name} {' '.join(docstring.split()[:6])}" in listed


def test_help_lists_the_benchmarks_and_what_running_them_all_costs(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        runner.main(["--help"])
    assert exited.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert all(name in text for name in BENCHMARKS)
    assert "With no NAME, every benchmark runs in turn, as `make bench` does" in text
    assert "tens of minutes" in text
    assert "2 GB CSV" in text
    assert ".perennial/venv-evidently" in text


def test_an_unknown_name_exits_2_naming_the_valid_ones(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    ran = _fake_benchmarks(monkeypatch)
    with pytest.raises(SystemExit) as exited:
        runner.main([BENCHMARKS[0], "bench_nope"])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert "no benchmark named bench_nope" in err
    assert all(name in err for name in BENCHMARKS)
    assert ran == []  # nothing started


def test_no_names_runs_every_benchmark_as_make_bench_does(monkeypatch: pytest.MonkeyPatch) -> None:
    ran = _fake_benchmarks(monkeypatch)
    assert runner.main([]) == 0
    assert ran == BENCHMARKS


def test_named_benchmarks_run_alone_in_the_order_given(monkeypatch: pytest.MonkeyPatch) -> None:
    ran = _fake_benchmarks(monkeypatch)
    wanted = list(reversed(BENCHMARKS[:2]))
    assert runner.main(wanted) == 0
    assert ran == wanted


def test_the_module_entry_point_answers_help_and_typos() -> None:
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "benchmarks", *args], cwd=ROOT, capture_output=True, text=True, timeout=60
        )

    for flag in ("--help", "-h"):
        done = run(flag)
        assert done.returncode == 0, done.stderr
        assert all(name in done.stdout for name in BENCHMARKS)
    done = run("bench_nope")
    assert done.returncode == 2
    assert "no benchmark named bench_nope" in done.stderr
