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


def measure(arm: Arm, examples, backend: Backend, task: Task, progress=None) -> dict[str, Any]:
    """Sample agreement (N samples at temperature T), paraphrase agreement, format compliance."""
    config = task.consistency
    items = examples[: item_count(arm, len(examples), task)]
    base = arm.predict(items, backend)
    out: dict[str, Any] = {"items": len(items), "samples": config.samples, "temperature": config.temperature,
                           "format_ok": float(np.mean([p.parsed is not None for p in base]))}
    samples = _samples(arm, items, backend, config, base, task.splits.seed)
    out["sample_agreement"] = agreement(samples)
    if task.type == "generation":  # sentences rarely repeat word for word: how close the samples are, too
        out["sample_similarity"] = similarity(samples)
    if progress:
        progress(1)
    if not arm.asks_instruction:
        out["paraphrase_agreement"] = None  # asked with the bare input: no instruction to reword
    else:
        answers = [[p.parsed] for p in base]
        for text in paraphrases(task, config):
            for row, pred in zip(answers, arm.variant(instruction=text).predict(items, backend)):
                row.append(pred.parsed)
        out["paraphrase_agreement"] = agreement(answers)
        out["paraphrases"] = len(answers[0]) - 1 if answers else 0
    if progress:
        progress(1)
    return out


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


def _samples(arm: Arm, items, backend, config: ConsistencyConfig, base, seed: int) -> list[list[Any]]:
    """Each item's answers sampled `config.samples` times at the temperature."""
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
    answers = [[] for _ in items]
    for sample in range(config.samples):
        sampled = arm.variant(sampling=(config.temperature, sample)).predict(items, backend)
        for row, pred in zip(answers, sampled):
            row.append(pred.parsed)
    return answers
