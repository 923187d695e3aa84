"""Errors a user can fix: each renders as one line naming file, line and field."""

from __future__ import annotations


class TunewiseError(Exception):
    """A problem with the user's input, reported without a traceback."""

    exit_code = 2  # the command line's exit status: 2 for bad input, 1 for a failure at run time

    def __init__(self, message: str, *, file: str | None = None, line: int | None = None,
                 field: str | None = None):
        super().__init__(message)
        self.message = message
        self.file = file
        self.line = line
        self.field = field

    def __str__(self) -> str:
        where = ""
        if self.file:
            where = f"{self.file}:{self.line}: " if self.line else f"{self.file}: "
        field = f"{self.field}: " if self.field else ""
        return f"{where}{field}{self.message}"


class DataError(TunewiseError):
    """A row of the dataset is unusable."""


class TaskFileError(TunewiseError):
    """The task file is not valid."""


class LeakageError(TunewiseError):
    """The same input appears in the test split and a split used for preparation."""


class StoreError(TunewiseError):
    """The results store cannot be used: not tunewise's, from a newer tunewise, unreadable or unwritable."""


class RunError(TunewiseError):
    """The input was valid but the run failed while working (a model or server failed, a disk filled)."""

    exit_code = 1


class MissingDependencyError(TunewiseError):
    """An optional package is needed; the message says how to install it."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C (SIGINT) or `kill` (SIGTERM) stopped a run; what finished is saved.

    A subclass, so `except KeyboardInterrupt` still catches it. Being a subclass also keeps CPython from
    exiting through SIGINT afterwards: an exact KeyboardInterrupt raised inside exec'd code (a dataclass
    being defined during an import) marks the process "interrupted" even when the exception is handled.
    """

    def __init__(self, signum: int = 2):
        super().__init__(signum)
        self.signum = signum
