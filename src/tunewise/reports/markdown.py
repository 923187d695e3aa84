"""The Markdown report: the table, data needs, the recommendation, the prompts."""

from __future__ import annotations

from ..analysis.model import RunReport
from .format import md_cell, num, plan_rows
from .table import declared_lines, seed_verdicts, stability_rows, table_rows


def to_markdown(report: RunReport) -> str:
    info = report.info
    status = "" if report.status == "done" else f" ({report.status})"
    lines = [f"# tunewise run {report.run_id}: {report.task}{status}", "",
             f"Model `{report.config['model']}`; splits {info['splits']}; labels {info.get('labels') or '–'}; "
             f"decision metric {report.metric}.", ""]
    if (info.get("leakage") or {}).get("count"):
        lines += [f"**Leakage:** {info['leakage']['count']} test inputs also appear in train/dev.", ""]
    if report.warnings:
        lines += ["**Warnings:**", ""] + [f"- {w}" for w in report.warnings] + [""]
    header, rows = table_rows(report)
    lines += _table(header, rows)
    lines += ["", "Latency is compute time per item within a batch; ex/s is its inverse over the test split.", ""]
    lines += _clean(report)
    lines += _searches(report)
    lines += _contributions(report)
    lines += _needs(report)
    lines += _decision(report)
    lines += _stability(report)
    lines += _tests(report)
    declared = declared_lines(report)
    if declared:
        lines += ["## Assertions and judge", ""] + [f"- {md_cell(line.strip())}" for line in declared] + [""]
    lines += ["## Prompts", ""]
    for arm in report.main_arms():
        lines += [f"### {arm.name}", "", "```", prompt_text(arm.prompt), "```", ""]
    return "\n".join(lines)


def prompt_text(messages: list[dict] | None) -> str:
    if not messages:
        return ""
    return "\n".join(f"[{m['role']}] {m['content']}" for m in messages)


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(md_cell(h) for h in header) + " |", "|" + "---|" * len(header)]
    return out + ["| " + " | ".join(md_cell(c) for c in row) + " |" for row in rows]


def _searches(report: RunReport) -> list[str]:
    lines = []
    for s in report.searches:
        pruned = sum(t["state"] == "pruned" for t in s.trials)
        lines += [f"## {s.kind.capitalize()} search: {s.arm}", "",
                  f"{len(s.trials)} trials ({pruned} pruned) on {s.dev_items} dev items in {s.seconds:.0f} s; the "
                  f"winner scored {s.metric} {num(s.dev_score)} on dev and {num(s.test_score)} on test.", ""]
        if s.overfit:
            lines += [s.overfit, ""]
        rows = [[choice, str(value), " · ".join(f"{v}: {num(score)}" for v, score in
                                                (s.contributions.get(choice) or {}).items())]
                for choice, value in s.best.items()]
        lines += _table(["choice", "winner", f"mean dev {s.metric} by value"], rows) + [""]
    return lines


def _contributions(report: RunReport) -> list[str]:
    lines = []
    for c in report.contributions:
        rows = [["both (the hybrid)", c.hybrid, num(c.value), "", ""]]
        rows += [[p.role, p.arm, num(p.value), _gain(p), "–" if p.p_holm is None else f"{p.p_holm:.3g}"]
                 for p in c.parts]
        lines += [f"## What each part of {c.hybrid} added ({c.training})", ""]
        lines += _table(["part", "arm", report.metric, "hybrid − part (95% CI)", "Holm p"], rows) + [""]
        if c.steps:
            lines += _table(["step", "model", f"dev {report.metric}"],
                            [[s["step"], s["model"], num(s["dev"])] for s in c.steps]) + [""]
        lines += [c.statement, ""]
    return lines


def _spread(point) -> str:
    return f"{num(point.low)} – {num(point.high)} ({point.draws} sets)" if point.draws > 1 else "one set"


def _gain(part) -> str:
    if part.gain is None:
        return "–"
    return f"{part.gain:+.3f} ({part.low:+.3f} to {part.high:+.3f})"


def _clean(report: RunReport) -> list[str]:
    if report.clean is None:
        return []
    rows = [[name, f"{num(v.value)} ({num(v.low)}–{num(v.high)})"] for name, v in report.clean.values.items()]
    return [f"## On {report.clean.basis}", ""] + _table(["arm", f"{report.metric} (95% CI)"], rows) + [""]


def _needs(report: RunReport) -> list[str]:
    needs = report.data_needs
    if not needs:
        return []
    lines = ["## How much data fine-tuning needed", ""]
    if needs.fine_tuning:
        lines += _table(["train examples", needs.metric, "train s"],
                        [[str(p.examples), num(p.value), num(p.train_s, 0)] for p in needs.fine_tuning]) + [""]
    if needs.few_shot:
        lines += _table(["few-shot k", f"{needs.metric} (mean of the example sets)", "lowest – highest set"],
                        [[str(p.k), num(p.value), _spread(p)] for p in needs.few_shot]) + [""]
    return lines + needs.statements + [""]


def _decision(report: RunReport) -> list[str]:
    from .terminal import headline
    d = report.decision
    if not d:
        return []
    lines = [f"## {headline(report)}", "", f"Decided on {report.metric} ({report.metric_why}), over {d.basis}.", ""]
    if d.stability:
        lines += [f"**Stability:** {d.stability}.", ""]
    lines += [f"{i}. {reason}" for i, reason in enumerate(d.reasons, start=1)] + [""]
    if d.next_steps:
        lines += ["Next steps:", ""] + [f"- {step}" for step in d.next_steps] + [""]
    if d.mistakes:
        lines += ["Common mistakes seen:", ""] + [f"- {m.text}" for m in d.mistakes] + [""]
    if report.framework:
        lines += ["## The framework's table, measured on this task", ""]
        lines += _table(["", *report.framework.columns], [[r.label, *r.cells] for r in report.framework.rows])
        lines += [""]
    if report.plan_check:
        header, rows = plan_rows(report.plan_check)
        lines += ["## The plan against the run", ""] + _table(header, rows) + [""]
        if report.plan_check.cuts:
            lines += [f"Cut to fit the budget {report.plan_check.budget}: " + "; ".join(report.plan_check.cuts), ""]
    return lines


def _stability(report: RunReport) -> list[str]:
    if report.stability is None:
        return []
    header, rows = stability_rows(report)
    return ([f"## Across re-splits ({report.metric})", "",
             f"The comparison repeated on {len(report.stability.seeds)} splits of the same data (splits.seeds)"
             f"{'; the learning curve ran on the first' if report.data_needs else ''}. Verdict on each split alone: "
             f"{seed_verdicts(report)}.", ""]
            + _table(header, rows) + [""])


def _tests(report: RunReport) -> list[str]:
    if not report.comparisons:
        return []
    rows = [[c.a, c.b, f"{c.diff:+.3f}", f"{c.low:+.3f} to {c.high:+.3f}", c.description or c.test,
             f"{c.p:.3g}", f"{c.p_holm:.3g}"] for c in report.comparisons]
    return [f"## Paired tests ({report.metric})", ""] + _table(
        ["A", "B", "B − A", "95% CI", "test", "p", "Holm p"], rows) + [""]
