"""The layout is a rule, not a habit: layers import downwards only, modules form no
import cycles, and a bot module's `import adapter` stays light."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import grimp

ROOT = Path(__file__).parent.parent


def test_import_linter_contracts_are_kept() -> None:
    # The contracts live in pyproject.toml ([tool.importlinter]).
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "from importlinter.cli import lint_imports_command; lint_imports_command()",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def _import_cycles(graph: grimp.ImportGraph, package: str) -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan's algorithm)."""
    modules = sorted(m for m in graph.modules if m == package or m.startswith(package + "."))
    edges = {
        m: sorted(i for i in graph.find_modules_directly_imported_by(m) if i in modules)
        for m in modules
    }
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for imported in edges[module]:
            if imported not in index:
                visit(imported)
                low[module] = min(low[module], low[imported])
            elif imported in on_stack:
                low[module] = min(low[module], index[imported])
        if low[module] == index[module]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == module:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    for module in modules:
        if module not in index:
            visit(module)
    return groups


def test_no_module_imports_itself_through_others() -> None:
    graph = grimp.build_graph("adapter")
    # A package's __init__ re-exporting its own modules is not a cycle worth the name.
    cycles = [
        group
        for group in _import_cycles(graph, "adapter")
        if not all(
            m.startswith(min(group, key=len) + ".") or m == min(group, key=len) for m in group
        )
    ]
    assert cycles == []


def _modules_loaded_by(statement: str) -> set[str]:
    script = f"import sys, json\n{statement}\nprint(json.dumps(sorted(sys.modules)))"
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=True
    )
    return set(json.loads(result.stdout))


def test_a_bot_module_import_loads_the_bot_api_only() -> None:
    loaded = _modules_loaded_by("from adapter import Context, Router")
    heavy = {"httpx", "twilio", "starlette", "uvicorn", "asyncpg", "sqlite3", "prometheus_client"}
    assert sorted(heavy & {name.split(".")[0] for name in loaded}) == []
    ours = sorted(name for name in loaded if name.startswith("adapter."))
    assert [
        m
        for m in ours
        if m.startswith(
            (
                "adapter.devtools",
                "adapter.web",
                "adapter.runtime",
                "adapter.store",
                "adapter.testing",
            )
        )
    ] == []
    assert "adapter.bot.router" in ours


def test_the_test_helper_is_there_on_first_use() -> None:
    loaded = _modules_loaded_by("import adapter\nassert adapter.BotConversation.__name__")
    assert "adapter.testing" in loaded
