"""The results store: SQLite holding runs, arms, resolved configurations, predictions, training logs and
the answer cache, with a versioned schema (`store.sqlite`); any backend's answers cached in it (`store.cache`).
"""

from __future__ import annotations

from .sqlite import Store

__all__ = ["Store"]
