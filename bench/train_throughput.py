"""LoRA training speed and accuracy: tunewise's training loop vs TRL's SFTTrainer, same everything.

    python bench/train_throughput.py [--train 500]

Both train the demo's `lora` arm: the embedded SmolLM2-135M, LoRA r=8 alpha=16 dropout 0 on the
attention projections, one epoch over the same train words (the bare input, chat-templated, the label and
end-of-turn token as the completion, loss on the completion only), the demo's batch, AdamW lr 5e-3, linear schedule
with the same warm-up, gradient clipping at 1.0, seed 0, no dev evaluation during training. The token
sequences are checked to be identical. Each trained model then answers the 200 test words with greedy
generation through tunewise's backend, and accuracy is counted the same way for both.
Train tokens per second = the real (unpadded) tokens of the epoch / training wall time. GFLOP/s counts the
FLOPs of every token's plain pass (4N + 6N_trainable each), also where tunewise runs a batch's shared start once:
an effective rate, the work a plain pass would have done per second; its share of the matmul peak measured
in the same run (float32 and bfloat16) says how near the hardware's limit the training runs.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

from tunewise.backends.local import LocalBackend
from tunewise.backends.models import EMBEDDED

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import accuracy, demo_data, machine, matmul_peak, rate_table, timed  # noqa: E402

LEARNING_RATE = 0.005  # the rate the demo's lora search chose (of 0.003 and 0.005) on its 500 train words


@dataclass
class TrainRow:
    engine: str
    examples: int
    tokens: int
    seconds: float
    accuracy: float
    flops: float  # training FLOPs, tunewise's estimate (4N + 6N_trainable per token)

    @property
    def tokens_per_second(self) -> float:
        return self.tokens / self.seconds


class Setup:
    def __init__(self, data, n_train: int):
        from tunewise.arms.tuned import TunedArm
        self.data = data
        config = next(a for a in data.task.arms if a.type == "lora")
        self.arm = TunedArm(config, data.task, data.labels)
        # every default resolved, as the arm trains with; the learning rate the demo's search chooses
        self.settings = self.arm.settings(n_train).model_copy(update={"learning_rate": LEARNING_RATE})
        self.base = LocalBackend(EMBEDDED, device="cpu", batch_size=data.task.batch_size)
        self.train = data.splits.train[:n_train]
        self.test = data.splits.test
        self.prompts = [self.base.render(self.arm.prompter.messages(e)) for e in self.train]

    def fresh_model(self):
        """The base weights with a seeded LoRA adapter, as the arm starts its training."""
        import torch

        from tunewise.backends.models import load_causal_lm, with_lora
        model = load_causal_lm(EMBEDDED, "cpu")
        torch.manual_seed(self.arm.seed)
        cfg = self.arm.config
        return with_lora(model, r=cfg.r, alpha=cfg.alpha, dropout=cfg.dropout, target_modules=cfg.target_modules)

    def test_accuracy(self, peft_model, key: str) -> float:
        merged = peft_model.merge_and_unload().eval()
        preds = self.arm.prompter.predict(self.test, LocalBackend.sharing(self.base, merged, key))
        return accuracy([p.parsed for p in preds], [e.target for e in self.test])


def run_tunewise(setup: Setup, precision: str = "auto") -> tuple[TrainRow, list[list[int]]]:
    from tunewise.training.loop import SFTTrainer, build_example, flops_per_token
    tok, eot = setup.base.tokenizer, setup.base.end_of_turn_id()
    settings = setup.settings.model_copy(update={"precision": precision})
    examples = [build_example(tok, p, e.target_text, eot, setup.settings.max_length)
                for p, e in zip(setup.prompts, setup.train)]
    model = setup.fresh_model()
    trainer = SFTTrainer(model, settings, examples, out_dir=Path(tempfile.mkdtemp()), evaluate=None,
                         pad_id=setup.base.pad_id(), device="cpu")
    state = trainer.train()
    flops = flops_per_token(model, full=False) * state.tokens_seen
    acc = setup.test_accuracy(model, "bench-tunewise")
    return (TrainRow(f"tunewise ({trainer.precision})", len(examples), state.tokens_seen, state.elapsed_s, acc, flops),
            [e.input_ids for e in examples])


def run_trl(setup: Setup, bf16: bool = False) -> tuple[TrainRow, list[list[int]]]:
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    from tunewise.training.loop import flops_per_token
    dataset = Dataset.from_list([{"prompt": p, "completion": e.target_text} for p, e in zip(setup.prompts, setup.train)])
    import math
    model = setup.fresh_model()  # the same base weights and the same initial adapter as tunewise's
    steps = setup.settings.epochs * math.ceil(len(setup.train) / setup.settings.batch_size / setup.settings.grad_accum)
    args = SFTConfig(output_dir=tempfile.mkdtemp(), per_device_train_batch_size=setup.settings.batch_size,
                     gradient_accumulation_steps=setup.settings.grad_accum, learning_rate=setup.settings.learning_rate,
                     num_train_epochs=setup.settings.epochs, lr_scheduler_type="linear",
                     warmup_steps=int(steps * setup.settings.warmup_ratio), weight_decay=setup.settings.weight_decay,
                     max_grad_norm=1.0, max_length=setup.settings.max_length, completion_only_loss=True,
                     logging_steps=50, save_strategy="no", report_to="none", use_cpu=True, seed=setup.arm.seed,
                     dataloader_num_workers=0, bf16=bf16, fp16=False, disable_tqdm=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer = SFTTrainer(model=model, args=args, train_dataset=dataset, processing_class=setup.base.tokenizer)
    sequences = [list(ids) for ids in trainer.train_dataset["input_ids"]]
    result, _ = timed(trainer.train)
    tokens = sum(len(s) for s in sequences) * setup.settings.epochs
    flops = flops_per_token(trainer.model, full=False) * tokens
    acc = setup.test_accuracy(trainer.model, "bench-trl")
    engine = f"TRL SFTTrainer ({'bfloat16' if bf16 else 'float32'})"
    return TrainRow(engine, len(sequences), tokens, result.metrics["train_runtime"], acc, flops), sequences


def run(n_train: int = 1000, directory: Path | None = None, bf16: bool = True) -> list[TrainRow]:
    """tunewise and TRL in float32; then both in bfloat16 mixed precision (where the CPU has it natively)."""
    from tunewise.training.loop import native_bf16
    directory = directory or Path(tempfile.mkdtemp(prefix="tunewise-bench-"))
    setup = Setup(demo_data(directory), n_train)
    rows, sequences = [], []
    runs = [(run_tunewise, "float32"), (run_trl, False)]
    if bf16 and native_bf16("cpu"):
        runs += [(run_tunewise, "bfloat16"), (run_trl, True)]
    for fn, arg in runs:
        row, ids = fn(setup, arg)
        rows.append(row)
        sequences.append(ids)
    if any(ids != sequences[0] for ids in sequences):
        raise SystemExit("the trainers see different token sequences; the comparison would not be fair")
    return rows


def table(rows: list[TrainRow], peak: float | None = None, peaks: dict[str, float] | None = None) -> str:
    """`peaks` (precision -> GFLOP/s): each row's rate as a share of its own precision's matmul peak."""
    headers = ["engine", "train examples", "train tokens", "train s", "tokens/s", "test accuracy"]
    cells = [[r.engine, str(r.examples), str(r.tokens), f"{r.seconds:.1f}", f"{r.tokens_per_second:.0f}",
              f"{r.accuracy:.3f}"] for r in rows]
    if peaks:
        headers.append("GFLOP/s (share of its precision's peak)")
        return "\n".join(["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)] + [
            "| " + " | ".join(c + [_share(r, peaks)]) + " |" for c, r in zip(cells, rows)])
    return rate_table(headers, cells, [r.flops / r.seconds / 1e9 for r in rows], peak)


def _share(row: TrainRow, peaks: dict[str, float]) -> str:
    rate = row.flops / row.seconds / 1e9
    precision = "bfloat16" if "bfloat16" in row.engine else "float32"
    return f"{rate:.0f} ({rate / peaks[precision]:.0%} of {precision} {peaks[precision]:.0f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=int, default=500)
    parser.add_argument("--no-bf16", action="store_true")
    args = parser.parse_args()
    peaks = {dtype: matmul_peak(dtype) for dtype in ("float32", "bfloat16")}  # this run, the machine quiet
    print(machine())
    print(table(run(args.train, bf16=not args.no_bf16), peaks=peaks))


if __name__ == "__main__":
    main()
