"""The package's import graph: no circles, and no arrow from a lower room to a higher one.

Every ``import``/``from ... import`` of a ``dllm_mcmc`` module counts, also those inside functions
(a lazy import is still a dependency). Edges are taken between modules; importing a package means
importing its ``__init__``.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "dllm_mcmc"

# Rooms from low to high: a module may import from its own room and from lower ones only.
LAYERS = [
    ("_checks", "mh"),
    ("tasks",),
    ("small_model",),
    ("denoisers",),
    ("decoding", "likelihood"),
    ("target",),
    ("mcmc",),
    ("diagnostics",),
    ("eval",),
    ("lm_eval_model",),  # the lm-evaluation-harness model: over the eval methods, under the command line
    ("cli", "__main__", "__init__"),
]
RANK = {room: rank for rank, rooms in enumerate(LAYERS) for room in rooms}


def module_name(path: Path) -> str:
    parts = ("dllm_mcmc", *path.relative_to(PACKAGE).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    modules = {module_name(path): path for path in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                # `from pkg import sub` imports the submodule when there is one
                targets = [f"{node.module}.{alias.name}" if f"{node.module}.{alias.name}" in modules else node.module
                           for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level:
                raise AssertionError(f"{path}: relative import (the package uses absolute imports)")
            for target in targets:
                while target and target not in modules:  # `a.b.attr` -> `a.b`
                    target = target.rpartition(".")[0]
                if target.startswith("dllm_mcmc") and target != name:
                    graph[name].add(target)
    return graph


def room(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the stack, 2: done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_graph_is_read_from_the_whole_package():
    graph = import_graph()
    assert {"dllm_mcmc.mh", "dllm_mcmc.mcmc.imh", "dllm_mcmc.eval.sandbox.parent"} <= set(graph)
    assert "dllm_mcmc.mh" in graph["dllm_mcmc.mcmc.imh"]  # a known edge is seen


def test_every_room_has_a_layer():
    rooms = {room(module) for module in import_graph()}
    assert rooms <= set(RANK), sorted(rooms - set(RANK))


def test_there_is_no_import_cycle():
    cycle = find_cycle(import_graph())
    assert cycle is None, " -> ".join(cycle or [])


def test_a_cycle_would_be_found():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_module_imports_upward():
    upward = sorted(f"{module} -> {target}" for module, targets in import_graph().items() for target in targets
                    if RANK[room(target)] > RANK[room(module)])
    assert not upward, upward


def test_mh_depends_on_torch_alone():
    assert import_graph()["dllm_mcmc.mh"] == set()
