"""Scoring an arm's predictions: per-item scores and a summary with 95% bootstrap intervals."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from .declared import get_metric
from .metrics import bootstrap_interval, metric_inputs

if TYPE_CHECKING:  # measuring reads what arms return; it never builds one
    from ..arms.base import Prediction


def item_scores(prediction: Prediction, metric_names: list[str], task: Any = None) -> dict[str, float]:
    """Each metric's score of one answer; a judge's (stored) metrics are added when the judge has scored."""
    metrics = [get_metric(name, task) for name in metric_names]
    return {m.name: m.item(prediction.parsed, prediction.example.target) for m in metrics if not m.stored}


def summarize(rows: list[dict[str, Any]], metric_names: list[str], seed: int = 0, task: Any = None) -> dict[str, Any]:
    """Rows are stored predictions (dicts with parsed, target, scores, latency and tokens); `task` (a Task or
    its stored configuration) supplies the metrics it declares."""
    metrics = _metrics(rows, metric_names, seed, task)
    latencies = np.array([r["latency_s"] for r in rows], dtype=float)
    busy = float(latencies.sum())
    return {
        "n": len(rows),
        "metrics": metrics,
        "format_ok": float(np.mean([r["parsed"] is not None for r in rows])) if rows else float("nan"),
        "examples_per_s": len(rows) / busy if busy > 0 else float("nan"),
        "latency_p50_s": float(np.percentile(latencies, 50)) if rows else float("nan"),
        "latency_p95_s": float(np.percentile(latencies, 95)) if rows else float("nan"),
        "mean_input_tokens": float(np.mean([r["input_tokens"] for r in rows])) if rows else 0.0,
        "mean_output_tokens": float(np.mean([r["output_tokens"] for r in rows])) if rows else 0.0,
        "cached": int(sum(r["cached"] for r in rows)),
        "retrieval_hit_rate": _hit_rate(rows),
        "by_answer": _by_answer(rows, metric_names, seed, task),
    }


def _by_answer(rows: list[dict[str, Any]], metric_names: list[str], seed: int, task: Any) -> dict | None:
    """The metrics on the items whose answer a train example has, and on the others: what training can teach,
    against facts it never saw. None unless both groups have items."""
    marked = [r for r in rows if "answer_in_train" in (r.get("extra") or {})]
    groups = {"seen": [r for r in marked if r["extra"]["answer_in_train"]],
              "unseen": [r for r in marked if not r["extra"]["answer_in_train"]]}
    if not all(groups.values()):
        return None
    return {name: {"n": len(group), "metrics": _metrics(group, metric_names, seed, task)}
            for name, group in groups.items()}


def _metrics(rows: list[dict[str, Any]], metric_names: list[str], seed: int, task: Any) -> dict[str, dict]:
    """Each metric's value on the rows, with its 95% bootstrap interval."""
    targets, out = [r["target"] for r in rows], {}
    for name in metric_names:
        metric = get_metric(name, task)
        preds = metric_inputs(metric, rows)
        low, high = bootstrap_interval(metric, preds, targets, seed=seed)
        out[name] = {"value": metric.aggregate(preds, targets), "low": low, "high": high,
                     "higher_is_better": metric.higher_is_better}
    return out


def _hit_rate(rows: list[dict[str, Any]]) -> float | None:
    """The share of items whose retrieved passages hold the expected answer (retrieval arms only)."""
    hits = [r["extra"]["retrieval_hit"] for r in rows if "retrieval_hit" in (r.get("extra") or {})]
    return float(np.mean(hits)) if hits else None


def prediction_rows(predictions: list[Prediction], metric_names: list[str], task: Any = None) -> list[dict[str, Any]]:
    return [{
        "example_id": p.example.id, "position": i, "input": p.example.input, "target": p.example.target,
        "messages": p.messages, "raw": p.raw, "parsed": p.parsed, "scores": item_scores(p, metric_names, task),
        "extra": p.extra, "latency_s": p.latency_s, "input_tokens": p.input_tokens,
        "output_tokens": p.output_tokens, "cached": p.cached,
    } for i, p in enumerate(predictions)]
