"""Reports built from the store alone: JSON for machines, Markdown and a terminal table for people."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from .store import Store


def build_report(store: Store, run_id: str) -> dict[str, Any]:
    run = store.get_run(run_id)
    if run is None:
        raise KeyError(run_id)
    arms = store.arms(run["id"])
    report = {
        "run_id": run["id"], "task": run["task_name"], "status": run["status"],
        "created_at": run["created_at"], "info": run["info"], "config": run["config"],
        "metrics": run["config"]["metrics"],
        "arms": [{"name": a["name"], "type": a["config"]["type"], "decoding": a["config"].get("decoding"),
                  "model": a["config"].get("model") or run["config"]["model"], "status": a["status"],
                  "wall_s": a["wall_s"], "summary": a["summary"], "prompt": a["prompt"],
                  "training": _training_brief(a["training"]), "curve": a["curve"]} for a in arms],
    }
    report["data_needs"] = data_needs(report)
    return report


def _training_brief(training: dict | None) -> dict | None:
    """The training record without its per-step losses (those stay in the store)."""
    if not training:
        return None
    return {k: v for k, v in training.items() if k != "losses"}


PROMPT_TYPES = ("zero_shot", "structured", "few_shot")


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
    prompting = [a for a in report["arms"] if a["type"] in PROMPT_TYPES and not a.get("curve") and a.get("summary")]
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
            _fmt((arm["training"] or {}).get("wall_s"), 0) if arm["type"] in ("lora", "full") else ""])
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
    lines += ["## Prompts", ""]
    for arm in report["arms"]:
        lines += [f"### {arm['name']}", "", "```", prompt_text(arm["prompt"]), "```", ""]
    return "\n".join(lines)


def write_reports(store: Store, run_id: str, out_dir: Path) -> dict[str, Path]:
    report = build_report(store, run_id)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"json": out_dir / "report.json", "markdown": out_dir / "report.md"}
    paths["json"].write_text(json.dumps(report, indent=2, ensure_ascii=False))
    paths["markdown"].write_text(to_markdown(report))
    return paths


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
