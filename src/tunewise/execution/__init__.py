"""Carrying out a run: the checks before any model work (`execution.checks`), the run itself, resumable
(`execution.runner`), and its units, here or on Ray (`execution.executor`, `execution.ray_executor`)."""
