"""Local models through transformers: batched generation and batched choice scoring."""

from __future__ import annotations

import time
from typing import Any

from ..models import model_key, quiet_transformers, resolve_model
from .base import ChoiceScores, Generation, GenRequest, Message, Progress, ScoreRequest, truncate_at_stop


def pick_device(device: str) -> str:
    if device != "auto":
        return device
    import torch
    return "cuda" if torch.cuda.is_available() else "cpu"


class LocalBackend:
    """A causal LM loaded with transformers, CPU by default, CUDA when present."""

    def __init__(self, model: str, *, device: str = "auto", batch_size: int = 16,
                 model_obj: Any = None, tokenizer: Any = None, key: str | None = None,
                 prefix_cache: bool = True):
        self.model_name = model
        self.model_key = key or model_key(model)
        self.device = pick_device(device)
        self.batch_size = batch_size
        quiet_transformers()
        self.prefix_cache = prefix_cache  # reuse the shared prompt prefix's KV cache when scoring
        self._model = model_obj
        self._tokenizer = tokenizer

    # -- loading ------------------------------------------------------------
    @property
    def tokenizer(self):
        if self._tokenizer is None:
            from transformers import AutoTokenizer
            self._tokenizer = AutoTokenizer.from_pretrained(resolve_model(self.model_name))
        return self._tokenizer

    @property
    def model(self):
        if self._model is None:
            import torch
            from transformers import AutoModelForCausalLM
            dtype = torch.bfloat16 if self.device.startswith("cuda") else torch.float32
            self._model = AutoModelForCausalLM.from_pretrained(resolve_model(self.model_name), dtype=dtype)
            self._model.to(self.device).eval()
        return self._model

    # -- prompts ------------------------------------------------------------
    def render(self, messages: list[Message]) -> str:
        """The chat-templated prompt text, ending where the assistant's answer starts."""
        tok = self.tokenizer
        messages = list(messages)
        if tok.chat_template is None:
            return "\n\n".join(m["content"] for m in messages) + "\n\n"
        try:
            return tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        except Exception:  # some templates reject a system role: fold it into the first user turn
            return tok.apply_chat_template(_fold_system(messages), tokenize=False, add_generation_prompt=True)

    def encode(self, messages: list[Message]) -> list[int]:
        return self.tokenizer(self.render(messages), add_special_tokens=False)["input_ids"]

    def end_of_turn_id(self) -> int | None:
        """The token the chat template puts right after an assistant's answer (e.g. <|im_end|>)."""
        if not hasattr(self, "_end_of_turn"):
            self._end_of_turn = self._find_end_of_turn()
        return self._end_of_turn

    def _find_end_of_turn(self) -> int | None:
        tok = self.tokenizer
        if tok.chat_template is None:
            return tok.eos_token_id
        messages = [{"role": "user", "content": "x"}]
        prefix = self.render(messages)
        full = tok.apply_chat_template(messages + [{"role": "assistant", "content": "ANSWER"}], tokenize=False)
        tail = full[len(prefix):].split("ANSWER", 1)[-1] if full.startswith(prefix) else ""
        ids = tok(tail, add_special_tokens=False)["input_ids"] if tail.strip() else []
        return ids[0] if ids else tok.eos_token_id

    def stop_token_ids(self) -> list[int]:
        tok, ids = self.tokenizer, set()
        for token in (tok.eos_token_id, self.end_of_turn_id()):
            if token is not None:
                ids.add(token)
        gen_eos = getattr(self.model.generation_config, "eos_token_id", None)
        ids.update(gen_eos if isinstance(gen_eos, list) else [gen_eos] if gen_eos is not None else [])
        return sorted(ids)

    def pad_id(self) -> int:
        tok = self.tokenizer
        return tok.pad_token_id if tok.pad_token_id is not None else self.stop_token_ids()[0]

    # -- generation ---------------------------------------------------------
    def generate(self, requests: list[GenRequest], progress: Progress | None = None) -> list[Generation]:
        encoded = [self.encode(r.messages) for r in requests]
        results: list[Generation | None] = [None] * len(requests)
        for batch in _batches_by_length(encoded, self.batch_size, key=lambda i: repr(requests[i].params)):
            for i, gen in zip(batch, self._generate_batch([encoded[i] for i in batch], requests[batch[0]])):
                results[i] = gen
            if progress:
                progress(len(batch))
        return results  # type: ignore[return-value]

    def _generate_batch(self, prompts: list[list[int]], first: GenRequest) -> list[Generation]:
        import torch
        params = first.params
        width = max(len(p) for p in prompts)
        pad = self.pad_id()
        ids = torch.tensor([[pad] * (width - len(p)) + p for p in prompts], device=self.device)
        mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts], device=self.device)
        sampling = params.temperature > 0
        if sampling:
            torch.manual_seed(params.seed * 1_000_003 + first.sample)
        stops = self.stop_token_ids()
        start = time.perf_counter()
        with torch.inference_mode():
            out = self.model.generate(
                input_ids=ids, attention_mask=mask, max_new_tokens=params.max_tokens,
                do_sample=sampling, temperature=params.temperature if sampling else None,
                top_p=None, top_k=None, pad_token_id=pad, eos_token_id=stops)
        per_item = (time.perf_counter() - start) / len(prompts)
        gens = []
        for prompt, row in zip(prompts, out[:, width:].tolist()):
            n_out = next((j + 1 for j, t in enumerate(row) if t in stops), len(row))
            text = self.tokenizer.decode(row[:n_out], skip_special_tokens=True)
            gens.append(Generation(truncate_at_stop(text, params.stop).strip(), len(prompt), n_out, per_item))
        return gens

    # -- choice scoring -----------------------------------------------------
    def score_choices(self, requests: list[ScoreRequest],
                      progress: Progress | None = None) -> list[ChoiceScores]:
        """Log-likelihood of each choice after its prompt.

        The prompt prefix all requests share (instruction, fixed examples) runs once; its KV cache
        is reused for every (item, choice) row, which then carries only its own suffix and choice.
        """
        prompts = [self.encode(r.messages) for r in requests]
        shared = _common_prefix_len(prompts) if self.prefix_cache else 0
        prefix_kv = self._prefix_kv(prompts[0][:shared]) if shared else None
        choice_ids = {c: self.choice_ids(c) for r in requests for c in r.choices}
        rows = [row for i, r in enumerate(requests)
                for row in _score_rows(i, prompts[i][shared:], [choice_ids[c] for c in r.choices])]
        scores = [[0.0] * len(r.choices) for r in requests]
        seconds = [0.0] * len(requests)
        remaining = [sum(1 for row in rows if row[0] == i) for i in range(len(requests))]
        for batch in _batches_by_length([row[1] for row in rows], self.batch_size):
            start = time.perf_counter()
            values = self._score_batch([rows[k] for k in batch], prefix_kv, shared)
            share = (time.perf_counter() - start) / len(batch)
            finished = 0
            for k, row_values in zip(batch, values):
                i = rows[k][0]
                for j, value in row_values.items():
                    scores[i][j] += value
                seconds[i] += share
                remaining[i] -= 1
                finished += remaining[i] == 0
            if progress and finished:
                progress(finished)
        return [ChoiceScores(scores[i], len(prompts[i]), 0, seconds[i]) for i in range(len(requests))]

    def choice_ids(self, choice: str) -> list[int]:
        return self.tokenizer(choice, add_special_tokens=False)["input_ids"]

    def _prefix_kv(self, prefix: list[int]):
        """Per-layer (keys, values) of the shared prefix, batch size 1."""
        import torch
        from transformers import DynamicCache
        cache = DynamicCache(config=self.model.config)
        with torch.inference_mode():
            self.model.get_decoder()(input_ids=torch.tensor([prefix], device=self.device),
                                     past_key_values=cache, use_cache=True)
        return [(layer.keys, layer.values) for layer in cache.layers]

    def _score_batch(self, rows: list[tuple[int, list[int], list[tuple[int, int, int]]]], prefix_kv,
                     shared: int) -> list[dict[int, float]]:
        """For each row, the summed log-probability of its target tokens, per choice."""
        import torch
        seqs = [seq for _, seq, _ in rows]
        width = max(len(s) for s in seqs)
        pad = self.pad_id()
        # right padding: real tokens never attend to the pads after them, so positions stay exact
        ids = torch.tensor([s + [pad] * (width - len(s)) for s in seqs], device=self.device)
        mask = torch.tensor([[1] * (shared + len(s)) + [0] * (width - len(s)) for s in seqs], device=self.device)
        extra = {}
        if prefix_kv is not None:
            from transformers import DynamicCache
            n = len(rows)
            extra = {"past_key_values": DynamicCache(
                         ddp_cache_data=[(k.expand(n, -1, -1, -1), v.expand(n, -1, -1, -1)) for k, v in prefix_kv],
                         config=self.model.config),
                     "position_ids": torch.arange(shared, shared + width, device=self.device).expand(n, -1),
                     "use_cache": True}
        # only the positions that predict a choice token go through the output head:
        # a few rows instead of batch x sequence x vocabulary
        flat = [(b, j, pos, token) for b, (_, _, targets) in enumerate(rows) for j, pos, token in targets]
        with torch.inference_mode():
            hidden = self.model.get_decoder()(input_ids=ids, attention_mask=mask, **extra).last_hidden_state
            picked = hidden[torch.tensor([f[0] for f in flat]), torch.tensor([f[2] for f in flat])]
            logprobs = torch.log_softmax(self.model.get_output_embeddings()(picked).float(), dim=-1)
            token_lp = logprobs[torch.arange(len(flat)), torch.tensor([f[3] for f in flat], device=self.device)]
        out: list[dict[int, float]] = [{} for _ in rows]
        for (b, j, _, _), value in zip(flat, token_lp.tolist()):
            out[b][j] = out[b].get(j, 0.0) + value
        return out


def _score_rows(i: int, suffix: list[int], choices: list[list[int]]):
    """Rows to run for one request: (request index, token ids, [(choice, position, token)]).

    When every choice is one token, one row reads them all at the last prompt position;
    otherwise each choice gets its own row with its tokens appended.
    """
    if all(len(c) == 1 for c in choices):
        return [(i, suffix, [(j, len(suffix) - 1, c[0]) for j, c in enumerate(choices)])]
    return [(i, suffix + c, [(j, len(suffix) + t - 1, tok) for t, tok in enumerate(c)])
            for j, c in enumerate(choices)]


def _common_prefix_len(seqs: list[list[int]]) -> int:
    """Tokens every sequence shares at its start, leaving each at least one of its own."""
    if len(seqs) < 2:
        return 0
    limit = min(len(s) for s in seqs) - 1
    first = seqs[0]
    n = 0
    while n < limit and all(s[n] == first[n] for s in seqs):
        n += 1
    return n


def _fold_system(messages: list[Message]) -> list[Message]:
    if not messages or messages[0]["role"] != "system":
        return messages
    system, rest = messages[0]["content"], list(messages[1:])
    if rest and rest[0]["role"] == "user":
        rest[0] = {"role": "user", "content": f"{system}\n\n{rest[0]['content']}"}
    else:
        rest.insert(0, {"role": "user", "content": system})
    return rest


def _batches_by_length(seqs: list[list[int]], size: int, key=None) -> list[list[int]]:
    """Indices grouped into batches of similar length (and equal key), so padding stays small."""
    order = sorted(range(len(seqs)), key=lambda i: ((key(i) if key else ""), len(seqs[i])))
    batches, current = [], []
    for i in order:
        if current and (len(current) == size or (key and key(i) != key(current[0]))):
            batches.append(current)
            current = []
        current.append(i)
    if current:
        batches.append(current)
    return batches
