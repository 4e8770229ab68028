"""Throughput and latency of ``guardrail-dro serve``, and its overhead over in-process
``Guard.check``, in one run on one machine.

The server runs as the real command (``python -m guardrail_dro serve``) in a subprocess,
so its event loop and model thread do not share a GIL with the clients; the clients
are asyncio tasks on one keep-alive ``httpx2`` connection pool, each sending one text
per request (the sidecar case) and waiting for the answer before the next. Texts: the
bundled toxic-questions test split (short questions), cycled.

Rows, for 1, 8 and 32 concurrent clients:

- ``batched``: the defaults (micro-batching up to 64 texts, 1 ms wait);
- ``unbatched``: ``--max-batch-texts 1`` (one model call per request);
- ``in-process``: ``Guard.check`` called directly on the same texts, one thread (the
  floor the server adds to): the overhead is server p50 minus this p50 at 1 client.

Usage::

    python benchmarks/bench_serve.py --model-dir /path/to/trained_model   # exported first
    python benchmarks/bench_serve.py --guard-dir GUARD --out benchmarks/results/serve.json
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import httpx2
import numpy as np

CLIENTS = (1, 8, 32)
MODES = {"batched": [], "unbatched": ["--max-batch-texts", "1", "--max-wait-ms", "0"]}


def pct(xs: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(xs), q))


def texts() -> list[str]:
    from guardrail_dro.data.readers import read_dataset

    return [item.text for item in read_dataset("toxic-questions:test").items]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(guard_dir: Path, extra: list[str], precision: str) -> tuple[Any, str]:
    port = free_port()
    cmd = [sys.executable, "-m", "guardrail_dro", "serve", "--guard", str(guard_dir)]
    cmd += ["--port", str(port), "--log-level", "warning", "--provider", "cpu"]
    proc = subprocess.Popen([*cmd, "--precision", precision, *extra])
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/readyz", timeout=2):
                return proc, url
        except OSError:
            time.sleep(0.2)
    proc.terminate()
    raise SystemExit("server not ready in 180 s")


async def load(url: str, pool: list[str], clients: int, requests: int) -> dict[str, float]:
    """``requests`` requests from ``clients`` concurrent clients: requests/s, p50, p99."""
    latencies: list[float] = []
    counter = iter(range(requests))
    limits = httpx2.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx2.AsyncClient(base_url=url, limits=limits, timeout=60) as http:

        async def client() -> None:
            for i in counter:
                body = {"input": pool[i % len(pool)]}
                t = time.perf_counter()
                r = await http.post("/v1/moderations", json=body)
                latencies.append(time.perf_counter() - t)
                r.raise_for_status()

        for _ in range(min(2 * clients, 20)):  # warm the connections
            await http.post("/v1/moderations", json={"input": pool[0]})
        start = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(clients)))
        wall = time.perf_counter() - start
    return {
        "requests": requests,
        "requests_per_s": requests / wall,
        "p50_ms": pct(latencies, 50) * 1e3,
        "p99_ms": pct(latencies, 99) * 1e3,
    }


def batch_totals(url: str) -> tuple[float, float]:
    """(texts, model calls) so far, from the server's metrics."""
    with urllib.request.urlopen(f"{url}/metrics", timeout=5) as r:
        lines = r.read().decode().splitlines()
    value = {
        ln.split(" ")[0]: float(ln.split(" ")[1])
        for ln in lines
        if ln.startswith("guardrail_batch_texts_")
    }
    return value["guardrail_batch_texts_sum"], value["guardrail_batch_texts_count"]


def in_process(guard_dir: Path, pool: list[str], n: int, precision: str) -> dict[str, float]:
    from guardrail_dro.serve.guard import Guard

    guard = Guard.load(guard_dir, provider="cpu", precision=precision)
    for t in pool[:20]:
        guard.check(t)
    lat = []
    start = time.perf_counter()
    for i in range(n):
        t = time.perf_counter()
        guard.check(pool[i % len(pool)])
        lat.append(time.perf_counter() - t)
    wall = time.perf_counter() - start
    return {
        "requests": n,
        "requests_per_s": n / wall,
        "p50_ms": pct(lat, 50) * 1e3,
        "p99_ms": pct(lat, 99) * 1e3,
    }


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--guard-dir", type=Path, help="a guard artifact (else --model-dir)")
    ap.add_argument("--model-dir", type=Path, help="a trained model to export first")
    ap.add_argument("--requests", type=int, default=300, help="requests per client count")
    ap.add_argument("--precision", default="int8", help="int8 (one row a call) or fp32")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/serve.json"))
    args = ap.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="bench-serve-"))
    guard_dir = args.guard_dir
    if guard_dir is None:
        if args.model_dir is None:
            raise SystemExit("give --guard-dir or --model-dir")
        from export.onnx import export_onnx

        guard_dir = export_onnx(args.model_dir, work / "guard", int8=True)
    pool = texts()
    rows: list[dict] = []
    base = in_process(guard_dir, pool, args.requests, args.precision)
    rows.append({"mode": "in-process Guard.check", "clients": 1, **base})
    print(f"in-process: {base}", flush=True)
    for mode, extra in MODES.items():
        proc, url = start_server(guard_dir, extra, args.precision)
        try:
            for clients in CLIENTS:
                n = args.requests * (1 if clients == 1 else 2)
                texts0, calls0 = batch_totals(url)
                row = asyncio.run(load(url, pool, clients, n))
                texts1, calls1 = batch_totals(url)
                row = {"mode": mode, "clients": clients, **row}
                row["texts_per_model_call"] = (texts1 - texts0) / max(1.0, calls1 - calls0)
                rows.append(row)
                print(row, flush=True)
        finally:
            proc.terminate()
            proc.wait(30)
    one = next(r for r in rows if r["mode"] == "batched" and r["clients"] == 1)
    result = {
        "date": dt.date.today().isoformat(),
        "machine": platform.platform(),
        "cpus": os.cpu_count(),
        "load_average_1m": os.getloadavg()[0],
        "note": "2-core machine shared with other jobs (loaded); numbers are indicative",
        "guard_dir": str(guard_dir),
        "precision": args.precision,
        "texts": "toxic-questions:test (bundled), one text per request",
        "rows": rows,
        "overhead_p50_ms_at_1_client": one["p50_ms"] - base["p50_ms"],
    }
    print()
    print(f"{'mode':<24}{'clients':>8}{'req/s':>10}{'p50 ms':>10}{'p99 ms':>10}{'batch':>8}")
    for r in rows:
        print(
            f"{r['mode']:<24}{r['clients']:>8}{r['requests_per_s']:>10.1f}"
            f"{r['p50_ms']:>10.2f}{r['p99_ms']:>10.2f}{r.get('texts_per_model_call', 1):>8.1f}"
        )
    print(
        "overhead over in-process at 1 client (p50): "
        f"{result['overhead_p50_ms_at_1_client']:.2f} ms"
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
