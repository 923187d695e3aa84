"""tunewise: prompt engineering, fine-tuning, or both? Measured on your own task."""

from .config import Task, load_task, validate_task
from . import arms  # noqa: E402,F401  registers the built-in arm types, which completes Task
from .errors import DataError, Interrupted, TaskFileError, TunewiseError
from .runner import RunResult, run

__all__ = ["DataError", "Interrupted", "RunResult", "Task", "TaskFileError", "TunewiseError", "load_task", "run",
           "validate_task"]
__version__ = "0.1.0"
