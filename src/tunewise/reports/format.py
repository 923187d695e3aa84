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
