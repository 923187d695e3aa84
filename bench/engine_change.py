"""The local engine before and after a change, measured in one session: label scoring (zero-shot, 8-shot),
greedy generation and LoRA training on the demo task, through whichever tunewise is first on sys.path.

    git worktree add /tmp/before REV
    for src in /tmp/before/src src; do PYTHONPATH=$src python bench/engine_change.py; done

Each line: what, seconds, items or tokens per second, accuracy (the same data and seeds on both sides).
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from common import accuracy, demo_data  # noqa: E402


def timed(fn, *args):
    start = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - start


def main(items: int = 200, n_train: int = 300) -> None:
    import tunewise
    from eval_throughput import prompt_arms
    from train_throughput import Setup, run_tunewise
    from tunewise.backends.base import GenParams, GenRequest
    from tunewise.backends.local import LocalBackend
    from tunewise.backends.models import EMBEDDED
    print(f"tunewise from {Path(tunewise.__file__).parent}")
    data = demo_data(Path(tempfile.mkdtemp(prefix="tunewise-bench-")))
    test = data.splits.test[:items]
    backend = LocalBackend(EMBEDDED, device="cpu", batch_size=data.task.batch_size)
    for arm in prompt_arms(data):
        arm.predict(test[:8], backend)  # warm-up
        preds, seconds = timed(arm.predict, test, backend)
        print(f"score {arm.name}: {seconds:.2f} s, {len(test) / seconds:.1f} items/s, "
              f"accuracy {accuracy([p.parsed for p in preds], [e.target for e in test]):.3f}")
        requests = [GenRequest(arm.messages(e), GenParams(max_tokens=16)) for e in test]
        gens, seconds = timed(backend.generate, requests)
        print(f"generate {arm.name}: {seconds:.2f} s, {len(test) / seconds:.1f} items/s, "
              f"{sum(g.output_tokens for g in gens)} tokens")
    row, _ = run_tunewise(Setup(data, n_train), precision="float32")
    print(f"train lora float32: {row.seconds:.1f} s, {row.tokens / row.seconds:.0f} tokens/s, "
          f"{row.tokens} tokens, test accuracy {row.accuracy:.3f}")


if __name__ == "__main__":
    main()
