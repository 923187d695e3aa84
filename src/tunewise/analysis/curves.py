"""Learning curves extrapolated: a saturating power law fitted to (train examples, quality) points.

quality(n) = ceiling − a · n^(−b), the usual shape of learning curves (Hestness et al., 2017); the
ceiling is what more data of this kind would reach at this model size.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

EXPONENTS = np.linspace(0.05, 2.0, 79)
UNREACHED = 1e300  # stands for "never" in the bootstrap draws


@dataclass
class Fit:
    ceiling: float
    a: float
    b: float
    needed: float | None = None  # examples to reach the target; None when the ceiling is below it
    low: float | None = None     # 95% interval of `needed` (residual bootstrap); None when unbounded
    high: float | None = None


def fit_curve(points: list[tuple[float, float]], bound: float = 1.0) -> tuple[float, float, float]:
    """Least squares over a grid of exponents b; for each, (ceiling, a) by linear least squares with a ≥ 0.
    The ceiling never exceeds `bound` (quality metrics are shares)."""
    n = np.array([p[0] for p in points], float)
    y = np.array([p[1] for p in points], float)
    best = (float(y.max()), 0.0, 1.0, np.inf)
    for b in EXPONENTS:
        x = n ** -b
        design = np.stack([np.ones_like(x), -x], axis=1)
        (c, a), *_ = np.linalg.lstsq(design, y, rcond=None)
        if a < 0:  # quality falling with data: a flat line at the mean fits better
            c, a = float(y.mean()), 0.0
        c = min(c, bound)
        sse = float(((c - a * x - y) ** 2).sum())
        if sse < best[3] - 1e-12:
            best = (float(c), float(a), float(b), sse)
    return best[0], best[1], best[2]


def examples_for(target: float, ceiling: float, a: float, b: float) -> float | None:
    if ceiling <= target:
        return None
    if a <= 0:
        return 1.0
    return (a / (ceiling - target)) ** (1 / b)


def extrapolate(points: list[tuple[float, float]], target: float, *, resamples: int = 500, seed: int = 0) -> Fit:
    """The fitted curve, the examples it needs to reach `target`, and that number's bootstrap interval."""
    ceiling, a, b = fit_curve(points)
    fit = Fit(ceiling, a, b, examples_for(target, ceiling, a, b))
    if fit.needed is None:
        return fit
    n = np.array([p[0] for p in points], float)
    predicted = ceiling - a * n ** -b
    residuals = np.array([p[1] for p in points], float) - predicted
    rng = np.random.default_rng(seed)
    draws = []
    for _ in range(resamples):
        y = predicted + rng.choice(residuals, size=len(residuals), replace=True)
        needed = examples_for(target, *fit_curve(list(zip(n, y))))
        draws.append(UNREACHED if needed is None else min(needed, UNREACHED))
    low, high = np.quantile(draws, [0.025, 0.975])
    fit.low = float(low) if low < UNREACHED else None
    fit.high = float(high) if high < UNREACHED else None
    return fit
