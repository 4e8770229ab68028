"""Every module states its public surface, and the package re-exports what it promises."""

from __future__ import annotations

import ast
import importlib
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import annotators

# Subpackages too (annotators.testing.server ...): each of their modules states its surface.
MODULES = sorted(m.name.removeprefix("annotators.")
                 for m in pkgutil.walk_packages(annotators.__path__, "annotators."))


@pytest.mark.parametrize("name", MODULES)
def test_module_has_all_and_every_name_exists(name: str) -> None:
    mod = importlib.import_module(f"annotators.{name}")
    assert isinstance(mod.__all__, list) and mod.__all__, name
    assert sorted(mod.__all__) == sorted(set(mod.__all__))
    for attr in mod.__all__:
        assert hasattr(mod, attr), f"annotators.{name}.__all__ names missing {attr!r}"
    assert mod.__doc__ and len(mod.__doc__) > 80, f"annotators.{name} needs a docstring"


def test_package_reexports() -> None:
    for attr in annotators.__all__:
        assert hasattr(annotators, attr)
    for must in ("annotate", "aannotate", "batch_annotate", "OpenAIAnnotator",
                 "AnthropicAnnotator", "AnnotationCache", "RetryPolicy"):
        assert must in annotators.__all__


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_missing_sdk_raises_dependency_error_naming_the_extra(provider: str) -> None:
    # A fresh interpreter in which the SDK cannot be imported (as if not installed).
    code = f"""
import asyncio, sys
sys.modules[{provider!r}] = None
from annotators import AnthropicAnnotator, OpenAIAnnotator, build_prompt
from guardrail_dro.errors import DependencyError
from guardrail_dro.data.schema import LabelSchema
cls = OpenAIAnnotator if {provider!r} == "openai" else AnthropicAnnotator
schema = LabelSchema(classes=("a", "b"))
try:
    asyncio.run(cls("m", api_key="k").call(build_prompt("t", schema), schema))
except DependencyError as exc:
    assert "pip install 'guardrail-dro[annotate]'" in str(exc), exc
    print("ok")
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "ok", out.stderr


def test_testing_surface_is_the_one_users_import() -> None:
    # annotators.testing was one module; as a package it promises the same names.
    import annotators.testing as testing

    assert sorted(testing.__all__) == [
        "FakeLLMServer", "FakeReply", "Fault", "FaultKind", "Handler", "Refuse",
        "anthropic_message_body", "anthropic_stream_body", "keyword_handler", "main",
        "openai_completion_body", "openai_stream_body",
    ]


def _imports_of(path: Path) -> set[str]:
    """The annotators modules a source file imports (at any depth of the file)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        found |= {n for n in names if n == "annotators" or n.startswith("annotators.")}
    return found


def test_no_import_cycles_and_no_private_names_across_modules() -> None:
    root = Path(annotators.__file__).parent
    graph: dict[str, set[str]] = {}
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        graph[name] = _imports_of(path) - {name}
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("annotators"):
                private = [a.name for a in node.names if a.name.startswith("_")]
                assert not private, f"{name} imports private {private} from {node.module}"
    edges = {m: {d for d in deps if d in graph} for m, deps in graph.items()}
    done: set[str] = set()

    def visit(m: str, stack: list[str]) -> None:
        if m in stack:
            raise AssertionError("import cycle: " + " -> ".join([*stack[stack.index(m):], m]))
        if m in done:
            return
        for d in sorted(edges[m]):
            visit(d, [*stack, m])
        done.add(m)

    for m in sorted(edges):
        visit(m, [])
