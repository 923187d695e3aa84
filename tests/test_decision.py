"""The verdict on measured results built by hand: one scenario per situation, and properties over many."""

import random
import re

import pytest

from tunewise.analysis.costs import arm_costs, break_even
from tunewise.analysis.decision import MIN_CLEAN, decide
from tunewise.analysis.framework import framework_table
from tunewise.analysis.model import ArmCost, ArmResult, ArmSummary, Evidence, MetricValue, RunReport
from tunewise.analysis.stats import compare_all
from tunewise.arms import family, method
from tunewise.measure import get_metric

PRICES = {"hardware_per_hour": 1.0, "currency": "USD"}  # no volume stated
VOLUME = {"hardware_per_hour": 10.0, "requests_per_month": 10_000_000, "currency": "USD"}


def arm(name, type_, outcome, *, metric="accuracy", tokens=20.0, eps=10.0, decoding="constrained", training=None,
        agreement=None, format_ok=1.0, model="m"):
    """An arm whose stored summary holds the mean of its right/wrong outcomes, with a plain ±0.05 interval."""
    value = sum(outcome) / len(outcome)
    summary = {"n": len(outcome), "metrics": {metric: {"value": value, "low": value - 0.05, "high": value + 0.05}},
               "examples_per_s": eps, "mean_input_tokens": tokens, "mean_output_tokens": 1.0, "format_ok": format_ok,
               "latency_p50_s": 1 / eps, "latency_p95_s": 1 / eps}
    if agreement is not None:
        summary["consistency"] = {"items": 50, "samples": 5, "temperature": 0.7, "sample_agreement": agreement}
    if family(type_) == "fine-tune" and training is None:
        training = {"wall_s": 100.0, "train_examples": 1000}
    return ArmResult(name=name, type=type_, family=family(type_), method=method(type_, decoding), decoding=decoding,
                     model=model, status="done", config={"type": type_, "name": name, "k": 4}, wall_s=20.0,
                     summary=ArmSummary.model_validate(summary), training=training, data_required="none")


def outcomes(n_right, n=200):
    return [1.0] * n_right + [0.0] * (n - n_right)


def build(arms, scores, *, target=None, leakage=None, prices=None, metric="accuracy", why="the main quality metric",
          clean=None):
    """A run report with the paired tests computed from the outcomes (answers 'y' right, 'n' wrong)."""
    info = {"leakage": leakage or {"count": 0}, "splits": {}}
    r = RunReport(run_id="r", task="t", status="done", created_at=0.0, info=info,
                  config={"target": target, "prices": prices or PRICES, "splits": {"seed": 0}, "model": "m",
                          "type": "classification", "decision_metric": {"name": metric, "why": why}},
                  metrics=["json_valid", metric] if metric != "accuracy" else ["accuracy"], arms=arms)
    r.comparisons = _comparisons(scores, metric)
    if clean:
        n = len(next(iter(clean.values())))
        r.clean = Evidence(basis=f"the {n} clean test items", n=n, comparisons=_comparisons(clean, metric),
                           values={k: MetricValue(value=sum(v) / n, low=sum(v) / n - 0.1, high=sum(v) / n + 0.1)
                                   for k, v in clean.items()})
    r.costs = arm_costs(r.arms, r.prices)
    return r


def _comparisons(scores, metric):
    if len(scores) < 2:
        return []
    n = len(next(iter(scores.values())))
    preds = {name: ["y" if right else "n" for right in outcome] for name, outcome in scores.items()}
    found = compare_all(preds, ["y"] * n, get_metric("accuracy"))
    return [c.model_copy(update={"metric": metric}) for c in found]


def run_decision(specs, **kw):
    """specs: (name, type, outcomes, arm options); the decision, checked for coherence."""
    arms = [arm(name, type_, out, metric=kw.get("metric", "accuracy"), **opts) for name, type_, out, opts in specs]
    report = build(arms, {name: out for name, _, out, _ in specs}, **kw)
    d = decide(report)
    assert_coherent(report, d)
    return d


def assert_coherent(report, d):
    """The recommended arm is never what a warning advises against, and every cited number is the stored one."""
    assert all(d.recommended not in m.against for m in d.mistakes)
    facts = report.clean if d.basis and d.basis.startswith("the ") and report.clean else None
    values = facts.values if facts else {a.name: a.summary.metrics[report.metric] for a in report.main_arms()}
    comparisons = facts.comparisons if facts else report.comparisons
    for text in d.reasons + [m.text for m in d.mistakes]:
        for name, metric, value, low, high in re.findall(
                r"([\w@+.-]+) \((\w+) (-?\d+\.\d{3}), 95% CI (-?\d+\.\d{3})–(-?\d+\.\d{3})\)", text):
            stored = values[name]
            assert metric == report.metric
            assert (value, low, high) == (f"{stored.value:.3f}", f"{stored.low:.3f}", f"{stored.high:.3f}")
        for b, a, diff, low, high in re.findall(
                r"([\w@+.-]+) − ([\w@+.-]+) = ([+-]\d+\.\d{3}) \S+ \(95% CI ([+-]\d+\.\d{3}) to ([+-]\d+\.\d{3})", text):
            c = next(c for c in comparisons if {c.a, c.b} == {a, b})
            sign = 1 if (c.a, c.b) == (a, b) else -1
            lo, hi = (c.low, c.high) if sign == 1 else (-c.high, -c.low)
            assert (diff, low, high) == (f"{sign * c.diff:+.3f}", f"{lo:+.3f}", f"{hi:+.3f}")


# -- scenarios ----------------------------------------------------------------------------
def test_prompting_ties_fine_tuning():
    d = run_decision([("prompt", "few_shot", outcomes(160), {}), ("lora", "lora", outcomes(161), {})])
    assert d.recommended == "prompt" and d.kind == "prompting"
    assert any("lora is not significantly better" in r for r in d.reasons)
    assert any("short of a perfect accuracy" in r for r in d.reasons)  # no target: how good, in numbers


def test_fine_tuning_significantly_better():
    d = run_decision([("prompt", "few_shot", outcomes(124), {}), ("lora", "lora", outcomes(192), {})],
                     target={"value": 0.9})
    assert d.recommended == "lora" and d.kind == "fine-tuning"
    assert "significantly better" in d.reasons[1] and "mcnemar p =" in d.reasons[1]
    assert any("Prompting misses the target accuracy 0.9" in r for r in d.reasons)
    assert any("per 1,000 requests" in r for r in d.reasons)


def test_fine_tuning_better_but_not_significantly():
    d = run_decision([("prompt", "structured", outcomes(160), {}), ("lora", "lora", outcomes(162), {})])
    assert d.recommended == "prompt"
    assert any("not significantly better" in r for r in d.reasons)
    assert any(m.kind == "fine-tuning without gain" and m.against == ["lora"] for m in d.mistakes)
    assert any(m.kind == "too few items" for m in d.mistakes)


def test_nothing_meets_the_target():
    d = run_decision([("zero", "zero_shot", outcomes(10), {"format_ok": 0.4}),
                      ("lora", "lora", outcomes(26), {"format_ok": 1.0})], target={"value": 0.5})
    assert d.recommended is None and d.kind == "nothing meets the target" and d.closest == "lora"
    assert any("every arm's 95% interval lies below it" in r for r in d.reasons)
    assert d.next_steps and "learned the format" in d.next_steps[0]
    assert any("larger model" in s for s in d.next_steps)


def test_a_target_within_an_interval_is_not_declared_unreachable():
    d = run_decision([("zero", "zero_shot", outcomes(98), {}), ("lora", "lora", outcomes(96), {})],
                     target={"value": 0.5})  # 0.49 ± 0.05 reaches 0.5
    assert d.kind == "prompting" and d.recommended == "zero"


def test_cost_decides_only_at_a_stated_volume():
    specs = [("prompt", "few_shot", outcomes(160), {"tokens": 400, "eps": 2.0}),
             ("lora", "lora", outcomes(160), {"eps": 50.0, "training": {"wall_s": 60.0}})]
    with_volume = run_decision(specs, prices=VOLUME)
    assert with_volume.recommended == "lora" and with_volume.kind == "fine-tuning"
    assert "Fine-tuning wins on cost alone" in with_volume.reasons[1]
    assert "at the stated 10,000,000 requests a month" in with_volume.reasons[1]
    unstated = run_decision(specs, prices={"hardware_per_hour": 10.0, "currency": "USD"})
    assert unstated.recommended == "prompt"
    assert any("the task states no volume" in r and "pays back its training after" in r for r in unstated.reasons)


def test_tied_tuned_arms_whose_costs_differ_by_timing_noise_go_by_score():
    # lora and the hybrid are both significantly better; the hybrid looks 5% cheaper, within timing noise
    d = run_decision([("few", "few_shot", outcomes(124), {}), ("lora", "lora", outcomes(200), {"eps": 10.0}),
                      ("hybrid", "hybrid", outcomes(199), {"eps": 10.5, "training": {"uses": "lora"}})])
    assert d.recommended == "lora" and d.kind == "fine-tuning"


def test_a_cheaper_tuned_arm_on_too_few_items_is_not_recommended():
    # 18 items: lora is one item worse; the interval is far too wide to call it no worse
    d = run_decision([("prompt", "few_shot", [1.0] * 10 + [0.0] * 8, {"eps": 2.0}),
                      ("lora", "lora", [1.0] * 9 + [0.0] * 9, {"eps": 50.0, "training": {"wall_s": 1.0}})],
                     prices=VOLUME)
    assert d.recommended == "prompt"


def test_too_few_test_items_to_tell():
    d = run_decision([("a", "zero_shot", [1.0] * 12 + [0.0] * 8, {}), ("b", "structured", [1.0] * 10 + [0.0] * 10, {})])
    assert any(m.kind == "too few items" and "20 items" in m.text for m in d.mistakes)


def test_the_verdict_follows_the_targets_metric_not_the_first_metric():
    # json_valid is first and every arm is valid JSON; the target is on key accuracy, which prompting misses
    d = run_decision([("few", "few_shot", outcomes(170), {}), ("lora", "lora", outcomes(198), {}),
                      ("hybrid", "hybrid", outcomes(197), {"training": {"uses": "lora"}})],
                     metric="key_accuracy", why="the target's metric", target={"metric": "key_accuracy", "value": 0.9})
    assert d.metric == "key_accuracy" and d.metric_why == "the target's metric"
    assert d.recommended in ("lora", "hybrid") and d.kind in ("fine-tuning", "hybrid")
    assert any("Prompting misses the target key_accuracy 0.9" in r for r in d.reasons)


def test_a_fully_leaked_test_withholds_the_verdict():
    leak = {"count": 200, "ids": [], "test_items": 200}
    d = run_decision([("few", "few_shot", outcomes(50), {}), ("lora", "lora", outcomes(200), {})], leakage=leak)
    assert d.recommended is None and d.kind == "withheld"
    assert "memorization" in d.reasons[0] and "group_by" in d.next_steps[0]


def test_a_partly_leaked_test_is_decided_on_the_clean_items():
    leak = {"count": 50, "ids": [], "test_items": 200}
    clean = {"few": outcomes(100, 150), "lora": outcomes(104, 150)}  # on unseen inputs lora is no better
    d = run_decision([("few", "few_shot", outcomes(140), {}), ("lora", "lora", outcomes(190), {})], leakage=leak,
                     clean=clean)
    assert d.basis == "the 150 clean test items" and d.recommended == "few"
    assert d.reasons[0].startswith("Decided on the 150 clean test items: 50 of 200 test inputs")
    assert any(m.kind == "leakage" for m in d.mistakes)


def test_a_few_clean_items_are_not_enough():
    leak = {"count": 190, "ids": [], "test_items": 200}
    clean = {"few": outcomes(5, MIN_CLEAN - 10), "lora": outcomes(6, MIN_CLEAN - 10)}
    d = run_decision([("few", "few_shot", outcomes(140), {}), ("lora", "lora", outcomes(190), {})], leakage=leak,
                     clean=clean)
    assert d.kind == "withheld"


# -- properties over many generated results --------------------------------------------------
TYPES = ["zero_shot", "structured", "few_shot", "lora", "full", "hybrid"]


@pytest.mark.parametrize("seed", range(120))
def test_any_verdict_is_coherent(seed):
    rng = random.Random(seed)
    n = rng.choice([12, 40, 200])
    specs = []
    for i in range(rng.randint(1, 5)):
        type_ = rng.choice(TYPES)
        out = [1.0 if rng.random() < rng.random() else 0.0 for _ in range(n)]
        opts = {"tokens": rng.uniform(5, 500), "eps": rng.uniform(0.5, 100), "format_ok": rng.random()}
        if family(type_) == "fine-tune":
            opts["training"] = {"wall_s": rng.uniform(1, 1000), "train_examples": 100}
        specs.append((f"{type_}{i}", type_, out, opts))
    prices = rng.choice([PRICES, VOLUME])
    target = rng.choice([None, {"value": rng.random()}, {"value": rng.random(), "min_gain": 0.0}])
    d = run_decision(specs, prices=prices, target=target)
    if d.recommended:
        assert d.kind in ("prompting", "fine-tuning", "hybrid")
    if prices is PRICES and d.kind in ("fine-tuning", "hybrid"):
        assert not any("cost alone" in r for r in d.reasons)  # no volume: cost never decides


# -- costs and the framework's table -----------------------------------------------------------
def test_break_even_volume():
    tuned = ArmCost(per_1k=0.1, basis="seconds", one_time=5.0, monthly=None)
    assert break_even(tuned, ArmCost(per_1k=0.6, basis="seconds", one_time=0.0, monthly=None)) == pytest.approx(10_000)
    assert break_even(tuned, ArmCost(per_1k=0.05, basis="seconds", one_time=0.0, monthly=None)) is None


def test_token_prices_are_used_for_priced_models():
    r = build([arm("api", "zero_shot", outcomes(140), tokens=1000)], {"api": outcomes(140)},
              prices={"models": {"m": {"input_per_million": 2.0, "output_per_million": 8.0}},
                      "requests_per_month": 1000, "currency": "USD"})
    costs = r.costs["api"]
    assert costs.basis == "tokens"
    assert costs.per_1k == pytest.approx((1000 * 2.0 + 1 * 8.0) / 1e6 * 1000)
    assert costs.monthly == pytest.approx(costs.per_1k)
    assert build([arm("a", "zero_shot", outcomes(1))], {"a": outcomes(1)}).costs["a"].monthly is None


def test_the_framework_table_has_the_six_rows_measured():
    r = build([arm("few", "few_shot", outcomes(124)), arm("lora", "lora", outcomes(192))],
              {"few": outcomes(124), "lora": outcomes(192)})
    r.decision = decide(r)
    table = framework_table(r)
    assert table.columns == ["prompting: few", "fine-tuning: lora"]
    rows = {row.label: row.cells for row in table.rows}
    assert {"method", "cost", "speed", "flexibility", "data required", "use case"} <= set(rows)
    assert rows["speed"][0] == "first usable result after 20 s (evaluation only)"
    assert rows["speed"][1] == "first usable result after 120 s (100 s training + 20 s evaluation)"
    assert "retraining: 120 s" in rows["flexibility"][1] and "prompt edit" in rows["flexibility"][0]
    assert rows["use case"][1] == "Recommended (fine-tuning) for this task."


def test_fine_tuning_without_a_hybrid_says_hybrids_were_not_tried():
    d = run_decision([("prompt", "few_shot", outcomes(124), {}), ("lora", "lora", outcomes(192), {})])
    assert d.recommended == "lora"
    [mistake] = [m for m in d.mistakes if m.kind == "no hybrid"]
    assert "{type: hybrid, tuned: lora, prompt: prompt}" in mistake.text


def test_a_plain_hybrid_behind_its_adapter_is_named_a_train_serve_mismatch():
    from tunewise.analysis.build import contributions
    specs = [("prompt", "few_shot", outcomes(124), {}), ("lora", "lora", outcomes(192), {}),
             ("mixed", "hybrid", outcomes(130), {"training": {"uses": "lora", "matched": False}})]
    arms = [arm(name, type_, out, **opts) for name, type_, out, opts in specs]
    arms[2].config.update(tuned="lora", prompt="prompt")
    report = build(arms, {name: out for name, _, out, _ in specs})
    report.contributions = contributions(report)
    [c] = report.contributions
    assert c.training == "plain" and [p.arm for p in c.parts] == ["prompt", "lora"]
    d = decide(report)
    assert_coherent(report, d)
    [mistake] = [m for m in d.mistakes if m.kind == "train/serve mismatch"]
    assert "mixed − lora = -0.310" in mistake.text and mistake.against == ["mixed"]
    assert not [m for m in d.mistakes if m.kind == "no hybrid"]  # one was tried


def test_a_longer_prompt_without_gain_is_named_once_against_the_best_shorter_one():
    d = run_decision([("short_a", "zero_shot", outcomes(120), {"tokens": 20.0}),
                      ("short_b", "structured", outcomes(126), {"tokens": 25.0}),
                      ("long", "few_shot", outcomes(124), {"tokens": 90.0}),
                      ("long_better", "few_shot", outcomes(190), {"tokens": 95.0})])
    longer = [m for m in d.mistakes if m.kind == "longer prompt"]
    [mistake] = longer  # long_better gains significantly: not named; long once, not once per shorter prompt
    assert mistake.against == ["long"]
    assert mistake.text.startswith("A longer prompt with no gain: long uses 90 input tokens against 25 for "
                                   "short_b (and 1 other shorter prompt), and long − short_b")
