"""Backends send messages to models. `make_backend` picks one from a model name."""

from __future__ import annotations

from .base import Backend, ChoiceScores, Generation, GenParams, GenRequest, ScoreRequest
from .fake import FakeBackend

__all__ = ["Backend", "ChoiceScores", "FakeBackend", "Generation", "GenParams", "GenRequest",
           "ScoreRequest", "make_backend"]


def make_backend(model: str, *, device: str = "auto", batch_size: int = 16) -> Backend:
    """`fake` (tests), `smollm2-135m` (embedded), or any Hugging Face id or local directory."""
    if model == "fake" or model.startswith("fake:"):
        return FakeBackend(name=model)
    from .local import LocalBackend
    return LocalBackend(model, device=device, batch_size=batch_size)
