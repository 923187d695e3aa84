"""The task: what to solve, as a typed configuration (`Task`), read from YAML with errors naming file,
line and field (`task.loading`); its sections (`task.schema`) and the checks across them (`task.rules`);
its data read, checked and split (`task.data`); answers read in its shape (`task.parsing`).
"""

from __future__ import annotations

from .loading import load_task, validate_task
from .model import DEFAULT_METRICS, Task
from .schema import (
                     ArmSettings,
                     AssertionSettings,
                     ConsistencyConfig,
                     Criterion,
                     DataConfig,
                     Endpoint,
                     ExecutorConfig,
                     FieldError,
                     GenerationConfig,
                     JudgeConfig,
                     KnowledgeConfig,
                     LearningCurve,
                     Levers,
                     ModelPrice,
                     Prices,
                     SplitConfig,
                     Strict,
                     Target,
                     TrainSettings,
                     arm_name,
                     indistinct,
)

__all__ = ["DEFAULT_METRICS", "ArmSettings", "AssertionSettings", "ConsistencyConfig", "Criterion", "DataConfig",
           "Endpoint", "ExecutorConfig", "FieldError", "GenerationConfig", "JudgeConfig", "KnowledgeConfig",
           "LearningCurve", "Levers", "ModelPrice", "Prices", "SplitConfig", "Strict", "Target", "Task",
           "TrainSettings", "arm_name", "indistinct", "load_task", "validate_task"]
