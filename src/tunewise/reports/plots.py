"""Charts for the HTML report: matplotlib drawn to inline SVG, so the report stays offline and self-contained.

Matplotlib is imported inside the functions: it is a heavy import and the CLI imports this package.
The output is deterministic byte for byte (fixed hash salt, no date), and text stays text in the SVG.
"""

from __future__ import annotations

import io

# Size in inches at the CSS 96 px per inch: the SVG says 420pt x 240pt, which a browser shows as 560 x 320 px.
SIZE = (560 / 96, 320 / 96)
STYLE = {
    "svg.fonttype": "none",       # text as <text>, not glyph paths: small and searchable
    "svg.hashsalt": "tunewise",   # element ids from a fixed salt instead of a random one
    "font.size": 8,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.color": "#e5e5e5",
    "axes.axisbelow": True,
}
NICE_STEPS = [1, 2, 2.5, 5, 10]
BLUE, RED, GREEN = "#1f77b4", "#d62728", "#2ca02c"
# Label positions around a point (offset in points, alignment), tried in turn so neighbours differ.
LABEL_OFFSETS = [((5, 4), "left"), ((5, -10), "left"), ((-5, 4), "right"), ((-5, -10), "right")]


def pareto_front(points: list[tuple[float, float, str]]) -> list[str]:
    """Names no other point beats on both lower cost (x) and higher quality (y)."""
    front = []
    for x, y, name in points:
        dominated = any((x2 <= x and y2 >= y) and (x2 < x or y2 > y) for x2, y2, _ in points)
        if not dominated:
            front.append(name)
    return front


def scatter(points: list[tuple[float, float, str]], front: list[str], *, x_label: str, y_label: str,
            highlight: str | None = None, y_range: tuple[float, float] | None = None) -> str:
    """Quality (y) against cost (x) of named points; the front joined by a dashed line, `highlight` in red."""
    if not points:
        return ""
    import matplotlib.style
    with matplotlib.style.context(["default", STYLE]):
        fig, ax = _figure()
        others = [p for p in points if p[2] not in front and p[2] != highlight]
        ax.scatter([p[0] for p in others], [p[1] for p in others], s=18, color=BLUE, clip_on=False, zorder=2)
        on_front = sorted(p for p in points if p[2] in front)
        ax.plot([p[0] for p in on_front], [p[1] for p in on_front], "--o", color=GREEN, markersize=4.5,
                clip_on=False, zorder=2, label="Pareto front")
        chosen = [p for p in points if p[2] == highlight]
        if chosen:
            ax.scatter([chosen[0][0]], [chosen[0][1]], s=70, color=RED, clip_on=False, zorder=3, label="recommended")
        for (x, y, name), (offset, align) in zip(points, _label_offsets(points, y_range)):
            ax.annotate(name, (x, y), xytext=offset, textcoords="offset points", ha=align, fontsize=7)
        ax.legend(loc="best", fontsize=7)
        _finish(ax, x_label, y_label, [p[0] for p in points], [p[1] for p in points], y_range)
        return _svg(fig)


def line_chart(series: dict[str, list[tuple[float, float]]], *, x_label: str, y_label: str, log_x: bool = False,
               y_range: tuple[float, float] | None = None, x_ticks: list[float] | None = None) -> str:
    """One line per named series of (x, y); with `log_x` the data's own x values are the ticks."""
    points = [p for pts in series.values() for p in pts]
    if not points:
        return ""
    import matplotlib.style
    from matplotlib.ticker import NullLocator
    with matplotlib.style.context(["default", STYLE]):
        fig, ax = _figure()
        for name, pts in series.items():
            pts = sorted(pts)
            label = name if len(name) <= 28 else name[:27] + "…"
            ax.plot([x for x, _ in pts], [y for _, y in pts], marker="o" if len(pts) <= 40 else None,
                    markersize=3.5, linewidth=1.6, clip_on=False, label=label)
        if log_x:
            ax.set_xscale("log")
            x_ticks = x_ticks or sorted({x for x, _ in points})
        if x_ticks:
            ax.set_xticks(x_ticks, labels=[_number(t) for t in x_ticks])
            ax.xaxis.set_minor_locator(NullLocator())
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), frameon=False, fontsize=7)
        _finish(ax, x_label, y_label, [x for x, _ in points], [y for _, y in points], y_range,
                round_x=not (log_x or x_ticks))
        return _svg(fig)


def _figure():
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    fig = Figure(figsize=SIZE, layout="constrained")
    FigureCanvasAgg(fig)  # text is measured with Agg; no pyplot, so no global figure state
    return fig, fig.add_subplot()


def _finish(ax, x_label: str, y_label: str, xs: list[float], ys: list[float],
            y_range: tuple[float, float] | None, round_x: bool = True) -> None:
    """Axis labels; round tick values; y clamped to y_range; no negative axis for non-negative data."""
    from matplotlib.ticker import MaxNLocator
    ax.set_xlabel(x_label)
    ax.set_ylabel(y_label)
    ax.yaxis.set_major_locator(MaxNLocator(nbins=6, steps=NICE_STEPS))
    if round_x:
        ax.xaxis.set_major_locator(MaxNLocator(nbins=7, steps=NICE_STEPS))
    if y_range:
        ax.set_ylim(*y_range)
    elif min(ys) >= 0 and ax.get_ylim()[0] < 0:
        ax.set_ylim(bottom=0)
    if min(xs) >= 0 and ax.get_xlim()[0] < 0:
        ax.set_xlim(left=0)


def _label_offsets(points: list[tuple[float, float, str]], y_range: tuple[float, float] | None):
    """An offset per point's label: a point near an already labelled one puts its label on another side."""
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    span_x = (max(xs) - min(xs)) or 1.0
    span_y = (y_range[1] - y_range[0]) if y_range else (max(ys) - min(ys)) or 1.0
    placed: list[tuple[float, float, int]] = []
    for x, y, _ in points:
        taken = {k for px, py, k in placed if abs(px - x) < 0.2 * span_x and abs(py - y) < 0.08 * span_y}
        order = [0, 1, 2, 3] if x - min(xs) < 0.7 * span_x else [2, 3, 0, 1]  # near the right edge: label left
        free = [k for k in order if k not in taken]
        placed.append((x, y, free[0] if free else len(placed) % len(LABEL_OFFSETS)))
    return [LABEL_OFFSETS[k] for _, _, k in placed]


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def _svg(fig) -> str:
    """The figure as an <svg> element, without the XML prolog and DOCTYPE, and without a date."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="svg", metadata={"Date": None})
    text = buffer.getvalue().decode("utf-8")
    return text[text.index("<svg"):].strip()
