"""The code-shape rules, read from the source with `ast` (no imports run, no services needed):

- no import cycle between the project's apps (every import counts, wherever it stands);
- no import statement inside a function or method (the tests included);
- each external system is reached through its one boundary module only.

An app is a top-level package of the repository. The root URLconf (ROOT_URLCONF) is not part
of its package here: it includes every app's URLs by design, so it is a node of its own that
nothing may import.
"""

import ast
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from django.conf import settings

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = frozenset(p.parent.name for p in ROOT.glob("*/__init__.py"))
URLCONF = settings.ROOT_URLCONF

# Imports inside functions that cannot move to the top of their module, with the reason.
# localservices sets the MAILADMIN_* environment (free ports, a state directory) that
# mailadmin.settings reads once, when first imported; its modules that import the settings
# are themselves imported only after that.
LAZY_IMPORTS_ALLOWED = {
    "localservices/__main__.py": {
        "localservices.process",
        "localservices.postfix",
        "localservices.redis",
        "localservices.slapd",
        "localservices.postgres",
        "mailadmin",
    },
    "localservices/outside.py": {"mailadmin"},
}

# External system → (the client libraries that speak to it, the project modules that may import them).
# The test harness (localservices, tests) and the benchmarks start and drive the real daemons
# themselves and are not held to this.
BOUNDARIES = {
    "LDAP": ({"ldap3", "ldap", "django_auth_ldap"}, {"accounts/directory.py"}),
    "Redis": ({"redis"}, {"mailadmin/redis_store.py"}),
    "Postfix commands": ({"subprocess"}, {"postfix/postmap.py"}),
    "SMTP": ({"smtplib"}, {"mailadmin/outgoing_mail.py"}),
}
OUTSIDE_BOUNDARIES = ("localservices/", "benchmarks/", "tests/")
# Imports by name at run time, which the rules above cannot see: only where the features
# listed in the settings are loaded (the explicit interface of postfix/features.py).
DYNAMIC_IMPORTS = frozenset({"import_module", "__import__", "import_string"})
DYNAMIC_IMPORTS_ALLOWED = {"postfix/features.py"}


@dataclass(frozen=True)
class Import:
    path: str  # of the importing file, relative to the repository
    line: int
    module: str  # the imported module, absolute
    in_function: bool


def _module_of(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> Iterator[Import]:
    rel = str(path.relative_to(ROOT))
    package = _module_of(path) if path.name == "__init__.py" else _module_of(path).rpartition(".")[0]

    def visit(node: ast.AST, in_function: bool) -> Iterator[Import]:
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Import(rel, node.lineno, alias.name, in_function)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            # `from package import module` imports the submodule when there is one.
            names = [f"{base}.{alias.name}" for alias in node.names]
            for name in names:
                submodule = ROOT / Path(*name.split("."))
                is_module = submodule.with_suffix(".py").exists() or (submodule / "__init__.py").exists()
                yield Import(rel, node.lineno, name if is_module else base, in_function)
        for child in ast.iter_child_nodes(node):
            inside = in_function or isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
            yield from visit(child, inside)

    yield from visit(ast.parse(path.read_text(), str(path)), False)


def _project_files() -> list[Path]:
    """The apps' files and the tests (the tests are no app: they import apps, and no app them)."""
    return sorted(p for p in ROOT.glob("*/**/*.py") if p.relative_to(ROOT).parts[0] in PACKAGES | {"tests"})


IMPORTS = [imp for path in _project_files() for imp in _imports(path)]


def _node(module: str) -> str | None:
    """The app a module belongs to (None outside the project); the root URLconf is its own node."""
    if module == URLCONF or module.startswith(URLCONF + "."):
        return URLCONF
    top = module.partition(".")[0]
    return top if top in PACKAGES else None


def _app_graph() -> dict[str, dict[str, list[Import]]]:
    graph: dict[str, dict[str, list[Import]]] = defaultdict(lambda: defaultdict(list))
    for imp in IMPORTS:
        source, target = _node(_module_of(ROOT / imp.path)), _node(imp.module)
        if source is not None and target is not None and source != target:
            graph[source][target].append(imp)
    return graph


def _cycles(graph: dict[str, dict[str, list[Import]]]) -> list[list[str]]:
    """The strongly connected components of more than one app (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in graph.get(node, {}):
            if target not in index:
                connect(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            connect(node)
    return found


def test_the_checker_sees_the_apps_and_their_imports() -> None:
    graph = _app_graph()
    assert {"accounts", "aliases", "postfix", "mailadmin"} <= PACKAGES
    assert "accounts" in graph["aliases"]
    assert any(imp.path == "tests/conftest.py" for imp in IMPORTS)
    assert "api" in graph[URLCONF]  # the root URLconf imports the API views
    # A cycle made up here is found, with its members.
    made_up = {"a": {"b": []}, "b": {"c": []}, "c": {"a": []}, "d": {"a": []}}
    assert _cycles(made_up) == [["a", "b", "c"]]  # type: ignore[arg-type]


def test_no_import_cycle_between_apps() -> None:
    graph = _app_graph()
    report = []
    for component in _cycles(graph):
        report.append(" <-> ".join(component))
        for source in component:
            for target in component:
                for imp in graph[source].get(target, []):
                    report.append(f"    {imp.path}:{imp.line} {source} -> {target} ({imp.module})")
    assert not report, "import cycles between apps:\n" + "\n".join(report)


def test_nothing_imports_the_root_urlconf() -> None:
    importers = [f"{imp.path}:{imp.line}" for imp in IMPORTS if _node(imp.module) == URLCONF]
    assert not importers


def test_no_import_inside_a_function() -> None:
    found = [f"{imp.path}:{imp.line} {imp.module}" for imp in IMPORTS if imp.in_function and not _allowed_lazy(imp)]
    assert not found, "imports inside functions:\n" + "\n".join(found)


def _allowed_lazy(imp: Import) -> bool:
    allowed = LAZY_IMPORTS_ALLOWED.get(imp.path, set())
    return any(imp.module == name or imp.module.startswith(name + ".") for name in allowed)


@pytest.mark.parametrize("system", sorted(BOUNDARIES))
def test_an_external_system_is_reached_through_its_boundary_only(system: str) -> None:
    libraries, boundary = BOUNDARIES[system]
    outside = [
        f"{imp.path}:{imp.line} {imp.module}"
        for imp in IMPORTS
        if imp.module.partition(".")[0] in libraries
        and imp.path not in boundary
        and not imp.path.startswith(OUTSIDE_BOUNDARIES)
    ]
    assert not outside, f"{system} reached outside {', '.join(sorted(boundary))}:\n" + "\n".join(outside)


def test_modules_are_imported_by_name_only_where_the_settings_list_features() -> None:
    found = []
    for path in _project_files():
        rel = str(path.relative_to(ROOT))
        if rel in DYNAMIC_IMPORTS_ALLOWED or rel.startswith(OUTSIDE_BOUNDARIES):
            continue
        for node in ast.walk(ast.parse(path.read_text(), rel)):
            name = node.id if isinstance(node, ast.Name) else node.attr if isinstance(node, ast.Attribute) else None
            if name in DYNAMIC_IMPORTS:
                found.append(f"{rel}:{node.lineno} {name}")  # type: ignore[attr-defined]
    assert not found, "modules imported by name:\n" + "\n".join(found)
