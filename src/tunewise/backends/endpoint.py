"""Endpoints: a model name that is one of the task's `endpoints:`, answered by an OpenAI-compatible server."""

from __future__ import annotations

from ..registry import BackendType, register_backend


def _create(model: str, endpoints: dict, **_):
    from .openai import from_endpoint  # asyncio and ssl load when an endpoint is asked, not at every start-up
    return from_endpoint(endpoints[model])


register_backend(BackendType("endpoint", takes=lambda model, endpoints: model in endpoints, create=_create,
                             remote=True, priority=30))
