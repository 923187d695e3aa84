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
    return {
        "run_id": run["id"], "task": run["task_name"], "status": run["status"],
        "created_at": run["created_at"], "info": run["info"], "config": run["config"],
        "metrics": run["config"]["metrics"],
        "arms": [{"name": a["name"], "type": a["config"]["type"], "decoding": a["config"].get("decoding"),
                  "model": a["config"].get("model") or run["config"]["model"], "status": a["status"],
                  "wall_s": a["wall_s"], "summary": a["summary"], "prompt": a["prompt"]} for a in arms],
    }


def _fmt(value: float | None, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:.{digits}f}"


def _metric_cell(m: dict) -> str:
    return f"{_fmt(m['value'])} ({_fmt(m['low'])}–{_fmt(m['high'])})"


def table_rows(report: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the comparison table, shared by Markdown and the terminal."""
    header = ["arm", "method"] + [f"{m} (95% CI)" for m in report["metrics"]] + [
        "format ok", "ex/s", "p50 ms", "p95 ms", "in tok", "out tok"]
    rows = []
    for arm in report["arms"]:
        s = arm["summary"]
        if not s:
            rows.append([arm["name"], arm["type"]] + ["(not finished)"] + [""] * (len(header) - 3))
            continue
        method = arm["type"] + (" (scored)" if arm["decoding"] == "constrained" else "")
        rows.append([arm["name"], method] + [_metric_cell(s["metrics"][m]) for m in report["metrics"]] + [
            f"{s['format_ok']:.0%}", _fmt(s["examples_per_s"], 1), _fmt(s["latency_p50_s"] * 1000, 1),
            _fmt(s["latency_p95_s"] * 1000, 1), _fmt(s["mean_input_tokens"], 1), _fmt(s["mean_output_tokens"], 1)])
    return header, rows


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
    lines += ["", "Latency is compute time per item within a batch; ex/s is its inverse over the test split.",
              "", "## Prompts", ""]
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
