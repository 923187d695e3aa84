"""Every metric found by name: the registered ones (built-in or a plugin's) and those a task declares (one
per assertion, `assertions` for all of them passed, a judge's `rubric`)."""

from __future__ import annotations

from typing import Any

from ..registry import find
from ..task.rules import declared_names
from .assertions import assertion_metrics
from .metrics import Metric, stored_score


def get_metric(name: str, task: Any = None) -> Metric:
    """A registered metric (built-in or a plugin's), or one the task declares (an assertion, `assertions`,
    `rubric`); `task` is a Task or a stored resolved configuration. KeyError when neither has it."""
    registered = find("metric", name)
    if registered is not None:
        return registered
    if task is not None:
        found = declared_metrics(task).get(name)
        if found is not None:
            return found
    raise KeyError(name)


def declared_metrics(task: Any) -> dict[str, Metric]:
    """The metrics a task file declares, built from its assertions and judge."""
    config = task if isinstance(task, dict) else task.model_dump(mode="json")
    names = declared_names(config.get("assertions") or [], config.get("judge"))
    out = assertion_metrics(config.get("assertions") or [])  # the same names, each with its Metric
    if "rubric" in names:
        out["rubric"] = Metric("rubric", stored_score, needs_target=False, stored=True)
    return out
