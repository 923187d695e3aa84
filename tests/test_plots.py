"""The report's charts: matplotlib drawn to inline SVG, deterministic, with round and bounded ticks."""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET

import matplotlib

from tunewise.reports.plots import line_chart, pareto_front, scatter

SVG = "{http://www.w3.org/2000/svg}"
POINTS = [(0.0, 0.62, "zero_shot"), (0.01, 0.7, "structured"), (0.03, 0.81, "few_shot"), (0.012, 0.9, "lora"),
          (0.012, 0.88, "lora+structured")]
CURVE = {"fine-tuning": [(16, 0.5), (64, 0.7), (256, 0.85), (1000, 1.0)],
         "best prompt (few_shot)": [(16, 0.81), (1000, 0.81)]}


def _scatter(points=POINTS) -> str:
    return scatter(points, pareto_front(points), x_label="cost per 1,000 requests (USD)", y_label="accuracy",
                   highlight="lora", y_range=(0, 1))


def _curve(**kw) -> str:
    return line_chart(CURVE, x_label="train examples", y_label="accuracy", log_x=True, **kw)


def _texts(svg: str) -> list[str]:
    return ["".join(t.itertext()).strip() for t in ET.fromstring(svg).iter(f"{SVG}text")]


def _ticks(svg: str, axis: str) -> list[str]:
    """The major tick labels of one axis ("x" or "y"), in the order drawn."""
    groups = [g for g in ET.fromstring(svg).iter(f"{SVG}g") if g.get("id", "").startswith(f"{axis}tick_")]
    return ["".join(t.itertext()).strip() for g in groups for t in g.iter(f"{SVG}text")]


def _value(label: str) -> float:
    return float(label.replace("\u2212", "-"))  # matplotlib writes a real minus sign


def test_the_svg_is_inline_xml_and_the_same_on_every_call():
    for render in (_scatter, _curve):
        svg = render()
        assert svg.startswith("<svg") and svg.endswith("</svg>")
        assert "<?xml" not in svg and "<!DOCTYPE" not in svg and "dc:date" not in svg
        assert ET.fromstring(svg).tag == f"{SVG}svg"
        assert render() == svg


def test_text_stays_text_at_about_560_by_320_px():
    root = ET.fromstring(_scatter())
    assert (root.get("width"), root.get("height")) == ("420pt", "240pt")  # 560 x 320 CSS px
    assert "accuracy" in _texts(_scatter())


def test_a_log_x_curve_labels_every_train_size():
    assert _ticks(_curve(), "x") == ["16", "64", "256", "1000"]


def test_explicit_x_ticks_replace_the_automatic_ones():
    svg = line_chart({"few-shot": [(1, 0.6), (2, 0.65), (4, 0.7), (8, 0.72)]}, x_label="k", y_label="accuracy",
                     x_ticks=[1, 2, 4, 8])
    assert _ticks(svg, "x") == ["1", "2", "4", "8"]


def test_a_bounded_metric_axis_stays_within_0_and_1():
    for svg in (_curve(y_range=(0, 1)), _scatter()):
        values = [_value(t) for t in _ticks(svg, "y")]
        assert values[0] == 0 and values[-1] == 1 and all(0 <= v <= 1 for v in values)


def test_ticks_are_round_and_counts_never_negative():
    losses = {"lora": [(step, 3 / (1 + step / 7)) for step in range(1, 131)]}
    svg = line_chart(losses, x_label="optimizer step", y_label="loss")
    for axis in ("x", "y"):
        values = [_value(t) for t in _ticks(svg, axis)]
        steps = {round(b - a, 9) for a, b in zip(values, values[1:])}
        assert len(steps) == 1 and min(values) >= 0
        step = steps.pop()
        assert round(step / 10 ** math.floor(math.log10(step)), 6) in (1, 2, 2.5, 5)
    assert all(_value(t) >= 0 for t in _ticks(_scatter(), "x"))  # a free arm costs 0: no negative cost axis


def test_the_scatter_names_every_point_and_has_a_legend():
    texts = _texts(_scatter())
    for _, _, name in POINTS:
        assert name in texts
    assert "Pareto front" in texts and "recommended" in texts


def test_no_points_no_chart():
    assert scatter([], [], x_label="cost", y_label="accuracy") == ""
    assert line_chart({}, x_label="n", y_label="accuracy") == ""
    assert line_chart({"lora": []}, x_label="n", y_label="accuracy") == ""


def test_drawing_leaves_matplotlib_settings_alone():
    before = dict(matplotlib.rcParams)
    _scatter()
    _curve()
    assert dict(matplotlib.rcParams) == before


def test_pareto_front_keeps_what_nothing_beats_on_both_cost_and_quality():
    assert pareto_front([]) == []
    assert pareto_front([(1.0, 0.5, "only")]) == ["only"]
    points = [(0.0, 0.6, "cheap"), (1.0, 0.9, "good"), (1.0, 0.8, "worse"), (2.0, 0.9, "pricier"),
              (3.0, 0.95, "best")]
    assert pareto_front(points) == ["cheap", "good", "best"]
    assert pareto_front([(1.0, 0.5, "a"), (1.0, 0.5, "b")]) == ["a", "b"]  # a tie beats neither
