"""The metric role: score one answer, aggregate over a split, and say which direction is better.

Every metric also gives per-item sufficient statistics: rows whose sum over any set of items (or any
bootstrap resample) determines the aggregate on those items. Resampling a corpus-level metric such as
macro-F1 is then one matrix product, as sacrebleu does for BLEU.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from ..registry import register_metric


@dataclass(frozen=True)
class Metric:
    name: str
    item: Callable[[Any, Any], float]  # score of one (prediction, target)
    higher_is_better: bool = True
    # Only corpus-level metrics, whose aggregate is not a mean of item scores, set these two.
    stats: Callable[[list, list, list[str] | None], np.ndarray] | None = None  # (preds, targets, labels) -> (n, d)
    combine: Callable[[np.ndarray], np.ndarray] | None = None  # summed stats (..., d) -> aggregate (...)
    tasks: tuple[str, ...] = ("classification", "generation", "extraction")  # the task types it applies to
    needs_target: bool = True  # false for checks of the answer alone (assertions, a judge's rubric)
    # a judge's scores cannot be recomputed from the answer: they are stored with each prediction, and the
    # aggregate, intervals and paired tests read them back (item is then applied to the stored score)
    stored: bool = False

    @property
    def corpus_level(self) -> bool:
        return self.stats is not None

    def item_stats(self, preds: list, targets: list, labels: list[str] | None = None) -> np.ndarray:
        """Per-item sufficient statistics, shape (n, d); mean metrics have d = 1, the item score."""
        if self.stats is not None:
            return self.stats(preds, targets, labels)
        return np.array([self.item(p, t) for p, t in zip(preds, targets)], dtype=float).reshape(-1, 1)

    def from_stats(self, sums: np.ndarray, n: int) -> np.ndarray:
        """The aggregate of n items from their summed statistics, vectorized over leading axes of sums."""
        if self.combine is not None:
            return self.combine(sums)
        return sums[..., 0] / n

    def aggregate(self, preds: list, targets: list) -> float:
        if not preds:
            return float("nan")
        return float(self.from_stats(self.item_stats(preds, targets).sum(axis=0), len(preds)))


def normalize_answer(text: Any) -> str:
    """SQuAD's answer normalization: lowercase, no punctuation, no articles, single spaces."""
    text = str(text).lower()
    text = "".join(ch for ch in text if ch not in set(string.punctuation))
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def accuracy_item(pred: Any, target: Any) -> float:
    return float(pred is not None and str(pred) == str(target))


def label_set(targets: list, *pred_lists: list) -> list[str]:
    """Every target and every non-None prediction, as sorted strings."""
    return sorted({str(t) for t in targets} | {str(p) for preds in pred_lists for p in preds if p is not None})


def label_counts(preds: list, targets: list, labels: list[str] | None = None) -> np.ndarray:
    """Per-item one-hot rows [tp | predicted | true] over the labels, shape (n, 3 * len(labels)).

    A None prediction, or one outside the labels, predicts nothing.
    """
    labels = label_set(targets, preds) if labels is None else labels
    column = {label: j for j, label in enumerate(labels)}
    guess = np.array([-1 if p is None else column.get(str(p), -1) for p in preds], dtype=int)
    truth = np.array([column.get(str(t), -1) for t in targets], dtype=int)
    rows = np.zeros((len(preds), 3, len(labels)))
    items = np.arange(len(preds))
    hit = (guess >= 0) & (guess == truth)
    rows[items[hit], 0, guess[hit]] = 1
    rows[items[guess >= 0], 1, guess[guess >= 0]] = 1
    rows[items[truth >= 0], 2, truth[truth >= 0]] = 1
    return rows.reshape(len(preds), 3 * len(labels))


def macro_f1_from_counts(sums: np.ndarray) -> np.ndarray:
    """Mean over labels seen as target or prediction of 2tp / (2tp + fp + fn); 0 when no label is seen."""
    tp, predicted, true = np.moveaxis(sums.reshape(*sums.shape[:-1], 3, -1), -2, 0)
    seen = predicted + true > 0  # predicted + true = 2tp + fp + fn
    f1 = np.where(seen, 2 * tp / np.maximum(predicted + true, 1), 0.0)
    count = seen.sum(axis=-1)
    return np.where(count > 0, f1.sum(axis=-1) / np.maximum(count, 1), 0.0)


def macro_f1(preds: list, targets: list) -> float:
    """sklearn's f1_score(average='macro') over the labels present in the targets or the predictions."""
    return float(macro_f1_from_counts(label_counts(preds, targets).sum(axis=0)))


def exact_match(pred: Any, target: Any) -> float:
    return float(pred is not None and normalize_answer(pred) == normalize_answer(target))


def token_f1(pred: Any, target: Any) -> float:
    p, t = normalize_answer(pred or "").split(), normalize_answer(target).split()
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


def rouge_tokens(text: Any) -> list[str]:
    """rouge-score's default tokenization without stemming: lowercase, anything but letters and digits
    becomes a space. rouge-score keeps only a-z and 0-9, so it would drop the é of "café"; this keeps it."""
    return re.sub(r"[^\w]|_", " ", str(text).lower()).split()


def rouge_l(pred: Any, target: Any) -> float:
    p, t = rouge_tokens(pred or ""), rouge_tokens(target)
    if not p or not t:
        return 0.0  # as rouge-score, even when both are empty
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
    return sum(normalize_answer(pred.get(k, "")) == normalize_answer(v) for k, v in target.items()) / len(target)


# the built-in metrics, registered as a plugin's are
METRICS: dict[str, Metric] = {m.name: m for m in [
    Metric("accuracy", accuracy_item),
    Metric("macro_f1", accuracy_item, stats=label_counts, combine=macro_f1_from_counts, tasks=("classification",)),
    Metric("exact_match", exact_match),
    Metric("token_f1", token_f1),
    Metric("rouge_l", rouge_l),
    Metric("json_valid", json_valid, tasks=("extraction",), needs_target=False),  # answers are JSON only in extraction
    Metric("key_accuracy", key_accuracy, tasks=("extraction",)),
]}


for _metric in METRICS.values():
    register_metric(_metric)


def stored_score(score: Any, target: Any) -> float:
    """A judge's stored score of one answer (0 when it gave none that could be read)."""
    return 0.0 if score is None else float(score)


def metric_inputs(metric: Metric, rows: list[dict]) -> list:
    """What a metric scores in stored prediction rows: the stored score for a judge, else the parsed answer."""
    if metric.stored:
        return [r["scores"].get(metric.name) for r in rows]
    return [r["parsed"] for r in rows]


def resample_counts(n_items: int, n_resamples: int, seed: int) -> np.ndarray:
    """How often each item is drawn in each bootstrap resample, shape (n_resamples, n_items).

    Resample i is the row idx[i] of default_rng(seed).integers(0, n_items, (n_resamples, n_items)).
    """
    idx = np.random.default_rng(seed).integers(0, n_items, size=(n_resamples, n_items))
    flat = (idx + n_items * np.arange(n_resamples)[:, None]).ravel()
    return np.bincount(flat, minlength=n_resamples * n_items).reshape(n_resamples, n_items).astype(float)


def bootstrap_interval(metric: Metric, preds: list, targets: list, *, n: int = 1000, seed: int = 0,
                       level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of the aggregate, resampling items with replacement."""
    if not preds:
        return float("nan"), float("nan")
    sums = resample_counts(len(preds), n, seed) @ metric.item_stats(preds, targets)
    values = metric.from_stats(sums, len(preds))
    alpha = (1 - level) / 2
    return float(np.quantile(values, alpha)), float(np.quantile(values, 1 - alpha))
