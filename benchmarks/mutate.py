"""`make mutate`: how many one-line mutants of handlers/ the fast tiers kill (mutmut).

Not part of the gate (a full run takes hours on two cores). The tree is copied to
.amlevents/mutate/ (ignored by git) with mutmut's settings written into that copy's
pyproject.toml, so the checkout itself is never touched; mutmut then copies that to mutants/,
runs the selected tests once to learn which test reaches which function, and runs each mutant
against the tests that reach it.

    MUTATE_PATHS    what to mutate (default handlers; e.g. "handlers/runtime/redaction.py
                    handlers/notify"); only lines the tests cover are mutated
    MUTATE_TESTS    the tests that must kill them (default tests/handlers: the fast tiers;
                    Table-ledger tests, which need Azurite, are left out)
    MUTATE_JOBS     parallel mutants (default: the number of cores)

Prints killed/total and the surviving mutants (`mutmut show NAME` in .amlevents/mutate shows one).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / ".amlevents" / "mutate"
# Everything the tests read (samples, infra, docs, requirements files...), not the tooling.
LEFT_OUT = frozenset({".git", ".venv", ".venv-floor", "node_modules", ".amlevents", "mutants",
                      ".mypy_cache", ".ruff_cache", ".pytest_cache", ".hypothesis", "build"})
IGNORED = shutil.ignore_patterns("__pycache__", "*.pyc", ".hypothesis", "*.egg-info")
# Tests that read the source as text (the layering rules) fail on mutmut's rewritten copy.
DESELECT = "not table and not Table"


def _copied() -> list[str]:
    return sorted(p.name for p in ROOT.iterdir()
                  if p.name not in LEFT_OUT and not p.name.endswith(".egg-info"))


def _config(paths: list[str], tests: list[str]) -> str:
    also = [name for name in _copied() if name not in ("handlers", "tests", "pyproject.toml")]
    # All of handlers/ is copied (the tests import it); only `paths` are mutated.
    only = [p if p.endswith(".py") else p.rstrip("/") + "/*" for p in paths]
    return ("\n[tool.mutmut]\n"
            'source_paths = ["handlers"]\n'
            f"only_mutate = {json.dumps(only)}\n"
            f"also_copy = {json.dumps(also)}\n"
            f"pytest_add_cli_args = {json.dumps(['-p', 'no:randomly', '-q', '-k', DESELECT])}\n"
            f"pytest_add_cli_args_test_selection = {json.dumps(tests)}\n"
            "mutate_only_covered_lines = true\n")


def prepare(paths: list[str], tests: list[str]) -> None:
    """A fresh copy of the tree with mutmut's settings (mutants/ of an earlier run dropped)."""
    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir(parents=True)
    for name in _copied():
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, WORK / name, ignore=IGNORED)
        elif source.exists():
            shutil.copy2(source, WORK / name)
    pyproject = WORK / "pyproject.toml"
    pyproject.write_text(pyproject.read_text(encoding="utf-8") + _config(paths, tests),
                         encoding="utf-8")
    node_modules = ROOT / "node_modules"
    if node_modules.exists():  # Azurite, for a MUTATE_TESTS that includes the Table ledger
        (WORK / "node_modules").symlink_to(node_modules)


def score() -> tuple[dict[str, int], list[str]]:
    """Counts per status, and the surviving mutants' names, from `mutmut results --all`."""
    mutmut = str(Path(sys.executable).parent / "mutmut")
    out = subprocess.run([mutmut, "results", "--all", "true"], cwd=WORK, capture_output=True,
                         text=True, check=False).stdout
    counts: dict[str, int] = {}
    survivors = []
    for line in out.splitlines():
        match = re.match(r"\s*(\S+): (.+)$", line)
        if not match:
            continue
        name, status = match.groups()
        counts[status] = counts.get(status, 0) + 1
        if status == "survived":
            survivors.append(name)
    return counts, survivors


def main() -> int:
    paths = os.environ.get("MUTATE_PATHS", "handlers").split()
    tests = os.environ.get("MUTATE_TESTS", "tests/handlers").split()
    jobs = os.environ.get("MUTATE_JOBS", str(os.cpu_count() or 1))
    prepare(paths, tests)
    mutmut = str(Path(sys.executable).parent / "mutmut")
    run = subprocess.run([mutmut, "run", "--max-children", jobs], cwd=WORK, check=False)
    counts, survivors = score()
    total = sum(counts.values())
    killed = counts.get("killed", 0) + counts.get("timeout", 0)
    print(f"\nmutate: {' '.join(paths)} against {' '.join(tests)}")
    print("  " + ", ".join(f"{status} {n}" for status, n in sorted(counts.items())))
    if total:
        print(f"  killed {killed}/{total} = {100 * killed / total:.1f} %")
    for name in survivors:
        print(f"  survived: {name}")
    return run.returncode


if __name__ == "__main__":
    sys.exit(main())
