"""The host's modules stay small and read in one direction: each 250 lines or fewer, no module
imports one that imports it back, directly or through others (imports inside functions count as
well), and the layers the README names (HTTP, guest runtime, host functions, database, and the
modules they share) import downward only. The guest's Rust modules read in one direction too."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

SERVICE = Path(__file__).resolve().parent.parent / "service"
GUEST_SRC = SERVICE.parent / "guest" / "src"
MODULES = sorted(SERVICE.glob("*.py"))
MAX_LINES = 250
README = SERVICE.parent / "README.md"
LAYERS = ("HTTP", "Guest runtime", "Host functions", "Database")


def _imports(path: Path) -> set[str]:
    """The modules of the package that `path` imports, by file stem."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.ImportFrom):
            if node.level == 1 and node.module:  # from ._x import y
                found.add(node.module.split(".")[0])
            elif node.level == 1:  # from . import _x
                found.update(alias.name for alias in node.names)
            elif node.level == 0 and node.module and node.module.split(".")[0] == "service":
                parts = node.module.split(".")
                found.add(parts[1] if len(parts) > 1 else "__init__")
        elif isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] == "service":
                    found.add(parts[1] if len(parts) > 1 else "__init__")
    names = {p.stem for p in MODULES}
    return {name for name in found if name in names and name != path.stem}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(name: str) -> None:
        index[name] = low[name] = len(index)
        stack.append(name)
        on_stack.add(name)
        for other in sorted(graph[name]):
            if other not in index:
                visit(other)
                low[name] = min(low[name], low[other])
            elif other in on_stack:
                low[name] = min(low[name], index[other])
        if low[name] == index[name]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == name:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for name in sorted(graph):
        if name not in index:
            visit(name)
    return components


def test_the_checker_finds_a_cycle_through_several_modules() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert _cycles(graph) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_the_checker_sees_every_kind_of_import() -> None:
    imports = _imports(SERVICE / "_guest.py")
    assert {"_abi", "_instance_pool", "_compile"} <= imports  # `from ._x import`, and one inside a function
    assert "_malloc" in _imports(SERVICE / "_instance_pool.py")  # `from . import _x`


def test_no_module_imports_one_that_imports_it_back() -> None:
    graph = {path.stem: _imports(path) for path in MODULES}
    assert _cycles(graph) == []


def _readme_layers() -> dict[str, list[str]]:
    """The modules the README's "How it fits together" puts in each layer and among the shared
    ones (the `service/` row: `**HTTP:** `_app.py` ...`), by file stem."""
    row = next(line for line in README.read_text(encoding="utf-8").splitlines() if line.startswith("| `service/` |"))
    parts = re.split(r"\*\*(" + "|".join([*LAYERS, "Shared"]) + r"):\*\*", row)
    sections = dict(zip(parts[1::2], parts[2::2], strict=True))
    sections["Shared"] = sections["Shared"].split(" And ")[0]
    return {name: re.findall(r"`(_[a-z_]+)\.py`", text) for name, text in sections.items()}


def test_the_readme_puts_every_module_in_one_place() -> None:
    layers = _readme_layers()
    assert list(layers) == [*LAYERS, "Shared"]
    named = [name for names in layers.values() for name in names]
    assert sorted(named) == sorted(p.stem for p in MODULES if p.stem not in ("__init__", "__main__"))


def _upward(layers: dict[str, list[str]], imports: dict[str, set[str]]) -> list[str]:
    """Every import against the direction: a module of a layer importing one of an earlier
    layer, or a shared module importing any layer's module."""
    layers = dict(layers)
    shared = set(layers.pop("Shared"))
    rank = {name: i for i, names in enumerate(layers.values()) for name in names}
    upward = []
    for name in sorted(imports):
        for other in sorted(imports[name]):
            if other not in rank:
                continue
            if name in shared or (name in rank and rank[other] < rank[name]):
                upward.append(f"{name} imports {other}")
    return upward


def test_the_layers_import_downward_only() -> None:
    """HTTP → guest runtime → host functions → database: a module imports modules of its own
    layer, of a layer after it, and shared ones; a shared module imports no layer's module."""
    assert _upward(_readme_layers(), {path.stem: _imports(path) for path in MODULES}) == []


def test_the_direction_check_sees_an_upward_import() -> None:
    layers = {"HTTP": ["_app"], "Guest runtime": ["_guest"], "Host functions": ["_hostfuncs"], "Shared": ["_limits"]}
    allowed = {"_app": {"_guest", "_limits"}, "_guest": {"_hostfuncs", "_limits"}, "_hostfuncs": set(), "_limits": set()}
    assert _upward(layers, allowed) == []
    assert _upward(layers, {**allowed, "_hostfuncs": {"_app"}}) == ["_hostfuncs imports _app"]
    assert _upward(layers, {**allowed, "_limits": {"_hostfuncs"}}) == ["_limits imports _hostfuncs"]


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.name)
def test_a_module_is_250_lines_or_fewer(path: Path) -> None:
    lines = len(path.read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_LINES, f"{path.name} has {lines} lines"


def _rust_uses(path: Path, names: set[str], prefix: str = "crate") -> set[str]:
    """The modules among `names` that a Rust file refers to: `crate::x`, and `use crate::{x,
    y::z}` (with `prefix` "crate::kit", the kit's own modules; `super::x` there too)."""
    text = path.read_text(encoding="utf-8")
    escaped = re.escape(prefix)
    found = set(re.findall(rf"\b{escaped}::([a-z_][a-z0-9_]*)", text))
    for group in re.findall(rf"\b{escaped}::\{{([^}}]*)\}}", text):
        found.update(item.strip().split("::")[0] for item in group.split(",") if item.strip())
    if prefix != "crate":
        found.update(re.findall(r"\bsuper::([a-z_][a-z0-9_]*)", text))
    return {name for name in found if name in names and name != path.stem}


def test_no_guest_module_uses_one_that_uses_it_back() -> None:
    """The logic's modules, the kit counted as one of them."""
    names = {p.stem for p in GUEST_SRC.glob("*.rs")} | {"kit"}
    graph = {path.stem: _rust_uses(path, names) for path in GUEST_SRC.glob("*.rs") if path.stem != "lib"}
    graph["kit"] = set()  # it uses none of them (below)
    graph = {name: uses & set(graph) for name, uses in graph.items()}
    assert _cycles(graph) == []
    assert "legacy" in graph["api"] and "order" in graph["store"]  # the reading sees both forms
    assert "kit" in graph["api"] and "kit" in graph["store"]


def test_the_kit_uses_no_module_of_the_logic() -> None:
    """guest/src/kit/ is the ABI's plumbing alone: any guest's logic can sit on it."""
    logic = {p.stem for p in GUEST_SRC.glob("*.rs")} - {"lib"}
    kit_files = sorted((GUEST_SRC / "kit").glob("*.rs"))
    assert {p.stem for p in kit_files} >= {"mod", "db", "envelope", "wasm"}
    for path in kit_files:
        assert not _rust_uses(path, logic), f"kit/{path.name} uses the logic"
    inner = {p.stem for p in kit_files} - {"mod"}
    graph = {p.stem: _rust_uses(p, inner, "crate::kit") for p in kit_files if p.stem != "mod"}
    assert _cycles(graph) == []
    assert "db" in graph["wasm"]  # the reading sees `super::`
