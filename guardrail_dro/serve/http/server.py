"""Running the moderation app on uvicorn: ``serve`` (the command's foreground server)
and ``BackgroundServer`` (a real server on a free port in a thread, for tests,
examples and benchmarks: ``with BackgroundServer(app) as url: ...``).
"""

from __future__ import annotations

import threading
import time
from types import TracebackType
from typing import Any

import uvicorn

__all__ = ["BackgroundServer", "serve"]


def _config(app: Any, host: str, port: int, **options: Any) -> uvicorn.Config:
    # No Server header; the access log shows method, path and status, never a header.
    return uvicorn.Config(app, host=host, port=port, server_header=False, **options)


def serve(app: Any, *, host: str = "127.0.0.1", port: int = 8000, **options: Any) -> None:
    """Serve ``app`` until interrupted (uvicorn options pass through: ``log_level``,
    ``limit_concurrency``, ``timeout_keep_alive``...)."""
    uvicorn.Server(_config(app, host, port, **options)).run()


class BackgroundServer:
    """``app`` on uvicorn in a daemon thread, on ``port`` (0: a free one).

    Entering starts it and waits until it accepts connections (the lifespan, hence the
    batcher, has started); the value is the base URL, e.g. ``http://127.0.0.1:54321``.
    Leaving shuts it down gracefully.

    Raises:
        RuntimeError: the server did not start within ``start_timeout`` seconds.
    """

    def __init__(
        self,
        app: Any,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        start_timeout: float = 30.0,
        **options: Any,
    ) -> None:
        options.setdefault("log_level", "warning")
        self.server = uvicorn.Server(_config(app, host, port, **options))
        self.host, self.start_timeout = host, start_timeout
        self.thread = threading.Thread(target=self.server.run, name="uvicorn", daemon=True)
        self.url = ""

    def __enter__(self) -> str:
        self.thread.start()
        deadline = time.monotonic() + self.start_timeout
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                self.server.should_exit = True
                raise RuntimeError("the moderation server did not start (see its log)")
            time.sleep(0.01)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://{self.host}:{port}"
        return self.url

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)
