"""A deterministic backend for tests: no model, answers derived from the prompt."""

from __future__ import annotations

import hashlib
from typing import Callable

from ..registry import BackendType, register_backend
from .base import ChoiceScores, Generation, GenRequest, Message, Progress, ScoreRequest, finish_text

Responder = Callable[[list[Message]], str]


def _hash_unit(text: str) -> float:
    return int(hashlib.sha256(text.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF


class FakeBackend:
    """Answers with `responder(messages)` when given, else with a word picked by hashing the prompt.

    Choice scores favour a choice the responder's answer contains, else follow the hash.
    Token counts are whitespace word counts, so tests can predict them.
    """

    def __init__(self, responder: Responder | None = None, name: str = "fake"):
        self.responder = responder
        self.model_key = name
        self.calls = 0  # requests actually computed (cache hits never reach here)

    def _answer(self, messages: list[Message], salt: str = "") -> str:
        if self.responder is not None:
            return self.responder(list(messages))
        words = ["yes", "no", "positive", "negative", "maybe", "unknown"]
        prompt = "\n".join(m["content"] for m in messages)
        return words[int(_hash_unit(prompt + salt) * len(words)) % len(words)]

    @staticmethod
    def _tokens(messages: list[Message]) -> int:
        return sum(len(m["content"].split()) for m in messages)

    def count_tokens(self, messages: list[Message]) -> int:
        return self._tokens(messages)

    def generate(self, requests: list[GenRequest], progress: Progress | None = None) -> list[Generation]:
        out = []
        for req in requests:
            self.calls += 1
            salt = f"#{req.sample}" if req.params.temperature > 0 else ""
            text = finish_text(self._answer(req.messages, salt), req.params)
            words = text.split()[: req.params.max_tokens]
            out.append(Generation(" ".join(words), self._tokens(req.messages), len(words), 0.001))
            if progress:
                progress(1)
        return out

    def score_choices(self, requests: list[ScoreRequest],
                      progress: Progress | None = None) -> list[ChoiceScores]:
        out = []
        for req in requests:
            self.calls += 1
            answer = self._answer(req.messages).lower() if self.responder else ""
            prompt = "\n".join(m["content"] for m in req.messages)
            scores = [(-0.1 if answer and c.lower() in answer else -1.0 - _hash_unit(prompt + c))
                      for c in req.choices]
            out.append(ChoiceScores(scores, self._tokens(req.messages), 0, 0.001))
            if progress:
                progress(1)
        return out


register_backend(BackendType("fake", takes=lambda model, endpoints: model == "fake" or model.startswith("fake:"),
                             create=lambda model, **_: FakeBackend(name=model), remote=True, priority=20))
