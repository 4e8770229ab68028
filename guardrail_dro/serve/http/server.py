"""Running the moderation app on uvicorn: ``serve`` (the command's foreground server, on
sockets ``bind`` opened) and ``BackgroundServer`` (a real server on a free port in a
thread, for tests, examples and benchmarks: ``with BackgroundServer(app) as url: ...``).
"""

from __future__ import annotations

import errno
import socket
import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any

import uvicorn

from guardrail_dro.errors import ConfigError

__all__ = ["BackgroundServer", "bind", "serve"]

_EVERY = "127.0.0.1: this machine only, 0.0.0.0: every interface"


def _config(app: Any, host: str, port: int, **options: Any) -> uvicorn.Config:
    # No Server header; the access log shows method, path and status, never a header.
    return uvicorn.Config(app, host=host, port=port, server_header=False, **options)


def bind(host: str, port: int, *, backlog: int = 2048) -> list[socket.socket]:
    """Listening TCP sockets on ``host``:``port`` (one per address the host resolves to,
    as asyncio's ``create_server`` binds), for ``uvicorn.Server.run(sockets=...)``.

    Bound here, not inside uvicorn, so that a busy port is refused before anything says
    it serves: uvicorn binds only after the app's startup, and the command had already
    printed "serving ... on http://..." above uvicorn's own error. Listening at once
    also leaves no window between a check and the bind: with SO_REUSEADDR a second
    server may bind a port no one listens on yet.

    Raises:
        ConfigError: the host does not resolve or is not an address of this machine,
            or the port is in use or needs privileges; the message names --host or
            --port and what to do.
    """
    try:
        infos = socket.getaddrinfo(
            host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    except socket.gaierror as exc:
        raise ConfigError(
            f"--host {host!r} does not resolve ({exc.strerror}): give an address or name of "
            f"this machine ({_EVERY})"
        ) from None
    sockets: list[socket.socket] = []
    try:
        for family, kind, proto, _, address in dict.fromkeys(infos):
            sock = socket.socket(family, kind, proto)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:  # as asyncio: "::" is IPv6 only, not both
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(address)
            sock.listen(backlog)
    except OSError as exc:
        for sock in sockets:
            sock.close()
        raise _bind_error(exc, host, port) from None
    return sockets


def _bind_error(exc: OSError, host: str, port: int) -> ConfigError:
    """What a failed bind means, and which option changes it."""
    where = f"port {port} on {host}"
    if exc.errno == errno.EADDRINUSE:
        return ConfigError(f"{where} is in use: pick another --port, or stop what holds it")
    if exc.errno == errno.EACCES:
        return ConfigError(f"{where} needs privileges: pick a --port above 1023")
    if exc.errno == errno.EADDRNOTAVAIL:
        return ConfigError(
            f"--host {host} is not an address of this machine: pick one of them ({_EVERY})"
        )
    return ConfigError(f"cannot listen on {where} ({exc.strerror}): check --host and --port")


def _url_of(host: str, sock: socket.socket) -> str:
    """The base URL of a listening socket bound for ``host`` (its real port where 0 was
    asked; an IPv6 address in brackets)."""
    port = sock.getsockname()[1]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def serve(
    app: Any,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    on_bound: Callable[[str], object] | None = None,
    **options: Any,
) -> None:
    """Serve ``app`` until interrupted (uvicorn options pass through: ``log_level``,
    ``limit_concurrency``, ``timeout_keep_alive``...).

    The sockets are bound first (``bind``); ``on_bound`` is then called with the base
    URL, e.g. ``http://127.0.0.1:8000``, before the app starts.

    Raises:
        ConfigError: ``host`` and ``port`` cannot be bound (see ``bind``).
    """
    sockets = bind(host, port, backlog=options.get("backlog", 2048))
    try:
        if on_bound is not None:
            on_bound(_url_of(host, sockets[0]))
        uvicorn.Server(_config(app, host, port, **options)).run(sockets=sockets)
    finally:  # uvicorn closes them on a clean shutdown, not when its startup fails
        for sock in sockets:
            sock.close()


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
        self.url = _url_of(self.host, self.server.servers[0].sockets[0])  # [::1] too
        return self.url

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)
