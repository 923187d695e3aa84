"""Statistics pinned against values worked by hand or known from references."""

import math

import numpy as np
import pytest

from tunewise.analysis.stats import (
    compare_all,
    holm,
    items_needed_continuous,
    mcnemar_exact,
    mcnemar_items_needed,
    paired_bootstrap_diff,
    permutation_test,
    recomputed_permutation_test,
)
from tunewise.measure.metrics import METRICS


def test_mcnemar_exact_worked_by_hand():
    # 10 items: a right on 1-7, b right on 1-3 and 8-10; a alone right on 4-7 (4), b alone on 8-10 (3)
    a = [1, 1, 1, 1, 1, 1, 1, 0, 0, 0]
    b = [1, 1, 1, 0, 0, 0, 0, 1, 1, 1]
    p, n01, n10 = mcnemar_exact(a, b)
    assert (n01, n10) == (3, 4)
    # n = 7 discordant, k = 3: P(X <= 3 | Bin(7, 1/2)) = (1 + 7 + 21 + 35) / 128 = 0.5 -> two-sided 1.0
    assert p == 1.0
    # 1 vs 9 discordant: P(X <= 1 | Bin(10, 1/2)) = 11/1024 -> p = 22/1024
    a = [0] * 9 + [1]
    b = [1] * 9 + [0]
    p, n01, n10 = mcnemar_exact(a, b)
    assert (n01, n10) == (9, 1) and p == pytest.approx(22 / 1024)


def test_mcnemar_no_discordant_pairs():
    assert mcnemar_exact([1, 0, 1], [1, 0, 1]) == (1.0, 0, 0)


def test_holm_adjustment():
    # sorted p: 0.01 * 3 = 0.03, 0.02 * 2 = 0.04, 0.04 * 1 = 0.04 (monotone)
    assert holm([0.04, 0.01, 0.02]) == pytest.approx([0.04, 0.03, 0.04])
    assert holm([0.5, 0.6]) == pytest.approx([1.0, 1.0])


def test_paired_bootstrap_on_a_fixed_seed():
    a = [0.0] * 50 + [1.0] * 50
    b = [1.0] * 60 + [0.0] * 40   # b - a: +1 on items 0-49, -1 on items 60-99 -> mean 0.1
    diff, low, high = paired_bootstrap_diff(a, b, seed=0)
    assert diff == pytest.approx(0.1)
    again = paired_bootstrap_diff(a, b, seed=0)
    assert (low, high) == again[1:]
    # the difference's standard error is sqrt(0.9 - 0.01) / 10 = 0.0943: the interval is about ±0.185
    assert high - low == pytest.approx(2 * 1.96 * math.sqrt(0.89) / 10, abs=0.03)
    assert low < 0.1 < high


def test_permutation_test_detects_a_clear_shift_and_not_noise():
    rng = np.random.default_rng(1)
    a = rng.normal(0, 1, 60)
    assert permutation_test(list(a), list(a + 1.0), seed=0) < 0.001
    assert permutation_test(list(a), list(a + rng.normal(0, 0.01, 60)), seed=0) > 0.05


def test_items_needed_grows_for_small_differences():
    # 200 items, 20 discordant, 12 vs 8: Connor's formula
    d, delta = 20 / 200, 4 / 200
    expected = math.ceil((1.959964 * math.sqrt(d) + 0.841621 * math.sqrt(d - delta ** 2)) ** 2 / delta ** 2)
    assert mcnemar_items_needed(200, 12, 8) == expected
    assert mcnemar_items_needed(200, 12, 8) > mcnemar_items_needed(200, 18, 2)
    assert mcnemar_items_needed(200, 5, 5) is None


def test_items_needed_takes_any_alpha_and_power():
    # more confidence or more power needs more items; alpha 0.01 and power 0.9 were missing from a table once
    base = mcnemar_items_needed(200, 12, 8)
    assert mcnemar_items_needed(200, 12, 8, alpha=0.01) > base
    assert mcnemar_items_needed(200, 12, 8, power=0.9) > base
    diff = np.array([0.1, 0.3, -0.2, 0.4, 0.0, 0.2])
    assert items_needed_continuous(diff, alpha=0.01, power=0.9) > items_needed_continuous(diff)


def test_compare_all_uses_mcnemar_for_right_wrong_and_corrects():
    targets = ["y"] * 100
    preds = {"x": ["y"] * 80 + ["n"] * 20, "y": ["y"] * 80 + [None] * 20, "z": ["n"] * 60 + ["y"] * 40}
    result = {(c.a, c.b): c for c in compare_all(preds, targets, METRICS["accuracy"])}
    assert result[("x", "y")].test == "mcnemar" and result[("x", "y")].p == 1.0
    assert result[("x", "y")].description == "exact McNemar test on per-item right/wrong"
    assert not result[("x", "y")].significant
    xz = result[("x", "z")]
    assert xz.significant and xz.diff == pytest.approx(-0.4) and xz.p_holm >= xz.p
    assert (xz.n01, xz.n10, xz.n) == (20, 60, 100)
    cont = compare_all({"a": ["a b c", "x y", "p"], "b": ["a b", "x y", "p q"]}, ["a b c d", "x y", "p q r"],
                       METRICS["token_f1"])
    assert cont[0].test == "permutation" and "sign-flip" in cont[0].description
    assert set(cont[0].model_dump()) >= {"a", "b", "metric", "test", "description", "diff", "p", "p_holm"}


def test_macro_f1_and_accuracy_can_rank_two_arms_in_opposite_directions():
    # 90 items of a, 10 of b. Arm "always_a" says a every time: accuracy 0.90, macro-F1 (180/190 + 0) / 2.
    # Arm "balanced" gets 80 a and 8 b right (accuracy 0.88): a has tp 80 fp 2 fn 10 -> F1 160/172,
    # b has tp 8 fp 10 fn 2 -> F1 16/28. More accurate, always_a has the lower macro-F1.
    targets = ["a"] * 90 + ["b"] * 10
    preds = {"balanced": ["a"] * 80 + ["b"] * 10 + ["b"] * 8 + ["a"] * 2, "always_a": ["a"] * 100}
    [f1] = compare_all(preds, targets, METRICS["macro_f1"])
    [acc] = compare_all(preds, targets, METRICS["accuracy"])
    assert (f1.a, f1.b) == (acc.a, acc.b) == ("balanced", "always_a")
    assert acc.diff == pytest.approx(0.02) and acc.test == "mcnemar"
    assert f1.diff == pytest.approx((180 / 190) / 2 - (160 / 172 + 16 / 28) / 2)
    assert f1.test == "permutation (metric recomputed)"
    assert f1.description == "paired permutation test recomputing macro_f1"
    # 18 discordant items on a rare label: F1 of b swings widely under random swaps (a slow loop gives p 0.033)
    assert f1.p < 0.05 and f1.high < 0 and f1.n01 is None
    assert f1.low < f1.diff < f1.high


def test_recomputed_permutation_p_is_one_for_identical_predictions():
    targets = ["a", "b", "c"] * 20
    preds = ["a", "c", "c"] * 20
    [comp] = compare_all({"x": preds, "y": list(preds)}, targets, METRICS["macro_f1"])
    assert comp.p == 1.0 and comp.diff == 0.0 and comp.items_needed is None
    assert (comp.low, comp.high) == (0.0, 0.0)


def test_recomputed_permutation_p_is_small_for_a_large_difference():
    rng = np.random.default_rng(2)
    targets = list(rng.choice(["a", "b", "c"], 200))
    noisy = [t if r < 0.4 else str(rng.choice(["a", "b", "c"])) for t, r in zip(targets, rng.random(200))]
    [comp] = compare_all({"noisy": noisy, "good": list(targets)}, targets, METRICS["macro_f1"])
    assert comp.p < 0.001 and comp.diff > 0.3 and comp.significant
    assert comp.items_needed is not None and comp.items_needed < 200


def test_recomputed_permutation_test_matches_a_slow_loop_within_noise():
    # a loop of random swaps with the plain macro_f1 function, on its own random numbers
    from tunewise.measure.metrics import macro_f1
    rng = np.random.default_rng(4)
    targets = list(rng.choice(["a", "b", "c"], 60))
    a = [t if r < 0.6 else str(rng.choice(["a", "b", "c"])) for t, r in zip(targets, rng.random(60))]
    b = [t if r < 0.7 else str(rng.choice(["a", "b", "c"])) for t, r in zip(targets, rng.random(60))]
    observed = abs(macro_f1(b, targets) - macro_f1(a, targets))
    extreme = 0
    for swap in rng.random((2000, 60)) < 0.5:
        pa = [y if s else x for x, y, s in zip(a, b, swap)]
        pb = [x if s else y for x, y, s in zip(a, b, swap)]
        extreme += abs(macro_f1(pb, targets) - macro_f1(pa, targets)) >= observed - 1e-12
    slow = (extreme + 1) / 2001
    metric = METRICS["macro_f1"]
    labels = ["a", "b", "c"]
    fast = recomputed_permutation_test(metric, metric.item_stats(a, targets, labels),
                                       metric.item_stats(b, targets, labels), seed=0)
    assert 0.02 < slow < 0.9  # an informative case, not a floor or ceiling
    assert fast == pytest.approx(slow, abs=4 * math.sqrt(slow * (1 - slow) / 2000) + 0.005)


def test_recomputed_bootstrap_matches_a_loop_over_the_same_resamples():
    from tunewise.measure.metrics import macro_f1
    rng = np.random.default_rng(6)
    targets = list(rng.choice(["a", "b", "c"], 50))
    a = [t if r < 0.5 else None for t, r in zip(targets, rng.random(50))]
    b = [t if r < 0.8 else "b" for t, r in zip(targets, rng.random(50))]
    [comp] = compare_all({"a": a, "b": b}, targets, METRICS["macro_f1"], seed=3)
    diffs = []
    for row in np.random.default_rng(3).integers(0, 50, size=(2000, 50)):
        t = [targets[i] for i in row]
        diffs.append(macro_f1([b[i] for i in row], t) - macro_f1([a[i] for i in row], t))
    assert comp.low == pytest.approx(np.quantile(diffs, 0.025), abs=1e-12)
    assert comp.high == pytest.approx(np.quantile(diffs, 0.975), abs=1e-12)
    se = np.std(diffs, ddof=1)
    assert comp.items_needed == math.ceil(50 * ((1.959964 + 0.841621) * se / abs(comp.diff)) ** 2)


def test_compare_all_uses_one_label_set_for_a_pair():
    # only arm y ever predicts c: x's F1 leaves c out, y's counts it as a wrong label with F1 0
    targets = ["a", "b", "a", "b"]
    preds = {"x": ["a", "b", "a", "a"], "y": ["a", "b", "c", "b"]}
    [comp] = compare_all(preds, targets, METRICS["macro_f1"])
    # x: a tp=2 pred=3 true=2 -> 4/5; b tp=1 pred=1 true=2 -> 2/3. y: a 2/3, b 1, c 0
    assert comp.diff == pytest.approx((2 / 3 + 1 + 0) / 3 - (4 / 5 + 2 / 3) / 2)


def test_compare_all_is_deterministic_for_a_seed():
    rng = np.random.default_rng(7)
    targets = list(rng.choice(["a", "b", "c"], 100))
    preds = {name: [t if r < q else "a" for t, r in zip(targets, rng.random(100))]
             for name, q in [("p", 0.5), ("q", 0.6), ("r", 0.7)]}
    first = [c.model_dump() for c in compare_all(preds, targets, METRICS["macro_f1"], seed=1)]
    assert first == [c.model_dump() for c in compare_all(preds, targets, METRICS["macro_f1"], seed=1)]
    assert first != [c.model_dump() for c in compare_all(preds, targets, METRICS["macro_f1"], seed=2)]
