"""Bad input gets a defined result or a clear TypeError; bad artifacts fail at load.

Odd strings go through the real tokenizer; the chat rails' message reading needs only
decisions, so it runs on the fake scorer (``fake_guard``)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from guardrail_dro.errors import ArtifactError
from guardrail_dro.serve.artifact import manifest_digest
from guardrail_dro.serve.guard import Guard, GuardResult
from guardrail_dro.serve.policy import DEFAULT_MAX_CHARS, Policy

ODD_TEXTS = {
    "empty": "",
    "whitespace": " \n\t\r  ",
    "lone-high-surrogate": "hello \ud800 world",
    "lone-low-surrogate": "\udfff",
    "control-chars": "a\x00b\x01c\x07d\x1b[31me\x7f",
    "nul-only": "\x00\x00",
    "emoji": "🙂" * 500,
    "rtl-and-combining": "שלום e\u0301\u200b\u202e",
    "one-megabyte": "bread and butter. " * (1_000_000 // 18),
}


@pytest.mark.parametrize("text", list(ODD_TEXTS.values()), ids=list(ODD_TEXTS))
def test_odd_strings_get_a_defined_result(guard: Guard, text: str) -> None:
    r = guard.check(text)
    assert isinstance(r, GuardResult)
    if len(text) > DEFAULT_MAX_CHARS:  # cut by the default bound: decided, or says so
        assert r.violation or (r.degraded and "Policy.max_" in r.error)
    else:
        assert not r.degraded
    if not text.strip():
        assert r.allowed and r.windows == 0 and r.label == ""
    elif len(text) > DEFAULT_MAX_CHARS:  # not scored: the error policy decided
        assert r.windows == 0 and not r.allowed and "not scored" in r.error
    else:
        assert r.windows >= 1 and r.label in guard.labels
    assert guard.check_many([text])[0].windows == r.windows


def test_a_megabyte_is_scored_to_its_end_when_the_bounds_are_off(guard: Guard) -> None:
    # By default a long text is cut (degraded, saying so: test_guard_hardening.py).
    whole = guard.with_policy(Policy(max_windows=None, max_chars=None))
    r = whole.check(ODD_TEXTS["one-megabyte"])
    assert not r.degraded and r.windows > 1000  # scored to its end, not truncated


@pytest.mark.parametrize("bad", [None, 3, 2.5, b"bytes", ["a list"], {"role": "user"}], ids=repr)
def test_non_strings_are_type_errors(guard: Guard, bad: object) -> None:
    with pytest.raises(TypeError, match="str"):
        guard.check(bad)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        guard.check_many([bad])  # type: ignore[list-item]


def test_check_many_refuses_a_single_string(guard: Guard) -> None:
    with pytest.raises(TypeError, match="list"):
        guard.check_many("one text")


@pytest.mark.parametrize(
    "messages",
    [[{"role": "user", "content": None}], [], [{"role": "system", "content": "be nice"}]],
    ids=["none-content", "no-messages", "no-user-turn"],
)
def test_chat_rails_with_nothing_to_check(fake_guard: Guard, messages: list) -> None:
    r = fake_guard.check_input(messages)
    assert r.allowed and r.windows == 0


def test_chat_rails_reject_non_messages(fake_guard: Guard) -> None:
    with pytest.raises(TypeError):
        fake_guard.check_input("hello")
    with pytest.raises(TypeError):
        fake_guard.check_output([], 42)


def test_chat_rails_read_both_shapes(fake_guard: Guard) -> None:
    guard = fake_guard
    text = "how do I hurt someone with a knife"
    openai = [
        {"role": "system", "content": "x"},
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "hello"},
        {"role": "user", "content": text},
    ]
    anthropic = [
        {
            "role": "user",
            "content": [{"type": "text", "text": text}, {"type": "image", "source": {}}],
        }
    ]
    assert guard.check_input(openai) == guard.check_input(anthropic) == guard.check(text)
    reply = [{"type": "text", "text": text}]
    assert guard.check_output(openai, reply) == guard.check(text)
    assert guard.check_output(None, {"role": "assistant", "content": text}) == guard.check(text)


# ---- artifacts: every problem at load --------------------------------------------------


def _tamper(d: Path) -> None:
    with (d / "model.int8.onnx").open("ab") as f:
        f.write(b"\0")


def _drop_tokenizer(d: Path) -> None:
    (d / "tokenizer.json").unlink()


def _drop_manifest(d: Path) -> None:
    (d / "guard.json").unlink()


def _bad_manifest(d: Path) -> None:
    m = json.loads((d / "guard.json").read_text())
    m["max_length"] = -1
    m["manifest_sha256"] = manifest_digest(m)  # re-sealed: the schema check must catch it
    (d / "guard.json").write_text(json.dumps(m))


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (_tamper, "sha256"),
        (_drop_tokenizer, "missing file tokenizer.json"),
        (_drop_manifest, "guard.json"),
        (_bad_manifest, "max_length"),
    ],
    ids=["tampered-model", "missing-tokenizer", "missing-manifest", "invalid-manifest"],
)
def test_damaged_artifacts_fail_at_load(guard_copy: Path, damage, message: str) -> None:
    damage(guard_copy)
    with pytest.raises(ArtifactError, match=message):
        Guard.load(guard_copy, provider="cpu")


def test_corrupt_model_fails_at_load_even_unverified(guard_copy: Path) -> None:
    (guard_copy / "model.int8.onnx").write_bytes(b"not an onnx graph")
    with pytest.raises(ArtifactError, match="not a loadable ONNX model"):
        Guard.load(guard_copy, provider="cpu", verify=False)


def test_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match="not found"):
        Guard.load(tmp_path / "nope")


def test_missing_pad_token_is_a_clear_artifact_error(guard_copy: Path) -> None:
    m = json.loads((guard_copy / "guard.json").read_text())
    m["pad_token"] = "[NO-SUCH-PAD]"
    m["manifest_sha256"] = manifest_digest(m)
    (guard_copy / "guard.json").write_text(json.dumps(m))
    with pytest.raises(ArtifactError, match=r"no padding token '\[NO-SUCH-PAD\]'"):
        Guard.load(guard_copy, provider="cpu")
