"""Shared pieces of the local-engine benchmarks: the demo task's splits, timing, the machine's matmul peak."""

from __future__ import annotations

import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@dataclass
class DemoData:
    task: object
    splits: object
    labels: list[str]
    directory: Path


def demo_data(directory: Path) -> DemoData:
    """The demo task (word sentiment) and its seeded splits, exactly as `tunewise demo` makes them."""
    from tunewise.demo import demo_task
    from tunewise.task.data import label_set, load_examples, make_splits
    task, _ = demo_task(directory)
    examples = load_examples(task)
    return DemoData(task, make_splits(task, examples), label_set(task, examples), directory)


def timed(fn, *args, **kwargs) -> tuple[object, float]:
    start = time.perf_counter()
    value = fn(*args, **kwargs)
    return value, time.perf_counter() - start


def matmul_peak(dtype: str = "float32", seconds: float = 3.0) -> float:
    """The best float matmul rate (GFLOP/s) torch reaches here, over square and model-shaped products."""
    import torch
    torch_dtype = getattr(torch, dtype)
    shapes = [(1024, 1024, 1024), (2048, 2048, 2048), (512, 576, 1536), (512, 1536, 576)]
    best = 0.0
    for m, k, n in shapes:
        a, b = torch.randn(m, k, dtype=torch_dtype), torch.randn(k, n, dtype=torch_dtype)
        a @ b  # warm-up
        count, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds / len(shapes):
            a @ b
            count += 1
        best = max(best, 2 * m * k * n * count / (time.perf_counter() - start) / 1e9)
    return best


def machine() -> str:
    import torch
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    return f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__} ({torch.get_num_threads()} threads)"


def accuracy(predicted: list, targets: list) -> float:
    return sum(p == t for p, t in zip(predicted, targets)) / len(targets)


def rate_table(headers: list[str], rows: list[list[str]], gflops: list[float], peak: float | None) -> str:
    """A Markdown table whose last column is achieved GFLOP/s, with its share of `peak` when given."""
    head = headers + ["GFLOP/s" + (" (share of peak)" if peak else "")]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for cells, rate in zip(rows, gflops):
        share = f" ({rate / peak:.0%})" if peak else ""
        lines.append("| " + " | ".join(cells + [f"{rate:.0f}{share}"]) + " |")
    return "\n".join(lines)
