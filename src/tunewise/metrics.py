"""The metric role: score one answer, aggregate over a split, and say which direction is better."""

from __future__ import annotations

import re
import string
from collections import Counter
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np


@dataclass(frozen=True)
class Metric:
    name: str
    item: Callable[[Any, Any], float]  # score of one (prediction, target)
    corpus: Callable[[list, list], float] | None = None  # when the aggregate is not a mean of items
    higher_is_better: bool = True

    def aggregate(self, preds: list, targets: list) -> float:
        if not preds:
            return float("nan")
        if self.corpus is not None:
            return self.corpus(preds, targets)
        return float(np.mean([self.item(p, t) for p, t in zip(preds, targets)]))


def _norm(text: Any) -> str:
    text = str(text).lower()
    text = "".join(ch for ch in text if ch not in set(string.punctuation))
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def accuracy_item(pred: Any, target: Any) -> float:
    return float(pred is not None and str(pred) == str(target))


def macro_f1(preds: list, targets: list) -> float:
    labels = sorted({str(t) for t in targets} | {str(p) for p in preds if p is not None})
    scores = []
    for label in labels:
        tp = sum(1 for p, t in zip(preds, targets) if str(p) == label and str(t) == label)
        fp = sum(1 for p, t in zip(preds, targets) if str(p) == label and str(t) != label)
        fn = sum(1 for p, t in zip(preds, targets) if str(p) != label and str(t) == label)
        scores.append(2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0)
    return float(np.mean(scores)) if scores else 0.0


def exact_match(pred: Any, target: Any) -> float:
    return float(pred is not None and _norm(pred) == _norm(target))


def token_f1(pred: Any, target: Any) -> float:
    p, t = _norm(pred or "").split(), _norm(target).split()
    if not p or not t:
        return float(p == t)
    common = sum((Counter(p) & Counter(t)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(p), common / len(t)
    return 2 * precision * recall / (precision + recall)


def _lcs(a: list[str], b: list[str]) -> int:
    row = [0] * (len(b) + 1)
    for x in a:
        prev = 0
        for j, y in enumerate(b, start=1):
            prev, row[j] = row[j], prev + 1 if x == y else max(row[j], row[j - 1])
    return row[-1]


def rouge_l(pred: Any, target: Any) -> float:
    p, t = str(pred or "").lower().split(), str(target).lower().split()
    if not p or not t:
        return float(p == t)
    lcs = _lcs(p, t)
    if lcs == 0:
        return 0.0
    precision, recall = lcs / len(p), lcs / len(t)
    return 2 * precision * recall / (precision + recall)


def json_valid(pred: Any, target: Any) -> float:
    return float(isinstance(pred, dict))


def key_accuracy(pred: Any, target: Any) -> float:
    if not isinstance(target, dict) or not target:
        return 0.0
    if not isinstance(pred, dict):
        return 0.0
    return sum(_norm(pred.get(k, "")) == _norm(v) for k, v in target.items()) / len(target)


METRICS: dict[str, Metric] = {m.name: m for m in [
    Metric("accuracy", accuracy_item),
    Metric("macro_f1", accuracy_item, corpus=macro_f1),
    Metric("exact_match", exact_match),
    Metric("token_f1", token_f1),
    Metric("rouge_l", rouge_l),
    Metric("json_valid", json_valid),
    Metric("key_accuracy", key_accuracy),
]}


def get_metric(name: str) -> Metric:
    return METRICS[name]


def bootstrap_interval(metric: Metric, preds: list, targets: list, *, n: int = 1000, seed: int = 0,
                       level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of the aggregate, resampling items with replacement."""
    if not preds:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(preds), size=(n, len(preds)))
    if metric.corpus is None:
        items = np.array([metric.item(p, t) for p, t in zip(preds, targets)], dtype=float)
        values = items[idx].mean(axis=1)
    else:
        values = np.array([metric.corpus([preds[i] for i in row], [targets[i] for i in row]) for row in idx])
    alpha = (1 - level) / 2
    return float(np.quantile(values, alpha)), float(np.quantile(values, 1 - alpha))
