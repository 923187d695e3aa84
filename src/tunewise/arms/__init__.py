"""Arms: the ways of getting answers that a run compares, found by type name in a registry.

Adding an arm type is one new module: a subclass of `Arm` with its pydantic `Config` (whose `type`
literal names it), decorated with `@register`, and imported here (or by the user before loading a task).
"""

from __future__ import annotations

from .base import Arm, ArmContext, Prediction
from ..registry import arm_class, build, family, method, register, types
from . import prompt, retrieval, searched, tuned  # noqa: E402,F401  the built-in arm types register themselves
from .prompt import FewShotConfig, PromptArm, StructuredConfig, ZeroShotConfig
from .tuned import FineTuneConfig, HybridConfig

__all__ = ["Arm", "ArmContext", "FewShotConfig", "FineTuneConfig", "HybridConfig", "Prediction", "PromptArm",
           "StructuredConfig", "ZeroShotConfig", "arm_class", "build", "family", "method",
           "register", "types"]
