"""The checks across a task's fields: arms that name other arms, metrics the task can measure, what a
task without targets may do. Each error names the field it is about, so the task file's line is found."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .. import registry
from ..traits import Traits
from .schema import FieldError, arm_name, assertion_metric_name

if TYPE_CHECKING:
    from .model import Task

DECLARED = ("assertions", "rubric")  # metric names the task file's assertions and judge bring


def declared_names(assertions: list[dict], judge: dict | None) -> list[str]:
    """The metrics a task file declares: each assertion, all of them passed, and the judge's rubric."""
    names = [assertion_metric_name(a) for a in assertions]
    if assertions:
        names.append("assertions")
    if judge and judge.get("rubric"):
        names.append("rubric")
    return names


def traits_of(arm_type: str | None) -> Traits:
    """An arm type's traits; a type no arm class registers has none of them."""
    return registry.traits(arm_type or "") or Traits(asks_with_prompt=False)


def builtin_metric(name: str):
    return registry.find("metric", name)


def check_task(task: "Task") -> None:
    """The checks across a task's fields; each error names the field it is about."""
    if task.splits.group_by and task.data.split_column:
        raise FieldError("has no effect with data.split_column: the column fixes the splits", "splits", "group_by")
    if task.type == "extraction" and not task.json_keys:
        raise FieldError("an extraction task needs json_keys: the keys the answer's JSON object must have",
                         "type")
    if task.labels and task.type != "classification":
        raise FieldError(f"labels are for classification tasks, not {task.type}", "labels")
    if task.data.target is not None and task.data.target in task.data.input_fields():
        raise FieldError(f"uses the target field {task.data.target!r}: the answer would be in the question",
                         "data", "input")
    names = [arm_name(a) for a in task.arms]
    for i, arm in enumerate(task.arms):
        if names[i] in names[:i]:
            raise FieldError(f"arm names must be unique; {names[i]!r} is repeated: give one a `name:`",
                             "arms", i)
        if arm.decoding == "constrained" and task.type != "classification":
            raise FieldError(f"arm {arm_name(arm)!r}: constrained decoding needs a classification task",
                             "arms", i, "decoding")
        if arm.calibrate and arm.decoding != "constrained":
            raise FieldError(f"arm {arm_name(arm)!r}: calibrate needs decoding: constrained",
                             "arms", i, "calibrate")
        if traits_of(arm.type).retrieves and task.knowledge is None:
            raise FieldError(f"arm {arm_name(arm)!r} retrieves passages, and the task has no knowledge "
                             f"source: add knowledge: {{path: ..., field: text}}", "arms", i)
        train = getattr(arm, "train", None)
        if train is not None and train.loss_on == "all_assistant" and not task.data.conversation:
            raise FieldError(f"arm {arm_name(arm)!r}: all_assistant learns every assistant message of a "
                             f"conversation, and the task's rows are single inputs (data.input)",
                             "arms", i, "train", "loss_on")
        if getattr(arm, "query", "user_turns") != "user_turns" and not task.data.conversation:
            raise FieldError(f"arm {arm_name(arm)!r}: query chooses which turns of a conversation to search "
                             f"with, and the task's rows are single inputs (data.input)", "arms", i, "query")
    _check_declared_metrics(task)
    for name in task.metrics or []:
        if name not in task.known_metrics():
            raise FieldError(f"unknown metric {name!r}; known: {', '.join(task.known_metrics())}", "metrics")
        metric = builtin_metric(name)
        if metric and task.type not in metric.tasks:
            raise FieldError(f"{name} does not apply to a {task.type} task; it applies to "
                             f"{' and '.join(metric.tasks)} tasks", "metrics")
    _check_references(task)

def _check_references(task: "Task") -> None:
    kinds = {arm_name(a): a.type for a in task.arms}
    for i, arm in enumerate(task.arms):
        for field, name, families in arm.references():
            if registry.family(kinds.get(name, "")) not in families:
                allowed = [t for t in registry.arm_types() if registry.family(t) in families]
                raise FieldError(f"arm {arm_name(arm)!r}: {field} {name!r} is not the name of "
                                 f"a {' or '.join(families)} arm of the task ({', '.join(allowed)}); add "
                                 f"that arm or name one the task has", "arms", i, field)
        problem = arm.check_types(kinds)
        if problem:
            raise FieldError(f"arm {arm_name(arm)!r}: {problem[0]}", "arms", i, problem[1])
    if task.learning_curve:
        _check_curve(task, kinds)
    target_metric = task.target.metric if task.target else None
    for loc, name in ((("target", "metric"), target_metric), (("primary_metric",), task.primary_metric)):
        if name is not None and name not in task.known_metrics():
            raise FieldError(f"unknown metric {name!r}; known: {', '.join(task.known_metrics())}", *loc)
        metric = builtin_metric(name) if name is not None else None
        if metric and task.type not in metric.tasks:
            raise FieldError(f"{name} does not apply to a {task.type} task", *loc)
    if task.decision_metric()[0] == "rubric":
        picky = next((arm_name(a) for a in task.arms if traits_of(a.type).selects_on_dev), None)
        if picky:
            raise FieldError(f"the judge's rubric scores only the test answers, and arm {picky!r} selects on "
                             f"dev with the decision metric; decide on an assertion or a reference metric",
                             "primary_metric" if task.primary_metric else "target")
    if target_metric and task.primary_metric and target_metric != task.primary_metric:
        raise FieldError(f"primary_metric {task.primary_metric!r} differs from the target's metric "
                         f"{task.target.metric!r}: the verdict is decided on one metric", "primary_metric")


def _check_curve(task: "Task", kinds: dict[str, str]) -> None:
    """A learning curve varies a fine-tune arm's train examples, a few-shot arm's worked examples, or both."""
    curve = task.learning_curve
    roles = {name: traits_of(kind).curve for name, kind in kinds.items()}
    if curve.arm and roles.get(curve.arm) != "train_size":
        raise FieldError(f"{curve.arm!r} is not a lora or full arm of the task", "learning_curve", "arm")
    if curve.few_shot_arm and roles.get(curve.few_shot_arm) != "examples":
        raise FieldError(f"{curve.few_shot_arm!r} is not a few_shot arm of the task",
                         "learning_curve", "few_shot_arm")
    if not any(roles.values()):
        raise FieldError("needs a lora, full or few_shot arm to vary; the task has none", "learning_curve")
    tuned = "train_size" in roles.values() and any(s != "all" for s in curve.sizes)
    if not tuned and not (curve.ks and "examples" in roles.values()):
        raise FieldError("has no point to run: give sizes (with a lora or full arm) or ks (with a "
                         "few_shot arm)", "learning_curve")


def _check_declared_metrics(task: "Task") -> None:
    """Assertion names distinct from each other and from the built-in metrics; a task without targets
    scored only by metrics that need none; a judge's pairs naming arms of the task."""
    seen: list[str] = []
    for i, assertion in enumerate(task.assertions):
        name = assertion.metric_name()
        if builtin_metric(name) or name in DECLARED:
            raise FieldError(f"{name!r} is a built-in metric's name; give the assertion another name:",
                             "assertions", i, "name")
        if name in seen:
            raise FieldError(f"two assertions are named {name!r}; give one a `name:`", "assertions", i)
        seen.append(name)
    arm_names = [arm_name(a) for a in task.arms]
    for i, pair in enumerate(task.judge.pairs if task.judge else []):
        missing = next((n for n in pair if n not in arm_names), None)
        if missing is not None:
            raise FieldError(f"{missing!r} is not an arm of the task ({', '.join(arm_names)})", "judge", "pairs", i)
    if not task.data.has_target:
        _check_reference_free(task)


def _check_reference_free(task: "Task") -> None:
    if task.type != "generation":
        raise FieldError(f"required for a {task.type} task (only a generation task scored by assertions or a "
                         f"judge may go without targets)", "data", "target")
    if not task.declared_metrics():
        raise FieldError("is missing and nothing else can score the answers: a generation task without "
                         "targets needs assertions or a judge rubric", "data", "target")
    needing = [n for n in task.metrics or [] if builtin_metric(n) and builtin_metric(n).needs_target]
    if needing:
        raise FieldError(f"{needing[0]} compares answers with targets, and the task has none (data.target); "
                         f"score with assertions or a judge", "metrics")
    if "arms" not in task.model_fields_set:  # the default arms: few_shot needs worked answers
        task.arms = [a for a in task.arms if not traits_of(a.type).shows_answers]
    for i, arm in enumerate(task.arms):
        traits = traits_of(arm.type)
        if traits.shows_answers or traits.trains_weights:
            what = "trains on" if traits.trains_weights else "shows the model"
            raise FieldError(f"arm {arm_name(arm)!r} {what} worked answers, and the task has no target "
                             f"column (data.target): add one with the answers, or drop the arm", "arms", i)
    if task.learning_curve is not None:
        raise FieldError("varies the worked answers, and the task has none (data.target)", "learning_curve")

