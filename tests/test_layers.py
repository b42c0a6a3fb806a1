"""The shape of ``daemon/``: each package imports only packages below it, and nothing imports in a cycle.

A newcomer should find each step of a message's way under the name of that step, and a change to
a stage should not ripple into the parts it builds on. This test reads every import statement
(``TYPE_CHECKING`` and function-level imports included) and fails on an edge that runs upwards.
Run ``python -m tests.test_layers`` to print the package graph.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "daemon"

# Lowest first. A package may import its own layer's leaf modules only where listed in SAME_LAYER.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("errors", "cpu", "logs", "metrics", "config"),  # no Mailsense imports but each other's
    ("db",),  # tables, sessions, the embedded server, the queue SQL
    ("mail", "imap"),  # bytes and text of mail; talking to a mailbox
    ("pipeline", "spam", "kb"),  # the stage protocol and workers; the spam model; the knowledge base
    ("ingest", "parse", "classify", "filing", "drafts", "training"),  # one package per stage, and training
    ("learning", "review", "delivery"),  # labels and retraining; a person's review of drafts; replies sent
    ("stages", "status", "health", "service", "cli", "schedule", "web"),  # wiring and commands
)
SAME_LAYER = {("logs", "errors"), ("health", "metrics"), ("cli", "service"), ("cli", "status"), ("service", "health"),
              ("service", "stages"), ("config", "errors"), ("service", "schedule"), ("service", "web"),
              ("cli", "web"), ("cli", "schedule"), ("status", "schedule"), ("schedule", "stages"),
              ("review", "learning"), ("imap", "mail"),
              ("delivery", "review")}


def package_of(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != "daemon":
        return None
    return parts[1] if len(parts) > 1 else ""


def import_graph() -> dict[str, set[str]]:
    """Package -> packages it imports (``daemon.x.y`` counts as ``x``)."""
    edges: dict[str, set[str]] = defaultdict(set)
    for path in ROOT.rglob("*.py"):
        relative = path.relative_to(ROOT)
        source = relative.parts[0].removesuffix(".py")
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets: list[str] = []
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [node.module] if node.module != "daemon" else [f"daemon.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            for target in targets:
                package = package_of(target)
                if package and package != source:
                    edges[source].add(package)
    return edges


def layer_of(package: str) -> int:
    for index, layer in enumerate(LAYERS):
        if package in layer:
            return index
    raise AssertionError(f"daemon/{package} is in no layer: add it to LAYERS in {__file__}")


def test_every_package_has_a_layer() -> None:
    for path in ROOT.iterdir():
        if path.name.startswith(("_", ".")) or path.name == "data" or path.suffix not in ("", ".py"):
            continue
        layer_of(path.name.removesuffix(".py"))


def test_no_import_runs_upwards_or_sideways() -> None:
    graph = import_graph()
    assert graph["stages"] >= {"parse", "classify", "filing", "drafts"}  # the reader sees function-level imports
    wrong = [
        f"{source} -> {target}"
        for source, targets in graph.items()
        for target in targets
        if layer_of(target) > layer_of(source)
        or (layer_of(target) == layer_of(source) and (source, target) not in SAME_LAYER)
    ]
    assert not wrong, f"imports that run against the layers: {sorted(wrong)}"


def test_no_module_cycle() -> None:
    modules: dict[str, set[str]] = {}
    for path in ROOT.rglob("*.py"):
        name = ".".join(("daemon", *path.relative_to(ROOT).with_suffix("").parts)).removesuffix(".__init__")
        deps: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("daemon") and not node.level:
                deps.add(node.module)
                deps.update(f"{node.module}.{alias.name}" for alias in node.names)
            elif isinstance(node, ast.Import):
                deps.update(alias.name for alias in node.names if alias.name.startswith("daemon"))
        modules[name] = deps
    graph = {name: {d for d in deps if d in modules and d != name} for name, deps in modules.items()}
    # A package's __init__ is not a dependency of its modules in this sense: only module-to-module edges.
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in graph[node]:
            if state.get(nxt) == 1:
                cycle = [*stack[stack.index(nxt):], nxt]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)


if __name__ == "__main__":
    for package, targets in sorted(import_graph().items()):
        print(f"{package or 'daemon'} -> {', '.join(sorted(t or 'daemon' for t in targets))}")
