"""Paired comparisons of arms on the same test items: tests, intervals, Holm correction, sample sizes."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from itertools import combinations

import numpy as np

Z = {0.05: 1.959964, 0.10: 1.644854, 0.20: 0.841621}  # two-sided alpha 0.05; power 0.8 -> z 0.8416


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
    z_a, z_b = Z[alpha], Z[round(1 - power, 2)]
    needed = (z_a * math.sqrt(discordant) + z_b * math.sqrt(discordant - delta ** 2)) ** 2 / delta ** 2
    return math.ceil(needed)


def items_needed_continuous(diff: np.ndarray, alpha: float = 0.05, power: float = 0.8) -> int | None:
    """Items for a paired t-type test to detect the observed mean difference."""
    mean, sd = float(np.mean(diff)), float(np.std(diff, ddof=1)) if len(diff) > 1 else 0.0
    if mean == 0 or sd == 0:
        return None
    return math.ceil(((Z[alpha] + Z[round(1 - power, 2)]) * sd / abs(mean)) ** 2)


@dataclass
class Comparison:
    a: str
    b: str
    metric: str
    test: str              # mcnemar | permutation
    diff: float            # b - a, in the metric's units
    low: float
    high: float
    p: float
    p_holm: float = 1.0
    significant: bool = False
    n: int = 0
    items_needed: int | None = None  # to detect this difference at alpha 0.05 with power 0.8
    n01: int | None = None
    n10: int | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def is_binary(values: list[float]) -> bool:
    return all(v in (0.0, 1.0) for v in values)


def compare_pair(a: str, b: str, sa: list[float], sb: list[float], metric: str, seed: int = 0) -> Comparison:
    diff, low, high = paired_bootstrap_diff(sa, sb, seed=seed)
    if is_binary(sa) and is_binary(sb):
        p, n01, n10 = mcnemar_exact(sa, sb)
        needed = mcnemar_items_needed(len(sa), n01, n10)
        return Comparison(a, b, metric, "mcnemar", diff, low, high, p, n=len(sa), items_needed=needed,
                          n01=n01, n10=n10)
    p = permutation_test(sa, sb, seed=seed)
    needed = items_needed_continuous(np.asarray(sb, float) - np.asarray(sa, float))
    return Comparison(a, b, metric, "permutation", diff, low, high, p, n=len(sa), items_needed=needed)


def compare_all(scores: dict[str, list[float]], metric: str, alpha: float = 0.05, seed: int = 0) -> list[Comparison]:
    """Every pair of arms on the same items, with Holm-corrected p-values."""
    names = list(scores)
    pairs = [compare_pair(a, b, scores[a], scores[b], metric, seed) for a, b in combinations(names, 2)]
    for comp, adjusted in zip(pairs, holm([c.p for c in pairs])):
        comp.p_holm = adjusted
        comp.significant = adjusted < alpha
    return pairs
