"""The real ``guardrail-dro serve`` in a subprocess, for the tests that run the command.

Three proxy tests each started it, read its output until it said it guards a route,
retried the first call while the app finished starting, and stopped it: one copy here.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TypeVar

T = TypeVar("T")


@dataclass
class Served:
    """The running command: its base URL and what it printed (``output`` once stopped)."""

    url: str = ""
    lines: list[str] = field(default_factory=list)
    output: str = ""


@contextmanager
def serve_process(args: list[str], env: dict[str, str], route: str) -> Iterator[Served]:
    """``guardrail-dro serve ARGS --port 0`` until the block ends; entered once it says
    ``guarding URL{route}`` (within 120 s), stopped on the way out."""
    cmd = [sys.executable, "-m", "guardrail_dro", "serve", *args, "--port", "0"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)  # fmt: skip
    served = Served()
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 120
        found = None
        while time.monotonic() < deadline:
            served.lines.append(proc.stdout.readline())
            found = re.search(rf"guarding (\S+){re.escape(route)}", served.lines[-1])
            if found or proc.poll() is not None:
                break
        assert found, "".join(served.lines)
        served.url = found[1]
        yield served
    finally:
        proc.terminate()
        served.output = "".join(served.lines) + proc.communicate(timeout=60)[0]


def first_call(call: Callable[[], T], refused: type[Exception]) -> T:
    """``call()`` once the app answers: the port is bound before the app has started,
    so a connection refused (``refused``) is tried again, for up to 30 s."""
    for _ in range(59):
        try:
            return call()
        except refused:
            time.sleep(0.5)
    return call()
