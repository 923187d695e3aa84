"""The comparison table's rows, shared by the terminal and Markdown renderers."""

from __future__ import annotations

from .format import metric_cell, num, pct
from .model import RunReport


def table_rows(report: RunReport) -> tuple[list[str], list[list[str]]]:
    """Header and one row per arm of the task (learning-curve points have their own section)."""
    header = ["arm", "method"] + [f"{m} (95% CI)" for m in report.metrics] + [
        "format ok", "ex/s", "p50 ms", "p95 ms", "in tok", "out tok", "eval s (consistency)", "train s"]
    rows = []
    for arm in report.arms:
        if arm.curve is not None:
            continue
        s = arm.summary
        if s is None:
            rows.append([arm.name, arm.method, "(not finished)"] + [""] * (len(header) - 3))
            continue
        train_s = num((arm.training or {}).get("wall_s"), 0) if arm.family == "fine-tune" else ""
        rows.append([arm.name, arm.method] + [metric_cell(s.metrics.get(m)) for m in report.metrics] + [
            pct(s.format_ok), num(s.examples_per_s, 1), num(_ms(s.latency_p50_s), 1), num(_ms(s.latency_p95_s), 1),
            num(s.mean_input_tokens, 1), num(s.mean_output_tokens, 1), _eval_cell(arm), train_s])
    return header, rows


def compare_rows(a: RunReport, b: RunReport) -> tuple[list[str], list[list[str]]]:
    """Arms of two runs side by side on the first run's decision metric."""
    metric = a.metric
    header = ["arm", f"{metric} {a.run_id}", f"{metric} {b.run_id}", "difference"]
    values: dict[str, dict] = {}
    for side, report in (("a", a), ("b", b)):
        for arm in report.arms:
            if arm.summary and metric in arm.summary.metrics:
                values.setdefault(arm.name, {})[side] = arm.summary.metrics[metric]
    rows = []
    for name, pair in values.items():
        va, vb = pair.get("a"), pair.get("b")
        diff = f"{vb.value - va.value:+.3f}" if va and vb and None not in (va.value, vb.value) else ""
        rows.append([name, metric_cell(va), metric_cell(vb), diff])
    return header, rows


def _eval_cell(arm) -> str:
    """The arm's evaluation wall time, with the consistency pass's share of it."""
    share = arm.summary.consistency_share
    return num(arm.wall_s, 0) + (f" ({share:.0%})" if share is not None else "")


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * 1000
