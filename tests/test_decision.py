"""The decision engine on measured results built by hand: each branch of the framework."""

import pytest

from tunewise.arms import family, method
from tunewise.costs import arm_costs, break_even
from tunewise.decision import decide
from tunewise.metrics import get_metric
from tunewise.reports.model import ArmCost, ArmResult, ArmSummary, Comparison, RunReport
from tunewise.stats import compare_all

PRICES = {"hardware_per_hour": 1.0, "requests_per_month": 100_000, "currency": "USD"}


def arm(name, type_, value, *, tokens=20.0, eps=10.0, decoding="constrained", training=None, agreement=None):
    summary = {"n": 200, "metrics": {"accuracy": {"value": value, "low": value - 0.05, "high": value + 0.05}},
               "examples_per_s": eps, "mean_input_tokens": tokens, "mean_output_tokens": 1.0, "format_ok": 1.0,
               "latency_p50_s": 1 / eps, "latency_p95_s": 1 / eps}
    if agreement is not None:
        summary["consistency"] = {"items": 50, "samples": 5, "temperature": 0.7, "sample_agreement": agreement}
    return ArmResult(name=name, type=type_, family=family(type_), method=method(type_, decoding), decoding=decoding,
                     model="m", status="done", config={"type": type_, "name": name},
                     summary=ArmSummary.model_validate(summary), training=training)


def report(arms, *, target=None, leakage=0, prices=None):
    return RunReport(run_id="r", task="t", status="done", created_at=0.0, info={"leakage": {"count": leakage}},
                     config={"target": target, "prices": prices or PRICES, "splits": {"seed": 0}},
                     metrics=["accuracy"], arms=arms)


def outcomes(n_right, n=200):
    return [1.0] * n_right + [0.0] * (n - n_right)


def run_decision(arms, scores, **kw):
    """Right/wrong outcomes per arm become answers to one-label items, then the paired tests and costs."""
    r = report(arms, **kw)
    n = len(next(iter(scores.values())))
    preds = {name: ["y" if right else "n" for right in outcome] for name, outcome in scores.items()}
    r.comparisons = [Comparison.model_validate(c.to_dict())
                     for c in compare_all(preds, ["y"] * n, get_metric("accuracy"))] if len(scores) > 1 else []
    r.costs = arm_costs(r.arms, r.prices)
    return decide(r)


def test_equal_arms_recommend_the_cheaper_prompting_arm_and_say_why():
    arms = [arm("short", "zero_shot", 0.8, eps=20.0), arm("long", "structured", 0.8, tokens=100, eps=5.0)]
    d = run_decision(arms, {"short": outcomes(160), "long": outcomes(160)})
    assert d.recommended == "short" and d.kind == "prompting"
    text = " ".join(d.reasons)
    assert "short is the cheapest" in text and "long is not significantly different" in text
    # the longer prompt bought nothing: named as a mistake
    assert any("longer prompt with no gain" in m for m in d.mistakes)


def test_a_significantly_better_tuned_arm_is_recommended_with_numbers():
    training = {"wall_s": 200.0, "train_examples": 1000}
    arms = [arm("prompt", "few_shot", 0.62), arm("lora", "lora", 0.96, training=training)]
    scores = {"prompt": outcomes(124), "lora": [1.0] * 192 + [0.0] * 8}
    d = run_decision(arms, scores, target={"metric": "accuracy", "value": 0.9})
    assert d.recommended == "lora" and d.kind == "fine-tuning"
    assert "significantly better" in d.reasons[1] and "mcnemar p =" in d.reasons[1]
    assert any("misses the target accuracy 0.9" in r for r in d.reasons)
    assert any("per 1,000 requests" in r for r in d.reasons)


def test_fine_tuning_without_significant_gain_is_not_recommended_and_is_flagged():
    arms = [arm("prompt", "structured", 0.80), arm("lora", "lora", 0.81, training={"wall_s": 100.0})]
    prompt = outcomes(160)
    lora = prompt[:]
    lora[170] = 1.0
    lora[171] = 1.0  # 2 more right out of 200: no significant difference
    d = run_decision(arms, {"prompt": prompt, "lora": lora})
    assert d.recommended == "prompt"
    assert any("not significantly better" in r for r in d.reasons)
    assert any("without a significant gain" in m for m in d.mistakes)
    assert any("Too few test items" in m for m in d.mistakes)


def test_a_tied_tuned_arm_that_is_cheaper_at_volume_is_recommended():
    arms = [arm("prompt", "few_shot", 0.80, tokens=400, eps=2.0),
            arm("lora", "lora", 0.80, eps=50.0, training={"wall_s": 60.0})]
    d = run_decision(arms, {"prompt": outcomes(160), "lora": outcomes(160)},
                     prices={"hardware_per_hour": 10.0, "requests_per_month": 10_000_000, "currency": "USD"})
    assert d.recommended == "lora"
    assert "cheaper at 10,000,000 requests a month" in d.reasons[1]


def test_a_cheaper_tuned_arm_on_too_few_items_is_not_recommended():
    # 18 items: lora is one item worse; the interval is far too wide to call it no worse
    arms = [arm("prompt", "few_shot", 0.556, eps=2.0), arm("lora", "lora", 0.5, eps=50.0, training={"wall_s": 1.0})]
    prompt = [1.0] * 10 + [0.0] * 8
    lora = [1.0] * 9 + [0.0] * 9
    d = run_decision(arms, {"prompt": prompt, "lora": lora},
                     prices={"hardware_per_hour": 10.0, "requests_per_month": 10_000_000, "currency": "USD"})
    assert d.recommended == "prompt"


def test_leakage_is_named():
    d = run_decision([arm("a", "zero_shot", 0.5)], {"a": outcomes(100)}, leakage=3)
    assert any("Leakage" in m for m in d.mistakes)


def test_break_even_volume():
    tuned = ArmCost(per_1k=0.1, basis="seconds", one_time=5.0, monthly=0.0)
    assert break_even(tuned, ArmCost(per_1k=0.6, basis="seconds", one_time=0.0, monthly=0.0)) == pytest.approx(10_000)
    assert break_even(tuned, ArmCost(per_1k=0.05, basis="seconds", one_time=0.0, monthly=0.0)) is None


def test_token_prices_are_used_for_priced_models():
    a = arm("api", "zero_shot", 0.7, tokens=1000)
    r = report([a], prices={"models": {"m": {"input_per_million": 2.0, "output_per_million": 8.0}},
                            "requests_per_month": 1000, "currency": "USD"})
    costs = arm_costs(r.arms, r.prices)["api"]
    assert costs.basis == "tokens"
    assert costs.per_1k == pytest.approx((1000 * 2.0 + 1 * 8.0) / 1e6 * 1000)
    assert costs.monthly == pytest.approx(costs.per_1k)
