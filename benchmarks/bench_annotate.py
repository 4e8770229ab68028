"""Annotation throughput against the local fake server, and calls on a cached re-run.

The fake server (``python -m annotators.testing``) runs in its own process, as a real
API would, and sleeps ``--latency`` seconds per request like a model; what is measured
is how well the runner overlaps those waits (bounded concurrency over the real async
SDK and real HTTP), not the model. Call counts come from the server's ``/_fake/stats``.
Each concurrency level labels its own fresh texts with a fresh cache; then the
concurrency-32 run is repeated on its cache, which must make zero calls.

Usage:
    python benchmarks/bench_annotate.py [--latency 0.3] [--provider openai]
        [--out benchmarks/results/annotate.json]

Targets (issue 3): concurrency 32 at least 25x concurrency 1; zero duplicate calls;
zero calls on the cached re-run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import contextmanager
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path

from annotators import AnnotationCache, AnthropicAnnotator, OpenAIAnnotator, annotate_with_report
from annotators.retry import RetryPolicy
from guardrail_dro.data.items import AnnotatedDataset, Item
from guardrail_dro.data.schema import LabelSchema

SCHEMA = LabelSchema(classes=("safe", "toxic"), safe=("safe",))
# Items per concurrency level: a few "rounds" of latency each, so the whole run stays
# around a minute while every level still runs long enough to measure.
ITEMS = {1: 15, 8: 96, 32: 640, 128: 1536}


class RemoteServer:
    """The fake server in a subprocess: its URLs and its counters over HTTP."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.openai_base_url = f"{url}/v1"
        self.anthropic_base_url = url

    def stats(self) -> dict:
        with urllib.request.urlopen(f"{self.url}/_fake/stats") as resp:
            return json.load(resp)

    def reset(self) -> None:
        req = urllib.request.Request(f"{self.url}/_fake/reset", data=b"{}", method="POST")
        urllib.request.urlopen(req).close()


@contextmanager
def fake_server(latency: float):
    proc = subprocess.Popen(
        [sys.executable, "-m", "annotators.testing", "--port", "0", "--latency", str(latency)],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        line = proc.stdout.readline()
        m = re.search(r"on (http://127\.0\.0\.1:\d+)", line)
        if m is None:
            raise RuntimeError(f"the fake server did not start: {line!r}")
        yield RemoteServer(m.group(1))
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _dataset(level: int, n: int) -> AnnotatedDataset:
    words = ("fine", "stupid", "lovely", "idiot")
    items = [Item(item_id=f"{level}-{i}", text=f"c{level} item {i}: this is {words[i % 4]}")
             for i in range(n)]
    return AnnotatedDataset(items, SCHEMA, name=f"bench-c{level}")


def _annotator(provider: str, server: RemoteServer):
    if provider == "openai":
        return OpenAIAnnotator("gpt-4o-mini", api_key="bench", base_url=server.openai_base_url)
    return AnthropicAnnotator("claude-haiku-4-5", api_key="bench",
                              base_url=server.anthropic_base_url)


def run(latency: float, provider: str, cache_dir: Path) -> dict:
    rows = []
    policy = RetryPolicy(max_attempts=3, initial=0.01, max_backoff=0.1)
    with fake_server(latency) as server:
        # Warm-up (SDK import, first connection) so that it is not charged to level 1.
        annotate_with_report(_dataset(0, 1), [_annotator(provider, server)], progress=False)
        for level, n in ITEMS.items():
            ds = _dataset(level, n)
            server.reset()
            with AnnotationCache(cache_dir / f"c{level}.sqlite") as cache:
                t0 = time.perf_counter()
                result = annotate_with_report(ds, [_annotator(provider, server)], cache=cache,
                                              concurrency=level, policy=policy, progress=False)
                secs = time.perf_counter() - t0
            per_text = server.stats()["calls"]
            calls = sum(per_text.values())
            dupes = sum(c - 1 for c in per_text.values() if c > 1)
            labelled = sum(result.report.outcomes[a]["labelled"] for a in result.report.outcomes)
            rows.append({"concurrency": level, "items": n, "seconds": round(secs, 3),
                         "annotations_per_s": round(labelled / secs, 2), "calls": calls,
                         "duplicate_calls": dupes, "labelled": labelled})
        # The concurrency-32 dataset again, on its cache: must not call at all.
        server.reset()
        with AnnotationCache(cache_dir / "c32.sqlite") as cache:
            t0 = time.perf_counter()
            again = annotate_with_report(_dataset(32, ITEMS[32]), [_annotator(provider, server)],
                                         cache=cache, concurrency=32, progress=False)
            cached_secs = time.perf_counter() - t0
        cached_calls = sum(server.stats()["endpoints"].values())
    base = rows[0]["annotations_per_s"]
    for r in rows:
        r["speedup_vs_c1"] = round(r["annotations_per_s"] / base, 1)
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{os.cpu_count()}-core {platform.machine()} CPU, {platform.system()}",
        "python": platform.python_version(),
        "sdk": {"openai": version("openai"), "anthropic": version("anthropic")},
        "provider": provider,
        "latency_s": latency,
        "levels": rows,
        "cached_rerun": {"items": ITEMS[32], "calls": cached_calls,
                         "from_cache": again.report.from_cache,
                         "seconds": round(cached_secs, 3)},
        "targets": {
            "c32_over_c1": rows[2]["annotations_per_s"] / base,
            "c32_over_c1_ok": rows[2]["annotations_per_s"] >= 25 * base,
            "zero_duplicate_calls": all(r["duplicate_calls"] == 0 for r in rows),
            "cached_rerun_zero_calls": cached_calls == 0,
        },
    }


def table(res: dict) -> str:
    lines = [
        f"annotate benchmark, {res['provider']} SDK against the local fake server, "
        f"{res['latency_s'] * 1000:.0f} ms simulated latency",
        f"{res['date']}, {res['machine']}, Python {res['python']}",
        "",
        "| concurrency | items | seconds | annotations/s | x c1 | calls | duplicate calls |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in res["levels"]:
        lines.append(f"| {r['concurrency']} | {r['items']} | {r['seconds']:.2f} | "
                     f"{r['annotations_per_s']:.1f} | {r['speedup_vs_c1']:.1f} | {r['calls']} | "
                     f"{r['duplicate_calls']} |")
    c = res["cached_rerun"]
    lines += ["", f"cached re-run of the c32 items: {c['calls']} calls, {c['from_cache']} from "
              f"cache, {c['seconds']:.2f} s"]
    t = res["targets"]
    lines.append(f"targets: c32/c1 = {t['c32_over_c1']:.1f}x (>= 25: {t['c32_over_c1_ok']}), "
                 f"zero duplicates: {t['zero_duplicate_calls']}, cached re-run zero calls: "
                 f"{t['cached_rerun_zero_calls']}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--latency", type=float, default=0.3, help="seconds per fake reply")
    parser.add_argument("--provider", choices=("openai", "anthropic"), default="openai")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/annotate.json"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        res = run(args.latency, args.provider, Path(tmp))
    print(table(res))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=2) + "\n", encoding="utf-8")
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
