"""tunewise: prompt engineering, fine-tuning, or both? Measured on your own task."""

from . import registry

registry.load_plugins()  # first: the built-in arm types, metrics, assertions and backends, then installed plugins

from .errors import DataError, Interrupted, TaskFileError, TunewiseError  # noqa: E402
from .execution.runner import RunResult, make_plan, run  # noqa: E402
from .task import Task, load_task, validate_task  # noqa: E402

__all__ = ["DataError", "Interrupted", "RunResult", "Task", "TaskFileError", "TunewiseError", "load_task",
           "make_plan", "run", "validate_task"]
__version__ = "0.1.0"
