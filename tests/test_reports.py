"""The renderers' formatting: one money format, Markdown tables that survive any cell text."""

from tunewise.analysis.model import MetricValue
from tunewise.reports.format import md_cell, metric_cell, money, num
from tunewise.reports.markdown import _table


def test_money_reads_the_same_everywhere():
    assert money(0.0015625, "USD") == "0.00156 USD"
    assert money(0, "EUR") == "0 EUR"
    assert money(1234.4, "USD") == "1,234 USD"  # whole units, never 1.23e+03
    assert money(None, "USD") == "–"


def test_numbers_and_intervals():
    assert num(float("nan")) == "–" and num(0.69512) == "0.695"
    assert metric_cell(MetricValue(value=0.7, low=0.6, high=0.8)) == "0.700 (0.600–0.800)"


def test_a_pipe_or_a_line_break_in_a_cell_keeps_the_markdown_table_whole():
    assert md_cell("a|b") == "a\\|b" and md_cell("one\ntwo") == "one<br>two"
    lines = _table(["input", "answer"], [["x | y", "multi\nline"]])
    assert len(lines) == 3
    # a row has exactly one more unescaped pipe than it has cells
    row = lines[2].replace("\\|", "")
    assert row.count("|") == 3
