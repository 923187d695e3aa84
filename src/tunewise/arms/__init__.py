"""Arms: the ways of getting answers that a run compares, found by type name in the registry.

Adding an arm type is one module: a subclass of `Arm` with its pydantic `Config` (whose `type` literal
names it) and its `traits`, decorated with `@register`, imported by the user before loading a task or
named in the `tunewise.arms` entry point group. The built-in types register the same way. An arm's own
helpers live here too: prompt rendering (`arms.prompts`) and the retrieval arm's passages (`arms.knowledge`).
"""

from __future__ import annotations

from ..registry import arm_class, family, method, traits
from ..registry import arm_types as types
from ..registry import register_arm as register
from .base import Arm, ArmContext, Prediction
from .prompt import FewShotConfig, PromptArm, StructuredConfig, ZeroShotConfig
from .retrieval import RetrievalConfig  # before tuned: the built-in types register in the order reports list
from .searched import SearchedConfig
from .tuned import FineTuneConfig, HybridConfig

__all__ = ["Arm", "ArmContext", "FewShotConfig", "FineTuneConfig", "HybridConfig", "Prediction", "PromptArm",
           "RetrievalConfig", "SearchedConfig", "StructuredConfig", "ZeroShotConfig", "arm_class", "build", "family",
           "method",
           "register", "traits", "types"]


def build(config, task, labels: list[str], configs: dict | None = None):
    """An arm from its configuration; `configs` (name -> config) resolves references to other arms."""
    return arm_class(config.type)(config, task, labels, configs or {})
