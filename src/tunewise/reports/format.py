"""How numbers read in every report: one formatter each for scores, money, shares and table cells."""

from __future__ import annotations

import math

from ..analysis.costs import money  # noqa: F401  amounts are formatted where costs are computed
from ..analysis.model import MetricValue


def num(value: float | None, digits: int = 3) -> str:
    """A score or a measurement with fixed decimals; '–' when there is none."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:.{digits}f}"


def pct(value: float | None) -> str:
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.0%}"


def metric_cell(m: MetricValue | None) -> str:
    """A metric with its 95% interval: 0.695 (0.630–0.760)."""
    if m is None:
        return "–"
    return f"{num(m.value)} ({num(m.low)}–{num(m.high)})"


def md_cell(text: object) -> str:
    """Text safe inside a Markdown table cell: pipes escaped, line breaks as <br>."""
    return str(text).replace("\\", "\\\\").replace("|", "\\|").replace("\r\n", "<br>").replace("\n", "<br>")


def plan_rows(check) -> tuple[list[str], list[list[str]]]:
    """The plan against the run: each unit's estimated and actual seconds, and the error."""
    rows = [[r.unit, r.parts, f"{r.estimated_s:,.0f}", "–" if r.actual_s is None else f"{r.actual_s:,.0f}",
             _error(r.estimated_s, r.actual_s)] for r in check.rows]
    rows.append(["total", "", f"{check.estimated_s:,.0f}", f"{check.actual_s:,.0f}",
                 "–" if check.error is None else f"{check.error:+.0%}"])
    return ["unit", "parts", "estimated s", "actual s", "error"], rows


def _error(estimated: float, actual: float | None) -> str:
    if actual is None or estimated <= 0:
        return "–"
    return f"{(actual - estimated) / estimated:+.0%}"
