import pytest

from tunewise.metrics import METRICS, bootstrap_interval, key_accuracy, macro_f1, rouge_l, token_f1
from tunewise.parsing import parse_json, parse_label


def test_accuracy_counts_none_as_wrong():
    assert METRICS["accuracy"].aggregate(["a", None, "b", "b"], ["a", "a", "b", "a"]) == 0.5


def test_macro_f1_worked_by_hand():
    # label a: tp=1 fp=0 fn=2 -> F1 = 2/(2+0+2) = 0.5; label b: tp=1 fp=2 fn=0 -> 2/(2+2+0) = 0.5
    assert macro_f1(["a", "b", "b", "b"], ["a", "a", "a", "b"]) == pytest.approx(0.5)
    assert macro_f1(["a", "b"], ["a", "b"]) == 1.0


def test_generation_metrics():
    assert token_f1("the cat sat", "a cat sat down") == pytest.approx(0.8)
    assert rouge_l("a b c d", "a c d") == pytest.approx(2 * (3 / 4) * 1 / (3 / 4 + 1))
    assert METRICS["exact_match"].item("The Cat.", "cat") == 1.0


def test_extraction_metrics():
    assert key_accuracy({"a": "1", "b": "x"}, {"a": "1", "b": "2"}) == 0.5
    assert key_accuracy(None, {"a": "1"}) == 0.0
    assert METRICS["json_valid"].item({"a": 1}, {}) == 1.0


def test_bootstrap_interval_is_seeded_and_brackets_the_value():
    preds = ["a"] * 70 + ["b"] * 30
    targets = ["a"] * 100
    low, high = bootstrap_interval(METRICS["accuracy"], preds, targets, seed=0)
    assert (low, high) == bootstrap_interval(METRICS["accuracy"], preds, targets, seed=0)
    assert low < 0.7 < high
    # a binomial with p=0.7 and n=100 has a standard error of 0.046: the 95% interval is about ±0.09
    assert high - low == pytest.approx(2 * 1.96 * 0.0458, abs=0.03)


def test_parse_label():
    labels = ["negative", "positive"]
    assert parse_label("Positive.", labels) == "positive"
    assert parse_label('The word "happy" is a positive word.', labels) == "positive"
    assert parse_label("not negative but positive", labels) == "negative"
    assert parse_label("I cannot tell", labels) is None
    assert parse_label("non-positive", labels) is None


def test_parse_json():
    assert parse_json('Sure: ```json\n{"a": 1}\n```') == {"a": 1}
    assert parse_json('x {bad} then {"k": "v"} end') == {"k": "v"}
    assert parse_json("none") is None
