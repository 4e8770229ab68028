"""The 2026 models' list prices, from the providers' own model pages (2026-12-07), and the
bare-prefix rule on their names: a ``-5-5`` or ``-mini`` is another model, never its
prefix's price; a model priced only "from $x", or with no price stated, has none."""

from __future__ import annotations

import pytest

from annotators.pricing import price_for


@pytest.mark.parametrize(
    ("model", "price"),
    [
        ("claude-opus-5-5", (4.0, 20.0)),       # not claude-opus-5's $5/$25
        ("claude-opus-5", (5.0, 25.0)),
        ("claude-opus-4-8", (5.0, 25.0)),
        ("claude-opus-4-6", (5.0, 25.0)),
        ("claude-sonnet-5-5", (2.0, 10.0)),
        ("claude-sonnet-5", (2.0, 10.0)),
        ("claude-sonnet-4-6", (3.0, 15.0)),
        ("claude-fable-5-2", (8.0, 40.0)),      # not claude-fable-5's $10/$50
        ("claude-fable-5-1", (10.0, 50.0)),
        ("claude-fable-5", (10.0, 50.0)),
        ("gpt-5.4-nano", (0.2, 1.25)),
        ("gpt-5.4-nano-2026-03-17", (0.2, 1.25)),  # a dated snapshot still matches
    ],
)
def test_2026_list_prices(model: str, price: tuple[float, float]) -> None:
    assert price_for(model) == price


@pytest.mark.parametrize("model", [
    "claude-haiku-5-5",     # "From $0.10 / $0.50": no single list price to bill by
    "claude-opus-4-7",      # no price on a page the table was checked against
    "claude-mythos-5-1",    # invitation only; priced by reference to Fable, not stated
    "claude-opus-5-5-fast",  # another product, not claude-opus-5-5 by its prefix
    "gpt-5.4",              # not stated on an official page checked
    "gpt-5.4-mini",         # never gpt-5.4(-nano)'s price by a shared prefix
    "gpt-5.5",
])
def test_unstated_prices_stay_none(model: str) -> None:
    assert price_for(model) is None
