"""Carrying out a run: the checks before any model work (`run.checks`), the run itself, resumable
(`run.runner`), and its units, here or on Ray (`run.executor`, `run.ray_executor`)."""
