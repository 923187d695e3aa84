"""Arms: the ways of getting answers that a run compares."""

from __future__ import annotations

from ..config import Task
from .base import Arm, Prediction
from .prompt import PromptArm

__all__ = ["Arm", "Prediction", "PromptArm", "build_arm"]


def build_arm(config, task: Task, labels: list[str]) -> Arm:
    if config.type in ("zero_shot", "structured", "few_shot"):
        return PromptArm(config, task, labels)
    raise ValueError(f"unknown arm type {config.type!r}")
