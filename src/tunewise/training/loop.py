"""Supervised fine-tuning (LoRA or full) in a plain PyTorch loop with TRL's SFT shape.

Why not TRL's SFTTrainer: on this project's 2-core machines it took 358 s for an epoch that a plain
loop trains in about 210 s (the project guide's measurement; this loop measured 205 s for that epoch
in the demo). The savings: the output head runs only on answer tokens, batches are bucketed by length
so they carry little padding, and no framework overhead per step. A side-by-side benchmark against
SFTTrainer belongs in bench/ (issue 6).
Inputs keep TRL's vocabulary: prompt/completion rows, loss on the completion only, EOS learned.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import math
import os
import random
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from ..backends.local import output_logits
from ..task import TrainSettings


@dataclass
class SFTExample:
    input_ids: list[int]
    labels: list[int]  # -100 where no loss is taken (the prompt)
    clipped: bool = False  # longer than max_length: the prompt's start was cut


def build_example(tokenizer, prompt_text: str, answer: str, eos_id: int, max_length: int,
                  learned: list[tuple[int, int]] = (), leading: list[int] = ()) -> SFTExample:
    """Prompt tokens unlabeled; answer tokens and the end-of-turn token labeled. `learned`: character spans of
    the prompt labeled too (a conversation's earlier assistant messages), each with the end-of-turn token
    that follows it. `leading`: special tokens before the prompt (a plain rendering's <bos>)."""
    encode = lambda text: tokenizer(text, add_special_tokens=False)["input_ids"]  # noqa: E731
    prompt, labels, cursor = list(leading), [-100] * len(leading), 0
    for start, end in learned:
        plain, said = encode(prompt_text[cursor:start]), encode(prompt_text[start:end])
        prompt += plain + said
        labels += _after_turn(plain, eos_id, cursor > 0) + said
        cursor = end
    plain = encode(prompt_text[cursor:])
    prompt += plain
    labels += _after_turn(plain, eos_id, cursor > 0)
    completion = encode(answer) + [eos_id]
    ids = (prompt + completion)[-max_length:]  # keep the answer when cutting
    labels = (labels + completion)[-max_length:]
    return SFTExample(ids, labels, clipped=len(prompt) + len(completion) > max_length)


def _after_turn(tokens: list[int], eos_id: int, after_answer: bool) -> list[int]:
    """Labels of template text: none, but the end-of-turn token that closes a learned answer."""
    labels = [-100] * len(tokens)
    if after_answer and tokens[:1] == [eos_id]:
        labels[0] = eos_id
    return labels


@dataclass
class TrainState:
    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0
    examples_seen: int = 0
    tokens_seen: int = 0
    elapsed_s: float = 0.0
    best_metric: float | None = None
    best_epoch: int | None = None
    bad_epochs: int = 0
    stopped_early: bool = False
    losses: list[dict[str, float]] = field(default_factory=list)    # per optimizer step
    dev: list[dict[str, float]] = field(default_factory=list)       # per epoch


@dataclass
class TrainResult:
    state: TrainState
    trainable_params: int
    total_params: int
    flops: float
    epochs_planned: int
    precision: str = "float32"

    def summary(self) -> dict[str, Any]:
        s = self.state
        return {"wall_s": s.elapsed_s, "steps": s.step, "epochs_run": s.epoch, "epochs_planned": self.epochs_planned,
                "examples_seen": s.examples_seen, "tokens_seen": s.tokens_seen, "best_dev": s.best_metric,
                "best_epoch": s.best_epoch, "stopped_early": s.stopped_early,
                "trainable_params": self.trainable_params, "total_params": self.total_params,
                "train_flops": self.flops, "precision": self.precision, "losses": s.losses, "dev": s.dev}


class SFTTrainer:
    """Train `model` on `examples`; evaluate on dev after each epoch; keep the best weights.

    `args` holds every knob; the caller resolves learning_rate and seed into it (they default to None).
    `evaluate(model) -> float` returns the dev metric (higher is better). Checkpoints in `out_dir`
    let an interrupted training continue where it stopped, with the same result.
    """

    def __init__(self, model, args: TrainSettings, examples: list[SFTExample], *, out_dir: Path,
                 evaluate: Callable[[Any], float] | None = None, pad_id: int = 0, device: str = "cpu",
                 progress: Callable[[int, str], None] | None = None, accelerator=None):
        if args.learning_rate is None or args.seed is None:
            raise ValueError("TrainSettings.learning_rate and .seed must be set before training "
                             "(resolve the defaults with model_copy(update=...))")
        self.model, self.args, self.examples = model, args, examples
        self.out_dir, self.evaluate, self.pad_id = Path(out_dir), evaluate, pad_id
        self.epochs, self.seed = args.epochs, args.seed
        self.device, self.progress = device, progress
        # answer tokens per example: the labels that remain targets after the one-token shift
        self.answer_tokens = [sum(label != -100 for label in e.labels[1:]) for e in examples]
        self.precision = resolve_precision(args.precision, device)
        self.bf16 = self.precision == "bfloat16"
        self.params = [p for p in model.parameters() if p.requires_grad]
        # one of several data-parallel processes (accelerate): each takes its share of every micro-batch
        self.accelerator = accelerator
        self.rank, self.world = (accelerator.process_index, accelerator.num_processes) if accelerator else (0, 1)
        # the frozen base in the training precision: autocast would cast every frozen weight at every step
        self.frozen = FrozenWeights(model, torch.bfloat16 if self.bf16 else None)
        # one process only: launched processes (DDP) aborted now and then with either (1 run in 3 on 2 CPUs)
        alone = accelerator is None
        self.attention = TrainingAttention(model, device if alone else "")
        longest = max((len(e.input_ids) for e in examples), default=0)
        self.share_prefix = alone and args.share_prefix and prefix_sharing(model.config, longest) and not drops(model)
        objective = AnswerLoss(model, self.bf16, device)
        self.objective = accelerator.prepare_model(objective) if accelerator else objective
        self.optimizer = torch.optim.AdamW(self.params, lr=args.learning_rate, weight_decay=args.weight_decay)
        self.total_steps = max(1, self.epochs * math.ceil(self.batches_per_epoch() / args.grad_accum))
        warmup = int(self.total_steps * args.warmup_ratio)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lambda step: _linear(step, warmup,
                                                                                               self.total_steps))
        self.state = TrainState()
        self.best: dict[str, torch.Tensor] | None = None
        self.group_loss: float | torch.Tensor = 0.0  # the accumulation group's mean loss, summed so far

    # -- data ---------------------------------------------------------------
    def batches_per_epoch(self) -> int:
        return math.ceil(len(self.examples) / self.args.batch_size)

    def epoch_batches(self, epoch: int) -> list[list[int]]:
        """Seeded shuffle, then length buckets: batches of similar length, in random order."""
        rng = random.Random(self.seed * 10_007 + epoch)
        order = list(range(len(self.examples)))
        rng.shuffle(order)
        size, batches = self.args.batch_size, []
        window = size * 16
        for start in range(0, len(order), window):
            chunk = sorted(order[start:start + window], key=lambda i: len(self.examples[i].input_ids))
            batches += [chunk[i:i + size] for i in range(0, len(chunk), size)]
        rng.shuffle(batches)
        return batches

    def collate(self, batch: list[int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        rows = [self.examples[i] for i in batch]
        width = max(len(r.input_ids) for r in rows)
        ids = [r.input_ids + [self.pad_id] * (width - len(r.input_ids)) for r in rows]
        labels = [r.labels + [-100] * (width - len(r.labels)) for r in rows]
        mask = [[1] * len(r.input_ids) + [0] * (width - len(r.input_ids)) for r in rows]
        as_tensor = lambda x: torch.tensor(x, device=self.device)  # noqa: E731
        return as_tensor(ids), as_tensor(labels), as_tensor(mask)

    def shared_start(self, batch: list[int]) -> int:
        """The tokens the batch's rows all start with, run once for all of them (0: none worth it)."""
        if not self.share_prefix or len(batch) < 2:
            return 0
        shared = shared_start([self.examples[i] for i in batch])
        return shared if shared >= MIN_SHARED else 0

    # -- one step -----------------------------------------------------------
    def loss(self, ids: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor,
             reduction: str = "mean", shared: int = 0) -> torch.Tensor:
        """Cross-entropy over answer tokens (mean or sum); the output head runs on those positions only."""
        return self.objective(ids, labels, mask, reduction, shared)

    # -- the loop -----------------------------------------------------------
    def train(self) -> TrainState:
        self._resume()
        self.model.train()
        self.frozen.lower()
        self.attention.train()
        while self.state.epoch < self.epochs and not self.state.stopped_early:
            self.run_batches()
            self._end_epoch()
            self.save_checkpoint()
        return self.finish()

    def run_batches(self) -> None:
        """The current epoch's remaining micro-batches, with a checkpoint every checkpoint_every_s."""
        batches = self.epoch_batches(self.state.epoch)
        last_save = time.perf_counter()
        while self.state.batch_in_epoch < len(batches):
            start = time.perf_counter()
            stepped = self._step(batches, self.state.batch_in_epoch)
            self.state.elapsed_s += time.perf_counter() - start
            # only between optimizer steps: a checkpoint does not hold half-accumulated gradients
            if stepped and time.perf_counter() - last_save > self.args.checkpoint_every_s:
                self.save_checkpoint()
                last_save = time.perf_counter()

    def finish(self) -> TrainState:
        """The best epoch's weights in the model, which is left in eval mode."""
        self.frozen.restore()
        self.attention.restore()
        if self.best is not None:
            self.model.load_state_dict(self.best, strict=False)
        self.model.eval()
        return self.state

    def _step(self, batches: list[list[int]], index: int) -> bool:
        """One micro-batch forward and backward; an optimizer step at the end of its group. True if it stepped.

        Each micro-batch's summed token loss is divided by the whole group's answer-token count, so the
        accumulated gradient is that of the mean over all the group's answer tokens, however they are split.
        With several processes each sums its share; DDP averages the gradients, so each share's loss is
        scaled by the number of processes to give the same sum.
        """
        accum = self.args.grad_accum
        group_start = index - index % accum
        group = batches[group_start:group_start + accum]
        group_tokens = max(1, sum(self.answer_tokens[i] for batch in group for i in batch))
        batch = batches[index]
        mine, weight = self.share(batch)
        last = index + 1 >= group_start + len(group)
        with self._sync(last):
            ids, labels, mask = self.collate(mine)
            loss = self.loss(ids, labels, mask, reduction="sum", shared=self.shared_start(mine)) / group_tokens
            if self.world > 1:
                loss = loss * (weight * self.world)
            loss.backward()
        self.group_loss = self.group_loss + loss.detach()  # on the device: no sync per micro-batch
        self.state.batch_in_epoch += 1
        self.state.examples_seen += len(batch)
        self.state.tokens_seen += sum(len(self.examples[i].input_ids) for i in batch)
        if not last:
            return False
        torch.nn.utils.clip_grad_norm_(self.params, 1.0)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.state.step += 1
        value, self.group_loss = self._group_loss(), 0.0
        self.state.losses.append({"step": self.state.step, "epoch": self.state.epoch, "loss": value,
                                  "lr": self.scheduler.get_last_lr()[0]})
        if self.progress:
            self.progress(1, f"loss {value:.3f}")
        return True

    def share(self, batch: list[int]) -> tuple[list[int], float]:
        """This process's examples of a micro-batch, and the weight of its loss. A process left without
        one (a batch smaller than the processes) still runs a forward and backward, weighted 0: DDP needs
        every process in every gradient exchange."""
        mine = batch[self.rank::self.world]
        return (mine, 1.0) if mine else (batch[:1], 0.0)

    def _sync(self, last: bool):
        """DDP exchanges gradients only at the accumulation group's last micro-batch."""
        if self.accelerator is None or last:
            return contextlib.nullcontext()
        return self.accelerator.no_sync(self.objective)

    def _group_loss(self) -> float:
        if self.accelerator is None:
            return float(self.group_loss)
        return float(self.accelerator.reduce(torch.as_tensor(self.group_loss, device=self.accelerator.device),
                                             "mean"))

    def _end_epoch(self) -> None:
        state = self.state
        state.epoch += 1
        state.batch_in_epoch = 0
        if self.evaluate is None:
            return
        start = time.perf_counter()
        self.model.eval()
        self.frozen.restore()  # dev answers as test asks them: in the weights' own precision and attention
        self.attention.restore()
        metric = self.evaluate(self.model)
        self.frozen.lower()
        self.attention.train()
        self.model.train()
        state.elapsed_s += time.perf_counter() - start
        state.dev.append({"epoch": state.epoch, "metric": metric, "step": state.step})
        if state.best_metric is None or metric > state.best_metric:
            state.best_metric, state.best_epoch, state.bad_epochs = metric, state.epoch, 0
            self.best = {k: v.detach().clone() for k, v in self._trainable_state().items()}
        else:
            state.bad_epochs += 1
            patience = self.args.patience  # 0: never stop early
            state.stopped_early = bool(patience) and state.bad_epochs >= patience and state.epoch < self.epochs

    # -- checkpoints --------------------------------------------------------
    def _trainable_state(self) -> dict[str, torch.Tensor]:
        names = {id(p): n for n, p in self.model.named_parameters()}
        return {names[id(p)]: p for p in self.params}

    def save_checkpoint(self) -> None:
        if self.rank:  # the first process writes for all: their weights are the same after each step
            return
        self.out_dir.mkdir(parents=True, exist_ok=True)
        blob = {"state": asdict(self.state), "weights": self._trainable_state(), "best": self.best,
                "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                "rng": self._rng_states()}
        tmp = self.out_dir / "checkpoint.pt.tmp"
        torch.save(blob, tmp)
        os.replace(tmp, self.out_dir / "checkpoint.pt")  # atomic: a crash leaves the previous one

    def _resume(self) -> None:
        path = self.out_dir / "checkpoint.pt"
        if not path.exists():
            torch.manual_seed(self.seed)  # CUDA's generators too
            random.seed(self.seed)
            np.random.seed(self.seed)
            return
        self.load_checkpoint(path)
        if self.progress and self.state.step:
            self.progress(self.state.step, "resumed")

    def load_checkpoint(self, path: Path) -> None:
        blob = torch.load(path, weights_only=False, map_location="cpu")
        self.model.load_state_dict(blob["weights"], strict=False)
        self.optimizer.load_state_dict(blob["optimizer"])
        self.scheduler.load_state_dict(blob["scheduler"])
        self._set_rng_states(blob["rng"])
        self.best = blob["best"]
        self.state = TrainState(**blob["state"])

    def _rng_states(self) -> dict[str, Any]:
        """Every generator the training may draw from (dropout, LoRA dropout, user code), to resume alike."""
        states = {"torch": torch.get_rng_state(), "python": random.getstate(), "numpy": np.random.get_state()}
        if self.device.startswith("cuda"):
            states["cuda"] = torch.cuda.get_rng_state_all()
        return states

    def _set_rng_states(self, states: dict[str, Any]) -> None:
        torch.set_rng_state(states["torch"])
        random.setstate(states["python"])
        np.random.set_state(states["numpy"])
        if self.device.startswith("cuda") and "cuda" in states:
            torch.cuda.set_rng_state_all(states["cuda"])


class FrozenWeights:
    """A model's frozen floating weights (LoRA's base), kept in two precisions: the training precision while it
    trains, so that autocast casts none of them at every step, and their own for evaluation and after. The
    trained weights (the adapters) and the optimizer's state stay in float32."""

    def __init__(self, model, dtype):
        self.params = [p for p in model.parameters()
                       if dtype is not None and not p.requires_grad and p.is_floating_point() and p.dtype != dtype]
        self.own = [p.data for p in self.params]
        self.low = [p.data.to(dtype) for p in self.params]

    def lower(self) -> None:
        for param, data in zip(self.params, self.low):
            param.data = data

    def restore(self) -> None:
        for param, data in zip(self.params, self.own):
            param.data = data


class TrainingAttention:
    """Eager attention while a model trains on a CPU: torch's scaled-dot-product kernel has a slow backward
    there (the training benchmark: eager trains the demo's LoRA about 1.4 times as fast in bfloat16); the
    model's own kernel back for evaluation and after."""

    def __init__(self, model, device: str):
        self.model = model
        self.own = getattr(model.config, "_attn_implementation", None)
        self.switch = device == "cpu" and self.own == "sdpa"

    def train(self) -> None:
        self._set("eager")

    def restore(self) -> None:
        self._set(self.own)

    def _set(self, kind: str) -> None:
        if self.switch:
            with warnings.catch_warnings():  # transformers' own check calls a deprecated name of its own
                warnings.simplefilter("ignore", FutureWarning)
                self.model.set_attn_implementation(kind)


MIN_SHARED = 4  # a shorter common start is not worth its own pass


def shared_start(rows: list[SFTExample]) -> int:
    """How many tokens every row starts with, stopping before the token that predicts the first learned
    one: that part of the batch is the same for every row, so one pass computes it for all."""
    first, shortest = rows[0].input_ids, min(len(r.input_ids) for r in rows)
    same = next((i for i in range(shortest) if any(r.input_ids[i] != first[i] for r in rows)), shortest)
    learned = min(next((i for i, label in enumerate(r.labels) if label != -100), len(r.labels)) for r in rows)
    return max(0, min(same, learned - 1, shortest - 1))


def prefix_sharing(config, longest: int) -> bool:
    """Whether training may run a batch's common start once: a model whose attention the shared prefix
    models (causal, every position or a window no row outgrows; see backends.local.fast_paths)."""
    from ..backends.local import fast_paths, layer_windows
    windows = [w for w in layer_windows(config).values() if w]
    return fast_paths(config)[0] and not (windows and longest > min(windows))


def drops(model) -> bool:
    """Whether training draws dropout masks (LoRA's, the model's layers' or its attention's): a shared start
    run once would share one mask among the rows, which is not the plain pass's training."""
    text = model.config.get_text_config(decoder=True)
    return any(isinstance(m, torch.nn.Dropout) and m.p > 0 for m in model.modules()) or \
        bool(getattr(text, "attention_dropout", 0) or 0)


class AnswerLoss(torch.nn.Module):
    """The training objective as a module, so that DDP can wrap it: the decoder over the whole sequence,
    the output head on answer positions only (with the model's soft cap of its logits, as its own forward
    applies it: `output_logits`), cross-entropy over those tokens.

    `shared`: the first tokens every row has (`shared_start`) run once, batch size 1, and each row's
    remainder reads their keys and values (expanded, not copied): the gradients of all rows flow back into
    that one pass, so the loss and gradients are the whole sequence's, for a fraction of its tokens."""

    def __init__(self, model, bf16: bool, device: str):
        super().__init__()
        self.model, self.bf16, self.device_type = model, bf16, device.split(":")[0]

    def forward(self, ids: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor, reduction: str = "mean",
                shared: int = 0):
        with torch.autocast(device_type=self.device_type, dtype=torch.bfloat16, enabled=self.bf16):
            if shared:
                hidden = self._after_shared(ids, mask, shared)
            else:
                hidden = self.model.get_decoder()(input_ids=ids, attention_mask=mask).last_hidden_state
            targets = labels[:, shared + 1:]
            keep = targets != -100
            logits = output_logits(self.model, hidden[:, :-1][keep])
        return torch.nn.functional.cross_entropy(logits.float(), targets[keep], reduction=reduction)

    def _after_shared(self, ids: torch.Tensor, mask: torch.Tensor, shared: int) -> torch.Tensor:
        """The hidden states of positions shared.. of every row, the first `shared` run once."""
        from transformers import DynamicCache
        decoder = self.model.get_decoder()
        cache_arg = "cache" if "cache" in inspect.signature(decoder.forward).parameters else "past_key_values"
        prefix = DynamicCache()  # no config: every layer keeps the whole prefix (prefix_sharing checked windows)
        decoder(input_ids=ids[:1, :shared], use_cache=True, **{cache_arg: prefix})
        n = len(ids)
        rows = DynamicCache(ddp_cache_data=[(layer.keys.expand(n, -1, -1, -1), layer.values.expand(n, -1, -1, -1))
                                            for layer in prefix.layers])
        positions = torch.arange(shared, ids.shape[1], device=ids.device).expand(n, -1)
        return decoder(input_ids=ids[:, shared:], attention_mask=mask, position_ids=positions, use_cache=True,
                       **{cache_arg: rows}).last_hidden_state


def native_bf16(device: str) -> bool:
    """Whether bfloat16 matrix products run natively: CUDA with bf16, or a CPU with AVX512-BF16 or AMX."""
    if device.startswith("cuda"):
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if device != "cpu":
        return False
    try:
        flags = next((line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags")), "")
    except OSError:  # not Linux: stay with float32
        return False
    return any(flag in flags.split() for flag in ("avx512_bf16", "amx_bf16"))


def resolve_precision(setting: str, device: str) -> str:
    if setting == "auto":
        return "bfloat16" if native_bf16(device) else "float32"
    return setting


def _linear(step: int, warmup: int, total: int) -> float:
    if step < warmup:
        return (step + 1) / (warmup + 1)
    return max(0.0, (total - step) / max(1, total - warmup))


def count_params(model) -> tuple[int, int]:
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return trainable, sum(p.numel() for p in model.parameters())


def flops_per_token(model, full: bool) -> float:
    """≈ 6·N per token for full training; LoRA: 4·N (forward and input gradients through frozen weights)
    plus 6·N_trainable. N excludes the input embedding, which is a lookup, not a matrix product."""
    embed = model.get_input_embeddings().weight.numel()
    trainable, total = count_params(model)
    tied = model.get_output_embeddings() is not None and \
        model.get_output_embeddings().weight.data_ptr() == model.get_input_embeddings().weight.data_ptr()
    n = total - (0 if tied else embed)  # a tied head still does its matrix product
    return 6.0 * n if full else 4.0 * n + 6.0 * trainable


def write_json(path: Path, value: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(value))
    os.replace(tmp, path)
