"""A backend wrapper that answers from the store's cache and saves every new answer as it arrives."""

from __future__ import annotations

import inspect

from ..backends.base import Backend, ChoiceScores, Generation, GenRequest, Progress, ScoreRequest, request_key
from .sqlite import Store

# requests a local backend computes and saves together: Ctrl-C loses at most one chunk's work. 64 cost
# 20% of the demo's prompt-arm time against 256 (each chunk decodes in smaller batches and recomputes the
# shared prefix); 256 is a few seconds of work on a 2-core laptop.
CHUNK = 256


class CachedBackend:
    def __init__(self, inner: Backend, store: Store, chunk: int | None = None, scope: str = ""):
        self.inner = inner
        self.store = store
        self.chunk = chunk or CHUNK
        self.model_key = inner.model_key
        self.scope = scope  # measure mode: the run id, so answers from other runs are never reused

    def generate(self, requests: list[GenRequest], progress: Progress | None = None) -> list[Generation]:
        return self._run(requests, "generate", self.inner.generate, Generation, progress)

    def score_choices(self, requests: list[ScoreRequest],
                      progress: Progress | None = None) -> list[ChoiceScores]:
        return self._run(requests, "score", self.inner.score_choices, ChoiceScores, progress)

    def _run(self, requests, kind, send, cls, progress):
        keys = [request_key(self.model_key + (f"#{self.scope}" if self.scope else ""), r) for r in requests]
        hits = self.store.cache_get(keys)
        results = [None] * len(requests)
        for i, key in enumerate(keys):
            if key in hits:
                results[i] = cls(**dict(hits[key], cached=True))
        if progress and hits:
            progress(sum(r is not None for r in results))
        todo = [i for i, r in enumerate(results) if r is None]
        streaming = "on_result" in inspect.signature(send).parameters
        # a concurrent backend hands over each answer as it arrives and it is saved at once (a kill loses only
        # requests in flight), so it gets everything in one call: chunks would drain its C requests in flight.
        # Other backends are sent and saved a chunk at a time: Ctrl-C loses at most one chunk's work.
        size = max(1, len(todo)) if streaming else self.chunk
        for start in range(0, len(todo), size):
            part = todo[start:start + size]
            if streaming:
                def save(j, answer, part=part):
                    self.store.cache_put(self.model_key, kind, [(keys[part[j]], answer)])
                answers = send([requests[i] for i in part], progress, on_result=save)
            else:
                answers = send([requests[i] for i in part], progress)
                self.store.cache_put(self.model_key, kind, [(keys[i], a) for i, a in zip(part, answers)])
            for i, answer in zip(part, answers):
                results[i] = answer
        return results
