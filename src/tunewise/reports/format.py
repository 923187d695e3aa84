"""How numbers read in every report: one formatter each for scores, money, shares and table cells."""

from __future__ import annotations

import math

from .model import MetricValue


def num(value: float | None, digits: int = 3) -> str:
    """A score or a measurement with fixed decimals; '–' when there is none."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:.{digits}f}"


def money(value: float | None, currency: str) -> str:
    """An amount with three significant digits: 0.00156 USD, 1.23e+03 USD never; 1230 USD."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if value == 0:
        return f"0 {currency}"
    text = f"{value:.3g}"
    if "e+" in text:  # large amounts read better whole
        text = f"{value:,.0f}"
    return f"{text} {currency}"


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
