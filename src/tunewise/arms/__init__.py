"""Arms: the ways of getting answers that a run compares."""

from __future__ import annotations

from ..config import PROMPT_ARMS, TRAINED_ARMS, Task
from .base import Arm, ArmContext, Prediction
from .prompt import PromptArm

__all__ = ["Arm", "ArmContext", "Prediction", "PromptArm", "build_arm"]


def build_arm(config, task: Task, labels: list[str], configs: dict | None = None) -> Arm:
    """An arm from its configuration; `configs` (name -> config) resolves references to other arms."""
    configs = configs or {}
    if config.type in PROMPT_ARMS:
        return PromptArm(config, task, labels)
    from .tuned import Hybrid, TunedArm
    if config.type in TRAINED_ARMS:
        return TunedArm(config, task, labels, configs.get(config.prompt) if config.prompt != "bare" else None)
    if config.type == "hybrid":
        return Hybrid(config, task, labels, configs[config.prompt])
    raise ValueError(f"unknown arm type {config.type!r}")
