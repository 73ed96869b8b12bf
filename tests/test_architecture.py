"""The one-way architecture, checked: no lower layer imports a higher one, and no import cycles.

Layers, lowest first (README "Layout"): base (errors, time, traces, analysis, profiles, the
evidence format) <- drivers (PLC, instruments, station addresses, the emulated bench) <- bench
(the Table role, provisioning) <- procedures <- plugin, fixtures and suites <- outputs <- CLI.
Every import counts, including those inside functions: a lazy import is still a dependency.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

LAYERS: list[tuple[str, int]] = [
    ("rig.errors", 0),
    ("rig.wait", 0),
    ("rig.trace", 0),
    ("rig.analysis", 0),
    ("rig.plots", 0),
    ("rig.profiles", 0),
    ("rig.line", 0),
    ("rig.evidence", 0),
    ("rig.plc", 1),
    ("rig.instruments", 1),
    ("rig.station", 1),
    ("rig.emulators", 1),
    ("rig.bench", 2),
    ("rig.procedures", 3),
    ("rig.plugin", 4),
    ("rig.fixtures", 4),
    ("suites", 4),
    ("rig.outputs", 5),
    ("rig.cli", 6),
    ("rig.matrix", 6),
    ("rig.operator", 6),
    ("rig.__main__", 6),
]
LAYER_NAMES = ["base", "drivers", "bench", "procedures", "plugin", "outputs", "cli"]

# Narrower rules from CONVENTIONS.md on top of the layers.
FORBIDDEN: list[tuple[str, str, str]] = [
    ("suites", "rig.emulators", "suites never import emulators"),
    ("rig.procedures", "rig.emulators", "procedures never import emulators"),
    ("rig.plc", "rig.emulators", "drivers never import emulators"),
    ("rig.instruments", "rig.emulators", "drivers never import emulators"),
    ("rig.evidence", "rig.profiles", "the evidence format depends on nothing but errors"),
]
NO_PYTEST = (
    "rig.errors",
    "rig.wait",
    "rig.trace",
    "rig.analysis",
    "rig.profiles",
    "rig.evidence",
    "rig.plc",
    "rig.instruments",
    "rig.station",
    "rig.emulators",
    "rig.bench",
    "rig.procedures",
)


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    files = [*ROOT.joinpath("rig").rglob("*.py"), *ROOT.joinpath("suites").rglob("*.py")]
    return {_module_name(p): p for p in sorted(files)}


def _imports(name: str, path: Path) -> Iterator[tuple[str, int]]:
    """Every module name imported by one file, with its line (relative imports resolved)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            yield target, node.lineno
            for alias in node.names:
                # `from . import analysis` imports a module, not a name
                yield f"{target}.{alias.name}", node.lineno


def _resolve(target: str, modules: dict[str, Path]) -> str | None:
    """The project module an import names (a name imported from a module resolves to it)."""
    while target:
        if target in modules:
            return target
        target = target.rpartition(".")[0]
    return None


def _layer(module: str) -> int | None:
    best: tuple[int, int] | None = None
    for prefix, rank in LAYERS:
        if module == prefix or module.startswith(prefix + "."):
            if best is None or len(prefix) > best[0]:
                best = (len(prefix), rank)
    return None if best is None else best[1]


def _graph() -> dict[str, dict[str, int]]:
    modules = _modules()
    graph: dict[str, dict[str, int]] = {}
    for name, path in modules.items():
        edges: dict[str, int] = {}
        for target, line in _imports(name, path):
            dep = _resolve(target, modules)
            if dep is not None and dep != name and not name.startswith(dep + "."):
                edges.setdefault(dep, line)
        graph[name] = edges
    return graph


def _in(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def test_every_module_has_a_layer():
    missing = [m for m in _modules() if m not in ("rig", "suites") and _layer(m) is None]
    assert not missing, f"modules with no layer in tests/test_architecture.py: {missing}"


def test_no_lower_layer_imports_a_higher_one():
    bad = []
    for name, edges in _graph().items():
        mine = _layer(name)
        if mine is None:
            continue
        for dep, line in edges.items():
            theirs = _layer(dep)
            if theirs is not None and theirs > mine:
                bad.append(
                    f"{_modules()[name].relative_to(ROOT)}:{line}: {name} ({LAYER_NAMES[mine]}) "
                    f"imports {dep} ({LAYER_NAMES[theirs]})"
                )
    assert not bad, "imports against the layers:\n" + "\n".join(bad)


@pytest.mark.parametrize(("importer", "imported", "why"), FORBIDDEN)
def test_forbidden_imports(importer, imported, why):
    bad = [
        f"{name} imports {dep} (line {line})"
        for name, edges in _graph().items()
        if _in(name, importer)
        for dep, line in edges.items()
        if _in(dep, imported)
    ]
    assert not bad, f"{why}: " + "; ".join(bad)


def test_lower_layers_do_not_import_pytest():
    modules = _modules()
    bad = [
        name
        for name, path in modules.items()
        if any(_in(name, p) for p in NO_PYTEST)
        for target, _ in _imports(name, path)
        if target == "pytest" or target.startswith(("pytest.", "_pytest"))
    ]
    assert not bad, f"pytest imported below the plugin layer: {sorted(set(bad))}"


def test_no_import_cycles():
    graph = _graph()
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, {}):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    assert not cycles, f"import cycles: {cycles}"


def test_the_checker_sees_a_cycle_and_a_relative_import(tmp_path):
    """The checker itself can fail: a relative import resolves, and a cycle is found."""
    pkg = tmp_path / "rig" / "sub"
    pkg.mkdir(parents=True)
    (tmp_path / "rig" / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from .b import x\n")
    (pkg / "b.py").write_text("from rig.sub import a\n")
    modules = {"rig.sub.a": pkg / "a.py", "rig.sub.b": pkg / "b.py", "rig.sub": pkg}
    a = {_resolve(t, modules) for t, _ in _imports("rig.sub.a", pkg / "a.py")}
    b = {_resolve(t, modules) for t, _ in _imports("rig.sub.b", pkg / "b.py")}
    assert "rig.sub.b" in a and "rig.sub.a" in b
    assert _layer("rig.outputs.certificate.pdf") == 5 and _layer("rig.plc") == 1
