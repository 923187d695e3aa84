"""The backend role: send rendered messages to a model, return text or choice scores."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from typing import Callable, Protocol, runtime_checkable

Message = dict[str, str]          # {"role": ..., "content": ...}
Progress = Callable[[int], None]  # called with the number of items just finished


@dataclass(frozen=True)
class GenParams:
    max_tokens: int = 32
    temperature: float = 0.0
    stop: tuple[str, ...] = ()
    seed: int = 0
    json_object: bool = False  # the answer ends with its first complete JSON object


@dataclass(frozen=True)
class GenRequest:
    messages: tuple[Message, ...] | list[Message]
    params: GenParams = GenParams()
    sample: int = 0  # the sample index: repeats at temperature > 0 are distinct requests


@dataclass
class Generation:
    text: str
    input_tokens: int
    output_tokens: int
    latency_s: float
    cached: bool = False


@dataclass(frozen=True)
class ScoreRequest:
    messages: tuple[Message, ...] | list[Message]
    choices: tuple[str, ...]


@dataclass
class ChoiceScores:
    logprobs: list[float]  # summed log-probability of each choice's tokens after the prompt
    input_tokens: int
    output_tokens: int
    latency_s: float
    cached: bool = False

    def best(self) -> int:
        return max(range(len(self.logprobs)), key=self.logprobs.__getitem__)


@runtime_checkable
class Backend(Protocol):
    """What every backend offers. `model_key` identifies the model for the cache."""
    model_key: str

    def generate(self, requests: list[GenRequest], progress: Progress | None = None) -> list[Generation]:
        ...

    def score_choices(self, requests: list[ScoreRequest],
                      progress: Progress | None = None) -> list[ChoiceScores]:
        ...


def request_key(model_key: str, request: GenRequest | ScoreRequest) -> str:
    """Cache key: model, prompt, parameters and sample index."""
    if isinstance(request, GenRequest):
        params = asdict(request.params)
        if not params["json_object"]:
            del params["json_object"]  # keys made before the field existed stay valid
        body = {"kind": "generate", "messages": list(request.messages), "params": params, "sample": request.sample}
    else:
        body = {"kind": "score", "messages": list(request.messages), "choices": list(request.choices)}
    text = json.dumps({"model": model_key, **body}, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


def truncate_at_stop(text: str, stop: tuple[str, ...] | list[str]) -> str:
    cut = min((text.find(s) for s in stop if s and s in text), default=-1)
    return text[:cut] if cut >= 0 else text


def json_object_end(text: str) -> int | None:
    """Where the JSON object opened by the text's first "{" ends, once it is complete and valid."""
    start = text.find("{")
    if start < 0:
        return None
    try:
        value, end = json.JSONDecoder().raw_decode(text[start:])
    except json.JSONDecodeError:
        return None
    return start + end if isinstance(value, dict) else None


def finish_text(text: str, params: GenParams) -> str:
    """An answer as the request asked for it: cut at its first stop string, or after its JSON object."""
    text = truncate_at_stop(text, params.stop)
    end = json_object_end(text) if params.json_object else None
    return (text if end is None else text[:end]).strip()
