import numpy as np
import pytest

from tunewise.measure.metrics import (
    METRICS,
    bootstrap_interval,
    key_accuracy,
    label_counts,
    macro_f1,
    resample_counts,
    rouge_l,
    token_f1,
)
from tunewise.task.parsing import parse_json, parse_label

ROUGE_PAIRS = [
    ("The cat sat.", "the cat sat"),
    ("the cat sat on the mat", "the cat sat"),
    ("a b c d", "a c d"),
    ("Hello, world!", "hello world"),
    ("HELLO WORLD", "hello there world"),
    ("the the the", "the"),
    ("the cat the cat", "cat the cat the"),
    ("", "something"),
    ("something", ""),
    ("", ""),
    ("...", "!!!"),
    ("It's a dog's life.", "its a dogs life"),
    ("e-mail me at foo@bar.com", "email me at foo bar com"),
    ("snake_case words", "snake case words"),
    ("price: $3.50", "the price is 3 50"),
    ("New York-based company", "a company based in new york"),
    ("one two three four five", "five four three two one"),
    ("x", "x"),
    ("x", "y"),
    ("A quick brown fox", "the quick brown fox jumps"),
    ("jumps over the lazy dog", "The quick brown fox jumps over the lazy dog."),
    ("Running runs ran", "run running runs"),
    ("(parenthetical) remark", "parenthetical remark"),
    ("tab\tseparated\nlines", "tab separated lines"),
    ("numbers 123 and 4567", "numbers 1234 and 567"),
    ("repeat repeat once", "once repeat repeat repeat"),
    ("Q: what? A: yes.", "q what a yes"),
    ("multiple   spaces   here", "multiple spaces here"),
    ("trailing punctuation!!!", "trailing punctuation"),
    ("mixed CASE Words", "Mixed case words"),
    ("a-b-c", "a b c"),
]


def test_accuracy_counts_none_as_wrong():
    assert METRICS["accuracy"].aggregate(["a", None, "b", "b"], ["a", "a", "b", "a"]) == 0.5


def test_macro_f1_worked_by_hand():
    # label a: tp=1 fp=0 fn=2 -> F1 = 2/(2+0+2) = 0.5; label b: tp=1 fp=2 fn=0 -> 2/(2+2+0) = 0.5
    assert macro_f1(["a", "b", "b", "b"], ["a", "a", "a", "b"]) == pytest.approx(0.5)
    assert macro_f1(["a", "b"], ["a", "b"]) == 1.0
    assert METRICS["macro_f1"].aggregate(["a", "b", "b", "b"], ["a", "a", "a", "b"]) == pytest.approx(0.5)


def test_macro_f1_matches_sklearn():
    f1_score = pytest.importorskip("sklearn.metrics").f1_score
    rng = np.random.default_rng(0)
    for _ in range(8):
        targets = list(rng.choice(["x", "y", "z"], 60))
        preds = [None if r < 0.1 else str(rng.choice(["x", "y", "z", "w"])) for r in rng.random(60)]
        # None predicts nothing: sklearn sees it as a label outside those scored
        labels = sorted(set(targets) | {p for p in preds if p is not None})
        expected = f1_score(targets, [p or "<none>" for p in preds], labels=labels, average="macro")
        assert macro_f1(preds, targets) == pytest.approx(expected, abs=1e-12)
        assert METRICS["macro_f1"].aggregate(preds, targets) == pytest.approx(expected, abs=1e-12)


def test_corpus_level_flags():
    assert METRICS["macro_f1"].corpus_level
    assert not any(m.corpus_level for name, m in METRICS.items() if name != "macro_f1")


def test_item_stats_of_a_mean_metric_are_the_item_scores():
    metric = METRICS["token_f1"]
    preds, targets = ["the cat sat", "dog", None], ["a cat sat down", "dog", "x"]
    stats = metric.item_stats(preds, targets)
    assert stats.shape == (3, 1)
    assert stats[:, 0] == pytest.approx([token_f1(p, t) for p, t in zip(preds, targets)])
    assert metric.from_stats(stats.sum(axis=0), 3) == pytest.approx(metric.aggregate(preds, targets))


def test_macro_f1_item_stats_sum_to_tp_predicted_and_true_counts():
    preds, targets = ["a", "b", None, "c", "b"], ["a", "a", "b", "b", "b"]
    stats = label_counts(preds, targets)  # labels a, b, c
    assert stats.shape == (5, 9)
    tp, predicted, true = stats.sum(axis=0).reshape(3, 3)
    assert list(tp) == [1, 1, 0] and list(predicted) == [1, 2, 1] and list(true) == [2, 3, 0]
    # a prediction outside the given labels predicts nothing; a label seen nowhere is left out of the mean
    stats = METRICS["macro_f1"].item_stats(preds, targets, labels=["a", "b", "z"])
    tp, predicted, true = stats.sum(axis=0).reshape(3, 3)
    assert list(predicted) == [1, 2, 0] and list(true) == [2, 3, 0]
    # a: 2*1/(1+2) = 2/3; b: 2*1/(2+3) = 2/5; z: unseen
    assert METRICS["macro_f1"].from_stats(stats.sum(axis=0), 5) == pytest.approx((2 / 3 + 2 / 5) / 2)


def test_from_stats_is_vectorized_over_leading_axes():
    metric = METRICS["macro_f1"]
    preds, targets = ["a", "b", "b", "b", "a", None], ["a", "a", "a", "b", "b", "a"]
    stats = metric.item_stats(preds, targets)
    subsets = [[0, 1, 2, 3], [1, 2, 3, 4, 5], [0, 3], [5]]
    masks = np.array([[i in s for i in range(6)] for s in subsets], dtype=float)
    sums = np.stack([masks @ stats, 2 * masks @ stats])  # shape (2, 4, d)
    values = metric.from_stats(sums, 6)
    assert values.shape == (2, 4)
    expected = [macro_f1([preds[i] for i in s], [targets[i] for i in s]) for s in subsets]
    assert values[0] == pytest.approx(expected) and values[1] == pytest.approx(expected)


def test_generation_metrics():
    assert token_f1("the cat sat", "a cat sat down") == pytest.approx(0.8)
    assert rouge_l("a b c d", "a c d") == pytest.approx(2 * (3 / 4) * 1 / (3 / 4 + 1))
    assert METRICS["exact_match"].item("The Cat.", "cat") == 1.0


def test_rouge_l_ignores_punctuation_and_case_and_keeps_accented_words():
    assert rouge_l("The cat sat.", "the cat sat") == 1.0
    assert rouge_l("Café au lait", "cafe au lait") == pytest.approx(2 / 3)
    assert rouge_l("CAFÉ!", "café") == 1.0
    assert rouge_l(None, "x") == 0.0


def test_rouge_l_matches_rouge_score():
    rouge_scorer = pytest.importorskip("rouge_score.rouge_scorer")
    scorer = rouge_scorer.RougeScorer(["rougeL"])
    for pred, target in ROUGE_PAIRS:
        expected = scorer.score(target, pred)["rougeL"].fmeasure
        assert rouge_l(pred, target) == pytest.approx(expected, abs=1e-12), (pred, target)


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


def test_resample_counts_count_the_drawn_indices():
    idx = np.random.default_rng(3).integers(0, 7, size=(5, 7))
    counts = resample_counts(7, 5, seed=3)
    assert counts.shape == (5, 7) and (counts.sum(axis=1) == 7).all()
    for row, drawn in zip(counts, idx):
        assert list(row) == [list(drawn).count(i) for i in range(7)]


def test_bootstrap_interval_of_macro_f1_matches_a_loop_over_resamples():
    f1_score = pytest.importorskip("sklearn.metrics").f1_score
    rng = np.random.default_rng(1)
    targets = list(rng.choice(["neg", "neu", "pos"], 80, p=[0.5, 0.3, 0.2]))
    preds = [t if r < 0.6 else (None if r < 0.7 else str(rng.choice(["neg", "neu", "pos"])))
             for t, r in zip(targets, rng.random(80))]
    low, high = bootstrap_interval(METRICS["macro_f1"], preds, targets, n=200, seed=5)
    # the same resamples, scored one by one with sklearn over the labels present in each
    values = []
    for row in np.random.default_rng(5).integers(0, 80, size=(200, 80)):
        t, p = [targets[i] for i in row], [preds[i] for i in row]
        labels = sorted(set(t) | {x for x in p if x is not None})
        values.append(f1_score(t, [x or "<none>" for x in p], labels=labels, average="macro"))
    assert low == pytest.approx(np.quantile(values, 0.025), abs=1e-12)
    assert high == pytest.approx(np.quantile(values, 0.975), abs=1e-12)
    assert low < macro_f1(preds, targets) < high


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
