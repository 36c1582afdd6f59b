"""The house's layout (docs/architecture.md): no import circle between the apps' modules, the
kernel imports no app, the data plane imports no Django, and no module passes 600 lines.

The imports are read from the source (every ``import`` statement, at module level or inside
a function: a function-local import can hide a circle as well as reveal one), except those
under ``if TYPE_CHECKING:``, which never run. Importing ``a.b.c`` also runs ``a/__init__.py``
and ``a/b/__init__.py``, so those count as imported too, unless the importer is inside them.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
APPS = ("portal", "vaults", "policies", "guards")
# The kernel is portal but for the Backup center, the one room of portal that reads the apps.
SITE = "portal.center"
MAX_LINES = 600


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _app_modules() -> dict[str, Path]:
    return {
        _module_name(path): path
        for app in APPS
        for path in (ROOT / app).rglob("*.py")
        if "migrations" not in path.parts
    }


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import statement that can run: none under ``if TYPE_CHECKING:``."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and _is_type_checking(node):
            yield from (imp for other in node.orelse for imp in _imports(ast.Module([other], [])))
            continue
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        yield from _imports(node)


def _targets(module: str, is_package: bool, node: ast.Import | ast.ImportFrom) -> set[str]:
    """The modules an import statement names (a ``from x import y`` names ``x.y`` when that
    is a module, else ``x``)."""
    if isinstance(node, ast.Import):
        return {alias.name for alias in node.names}
    base = node.module or ""
    if node.level:
        package = module.split(".") if is_package else module.split(".")[:-1]
        anchor = package[: len(package) - (node.level - 1)]
        base = ".".join(anchor + ([base] if base else []))
    return {base} | {f"{base}.{alias.name}" for alias in node.names}


def import_graph() -> dict[str, set[str]]:
    """Module -> the app modules importing it runs (its targets and their packages)."""
    modules = _app_modules()
    graph: dict[str, set[str]] = {}
    for module, path in modules.items():
        is_package = path.name == "__init__.py"
        edges: set[str] = set()
        for node in _imports(ast.parse(path.read_text())):
            for target in _targets(module, is_package, node):
                parts = target.split(".")
                for i in range(1, len(parts) + 1):
                    name = ".".join(parts[:i])
                    inside = module == name or module.startswith(name + ".")
                    if name in modules and not inside:
                        edges.add(name)
        graph[module] = edges
    return graph


def _circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), or a self-import."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1 or node in graph.get(node, ()):
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_import_circle_between_app_modules() -> None:
    assert _circles(import_graph()) == []


def test_the_circle_finder_finds_a_circle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _circles(graph) == [["a", "b", "c"]]


def test_the_kernel_imports_no_app() -> None:
    graph = import_graph()
    kernel = [m for m in graph if m.split(".")[0] == "portal" and not m.startswith(SITE)]
    assert "portal.gate" in kernel and "portal.urls" in kernel
    offenders = {
        module: sorted(t for t in graph[module] if t.split(".")[0] in APPS[1:]) for module in kernel
    }
    assert {m: t for m, t in offenders.items() if t} == {}


def test_the_data_plane_imports_no_django_and_no_app() -> None:
    for path in (ROOT / "vaults" / "storage").rglob("*.py"):
        for node in _imports(ast.parse(path.read_text())):
            for target in _targets(_module_name(path), path.name == "__init__.py", node):
                top = target.split(".")[0]
                assert top != "django" and (
                    top not in APPS or target.startswith("vaults.storage")
                ), f"{path.relative_to(ROOT)} imports {target}"


def test_no_module_over_600_lines_outside_migrations_and_tests() -> None:
    paths = [*ROOT.glob("*.py"), *(p for d in (*APPS, "bench") for p in (ROOT / d).rglob("*.py"))]
    long = {
        str(path.relative_to(ROOT)): lines
        for path in paths
        if "migrations" not in path.parts
        and (lines := len(path.read_text().splitlines())) > MAX_LINES
    }
    assert long == {}
