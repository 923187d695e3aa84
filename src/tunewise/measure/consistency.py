"""Consistency, made measurable: agreement across samples, across reworded instructions, and format."""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Any

import numpy as np

from ..backends.base import Backend
from ..task import ConsistencyConfig, Task

if TYPE_CHECKING:  # measuring reads what arms return; it never builds one
    from ..arms.base import Arm

GENERIC_PARAPHRASES = [
    "Your task: {instruction}",
    "Read the input carefully. {instruction}",
    "{instruction} Reply as briefly as possible.",
]


def paraphrases(task: Task, config: ConsistencyConfig) -> list[str]:
    if config.paraphrases:
        return list(config.paraphrases)
    return [p.format(instruction=task.instruction.strip()) for p in GENERIC_PARAPHRASES]


def agreement(answers_per_item: list[list[Any]]) -> float:
    """Mean share of an item's answers that equal its most common answer (1.0: always the same)."""
    shares = []
    for answers in answers_per_item:
        keys = [repr(a) for a in answers]
        shares.append(Counter(keys).most_common(1)[0][1] / len(keys))
    return float(np.mean(shares)) if shares else float("nan")


FIRST_ITEMS = 4  # the pass runs on these first, and its measured cost sets how many more fit


def measure(arm: Arm, examples, backend: Backend, task: Task, progress=None,
            test_seconds: float | None = None) -> dict[str, Any]:
    """Sample agreement (N samples at temperature T), paraphrase agreement, format compliance.

    The pass costs at most max_share of the arm's evaluation: at most `item_count` items (its calls), and,
    given `test_seconds` (the model time of the arm's test answers), as many items as fit in their share of
    time, counted from the model time of the first few items' answers. Model time is what each answer
    records, so a rerun that reads them from the cache chooses the same items."""
    config = task.consistency
    limit = item_count(arm, len(examples), task)
    first = _run(arm, examples[:min(limit, FIRST_ITEMS)], backend, task)
    rest = limit - first.items
    if test_seconds is not None and config.max_share < 1 and first.seconds > 0:
        budget = test_seconds * config.max_share / (1 - config.max_share)
        rest = max(0, min(rest, int((budget - first.seconds) / (first.seconds / first.items))))
    runs = first.join(_run(arm, examples[first.items:first.items + rest], backend, task)) if rest else first
    if progress:
        progress(2)
    return runs.summary(arm, task)


class _Runs:
    """A pass's answers per item: the test answer, the samples, the paraphrased answers; and its model time."""

    def __init__(self, base: list, samples: list[list], reworded: list[list], seconds: float):
        self.base, self.samples, self.reworded, self.seconds = base, samples, reworded, seconds

    @property
    def items(self) -> int:
        return len(self.base)

    def join(self, other: "_Runs") -> "_Runs":
        return _Runs(self.base + other.base, self.samples + other.samples, self.reworded + other.reworded,
                     self.seconds + other.seconds)

    def summary(self, arm: Arm, task: Task) -> dict[str, Any]:
        config = task.consistency
        out: dict[str, Any] = {"items": self.items, "samples": config.samples, "temperature": config.temperature,
                               "format_ok": float(np.mean([p.parsed is not None for p in self.base])),
                               "model_s": self.seconds, "sample_agreement": agreement(self.samples)}
        if task.type == "generation":  # sentences rarely repeat word for word: how close the samples are, too
            out["sample_similarity"] = similarity(self.samples)
        if not arm.asks_instruction:
            out["paraphrase_agreement"] = None  # asked with the bare input: no instruction to reword
        else:
            out["paraphrase_agreement"] = agreement([[p.parsed] + row for p, row in zip(self.base, self.reworded)])
            out["paraphrases"] = len(self.reworded[0]) if self.reworded else 0
        return out


def _run(arm: Arm, items, backend: Backend, task: Task) -> _Runs:
    """The pass on `items`: their samples (all in one request list, so they share batches) and paraphrases."""
    config = task.consistency
    base = arm.predict(items, backend)  # the test's answers: from the cache, not counted
    predictions = []
    samples = _samples(arm, items, backend, config, base, task.splits.seed, predictions)
    reworded: list[list] = [[] for _ in items]
    if arm.asks_instruction:
        for text in paraphrases(task, config):
            answered = arm.variant(instruction=text).predict(items, backend)
            predictions += answered
            for row, pred in zip(reworded, answered):
                row.append(pred.parsed)
    return _Runs(base, samples, reworded, sum(p.latency_s for p in predictions))


def item_count(arm: Arm, n_test: int, task: Task) -> int:
    """The pass's items: at most max_items, and few enough that its model calls (a run per sample when the
    arm generates, one per paraphrase) cost at most max_share of the arm's evaluation, test split included."""
    config = task.consistency
    runs = (0 if arm.decoding == "constrained" else config.samples)
    runs += len(paraphrases(task, config)) if arm.asks_instruction else 0
    count = min(config.max_items, n_test)
    if runs and config.max_share < 1:
        count = min(count, int(n_test * config.max_share / (1 - config.max_share) / runs))
    return max(1, count)


def similarity(answers_per_item: list[list[Any]]) -> float:
    """Mean token F1 between two samples of an item, over every pair (1.0: the same words every time)."""
    from .metrics import token_f1
    means = []
    for answers in answers_per_item:
        pairs = [(a, b) for i, a in enumerate(answers) for b in answers[i + 1:]]
        if pairs:
            means.append(np.mean([token_f1(a, b) for a, b in pairs]))
    return float(np.mean(means)) if means else float("nan")


def _samples(arm: Arm, items, backend, config: ConsistencyConfig, base, seed: int,
             predictions: list) -> list[list[Any]]:
    """Each item's answers sampled `config.samples` times at the temperature (the calls made go to
    `predictions`). Sample i of an item is the request it always was: one list only lets the backend batch
    several items' samples together."""
    if arm.decoding == "constrained":
        # scored labels: sample from softmax(logprob / T) over the labels, no model call needed
        rng = np.random.default_rng(seed)
        answers = []
        for pred in base:
            labels = list(pred.extra["logprobs"])
            logits = np.array([pred.extra["logprobs"][k] for k in labels]) / config.temperature
            probs = np.exp(logits - logits.max())
            probs /= probs.sum()
            answers.append([labels[i] for i in rng.choice(len(labels), size=config.samples, p=probs)])
        return answers
    n = config.samples
    repeated = [item for item in items for _ in range(n)]
    sampled = arm.variant(sampling=(config.temperature, list(range(n)) * len(items))).predict(repeated, backend)
    predictions += sampled
    return [[p.parsed for p in sampled[i * n:(i + 1) * n]] for i in range(len(items))]
