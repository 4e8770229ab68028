"""The shape of ``guardrail_dro.serve``: every ``__all__`` resolves, no module imports
another's private name, imports (lazy ones included) form no circle, the rails never
import the guard, no file passes ~400 lines, and importing the serving modules stays
light."""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

import guardrail_dro.serve

ROOT = Path(guardrail_dro.serve.__file__).parent
PACKAGE_ROOT = ROOT.parent.parent


def _module(path: Path) -> str:
    rel = path.relative_to(PACKAGE_ROOT).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


MODULES = {_module(p): p for p in sorted(ROOT.rglob("*.py"))}


def _all_imports(path: Path) -> list[ast.Import | ast.ImportFrom]:
    """Every import of a module: top level, inside functions (lazy) and under
    ``TYPE_CHECKING``; a lazy import still ties the two modules together."""
    tree = ast.parse(path.read_text())
    return [n for n in ast.walk(tree) if isinstance(n, ast.Import | ast.ImportFrom)]


@pytest.mark.parametrize("name", sorted(MODULES))
def test_all_names_resolve(name: str) -> None:
    module = importlib.import_module(name)
    for public in getattr(module, "__all__", []):
        assert hasattr(module, public), f"{name}.__all__ lists missing {public}"


@pytest.mark.parametrize("name", sorted(MODULES))
def test_no_private_names_cross_modules(name: str) -> None:
    for node in _all_imports(MODULES[name]):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("guardrail_dro"):
            private = [a.name for a in node.names if a.name.startswith("_")]
            assert not private, f"{name} imports {private} from {node.module}"


def _edges() -> dict[str, set[str]]:
    edges: dict[str, set[str]] = {name: set() for name in MODULES}
    for name, path in MODULES.items():
        for node in _all_imports(path):
            targets = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""] + [f"{node.module}.{a.name}" for a in node.names]
            )
            for target in targets:
                if target in MODULES and target != name:
                    edges[name].add(target)
        parent = name.rsplit(".", 1)[0]
        if parent in MODULES and parent != name:  # importing a module runs its package
            edges[name].add(parent)
    return edges


def test_no_import_circles() -> None:
    edges = _edges()
    done: set[str] = set()

    def visit(name: str, path: tuple[str, ...]) -> None:
        assert name not in path, "import circle: " + " -> ".join((*path, name))
        if name in done:
            return
        for target in edges[name]:
            if target.startswith(name + "."):  # a package importing its own modules
                continue
            visit(target, (*path, name))
        done.add(name)

    for name in MODULES:
        visit(name, ())


def test_rails_never_import_the_guard() -> None:
    for name, path in MODULES.items():
        if ".rails" in name:
            for node in _all_imports(path):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
                assert "guardrail_dro.serve.guard" not in [getattr(node, "module", None), *names]


@pytest.mark.parametrize("name", sorted(MODULES))
def test_files_stay_small(name: str) -> None:
    assert len(MODULES[name].read_text().splitlines()) <= 400, name


def test_serving_modules_import_light() -> None:
    code = (
        "import sys, guardrail_dro.serve.guard, guardrail_dro.serve.rails, "
        "guardrail_dro.serve.scorer, guardrail_dro.serve.onnx_scorer; "
        "print([m for m in ('onnxruntime', 'tokenizers', 'openai', 'anthropic', 'torch')"
        " if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
