"""The import structure of ``server/`` (and the UI app): every module imports, no cycle, imports run downward.

Layers, lowest first: project settings (``server.config``, ``server.celery``, ``server.settings``) ← ``core``
(errors, health, the access policy) ← ``jobs`` (the job engine) ← ``studio`` (the domain) ← ``annotator_ui``
(pages) and, beside it, ``workers`` (adapters to ``ml``; neither imports the other) ← the wiring (``server.urls``, ``asgi``, ``wsgi``, ``routing``,
``devrun``). The graph is read from the source (every ``import`` statement, module level or inside a function),
so a cycle or an upward import cannot hide in a function body.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("server", "annotator_ui")

LAYERS = {
    "server.config": 0,
    "server.celery": 0,
    "server.settings": 0,
    "server": 0,  # the package __init__ loads the Celery app
    "server.core": 1,
    "server.jobs": 2,
    "server.studio": 3,
    "annotator_ui": 4,
    "server.workers": 4,
    "server.urls": 5,
    "server.asgi": 5,
    "server.wsgi": 5,
    "server.routing": 5,
    "server.devrun": 5,
}


def module_names() -> list[str]:
    names = []
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            parts = list(path.relative_to(REPO).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            names.append(".".join(parts))
    return names


def imports_of(module: str, known: set[str]) -> set[str]:
    """The modules of ``known`` that ``module``'s source imports anywhere (``from a import b`` counts as ``a.b``
    when that is a module, else as ``a``)."""
    path = REPO / Path(*module.split("."))
    source = path / "__init__.py" if path.is_dir() else path.with_suffix(".py")
    tree = ast.parse(source.read_text(), filename=str(source))
    package = module if path.is_dir() else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                found.add(candidate if candidate in known else base)
    return {name for name in found if name in known and name != module}


def group_of(module: str) -> str:
    return max((p for p in LAYERS if module == p or module.startswith(p + ".")), key=len)


def allowed(module: str, target: str) -> bool:
    """Within a layer's group anything goes (the cycle test guards it); across groups only to a lower layer. The
    settings (layer 0) and the wiring (layer 5) are one group each; ``annotator_ui`` and ``workers`` are two."""
    source, dest = LAYERS[group_of(module)], LAYERS[group_of(target)]
    if source == dest:
        return source in (0, 5) or group_of(module) == group_of(target)
    return dest < source


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as a list of modules (first == last), or ``None``."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    known = set(module_names())
    return {module: imports_of(module, known) for module in known}


def test_the_graph_sees_the_known_edges(graph) -> None:
    assert "server.jobs.services" in graph["server.studio.services.jobs"]  # from server.jobs import services
    assert "server.studio.services.cases" in graph["server.studio.apis"]  # from server.studio.services import cases
    assert "server.workers.tasks" in graph["server.workers.apps"]  # an import inside a method


def test_no_import_cycle(graph) -> None:
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph) or [])


def test_find_cycle_finds_one() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_imports_run_downward(graph) -> None:
    upward = [
        f"{module} -> {target}"
        for module, targets in sorted(graph.items())
        for target in sorted(targets)
        if not allowed(module, target)
    ]
    assert upward == []


def test_every_module_imports_in_a_fresh_interpreter() -> None:
    """Import each module (Django set up first) in a new process: a cycle that breaks at import time, a missing
    name or a module that needs something at import that it should not, fails here."""
    modules = [m for m in module_names() if m not in ("server.settings",)]
    script = (
        "import importlib, json, sys, traceback\n"
        "import django\n"
        "django.setup()\n"
        "failed = {}\n"
        "for name in json.loads(sys.argv[1]):\n"
        "    try:\n"
        "        importlib.import_module(name)\n"
        "    except Exception:\n"
        "        failed[name] = traceback.format_exc(limit=3)\n"
        "print(json.dumps(failed))\n"
    )
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "server.settings", "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        [sys.executable, "-c", script, json.dumps(modules)], capture_output=True, text=True, cwd=REPO, env=env
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    failed = json.loads(proc.stdout.strip().splitlines()[-1])
    assert failed == {}, "\n".join(f"{k}:\n{v}" for k, v in failed.items())
