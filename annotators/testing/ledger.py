"""The fake server's books: what it was asked and billed, and the faults it still owes.

Kept apart from the HTTP plumbing because it is what tests read: ``calls[text]`` (every
live request about an item, failures included), ``paid[text]`` (live requests answered
200 with a reply: what a real API bills), ``batch_paid[text]``, ``endpoints[name]``,
``requests`` (each live request's JSON body and arrival time ``t``,
``time.monotonic()``), ``received`` (every HTTP request whatever its path, with the
``authorization`` / ``x-api-key`` headers) and ``billed`` (the usage of every billed
reply). The server's threads answer concurrently, so every update takes one lock.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import Counter
from typing import Any

from annotators.testing.rules import Fault, FaultKind

__all__ = ["Ledger"]


class Ledger:
    """Thread-safe counters and fault list; ``FakeLLMServer`` is one.

    The counters are plain attributes (``Counter`` / ``list``) so a test reads them
    directly; writes go through the methods, which hold the lock.
    """

    def __init__(self) -> None:
        self.faults: list[Fault] = []
        self.calls: Counter[str] = Counter()
        self.paid: Counter[str] = Counter()
        self.batch_paid: Counter[str] = Counter()
        self.endpoints: Counter[str] = Counter()
        self.requests: list[dict] = []
        self.received: list[dict] = []
        self.billed: list[dict] = []
        self._lock = threading.Lock()
        self._ids = itertools.count(1)

    def add_fault(self, fault: Fault) -> Fault:
        with self._lock:
            self.faults.append(fault)
        return fault

    def reset_counts(self) -> None:
        """Zero every counter (also ``POST /_fake/reset``); faults are kept."""
        with self._lock:
            self.calls.clear()
            self.paid.clear()
            self.batch_paid.clear()
            self.endpoints.clear()
            self.requests.clear()
            self.received.clear()
            self.billed.clear()

    def stats(self) -> dict[str, dict[str, int]]:
        """The counters as plain dicts (also served at ``GET /_fake/stats``)."""
        with self._lock:
            return {"calls": dict(self.calls), "paid": dict(self.paid),
                    "batch_paid": dict(self.batch_paid), "endpoints": dict(self.endpoints)}

    def next_id(self) -> int:
        """A number for the next object id (completion, message, file, batch)."""
        with self._lock:
            return next(self._ids)

    def take_fault(self, text: str, kinds: tuple[FaultKind, ...]) -> Fault | None:
        """The first unspent fault of one of ``kinds`` that matches ``text``, spending
        one of its ``times``; None when none applies."""
        with self._lock:
            for f in self.faults:
                if f.kind in kinds and f.applies(text):
                    f.times -= 1
                    return f
        return None

    def count(self, endpoint: str) -> None:
        """One more request to ``endpoint`` (an SDK method name, e.g. ``batches.create``)."""
        with self._lock:
            self.endpoints[endpoint] += 1

    def note_live(self, text: str, body: dict, endpoint: str) -> None:
        """A live request about ``text`` arrived (counted before any fault applies)."""
        with self._lock:
            self.calls[text] += 1
            self.endpoints[endpoint] += 1
            self.requests.append({"endpoint": endpoint, "text": text, "body": body,
                                  "t": time.monotonic()})

    def pay(self, text: str, *, batch: bool) -> None:
        """A reply about ``text`` was made: a real API would charge for it."""
        with self._lock:
            (self.batch_paid if batch else self.paid)[text] += 1

    def bill(self, text: str, input_tokens: int, output_tokens: int, *, batch: bool) -> None:
        """Note the usage a reply about ``text`` reported."""
        with self._lock:
            self.billed.append({"text": text, "batch": batch,
                                "input_tokens": input_tokens, "output_tokens": output_tokens})

    def record(self, method: str, path: str, headers: Any) -> None:
        """Note one HTTP request, whatever its path (see ``received``)."""
        with self._lock:
            self.received.append({"method": method, "path": path,
                                  "authorization": headers.get("authorization"),
                                  "x-api-key": headers.get("x-api-key")})
