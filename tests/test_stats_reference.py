"""The statistics against reference implementations: scipy, statsmodels and scikit-learn."""

import math

import numpy as np
import pytest

from tunewise.analysis.stats import compare_all, holm, items_needed_continuous, mcnemar_exact, mcnemar_items_needed
from tunewise.measure.metrics import METRICS

ALPHAS_AND_POWERS = [(a, p) for a in (0.01, 0.05, 0.1, 0.2) for p in (0.5, 0.8, 0.9, 0.95)]


def test_mcnemar_items_needed_matches_connors_formula_with_scipy_quantiles():
    norm = pytest.importorskip("scipy.stats").norm
    for alpha, power in ALPHAS_AND_POWERS:
        for n, n01, n10 in [(200, 12, 8), (100, 30, 10), (500, 3, 9)]:
            d, delta = (n01 + n10) / n, abs(n01 - n10) / n
            z_a, z_b = norm.ppf(1 - alpha / 2), norm.ppf(power)
            expected = math.ceil((z_a * math.sqrt(d) + z_b * math.sqrt(d - delta ** 2)) ** 2 / delta ** 2)
            assert mcnemar_items_needed(n, n01, n10, alpha, power) == expected, (alpha, power, n01, n10)


def test_items_needed_continuous_matches_scipy_quantiles():
    norm = pytest.importorskip("scipy.stats").norm
    diff = np.random.default_rng(0).normal(0.05, 0.3, 80)
    mean, sd = diff.mean(), diff.std(ddof=1)
    for alpha, power in ALPHAS_AND_POWERS:
        expected = math.ceil(((norm.ppf(1 - alpha / 2) + norm.ppf(power)) * sd / abs(mean)) ** 2)
        assert items_needed_continuous(diff, alpha, power) == expected, (alpha, power)


@pytest.mark.parametrize("table", [[[10, 3], [9, 5]], [[5, 1], [9, 4]], [[20, 12], [8, 30]], [[0, 25], [3, 0]],
                                   [[7, 0], [0, 7]], [[1, 50], [50, 1]], [[3, 1], [0, 2]], [[40, 17], [4, 9]]])
def test_mcnemar_exact_matches_statsmodels(table):
    mcnemar = pytest.importorskip("statsmodels.stats.contingency_tables").mcnemar
    # rows: a right / wrong; columns: b right / wrong
    (both, a_only), (b_only, neither) = table
    a = [1] * both + [1] * a_only + [0] * b_only + [0] * neither
    b = [1] * both + [0] * a_only + [1] * b_only + [0] * neither
    p, n01, n10 = mcnemar_exact(a, b)
    assert (n01, n10) == (b_only, a_only)
    assert p == pytest.approx(mcnemar(np.array(table), exact=True).pvalue, rel=1e-12)


def test_holm_matches_statsmodels():
    multipletests = pytest.importorskip("statsmodels.stats.multitest").multipletests
    rng = np.random.default_rng(0)
    cases = [[0.04, 0.01, 0.02], [0.5, 0.6], [0.01, 0.01, 0.2, 1.0, 0.03], list(rng.random(12)),
             list(rng.random(45) ** 4), [0.0, 1.0]]
    for p in cases:
        assert holm(p) == pytest.approx(list(multipletests(p, method="holm")[1]), abs=1e-12)


def test_macro_f1_comparison_diff_matches_sklearn():
    f1_score = pytest.importorskip("sklearn.metrics").f1_score
    targets = ["a"] * 90 + ["b"] * 10
    balanced, always_a = ["a"] * 80 + ["b"] * 10 + ["b"] * 8 + ["a"] * 2, ["a"] * 100
    [comp] = compare_all({"balanced": balanced, "always_a": always_a}, targets, METRICS["macro_f1"])
    expected = f1_score(targets, always_a, average="macro", labels=["a", "b"]) - f1_score(
        targets, balanced, average="macro")
    assert comp.diff == pytest.approx(expected, abs=1e-12) and comp.diff < 0
    assert comp.test == "permutation (metric recomputed)"
    [acc] = compare_all({"balanced": balanced, "always_a": always_a}, targets, METRICS["accuracy"])
    assert acc.diff > 0


def test_macro_f1_comparisons_match_sklearn_on_random_arms():
    f1_score = pytest.importorskip("sklearn.metrics").f1_score
    rng = np.random.default_rng(1)
    targets = list(rng.choice(["x", "y", "z"], 120))
    preds = {f"arm{i}": [str(rng.choice(["x", "y", "z", "w"])) if r < 0.5 - 0.1 * i else t
                         for t, r in zip(targets, rng.random(120))] for i in range(4)}
    score = {name: f1_score(targets, p, average="macro") for name, p in preds.items()}
    for comp in compare_all(preds, targets, METRICS["macro_f1"]):
        assert comp.diff == pytest.approx(score[comp.b] - score[comp.a], abs=1e-12)
