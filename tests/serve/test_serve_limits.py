"""What a deployed server owes the other callers and its operator: a stalled upload or a
vanished client holds nothing and is no server error, a shutdown is bounded, and the
server refuses settings under which a request could never succeed. Real uvicorn on a
free port, raw sockets where a client misbehaves."""

from __future__ import annotations

import re
import socket
import time
from pathlib import Path
from urllib.parse import urlsplit

import httpx2
import pytest
from typer.testing import CliRunner

from guardrail_dro.errors import ConfigError
from guardrail_dro.serve.guard import Guard
from guardrail_dro.serve.http import BackgroundServer, ServeConfig, create_app

from .guard_helpers import keyword_scorer


def _connect(url: str) -> socket.socket:
    parts = urlsplit(url)
    return socket.create_connection((parts.hostname, parts.port), timeout=10)


def _partial(url: str) -> socket.socket:
    """A POST whose body promises 100 bytes and sends 9."""
    sock = _connect(url)
    sock.sendall(
        b"POST /v1/moderations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 100\r\n\r\n" + b'{"input":'
    )
    return sock


def _read_reply(sock: socket.socket) -> str:
    """One whole HTTP reply (headers and a Content-Length body), however it is split."""
    data = b""
    while b"\r\n\r\n" not in data or len(data.partition(b"\r\n\r\n")[2]) < int(
        re.search(rb"content-length: (\d+)", data.lower()).group(1)  # type: ignore[union-attr]
    ):
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    return data.decode()


def test_a_stalled_upload_is_answered_408() -> None:
    """Before, a body that stopped arriving held its connection for ever (and a graceful
    shutdown waited for it: 45 s and counting in the audit)."""
    guard = Guard.from_scorer(keyword_scorer())
    with BackgroundServer(create_app(guard, ServeConfig(read_timeout_ms=300))) as url:
        start, sock = time.perf_counter(), _partial(url)
        reply = _read_reply(sock)
        sock.close()
        took = time.perf_counter() - start
    assert reply.startswith("HTTP/1.1 408"), reply
    assert '"code":"timeout"' in reply and took < 5, took


def test_a_client_gone_mid_upload_is_not_a_server_error() -> None:
    """A client that closes mid-body was a 500 in the metrics (and a traceback in the
    log): an alert on 5xx fired for the client's own hang-up."""
    guard = Guard.from_scorer(keyword_scorer())
    with BackgroundServer(create_app(guard)) as url:
        _partial(url).close()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            metrics = httpx2.get(f"{url}/metrics").text
            if 'path="/v1/moderations"' in metrics:
                break
            time.sleep(0.05)
    assert 'path="/v1/moderations",status="499"' in metrics
    assert 'status="500"' not in metrics


def test_a_model_name_with_a_lone_surrogate_is_a_400() -> None:
    """The model is echoed in the response, which cannot carry a lone surrogate: it was a
    500 once the decision had been made."""
    guard = Guard.from_scorer(keyword_scorer())
    with BackgroundServer(create_app(guard)) as url:
        r = httpx2.post(
            f"{url}/v1/moderations",
            content=b'{"input": "a", "model": "\\ud83d"}',
            headers={"content-type": "application/json"},
        )
    assert r.status_code == 400 and r.json()["error"]["param"] == "model", r.text


def test_a_queue_smaller_than_one_request_is_refused_at_start() -> None:
    """--max-queue-texts 4 with --max-inputs 256 answered a request of 5 texts 503
    "retry shortly" on an idle server, for ever."""
    guard = Guard.from_scorer(keyword_scorer())
    with pytest.raises(ConfigError, match="max_queue_texts=4 is below max_inputs=8"):
        create_app(guard, ServeConfig(max_queue_texts=4, max_inputs=8))
    create_app(guard, ServeConfig(max_queue_texts=8, max_inputs=8))


def test_serve_sets_the_windows_and_bounds_the_shutdown(guard_dir: Path, monkeypatch) -> None:
    """--max-windows reaches the served guard's policy (0: every window), and the server
    gets a graceful-shutdown bound."""
    import guardrail_dro.serve.http as http
    from guardrail_dro.cli.app import app
    from guardrail_dro.serve.policy import DEFAULT_MAX_WINDOWS

    served: list = []
    monkeypatch.setattr(http, "serve", lambda app, **kw: served.append((app, kw)))
    for flag, want in ((None, DEFAULT_MAX_WINDOWS), ("40", 40), ("0", None)):
        args = ["serve", "--guard", str(guard_dir)] + (["--max-windows", flag] if flag else [])
        res = CliRunner().invoke(app, args)
        assert res.exit_code == 0, res.output
        served_app, kw = served.pop()
        assert served_app.state.batcher.guard.policy.max_windows == want
        assert kw["timeout_graceful_shutdown"] == pytest.approx(45.0)
