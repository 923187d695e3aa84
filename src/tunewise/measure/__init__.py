"""Measuring answers: metrics (one answer against its target, aggregated with intervals), assertions
(pass/fail checks of one answer), the judge (a model scoring answers against a rubric), an arm's answers
scored (`evaluate`) and how steady they are (`consistency`). Comparisons between arms are analysis.
"""

from __future__ import annotations

from .declared import declared_metrics, get_metric
from .metrics import METRICS, Metric

__all__ = ["METRICS", "Metric", "declared_metrics", "get_metric"]
