"""The layering of docs/architecture.md, read from the source: imports point down, no cycle, and the runner
and the shared evaluators name no method and test no kind of data."""

from __future__ import annotations

import ast
import os

import pytest

from latentebm_jax import methods

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = os.path.join(ROOT, "latentebm_jax")
CORE = (
    "langevin",
    "priors",
    "losses",
    "diffusion",
    "optim",
    "state",
    "checkpoint",
    "config_schema",
    "viz",
    "progress",
    "device_map",
    "data",
    "metrics",
    "nets",
    "backbones",
)
# what each layer may import from the library (besides itself); methods may use the method contract and
# the evaluator helpers that sit beside them
ALLOWED = {
    "core": set(CORE),
    "methods": {*CORE, "methods"},
    "evaluation": {*CORE, "evaluation", "methods.base", "methods.eval_tools"},
    # the runner reaches methods through the registry (the package), never a method module
    "training": {*CORE, "training", "evaluation", "methods.base"},
}


def _modules() -> dict[str, str]:
    out = {}
    for folder, _, files in os.walk(PACKAGE):
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(folder, name)
                rel = os.path.relpath(path, PACKAGE)[: -len(".py")].replace(os.sep, ".")
                out[rel.removesuffix(".__init__") if rel != "__init__" else ""] = path
    return out


MODULES = _modules()


def _source(path: str) -> str:
    with open(path, encoding="utf-8") as f:
        return f.read()


def _imports(path: str) -> set[str]:
    """Library modules a file imports (``latentebm_jax.`` stripped), at any depth of the file."""
    tree = ast.parse(_source(path))
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("latentebm_jax"):
            base = node.module.removeprefix("latentebm_jax").lstrip(".")
            for alias in node.names:
                sub = f"{base}.{alias.name}" if base else alias.name
                out.add(sub if sub in MODULES else base)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("latentebm_jax."):
                    out.add(alias.name.removeprefix("latentebm_jax."))
    return {m for m in out if m}


def _layer(module: str) -> str:
    top = module.split(".")[0]
    return top if top in ("methods", "evaluation", "training") else "core"


def _allowed(target: str, layer: str) -> bool:
    if layer == "training" and target == "methods":
        return True
    return any(target == a or target.startswith(a + ".") for a in ALLOWED[layer])


@pytest.mark.parametrize("module", sorted(m for m in MODULES if m))
def test_imports_point_down(module):
    layer = _layer(module)
    bad = sorted(t for t in _imports(MODULES[module]) if not _allowed(t, layer))
    assert not bad, f"{module} ({layer}) imports {bad}"


def test_no_import_cycle():
    graph = {m: {t for t in _imports(p) if t in MODULES and t != m} for m, p in MODULES.items() if m}
    # a package's __init__ re-exporting its own submodules is not a dependency of those submodules
    index, low, stack, on, cycles, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w.startswith(v + ".") or (v.startswith(w + ".") and w == v.rsplit(".", 1)[0]):
                continue
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

    for v in graph:
        if v not in index:
            visit(v)
    assert not cycles, f"import cycles: {cycles}"


def _string_constants(path: str) -> set[str]:
    tree = ast.parse(_source(path))
    docstrings = {
        id(n.body[0].value)
        for n in ast.walk(tree)
        if isinstance(n, (ast.Module, ast.FunctionDef, ast.ClassDef))
        and n.body
        and isinstance(n.body[0], ast.Expr)
        and isinstance(n.body[0].value, ast.Constant)
    }
    return {
        n.value
        for n in ast.walk(tree)
        if isinstance(n, ast.Constant) and isinstance(n.value, str) and id(n) not in docstrings
    }


@pytest.mark.parametrize("module", sorted(m for m in MODULES if _layer(m) in ("training", "evaluation")))
def test_runner_and_shared_evaluators_name_no_method_and_test_no_modality(module):
    source = _source(MODULES[module])
    named = sorted(_string_constants(MODULES[module]) & set(methods.METHODS))
    assert not named, f"{module} names methods {named}"
    assert "modality" not in source and "isinstance(tools" not in source and ".extras" not in source


def test_the_layer_check_can_fail():
    assert not _allowed("methods.lebm", "evaluation") and not _allowed("training.loop", "methods")
    assert not _allowed("methods.joint", "training") and _allowed("methods", "training")
    assert "methods.base" in _imports(MODULES["methods.lebm"])
