"""The framework's trade-off table (method, quality, cost, speed, flexibility, data required, use case),
filled with this run's measurements for the leading arm of each kind."""

from __future__ import annotations

from .costs import money, spent_seconds, training_record
from .decision import KINDS, ci_text, evidence
from .effort import effort_text
from .model import FrameworkRow, FrameworkTable, RunReport


def framework_table(report: RunReport) -> FrameworkTable | None:
    """Method, cost, speed, flexibility, data required and use case for the leading arm of each kind."""
    main = report.main_arms()
    if not main or report.decision is None:
        return None
    facts = evidence(report)[0]  # the same items the verdict was decided on
    quality = (lambda a: facts.values[a.name].value) if facts else (lambda a: a.value(report.metric))
    leaders = []
    for family in ("prompt", "fine-tune", "hybrid", "retrieval"):
        arms = [a for a in main if a.family == family and quality(a) is not None]
        if arms:
            leaders.append((family, max(arms, key=quality)))
    columns = [f"{KINDS[f]}: {a.name}" for f, a in leaders]
    quality_cell = lambda report, arm: _quality_text(report, arm, facts)  # noqa: E731
    measured = [("consistency", _consistency_cell, lambda a: a.summary.consistency is not None),
                ("facts not in training", _unseen_cell, lambda a: a.summary.by_answer is not None)]
    extra = [(label, cell) for label, cell, has in measured if any(has(a) for _, a in leaders)]
    rows = [FrameworkRow(label=label, cells=[cell(report, a) for _, a in leaders]) for label, cell in (
        ("method", _method_cell), ("quality", quality_cell), *extra, ("effort", _effort_cell), ("cost", _cost_cell),
        ("speed", _speed_cell),
        ("flexibility", _flexibility_cell), ("data required", _data_cell), ("use case", _use_cell))]
    return FrameworkTable(columns=columns, rows=rows)


def _consistency_cell(report: RunReport, arm) -> str:
    """How often the arm gives the same answer: sampled again, and asked in other words."""
    c = arm.summary.consistency
    if c is None or c.sample_agreement is None:
        return "not measured"
    text = f"the same answer in {c.sample_agreement:.0%} of {c.samples} samples at temperature {c.temperature:g}"
    if c.sample_similarity is not None:
        text += f" (token F1 {c.sample_similarity:.2f} between two samples)"
    if c.paraphrase_agreement is not None:
        text += f", {c.paraphrase_agreement:.0%} across {c.paraphrases} reworded instructions"
    return text + f" ({c.items} items)"


def _unseen_cell(report: RunReport, arm) -> str:
    """Quality on test items whose answer no train example has, beside those whose answer training saw."""
    groups = arm.summary.by_answer
    if groups is None or report.metric not in groups["unseen"].metrics:
        return "not measured"
    new, seen = groups["unseen"], groups["seen"]
    m, k = new.metrics[report.metric], seen.metrics[report.metric]
    text = (f"{report.metric} {m.value:.3f} (95% CI {ci_text(m)}) on the {new.n} test items whose answer no "
            f"train example has; {k.value:.3f} (95% CI {ci_text(k)}) on the {seen.n} whose answer training saw")
    exact = "exact_match"  # whether the facts were stated word for word, beside a metric of overlap
    if report.metric != exact and exact in new.metrics:
        text += f"; {exact} {new.metrics[exact].value:.3f} and {seen.metrics[exact].value:.3f}"
    return text


def _method_cell(report: RunReport, arm) -> str:
    return arm.method


def _quality_text(report: RunReport, arm, facts) -> str:
    if facts is not None and facts is report.clean:
        m = facts.values[arm.name]
        return f"{report.metric} {m.value:.3f} (95% CI {ci_text(m)}) on the {facts.n} clean test items"
    m = arm.summary.metrics[report.metric]
    return f"{report.metric} {m.value:.3f} (95% CI {ci_text(m)})"


def _cost_cell(report: RunReport, arm) -> str:
    c = report.costs[arm.name]
    text = f"{money(c.per_1k, report.currency)} per 1,000 requests"
    if c.one_time:
        work = "search" if (arm.training or {}).get("kind") == "search" else "training"
        text += f"; {money(c.one_time, report.currency)} once ({work})"
    if c.monthly is not None:
        text += f"; {money(c.monthly + c.one_time / 12, report.currency)} a month at the stated volume"
    return text


def _train_s(report: RunReport, arm) -> float:
    return spent_seconds(training_record(arm, {a.name: a for a in report.arms}))


def _effort_cell(report: RunReport, arm) -> str:
    effort = report.effort.get(arm.name)
    if effort is None:
        return "not recorded"
    spent = money(effort.money, report.currency) if effort.money else None
    return effort_text(effort, spent)


def _speed_cell(report: RunReport, arm) -> str:
    evaluate = arm.wall_s or 0.0
    train = _train_s(report, arm)
    if train:
        work = "search" if (arm.training or {}).get("kind") == "search" else "training"
        return (f"first usable result after {train + evaluate:,.0f} s ({train:,.0f} s {work} + {evaluate:,.0f} s "
                f"evaluation)")
    return f"first usable result after {evaluate:,.0f} s (evaluation only)"


def _flexibility_cell(report: RunReport, arm) -> str:
    evaluate = arm.wall_s or 0.0
    if arm.traits.trains_weights:
        return f"a change of behaviour means retraining: {_train_s(report, arm) + evaluate:,.0f} s measured"
    return f"a change of behaviour is a prompt edit, re-evaluated in {evaluate:,.0f} s"


def _data_cell(report: RunReport, arm) -> str:
    text = arm.data_required
    needs = report.data_needs
    if arm.traits.fine_tune and needs and needs.fine_tuning:
        n = needs.to_match_prompting
        text += (f"; {n} examples matched the best prompt" if n is not None
                 else "; no train size tried matched the best prompt")
    return text


def _use_cell(report: RunReport, arm) -> str:
    d = report.decision
    if d.recommended == arm.name:
        return f"Recommended ({d.kind}) for this task."
    if d.kind == "nothing meets the target":
        return "Not good enough: no arm meets the target." + (" Closest." if d.closest == arm.name else "")
    if d.kind == "withheld":
        return "Undecided: the test leaked."
    if arm.traits.prompting:
        return "A prompting alternative: scores alike or lower, or costs more." \
            if d.kind in ("prompting", "retrieval") \
            else "Not enough here: the recommended arm is significantly better or cheaper at the stated volume."
    return "Not worth it here: no significant gain at the minimum gain, or no stated volume to pay it back." \
        if d.kind in ("prompting", "retrieval") else "An alternative to the recommended arm."
