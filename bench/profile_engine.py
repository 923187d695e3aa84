"""Where the local engine's time goes: torch profiler tables for 8-shot label scoring and LoRA training steps.

    python bench/profile_engine.py [--steps 20]

Prints the top operators by self CPU time, and the share spent in matrix products (aten::mm, addmm, bmm),
in attention (scaled_dot_product) and in everything else, which is what separates the achieved
GFLOP/s from the matmul peak.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import demo_data  # noqa: E402

MATMUL = ("aten::mm", "aten::addmm", "aten::bmm", "aten::linear")


def shares(prof) -> str:
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events)
    mm = sum(e.self_cpu_time_total for e in events if e.key in MATMUL)
    attention = sum(e.self_cpu_time_total for e in events if "scaled_dot_product" in e.key or "flash_attention" in e.key)
    return (f"matrix products {mm / total:.0%}, attention {attention / total:.0%}, "
            f"other {(total - mm - attention) / total:.0%} of {total / 1e6:.2f} s of operator time")


def profile_scoring(data) -> None:
    import torch

    from eval_throughput import prompt_arms
    from tunewise.backends.local import LocalBackend
    from tunewise.backends.models import EMBEDDED
    backend = LocalBackend(EMBEDDED, device="cpu")
    arm = prompt_arms(data)[1]
    test = data.splits.test
    arm.predict(test[:8], backend)
    with torch.profiler.profile() as prof:
        arm.predict(test, backend)
    print(f"## 8-shot label scoring, {len(test)} items: {shares(prof)}\n")
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=12))


def profile_training(data, steps: int, precision: str) -> None:
    import torch

    from train_throughput import Setup
    from tunewise.training.loop import SFTTrainer, build_example
    setup = Setup(data, steps * 8)
    tok, eot = setup.base.tokenizer, setup.base.end_of_turn_id()
    examples = [build_example(tok, p, e.target_text, eot, 256) for p, e in zip(setup.prompts, setup.train)]
    settings = setup.settings.model_copy(update={"precision": precision})
    trainer = SFTTrainer(setup.fresh_model(), settings, examples, out_dir=Path(tempfile.mkdtemp()))
    with torch.profiler.profile() as prof:
        trainer.train()
    print(f"\n## LoRA training ({precision}), {steps} steps of 8: {shares(prof)}\n")
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=12))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()
    data = demo_data(Path(tempfile.mkdtemp(prefix="tunewise-bench-")))
    profile_scoring(data)
    for precision in ("float32", "bfloat16"):
        profile_training(data, args.steps, precision)


if __name__ == "__main__":
    main()
