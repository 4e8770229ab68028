"""A moderation request whose ``input`` list holds a bad item is refused at that item.

Pydantic used to report every bad item of the list (two errors each: not a string, not
a text part), and the server built all of them on its event loop: a 900 KB body of
300,000 numbers held every request, health checks included, for seconds before its
400, and the message quoted the list's opening items, not the bad one.
"""

from __future__ import annotations

import json

import httpx2
import pytest
from pydantic import ValidationError

from guardrail_dro.serve.guard import Guard
from guardrail_dro.serve.http import BackgroundServer, ServeConfig, create_app
from guardrail_dro.serve.http.schema import ApiError, ModerationRequest, parse_request

BAD_ITEMS = 20_000


def _body(items: list[object]) -> bytes:
    return json.dumps({"input": items}).encode()


@pytest.mark.parametrize(
    ("items", "index", "shown"),
    [
        (["fine", None, *[None] * BAD_ITEMS], 1, "None"),
        (["fine", "also", *[7] * BAD_ITEMS], 2, "7"),
        ([{"type": "text", "text": "ok"}, *[{}] * BAD_ITEMS], 1, "{}"),
        (["a", {"type": "image_url", "image_url": {"url": "x"}}], 1, "'image_url'"),
    ],
    ids=["nulls", "numbers", "empty-parts", "image-part"],
)
def test_the_first_bad_item_is_named(items: list[object], index: int, shown: str) -> None:
    with pytest.raises(ApiError) as info:
        parse_request(_body(items), ServeConfig())
    err = info.value
    assert err.status == 400 and err.param == "input"
    assert err.message.startswith("input must be a string or a list of strings")
    assert f"input[{index}] is not: " in err.message and shown in err.message
    assert len(err.message) < 300


def test_validation_stops_at_the_first_bad_item() -> None:
    # what the event loop spends on a bad list: a handful of errors, not two per item
    with pytest.raises(ValidationError) as info:
        ModerationRequest.model_validate_json(_body(["ok", *[0] * BAD_ITEMS]))
    assert info.value.error_count() <= 4


def test_a_value_that_is_no_list_is_quoted_as_before() -> None:
    with pytest.raises(ApiError) as info:
        parse_request(b'{"input": {"text": "hi"}}', ServeConfig())
    assert info.value.message.endswith("parts), not {'text': 'hi'}")


def test_the_server_answers_the_bad_item_and_then_serves(fake_guard: Guard) -> None:
    config = ServeConfig(max_inputs=4)
    with BackgroundServer(create_app(fake_guard, config)) as url:
        bad = httpx2.post(f"{url}/v1/moderations", content=_body(["x", *[1] * BAD_ITEMS]))
        good = httpx2.post(f"{url}/v1/moderations", json={"input": ["a knife", "bread"]})
    assert bad.status_code == 400
    err = bad.json()["error"]
    assert err["param"] == "input" and "input[1] is not: 1" in err["message"]
    assert good.status_code == 200
    assert [r["flagged"] for r in good.json()["results"]] == [True, False]
