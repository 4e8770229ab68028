"""The package surface: the public names (asserted equal to a list), the error tree,
lazy loading and a light import."""

import importlib
import pkgutil
import subprocess
import sys

import pytest

import guardrail_dro
from guardrail_dro import errors

PUBLIC = [
    "AnnotatedDataset",
    "Annotation",
    "AnnotatorError",
    "ArtifactError",
    "BatchPendingError",
    "BiLevelTrainer",
    "ConfigError",
    "DataError",
    "DependencyError",
    "ExportParityError",
    "FakeScorer",
    "Guard",
    "GuardResult",
    "GuardViolation",
    "UnguardedPathError",
    "GuardrailError",
    "Item",
    "LabelSchema",
    "Policy",
    "ReaderError",
    "ReaderOptions",
    "RepeatedAPIError",
    "SchemaError",
    "Scorer",
    "TrainConfig",
    "TrainedModel",
    "__version__",
    "compute_metrics",
    "make_synthetic",
    "read_dataset",
    "read_splits",
    "run_bench",
]


def test_public_surface_is_exactly_this_list() -> None:
    # A name added to or dropped from the package surface must be a decision, made here.
    assert sorted(guardrail_dro.__all__) == sorted(PUBLIC)
    assert sorted(dir(guardrail_dro)) == sorted(PUBLIC)


def test_every_public_name_resolves() -> None:
    for name in guardrail_dro.__all__:
        assert getattr(guardrail_dro, name) is not None, name
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        _ = guardrail_dro.nope


def _modules(package: str) -> list[str]:
    pkg = importlib.import_module(package)
    return [package] + [
        m.name for m in pkgutil.walk_packages(pkg.__path__, prefix=f"{package}.")
    ]


@pytest.mark.parametrize("package", ["guardrail_dro", "annotators", "export"])
def test_every_module_all_resolves(package: str) -> None:
    # __all__ in every module, and every name in it defined there (no stale entries).
    for name in _modules(package):
        if name.endswith("__main__"):
            continue
        mod = importlib.import_module(name)
        exported = getattr(mod, "__all__", None)
        assert exported is not None or hasattr(mod, "__path__"), f"{name} has no __all__"
        for attr in exported or ():
            assert hasattr(mod, attr), f"{name}.__all__ lists {attr!r}, which it lacks"


def test_error_tree_is_complete_and_re_exported() -> None:
    classes = [getattr(errors, n) for n in errors.__all__ if isinstance(getattr(errors, n), type)]
    exceptions = [c for c in classes if issubclass(c, BaseException)]
    for cls in exceptions:
        assert issubclass(cls, errors.GuardrailError), cls
        # drawn in the module docstring, and reachable from the package
        assert cls.__name__ in (errors.__doc__ or ""), f"{cls.__name__} not drawn in errors.py"
        assert getattr(guardrail_dro, cls.__name__) is cls
    # the packages that raise them re-export the very same classes
    import annotators
    import export
    from guardrail_dro.serve import policy

    assert annotators.RepeatedAPIError is errors.RepeatedAPIError
    assert annotators.BatchPendingError is errors.BatchPendingError
    assert export.ExportParityError is errors.ExportParityError
    assert export.Mismatch is errors.Mismatch
    assert policy.GuardViolation is errors.GuardViolation


def test_import_is_light() -> None:
    code = (
        "import sys, guardrail_dro, guardrail_dro.data.readers, guardrail_dro.train.metrics; "
        "heavy = [m for m in ('torch', 'onnxruntime', 'openai', 'anthropic', 'transformers')"
        " if m in sys.modules]; print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_cli_lists_every_command() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "guardrail_dro", "--help"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    for cmd in ("train", "evaluate", "bench", "quickstart", "annotate", "export", "check"):
        assert cmd in out, cmd
