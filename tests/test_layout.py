"""The house rules of the layout, read from the source: which unit may import which, no import cycle
(the ones hidden behind `importlib` strings included), module sizes, and light package `__init__` files."""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LEAVES = {"errors", "model", "states", "clock", "units", "i18n", "logs"}

# unit → the units it may import (besides itself). Leaves: the core's vocabulary, importable by all.
# The flow is intake → store → review → dispatch → channels, with lag reading the store; app/ holds the doors.
ALLOWED: dict[str, set[str]] = {
    "leaf": set(),
    "channels": {"leaf"},
    "config": {"leaf", "channels"},  # each adapter declares its own options model
    "store": {"leaf"},
    "review": {"leaf", "config", "store", "dispatch"},  # an approval plans its deliveries (dispatch.outbox)
    "intake": {"leaf", "config", "store", "review"},  # the screen runs as a revision is stored
    "dispatch": {"leaf", "config", "store", "channels"},
    "lag": {"leaf", "config", "store"},
    "stats": {"leaf", "config", "store", "lag"},  # the legal deadline counts working days (lag.workdays)
    "sandbox": {"leaf", "review"},  # the demo corpus plants numbers the screen must find
    "app": {"leaf", "channels", "config", "store", "intake", "review", "dispatch", "lag", "stats", "sandbox"},
    "main": {"app"},  # publisher/__main__.py
}
IMPORTLIB_TARGET = re.compile(r"^((?:publisher|channels)(?:\.\w+)+)(?::\w+)?$")


def modules() -> dict[str, Path]:
    found = {}
    for top in ("publisher", "channels"):
        for path in sorted((ROOT / top).rglob("*.py")):
            if "migrations" in path.parts:
                continue  # alembic loads these by path; they import only alembic and sqlalchemy
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


MODULES = modules()


def unit(module: str) -> str:
    parts = module.split(".")
    if parts[0] == "channels":
        return "channels"
    if len(parts) == 1 or parts[1] in LEAVES:
        return "leaf"
    if parts[1] == "__main__":
        return "main"
    return parts[1]


def resolve(name: str) -> str | None:
    """The project module an import name means (a module, or the package holding the imported name)."""
    while name:
        if name in MODULES:
            return name
        name = name.rpartition(".")[0]
    return None


def imports(module: str) -> Iterator[str]:
    """Every project module `module` imports at run time: module level and inside functions, but not
    under `if TYPE_CHECKING:`; plus the targets of importlib strings such as "channels.weibo:Weibo"."""
    tree = ast.parse(MODULES[module].read_text("utf-8"))
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip.update(id(n) for n in ast.walk(node))
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and (m := IMPORTLIB_TARGET.match(node.value)):
            names = [m.group(1)] if m.group(1) in MODULES or ":" in node.value else []
        for name in names:
            target = resolve(name)
            if target is not None and target != module and not module.startswith(target + "."):
                yield target


GRAPH = {m: sorted(set(imports(m))) for m in MODULES}


def test_each_unit_imports_only_the_units_below_it() -> None:
    """No unit reaches up the flow: the store imports no review, lag no dispatch, nothing imports the doors."""
    wrong = [f"{m} → {t}" for m, targets in GRAPH.items() for t in targets
             if unit(t) != unit(m) and unit(t) not in ALLOWED[unit(m)]]
    assert wrong == []


def test_channels_import_only_the_core_vocabulary() -> None:
    """The adapters see the model, the errors and the clock of the core, and nothing that imports them back."""
    core = {t for m, targets in GRAPH.items() if unit(m) == "channels" for t in targets if unit(t) != "channels"}
    assert core <= {"publisher.model", "publisher.states", "publisher.errors", "publisher.clock"}
    assert not [t for m in core for t in GRAPH[m] if unit(t) == "channels"]


def test_no_import_cycle() -> None:
    """No two modules import each other, directly or through others (Tarjan's strongly connected components)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in GRAPH[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in GRAPH:
        if v not in index:
            visit(v)
    assert cycles == []


@pytest.mark.parametrize(("top", "limit"), [("publisher", 400), ("channels", 300)])
def test_modules_stay_short(top: str, limit: int) -> None:
    """No module of the core over 400 lines, no adapter over 300."""
    long = {str(p.relative_to(ROOT)): n for p in (ROOT / top).rglob("*.py")
            if (n := len(p.read_text("utf-8").splitlines())) > limit}
    assert long == {}


def test_package_inits_say_what_they_own_and_import_nothing() -> None:
    """Each subpackage's __init__ has a docstring and no imports, so that `publisher lag` starts fast."""
    for path in sorted((ROOT / "publisher").rglob("__init__.py")):
        if "migrations" in path.parts:
            continue
        tree = ast.parse(path.read_text("utf-8"))
        assert ast.get_docstring(tree), f"{path.relative_to(ROOT)} has no docstring"
        if path.parent.name != "sandbox":  # the stand-ins' server; never on the CLI's path
            assert not [n for n in ast.walk(tree) if isinstance(n, ast.Import | ast.ImportFrom)], path


def test_graph_is_read() -> None:
    """The checks above see the real imports (a parser that found nothing would pass them all)."""
    assert "publisher.store.db" in GRAPH["publisher.dispatch.dispatcher"]
    assert "channels.wordpress" in GRAPH["channels.registry"]  # the registry's importlib strings count
    assert "publisher.app.web.dashboard" in GRAPH["publisher.app.web.app"]
