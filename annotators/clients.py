"""An SDK's async client that follows the running event loop: both adapters hold one.

An async client (``openai.AsyncOpenAI``, ``anthropic.AsyncAnthropic``) is bound to the
event loop it first ran on, and the sync entry points (``annotate``) run a fresh loop
each time. So the client follows the loop: in a new loop a new one is built, and the old
one is closed rather than left to leak its connections. The client is built on first
use, which is also when the SDK is first imported (``import annotators`` needs none).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from annotators.base import aclose_quietly

__all__ = ["LoopBoundClient"]


class LoopBoundClient:
    """One SDK client per running event loop, closed when the loop changes.

    Args:
        build: makes a client (imports the SDK; raises ``DependencyError`` without it).
            Called on first use in each loop, so it sees the adapter's settings as they
            are then.
    """

    def __init__(self, build: Callable[[], Any]) -> None:
        self._build = build
        self._client: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closing: set[asyncio.Task] = set()

    def get(self) -> Any:
        """The client for the running loop (call from a coroutine)."""
        loop = asyncio.get_running_loop()
        if self._client is not None and self._loop is not loop:
            task = loop.create_task(aclose_quietly(self._client))
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)
            self._client = None
        if self._client is None:
            self._client = self._build()
            self._loop = loop
        return self._client

    async def aclose(self) -> None:
        """Close the current client (and finish closing those of ended loops)."""
        if self._closing:
            await asyncio.gather(*self._closing)
        if self._client is not None:
            if self._loop is asyncio.get_running_loop():
                await self._client.close()
            else:  # opened in a loop that has ended
                await aclose_quietly(self._client)
            self._client = None
            self._loop = None
