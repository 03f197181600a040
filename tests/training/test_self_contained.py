"""training_jobs/ ships alone to the compute: it imports nothing from the app, and runs from a copy."""

from __future__ import annotations

import ast
import json
import shutil
import subprocess
import sys
from pathlib import Path

from tests.training.conftest import ROOT, Problem, script_env

APP_PACKAGES = {"shared", "functions", "devhost", "perennial_cli", "function_app", "tests", "benchmarks"}


def imported_top_level_names(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_no_module_imports_the_app() -> None:
    sources = sorted((ROOT / "training_jobs").glob("*.py"))
    assert len(sources) >= 10
    for path in sources:
        leaked = imported_top_level_names(path) & APP_PACKAGES
        assert not leaked, f"{path.name} imports {leaked}"


def test_a_copy_of_the_folder_under_another_name_trains_and_scores(problem: Problem, tmp_path: Path) -> None:
    """What Azure ML does: the folder is snapshotted (no .git, any name) and run with its own python path."""
    code = tmp_path / "snapshot"
    shutil.copytree(ROOT / "training_jobs", code, ignore=shutil.ignore_patterns("__pycache__"))
    output = tmp_path / "model"
    probe = f"""
import runpy, sys, json, os
sys.argv = ["train.py"] + {problem.args(output, "--max-steps", "5")!r}
try:
    runpy.run_path({str(code / "train.py")!r}, run_name="__main__")
except SystemExit as done:
    assert done.code == 0, done.code
os.environ["AZUREML_MODEL_DIR"] = {str(output)!r}
score = runpy.run_path({str(code / "score.py")!r})
score["init"]()
answer = score["run"](open({str(output / "sample_input.json")!r}).read())
app = sorted(m for m in sys.modules if m.split(".")[0] in {sorted(APP_PACKAGES)!r})
print(json.dumps({{"app": app, "package": sys.modules["training_jobs"].__file__, "n": len(answer["predictions"])}}))
"""
    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=tmp_path, env=script_env(), capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["app"] == []
    assert report["package"] == str(code / "__init__.py")  # the copy, not the repository's folder
    assert report["n"] >= 1
    card = json.loads((output / "model_card.json").read_text())
    assert card["code_version"].startswith("sha256:")  # no .git in a snapshot: the source hash stands in
