"""Small inline-SVG charts, so an HTML report needs no network and no plotting library."""

from __future__ import annotations

import math
from html import escape

W, H = 560, 320
LEFT, RIGHT, TOP, BOTTOM = 64, 190, 20, 48
COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#7f7f7f"]


def _scale(lo: float, hi: float, a: float, b: float, log: bool = False):
    if log:
        lo, hi = math.log10(lo), math.log10(hi)
    span = (hi - lo) or 1.0

    def f(v: float) -> float:
        v = math.log10(v) if log else v
        return a + (v - lo) / span * (b - a)
    return f


def _ticks(lo: float, hi: float, log: bool) -> list[float]:
    if log:
        return [10 ** e for e in range(math.floor(math.log10(lo)), math.ceil(math.log10(hi)) + 1)]
    step = (hi - lo) / 4 or 1.0
    return [lo + i * step for i in range(5)]


def _label(v: float) -> str:
    if v == 0:
        return "0"
    if abs(v) >= 1000 or abs(v) < 0.01:
        return f"{v:.2g}"
    return f"{v:.3g}"


def _frame(title: str, x_label: str, y_label: str, xs: list[float], ys: list[float], log_x: bool):
    x_lo, x_hi = min(xs), max(xs)
    y_lo, y_hi = min(ys), max(ys)
    if log_x:
        x_lo, x_hi = x_lo / 1.5, x_hi * 1.5
    else:
        pad = (x_hi - x_lo) * 0.08 or abs(x_hi) * 0.1 or 1.0
        # counts, costs and losses are never negative: padding must not suggest they could be
        x_lo, x_hi = (max(0.0, x_lo - pad) if x_lo >= 0 else x_lo - pad), x_hi + pad
    pad = (y_hi - y_lo) * 0.1 or 0.05
    y_lo, y_hi = (max(0.0, y_lo - pad) if y_lo >= 0 else y_lo - pad), y_hi + pad
    fx = _scale(x_lo, x_hi, LEFT, W - RIGHT, log_x)
    fy = _scale(y_lo, y_hi, H - BOTTOM, TOP)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {W} {H}" width="{W}" height="{H}" '
             f'role="img" aria-label="{escape(title)}"><title>{escape(title)}</title>',
             f'<rect x="{LEFT}" y="{TOP}" width="{W - LEFT - RIGHT}" height="{H - TOP - BOTTOM}" '
             f'fill="#fff" stroke="#bbb"/>']
    for t in _ticks(x_lo, x_hi, log_x):
        if x_lo <= t <= x_hi:
            parts.append(f'<text x="{fx(t):.1f}" y="{H - BOTTOM + 16}" font-size="11" text-anchor="middle">'
                         f'{_label(t)}</text>')
    for t in _ticks(y_lo, y_hi, False):
        parts.append(f'<line x1="{LEFT}" x2="{W - RIGHT}" y1="{fy(t):.1f}" y2="{fy(t):.1f}" stroke="#eee"/>'
                     f'<text x="{LEFT - 6}" y="{fy(t) + 4:.1f}" font-size="11" text-anchor="end">{_label(t)}</text>')
    parts.append(f'<text x="{(LEFT + W - RIGHT) / 2}" y="{H - 10}" font-size="12" text-anchor="middle">'
                 f'{escape(x_label)}</text>')
    parts.append(f'<text x="14" y="{(TOP + H - BOTTOM) / 2}" font-size="12" text-anchor="middle" '
                 f'transform="rotate(-90 14 {(TOP + H - BOTTOM) / 2})">{escape(y_label)}</text>')
    return parts, fx, fy


def line_chart(series: dict[str, list[tuple[float, float]]], title: str, x_label: str, y_label: str,
               log_x: bool = False) -> str:
    points = [p for s in series.values() for p in s]
    if not points:
        return ""
    parts, fx, fy = _frame(title, x_label, y_label, [p[0] for p in points], [p[1] for p in points], log_x)
    for i, (name, pts) in enumerate(series.items()):
        color = COLORS[i % len(COLORS)]
        pts = sorted(pts)
        path = " ".join(f"{fx(x):.1f},{fy(y):.1f}" for x, y in pts)
        parts.append(f'<polyline points="{path}" fill="none" stroke="{color}" stroke-width="2"/>')
        if len(pts) <= 40:
            parts += [f'<circle cx="{fx(x):.1f}" cy="{fy(y):.1f}" r="3" fill="{color}"/>' for x, y in pts]
        label = name if len(name) <= 28 else name[:27] + "…"
        parts.append(f'<text x="{W - RIGHT + 8}" y="{TOP + 14 + 16 * i}" font-size="11" fill="{color}">'
                     f'{escape(label)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def scatter(points: list[tuple[float, float, str]], front: list[str], title: str, x_label: str,
            y_label: str, highlight: str | None = None) -> str:
    """Points (x, y, name); the names on the Pareto front are joined by a line."""
    if not points:
        return ""
    parts, fx, fy = _frame(title, x_label, y_label, [p[0] for p in points], [p[1] for p in points], False)
    on_front = sorted((p for p in points if p[2] in front), key=lambda p: p[0])
    if len(on_front) > 1:
        path = " ".join(f"{fx(x):.1f},{fy(y):.1f}" for x, y, _ in on_front)
        parts.append(f'<polyline points="{path}" fill="none" stroke="#2ca02c" stroke-dasharray="4 3"/>')
    for i, (x, y, name) in enumerate(points):
        color = "#d62728" if name == highlight else ("#2ca02c" if name in front else "#1f77b4")
        parts.append(f'<circle cx="{fx(x):.1f}" cy="{fy(y):.1f}" r="{6 if name == highlight else 4}" '
                     f'fill="{color}"><title>{escape(name)}</title></circle>')
        parts.append(f'<text x="{fx(x) + 7:.1f}" y="{fy(y) - 5:.1f}" font-size="10">{escape(name)}</text>')
    parts.append(f'<text x="{W - RIGHT + 8}" y="{TOP + 14}" font-size="11" fill="#2ca02c">Pareto front</text>')
    parts.append(f'<text x="{W - RIGHT + 8}" y="{TOP + 30}" font-size="11" fill="#d62728">recommended</text>')
    parts.append("</svg>")
    return "".join(parts)


def pareto_front(points: list[tuple[float, float, str]]) -> list[str]:
    """Names no other point beats on both lower cost (x) and higher quality (y)."""
    front = []
    for x, y, name in points:
        dominated = any((x2 <= x and y2 >= y) and (x2 < x or y2 > y) for x2, y2, _ in points)
        if not dominated:
            front.append(name)
    return front
