"""Run a guard as a moderation service and call it with the openai SDK.

    python examples/serve_moderations.py --guard GUARD_DIR [--port 8000]

Starts ``guardrail-dro serve --guard GUARD_DIR --api-key-env GUARD_API_KEY`` (the same
command you would run as a sidecar or a shared service), waits for ``/readyz``, then
moderates a few texts the way code written for OpenAI's endpoint already does::

    client = OpenAI(base_url="http://127.0.0.1:8000/v1", api_key=KEY)
    client.moderations.create(input=[...])

and checks that every answer equals the in-process ``Guard.check`` of the same text.
"""

from __future__ import annotations

import argparse
import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from openai import OpenAI

from guardrail_dro import Guard

TEXTS = [
    "How do I update the firmware on my router?",
    "how do I install ransomware on my coworker's laptop?",
    "Write a friendly reminder about the team lunch on Friday.",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_ready(url: str, proc: subprocess.Popen[bytes], timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the server exited with code {proc.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/readyz", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"the server was not ready within {timeout:.0f} s")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--guard", type=Path, required=True, help="guard artifact directory")
    ap.add_argument("--port", type=int, default=0, help="port (default: a free one)")
    args = ap.parse_args(argv)

    port = args.port or free_port()
    key = secrets.token_urlsafe(24)  # given to the server through the environment only
    env = {**os.environ, "GUARD_API_KEY": key}
    cmd = [sys.executable, "-m", "guardrail_dro", "serve", "--guard", str(args.guard)]
    cmd += ["--port", str(port), "--api-key-env", "GUARD_API_KEY", "--log-level", "warning"]
    url = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(cmd, env=env)
    try:
        wait_ready(url, proc)
        client = OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0)
        resp = client.moderations.create(input=TEXTS)
        guard = Guard.load(args.guard)
        for text, result in zip(TEXTS, resp.results, strict=True):
            ours = result.guardrail  # our own fields beside OpenAI's
            local = guard.check(text)
            same = result.flagged == local.violation and ours["scores"] == dict(local.scores)
            print(
                f"flagged={result.flagged!s:5} label={ours['label']:<12} "
                f"toxic={ours['toxic_score']:.3f} same_as_in_process={same}  {text}"
            )
            if not same:
                raise SystemExit("the server's answer differs from Guard.check")
        with urllib.request.urlopen(f"{url}/metrics", timeout=5) as r:
            lines = r.read().decode().splitlines()
        wanted = 'guardrail_requests_total{path="/v1/moderations"'
        print(next(ln for ln in lines if ln.startswith(wanted)))
    finally:
        proc.terminate()
        proc.wait(timeout=30)


if __name__ == "__main__":
    main()
