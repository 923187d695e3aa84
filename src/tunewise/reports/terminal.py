"""The terminal summary: the comparison table, the learning curves, the recommendation (rich)."""

from __future__ import annotations

from ..analysis.model import RunReport
from .format import num, plan_rows
from .table import compare_rows, declared_lines, not_comparable, seed_verdicts, stability_rows, table_rows


def escape(text: str) -> str:
    from rich.markup import escape as rich_escape
    return rich_escape(text)


def console():
    from rich.console import Console
    out = Console()
    return out if out.is_terminal else Console(width=200)  # piped or logged: the tables' own width, not 80


def print_table(report: RunReport, out=None) -> None:
    out = out or console()
    header, rows = table_rows(report)
    status = "" if report.status == "done" else f" ({report.status}: not every arm finished)"
    out.print(_rich_table(f"{report.task} · run {report.run_id}{status}", header, rows, left=2, width=out.width))
    for warning in report.warnings:
        out.print(f"[yellow]![/yellow] {escape(warning)}", highlight=False)
    needs = report.data_needs
    if needs:
        curve = ", ".join(f"{p.examples}: {num(p.value)}" for p in needs.fine_tuning)
        shots = ", ".join(f"k={p.k}: {num(p.value)}" + (f" ({num(p.low)}–{num(p.high)})" if p.draws > 1 else "")
                          for p in needs.few_shot)
        if curve:
            out.print(f"Learning curve ({needs.metric} by train examples): {curve}")
        if shots:
            sets = max(p.draws for p in needs.few_shot)
            out.print(f"Few-shot ({needs.metric} by k" + (f"; mean, lowest–highest of {sets} example sets" if sets > 1
                                                          else "") + f"): {shots}", highlight=False)
        for line in needs.statements:
            out.print(line)
    for s in report.searches:
        out.print(f"{s.kind.capitalize()} search {s.arm}: {len(s.trials)} trials on {s.dev_items} dev items in "
                  f"{s.seconds:.0f} s; "
                  f"winner {s.metric} {num(s.dev_score)} on dev, {num(s.test_score)} on test", highlight=False)
        if s.overfit:
            out.print(f"  [yellow]![/yellow] {escape(s.overfit)}", highlight=False)
    for c in report.contributions:
        if c.steps:
            steps = " → ".join(f"{s['step']} ({s['model']}) {num(s['dev'])}" for s in c.steps)
            out.print(f"Alternation {c.hybrid}, dev {report.metric}: {escape(steps)}", highlight=False)
        if c.statement:
            out.print(escape(c.statement), highlight=False)
    if report.clean is not None:
        values = ", ".join(f"{name} {num(v.value)}" for name, v in report.clean.values.items())
        out.print(f"On {report.clean.basis}: {values}", highlight=False)
    if report.framework:
        out.print(_rich_table("The framework's table, measured on this task", ["", *report.framework.columns],
                              [[row.label, *row.cells] for row in report.framework.rows], left=99, wrap=True,
                              width=out.width))
    if report.plan_check:
        header, rows = plan_rows(report.plan_check)
        out.print(_rich_table("The plan against the run", header, rows, left=2, width=out.width))
    if report.stability is not None:
        header, rows = stability_rows(report)
        out.print(_rich_table(f"Across re-splits ({report.metric})", header, rows, left=1, width=out.width))
        out.print(f"Verdict on each split alone: {escape(seed_verdicts(report))}", highlight=False)
    d = report.decision
    if d:
        out.print(f"\n[bold]{headline(report)}[/bold]", highlight=False)
        out.print(f"Decided on {report.metric} ({report.metric_why}), over {d.basis}.", highlight=False)
        if d.stability:
            out.print(f"Stability: {escape(d.stability)}.", highlight=False)
        for i, reason in enumerate(d.reasons, start=1):
            out.print(f"  {i}. {escape(reason)}", highlight=False)
        if d.next_steps:
            out.print("Next steps:")
            for step in d.next_steps:
                out.print(f"  → {escape(step)}", highlight=False)
        for mistake in d.mistakes:
            out.print(f"  [yellow]![/yellow] {escape(mistake.text)}", highlight=False)
    declared = declared_lines(report)
    if declared:
        out.print("\n[bold]Assertions and judge[/bold]")
        for line in declared:
            out.print(escape(line), highlight=False)


def headline(report: RunReport) -> str:
    """The verdict in one line."""
    d = report.decision
    if d.recommended:
        return f"Recommendation: {d.recommended} ({d.kind})"
    if d.kind == "nothing meets the target":
        return f"No arm is good enough: nothing meets the target (closest: {d.closest})"
    if d.kind == "withheld":
        return "No recommendation: the test split leaked"
    return "No recommendation"


def print_comparison(a: RunReport, b: RunReport, out=None) -> None:
    header, rows = compare_rows(a, b)
    out = out or console()
    warning = not_comparable(a, b)
    if warning:
        out.print(warning, markup=False, highlight=False, soft_wrap=True)
    out.print(_rich_table(f"{a.task} vs {b.task}", header, rows, left=1, width=out.width))


def _rich_table(title: str, header: list[str], rows: list[list[str]], left: int, wrap: bool = False,
                width: int | None = None):
    """Columns before `left` are text (left-aligned; the first unwrapped unless `wrap`), the rest numbers.
    Where the console is wide enough, cells wrap only at spaces: no header or interval is cut short."""
    from rich.table import Table
    table = Table(title=title)
    widest = [max(len(word) for text in [name, *(row[i] for row in rows)] for word in text.split() or [""])
              for i, name in enumerate(header)]
    whole_words = width is None or sum(widest) + 3 * len(header) + 1 <= width  # else rich squeezes, all columns kept
    for i, name in enumerate(header):
        table.add_column(name, justify="left" if i < left else "right", no_wrap=i == 0 and not wrap,
                         min_width=widest[i] if whole_words else None)
    for row in rows:
        table.add_row(*row)
    return table
