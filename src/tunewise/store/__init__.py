"""The results store: SQLite holding runs, arms, resolved configurations, predictions, training logs and
the answer cache, with a versioned schema (`store.sqlite`); any backend's answers cached in it (`store.cache`);
the records by which tunewise knows the files it writes for the user again (`store.owned`).
"""

from __future__ import annotations

from .sqlite import Store

__all__ = ["Store"]
