"""A fake upstream that records what the guarding proxies forward (headers, query)."""

from __future__ import annotations

import threading
from typing import Any

from annotators.testing import FakeLLMServer

__all__ = ["RecordingFake"]


class RecordingFake(FakeLLMServer):
    """The shipped fake, keeping each request's path (query included) and headers
    (lower-case names, repeats kept), answering every message with ``reply`` and
    ``count_tokens`` with 3."""

    def __init__(self, reply: str = "Bread needs flour.") -> None:
        super().__init__(lambda text: reply)
        self.seen: list[dict[str, Any]] = []
        self._seen_lock = threading.Lock()

    def record(self, method: str, path: str, headers: Any) -> None:
        super().record(method, path, headers)
        with self._seen_lock:
            pairs = [(k.lower(), v) for k, v in headers.items()]
            self.seen.append({"path": path, "headers": dict(pairs), "pairs": pairs})

    def route(self, method: str, path: str, headers: Any, raw: bytes) -> tuple[int, Any, str]:
        if method == "POST" and path.split("?", 1)[0] == "/v1/messages/count_tokens":
            return 200, {"input_tokens": 3}, "application/json"
        return super().route(method, path, headers, raw)
