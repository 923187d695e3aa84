"""The self-contained HTML report: the comparison table, the recommendation, plots, tests, disagreements."""

from __future__ import annotations

from typing import Any

from .plots import line_chart, pareto_front, scatter
from .config import PROMPT_ARMS, TRAINED_ARMS
from .report import prompt_text


def render_html(report: dict[str, Any]) -> str:
    from jinja2 import Environment, PackageLoader, select_autoescape
    env = Environment(loader=PackageLoader("tunewise", "templates"), autoescape=select_autoescape(["html", "j2"]))
    main = [a for a in report["arms"] if a.get("summary") and not a.get("curve")]
    confusion = (report.get("confusion") or {}).get(report["decision"]["recommended"])
    return env.get_template("report.html.j2").render(
        r=report, d=report["decision"], metric=report["metrics"][0], table=comparison_rows(report),
        prices=_prices(report), plots=plots(report), needs=report.get("data_needs"), confusion=confusion,
        confusion_max=max((v for row in confusion["counts"].values() for v in row.values()), default=1) or 1
        if confusion else 1,
        arm_names=[a["name"] for a in main], main_arms=main, prompt_text=prompt_text)


def _prices(report: dict) -> dict:
    prices = dict(report["config"].get("prices") or {})
    prices.setdefault("hardware_per_hour", 0.0)
    prices.setdefault("currency", "USD")
    prices.setdefault("requests_per_month", 0)
    return prices


def _money(value: float | None, currency: str) -> str:
    if value is None:
        return "–"
    return f"{value:.3g} {currency}" if value else f"0 {currency}"


def comparison_rows(report: dict[str, Any]) -> list[dict[str, str]]:
    metric = report["metrics"][0]
    currency = _prices(report)["currency"]
    main = [a for a in report["arms"] if a.get("summary") and not a.get("curve")]
    costs = report["costs"]
    points = [(costs[a["name"]]["per_1k"], a["summary"]["metrics"][metric]["value"], a["name"]) for a in main]
    front = pareto_front(points)
    needs = report.get("data_needs") or {}
    rows = []
    for arm in main:
        s, c = arm["summary"], costs[arm["name"]]
        m = s["metrics"][metric]
        cons = s.get("consistency") or {}
        rows.append({
            "name": arm["name"], "method": _method(arm),
            "quality": f"{m['value']:.3f} ({m['low']:.3f}–{m['high']:.3f})",
            "consistency": " · ".join(_pct(cons.get(k)) for k in ("sample_agreement", "paraphrase_agreement",
                                                                   "format_ok")) if cons else _pct(s["format_ok"]),
            "per_1k": _money(c["per_1k"], currency), "one_time": _one_time(c, currency),
            "latency": f"{s['latency_p50_s'] * 1000:.0f} / {s['latency_p95_s'] * 1000:.0f} ms",
            "flexibility": _flexibility(arm, report), "data": _data(arm, report, needs),
            "use": _use(arm, report, front, points)})
    return rows


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{x:.0%}"


def _method(arm: dict) -> str:
    names = {"zero_shot": "prompt: zero-shot", "structured": "prompt: structured", "few_shot": "prompt: few-shot",
             "lora": "fine-tune: LoRA", "full": "fine-tune: full", "hybrid": "hybrid: tuned + prompt"}
    scored = " (scored labels)" if arm.get("decoding") == "constrained" else ""
    return names.get(arm["type"], arm["type"]) + scored


def _one_time(cost: dict, currency: str) -> str:
    if not cost["one_time"]:
        return "none"
    flops = f", {cost['train_flops']:.2g} FLOPs" if cost.get("train_flops") else ""
    return f"{cost['one_time']:.3g} {currency}{flops}"


def _training(arm: dict, report: dict) -> dict:
    training = arm.get("training") or {}
    if arm["type"] == "hybrid":
        tuned = next((a for a in report["arms"] if a["name"] == training.get("uses")), None)
        training = (tuned or {}).get("training") or {}
    return training


def _flexibility(arm: dict, report: dict) -> str:
    if arm["type"] in PROMPT_ARMS:
        return "edit the prompt: seconds"
    wall = _training(arm, report).get("wall_s")
    retrain = f"retrain: {wall:.0f} s" if wall else "retrain"
    return f"prompt edit: seconds; task change: {retrain}" if arm["type"] == "hybrid" else retrain


def _data(arm: dict, report: dict, needs: dict) -> str:
    if arm["type"] in ("zero_shot", "structured"):
        return "none"
    if arm["type"] == "few_shot":
        config = next((a for a in report["config"]["arms"] if a["name"] == arm["name"]), {})
        return f"{config.get('k', '?')} examples in the prompt"
    n = _training(arm, report).get("train_examples")
    text = f"{n} train examples" if n else "train split"
    match = needs.get("to_match_prompting")
    if arm["type"] in TRAINED_ARMS and needs.get("fine_tuning") and match is not None:
        text += f"; {match} matched the best prompt"
    return text


def _use(arm: dict, report: dict, front: list[str], points) -> str:
    name = arm["name"]
    if name == report["decision"]["recommended"]:
        return "Recommended for this task."
    if name in front:
        return "Pareto-optimal: no arm is both cheaper and better."
    me = next(p for p in points if p[2] == name)
    better = [p for p in points if p[0] <= me[0] and p[1] >= me[1] and p[2] != name]
    if better:
        best = max(better, key=lambda p: p[1])
        return f"Dominated: {best[2]} is as cheap or cheaper and as good or better."
    return "Use when its trade-off fits."


def plots(report: dict[str, Any]) -> list[tuple[str, str]]:
    metric = report["metrics"][0]
    main = [a for a in report["arms"] if a.get("summary") and not a.get("curve")]
    costs = report["costs"]
    currency = _prices(report)["currency"]
    points = [(costs[a["name"]]["per_1k"], a["summary"]["metrics"][metric]["value"], a["name"]) for a in main]
    out = [("Quality against cost per 1,000 requests",
            scatter(points, pareto_front(points), "quality vs cost", f"cost per 1,000 requests ({currency})",
                    metric, highlight=report["decision"]["recommended"]))]
    needs = report.get("data_needs") or {}
    tuning = [(p["examples"], p["value"]) for p in needs.get("fine_tuning", []) if p["value"] is not None]
    if tuning:
        series = {"fine-tuning": tuning}
        best = needs.get("best_prompting")
        if best:
            xs = [x for x, _ in tuning]
            series[f"best prompt ({best['arm']})"] = [(min(xs), best["value"]), (max(xs), best["value"])]
        out.append(("Learning curve: fine-tuning", line_chart(series, "learning curve", "train examples (log)",
                                                              metric, log_x=True)))
    shots = [(p["k"], p["value"]) for p in needs.get("few_shot", []) if p["value"] is not None]
    if shots:
        out.append(("Learning curve: few-shot", line_chart({"few-shot": shots}, "few-shot curve",
                                                           "examples in the prompt (k)", metric)))
    losses = {name: [(s, l) for s, l in pts] for name, pts in (report.get("loss_curves") or {}).items() if pts}
    if losses:
        out.append(("Training loss", line_chart(losses, "training loss", "optimizer step", "loss")))
    return [(title, svg) for title, svg in out if svg]

