"""The architecture, enforced: who may import what (docs/architecture.md).

- planning code (events/, */decide.py, */plan.py, deploy/order.py, deploy/policy.py, notify/storm.py,
  notify/message.py, outcome.py, errors.py, settings.py) imports no Azure SDK, no azure.functions,
  and nothing from runtime/, adapters/ or ledger/ (except the pure event key);
- only adapters/ and the Table ledger store import an Azure SDK;
- only runtime/ (and the thin function_app.py) imports azure.functions; handlers/ never imports
  amlevents/;
- no import cycle among handlers' modules (module-level imports, parent packages included).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
HANDLERS = ROOT / "handlers"
PLANNING = ["events/*.py", "*/decide.py", "*/plan.py", "deploy/order.py", "deploy/policy.py",
            "notify/storm.py", "notify/message.py", "outcome.py", "errors.py", "settings.py"]
SDK_ALLOWED = ["adapters/**/*.py", "ledger/table.py", "ledger/table_settings.py"]
FUNCTIONS_ALLOWED = ["runtime/*.py"]
PURE_FROM_LEDGER = {"handlers.ledger.ledger.event_key"}  # a hash of three strings


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path, *, module_level_only: bool = False) -> Iterator[tuple[str, str]]:
    """(imported module, imported name or '') for every import in a file."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    nodes = tree.body if module_level_only else list(ast.walk(tree))
    if module_level_only:  # module-level `if`/`try` blocks run at import too
        nodes = [n for top in tree.body for n in ast.walk(top)
                 if not isinstance(top, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))]
    for node in nodes:
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, ""
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                yield node.module, alias.name


def files(patterns: list[str]) -> set[Path]:
    return {p for pattern in patterns for p in HANDLERS.glob(pattern)}


ALL = sorted(HANDLERS.rglob("*.py"))


@pytest.mark.parametrize("path", sorted(files(PLANNING)), ids=lambda p: str(p.relative_to(ROOT)))
def test_planning_code_is_pure(path: Path) -> None:
    bad = []
    for module, name in imports(path):
        if module.startswith("azure") or module.startswith("amlevents"):
            bad.append(module)
        elif module.startswith(("handlers.runtime", "handlers.adapters", "handlers.ports")):
            bad.append(module)
        elif module.startswith("handlers.ledger") and f"{module}.{name}" not in PURE_FROM_LEDGER:
            bad.append(f"{module}.{name}")
    assert bad == []


@pytest.mark.parametrize("path", ALL, ids=lambda p: str(p.relative_to(ROOT)))
def test_only_adapters_and_the_table_store_import_an_azure_sdk(path: Path) -> None:
    sdk = [m for m, _ in imports(path) if m.startswith("azure") and m != "azure.functions"
           and not m.startswith("azure.functions.")]
    assert path in files(SDK_ALLOWED) or sdk == []


@pytest.mark.parametrize("path", ALL, ids=lambda p: str(p.relative_to(ROOT)))
def test_only_runtime_touches_azure_functions_and_nothing_imports_amlevents(path: Path) -> None:
    found = [m for m, _ in imports(path)]
    assert not any(m.startswith("amlevents") for m in found)
    if path not in files(FUNCTIONS_ALLOWED):
        assert not any(m == "azure.functions" or m.startswith("azure.functions.") for m in found)


def test_no_import_cycles() -> None:
    known = {module_name(p) for p in ALL}
    graph: dict[str, set[str]] = {}
    for path in ALL:
        name = module_name(path)
        edges = set()
        for module, imported in imports(path, module_level_only=True):
            for candidate in (f"{module}.{imported}", module):
                if candidate in known:
                    edges.add(candidate)
                    break
        # Importing a.b.c runs a/__init__ and a/b/__init__ first.
        edges |= {p for p in (".".join(name.split(".")[:i]) for i in range(1, name.count(".") + 1))
                  if p in known}
        graph[name] = edges - {name}
    assert len(graph) > 50 and sum(map(len, graph.values())) > 100  # the graph is real
    assert find_cycle(graph) == []


def find_cycle(graph: dict[str, set[str]]) -> list[str]:
    """One import cycle as a path (first node repeated at the end), or []."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str]:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt):], nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return []

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return []


def test_the_cycle_finder_finds_cycles() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a"}}) == []
