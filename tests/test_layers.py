"""The house's layers, read from the import graph of the library (every import, lazy ones too).

cli -> runner -> stages -> suite -> {captioners, retrieval, reconstruct, pancapscore} -> {data, captions,
detection} -> run-folder vocabulary (runs, results, directions, leaderboard tables) -> {artifacts, registry,
loading, errors}: a module imports only from its own layer or the layers below it, no two
modules import each other (directly or round about), no private name (``_x``) is imported from another module, and
no library function is over 60 lines.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("pancap_retrieval", "reconstruct")
MAX_FUNCTION_LINES = 60

# Top to bottom; a module belongs to the first layer one of whose prefixes it starts with.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("cli", ("pancap_retrieval.cli",)),
    ("runner", ("pancap_retrieval.runner", "pancap_retrieval.pipeline")),
    ("stages", ("pancap_retrieval.stages", "pancap_retrieval.export")),
    ("suite", ("pancap_retrieval.suite",)),
    ("components", ("pancap_retrieval.captioners", "pancap_retrieval.retrieval", "reconstruct",
                    "pancap_retrieval.pancapscore", "pancap_retrieval.textgen", "pancap_retrieval.testing")),
    ("inputs", ("pancap_retrieval.data", "pancap_retrieval.captions", "pancap_retrieval.detection")),
    ("run folder", ("pancap_retrieval.runs", "pancap_retrieval.results", "pancap_retrieval.leaderboard",
                    "pancap_retrieval.pages", "pancap_retrieval.directions", "pancap_retrieval.pairs",
                    "pancap_retrieval.retrieval.paired")),
    ("base", ("pancap_retrieval.artifacts", "pancap_retrieval.registry", "pancap_retrieval.loading",
              "pancap_retrieval.errors", "pancap_retrieval.ranks", "pancap_retrieval")),
]


def layer_of(module: str) -> int:
    """The layer of ``module``: the one whose prefix matches it most closely (``retrieval.paired``, the paired
    statistics the tables use, sits below the rest of ``retrieval``)."""
    matches = [
        (len(p), depth)
        for depth, (_, prefixes) in enumerate(LAYERS)
        for p in prefixes
        if module == p or module.startswith(p + ".")
    ]
    if not matches:
        raise AssertionError(f"{module} is in no layer: add it to LAYERS")
    return max(matches)[1]


def _modules() -> dict[str, Path]:
    files = [p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")]
    out = {}
    for path in files:
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


MODULES = _modules()


def _scan() -> tuple[dict[str, set[str]], list[str], list[str]]:
    """Import graph between library modules, private names imported across modules, functions over the limit."""
    graph: dict[str, set[str]] = {m: set() for m in MODULES}
    private: list[str] = []
    long: list[str] = []
    for module, path in MODULES.items():
        package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                    base = ".".join(up + ([base] if base else []))
                targets = [base] + [f"{base}.{a.name}" for a in node.names]
                private += [
                    f"{module} <- {base}.{a.name}"
                    for a in node.names
                    if a.name.startswith("_") and not a.name.startswith("__") and base.split(".")[0] in PACKAGES
                ]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    lines = node.end_lineno - node.lineno + 1
                    if lines > MAX_FUNCTION_LINES:
                        long.append(f"{path.relative_to(ROOT)}:{node.name} ({lines} lines)")
                continue
            for target in targets:
                while target and target not in MODULES:
                    target = target.rpartition(".")[0]
                if target and target != module and not module.startswith(target + "."):
                    graph[module].add(target)
    return graph, private, long


GRAPH, PRIVATE, LONG = _scan()


def _reach(start: str) -> set[str]:
    seen: set[str] = set()
    todo = [start]
    while todo:
        for nxt in GRAPH[todo.pop()]:
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


def test_every_module_has_a_layer():
    for module in MODULES:
        layer_of(module)


def test_no_module_imports_a_higher_layer():
    upward = [
        f"{m} ({LAYERS[layer_of(m)][0]}) -> {t} ({LAYERS[layer_of(t)][0]})"
        for m, targets in GRAPH.items()
        for t in sorted(targets)
        if layer_of(t) < layer_of(m)
    ]
    assert upward == []


def test_no_import_circle():
    circles = sorted({tuple(sorted((a, b))) for a in GRAPH for b in _reach(a) if a != b and a in _reach(b)})
    assert circles == []


def test_no_private_name_crosses_modules():
    assert PRIVATE == []


# Functions still over the limit, each to be split; the list may only shrink (a new long function fails).
STILL_LONG: set[str] = set()


def test_no_library_function_over_60_lines():
    long = {entry.split(" (")[0] for entry in LONG}
    assert long - STILL_LONG == set()
    assert STILL_LONG - long == set(), "split already: take it off STILL_LONG"


def test_no_library_function_takes_more_than_8_positional_parameters():
    """More than 8 parameters only as keyword-only options (after ``*``), which a caller names one by one."""
    crowded = []
    for module, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                positional = [a for a in node.args.posonlyargs + node.args.args if a.arg not in ("self", "cls")]
                if len(positional) > 8:
                    crowded.append(f"{module}.{node.name} ({len(positional)})")
    assert crowded == []


def test_the_graph_sees_a_known_edge():
    """The scan itself works: the cli imports the leaderboard, the leaderboard the artefacts."""
    assert "pancap_retrieval.artifacts" in GRAPH["pancap_retrieval.leaderboard"]
    assert layer_of("pancap_retrieval.cli") < layer_of("pancap_retrieval.retrieval.metrics")
