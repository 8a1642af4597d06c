"""Cold start: `import function_app` in a fresh interpreter vs importing the SDKs it will need,
with and without the app's bytecode.

Deployed, the app's own modules are source files in a read-only package: unless the package ships
their bytecode (`make package`, the CI/CD workflow's build step), every cold start compiles them
(Python cannot write __pycache__ there). The dependencies are compiled when pip installs them.
So the app is copied to a temporary folder (function_app.py and handlers/, no __pycache__) and
imported with PYTHONDONTWRITEBYTECODE=1 from there:

- without bytecode: source only, compiled on every import (what a package without it costs);
- with bytecode: after `compileall` over the copy, as `make package` runs it.

Also, the same two ways: the first invocation's imports (the dispatcher and every concern, which
function_app.py defers), and azure.functions alone (most of `import function_app`). Each figure is
the median of fresh interpreters (--runs); ratios are app / SDKs (goal <= 0.08 with bytecode).
Run: .venv/bin/python benchmarks/cold_start.py [--runs N]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
APP = "import function_app"
FIRST_EVENT = "import function_app; from handlers.runtime.dispatch import handle_trigger"
FUNCTIONS = "import azure.functions"
SDKS = "import azure.ai.ml, azure.mgmt.datafactory, azure.identity"
APP_FILES = ("function_app.py", "handlers")
# What `make package` passes to compileall (a hash, not a time stamp: unzipping changes times).
COMPILE = ("-m", "compileall", "-q", "--invalidation-mode", "checked-hash")


def copy_app(target: Path) -> Path:
    """function_app.py and handlers/ under `target`, without any bytecode."""
    target.mkdir(parents=True)
    for name in APP_FILES:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, target / name,
                            ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(source, target / name)
    return target


def import_time_s(statement: str, cwd: Path) -> float:
    """Seconds a fresh interpreter spends on `statement` (measured inside it, startup excluded)."""
    code = ("import time; t = time.perf_counter(); " + statement +
            "; print(time.perf_counter() - t)")
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}  # never cache: each run as the first
    env.pop("PYTHONPATH", None)
    result = subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True,
                            text=True, check=True)
    return float(result.stdout.strip().splitlines()[-1])


def median_of(statement: str, cwd: Path, runs: int) -> float:
    """Median over `runs` fresh interpreters."""
    return statistics.median(import_time_s(statement, cwd) for _ in range(runs))


def main() -> None:
    """Print the timings and the ratios."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=7)
    runs = parser.parse_args().runs
    with tempfile.TemporaryDirectory(prefix="amlevents-cold-") as tmp:
        source_only = copy_app(Path(tmp) / "source")
        compiled = copy_app(Path(tmp) / "compiled")
        subprocess.run([sys.executable, *COMPILE, str(compiled)], check=True)
        check = subprocess.run([sys.executable, "-c", "import handlers; print(handlers.__file__)"],
                               cwd=source_only, capture_output=True, text=True, check=True)
        if not check.stdout.strip().startswith(str(source_only)):
            raise SystemExit(f"the copy is not what gets imported: {check.stdout.strip()}")
        import_time_s(SDKS, source_only)  # warm the OS file cache: no side pays the first read
        sdks = median_of(SDKS, source_only, runs)
        functions = median_of(FUNCTIONS, source_only, runs)
        app_source, app_compiled = median_of(APP, source_only, runs), median_of(APP, compiled, runs)
        first_source = median_of(FIRST_EVENT, source_only, runs)
        first_compiled = median_of(FIRST_EVENT, compiled, runs)
    print(f"import azure.ai.ml + mgmt + id: {sdks * 1000:8.1f} ms (median of {runs})")
    print(f"import azure.functions        : {functions * 1000:8.1f} ms")
    print(f"import function_app, no bytecode  : {app_source * 1000:8.1f} ms "
          f"(ratio app/SDKs {app_source / sdks:.3f})")
    print(f"import function_app, bytecode     : {app_compiled * 1000:8.1f} ms "
          f"(ratio app/SDKs {app_compiled / sdks:.3f}; goal <= 0.08)")
    print(f"first invocation imports, no bytecode: {first_source * 1000:8.1f} ms "
          "(function_app + dispatcher + concerns)")
    print(f"first invocation imports, bytecode   : {first_compiled * 1000:8.1f} ms")


if __name__ == "__main__":
    main()
