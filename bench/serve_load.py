"""Load on `tunewise serve`: N concurrent chat requests, batched and one at a time.

    python bench/serve_load.py                       # 200 requests; the demo's structured prompt, embedded model
    python bench/serve_load.py --requests 20 --max-test 20   # a quick check that it runs
    python bench/serve_load.py --bundle DIR          # any exported bundle

Without --bundle it makes one: the demo task (word sentiment) with one prompting arm on the embedded
SmolLM2-135M, run on --max-test test items and exported. The server runs as `tunewise serve` in its own
process; the client (asyncio + httpx, one connection per request) sends every request at once, distinct
demo words, and times each from send to answer. Reported per mode: answers received (none lost: every
request gets a 200), the jobs the server's engine ran (none duplicated: exactly one per request), requests/s,
p50/p99 latency, the mean batch, the server's exit code after SIGTERM (0: clean), then the batching's gain
(requests/s batched over one at a time) and how often both modes gave the same parsed answer.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def make_bundle(folder: Path, arm: dict, max_test: int) -> Path:
    """The demo task with one arm, run on max_test test items and exported."""
    import tunewise
    from tunewise.demo import demo_task
    from tunewise.ship.export import export
    from tunewise.store.sqlite import Store
    from tunewise.task import validate_task
    task, _ = demo_task(folder / "demo")
    data = task.model_dump(mode="json")
    data.update(arms=[arm], learning_curve=None, consistency={"enabled": False},
                splits=dict(data["splits"], max_test=max_test))
    task = validate_task(data)
    result = tunewise.run(task, home=folder / "home", progress=False, log=lambda m: None)
    return export(Store(result.store_path), result.run_id, folder / "bundle", arm.get("name", arm["type"]))


def words(n: int) -> list[str]:
    from tunewise.demo import word_rows
    rows = word_rows()
    if n > len(rows):
        raise SystemExit(f"the demo has {len(rows)} words; ask for fewer requests")
    step = len(rows) // n
    return [f"Word: {rows[i * step]['word']}" for i in range(n)]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(bundle: Path, port: int, max_batch: int, window_ms: float) -> subprocess.Popen:
    command = [sys.executable, "-m", "tunewise", "serve", str(bundle), "--port", str(port), "--max-batch",
               str(max_batch), "--batch-window-ms", str(window_ms), "--device", "cpu"]
    return subprocess.Popen(command, stderr=subprocess.PIPE, text=True)


async def wait_ready(base: str, server: subprocess.Popen) -> None:
    import httpx
    async with httpx.AsyncClient() as client:
        for _ in range(600):
            if server.poll() is not None:
                raise SystemExit(f"the server exited: {server.stderr.read()}")
            try:
                if (await client.get(f"{base}/health")).status_code == 200:
                    return
            except httpx.TransportError:
                await asyncio.sleep(0.2)
    raise SystemExit("the server did not start in 2 minutes")


async def load(base: str, model: str, inputs: list[str]) -> tuple[list[dict | None], list[float], float]:
    """Every request at once; each answer (None when it failed) and its latency."""
    import httpx
    limits = httpx.Limits(max_connections=len(inputs), max_keepalive_connections=len(inputs))
    async with httpx.AsyncClient(limits=limits, timeout=600) as client:
        async def one(text: str) -> tuple[dict | None, float]:
            body = {"model": model, "messages": [{"role": "user", "content": text}], "temperature": 0}
            start = time.perf_counter()
            try:
                response = await client.post(f"{base}/v1/chat/completions", json=body)
                answer = response.json() if response.status_code == 200 else None
            except httpx.HTTPError:
                answer = None
            return answer, time.perf_counter() - start
        start = time.perf_counter()
        results = await asyncio.gather(*(one(text) for text in inputs))
        wall = time.perf_counter() - start
        return [a for a, _ in results], [s for _, s in results], wall


async def warm_up(base: str, model: str, texts: list[str]) -> None:
    """A burst of requests first: the first batches of a shape pay one-time costs (allocations, kernels)."""
    import httpx
    async with httpx.AsyncClient(timeout=600) as client:
        async def one(text: str) -> None:
            body = {"model": model, "messages": [{"role": "user", "content": text}], "temperature": 0}
            (await client.post(f"{base}/v1/chat/completions", json=body)).raise_for_status()
        await asyncio.gather(*(one(text) for text in texts))


async def health(base: str) -> dict:
    import httpx
    async with httpx.AsyncClient() as client:
        return (await client.get(f"{base}/health")).json()


def measure(bundle: Path, model: str, inputs: list[str], max_batch: int, window_ms: float) -> dict:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server = start_server(bundle, port, max_batch, window_ms)
    try:
        asyncio.run(wait_ready(base, server))
        asyncio.run(warm_up(base, model, inputs[:8]))
        before = asyncio.run(health(base))
        answers, latencies, wall = asyncio.run(load(base, model, inputs))
        after = asyncio.run(health(base))
        server.send_signal(signal.SIGTERM)
        code = server.wait(timeout=120)
    finally:
        if server.poll() is None:
            server.kill()
    jobs = after["jobs"] - before["jobs"]
    batches = after["batches"] - before["batches"]
    ok = [a for a in answers if a is not None]
    cuts = statistics.quantiles(latencies, n=100)
    return {"max_batch": max_batch, "requests": len(inputs), "answered": len(ok), "lost": len(inputs) - len(ok),
            "engine_jobs": jobs, "duplicated": jobs - len(inputs), "wall_s": wall, "per_s": len(inputs) / wall,
            "p50_s": statistics.median(latencies), "p99_s": cuts[98], "mean_batch": jobs / max(1, batches),
            "exit_code": code, "parsed": [a["choices"][0]["tunewise"]["parsed"] if a else None for a in answers]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--bundle", type=Path, help="an exported bundle (default: one made from the demo)")
    parser.add_argument("--arm", default='{"type": "structured", "decoding": "generate"}',
                        help="the demo arm to bundle, as JSON (without --bundle)")
    parser.add_argument("--max-test", type=int, default=40, help="test items the bundle's run answers")
    parser.add_argument("--max-batch", type=int, default=64)
    parser.add_argument("--window-ms", type=float, default=5.0)
    parser.add_argument("--json", action="store_true", help="also print the measurements as JSON")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        bundle = args.bundle or make_bundle(Path(tmp), json.loads(args.arm), args.max_test)
        model = json.loads((bundle / "manifest.json").read_text())["name"]
        inputs = words(args.requests)
        rows = [measure(bundle, model, inputs, args.max_batch, args.window_ms),
                measure(bundle, model, inputs, 1, 0.0)]
    print(f"`python {' '.join(sys.argv)}` — {args.requests} concurrent chat requests, bundle {model!r}, "
          f"{os.cpu_count()} CPUs\n")
    print("| mode | answered | lost | duplicated | requests/s | p50 latency (s) | p99 latency (s) | mean batch | "
          "exit after SIGTERM |")
    print("|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        mode = f"batched (max {row['max_batch']}, {args.window_ms:g} ms window)" if row["max_batch"] > 1 \
            else "one at a time"
        print(f"| {mode} | {row['answered']}/{row['requests']} | {row['lost']} | {row['duplicated']} | "
              f"{row['per_s']:.1f} | {row['p50_s']:.2f} | {row['p99_s']:.2f} | {row['mean_batch']:.1f} | "
              f"{row['exit_code']} |")
    same = sum(a == b for a, b in zip(rows[0]["parsed"], rows[1]["parsed"]))
    print(f"\nbatching gain: {rows[0]['per_s'] / rows[1]['per_s']:.2f}x requests/s; "
          f"same parsed answer in both modes: {same}/{args.requests}")
    if args.json:
        print(json.dumps([{k: v for k, v in r.items() if k != "parsed"} for r in rows], indent=2))


if __name__ == "__main__":
    main()
