"""The layers hold: ``records`` at the bottom, the libraries above it, ``jobs`` (the Ray edge) on top;
no import (lazy ones included) runs back up, and no two modules import each other through a cycle."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("records", "scoring", "selection", "retrieval", "training", "jobs")
LIBRARIES = ("scoring", "selection", "retrieval", "training")


def modules() -> dict[str, Path]:
    out = {}
    for pkg in PACKAGES:
        for f in sorted((ROOT / pkg).rglob("*.py")):
            parts = f.relative_to(ROOT).with_suffix("").parts
            out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = f
    return out


MODULES = modules()


def imports_of(path: Path) -> set[str]:
    """Project modules a file imports anywhere in it (top level, functions, conditionals)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [f"{node.module}.{a.name}" for a in node.names] + [node.module]
        else:
            continue
        for name in names:
            while name and name not in MODULES:
                name = name.rpartition(".")[0]
            if name and name.split(".")[0] in PACKAGES:
                found.add(name)
    return found


GRAPH = {m: imports_of(p) - {m} for m, p in MODULES.items()}


def test_the_graph_sees_lazy_imports():
    assert "jobs.actor" in GRAPH["jobs.ifd"]  # imported inside a function
    assert len(MODULES) > 40 and all(m.split(".")[0] in PACKAGES for m in MODULES)


@pytest.mark.parametrize("module", sorted(m for m in MODULES if m.split(".")[0] in (*LIBRARIES, "records")))
def test_libraries_never_import_jobs(module):
    bad = sorted(i for i in GRAPH[module] if i.split(".")[0] == "jobs")
    assert not bad, f"{module} imports the Ray edge: {bad}"


@pytest.mark.parametrize("module", sorted(m for m in MODULES if m.startswith("records")))
def test_records_is_the_bottom_layer(module):
    bad = sorted(i for i in GRAPH[module] if i.split(".")[0] != "records")
    assert not bad, f"{module} imports above the records layer: {bad}"


def test_no_import_cycles():
    """Tarjan's strongly connected components over the module graph: every component is one module."""
    index, low, stack, on, cycles, counter = {}, {}, [], set(), [], [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in GRAPH[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    for v in sorted(GRAPH):
        if v not in index:
            visit(v)
    assert not cycles, f"import cycles: {cycles}"


def test_every_job_exposes_validate_and_run():
    import importlib

    for job in ("ifd", "recost", "cherry", "diverse_evol", "select", "kb_build"):
        mod = importlib.import_module(f"jobs.{job}")
        assert callable(mod.validate) and callable(mod.run), job


def test_job_run_functions_are_short():
    """Every job's ``run`` reads top to bottom in at most 40 lines (the skeleton holds the rest)."""
    for job in ("ifd", "recost", "cherry", "diverse_evol", "select", "kb_build"):
        tree = ast.parse(MODULES[f"jobs.{job}"].read_text())
        (fn,) = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "run"]
        assert fn.end_lineno - fn.lineno + 1 <= 40, f"jobs.{job}.run has {fn.end_lineno - fn.lineno + 1} lines"
