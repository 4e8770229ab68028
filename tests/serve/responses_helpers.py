"""What the Responses API output-rail tests share: the guard (``keyword_guard``: a
window holding its target is caught), the fake server's two replies (clean: filler
only; toxic: the target between fillers) and the refusal a replaced reply carries."""

from __future__ import annotations

from annotators.testing import FakeLLMServer

from .guard_helpers import Calibrated, keyword_guard, run_of

REFUSAL = "Sorry, I can't continue with that."


def refusing_guard() -> Calibrated:
    return keyword_guard(refusal=REFUSAL)


def replies(cal: Calibrated) -> dict[str, str]:
    """The reply to each input: "clean" -> filler, "toxic" -> the target inside filler."""
    filler = " ".join([cal.filler + "."] * 10)
    return {"clean": filler, "toxic": f"{filler} {run_of(cal.target)}. {filler}"}


def replying_server(cal: Calibrated) -> FakeLLMServer:
    """The fake server answering ``replies(cal)`` ("ok." to any other input)."""
    answers = replies(cal)
    return FakeLLMServer(lambda text: answers.get(text, "ok."))
