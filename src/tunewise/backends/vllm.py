"""vLLM on GPU servers: batched generation and choice scoring, trained LoRA adapters served through
vLLM's LoRA support (pip install 'tunewise[vllm]'; a model named `vllm:ID` selects it).

Prompts are rendered with the model's chat template and the same `ChatFormat` the local backend uses,
so both send the same tokens. Choice scoring asks vLLM for the prompt's log-probabilities
(`SamplingParams(prompt_logprobs=0)`, one generated token) of prompt + choice, and sums the choice's
tokens: the log-likelihood the local backend computes.
"""

from __future__ import annotations

import time

from ..errors import MissingDependencyError
from ..registry import BackendType, register_backend
from .base import ChoiceScores, Generation, GenRequest, Progress, ScoreRequest, finish_text
from .chat import ChatFormat

INSTALL = "pip install 'tunewise[vllm]'"


class VLLMBackend:
    def __init__(self, model: str, *, max_lora_rank: int = 64, gpu_memory_utilization: float = 0.85,
                 engine=None, lora=None, key: str | None = None):
        if engine is None:
            try:
                from vllm import LLM
            except ImportError:
                raise MissingDependencyError(f"model 'vllm:{model}' needs vLLM on a GPU machine: {INSTALL}") from None
            from .models import resolve_model
            engine = LLM(model=str(resolve_model(model)), enable_lora=True, max_lora_rank=max_lora_rank,
                         gpu_memory_utilization=gpu_memory_utilization, seed=0)
        self.engine, self.model, self.lora = engine, model, lora
        self.tokenizer = engine.get_tokenizer()
        self.chat = ChatFormat(self.tokenizer)
        self.model_key = key or f"vllm:{model}"

    def with_adapter(self, path: str, key: str) -> "VLLMBackend":
        """The same engine answering through a trained PEFT adapter (vLLM loads it on first use)."""
        from vllm.lora.request import LoRARequest
        lora = LoRARequest(key, abs(hash(key)) % (2**31 - 1) + 1, str(path))
        return VLLMBackend(self.model, engine=self.engine, lora=lora, key=f"{self.model_key}+{key}")

    def _prompt(self, messages) -> dict:
        return {"prompt_token_ids": self.chat.encode(list(messages))}

    def generate(self, requests: list[GenRequest], progress: Progress | None = None) -> list[Generation]:
        from vllm import SamplingParams
        params = [SamplingParams(temperature=r.params.temperature, max_tokens=r.params.max_tokens,
                                 stop=list(r.params.stop) or None, seed=r.params.seed * 1_000_003 + r.sample,
                                 stop_token_ids=self._stop_ids())
                  for r in requests]
        start = time.perf_counter()
        outputs = self.engine.generate([self._prompt(r.messages) for r in requests], params,
                                       lora_request=self.lora, use_tqdm=False)
        each = (time.perf_counter() - start) / max(1, len(requests))
        if progress:
            progress(len(requests))
        return [Generation(finish_text(o.outputs[0].text, r.params), len(o.prompt_token_ids),
                           len(o.outputs[0].token_ids), each) for r, o in zip(requests, outputs)]

    def score_choices(self, requests: list[ScoreRequest], progress: Progress | None = None) -> list[ChoiceScores]:
        from vllm import SamplingParams
        prompts, spans = [], []
        for r in requests:
            prompt = self.chat.encode(list(r.messages))
            for choice in r.choices:
                ids = self.tokenizer(choice, add_special_tokens=False)["input_ids"]
                prompts.append({"prompt_token_ids": prompt + ids})
                spans.append((len(prompt), ids))
        start = time.perf_counter()
        outputs = self.engine.generate(prompts, SamplingParams(max_tokens=1, prompt_logprobs=0),
                                       lora_request=self.lora, use_tqdm=False)
        each = (time.perf_counter() - start) / max(1, len(requests))
        values = [_choice_logprob(o.prompt_logprobs, begin, ids) for o, (begin, ids) in zip(outputs, spans)]
        out, i = [], 0
        for r in requests:
            out.append(ChoiceScores(values[i:i + len(r.choices)], spans[i][0], 0, each))
            i += len(r.choices)
        if progress:
            progress(len(requests))
        return out

    def _stop_ids(self) -> list[int]:
        ids = {self.tokenizer.eos_token_id, self.chat.end_of_turn_id()}
        return sorted(i for i in ids if i is not None)


def _choice_logprob(prompt_logprobs, begin: int, ids: list[int]) -> float:
    """The summed log-probability of the choice's tokens: vLLM gives, per prompt position, a dict of
    token id -> Logprob that always holds the prompt's own token."""
    return float(sum(prompt_logprobs[begin + j][token].logprob for j, token in enumerate(ids)))


register_backend(BackendType("vllm", takes=lambda model, endpoints: model.startswith("vllm:"),
                             create=lambda model, **_: VLLMBackend(model.removeprefix("vllm:")), priority=10,
                             weights=lambda model: model.removeprefix("vllm:")))
