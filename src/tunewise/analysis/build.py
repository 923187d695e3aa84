"""The analysis of a stored run: from the store alone to a typed `RunReport` (no rendering here).

Arms and their summaries come from the store; paired comparisons are recomputed from the stored
predictions with the decision metric; then costs, the decision, the learning curves' data needs,
confusion matrices and the items where the arms disagree.
"""

from __future__ import annotations

import json
import math
from collections import Counter

from ..arms import arm_class, family, method
from ..measure import declared_metrics, get_metric
from ..measure.metrics import Metric, bootstrap_interval, metric_inputs, normalize_answer
from ..store.sqlite import Store
from .costs import arm_costs, training_record
from .decision import Decider, decide, verdict
from .effort import arm_effort
from .framework import framework_table
from .model import (
    ArmResult,
    ArmSummary,
    BestArm,
    Comparison,
    Confusion,
    Contribution,
    DataNeeds,
    Disagreement,
    Evidence,
    MetricValue,
    Part,
    PlanCheck,
    PlanRow,
    RunReport,
    SearchSummary,
    SeedSpread,
    ShotPoint,
    Stability,
    TuningPoint,
)
from .stats import compare_all


def build_report(store: Store, run_id: str) -> RunReport:
    """Analyse a stored run (its id, a unique prefix, or 'latest'); KeyError when there is none."""
    run = store.get_run(run_id)
    if run is None:
        raise KeyError(run_id)
    stored = store.arms(run["id"])
    report = RunReport(run_id=run["id"], task=run["task_name"], status=run["status"],
                       created_at=run["created_at"], info=run["info"], config=run["config"],
                       data_fingerprint=run.get("data_fingerprint"),
                       metrics=run["config"]["metrics"], arms=[_arm_result(a, run["config"]) for a in stored])
    _hybrid_data(report)
    rows = {a.name: store.predictions(report.run_id, a.name) for a in report.main_arms()}
    report.data_needs = data_needs(report)
    report.searches = [search_summary(a, report.metric) for a in report.main_arms()
                       if (a.training or {}).get("kind") == "search" or (a.training or {}).get("tune_search")]
    report.comparisons = comparisons(report, rows)
    report.declared_tests = declared_tests(report, rows)
    report.clean = clean_evidence(report, rows)
    report.contributions = contributions(report)
    judge = report.config.get("judge") or {}
    report.costs = arm_costs(report.arms, report.prices, judge.get("model"))
    finished = {a.name: a for a in report.arms if a.summary is not None}
    report.effort = {a.name: arm_effort(a, finished, report.costs[a.name].one_time) for a in report.main_arms()}
    report.judge = report.info.get("judge")
    report.stability = stability(store, report, rows)
    report.decision = decide(report)
    report.framework = framework_table(report)
    if report.config["type"] == "classification":
        labels = report.info.get("labels") or []
        report.confusion = {name: confusion(rs, labels) for name, rs in rows.items()}
    if report.config["type"] == "extraction":
        report.field_accuracy = {name: field_accuracy(rs) for name, rs in rows.items()}
    report.disagreements = disagreements(rows)
    report.loss_curves = {a["name"]: [(s["step"], s["loss"]) for s in a["training"]["losses"]]
                          for a in stored if (a.get("training") or {}).get("losses") and not a.get("curve")}
    report.warnings = run_warnings(run, report.arms) + answer_warnings(store, report) + dev_drops(report)
    report.plan_check = plan_check(report)
    return report


def plan_check(report: RunReport) -> PlanCheck | None:
    """Each unit's planned seconds beside its measured ones (a model's loading is measured inside the first
    unit that uses it, so the total compares the plan's whole with the units' sum)."""
    plan = report.info.get("plan")
    if not plan:
        return None
    estimated: dict[str, float] = {}
    parts: dict[str, list[str]] = {}
    for p in plan["parts"]:
        estimated[p["unit"]] = estimated.get(p["unit"], 0.0) + p["seconds"]
        parts.setdefault(p["unit"], []).append(p["part"])
    actual = {a.name: a.summary.unit_s for a in report.arms if a.summary is not None}
    actual.update({u: s for u, s in estimated.items() if "probe" in parts[u]})  # measured when the plan was made
    rows = [PlanRow(unit=u, parts=", ".join(dict.fromkeys(parts[u])), estimated_s=s, actual_s=actual.get(u))
            for u, s in estimated.items()]
    done = sum(r.actual_s for r in rows if r.actual_s is not None)
    planned = sum(r.estimated_s for r in rows)
    return PlanCheck(rows=rows, estimated_s=planned, actual_s=done, cuts=plan.get("cuts") or [],
                     error=(done - planned) / planned if planned > 0 and done else None, budget=plan.get("budget"))


def dev_drops(report: RunReport) -> list[str]:
    """Every arm chosen on dev (a search's winner, a training's best epoch) whose test score falls below its dev
    score by more than the two scores' sampling error: what was chosen on dev did not hold on test."""
    out = []
    for arm in report.main_arms():
        dev, items, how = _dev_choice(arm.training or {})
        test = arm.summary.metrics.get(report.metric) if arm.summary else None
        if dev is None or not items or test is None or test.low is None or test.value is None:
            continue
        half = (test.high - test.low) / 2
        both = half * math.sqrt(1 + (arm.summary.n or items) / items)  # the dev score's error scales as 1/√n
        if dev - test.value > max(0.05, both):
            out.append(f"arm {arm.name!r}: {how} scored {report.metric} {dev:.3f} on {items} dev items but "
                       f"{test.value:.3f} on test (95% CI {test.low:.3f}–{test.high:.3f}), a drop beyond both "
                       f"scores' intervals: dev did not predict test here (too few dev items, or dev and test "
                       f"differ)")
    return out


def _dev_choice(training: dict) -> tuple[float | None, int, str]:
    """The dev score an arm was chosen on, its dev items, and what was chosen."""
    if training.get("kind") == "search":
        return training.get("dev_score"), training.get("dev_items") or 0, "the search's winning prompt"
    if training.get("best_dev") is not None:
        return training["best_dev"], training.get("dev_items") or 0, f"the epoch kept ({training.get('best_epoch')})"
    return None, 0, ""


# -- answers that do not read the input -----------------------------------------------------
def answer_warnings(store: Store, report: RunReport) -> list[str]:
    """Classification arms (learning-curve points included) that answer one label whatever the input, or
    copy the label of the prompt's last worked example: their score measures a bias, not the prompt."""
    if report.config["type"] != "classification":
        return []
    found = {}
    for arm in report.arms:
        if arm.summary is None:
            continue
        rows = store.predictions(report.run_id, arm.name)
        text = one_label(rows) or copies_last_example(rows)
        if text:
            found.setdefault(text, []).append(arm.name)
    return [f"{_arm_list(names)} {text}" for text, names in found.items()]


def _arm_list(names: list[str]) -> str:
    return f"arm {names[0]!r}" if len(names) == 1 else "arms " + ", ".join(repr(n) for n in names) + " each"


def one_label(rows: list[dict], share: float = 0.95) -> str | None:
    """Said when ≥ `share` of the answers are one label while the targets are not."""
    if len(rows) < 20:
        return None
    answers = Counter(json.dumps(r["parsed"]) for r in rows)
    answer, count = answers.most_common(1)[0]
    targets = Counter(json.dumps(r["target"]) for r in rows)
    label = json.loads(answer)
    if label is None or count < share * len(rows) or targets[answer] >= share * len(rows):
        return None  # no label at all is a format failure, which the table's format column shows
    text = (f"answered {label!r} to {count / len(rows):.0%} of the test items, while {targets[answer]} of "
            f"{len(rows)} are {label!r}: its score is mostly that label's share, not a reading of the input")
    last = [_last_example(r["messages"]) for r in rows]
    if all(last) and len(set(last)) == 1:  # the same examples in every prompt
        text += (f"; every prompt's last example is labelled {last[0]!r}, so this is " +
                 ("the last example's label copied, or a bias towards it: with the same examples in every "
                  "prompt the two cannot be told apart" if last[0].lower() == str(label).lower() else
                  "not the last example copied but a bias of the model towards one label once examples are shown"))
    return text


def copies_last_example(rows: list[dict], share: float = 0.9) -> str | None:
    """Said when, on the items whose last worked example has another label than theirs, the answers repeat
    that example's label for ≥ `share` of them (items where the two agree cannot tell copying from reading)."""
    telling = [(str(r["parsed"]).lower(), _last_example(r["messages"]).lower()) for r in rows
               if _last_example(r["messages"]) and _last_example(r["messages"]).lower() != str(r["target"]).lower()]
    if len(telling) < 10:
        return None
    copied = sum(answer == last for answer, last in telling) / len(telling)
    if copied < share:
        return None
    return (f"answered the label of the prompt's last worked example on {copied:.0%} of the {len(telling)} items "
            f"whose own label differs from it: it copies the last example rather than reading the input")


def _last_example(messages: list[dict]) -> str:
    """The answer of the last worked example in a prompt ('' without examples)."""
    answers = [m["content"] for m in messages[:-1] if m["role"] == "assistant"]
    return answers[-1].strip() if answers else ""


def run_warnings(run: dict, arms: list[ArmResult]) -> list[str]:
    """What the run warned about, and the training examples each tuned arm cut to train.max_length."""
    out = [w.removeprefix("warning: ").removeprefix("note: ") for w in run["info"].get("warnings") or []]
    for arm in arms:
        clipped = (arm.training or {}).get("clipped")
        if clipped:
            out.append(f"arm {arm.name!r}: {clipped} of {arm.training.get('train_examples')} training examples "
                       f"were longer than train.max_length {arm.training.get('max_length')} tokens and lost "
                       f"their prompt's start")
    return out


def _arm_result(stored: dict, run_config: dict) -> ArmResult:
    config = stored["config"]
    model = config.get("model") or run_config["model"]
    endpoint = (run_config.get("endpoints") or {}).get(model) or {}
    training = {k: v for k, v in stored["training"].items() if k != "losses"} if stored["training"] else None
    try:
        data = arm_class(config["type"]).data_required(config, training)
    except KeyError:  # an arm type registered when the run was made, but not now
        data = "–"
    return ArmResult(name=stored["name"], type=config["type"], family=family(config["type"]),
                     method=method(config["type"], config.get("decoding")),
                     decoding=config.get("decoding"), model=model, endpoint_model=endpoint.get("model"),
                     status=stored["status"], wall_s=stored["wall_s"], config=config,
                     summary=ArmSummary.model_validate(stored["summary"]) if stored["summary"] else None,
                     prompt=stored["prompt"], training=training, data_required=data, curve=stored["curve"])


def _hybrid_data(report: RunReport) -> None:
    """A hybrid used the data its tuned arm trained on."""
    arms = {a.name: a for a in report.arms}
    for arm in report.arms:
        if arm.traits.hybrid:
            arm.data_required = arm_class(arm.type).data_required(arm.config, training_record(arm, arms))


# -- paired comparisons -------------------------------------------------------------
def comparisons(report: RunReport, rows: dict[str, list[dict]], keep: set[str] | None = None) -> list[Comparison]:
    """Every pair of main arms on the test items all of them answered (of `keep`, when given),
    in the decision metric."""
    if len(rows) < 2:
        return []
    metric = get_metric(report.metric, report.config)
    preds, targets = _aligned(rows, keep, metric)
    if not targets:
        return []
    labels = report.info.get("labels") or None
    found = compare_all(preds, targets, metric, labels=labels,
                        seed=report.config["splits"]["seed"])
    return found


def declared_tests(report: RunReport, rows: dict[str, list[dict]]) -> dict[str, list[Comparison]]:
    """The paired tests of every pair of main arms on each metric the task file declares (its assertions, all
    of them passed, the judge's rubric): each assertion's pass rates differ, not only the deciding one's."""
    if len(rows) < 2:
        return {}
    out = {}
    for name in declared_metrics(report.config):
        metric = get_metric(name, report.config)
        preds, targets = _aligned(rows, None, metric)
        if targets:
            out[name] = compare_all(preds, targets, metric, seed=report.config["splits"]["seed"])
    return out


def _aligned(rows: dict[str, list[dict]], keep: set[str] | None = None,
             metric: Metric | None = None) -> tuple[dict[str, list], list]:
    """Each arm's parsed answers (a judge's stored scores, for its metric) and the targets, on the items every
    arm answered, in one order."""
    common = set.intersection(*(set(r["example_id"] for r in rs) for rs in rows.values()))
    if keep is not None:
        common &= keep
    order = [r["example_id"] for r in next(iter(rows.values())) if r["example_id"] in common]
    by_id = {name: {r["example_id"]: r for r in rs} for name, rs in rows.items()}
    preds = {name: metric_inputs(metric, [by_id[name][i] for i in order]) if metric else
             [by_id[name][i]["parsed"] for i in order] for name in rows}
    return preds, [by_id[next(iter(rows))][i]["target"] for i in order]


def clean_evidence(report: RunReport, rows: dict[str, list[dict]]) -> Evidence | None:
    """The decision metric and the paired tests on the test items whose input was not seen in train/dev."""
    leaked = set((report.info.get("leakage") or {}).get("ids") or [])
    if not leaked or not rows:
        return None
    test_ids = {r["example_id"] for rs in rows.values() for r in rs}
    keep = test_ids - leaked
    metric, seed = get_metric(report.metric, report.config), report.config["splits"]["seed"]
    preds, targets = _aligned(rows, keep, metric)
    values = {}
    for name, answers in preds.items():
        low, high = bootstrap_interval(metric, answers, targets, seed=seed) if targets else (None, None)
        values[name] = MetricValue(value=metric.aggregate(answers, targets) if targets else None, low=low, high=high)
    return Evidence(basis=f"the {len(targets)} clean test items (inputs not seen in train/dev)", n=len(targets),
                    values=values, comparisons=comparisons(report, rows, keep) if targets else [])


# -- what each part of a hybrid added ------------------------------------------------------
def contributions(report: RunReport) -> list[Contribution]:
    """Each hybrid against its prompt alone (the prompt arm, base model) and its weights alone (the tuned arm),
    from the paired tests on the decision metric."""
    arms = {a.name: a for a in report.main_arms()}
    out = []
    for arm in report.main_arms():
        if not arm.traits.hybrid:
            continue
        parts = [_part(report, arm, role, arms.get(arm.config.get(key)))
                 for role, key in (("prompt alone", "prompt"), ("weights alone", "tuned"))]
        parts = [p for p in parts if p is not None]
        training = "plain" if (arm.training or {}).get("uses") else "matched"
        found = Contribution(hybrid=arm.name, value=arm.value(report.metric), training=training, parts=parts,
                             steps=(arm.training or {}).get("alternation") or [])
        found.statement = _contribution_statement(found, report.metric)
        out.append(found)
    return out


def _part(report: RunReport, hybrid: ArmResult, role: str, arm: ArmResult | None) -> Part | None:
    if arm is None:
        return None
    part = Part(role=role, arm=arm.name, value=arm.value(report.metric))
    for c in report.comparisons:
        if {c.a, c.b} == {hybrid.name, arm.name}:
            sign = 1 if c.b == hybrid.name else -1  # a comparison's diff is b − a
            low, high = sorted((sign * c.low, sign * c.high))
            part.gain, part.low, part.high = sign * c.diff, low, high
            part.p_holm, part.significant = c.p_holm, c.significant
    return part


def _contribution_statement(c: Contribution, metric: str) -> str:
    """Whether the hybrid is at least as good as its better part, in words."""
    measured = [p for p in c.parts if p.value is not None and p.gain is not None]
    if c.value is None or not measured:
        return ""
    best = max(measured, key=lambda p: p.value)
    if best.gain >= 0 and best.significant:
        verdict = f"better than either part alone: {best.gain:+.3f} over its better part, {best.role} ({best.arm})"
    elif not best.significant:
        verdict = (f"statistically tied with its better part, {best.role} ({best.arm}): {best.gain:+.3f} "
                   f"[{best.low:+.3f}, {best.high:+.3f}]")
    else:
        verdict = (f"worse than its better part, {best.role} ({best.arm}): {best.gain:+.3f} "
                   f"[{best.low:+.3f}, {best.high:+.3f}], Holm p {best.p_holm:.3g}")
    text = f"{c.hybrid} ({metric} {c.value:.3f}) is {verdict}."
    if c.training == "plain":
        text += " Its adapter was trained on the bare input and is asked with a prompt (a train/serve mismatch)."
    return text


# -- re-splits -------------------------------------------------------------------------
def stability(store: Store, report: RunReport, rows: dict[str, list[dict]]) -> Stability | None:
    """With splits.seeds: each arm's decision metric per seed, each seed's own verdict, and the pooled
    evidence (every seed's test answers together, as one larger test set) that decides."""
    seeds = report.config["splits"].get("seeds") or []
    if len(seeds) < 2 or not rows:
        return None
    replicas = {(a.curve.of, a.curve.seed): a for a in report.arms
                if a.curve is not None and a.curve.seed is not None and a.summary is not None}
    by_seed = {seeds[0]: rows}
    for seed in seeds[1:]:
        by_seed[seed] = {name: store.predictions(report.run_id, replicas[name, seed].name) for name in rows
                         if (name, seed) in replicas}
    verdicts = {seed: verdict(Decider(report, _seed_evidence(report, seed, found, replicas)).decide(None))
                for seed, found in by_seed.items() if found}
    pooled = _pooled_evidence(report, by_seed)
    out = Stability(seeds=seeds, metric=report.metric, arms=_spreads(report, seeds, replicas), verdicts=verdicts,
                    pooled=pooled)
    decided = verdict(Decider(report, pooled).decide(None))
    out.agree = sum(v == decided for v in verdicts.values())
    out.stable = out.agree == len(seeds)
    what = "recommended" if decided in rows else "the verdict"
    out.line = (f"{decided} {what} on {out.agree} of {len(seeds)} re-splits" if what == "recommended" else
                f"{decided}: {what} on {out.agree} of {len(seeds)} re-splits")
    return out


def _seed_evidence(report: RunReport, seed: int, rows: dict[str, list[dict]], replicas: dict) -> Evidence:
    """One seed's facts: its arms' stored metrics and their paired comparisons."""
    main = {a.name: a for a in report.main_arms()}
    arms = {name: main[name] if seed == report.config["splits"]["seed"] else replicas[name, seed] for name in rows}
    first = next(iter(arms.values()))
    return Evidence(basis=f"the {first.summary.n} test items of seed {seed}", n=first.summary.n,
                    values={name: a.summary.metrics[report.metric] for name, a in arms.items()},
                    comparisons=comparisons(report, rows))


def _pooled_evidence(report: RunReport, by_seed: dict[int, dict[str, list[dict]]]) -> Evidence:
    """The arms answered on every seed, their answers pooled (an item tested on two seeds counts twice:
    re-splits overlap, so the pooled intervals are somewhat narrower than independent items would give)."""
    names = [n for n in next(iter(by_seed.values())) if all(n in found for found in by_seed.values())]
    pooled = {n: [dict(r, example_id=f"{seed}:{r['example_id']}") for seed, found in by_seed.items()
                  for r in found[n]] for n in names}
    preds, targets = _aligned(pooled)
    metric, seed = get_metric(report.metric, report.config), report.config["splits"]["seed"]
    values = {}
    for name, answers in preds.items():
        low, high = bootstrap_interval(metric, answers, targets, seed=seed)
        values[name] = MetricValue(value=metric.aggregate(answers, targets), low=low, high=high)
    return Evidence(basis=f"the {len(targets)} test answers of {len(by_seed)} re-splits pooled", n=len(targets),
                    values=values, comparisons=comparisons(report, pooled))


def _spreads(report: RunReport, seeds: list[int], replicas: dict) -> dict[str, SeedSpread]:
    import statistics
    out = {}
    for arm in report.main_arms():
        values = {seeds[0]: arm.value(report.metric)}
        values.update({s: replicas[arm.name, s].value(report.metric) for s in seeds[1:] if (arm.name, s) in replicas})
        known = [v for v in values.values() if v is not None]
        out[arm.name] = SeedSpread(values=values, mean=statistics.fmean(known) if known else None,
                                   sd=statistics.stdev(known) if len(known) > 1 else None,
                                   low=min(known, default=None), high=max(known, default=None))
    return out


# -- prompt search ---------------------------------------------------------------------
def search_summary(arm: ArmResult, metric: str) -> SearchSummary:
    """The search behind a searched arm (or a searched fine-tune), and whether its winner held up on test."""
    record = arm.training.get("tune_search") or arm.training
    trials = record["trials"]
    contributions: dict[str, dict[str, list[float]]] = {}
    for t in trials:
        if t["state"] != "complete" or t["value"] is None:
            continue
        for choice, value in t["params"].items():
            contributions.setdefault(choice, {}).setdefault(str(value), []).append(t["value"])
    means = {c: {v: sum(s) / len(s) for v, s in values.items()} for c, values in contributions.items()
             if len(values) > 1}  # a choice that never varied contributed nothing to compare
    test = arm.summary.metrics[metric] if metric in arm.summary.metrics else None
    return SearchSummary(arm=arm.name, kind="fine-tune" if record.get("kind") == "tune search" else "prompt",
                         metric=record.get("metric", metric), dev_items=record["dev_items"],
                         dev_score=record["dev_score"], test_score=test.value if test else None,
                         seconds=record["wall_s"], best=record["best"], trials=trials, contributions=means,
                         overfit=_overfit(record["dev_score"], test))


def _overfit(dev: float | None, test: MetricValue | None) -> str | None:
    if dev is None or test is None or test.value is None or test.low is None:
        return None
    half_width = (test.high - test.low) / 2
    if dev - test.value <= max(0.05, half_width):
        return None
    return (f"The winner scored {dev:.3f} on dev but {test.value:.3f} on test, a drop larger than the test "
            f"interval's half-width ({half_width:.3f}): the search fit its dev items. Search on more dev_items.")


# -- error analysis -------------------------------------------------------------------
def confusion(rows: list[dict], labels: list[str]) -> Confusion:
    predicted = labels + ["(none)"]
    counts = {t: {p: 0 for p in predicted} for t in labels}
    for r in rows:
        target = str(r["target"])
        guess = str(r["parsed"]) if r["parsed"] is not None else "(none)"
        if target in counts:
            counts[target][guess if guess in counts[target] else "(none)"] += 1
    return Confusion(labels=labels, predicted=predicted, counts=counts)


def field_accuracy(rows: list[dict]) -> dict[str, float]:
    """Extraction: per expected key, the share of items whose answer has that key's value right."""
    counts: dict[str, list[int]] = {}
    for r in rows:
        target = r["target"] if isinstance(r["target"], dict) else {}
        answer = r["parsed"] if isinstance(r["parsed"], dict) else {}
        for key, value in target.items():
            right = key in answer and normalize_answer(answer[key]) == normalize_answer(value)
            counts.setdefault(key, []).append(int(right))
    return {key: sum(v) / len(v) for key, v in counts.items()}


def disagreements(rows: dict[str, list[dict]], limit: int = 500) -> list[Disagreement]:
    """Test items (answered by every main arm) where the arms' answers differ."""
    if not rows:
        return []
    common = set.intersection(*(set(r["example_id"] for r in rs) for rs in rows.values()))
    by_id: dict[str, Disagreement] = {}
    for name, rs in rows.items():
        for r in rs:
            if r["example_id"] in common:
                item = by_id.setdefault(r["example_id"], Disagreement(
                    id=r["example_id"], input=r["input"], target=r["target"], answers={}, raw={}))
                item.answers[name] = r["parsed"]
                item.raw[name] = r["raw"]
    out = [item for item in by_id.values() if len({json.dumps(v) for v in item.answers.values()}) > 1]
    return out[:limit]


# -- how much data fine-tuning needed -------------------------------------------------
def data_needs(report: RunReport) -> DataNeeds | None:
    """The learning curves, and how many train examples fine-tuning needed to match prompting / the target."""
    points = [a for a in report.arms if a.curve is not None and a.curve.seed is None and a.summary is not None]
    if not points:
        return None
    metric = report.metric
    arms = {a.name: a for a in report.arms}
    tuned_name = next((a.curve.of for a in points if a.curve.size is not None), None)
    few_name = next((a.curve.of for a in points if a.curve.k is not None), None)
    tuning = _tuning_points(report, points, arms.get(tuned_name)) if tuned_name else []
    shots = _shot_points(points, arms.get(few_name), metric) if few_name else []
    prompting = [a for a in report.main_arms() if a.traits.prompting]
    best = max(prompting, key=lambda a: a.value(metric), default=None)
    target = report.config.get("target") or {}
    needs = DataNeeds(metric=metric, fine_tuning=tuning, few_shot=shots,
                      best_prompting=BestArm(arm=best.name, value=best.value(metric)) if best else None,
                      target=target.get("value") if target.get("metric") == metric else None)
    if best:
        needs.to_match_prompting = _first_reaching(tuning, best.value(metric))
    if needs.target is not None:
        needs.to_reach_target = _first_reaching(tuning, needs.target)
    needs.statements = _statements(needs)
    return needs


def _tuning_points(report: RunReport, points: list[ArmResult], final: ArmResult | None) -> list[TuningPoint]:
    arms = {a.name: a for a in report.arms}
    curve = [a for a in points if a.curve.of == (final.name if final else None) and a.curve.size is not None]
    out = [TuningPoint(arm=a.name, examples=(training_record(a, arms).get("train_examples") or a.curve.size),
                       value=a.value(report.metric), train_s=training_record(a, arms).get("wall_s"))
           for a in curve]
    if final is not None and final.summary is not None:
        record = training_record(final, arms)
        out.append(TuningPoint(arm=final.name, examples=record.get("train_examples"),
                               value=final.value(report.metric), train_s=record.get("wall_s")))
    return sorted(out, key=lambda p: p.examples or 0)


def _shot_points(points: list[ArmResult], final: ArmResult | None, metric: str) -> list[ShotPoint]:
    """One point per k: the mean over the example sets drawn, with the lowest and highest."""
    name = final.name if final else None
    arms = [a for a in points if a.curve.of == name and a.curve.k is not None]
    if final is not None and final.summary is not None:
        arms.append(final)
    by_k: dict[int, list[ArmResult]] = {}
    for a in arms:
        by_k.setdefault(a.curve.k if a.curve else a.config.get("k"), []).append(a)
    out = []
    for k, group in sorted(by_k.items()):
        values = [a.value(metric) for a in group if a.value(metric) is not None]
        main = min(group, key=lambda a: (a.curve.draw or 0) if a.curve else 0)
        out.append(ShotPoint(arm=main.name, k=k, value=sum(values) / len(values) if values else None,
                             low=min(values, default=None), high=max(values, default=None), draws=len(group)))
    return out


def _first_reaching(points: list[TuningPoint], level: float | None) -> int | None:
    if level is None:
        return None
    return next((p.examples for p in points if p.value is not None and p.value >= level), None)


def _statements(needs: DataNeeds) -> list[str]:
    metric, out = needs.metric, []
    best = needs.best_prompting
    tried = ", ".join(str(p.examples) for p in needs.fine_tuning)
    if best and needs.fine_tuning:
        n = needs.to_match_prompting
        out.append(f"Fine-tuning matched the best prompting arm ({best.arm}, {metric} {best.value:.3f}) "
                   f"with {n} training examples." if n is not None else
                   f"Fine-tuning did not match the best prompting arm ({best.arm}, {metric} "
                   f"{best.value:.3f}) at any train size tried ({tried}).")
    if needs.target is not None and needs.fine_tuning:
        n = needs.to_reach_target
        out.append(f"It reached the target {metric} {needs.target:g} with {n} training examples."
                   if n is not None else
                   f"It did not reach the target {metric} {needs.target:g} at any train size tried ({tried}).")
    return out
