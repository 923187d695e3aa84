"""tunewise: prompt engineering, fine-tuning, or both? Measured on your own task."""

from . import registry
from .errors import DataError, Interrupted, TaskFileError, TunewiseError
from .execution.runner import RunResult, run
from .task import Task, load_task, validate_task

registry.load_plugins()  # the built-in arm types, metrics, assertions and backends, then installed plugins

__all__ = ["DataError", "Interrupted", "RunResult", "Task", "TaskFileError", "TunewiseError", "load_task", "run",
           "validate_task"]
__version__ = "0.1.0"
