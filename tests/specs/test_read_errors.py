"""Reading a spec from the wrong kind of path says what to pass instead."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.spec import SpecError, read_spec

ROOT = Path(__file__).resolve().parents[2]


def test_a_directory_names_a_spec_file_in_it_and_the_check_command() -> None:
    models = ROOT / "models"
    with pytest.raises(SpecError) as caught:
        read_spec(models)
    (problem,) = caught.value.problems
    assert problem.startswith(f"{models}: is a directory")
    assert f"e.g. {models / 'fraud.yaml'}" in problem
    assert f"perennial spec check {models}" in problem
    assert "UTF-8" not in problem  # the old advice: "cannot read it (Is a directory); save it as UTF-8 text"


def test_an_empty_directory_shows_the_spec_file_naming(tmp_path: Path) -> None:
    with pytest.raises(SpecError) as caught:
        read_spec(tmp_path)
    assert f"e.g. {tmp_path / '<name>.yaml'}" in caught.value.problems[0]


def test_yaml_nested_past_the_readers_depth_is_a_spec_error_not_a_traceback(tmp_path: Path) -> None:
    deep = tmp_path / "deep.yaml"
    deep.write_text("a: " + "[" * 5000 + "]" * 5000 + "\n", encoding="utf-8")
    with pytest.raises(SpecError) as caught:
        read_spec(deep)
    assert caught.value.problems == [f"{deep}: nests lists or mappings too deeply to read; a spec is a few levels deep"]
