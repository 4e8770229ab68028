"""The price table: exact names and dated snapshots match, bare prefixes never do."""

from __future__ import annotations

import pytest

from annotators.base import Usage
from annotators.pricing import cost_of, price_for


@pytest.mark.parametrize(
    ("model", "price"),
    [
        ("claude-opus-4-5", (5.0, 25.0)),          # not claude-opus-4's $15/$75
        ("claude-opus-4-5-20251101", (5.0, 25.0)),
        ("claude-opus-4-1", (15.0, 75.0)),
        ("claude-sonnet-4-5-20250929", (3.0, 15.0)),
        ("claude-haiku-4-5", (1.0, 5.0)),
        ("claude-3-5-haiku-latest", (0.8, 4.0)),
        ("gpt-4o-mini-2024-07-18", (0.15, 0.6)),
        ("gpt-4o-2024-05-13", (5.0, 15.0)),        # not today's gpt-4o price
        ("gpt-4o-2024-08-06", (2.5, 10.0)),
        ("gpt-5-mini", (0.25, 2.0)),
        ("o3-pro", None),                           # unknown, not o3's price
        ("gpt-4o-mini-finetuned", None),
    ],
)
def test_price_for(model: str, price: tuple[float, float] | None) -> None:
    assert price_for(model) == price


def test_overrides_and_batch_discount() -> None:
    assert price_for("my-llm", {"my-llm": (1.0, 2.0)}) == (1.0, 2.0)
    u = Usage(1_000_000, 1_000_000)
    assert cost_of("claude-opus-4-5", u) == pytest.approx(30.0)
    assert cost_of("claude-opus-4-5", u, batch=True) == pytest.approx(15.0)
    assert cost_of("nope", u) is None
