"""`make package` ships the app with its bytecode, and the CI/CD workflow publishes that package.

A deployed package is read-only: Python cannot cache bytecode there, so without it every cold
start compiles handlers/ again (benchmarks/cold_start.py measures the difference).
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
WORKFLOW = ROOT / ".github" / "workflows" / "ci-cd.yml"


@pytest.fixture(scope="module")
def package(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`make package` into a folder of the test's own."""
    publish = tmp_path_factory.mktemp("package") / "publish"
    subprocess.run(["make", "--no-print-directory", "package", f"PUBLISH={publish}",
                    f"PYTHON={sys.executable}"], cwd=ROOT, check=True, capture_output=True)
    return publish


def test_every_module_ships_with_hash_checked_bytecode_for_this_python(package: Path) -> None:
    sources = sorted(package.rglob("*.py"))
    assert package / "function_app.py" in sources
    assert package / "handlers" / "runtime" / "dispatch.py" in sources
    for source in sources:
        cached = Path(importlib.util.cache_from_source(str(source)))
        assert cached.is_file(), source
        flags = int.from_bytes(cached.read_bytes()[4:8], "little")
        assert flags & 0b01, f"{cached} is time-stamped, not hash-based (unzipping moves times)"
    # Only what the app needs at run time: no tests, tools or local state.
    top = {path.name for path in package.iterdir()}
    assert top == {"function_app.py", "host.json", "requirements.txt", ".funcignore", "handlers",
                   "__pycache__"}
    with zipfile.ZipFile(f"{package}.zip") as archive:
        names = set(archive.namelist())
    assert "function_app.py" in names and "__pycache__/" in {n[:12] for n in names}
    assert any(n.startswith("handlers/runtime/__pycache__/dispatch.") for n in names)


def test_the_package_imports_from_its_bytecode_without_compiling(package: Path) -> None:
    # As deployed (nothing written): the first event's imports compile none of the app's modules.
    code = """
import importlib._bootstrap_external as external, os, sys
compiled = []
original = external.SourceLoader.source_to_code
def source_to_code(self, data, path, *, _optimize=-1):
    compiled.append(path)
    return original(self, data, path, _optimize=_optimize)
external.SourceLoader.source_to_code = source_to_code
import function_app
from handlers.runtime.dispatch import handle_trigger
here = os.getcwd()
print(sum(m.__file__.startswith(here) for m in list(sys.modules.values())
          if getattr(m, "__file__", None)), [p for p in compiled if p.startswith(here)])
"""
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    env.pop("PYTHONPATH", None)
    result = subprocess.run([sys.executable, "-c", code], cwd=package, env=env, check=True,
                            capture_output=True, text=True)
    loaded, compiled = result.stdout.split(" ", 1)
    assert int(loaded) > 30 and compiled.strip() == "[]"


def test_the_workflow_builds_the_package_and_publishes_it() -> None:
    text = WORKFLOW.read_text(encoding="utf-8")
    deploy = text[text.index("\n  deploy:"):]
    build, publish = deploy.index("run: make package"), deploy.index("Azure/functions-action@")
    assert build < publish
    assert "package: build/publish" in deploy[publish:]
    assert 'python-version: "3.11"' in deploy[:build]  # bytecode for the runtime's Python
