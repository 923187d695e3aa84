"""Paired comparisons of arms on the same test items: tests, intervals, Holm correction, sample sizes."""

from __future__ import annotations

import math
from itertools import combinations
from statistics import NormalDist

import numpy as np

from ..measure.metrics import Metric, label_set, resample_counts
from .model import Comparison


def normal_quantile(q: float) -> float:
    return NormalDist().inv_cdf(q)


def mcnemar_exact(a: list[float], b: list[float]) -> tuple[float, int, int]:
    """Exact two-sided McNemar test on paired right/wrong outcomes.

    Returns (p, n01, n10): n01 items only b got right, n10 items only a got right.
    """
    n01 = sum(1 for x, y in zip(a, b) if not x and y)
    n10 = sum(1 for x, y in zip(a, b) if x and not y)
    n = n01 + n10
    if n == 0:
        return 1.0, 0, 0
    k = min(n01, n10)
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2 ** n
    return min(1.0, 2 * tail), n01, n10


def permutation_test(a: list[float], b: list[float], *, n: int = 10_000, seed: int = 0) -> float:
    """Paired sign-flip permutation test of the mean difference; two-sided p."""
    diff = np.asarray(b, float) - np.asarray(a, float)
    observed = abs(diff.mean())
    if not diff.any():
        return 1.0
    signs = np.random.default_rng(seed).choice([-1.0, 1.0], size=(n, len(diff)))
    extreme = np.sum(np.abs((signs * diff).mean(axis=1)) >= observed - 1e-12)
    return float((extreme + 1) / (n + 1))


def recomputed_permutation_test(metric: Metric, sa: np.ndarray, sb: np.ndarray, *, n: int = 10_000,
                                seed: int = 0) -> float:
    """Two-sided p of metric(b) - metric(a): swap each item's two predictions at random and recompute both.

    sa, sb are the arms' item stats (metric.item_stats) over one label set.
    """
    n_items = len(sa)
    total_a, total_b = sa.sum(axis=0), sb.sum(axis=0)
    observed = abs(metric.from_stats(total_b, n_items) - metric.from_stats(total_a, n_items))
    swap = sb - sa
    swap = swap[swap.any(axis=1)]  # swapping two equal predictions changes nothing
    # a fair coin per (permutation, item): the bits of random bytes, much faster than drawing floats
    coins = np.random.default_rng(seed).integers(0, 256, size=(n, (len(swap) + 7) // 8), dtype=np.uint8)
    masks = np.unpackbits(coins, axis=1, count=len(swap)).astype(float)
    moved = masks @ swap  # what the swapped items move from b's sums to a's
    diffs = metric.from_stats(total_b - moved, n_items) - metric.from_stats(total_a + moved, n_items)
    extreme = np.sum(np.abs(diffs) >= observed - 1e-12)
    return float((extreme + 1) / (n + 1))


def paired_bootstrap_diff(a: list[float], b: list[float], *, n: int = 2000, seed: int = 0,
                          level: float = 0.95) -> tuple[float, float, float]:
    """Mean of b - a with a percentile bootstrap interval, resampling items (pairs kept together)."""
    diff = np.asarray(b, float) - np.asarray(a, float)
    if len(diff) == 0:
        return float("nan"), float("nan"), float("nan")
    idx = np.random.default_rng(seed).integers(0, len(diff), size=(n, len(diff)))
    means = diff[idx].mean(axis=1)
    alpha = (1 - level) / 2
    return float(diff.mean()), float(np.quantile(means, alpha)), float(np.quantile(means, 1 - alpha))


def holm(pvalues: list[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values, in the input order."""
    order = sorted(range(len(pvalues)), key=lambda i: pvalues[i])
    adjusted = [0.0] * len(pvalues)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(pvalues) - rank) * pvalues[i]))
        adjusted[i] = running
    return adjusted


def mcnemar_items_needed(n: int, n01: int, n10: int, alpha: float = 0.05, power: float = 0.8) -> int | None:
    """Items needed to detect the observed paired difference (Connor 1987), or None if there is none."""
    if n == 0 or n01 == n10:
        return None
    discordant = (n01 + n10) / n
    delta = abs(n01 - n10) / n
    z_a, z_b = normal_quantile(1 - alpha / 2), normal_quantile(power)
    needed = (z_a * math.sqrt(discordant) + z_b * math.sqrt(discordant - delta ** 2)) ** 2 / delta ** 2
    return math.ceil(needed)


def items_needed_continuous(diff: np.ndarray, alpha: float = 0.05, power: float = 0.8) -> int | None:
    """Items for a paired t-type test to detect the observed mean difference."""
    mean, sd = float(np.mean(diff)), float(np.std(diff, ddof=1)) if len(diff) > 1 else 0.0
    if mean == 0 or sd == 0:
        return None
    return math.ceil(((normal_quantile(1 - alpha / 2) + normal_quantile(power)) * sd / abs(mean)) ** 2)


def items_needed_from_se(n: int, diff: float, se: float, alpha: float = 0.05, power: float = 0.8) -> int | None:
    """Items to detect diff when its standard error on n items is se, taking se to shrink as 1/sqrt(items)."""
    if abs(diff) < 1e-12 or se == 0:
        return None
    return math.ceil(n * ((normal_quantile(1 - alpha / 2) + normal_quantile(power)) * se / abs(diff)) ** 2)


def is_binary(values: np.ndarray) -> bool:
    return bool(np.isin(values, (0.0, 1.0)).all())


def compare_means(metric: Metric, a: str, b: str, sa: np.ndarray, sb: np.ndarray, alpha: float,
                  seed: int) -> Comparison:
    """A metric that is the mean of item scores, from the arms' item scores sa, sb."""
    diff, low, high = paired_bootstrap_diff(sa, sb, seed=seed)
    if is_binary(sa) and is_binary(sb):
        p, n01, n10 = mcnemar_exact(sa, sb)
        return Comparison(a=a, b=b, metric=metric.name, test="mcnemar", diff=diff, low=low, high=high, p=p, n=len(sa),
                          items_needed=mcnemar_items_needed(len(sa), n01, n10, alpha), n01=n01, n10=n10,
                          description="exact McNemar test on per-item right/wrong")
    p = permutation_test(sa, sb, seed=seed)
    return Comparison(a=a, b=b, metric=metric.name, test="permutation", diff=diff, low=low, high=high, p=p, n=len(sa),
                      items_needed=items_needed_continuous(sb - sa, alpha),
                      description=f"paired sign-flip permutation test on per-item {metric.name}")


def compare_recomputed(metric: Metric, a: str, b: str, sa: np.ndarray, sb: np.ndarray, boot_diff: np.ndarray,
                       alpha: float, seed: int) -> Comparison:
    """A corpus-level metric, recomputed from the arms' item stats sa, sb; boot_diff holds metric(b) - metric(a)
    on bootstrap resamples of the items."""
    n = len(sa)
    diff = float(metric.from_stats(sb.sum(axis=0), n) - metric.from_stats(sa.sum(axis=0), n))
    p = recomputed_permutation_test(metric, sa, sb, seed=seed)
    low, high = np.quantile(boot_diff, [0.025, 0.975])
    needed = items_needed_from_se(n, diff, float(np.std(boot_diff, ddof=1)), alpha)
    return Comparison(a=a, b=b, metric=metric.name, test="permutation (metric recomputed)", diff=diff, low=float(low),
                      high=float(high), p=p, n=n,
                      items_needed=needed, description=f"paired permutation test recomputing {metric.name}")


def compare_all(preds: dict[str, list], targets: list, metric: Metric, *, labels: list[str] | None = None,
                alpha: float = 0.05, seed: int = 0) -> list[Comparison]:
    """Every pair of arms (parsed predictions aligned with targets), diff = metric(b) - metric(a),
    with Holm-corrected p-values. labels, for a corpus-level metric, defaults to every target and prediction."""
    if metric.corpus_level and labels is None:
        # One label set for every arm, so their item stats line up. A label that neither arm of a pair
        # predicts and no target has is left out of that pair's F1s, so the extra labels change nothing.
        labels = label_set(targets, *preds.values())
    stats = {name: metric.item_stats(p, targets, labels) for name, p in preds.items()}
    arm_pairs = list(combinations(stats, 2))
    if metric.corpus_level:
        # every arm on the same resamples, so boot[b] - boot[a] is the paired bootstrap of the difference
        counts = resample_counts(len(targets), 2000, seed)
        boot = {name: metric.from_stats(counts @ s, len(targets)) for name, s in stats.items()}
        pairs = [compare_recomputed(metric, a, b, stats[a], stats[b], boot[b] - boot[a], alpha, seed)
                 for a, b in arm_pairs]
    else:
        pairs = [compare_means(metric, a, b, stats[a][:, 0], stats[b][:, 0], alpha, seed) for a, b in arm_pairs]
    for comp, adjusted in zip(pairs, holm([c.p for c in pairs])):
        comp.p_holm = adjusted
        comp.significant = adjusted < alpha
    return pairs
