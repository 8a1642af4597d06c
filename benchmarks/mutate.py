"""`make mutate`: how many one-line mutants of handlers/ the fast tiers kill (mutmut).

Not part of the gate (a full run takes hours on two cores). The tree is copied to
.amlevents/mutate/ (ignored by git) with mutmut's settings written into that copy's
pyproject.toml, so the checkout itself is never touched; mutmut then copies that to mutants/,
runs the selected tests once to learn which test reaches which function, and runs each mutant
against the tests that reach it.

    MUTATE_PATHS    what to mutate (default handlers; e.g. "handlers/runtime/redaction.py
                    handlers/notify"); only lines the tests cover are mutated
    MUTATE_TESTS    the tests that must kill them (default tests/handlers: the fast tiers;
                    tests that need Azurite, marked `azurite`, are left out)
    MUTATE_JOBS     parallel mutants (default: the number of cores)
    MUTATE_SAMPLE   run only N mutants, drawn uniformly at random from all of MUTATE_PATHS' mutants
                    (the score in bounded time; default: run them all)
    MUTATE_SEED     the sample's seed (default 12); the same seed draws the same mutants while
                    the population is the same (the code, and the lines the tests cover)

Prints killed/total and the surviving mutants (`mutmut show NAME` in .amlevents/mutate shows one);
with a sample, also how many mutants it was drawn from and the killed share's 95 % confidence
interval (Wilson score interval).
"""

from __future__ import annotations

import json
import math
import os
import random
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
# Tests that need Azurite are left out (tests/conftest.py marks them `azurite`: the `[table]`
# runs of the store-contract tests and the Table store's own): each mutant would start one.
DESELECT = "not azurite"
DEFAULT_SEED = 12
# A name no mutant has (see generate()).
NO_MUTANT = "amlevents-generate-only"
Z_95 = 1.959964


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
            f"pytest_add_cli_args = {json.dumps(['-p', 'no:randomly', '-q', '-m', DESELECT])}\n"
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


def generate(mutmut: str, jobs: str) -> list[str]:
    """Every mutant's name, generated without testing any of them."""
    # mutmut 3 has no generate-only command. `run` with a name that matches no mutant generates
    # them all and maps tests to functions (both kept for the next `run`), then stops on its
    # "nothing matches" assertion; the names are in the .meta file written next to each file.
    run = subprocess.run([mutmut, "run", "--max-children", jobs, NO_MUTANT], cwd=WORK,
                         capture_output=True, text=True, check=False)
    names = sorted(name for meta in (WORK / "mutants").rglob("*.py.meta")
                   for name in json.loads(meta.read_text(encoding="utf-8"))["exit_code_by_key"])
    if not names:
        sys.exit(f"mutate: mutmut generated no mutants\n{run.stdout}{run.stderr}")
    return names


def wilson(killed: int, n: int) -> tuple[float, float]:
    """The 95 % Wilson score interval of the share killed/n (sound for shares near 0 or 1)."""
    share, z2 = killed / n, Z_95 * Z_95
    centre = (share + z2 / (2 * n)) / (1 + z2 / n)
    half = Z_95 * math.sqrt(share * (1 - share) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def score(only: frozenset[str] | None = None) -> tuple[dict[str, int], list[str]]:
    """Counts per status, and the surviving mutants' names, from `mutmut results --all`."""
    mutmut = str(Path(sys.executable).parent / "mutmut")
    out = subprocess.run([mutmut, "results", "--all", "true"], cwd=WORK, capture_output=True,
                         text=True, check=False).stdout
    counts: dict[str, int] = {}
    survivors = []
    for line in out.splitlines():
        match = re.match(r"\s*(\S+): (.+)$", line)
        if not match or (only is not None and match.group(1) not in only):
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
    sample = int(os.environ.get("MUTATE_SAMPLE", "0"))
    seed = int(os.environ.get("MUTATE_SEED", str(DEFAULT_SEED)))
    prepare(paths, tests)
    mutmut = str(Path(sys.executable).parent / "mutmut")
    chosen: list[str] = []
    population = 0
    if sample > 0:
        names = generate(mutmut, jobs)
        population = len(names)
        chosen = sorted(random.Random(seed).sample(names, min(sample, population)))
    run = subprocess.run([mutmut, "run", "--max-children", jobs, *chosen], cwd=WORK, check=False)
    # A sampled mutant that was never run (an interrupted run) counts as not killed.
    counts, survivors = score(frozenset(chosen) if chosen else None)
    total = sum(counts.values())
    killed = counts.get("killed", 0) + counts.get("timeout", 0)
    print(f"\nmutate: {' '.join(paths)} against {' '.join(tests)}")
    if chosen:
        print(f"  a uniform sample of {len(chosen)} of all {population} mutants (seed {seed})")
    print("  " + ", ".join(f"{status} {n}" for status, n in sorted(counts.items())))
    if total:
        low, high = wilson(killed, total)
        interval = f" (95 % CI {100 * low:.1f}–{100 * high:.1f} %)" if chosen else ""
        print(f"  killed {killed}/{total} = {100 * killed / total:.1f} %{interval}")
    for name in survivors:
        print(f"  survived: {name}")
    return run.returncode


if __name__ == "__main__":
    sys.exit(main())
