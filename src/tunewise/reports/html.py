"""The self-contained HTML report: the comparison table, the recommendation, plots, tests, disagreements."""

from __future__ import annotations

from ..analysis.model import ArmResult, RunReport
from .format import metric_cell, money, pct, plan_rows
from .markdown import prompt_text
from .plots import line_chart, pareto_front, scatter
from .table import declared_lines
from .terminal import headline

SCORE_RANGE = (0.0, 1.0)  # every quality metric tunewise has is a share between 0 and 1


def render_html(report: RunReport) -> str:
    from jinja2 import Environment, PackageLoader, select_autoescape
    env = Environment(loader=PackageLoader("tunewise", "templates"), autoescape=select_autoescape(["html", "j2"]))
    d = report.decision
    shown = (d.recommended or d.closest) if d else None  # the arm whose errors the report details
    confusion = report.confusion.get(shown) if shown else None
    return env.get_template("report.html.j2").render(
        r=report, d=d, metric=report.metric, table=comparison_rows(report), prices=_prices(report),
        plots=plots(report), needs=report.data_needs, confusion=confusion,
        confusion_max=max(confusion.max_count, 1) if confusion else 1,
        arm_names=[a.name for a in report.main_arms()], main_arms=report.main_arms(), prompt_text=prompt_text,
        headline=headline(report) if d else "", shown=shown, declared=declared_lines(report),
        stability=_stability(report), plan=plan_rows(report.plan_check) if report.plan_check else None)


def _stability(report: RunReport) -> dict | None:
    if report.stability is None:
        return None
    from .table import seed_verdicts, stability_rows
    header, rows = stability_rows(report)
    return {"header": header, "rows": rows, "verdicts": seed_verdicts(report)}


def _prices(report: RunReport) -> dict:
    return {"hardware_per_hour": 0.0, "requests_per_month": None, **report.prices, "currency": report.currency}


def _cost_points(report: RunReport) -> list[tuple[float, float, str]]:
    return [(report.costs[a.name].per_1k, a.value(report.metric), a.name) for a in report.main_arms()]


def comparison_rows(report: RunReport) -> list[dict[str, str]]:
    points = _cost_points(report)
    front = pareto_front(points)
    rows = []
    for arm in report.main_arms():
        s, c = arm.summary, report.costs[arm.name]
        cons = s.consistency
        rows.append({
            "name": arm.name, "method": arm.method, "quality": metric_cell(s.metrics[report.metric]),
            "consistency": " · ".join(pct(v) for v in (cons.sample_agreement, cons.paraphrase_agreement,
                                                       cons.format_ok)) if cons else pct(s.format_ok),
            "per_1k": money(c.per_1k, report.currency), "one_time": _one_time(c, report.currency),
            "latency": f"{s.latency_p50_s * 1000:.0f} / {s.latency_p95_s * 1000:.0f} ms",
            "flexibility": _flexibility(arm, report), "data": _data(arm, report),
            "use": _use(arm, report, front, points)})
    return rows


def _one_time(cost, currency: str) -> str:
    if not cost.one_time:
        return "none"
    flops = f", {cost.train_flops:.2g} FLOPs" if cost.train_flops else ""
    return money(cost.one_time, currency) + flops


def _train_seconds(arm: ArmResult, report: RunReport) -> float | None:
    from ..analysis.costs import training_record
    return training_record(arm, {a.name: a for a in report.arms}).get("wall_s")


def _flexibility(arm: ArmResult, report: RunReport) -> str:
    if arm.traits.prompting:
        return "edit the prompt: seconds"
    wall = _train_seconds(arm, report)
    retrain = f"retrain: {wall:.0f} s" if wall else "retrain"
    return f"prompt edit: seconds; task change: {retrain}" if arm.traits.hybrid else retrain


def _data(arm: ArmResult, report: RunReport) -> str:
    needs = report.data_needs
    text = arm.data_required
    if arm.summary.retrieval_hit_rate is not None:
        text += f"; the passages held the answer for {arm.summary.retrieval_hit_rate:.0%} of items"
    if arm.traits.fine_tune and needs and needs.fine_tuning and needs.to_match_prompting is not None:
        text += f"; {needs.to_match_prompting} matched the best prompt"
    return text


def _use(arm: ArmResult, report: RunReport, front: list[str], points) -> str:
    name = arm.name
    if report.decision and name == report.decision.recommended:
        return "Recommended for this task."
    if name in front:
        return "Pareto-optimal: no arm is both cheaper and better."
    me = next(p for p in points if p[2] == name)
    better = [p for p in points if p[0] <= me[0] and p[1] >= me[1] and p[2] != name]
    if better:
        best = max(better, key=lambda p: p[1])
        return f"Dominated: {best[2]} is as cheap or cheaper and as good or better."
    return "Use when its trade-off fits."


def plots(report: RunReport) -> list[tuple[str, str]]:
    metric = report.metric
    points = [p for p in _cost_points(report) if p[1] is not None]
    recommended = report.decision.recommended if report.decision else None
    out = [("Quality against cost per 1,000 requests",
            scatter(points, pareto_front(points), x_label=f"cost per 1,000 requests ({report.currency})",
                    y_label=metric, highlight=recommended, y_range=SCORE_RANGE))]
    needs = report.data_needs
    tuning = [(p.examples, p.value) for p in (needs.fine_tuning if needs else []) if p.value is not None and p.examples]
    if tuning:
        series = {"fine-tuning": tuning}
        if needs.best_prompting and needs.best_prompting.value is not None:
            xs = [x for x, _ in tuning]
            series[f"best prompt ({needs.best_prompting.arm})"] = [(min(xs), needs.best_prompting.value),
                                                                   (max(xs), needs.best_prompting.value)]
        out.append(("Learning curve: fine-tuning", line_chart(series, x_label="train examples (log scale)",
                                                              y_label=metric, log_x=True, y_range=SCORE_RANGE)))
    shots = [(p.k, p.value) for p in (needs.few_shot if needs else []) if p.value is not None]
    if shots:
        series = {"few-shot (mean of the example sets)": shots}
        if any(p.draws > 1 for p in needs.few_shot):
            series["lowest set"] = [(p.k, p.low) for p in needs.few_shot if p.low is not None]
            series["highest set"] = [(p.k, p.high) for p in needs.few_shot if p.high is not None]
        out.append(("Learning curve: few-shot", line_chart(series, x_label="examples in the prompt (k)",
                                                           y_label=metric, y_range=SCORE_RANGE,
                                                           x_ticks=[k for k, _ in shots])))
    for search in report.searches:
        complete = [(t["number"], t["value"]) for t in search.trials if t["state"] == "complete"]
        pruned = [(t["number"], t["value"]) for t in search.trials if t["state"] == "pruned" and t["value"] is not None]
        series = {f"{search.arm}: dev {search.metric}": complete}
        if pruned:
            series["pruned (last slice scored)"] = pruned
        step = max(1, len(search.trials) // 8)  # trials are whole numbers
        out.append((f"Prompt search: {search.arm}", line_chart(series, x_label="trial", y_label=f"dev {search.metric}",
                                                               y_range=SCORE_RANGE,
                                                               x_ticks=list(range(0, len(search.trials), step)))))
    losses = {name: pts for name, pts in report.loss_curves.items() if pts}
    if losses:
        out.append(("Training loss", line_chart(losses, x_label="optimizer step", y_label="loss")))
    return [(title, svg) for title, svg in out if svg]
