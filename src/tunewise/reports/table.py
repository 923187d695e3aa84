"""The comparison table's rows, shared by the terminal and Markdown renderers."""

from __future__ import annotations

from ..analysis.model import RunReport
from .format import metric_cell, num, pct


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
        # a matched hybrid trained its own adapter; a plain one reuses its tuned arm's (no wall_s of its own)
        train_s = num((arm.training or {}).get("wall_s"), 0) if arm.traits.trains_weights else ""
        rows.append([arm.name, arm.method] + [metric_cell(s.metrics.get(m)) for m in report.metrics] + [
            pct(s.format_ok), num(s.examples_per_s, 1), num(_ms(s.latency_p50_s), 1), num(_ms(s.latency_p95_s), 1),
            num(s.mean_input_tokens, 1), num(s.mean_output_tokens, 1), _eval_cell(arm), train_s])
    return header, rows


def stability_rows(report: RunReport) -> tuple[list[str], list[list[str]]]:
    """Re-splits: each arm's decision metric per seed, its mean and spread, and the pooled value."""
    st = report.stability
    header = ["arm"] + [f"seed {s}" for s in st.seeds] + ["mean", "sd", "range", "pooled (95% CI)"]
    rows = []
    for name, spread in st.arms.items():
        rows.append([name] + [num(spread.values.get(s)) for s in st.seeds] + [
            num(spread.mean), num(spread.sd), f"{num(spread.low)}–{num(spread.high)}",
            metric_cell(st.pooled.values.get(name))])
    return header, rows


def seed_verdicts(report: RunReport) -> str:
    """Each re-split's own verdict, in one line."""
    return "; ".join(f"seed {seed}: {v}" for seed, v in report.stability.verdicts.items())


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


def not_comparable(a: RunReport, b: RunReport) -> str | None:
    """Why two runs' differences are not the arms' alone (another task, other data or test items, other
    models), as one warning line; None when they ran the same task on the same items with the same models."""
    why = []
    if _task_key(a) != _task_key(b):
        why.append(f"different tasks ({a.task!r} on {a.metric}, {b.task!r} on {b.metric})")
    if a.data_fingerprint != b.data_fingerprint:
        why.append("different data")
    elif a.config.get("splits") != b.config.get("splits"):
        why.append("different splits, so different test items")
    models = {side: sorted({arm.model for arm in r.arms if arm.main}) for side, r in (("a", a), ("b", b))}
    if models["a"] != models["b"]:
        why.append(f"different models ({', '.join(models['a'])} against {', '.join(models['b'])})")
    if not why:
        return None
    return (f"warning: runs {a.run_id} and {b.run_id} are not comparable: {'; '.join(why)}; their differences are "
            f"not the arms' alone")


def _task_key(report: RunReport) -> tuple:
    config, data = report.config, report.config.get("data") or {}
    return report.task, config.get("type"), data.get("input"), data.get("target"), config.get("labels"), report.metric


def _eval_cell(arm) -> str:
    """The arm's evaluation wall time, with the consistency pass's share of it."""
    share = arm.summary.consistency_share
    return num(arm.wall_s, 0) + (f" ({share:.0%})" if share is not None else "")


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * 1000


def declared_lines(report: RunReport) -> list[str]:
    """The closing note of a task scored by assertions or a judge: each arm's pass rates with 95% intervals,
    the paired tests between the arms, the judge's pairwise verdicts and its agreement with human scores."""
    names = list(report.declared_tests) or [m for m in ("assertions", "rubric") if m in report.metrics]
    arms = report.main_arms()
    if not names or not arms:
        return []
    lines = []
    for name in names:
        rates = "; ".join(f"{a.name} {metric_cell(a.summary.metrics.get(name))}" for a in arms)
        lines.append(f"{name} ({'rubric score' if name == 'rubric' else 'pass rate'}, 95% CI): {rates}")
        for c in report.declared_tests.get(name, []):
            lines.append(f"  {c.b} − {c.a}: {c.diff:+.3f} ({c.low:+.3f} to {c.high:+.3f}), {c.description or c.test}, "
                         f"p {c.p:.3g} (Holm {c.p_holm:.3g})")
    for a in arms:
        j = a.summary.judge
        if j:
            rho = "–" if j.get("length_correlation") is None else f"{j['length_correlation']:.2f}"
            lines.append(f"judge on {a.name}: mean answer {j['mean_words']:.0f} words, rank correlation of score "
                         f"with length {rho}; {j['unparsed']} of {j['calls']} verdicts unreadable, "
                         f"{j['cached']} from the cache")
    judge = report.judge or {}
    for pair in judge.get("pairs", []):
        lines.append(f"judge {judge.get('model')}, {pair['b']} against {pair['a']} on {pair['n']} items (both orders): "
                     f"{pair['wins_b']} wins, {pair['wins_a']} losses, {pair['ties']} ties "
                     f"({pair['order_disagreements']} where the orders disagreed); win rate {num(pair['win_rate_b'])} "
                     f"({num(pair['low'])}–{num(pair['high'])}), sign test p {pair['p_value']:.3g}")
    agreement = judge.get("agreement")
    if agreement:
        rho = "–" if agreement["spearman"] is None else f"{agreement['spearman']:.2f}"
        verdict = "trusted" if agreement["trusted"] else "NOT trusted: its rubric scores should not decide"
        lines.append(f"judge agreement with {agreement['n']} human scores: Spearman {rho} "
                     f"(needed {agreement['min_agreement']:g}): {verdict}")
    return lines
