"""A budget the plan is cut to fit: search trials, then the learning curve, then consistency samples, then
training epochs, each down to a floor, in that order; refused when even the smallest plan does not fit."""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

from ..errors import TunewiseError
from ..task import Task, arm_name

if TYPE_CHECKING:
    from .plan import Plan

MIN_SEARCH_TRIALS = 4      # fewer and the prompt search is barely a search
MIN_TUNE_TRIALS = 2
MIN_SAMPLES = 2
MIN_CONSISTENCY_ITEMS = 5


class BudgetError(TunewiseError):
    """Even the smallest plan does not fit the budget."""


def over(plan: Plan, budget) -> bool:
    return bool((budget.minutes and plan.seconds > budget.minutes * 60) or
                (budget.money and plan.money > budget.money))


def fit(task: Task, budget, count: Callable[[Task], Plan], file: str = "<task>") -> tuple[Task, Plan]:
    """The task cut, step by step in the stated order, until its plan fits the budget; what was cut is in the
    plan's `cuts`."""
    plan = count(task)
    cuts: list[str] = []
    for step in STEPS:
        while over(plan, budget):
            cut = step(task)
            if cut is None:
                break
            task, said = cut
            cuts.append(said)
            plan = count(task)
    plan.cuts = cuts
    plan.budget = {k: v for k, v in budget.model_dump().items() if v is not None}
    if over(plan, budget):
        raise BudgetError(f"even the smallest plan needs {_spent(plan)}, more than the budget of {_said(budget)} "
                          f"(cut: {'; '.join(cuts) or 'nothing left to cut'}); raise the budget or remove arms",
                          file=file, field="budget")
    return task, plan


def _spent(plan: Plan) -> str:
    money = f" and {plan.money:.4g} {plan.currency}" if plan.money else ""
    return f"about {plan.seconds / 60:.1f} min{money}"


def _said(budget) -> str:
    parts = ([f"{budget.minutes:g} min"] if budget.minutes else []) + ([f"{budget.money:g}"] if budget.money else [])
    return " and ".join(parts)


def _arms(task: Task, arms: list) -> Task:
    return task.model_copy(update={"arms": arms})


def fewer_trials(task: Task):
    """Halve the largest search (prompt or fine-tune) still above its floor."""
    for i, arm in enumerate(task.arms):
        search = getattr(arm, "search", None)
        floor = MIN_SEARCH_TRIALS if arm.type == "searched" else MIN_TUNE_TRIALS
        if search is not None and hasattr(search, "trials") and search.trials > floor:
            trials = max(floor, search.trials // 2)
            arms = list(task.arms)
            arms[i] = arm.model_copy(update={"search": search.model_copy(update={"trials": trials})})
            return _arms(task, arms), f"{arm_name(arm)}: search trials {search.trials} → {trials}"
    return None


def smaller_curve(task: Task):
    """Drop the learning curve's largest point (train size, then shot count); then the curve."""
    curve = task.learning_curve
    if curve is None:
        return None
    sizes = [s for s in curve.sizes if s != "all"]
    if sizes:
        kept = [s for s in curve.sizes if s != max(sizes)]
        return task.model_copy(update={"learning_curve": curve.model_copy(update={"sizes": kept})}), \
            f"learning curve: train size {max(sizes)} dropped"
    if curve.draws > 1:
        return task.model_copy(update={"learning_curve": curve.model_copy(update={"draws": 1})}), \
            f"learning curve: draws {curve.draws} → 1"
    return task.model_copy(update={"learning_curve": None}), "learning curve: dropped"


def fewer_samples(task: Task):
    """Fewer consistency samples, then fewer items, then no consistency pass."""
    c = task.consistency
    if not c.enabled:
        return None
    if c.samples > MIN_SAMPLES:
        return task.model_copy(update={"consistency": c.model_copy(update={"samples": c.samples - 1})}), \
            f"consistency: samples {c.samples} → {c.samples - 1}"
    if c.max_items > MIN_CONSISTENCY_ITEMS:
        items = max(MIN_CONSISTENCY_ITEMS, c.max_items // 2)
        return task.model_copy(update={"consistency": c.model_copy(update={"max_items": items})}), \
            f"consistency: items {c.max_items} → {items}"
    return task.model_copy(update={"consistency": c.model_copy(update={"enabled": False})}), "consistency: off"


def fewer_epochs(task: Task):
    """One epoch fewer for the fine-tune arm training the most, down to one."""
    tuned = [(i, a) for i, a in enumerate(task.arms) if a.type in ("lora", "full") and a.train.epochs > 1]
    if not tuned:
        return None
    i, arm = max(tuned, key=lambda pair: pair[1].train.epochs)
    arms = list(task.arms)
    arms[i] = arm.model_copy(update={"train": arm.train.model_copy(update={"epochs": arm.train.epochs - 1})})
    return _arms(task, arms), f"{arm_name(arm)}: epochs {arm.train.epochs} → {arm.train.epochs - 1}"


STEPS = (fewer_trials, smaller_curve, fewer_samples, fewer_epochs)
ORDER = "search trials, then the learning curve, then consistency samples, then training epochs"
