"""Reports built from the store alone: JSON for machines, Markdown and a terminal table for people."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from .config import PROMPT_ARMS, TRAINED_ARMS
from .store import Store


def build_report(store: Store, run_id: str) -> dict[str, Any]:
    run = store.get_run(run_id)
    if run is None:
        raise KeyError(run_id)
    stored = store.arms(run["id"])
    report = {
        "run_id": run["id"], "task": run["task_name"], "status": run["status"],
        "created_at": run["created_at"], "info": run["info"], "config": run["config"],
        "metrics": run["config"]["metrics"],
        "arms": [{"name": a["name"], "type": a["config"]["type"], "decoding": a["config"].get("decoding"),
                  "model": a["config"].get("model") or run["config"]["model"], "status": a["status"],
                  "endpoint_model": (run["config"].get("endpoints") or {}).get(
                      a["config"].get("model") or run["config"]["model"], {}).get("model"),
                  "wall_s": a["wall_s"], "summary": a["summary"], "prompt": a["prompt"],
                  "training": _training_brief(a["training"]), "curve": a["curve"]} for a in stored],
    }
    report["data_needs"] = data_needs(report)
    add_analysis(report, store, stored)
    return report


def add_analysis(report: dict[str, Any], store: Store, stored: list[dict]) -> None:
    """Paired tests, costs, the decision, confusion matrices and disagreements, all from stored predictions."""
    from .costs import arm_costs
    from .decision import decide
    from .stats import compare_all
    metric = report["metrics"][0]
    main = [a["name"] for a in report["arms"] if a.get("summary") and not a.get("curve")]
    rows = {name: store.predictions(report["run_id"], name) for name in main}
    common = set.intersection(*(set(r["example_id"] for r in rs) for rs in rows.values())) if rows else set()
    scores = {name: [r["scores"][metric] for r in rs if r["example_id"] in common] for name, rs in rows.items()}
    seed = report["config"]["splits"]["seed"]
    report["comparisons"] = [c.to_dict() for c in compare_all(scores, metric, seed=seed)] if len(scores) > 1 else []
    report["costs"] = arm_costs(report)
    report["decision"] = decide(report, report["comparisons"], report["costs"])
    if report["config"]["type"] == "classification":
        report["confusion"] = {name: _confusion(rs, report["info"].get("labels") or []) for name, rs in rows.items()}
    report["disagreements"] = _disagreements(rows, common)
    report["loss_curves"] = {a["name"]: [[s["step"], s["loss"]] for s in a["training"]["losses"]]
                             for a in stored
                             if a.get("training") and a["training"].get("losses") and not a.get("curve")}


def _confusion(rows: list[dict], labels: list[str]) -> dict[str, Any]:
    predicted = labels + ["(none)"]
    counts = {t: {p: 0 for p in predicted} for t in labels}
    for r in rows:
        target = str(r["target"])
        guess = str(r["parsed"]) if r["parsed"] is not None else "(none)"
        if target in counts:
            counts[target][guess if guess in counts[target] else "(none)"] += 1
    return {"labels": labels, "predicted": predicted, "counts": counts}


def _disagreements(rows: dict[str, list[dict]], common: set, limit: int = 500) -> list[dict]:
    by_id: dict[str, dict] = {}
    for name, rs in rows.items():
        for r in rs:
            if r["example_id"] in common:
                item = by_id.setdefault(r["example_id"], {"id": r["example_id"], "input": r["input"],
                                                          "target": r["target"], "answers": {}, "raw": {}})
                item["answers"][name] = r["parsed"]
                item["raw"][name] = r["raw"]
    out = [item for item in by_id.values() if len({json.dumps(v) for v in item["answers"].values()}) > 1]
    return out[:limit]


def _training_brief(training: dict | None) -> dict | None:
    """The training record without its per-step losses (those stay in the store)."""
    if not training:
        return None
    return {k: v for k, v in training.items() if k != "losses"}




def _value(arm: dict, metric: str) -> float | None:
    return arm["summary"]["metrics"][metric]["value"] if arm.get("summary") else None


def data_needs(report: dict[str, Any]) -> dict[str, Any] | None:
    """The learning curves, and how many train examples fine-tuning needed to match prompting / the target."""
    arms = {a["name"]: a for a in report["arms"]}
    curve_arms = [a for a in report["arms"] if a.get("curve")]
    if not curve_arms:
        return None
    metric = report["metrics"][0]
    tuned_name = next((a["curve"]["of"] for a in curve_arms if "size" in a["curve"]), None)
    few_name = next((a["curve"]["of"] for a in curve_arms if "k" in a["curve"]), None)
    tuning = []
    if tuned_name and tuned_name in arms:
        points = [a for a in curve_arms if a["curve"]["of"] == tuned_name] + [arms[tuned_name]]
        for a in points:
            size = a["curve"]["size"] if a.get("curve") else (a["training"] or {}).get("train_examples")
            tuning.append({"arm": a["name"], "examples": size, "value": _value(a, metric),
                           "train_s": (a["training"] or {}).get("wall_s")})
        tuning.sort(key=lambda p: p["examples"] or 0)
    shots = []
    if few_name and few_name in arms:
        points = [a for a in curve_arms if a["curve"]["of"] == few_name] + [arms[few_name]]
        for a in points:
            k = a["curve"]["k"] if a.get("curve") else report["config"]["arms"][_position(report, few_name)].get("k")
            shots.append({"arm": a["name"], "k": k, "value": _value(a, metric)})
        shots.sort(key=lambda p: p["k"])
    prompting = [a for a in report["arms"] if a["type"] in PROMPT_ARMS and not a.get("curve") and a.get("summary")]
    best = max(prompting, key=lambda a: _value(a, metric), default=None)
    target = report["config"].get("target")
    out = {"metric": metric, "fine_tuning": tuning, "few_shot": shots,
           "best_prompting": {"arm": best["name"], "value": _value(best, metric)} if best else None,
           "to_match_prompting": None, "to_reach_target": None,
           "target": target["value"] if target and target.get("metric") == metric else None}
    if best:
        out["to_match_prompting"] = _first_reaching(tuning, _value(best, metric))
    if out["target"] is not None:
        out["to_reach_target"] = _first_reaching(tuning, out["target"])
    out["statements"] = _statements(out)
    return out


def _position(report: dict, name: str) -> int:
    return next(i for i, a in enumerate(report["config"]["arms"]) if a["name"] == name)


def _first_reaching(points: list[dict], level: float) -> int | None:
    return next((p["examples"] for p in points if p["value"] is not None and p["value"] >= level), None)


def _statements(needs: dict) -> list[str]:
    metric, out = needs["metric"], []
    best = needs["best_prompting"]
    tried = ", ".join(str(p["examples"]) for p in needs["fine_tuning"])
    if best and needs["fine_tuning"]:
        n = needs["to_match_prompting"]
        out.append(f"Fine-tuning matched the best prompting arm ({best['arm']}, {metric} {best['value']:.3f}) "
                   f"with {n} training examples." if n is not None else
                   f"Fine-tuning did not match the best prompting arm ({best['arm']}, {metric} "
                   f"{best['value']:.3f}) at any train size tried ({tried}).")
    if needs["target"] is not None and needs["fine_tuning"]:
        n = needs["to_reach_target"]
        out.append(f"It reached the target {metric} {needs['target']:g} with {n} training examples."
                   if n is not None else
                   f"It did not reach the target {metric} {needs['target']:g} at any train size tried ({tried}).")
    return out


def _fmt(value: float | None, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:.{digits}f}"


def _metric_cell(m: dict) -> str:
    return f"{_fmt(m['value'])} ({_fmt(m['low'])}–{_fmt(m['high'])})"


def table_rows(report: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the comparison table, shared by Markdown and the terminal."""
    header = ["arm", "method"] + [f"{m} (95% CI)" for m in report["metrics"]] + [
        "format ok", "ex/s", "p50 ms", "p95 ms", "in tok", "out tok", "train s"]
    rows = []
    for arm in report["arms"]:
        if arm.get("curve"):
            continue  # learning-curve points have their own section
        s = arm["summary"]
        if not s:
            rows.append([arm["name"], arm["type"]] + ["(not finished)"] + [""] * (len(header) - 3))
            continue
        method = arm["type"] + (" (scored)" if arm["decoding"] == "constrained" else "")
        rows.append([arm["name"], method] + [_metric_cell(s["metrics"][m]) for m in report["metrics"]] + [
            f"{s['format_ok']:.0%}", _fmt(s["examples_per_s"], 1), _fmt(s["latency_p50_s"] * 1000, 1),
            _fmt(s["latency_p95_s"] * 1000, 1), _fmt(s["mean_input_tokens"], 1), _fmt(s["mean_output_tokens"], 1),
            _fmt((arm["training"] or {}).get("wall_s"), 0) if arm["type"] in TRAINED_ARMS else ""])
    return header, rows


def needs_lines(report: dict[str, Any]) -> list[str]:
    """The data-needs section in Markdown."""
    needs = report.get("data_needs")
    if not needs:
        return []
    metric = needs["metric"]
    lines = ["## How much data fine-tuning needed", ""]
    if needs["fine_tuning"]:
        lines += [f"| train examples | {metric} | train s |", "|---|---|---|"]
        lines += [f"| {p['examples']} | {_fmt(p['value'])} | {_fmt(p['train_s'], 0)} |" for p in needs["fine_tuning"]]
        lines.append("")
    if needs["few_shot"]:
        lines += [f"| few-shot k | {metric} |", "|---|---|"]
        lines += [f"| {p['k']} | {_fmt(p['value'])} |" for p in needs["few_shot"]]
        lines.append("")
    return lines + needs["statements"] + [""]


def prompt_text(messages: list[dict] | None) -> str:
    if not messages:
        return ""
    return "\n".join(f"[{m['role']}] {m['content']}" for m in messages)


def to_markdown(report: dict[str, Any]) -> str:
    info = report["info"]
    header, rows = table_rows(report)
    lines = [f"# tunewise run {report['run_id']}: {report['task']}", "",
             f"Model `{report['config']['model']}`; splits {info['splits']}; "
             f"labels {info.get('labels') or '–'}.", ""]
    if info.get("leakage", {}).get("count"):
        lines += [f"**Leakage:** {info['leakage']['count']} test inputs also appear in train/dev.", ""]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    lines += ["", "Latency is compute time per item within a batch; ex/s is its inverse over the test split.", ""]
    lines += needs_lines(report)
    decision = report.get("decision")
    if decision:
        lines += [f"## Recommendation: {decision['recommended']} ({decision['kind']})", ""]
        lines += [f"{i}. {reason}" for i, reason in enumerate(decision["reasons"], start=1)] + [""]
        if decision["mistakes"]:
            lines += ["Common mistakes seen:", ""] + [f"- {m}" for m in decision["mistakes"]] + [""]
    lines += ["## Prompts", ""]
    for arm in report["arms"]:
        lines += [f"### {arm['name']}", "", "```", prompt_text(arm["prompt"]), "```", ""]
    return "\n".join(lines)


def write_reports(store: Store, run_id: str, out_dir: Path, report: dict[str, Any] | None = None) -> dict[str, Path]:
    from .html_report import render_html
    report = report or build_report(store, run_id)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"html": out_dir / "report.html", "json": out_dir / "report.json", "markdown": out_dir / "report.md"}
    paths["json"].write_text(json.dumps(report, indent=2, ensure_ascii=False))
    paths["markdown"].write_text(to_markdown(report))
    paths["html"].write_text(render_html(report))
    return paths


def compare_runs(a: dict[str, Any], b: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Arms of two runs side by side on the first run's primary metric."""
    metric = a["metrics"][0]
    header = ["arm", f"{metric} {a['run_id']}", f"{metric} {b['run_id']}", "difference"]
    values = {}
    for side, report in (("a", a), ("b", b)):
        for arm in report["arms"]:
            if arm.get("summary") and metric in arm["summary"]["metrics"]:
                values.setdefault(arm["name"], {})[side] = arm["summary"]["metrics"][metric]
    rows = []
    for name, pair in values.items():
        va, vb = pair.get("a"), pair.get("b")
        diff = f"{vb['value'] - va['value']:+.3f}" if va and vb else ""
        rows.append([name, _metric_cell(va) if va else "–", _metric_cell(vb) if vb else "–", diff])
    return header, rows


def print_table(report: dict[str, Any], console=None) -> None:
    from rich.console import Console
    from rich.table import Table
    if console is None:
        console = Console()
        if not console.is_terminal:  # piped or logged: do not squeeze the table into 80 columns
            console = Console(width=160)
    header, rows = table_rows(report)
    table = Table(title=f"{report['task']} · run {report['run_id']}")
    for i, name in enumerate(header):
        table.add_column(name, justify="left" if i < 2 else "right")
    for row in rows:
        table.add_row(*row)
    console.print(table)
    needs = report.get("data_needs")
    if needs:
        metric = needs["metric"]
        curve = ", ".join(f"{p['examples']}: {_fmt(p['value'])}" for p in needs["fine_tuning"])
        shots = ", ".join(f"k={p['k']}: {_fmt(p['value'])}" for p in needs["few_shot"])
        if curve:
            console.print(f"Learning curve ({metric} by train examples): {curve}")
        if shots:
            console.print(f"Few-shot ({metric} by k): {shots}")
        for line in needs["statements"]:
            console.print(line)
    decision = report.get("decision")
    if decision and decision["recommended"]:
        console.print(f"\n[bold]Recommendation: {decision['recommended']}[/bold] ({decision['kind']})")
        for i, reason in enumerate(decision["reasons"], start=1):
            console.print(f"  {i}. {reason}", highlight=False)
        for mistake in decision["mistakes"]:
            console.print(f"  [yellow]![/yellow] {mistake}", highlight=False)
