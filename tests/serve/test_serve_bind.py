"""``guardrail-dro serve`` binds its port before it says it serves: a busy ``--port`` or a
``--host`` not of this machine ends in one error line naming the option, exit code 2,
and no "serving ... on" line (it printed that line, then uvicorn's own error)."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from guardrail_dro.errors import ConfigError

CLI = [sys.executable, "-m", "guardrail_dro", "serve"]


@pytest.fixture()
def busy_port() -> Iterator[int]:
    """A port another socket listens on for the test's length."""
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        yield held.getsockname()[1]


def _serve(guard_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    # The timeout only ends a server that bound after all; the assertions say why.
    cmd = [*CLI, "--guard", str(guard_dir), "--log-level", "warning", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)


def test_a_busy_port_is_one_error_line(guard_dir: Path, busy_port: int) -> None:
    res = _serve(guard_dir, "--host", "127.0.0.1", "--port", str(busy_port))
    out = res.stdout + res.stderr
    assert res.returncode == 2, out
    assert f"error: port {busy_port} on 127.0.0.1 is in use: pick another --port" in out
    assert "serving" not in out and "Traceback" not in out, out


def test_a_host_not_of_this_machine_is_named(guard_dir: Path) -> None:
    # 192.0.2.1: TEST-NET-1 (RFC 5737), never an address of the machine running this.
    res = _serve(guard_dir, "--host", "192.0.2.1", "--port", "0")
    out = res.stdout + res.stderr
    assert res.returncode == 2, out
    assert "error: --host 192.0.2.1 is not an address of this machine" in out
    assert "serving" not in out and "Traceback" not in out, out


def test_bind_refuses_a_busy_port_and_listens_on_a_free_one(busy_port: int) -> None:
    from guardrail_dro.serve.http.server import bind

    with pytest.raises(ConfigError, match=f"port {busy_port} on 127.0.0.1 is in use"):
        bind("127.0.0.1", busy_port)
    sockets = bind("127.0.0.1", 0)
    try:
        port = sockets[0].getsockname()[1]
        # Listening already, before any server runs: a client connects (the kernel queues
        # it), and the port is refused to anyone else.
        with socket.create_connection(("127.0.0.1", port)):
            pass
        with pytest.raises(ConfigError, match="in use"):
            bind("127.0.0.1", port)
    finally:
        for sock in sockets:
            sock.close()


def test_background_server_url_on_ipv6_has_brackets() -> None:
    """``http://::1:PORT`` is no URL: the address needs brackets (as ``serve``'s line)."""
    import httpx
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    from guardrail_dro.serve.http.server import BackgroundServer

    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback on this machine")
    app = Starlette(routes=[Route("/", lambda _: PlainTextResponse("ok"))])
    with BackgroundServer(app, host="::1") as url:
        assert url.startswith("http://[::1]:")
        assert httpx.get(url + "/").text == "ok"
