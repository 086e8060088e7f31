"""The library reads as layers: no module of tokenizer_cli/ imports, at module level or inside a function, one that
imports it back (directly or through others), and no module imports one of a layer above its own.

The graph is read from the source with `ast`, so an import hidden inside a function counts as much as one at the
top; only `if TYPE_CHECKING:` blocks (annotations, never run) are left out."""

from __future__ import annotations

import ast
from fnmatch import fnmatch
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "tokenizer_cli"

# Lowest first; a module may import its own layer (without a cycle) and those below it. The package itself
# (`tokenizer_cli`, its __init__) re-exports the pipeline.
LAYERS = [
    ("foundations", ["version", "config", "images", "data", "files", "progress", "distributed"]),
    ("networks", ["quantizers", "quantizers.*", "models", "models.*"]),
    ("loading and saving", ["cards", "hub", "checkpoint", "tokenfile", "datasets", "fitting"]),
    ("inference and measures", ["inference", "partial", "fd", "classifier"]),
    ("evaluation and training (on a loaded pipeline)", ["evaluate", "explore", "benchmark", "losses", "train"]),
    ("pipeline", ["pipeline", ""]),
    ("CLI", ["cli", "cli.*", "__main__"]),
]


def module_name(path: Path) -> str:
    """tokenizer_cli/models/prior.py -> 'models.prior'; a package's __init__ is the package ('' for the root)."""
    parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path, modules: set[str]) -> set[str]:
    """The package's modules that `path` imports anywhere but under `if TYPE_CHECKING:`."""
    me = module_name(path)
    package = me.split(".") if path.name == "__init__.py" else me.split(".")[:-1]
    package = [p for p in package if p]
    found: set[str] = set()

    def target(node: ast.ImportFrom) -> str | None:
        if node.level:
            base = package[: len(package) - (node.level - 1)]
            return ".".join(base + ([node.module] if node.module else []))
        if node.module == PACKAGE.name or (node.module or "").startswith(PACKAGE.name + "."):
            return node.module[len(PACKAGE.name) + 1:]
        return None

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                for other in child.orelse:
                    visit(other)
                continue
            if isinstance(child, ast.ImportFrom) and (base := target(child)) is not None:
                for alias in child.names:  # `from . import data` imports the module data
                    sub = f"{base}.{alias.name}".lstrip(".")
                    found.add(sub if sub in modules else base)
            elif isinstance(child, ast.Import):
                for alias in child.names:
                    if alias.name == PACKAGE.name or alias.name.startswith(PACKAGE.name + "."):
                        found.add(alias.name[len(PACKAGE.name) + 1:])
            visit(child)

    visit(ast.parse(path.read_text(), str(path)))
    return {m for m in found if m in modules and m != me}


def import_graph() -> dict[str, set[str]]:
    files = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    return {name: imports_of(path, set(files)) for name, path in files.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as [a, b, ..., a], or None."""
    state: dict[str, str] = {}  # "open" while on the path, "done" after

    def walk(node: str, path: list[str]) -> list[str] | None:
        state[node] = "open"
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (cycle := walk(nxt, path + [nxt])):
                return cycle
        state[node] = "done"
        return None

    for start in sorted(graph):
        if start not in state and (cycle := walk(start, [start])):
            return cycle
    return None


def qualified(module: str) -> str:
    return f"{PACKAGE.name}.{module}" if module else PACKAGE.name


def layer_of(module: str) -> int:
    for i, (_, patterns) in enumerate(LAYERS):
        if any(fnmatch(module, p) for p in patterns):
            return i
    raise AssertionError(f"{qualified(module)} is in no layer: add it to LAYERS in {Path(__file__).name}")


def test_the_package_imports_without_a_cycle():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(map(qualified, cycle))


def test_each_module_imports_only_its_own_layer_and_those_below():
    wrong = [f"{qualified(m)} ({LAYERS[layer_of(m)][0]}) imports {qualified(t)} ({LAYERS[layer_of(t)][0]})"
             for m, targets in sorted(import_graph().items()) for t in sorted(targets) if layer_of(t) > layer_of(m)]
    assert not wrong, "imports up the layers:\n" + "\n".join(wrong)


def test_the_graph_sees_imports_inside_functions_and_skips_type_checking():
    """The reader itself: a cycle hidden by an import inside a function is found; one under TYPE_CHECKING is not."""
    graph = import_graph()
    assert "hub" in graph["pipeline"] and "models" in graph["pipeline"]  # models: imported inside from_pretrained
    assert "pipeline" not in graph["evaluate"]  # only under TYPE_CHECKING
    assert "data" in graph["datasets"]  # `from . import data as data_io`
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None
