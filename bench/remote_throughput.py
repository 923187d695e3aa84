"""Throughput of the OpenAI-compatible backend against a local server that answers each request after 100 ms.

    python bench/remote_throughput.py --requests 10000 --concurrency 16 64

Target (issue 5): throughput >= 0.8 x C / 0.1 s, memory flat over the run. Requests go through the
same path as a run: CachedBackend -> OpenAIBackend, every answer saved to a fresh SQLite store.
The server (asyncio, one thread) runs in its own process so the client has a core to itself.
"""

from __future__ import annotations

import argparse
import multiprocessing
import resource
import socket
import sys
import tempfile
import time
from pathlib import Path


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(port: int) -> None:
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("server did not start")


def run(n: int, concurrency: int, delay: float, port: int) -> dict:
    from tunewise.backends.base import GenParams, GenRequest
    from tunewise.backends.openai import OpenAIBackend
    from tunewise.store.cache import CachedBackend
    from tunewise.store.sqlite import Store

    backend = OpenAIBackend(f"http://127.0.0.1:{port}/v1", "bench", concurrency=concurrency, timeout_s=10)
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(Path(tmp) / "bench.db")
        cached = CachedBackend(backend, store)
        requests = [GenRequest([{"role": "user", "content": f"request {i}"}], GenParams(max_tokens=4)) for i in range(n)]
        memory = [rss_mib()]
        done = [0]

        def sample_memory(k: int) -> None:  # the progress callback: RSS after every 1,000 answers
            done[0] += k
            if done[0] % 1000 == 0:
                memory.append(rss_mib())
        start = time.perf_counter()
        cached.generate(requests, sample_memory)
        seconds = time.perf_counter() - start
        store.close()
    target = 0.8 * concurrency / delay
    return {"requests": n, "concurrency": concurrency, "seconds": seconds, "per_s": n / seconds,
            "target_per_s": target, "ok": n / seconds >= target, "rss_start_mib": memory[1],
            "rss_end_mib": memory[-1], "rss_samples": memory, "sent": backend.stats["sent"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[8, 16, 64])
    parser.add_argument("--delay", type=float, default=0.1)
    args = parser.parse_args()
    from tunewise.testing import serve_async
    print("| concurrency | requests | seconds | requests/s | target (0.8·C/0.1 s) | met | RSS after 1k → end (MiB) |")
    print("|---|---|---|---|---|---|---|")
    for concurrency in args.concurrency:
        port = free_port()
        server = multiprocessing.Process(target=serve_async, args=(port, args.delay), daemon=True)
        server.start()
        wait_for(port)
        try:
            r = run(args.requests, concurrency, args.delay, port)
        finally:
            server.terminate()
        print(f"| {concurrency} | {r['requests']} | {r['seconds']:.1f} | {r['per_s']:.0f} | {r['target_per_s']:.0f} | "
              f"{'yes' if r['ok'] else 'no'} | {r['rss_start_mib']:.0f} → {r['rss_end_mib']:.0f} |", flush=True)
    sys.exit(0)


if __name__ == "__main__":
    main()
