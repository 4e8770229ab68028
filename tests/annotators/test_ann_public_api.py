"""Every module states its public surface, and the package re-exports what it promises."""

from __future__ import annotations

import importlib
import pkgutil
import subprocess
import sys

import pytest

import annotators

MODULES = sorted(m.name for m in pkgutil.iter_modules(annotators.__path__))


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
