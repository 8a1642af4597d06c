"""Cold start: `import function_app` in a fresh interpreter vs importing the SDKs it will need.

Each figure is the median of several fresh interpreters; the ratio is app / SDKs (goal <= 0.15).
Run: .venv/bin/python benchmarks/cold_start.py [--runs N]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
APP = "import function_app"
SDKS = "import azure.ai.ml, azure.mgmt.datafactory, azure.identity"
BASELINE = "pass"


def import_time_s(statement: str) -> float:
    """Seconds a fresh interpreter spends on `statement` (measured inside it, startup excluded)."""
    code = ("import time; t = time.perf_counter(); " + statement +
            "; print(time.perf_counter() - t)")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                            text=True, check=True)
    return float(result.stdout.strip().splitlines()[-1])


def median_of(statement: str, runs: int) -> float:
    """Median over `runs` fresh interpreters."""
    return statistics.median(import_time_s(statement) for _ in range(runs))


def main() -> None:
    """Print both timings and the ratio."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    runs = parser.parse_args().runs
    import_time_s(SDKS)  # warm the OS file cache so neither side pays for the first disk read
    app, sdks = median_of(APP, runs), median_of(SDKS, runs)
    print(f"import function_app          : {app * 1000:8.1f} ms (median of {runs})")
    print(f"import azure.ai.ml + mgmt + id: {sdks * 1000:8.1f} ms (median of {runs})")
    print(f"ratio app/SDKs               : {app / sdks:8.3f}  (goal <= 0.15)")


if __name__ == "__main__":
    main()
