"""The shape of the code, checked: no package import cycles, dependencies
pointing one way (api -> services -> domain -> ports -> base; adapters use
only ports, domain and base; only the composition root sees everything), and
no module over 500 lines.

Imports are read with :mod:`ast` from the source, late (function-level)
imports included: a cycle hidden inside a function is still a cycle.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PKG = ROOT / "chalicelib"
MAX_LINES = 500

#: Layers, top to bottom. A module may import its own layer or any lower one.
#: Matched by the longest prefix of the dotted module name.
LAYERS: dict[str, int] = {
    # the edge: HTTP routes and the composition root that wires them
    "chalicelib.container": 9,
    "chalicelib.api": 9,
    "chalicelib.services": 8,
    # adapters: DynamoDB, SNS, SQS, HTTP
    "chalicelib.store": 7,
    "chalicelib.push.sns": 7,
    "chalicelib.push.platform_apps": 7,
    "chalicelib.weather.fanout": 7,
    "chalicelib.weather.poller": 7,
    "chalicelib.weather.zones": 7,
    # the ports and the records they exchange
    "chalicelib.ports": 6,
    # domain: pure rules
    "chalicelib.push": 4,
    "chalicelib.weather": 4,
    "chalicelib.geo": 4,
    "chalicelib.presence": 4,
    "chalicelib.retention": 4,
    # base: configuration, errors, time, validation, observability
    "chalicelib.observability": 2,
    "chalicelib.logs": 2,
    "chalicelib.metrics": 2,
    "chalicelib.settings": 2,
    "chalicelib.auth": 1,
    "chalicelib.retry": 1,
    "chalicelib.clock": 1,
    "chalicelib.validation": 1,
    "chalicelib.errors": 0,
    "chalicelib.timeutil": 0,
    "chalicelib": 0,
}
ADAPTERS = 7


def _modules() -> dict[str, Path]:
    out = {}
    for path in PKG.rglob("*.py"):
        rel = path.relative_to(ROOT).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


MODULES = _modules()


def _type_checking_only(tree: ast.AST) -> set[int]:
    """ids of the import nodes under ``if TYPE_CHECKING:`` (annotations only)."""
    out: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and getattr(node.test, "id", getattr(node.test, "attr", None)) == "TYPE_CHECKING":
            out |= {id(n) for stmt in node.body for n in ast.walk(stmt)}
    return out


def _all_imports(path: Path) -> list[tuple[ast.AST, list[str]]]:
    """Every runtime import statement of a file (late ones included) with the
    dotted names it imports."""
    tree = ast.parse(path.read_text(), str(path))
    skip = _type_checking_only(tree)
    out = []
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            out.append((node, [a.name for a in node.names]))
        elif isinstance(node, ast.ImportFrom):
            out.append((node, [node.module or ""]))
    return out


def _imports(name: str, path: Path) -> set[str]:
    """chalicelib modules ``name`` imports at run time (resolved to modules that exist)."""
    tree = ast.parse(path.read_text(), str(path))
    skip = _type_checking_only(tree)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            targets = [f"{base}.{a.name}" for a in node.names] + [base]
        for t in targets:
            if not t.startswith("chalicelib"):
                continue
            while t and t not in MODULES:
                t = t.rpartition(".")[0]
            if t and t != name:
                found.add(t)
    return found


GRAPH = {name: _imports(name, path) for name, path in MODULES.items()}


def _layer(module: str) -> int:
    best = max((p for p in LAYERS if module == p or module.startswith(p + ".")), key=len)
    return LAYERS[best]


def _package(module: str) -> str:
    """The unit of the cycle check: chalicelib's subpackages, and each
    top-level module on its own."""
    parts = module.split(".")
    if len(parts) >= 2 and (PKG / parts[1]).is_dir():
        return ".".join(parts[:2])
    return module


def test_every_module_has_a_layer():
    missing = [m for m in MODULES if m != "chalicelib" and max(
        (p for p in LAYERS if m == p or m.startswith(p + ".")), key=len) == "chalicelib"]
    assert missing == [], f"give these modules a layer in LAYERS: {missing}"


def test_dependencies_point_down():
    wrong = sorted(
        f"{src} ({_layer(src)}) imports {dst} ({_layer(dst)})"
        for src, dsts in GRAPH.items()
        for dst in dsts
        if _layer(dst) > _layer(src) and dst != "chalicelib"
    )
    assert wrong == []


def test_adapters_do_not_use_services_or_each_other_across_kinds():
    wrong = sorted(
        f"{src} imports {dst}"
        for src, dsts in GRAPH.items()
        if _layer(src) == ADAPTERS
        for dst in dsts
        if _layer(dst) >= ADAPTERS and _package(dst) != _package(src)
    )
    assert wrong == []


def test_no_package_cycles():
    edges: dict[str, set[str]] = {}
    for src, dsts in GRAPH.items():
        for dst in dsts:
            a, b = _package(src), _package(dst)
            if a != b and dst != "chalicelib":
                edges.setdefault(a, set()).add(b)
    # Tarjan-free: a DFS that reports the first cycle it walks into.
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state:
            cycle = visit(node)
            assert cycle is None, " -> ".join(cycle)


#: What only adapters and the composition root may import.
SDKS = ("boto3", "botocore", "chalice", "requests", "moto")


def test_domain_and_services_use_no_sdk():
    """AWS, HTTP and the web framework stay in the adapters, the api and the
    composition root: the rules and use cases run the same over fakes."""
    wrong = sorted(
        f"{name} imports {target}"
        for name, path in MODULES.items()
        if _layer(name) < ADAPTERS or name.startswith("chalicelib.services")
        for _, targets in _all_imports(path)
        for target in targets
        if target.split(".")[0] in SDKS
    )
    assert wrong == []


@pytest.mark.parametrize("module", sorted(MODULES))
def test_module_size(module):
    lines = MODULES[module].read_text().count("\n")
    assert lines <= MAX_LINES, f"{module} has {lines} lines (at most {MAX_LINES}): split it by responsibility"
