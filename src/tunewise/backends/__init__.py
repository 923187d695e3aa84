"""Backends send messages to models. `make_backend` picks one from a model name."""

from __future__ import annotations

from .base import Backend, ChoiceScores, Generation, GenParams, GenRequest, ScoreRequest
from .fake import FakeBackend

__all__ = ["Backend", "ChoiceScores", "FakeBackend", "Generation", "GenParams", "GenRequest",
           "ScoreRequest", "make_backend"]


def make_backend(model: str, *, device: str = "auto", batch_size: int = 16, endpoints: dict | None = None) -> Backend:
    """An endpoint's name (OpenAI-compatible server), `fake` (tests), `smollm2-135m` (embedded),
    `vllm:ID` (vLLM on a GPU machine), or any Hugging Face id or local directory."""
    if endpoints and model in endpoints:
        return remote_backend(endpoints[model])
    if model == "fake" or model.startswith("fake:"):
        return FakeBackend(name=model)
    if model.startswith("vllm:"):
        from .vllm import VLLMBackend
        return VLLMBackend(model.removeprefix("vllm:"))
    from .local import LocalBackend
    return LocalBackend(model, device=device, batch_size=batch_size)


def remote_backend(endpoint) -> Backend:
    from .openai import OpenAIBackend
    tokenizer = None
    if endpoint.tokenizer:
        from transformers import AutoTokenizer
        from ..models import resolve_model
        tokenizer = AutoTokenizer.from_pretrained(resolve_model(endpoint.tokenizer))
    return OpenAIBackend(endpoint.base_url, endpoint.model, api_key_env=endpoint.api_key_env,
                         concurrency=endpoint.concurrency, timeout_s=endpoint.timeout_s,
                         max_retries=endpoint.max_retries, backoff_s=endpoint.backoff_s,
                         logprobs=endpoint.logprobs, tokenizer=tokenizer)
