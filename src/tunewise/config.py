"""The task's configuration, under the name it had before the package was laid out by role.

Kept for users' code (`from tunewise.config import Task`); tunewise itself imports `tunewise.task`.
"""

from .task import *  # noqa: F401,F403
from .task import __all__  # noqa: F401
