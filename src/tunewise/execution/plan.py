"""A run's cost before it is spent: every unit's requests, tokens, seconds and money, from counts that follow
the run's own code and a short probe measured on this machine; and a budget that the plan is cut to fit.

Counts are exact where the run is deterministic (test answers, consistency samples and rewordings, calibration,
the judge) and bounds where it is not: a search may prune trials and a training may stop early ("up to").
Requests are what the run sends the model; one the store's cache already answered costs nothing.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

from ..arms import build, traits
from ..backends import Backend
from ..measure.consistency import item_count, paraphrases
from ..task import Task, arm_name
from ..task.data import Example, Splits

PROBE_SIZES = (4, 16)     # train items asked per prompt shape, twice: a batch's fixed cost and an item's
PROBE_STEPS = 4           # training steps timed per fine-tune arm (the first, warming up, is not counted)
PRUNED_SHARE = 0.55       # of a pruned search's dev answers, measured on the demo's search (pruning stops ~half)


@dataclass
class Part:
    """One part of a unit: what it sends, and its cost."""
    unit: str                 # the unit's name in the store (an arm, a curve point, arm@seedN, or "judge")
    part: str                 # load | search | training | test | consistency | judge
    requests: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    seconds: float = 0.0
    money: float = 0.0
    bound: bool = False       # an upper bound: a search prunes, a training stops early
    expected_requests: int | None = None  # a search's requests as pruning usually leaves them


@dataclass
class Plan:
    parts: list[Part]
    cuts: list[str] = field(default_factory=list)   # what a budget cut, in order
    probe_s: float = 0.0
    probe_requests: int = 0                          # what the probe asked (a few train items per prompt shape)
    currency: str = "USD"
    budget: dict[str, float] | None = None

    @property
    def seconds(self) -> float:
        return sum(p.seconds for p in self.parts)

    @property
    def money(self) -> float:
        return sum(p.money for p in self.parts)

    def units(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for p in self.parts:
            out[p.unit] = out.get(p.unit, 0.0) + p.seconds
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"parts": [asdict(p) for p in self.parts], "cuts": self.cuts, "probe_s": self.probe_s,
                "probe_requests": self.probe_requests,
                "seconds": self.seconds, "money": self.money, "currency": self.currency, "budget": self.budget}

    def total_line(self) -> str:
        """The last line of the printed plan, which scripts read: `total: about N min` (or `N s`)."""
        s = self.seconds
        text = f"total: about {s / 60:.0f} min" if s >= 90 else f"total: about {s:.0f} s"
        return text + (f", {self.money:.4g} {self.currency}" if self.money else "")


@dataclass
class Rate:
    """A prompt shape's measured cost on this machine: a fixed cost per batch (a decoding step reads every
    weight, however many rows it carries) and a cost per request, fitted on two probe sizes."""
    per_batch: float
    per_item: float
    batch: int                # requests the backend takes in one batch
    output_tokens: float      # per request

    def seconds(self, n: int, calls: int = 1) -> float:
        """`n` requests sent in `calls` calls of the backend."""
        if n <= 0:
            return 0.0
        per_call = n / max(1, calls)
        return max(1, calls) * math.ceil(per_call / self.batch) * self.per_batch + n * self.per_item


@dataclass
class Prober:
    """Measures, once per prompt shape and per training kind, what a request and a trained token cost."""
    task: Task
    splits: Splits
    make: Callable[[str], Backend]
    rates: dict[str, Rate] = field(default_factory=dict)
    training: dict[str, float] = field(default_factory=dict)  # seconds per trained token, by model and type
    loads: dict[str, float] = field(default_factory=dict)     # seconds to load a model (a training's copy)
    spent: float = 0.0
    asked: int = 0                                            # requests the probe sent
    tokens: tuple[int, int] = (0, 0)                          # their input and output tokens

    def backend(self, model: str) -> Backend:
        start = time.perf_counter()
        backend = self.make(model)  # one per model (the run's factory makes each once)
        if model not in self.loads:
            getattr(backend, "model", None)  # a local model loads now, and its loading is timed
            self.loads[model] = time.perf_counter() - start
            self.spent += self.loads[model]
        return backend

    def rate(self, arm, model: str) -> Rate:
        """The arm's prompt asked of its base model on a few train items, at two sizes."""
        # a shape, not a prompt: a reworded instruction or a sample costs what its prompt costs
        config = getattr(arm, "config", None)
        key = json.dumps([model, arm.decoding, type(arm).__name__] + [getattr(config, name, None) for name in (
            "k", "selection", "passages", "layout", "calibrate")], default=str)
        if key not in self.rates:
            backend = self.backend(model)
            pool = self.splits.train or self.splits.dev
            small, large = (self._timed(arm, pool[:n], backend) for n in PROBE_SIZES)
            (n1, t1, _), (n2, t2, out) = small, large
            per_item = max((t2 - t1) / max(1, n2 - n1), 0.05 * t2 / max(1, n2))
            attribute = "batch_size" if arm.decoding == "constrained" else "decode_batch"
            self.rates[key] = Rate(per_batch=max(0.0, t1 - n1 * per_item), per_item=per_item,
                                   batch=getattr(backend, attribute, None) or 10**9, output_tokens=out)
        return self.rates[key]

    def _timed(self, arm, items, backend) -> tuple[int, float, float]:
        """(requests, seconds, output tokens per request) of one call."""
        start = time.perf_counter()
        preds = arm.predict(items, backend) if items else []
        took = time.perf_counter() - start
        self.spent += took
        self.asked += len(preds)
        self.tokens = (self.tokens[0] + sum(p.input_tokens for p in preds),
                       self.tokens[1] + sum(p.output_tokens for p in preds))
        return len(preds), took, sum(p.output_tokens for p in preds) / max(1, len(preds))

    def seconds_per_token(self, tuned, examples) -> float:
        """A few training steps of the arm's own sequences, timed after the first."""
        key = f"{tuned.model}|{tuned.config.type}"
        if key not in self.training:
            start = time.perf_counter()
            self.training[key] = _time_steps(tuned, examples, self.backend(tuned.model))
            self.spent += time.perf_counter() - start
        return self.training[key]


def _time_steps(tuned, examples, base) -> float:
    import tempfile
    from pathlib import Path

    import torch

    from ..backends.models import private_copy, with_lora
    from ..training.loop import SFTTrainer
    settings = tuned.settings(len(examples))
    batch = settings.batch_size * settings.grad_accum
    sample = examples[: batch * PROBE_STEPS]
    model = private_copy(base.model)
    if tuned.config.type == "lora":
        c = tuned.config
        torch.manual_seed(0)
        model = with_lora(model, r=c.r, alpha=c.alpha, dropout=c.dropout, target_modules=c.target_modules)
    probe = settings.model_copy(update={"epochs": 1, "checkpoint_every_s": 1e9, "warmup_ratio": 0.0})
    stamps: list[float] = []
    with tempfile.TemporaryDirectory() as folder:
        trainer = SFTTrainer(model, probe, sample, out_dir=Path(folder), pad_id=0, device=base.device)
        trainer.progress = lambda n, info="": stamps.append(time.perf_counter())
        start = time.perf_counter()
        trainer.train()
    tokens = sum(len(e.input_ids) for e in sample)
    steps = max(1, len(stamps))
    if len(stamps) > 1:  # the first step warms up (allocations, kernels): leave it out
        per_step_tokens = tokens / steps
        return (stamps[-1] - stamps[0]) / ((steps - 1) * per_step_tokens)
    return (time.perf_counter() - start) / max(1, tokens)


# -- counting -------------------------------------------------------------------------------------
class Counter:
    """Counts one run's requests and tokens, unit by unit, with the arms built as the run builds them."""

    def __init__(self, task: Task, labels: list[str], splits: Splits, prober: Prober):
        from .executor import arm_plan, plan_units
        self.task, self.labels, self.splits, self.prober = task, labels, splits, prober
        self.plan = arm_plan(task)
        self.configs = {arm_name(c): c for c, _ in self.plan}
        self.units = plan_units(task, self.plan)
        self.prompt_arms: dict[str, Any] = {}

    def parts(self) -> list[Part]:
        out = []
        for unit in self.units:
            out += self.unit_parts(unit)
        out += self.judge_pairs()
        loads = [Part(unit=f"load {m}", part="load", seconds=self.prober.loads.get(m, 0.0))  # timed by now
                 for m in sorted({c.model or self.task.model for c, _ in self.plan})]
        return loads + out

    def unit_parts(self, unit) -> list[Part]:
        config = unit.config
        kind = traits(config.type)
        arm = build(config, self.task, self.labels, self.configs)
        main = unit.curve is None or "seed" in unit.curve
        parts: list[Part] = []
        asker = self.asker(arm, kind)
        model = arm.model
        if kind.searches:
            parts.append(self.search(unit.name, arm, asker, model))
        if kind.trains_weights and not (kind.hybrid and config.training == "plain"):
            parts += self.trainings(unit.name, arm, asker)
            if getattr(config, "alternate", False):
                parts.append(self.search(unit.name, arm.inner.prompter, self.asker(arm.inner.prompter,
                                                                                 traits("searched")), model))
        tuned = kind.trains_weights
        test = self.asking(unit.name, "test", asker, self.splits.test, model, tuned, calibrated=True)
        parts.append(test)
        if main and self.task.consistency.enabled:
            parts.append(self.consistency(unit.name, asker, model, tuned, test.seconds))
        if self.task.judge is not None and self.task.judge.rubric:
            parts.append(self.judge_rubric(unit.name))
        return parts

    # -- the prompt an arm asks with, prepared without model work -------------------------------
    def asker(self, arm, kind):
        """A prompt arm that asks as the arm will: itself, its prompter, or a search's starting prompt."""
        from ..arms.searched import Searched, SearchSpace
        if isinstance(arm, Searched):
            space = SearchSpace(arm, [self.task.instruction.strip()])
            found = space.arm(space.baseline())
            found.prepare(self.splits)
            return found
        prompter = getattr(arm, "prompter", None)
        if prompter is not None and prompter is not arm:
            return self.asker(prompter, traits(getattr(prompter.config, "type", "zero_shot")))
        arm.prepare(self.splits)
        return arm

    def asking(self, unit: str, part: str, arm, items: list[Example], model: str, tuned: bool,
               runs: int = 1, calibrated: bool = False) -> Part:
        """`runs` passes over the items: the requests, their tokens and their measured cost (and, `calibrated`,
        the content-free prompts a calibrated arm scores beside them)."""
        backend = self.prober.backend(model)
        n = len(items) * runs
        tokens = sum(_count(backend, arm.messages(e)) for e in items) * runs
        extra = self.calibration(arm, items, backend) if calibrated else (0, 0)
        rate = self.prober.rate(arm, model)
        out_tokens = rate.output_tokens
        seconds = rate.seconds(n, calls=runs) + rate.seconds(extra[0])
        if tuned and arm.decoding != "constrained":  # a tuned model answers and stops: the target's length
            answer = _answer_tokens(backend, self.splits.train)
            if rate.output_tokens > 0:
                seconds *= max(0.25, min(1.0, (answer + 1) / rate.output_tokens))
            out_tokens = min(out_tokens, answer + 1) if out_tokens else answer + 1
        return Part(unit=unit, part=part, requests=n + extra[0], input_tokens=tokens + extra[1],
                    output_tokens=int(round(out_tokens * n)), seconds=seconds)

    def calibration(self, arm, items, backend) -> tuple[int, int]:
        """Contextual calibration scores each distinct content-free prompt once."""
        if arm.decoding != "constrained" or not getattr(arm.config, "calibrate", False):
            return 0, 0
        from ..arms.prompts import build_messages
        prompts = {json.dumps(m): m for m in (build_messages(arm.system, arm.shots_for(e), arm.content_free_input(e),
                                                             arm.answer, arm.layout) for e in items)}
        return len(prompts), sum(_count(backend, m) for m in prompts.values())

    def consistency(self, unit: str, arm, model: str, tuned: bool, test_seconds: float) -> Part:
        """Its calls for `item_count` items: a bound, as the run stops adding items when their measured
        time passes max_share of the evaluation (`measure`); its seconds, within that share."""
        config = self.task.consistency
        n = item_count(arm, len(self.splits.test), self.task)
        items = self.splits.test[:n]
        passes = [self.asking(unit, "consistency", arm, items, model, tuned, runs=config.samples)] \
            if arm.decoding != "constrained" else []  # scored labels are sampled from their scores
        if arm.asks_instruction:  # each rewording is a prompt of its own, calibrated on its own
            passes += [self.asking(unit, "consistency", arm.variant(instruction=text), items, model, tuned,
                                   calibrated=True) for text in paraphrases(self.task, config)]
        seconds = sum(p.seconds for p in passes)
        if config.max_share < 1:
            seconds = min(seconds, test_seconds * config.max_share / (1 - config.max_share))
        return Part(unit=unit, part="consistency", requests=sum(p.requests for p in passes),
                    input_tokens=sum(p.input_tokens for p in passes),
                    output_tokens=sum(p.output_tokens for p in passes), seconds=seconds,
                    bound=bool(passes) and config.max_share < 1)

    def judge_rubric(self, unit: str) -> Part:
        judge = self.task.judge
        n = len(self.splits.test)
        rate = self._judge_rate()
        return Part(unit=unit, part="judge", requests=n, output_tokens=int(judge.max_tokens * n),
                    seconds=rate * n)

    def judge_pairs(self) -> list[Part]:
        judge = self.task.judge
        if judge is None or not judge.pairs:
            return []
        n = 2 * len(self.splits.test) * len(judge.pairs)  # each pair asked in both orders
        return [Part(unit="judge", part="judge", requests=n, output_tokens=judge.max_tokens * n,
                     seconds=self._judge_rate() * n)]

    def _judge_rate(self) -> float:
        from ..arms.prompt import StructuredConfig
        from ..registry import arm_class
        config = StructuredConfig(type="structured", decoding="generate")
        judge_task = self.task.model_copy(update={"instruction": "Score the answer."})
        probe = arm_class("structured")(config, judge_task, self.labels, {})
        probe.prepare(self.splits)
        return self.prober.rate(probe, self.task.judge.model).seconds(100) / 100

    # -- searches and trainings ----------------------------------------------------------------
    def search(self, unit: str, arm, baseline, model: str) -> Part:
        s = arm.settings if hasattr(arm, "settings") else arm.config.search
        dev = min(s.dev_items, len(self.splits.dev))
        requests = s.trials * dev
        backend = self.prober.backend(model)
        sample = self.splits.dev[:dev]
        per_item = sum(_count(backend, baseline.messages(e)) for e in sample) / max(1, len(sample))
        share = _example_share(baseline, sample, backend)
        growth = 1 + sum(s.ks) / max(1, len(s.ks)) * share  # the average trial's prompt: its seconds
        longest = 1 + max(s.ks) * share  # every trial showing the most examples: its tokens, a bound
        rate = self.prober.rate(baseline, model)
        startup = min(s.trials, 4)  # Optuna's median pruner prunes nothing before its fourth trial
        expected = int(startup * dev + (s.trials - startup) * dev * PRUNED_SHARE)
        rungs = 3  # each trial asks for growing slices of the dev items (a quarter, a half, all): a call each
        return Part(unit=unit, part="search", requests=requests, input_tokens=int(per_item * longest * requests),
                    output_tokens=int(rate.output_tokens * requests),
                    seconds=rate.seconds(expected, calls=s.trials * rungs) * growth,
                    bound=True, expected_requests=expected)

    def trainings(self, unit: str, arm, asker) -> list[Part]:
        """The training of a fine-tune arm (or a matched hybrid's), or the trials of its search and the winner's."""
        tuned = arm.inner if getattr(arm, "inner", None) is not None else arm
        search = tuned.config.search
        if tuned.config.settings_from and self.configs.get(tuned.config.settings_from) is not None:
            source = self.configs[tuned.config.settings_from]
            if source.search:  # the search's choice is not known yet: its largest epochs
                tuned = tuned._with({"epochs": max(source.search.epochs or [source.train.epochs])})
        if search is None:
            return [self.training(unit, tuned, asker)]
        parts = []
        for trial in _trial_settings(search, tuned):
            parts.append(self.training(unit, tuned._with(trial, train_size=search.train_size), asker, "search"))
        if search.train_size:
            parts.append(self.training(unit, tuned._with(_largest(search, tuned)), asker))
        return parts

    def training(self, unit: str, tuned, asker, part: str = "training") -> Part:
        from ..backends.chat import ChatFormat
        base = self.prober.backend(tuned.model)
        train = tuned.train_examples(self.splits)
        settings = tuned.settings(len(train))
        chat = ChatFormat(base.tokenizer)
        tuned.prompter = asker
        examples = [tuned._sft_example(chat, e, settings) for e in train]
        tokens = settings.epochs * sum(len(e.input_ids) for e in examples)
        seconds = tokens * self.prober.seconds_per_token(tuned, examples)
        dev_items = min(settings.eval_max, len(self.splits.dev))
        dev = self.asking(unit, part, asker, self.splits.dev[:dev_items], tuned.model, True, runs=settings.epochs)
        return Part(unit=unit, part=part, requests=dev.requests, input_tokens=tokens + dev.input_tokens,
                    output_tokens=dev.output_tokens, seconds=seconds + dev.seconds,
                    bound=bool(settings.patience))


def _trial_settings(search, tuned) -> list[dict]:
    """The trials a search will train: every combination when the trials cover them, else the largest
    settings repeated (a bound)."""
    import itertools
    space = search.space()
    combos = [dict(zip(space, values)) for values in itertools.product(*space.values())]
    if search.trials >= len(combos):
        return combos
    return [_largest(search, tuned)] * search.trials


def _largest(search, tuned) -> dict:
    """The costliest settings the search may choose (most epochs, largest rank)."""
    out = {}
    if search.epochs:
        out["epochs"] = max(search.epochs)
    if search.r:
        out["r"] = max(search.r)
    return out


def _answer_tokens(backend, train: list[Example]) -> float:
    tokenizer = getattr(backend, "tokenizer", None)
    texts = [e.target_text for e in train[:50] if e.target is not None]
    if not texts:
        return 8.0
    if tokenizer is None:
        return sum(len(t.split()) for t in texts) / len(texts)
    return sum(len(tokenizer(t, add_special_tokens=False)["input_ids"]) for t in texts) / len(texts)


def _example_share(arm, items, backend) -> float:
    """How much one worked example adds to a prompt, as a share of the prompt: an input and its answer."""
    if not items:
        return 0.0
    one = _count(backend, [{"role": "user", "content": items[0].input},
                           {"role": "assistant", "content": items[0].target_text or ""}])
    return one / max(1, _count(backend, arm.messages(items[0])))


def _count(backend, messages) -> int:
    counter = getattr(backend, "count_tokens", None)
    if counter is not None:
        return counter(list(messages))
    return sum(max(1, len(m["content"]) // 4) + 4 for m in messages)


# -- money and the whole plan ----------------------------------------------------------------------
def price(parts: list[Part], task: Task, configs: dict) -> None:
    """Each part's money: tokens for a priced model, else its seconds at the hardware's price."""
    prices = task.prices
    for p in parts:
        model = _model_of(p.unit, configs, task)
        priced = prices.models.get(model) if model else None
        if priced and p.part in ("test", "consistency", "search", "judge", "probe"):
            p.money = (p.input_tokens * priced.input_per_million + p.output_tokens * priced.output_per_million) / 1e6
        else:
            per_hour = prices.training_per_hour if p.part in ("training",) and prices.training_per_hour \
                is not None else prices.hardware_per_hour
            p.money = p.seconds * (per_hour or 0.0) / 3600


def _model_of(unit: str, configs: dict, task: Task) -> str | None:
    if unit.startswith("probe "):
        return unit.removeprefix("probe ")
    if unit == "judge":
        return task.judge.model if task.judge else None
    config = configs.get(unit.split("@seed")[0])
    return (config.model or task.model) if config is not None else None


def count_plan(task: Task, labels: list[str], splits: Splits, prober: Prober) -> Plan:
    counter = Counter(task, labels, splits, prober)
    parts = counter.parts()
    # the probe is spent already, and counts against a budget like the rest
    parts.append(Part(unit=f"probe {task.model}", part="probe", requests=prober.asked, input_tokens=prober.tokens[0],
                      output_tokens=prober.tokens[1], seconds=prober.spent))
    price(parts, task, counter.configs)
    return Plan(parts=parts, probe_s=prober.spent, probe_requests=prober.asked, currency=task.prices.currency)


def plan_task(task: Task, labels: list[str], splits: Splits, make: Callable[[str], Backend],
              budget=None, task_file: str = "<task>") -> tuple[Task, Plan]:
    """The run's plan, measured with the run's own backends; with a budget (the task's unless given), the task
    cut to fit it."""
    from .budget import fit
    prober = Prober(task, splits, make)

    def count(t: Task) -> Plan:
        return count_plan(t, labels, splits, prober)
    budget = budget or task.budget
    if budget is None:
        return task, count(task)
    task, plan = fit(task, budget, count, task_file)
    plan.probe_s, plan.probe_requests = prober.spent, prober.asked
    return task, plan


def plan_text(plan: Plan) -> list[str]:
    """The plan as a table, one row per part; its last line is `total: about N min` (or `N s`)."""
    rows = [("unit", "part", "requests", "in tokens", "out tokens", "seconds", "money")]
    for p in plan.parts:
        requests = f"up to {p.requests:,} (~{p.expected_requests:,})" if p.expected_requests is not None else \
            (f"up to {p.requests:,}" if p.bound else f"{p.requests:,}")
        rows.append((p.unit, p.part, requests, f"{p.input_tokens:,}", f"{p.output_tokens:,}", f"{p.seconds:,.0f}",
                     f"{p.money:.4g}" if p.money else "–"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
             for r in rows]
    lines.append(f"probe: {plan.probe_s:.0f} s measured on this machine (a few items per prompt shape, a few "
                 f"training steps); a search's seconds assume median pruning, its requests are a bound")
    if plan.budget:
        lines.append(f"budget: {plan.budget}; cut: {'; '.join(plan.cuts) or 'nothing (it fits)'}")
    lines.append(plan.total_line())
    return lines
