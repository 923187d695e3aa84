"""Statistics pinned against values worked by hand or known from references."""

import math

import numpy as np
import pytest

from tunewise.stats import (compare_all, holm, mcnemar_exact, mcnemar_items_needed, paired_bootstrap_diff,
                            permutation_test)


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


def test_compare_all_uses_mcnemar_for_right_wrong_and_corrects():
    scores = {"x": [1.0] * 80 + [0.0] * 20, "y": [1.0] * 80 + [0.0] * 20, "z": [0.0] * 60 + [1.0] * 40}
    result = {(c.a, c.b): c for c in compare_all(scores, "accuracy")}
    assert result[("x", "y")].test == "mcnemar" and result[("x", "y")].p == 1.0
    assert not result[("x", "y")].significant
    xz = result[("x", "z")]
    assert xz.significant and xz.diff == pytest.approx(-0.4) and xz.p_holm >= xz.p
    cont = compare_all({"a": [0.1, 0.5, 0.9], "b": [0.2, 0.5, 0.8]}, "token_f1")
    assert cont[0].test == "permutation"
