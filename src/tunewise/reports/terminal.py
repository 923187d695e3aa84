"""The terminal summary: the comparison table, the learning curves, the recommendation (rich)."""

from __future__ import annotations

from .format import num
from .model import RunReport
from .table import compare_rows, table_rows


def console():
    from rich.console import Console
    out = Console()
    return out if out.is_terminal else Console(width=160)  # piped or logged: do not squeeze into 80 columns


def print_table(report: RunReport, out=None) -> None:
    out = out or console()
    header, rows = table_rows(report)
    out.print(_rich_table(f"{report.task} · run {report.run_id}", header, rows, left=2))
    needs = report.data_needs
    if needs:
        curve = ", ".join(f"{p.examples}: {num(p.value)}" for p in needs.fine_tuning)
        shots = ", ".join(f"k={p.k}: {num(p.value)}" for p in needs.few_shot)
        if curve:
            out.print(f"Learning curve ({needs.metric} by train examples): {curve}")
        if shots:
            out.print(f"Few-shot ({needs.metric} by k): {shots}")
        for line in needs.statements:
            out.print(line)
    d = report.decision
    if d and d.recommended:
        out.print(f"\n[bold]Recommendation: {d.recommended}[/bold] ({d.kind}; decided on {report.metric})")
        for i, reason in enumerate(d.reasons, start=1):
            out.print(f"  {i}. {reason}", highlight=False)
        for mistake in d.mistakes:
            out.print(f"  [yellow]![/yellow] {mistake}", highlight=False)


def print_comparison(a: RunReport, b: RunReport, out=None) -> None:
    header, rows = compare_rows(a, b)
    (out or console()).print(_rich_table(f"{a.task} vs {b.task}", header, rows, left=1))


def _rich_table(title: str, header: list[str], rows: list[list[str]], left: int):
    from rich.table import Table
    table = Table(title=title)
    for i, name in enumerate(header):
        table.add_column(name, justify="left" if i < left else "right", no_wrap=i < left)
    for row in rows:
        table.add_row(*row)
    return table
