"""Backends send messages to models and know nothing of tasks. Each backend module registers which model
names it takes (`tunewise.registry.BackendType`); `make_backend` builds the one that takes a name:
an endpoint's name (OpenAI-compatible server), `fake` (tests), `vllm:ID` (vLLM on a GPU machine), and,
for anything else, local transformers (`smollm2-135m`, the embedded model; a Hugging Face id; a directory).
`backends.models` is where weights come from; `backends.chat` how messages become tokens.
"""

from __future__ import annotations

from ..registry import backend_for
from .base import Backend, ChoiceScores, Generation, GenParams, GenRequest, ScoreRequest
from .fake import FakeBackend

__all__ = ["Backend", "ChoiceScores", "FakeBackend", "Generation", "GenParams", "GenRequest",
           "ScoreRequest", "is_remote", "local_weights", "make_backend", "remote_backend"]


def make_backend(model: str, *, device: str = "auto", batch_size: int = 16, endpoints: dict | None = None) -> Backend:
    """The backend of a model name, built by the registered backend that takes it."""
    return backend_for(model, endpoints).create(model, device=device, batch_size=batch_size,
                                                endpoints=endpoints or {})


def is_remote(model: str, endpoints: dict | None = None) -> bool:
    """Whether a model's answers come from elsewhere (an endpoint, the fake): no weights here to load or train."""
    return backend_for(model, endpoints).remote


def local_weights(model: str, endpoints: dict | None = None) -> str | None:
    """The local weights a model name stands for (`vllm:ID` is served from ID), None for a remote one."""
    backend = backend_for(model, endpoints)
    return None if backend.remote else backend.weights(model)


def remote_backend(endpoint) -> Backend:
    """An endpoint's backend (its settings as in the task's `endpoints:`)."""
    from .openai import from_endpoint
    return from_endpoint(endpoint)
