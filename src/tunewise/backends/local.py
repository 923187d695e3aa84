"""Local models through transformers: batched generation and batched choice scoring."""

from __future__ import annotations

import hashlib
import time
from typing import Any

from ..registry import BackendType, register_backend
from .base import ChoiceScores, Generation, GenRequest, Message, Progress, ScoreRequest, finish_text, json_object_end
from .models import model_key, quiet_transformers, resolve_model

ATTENTION_KINDS = ("full_attention", "sliding_attention")


def layer_windows(config) -> dict[str, int | None]:
    """Each kind of attention layer the model has, with the window its layers see (None: every position).
    As transformers reads a config: `layer_types` where given, else every layer slides when `sliding_window`
    is set (Mistral, Phi-3), is chunked with `attention_chunk_size`, or sees everything."""
    text = config.get_text_config(decoder=True)
    window = getattr(text, "sliding_window", None)
    kinds = getattr(text, "layer_types", None) or [
        "sliding_attention" if window else "chunked_attention" if getattr(text, "attention_chunk_size", None)
        else "full_attention"]
    return {kind: window if kind == "sliding_attention" else None for kind in kinds}


def fast_paths(config) -> tuple[bool, str]:
    """Whether tree scoring and shared-prefix decoding give this model's own numbers; if not, why.

    They model causal attention over every position or in a sliding window (the tree's mask holds the window;
    decoding runs without the shared prefix when the window could hide part of it), and the output head's
    soft cap (`output_logits`). Other layers (chunked, linear, recurrent) and bidirectional attention they
    do not, so such a model runs the plain paths."""
    other = sorted(set(layer_windows(config)) - set(ATTENTION_KINDS))
    if other:
        return False, f"layer types {other}"
    if getattr(config.get_text_config(decoder=True), "use_bidirectional_attention", False):
        return False, "bidirectional attention"
    return True, ""


def output_logits(model, states):
    """The output head as the model's own forward applies it: the projection, then the logits' soft cap
    (`tanh(x / cap) * cap`, Gemma 2) where the config has one. Training and scoring alike run it on a few
    hidden states instead of the whole sequence."""
    import torch
    logits = model.get_output_embeddings()(states)
    cap = getattr(model.config.get_text_config(decoder=True), "final_logit_softcapping", None)
    return logits if cap is None else torch.tanh(logits / cap) * cap


def pick_device(device: str) -> str:
    if device != "auto":
        return device
    import torch
    return "cuda" if torch.cuda.is_available() else "cpu"


class LocalBackend:
    """A causal LM loaded with transformers, CPU by default, CUDA when present."""

    def __init__(self, model: str, *, device: str = "auto", batch_size: int = 16,
                 model_obj: Any = None, tokenizer: Any = None, key: str | None = None,
                 prefix_cache: bool = True, pack_tokens: int = 512, decode_batch: int = 128):
        self.model_name = model
        self.model_key = key or model_key(model)
        self.device = pick_device(device)
        self.batch_size = batch_size
        quiet_transformers()
        self.prefix_cache = prefix_cache  # the fast paths: shared prefix computed once, rows packed
        self.pack_tokens = pack_tokens    # tokens per packed scoring sequence
        # each decoding step reads every weight once: more rows per step, fewer reads per token
        self.decode_batch = max(batch_size, decode_batch) if prefix_cache else batch_size
        self._model = model_obj
        self._tokenizer = tokenizer
        self._chat = None
        # which path the last call of each kind ran, and why not the fast one: {"score": "tree" | "plain: …",
        # "decode": "shared prefix" | "copied prefix" | "no prefix to share" | "no shared prefix: …" | "plain: …"}
        self.paths: dict[str, str] = {}

    @classmethod
    def sharing(cls, base: "LocalBackend", model: Any, key: str) -> "LocalBackend":
        """Another model (a fine-tuned one) behind the same tokenizer, device and batch settings as `base`."""
        return cls(base.model_name, device=base.device, batch_size=base.batch_size, model_obj=model,
                   tokenizer=base.tokenizer, key=key)

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

    # -- prompts (the chat template lives in tunewise.chat, shared with training) ----------
    @property
    def chat(self):
        if self._chat is None:
            from .chat import ChatFormat
            self._chat = ChatFormat(self.tokenizer)
        return self._chat

    def render(self, messages: list[Message]) -> str:
        return self.chat.render(messages)

    def encode(self, messages: list[Message]) -> list[int]:
        return self.chat.encode(messages)

    def count_tokens(self, messages: list[Message]) -> int:
        return len(self.encode(messages))

    def end_of_turn_id(self) -> int | None:
        return self.chat.end_of_turn_id()

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
        self._prefix_memo = None  # weights may have changed since the last call (training)
        # sorted by tokens, prompts that share a prefix (instruction, examples) land in one batch;
        # batches of even size: 150 rows run as 75 + 75, not 128 + a slow tail of 22
        size = _even_size(len(requests), self.decode_batch)
        for batch in _batches_by_length(encoded, size, key=lambda i: repr(requests[i].params),
                                        lexical=self.prefix_cache):
            gens = self._generate_batch([encoded[i] for i in batch], [requests[i] for i in batch])
            for i, gen in zip(batch, gens):
                results[i] = gen
            if progress:
                progress(len(batch))
        return results  # type: ignore[return-value]

    def _generate_batch(self, prompts: list[list[int]], requests: list[GenRequest]) -> list[Generation]:
        params = requests[0].params
        start = time.perf_counter()
        why = self._why_plain()
        if why is None:
            rows = self._decode(prompts, params, [r.sample for r in requests])
        else:
            rows = self._generate_plain(prompts, params, requests[0].sample)
            self.paths["decode"] = f"plain: {why}"
        per_item = (time.perf_counter() - start) / len(prompts)
        stops = self.stop_token_ids()
        gens = []
        for prompt, row in zip(prompts, rows):
            n_out = next((j + 1 for j, t in enumerate(row) if t in stops), len(row))
            text = self.tokenizer.decode(row[:n_out], skip_special_tokens=True)
            gens.append(Generation(finish_text(text, params), len(prompt), n_out, per_item))
        return gens

    def _generate_plain(self, prompts: list[list[int]], params, sample: int) -> list[list[int]]:
        """transformers' own `generate` on left-padded prompts: the reference the fast path is checked against."""
        import torch
        width = max(len(p) for p in prompts)
        pad = self.pad_id()
        ids = torch.tensor([[pad] * (width - len(p)) + p for p in prompts], device=self.device)
        mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts], device=self.device)
        sampling = params.temperature > 0
        if sampling:
            torch.manual_seed(params.seed * 1_000_003 + sample)
        with torch.inference_mode():
            out = self.model.generate(
                input_ids=ids, attention_mask=mask, max_new_tokens=params.max_tokens,
                do_sample=sampling, temperature=params.temperature if sampling else None,
                top_p=None, top_k=None, pad_token_id=pad, eos_token_id=self.stop_token_ids())
        return out[:, width:].tolist()

    def _decode(self, prompts: list[list[int]], params, samples: list[int]) -> list[list[int]]:
        """Greedy or sampled decoding that reuses the batch's shared prompt prefix and drops finished rows.

        The prefix all prompts of the batch share runs once (and is remembered for the next batch);
        each row then carries only its own suffix, left-padded, with explicit positions, and reads the
        prefix's keys and values through `shared_prefix` (one copy for all rows) where the model allows.
        Sampling draws from one generator per row seeded by (seed, sample index, prompt), so an
        answer does not depend on which other requests share its batch.
        """
        shared = _common_prefix_len(prompts)
        hidden = self._window_hides(prompts, params)
        if hidden:  # the rows' own caches, as transformers' generate keeps them, mask the window exactly
            self.paths["decode"] = f"no shared prefix: {hidden}"
            return self._decode_rows(prompts, 0, params, samples, None, None)
        prefix_kv = self._prefix_kv(prompts[0][:shared]) if shared else None
        if prefix_kv is not None:
            from .shared_prefix import Unsupported, reading
            try:
                with reading(self.model, prefix_kv) as state:
                    rows = self._decode_rows(prompts, shared, params, samples, prefix_kv, state)
                self.paths["decode"] = "shared prefix"
                return rows
            except Unsupported:
                pass  # this model's attention does not go through the interface: copy the prefix per row
        self.paths["decode"] = "copied prefix" if prefix_kv is not None else "no prefix to share"
        return self._decode_rows(prompts, shared, params, samples, prefix_kv, None)

    def _window_hides(self, prompts: list[list[int]], params) -> str:
        """Why a sliding window could hide part of a row's prompt or answer from it ("": it cannot). The
        shared prefix's keys sit at positions a left-padded row's own cache does not share, so a window
        that binds is not masked exactly there."""
        windows = [w for w in layer_windows(self.model.config).values() if w]
        longest = max(len(p) for p in prompts) + params.max_tokens
        if windows and longest > min(windows):
            return f"sliding window of {min(windows)} tokens < {longest} of prompt and answer"
        return ""

    def _decode_rows(self, prompts, shared: int, params, samples, prefix_kv, reading) -> list[list[int]]:
        import torch
        from transformers import DynamicCache

        from .shared_prefix import Unsupported, additive_mask
        n, pad, dtype = len(prompts), self.pad_id(), self.model.dtype
        suffixes = [p[shared:] for p in prompts]
        width = max(len(s) for s in suffixes)
        ids = torch.tensor([[pad] * (width - len(s)) + s for s in suffixes], device=self.device)
        own = torch.tensor([[False] * (width - len(s)) + [True] * len(s) for s in suffixes], device=self.device)
        positions = torch.tensor([[shared] * (width - len(s)) + list(range(shared, shared + len(s)))
                                  for s in suffixes], device=self.device)
        copied = prefix_kv is not None and reading is None
        cache = DynamicCache(config=self.model.config) if not copied else DynamicCache(
            ddp_cache_data=[(k.expand(n, -1, -1, -1), v.expand(n, -1, -1, -1)) for k, v in prefix_kv],
            config=self.model.config)

        def forward(tokens, positions, own):
            if reading is not None:  # the rows' own keys only: the prefix is read by the attention itself
                mask = additive_mask(own, tokens.shape[1], dtype)
            else:
                mask = torch.cat([own.new_ones(len(own), shared if copied else 0), own], dim=1).long()
            return self.model(input_ids=tokens, attention_mask=mask, position_ids=positions, use_cache=True,
                              logits_to_keep=1, **{self._cache_arg: cache}).logits[:, -1]

        pick = _Picker(params, samples, prompts, self.device)
        stops = set(self.stop_token_ids())
        finished = _Finisher(self.tokenizer, params)
        outputs: list[list[int]] = [[] for _ in prompts]
        alive = list(range(n))  # the prompt index of each row still decoding
        next_pos = positions[:, -1] + 1
        with torch.inference_mode():
            logits = forward(ids, positions, own)
            if reading is not None and not reading.calls:
                raise Unsupported("the model did not dispatch attention through transformers' interface")
            for _ in range(params.max_tokens):
                tokens = pick(logits, alive)
                keep = []
                for b, (row, token) in enumerate(zip(alive, tokens)):
                    outputs[row].append(token)
                    if token not in stops and len(outputs[row]) < params.max_tokens and not finished(outputs[row]):
                        keep.append(b)
                if not keep:
                    break
                if len(keep) < len(alive):
                    index = torch.tensor(keep, device=self.device)
                    cache.batch_select_indices(index)
                    own, next_pos = own[index], next_pos[index]
                    alive, tokens = [alive[b] for b in keep], [tokens[b] for b in keep]
                own = torch.cat([own, own.new_ones(len(alive), 1)], dim=1)
                logits = forward(torch.tensor(tokens, device=self.device)[:, None], next_pos[:, None], own)
                next_pos = next_pos + 1
        return outputs

    # -- choice scoring -----------------------------------------------------
    def score_choices(self, requests: list[ScoreRequest],
                      progress: Progress | None = None) -> list[ChoiceScores]:
        """Log-likelihood of each choice after its prompt.

        The prompt prefix all requests share (instruction, fixed examples) runs once; its KV cache is
        reused by every packed sequence after it. Each pack is a token tree (`tree.py`): requests in
        lexical order, the tokens neighbours share run once, and every label's tokens hang below its
        prompt as branches — cost in proportion to unique prompt tokens plus the label trie, not to
        prompt length x number of labels.
        """
        prompts = [self.encode(r.messages) for r in requests]
        self._prefix_memo = None  # weights may have changed since the last call (training)
        choice_ids = {c: self.choice_ids(c) for r in requests for c in r.choices}
        choices = [[choice_ids[c] for c in r.choices] for r in requests]
        scores = [[0.0] * len(r.choices) for r in requests]
        seconds = [0.0] * len(requests)
        why = self._why_plain()
        if why is None:
            self._score_trees(prompts, choices, scores, seconds, progress)
        else:
            self._score_plain(prompts, choices, scores, seconds, progress)
        self.paths["score"] = "tree" if why is None else f"plain: {why}"
        return [ChoiceScores(scores[i], len(prompts[i]), 0, seconds[i]) for i in range(len(requests))]

    def _score_trees(self, prompts, choices, scores, seconds, progress) -> None:
        from .tree import plan
        shared = _common_prefix_len(prompts)
        prefix_kv = self._prefix_kv(prompts[0][:shared]) if shared else None
        for pack in plan([p[shared:] for p in prompts], choices, self.pack_tokens):
            start = time.perf_counter()
            values = self._run_tree(pack, prefix_kv, shared)
            for read, value in zip(pack.reads, values):
                scores[read.item][read.choice] += value
            for i in pack.items:
                seconds[i] += (time.perf_counter() - start) / len(pack.items)
            if progress:
                progress(len(pack.items))

    def _run_tree(self, pack, prefix_kv, shared: int) -> list[float]:
        """One forward pass over a pack's token tree after the shared prefix's KV cache: each node sees
        the prefix and its own ancestors, at the position its depth gives it. Returns one log-probability
        per read, in order."""
        import torch
        from transformers import DynamicCache
        tree = pack.tree
        # no config: every layer's cache holds the whole prefix, a sliding layer's too (the mask has its window)
        cache = None if prefix_kv is None else DynamicCache(ddp_cache_data=prefix_kv)
        nodes = sorted({read.node for read in pack.reads})
        slot = {node: k for k, node in enumerate(nodes)}
        with torch.inference_mode():
            hidden = self.model.get_decoder()(
                input_ids=torch.tensor([tree.tokens], device=self.device),
                position_ids=torch.tensor([[shared + d for d in tree.depths]], device=self.device),
                attention_mask=self._tree_mask(tree, shared), use_cache=cache is not None,
                **{self._cache_arg: cache}).last_hidden_state[0]
            return self._logprobs(hidden[torch.tensor(nodes, device=self.device)],
                                  [slot[r.node] for r in pack.reads], [r.token for r in pack.reads])

    def _tree_mask(self, tree, shared: int):
        """The pack's additive mask, (1, 1, nodes, prefix + nodes): a node sees the prefix and its own ancestors,
        and in a sliding-window layer only those fewer than `window` positions before it. One mask per kind of
        layer where the model mixes them (Gemma 2/3), as transformers' own masks for such models come."""
        import torch
        allowed = torch.cat([torch.ones(len(tree), shared, dtype=torch.bool), torch.from_numpy(tree.ancestry())], 1)
        query = shared + torch.tensor(tree.depths)
        behind = query[:, None] - torch.cat([torch.arange(shared), query])[None, :]
        dtype, masks = self.model.dtype, {}
        for kind, window in layer_windows(self.model.config).items():
            seen = allowed if window is None else allowed & (behind < window)
            mask = torch.zeros(seen.shape, dtype=dtype).masked_fill(~seen, torch.finfo(dtype).min)
            masks[kind] = mask[None, None].to(self.device)
        return masks if len(masks) > 1 else next(iter(masks.values()))

    def _logprobs(self, states, rows: list[int], tokens: list[int]) -> list[float]:
        """log p(token | state) for each (row, token): only the distinct states go through the output head,
        a few rows, not batch x sequence x vocabulary."""
        import torch
        logprobs = torch.log_softmax(output_logits(self.model, states).float(), dim=-1)
        return logprobs[torch.tensor(rows, device=self.device), torch.tensor(tokens, device=self.device)].tolist()

    def _score_plain(self, prompts, choices, scores, seconds, progress) -> None:
        """The reference path: one right-padded row per (request, choice), the whole prompt in each."""
        rows = [row for i in range(len(prompts)) for row in _score_rows(i, prompts[i], choices[i])]
        remaining = [sum(1 for row in rows if row[0] == i) for i in range(len(prompts))]
        for group in _batches_by_length([row[1] for row in rows], self.batch_size):
            start = time.perf_counter()
            values = self._score_batch([rows[k] for k in group])
            finished = 0
            for k, row_values in zip(group, values):
                i = rows[k][0]
                for j, value in row_values.items():
                    scores[i][j] += value
                seconds[i] += (time.perf_counter() - start) / len(group)
                remaining[i] -= 1
                finished += remaining[i] == 0
            if progress and finished:
                progress(finished)

    def choice_ids(self, choice: str) -> list[int]:
        return self.tokenizer(choice, add_special_tokens=False)["input_ids"]

    def _prefix_kv(self, prefix: list[int]):
        """Per-layer (keys, values) of the shared prefix, batch size 1; the last one is remembered."""
        memo = getattr(self, "_prefix_memo", None)
        if memo is not None and memo[0] == prefix:
            return memo[1]
        kv = self._compute_prefix_kv(prefix)
        self._prefix_memo = (list(prefix), kv)
        return kv

    def _compute_prefix_kv(self, prefix: list[int]):
        import torch
        from transformers import DynamicCache
        cache = DynamicCache()  # no config: a sliding-window layer keeps the whole prefix too (see _tree_mask)
        with torch.inference_mode():
            self.model.get_decoder()(input_ids=torch.tensor([prefix], device=self.device),
                                     use_cache=True, **{self._cache_arg: cache})
        return [(layer.keys, layer.values) for layer in cache.layers]

    def _score_batch(self, rows: list[tuple[int, list[int], list[tuple[int, int, int]]]]) -> list[dict[int, float]]:
        """The plain path: whole prompts, right-padded, one row per batch entry."""
        import torch
        seqs = [seq for _, seq, _ in rows]
        width = max(len(s) for s in seqs)
        pad = self.pad_id()
        # right padding: real tokens never attend to the pads after them, so positions stay exact
        ids = torch.tensor([s + [pad] * (width - len(s)) for s in seqs], device=self.device)
        mask = torch.tensor([[1] * len(s) + [0] * (width - len(s)) for s in seqs], device=self.device)
        targets = [(b, j, pos, token) for b, (_, _, t) in enumerate(rows) for j, pos, token in t]
        with torch.inference_mode():
            hidden = self.model.get_decoder()(input_ids=ids, attention_mask=mask).last_hidden_state
            picked = hidden[torch.tensor([b for b, _, _, _ in targets]), torch.tensor([p for _, _, p, _ in targets])]
            values = self._logprobs(picked, list(range(len(targets))), [t for _, _, _, t in targets])
        out: list[dict[int, float]] = [{} for _ in rows]
        for (b, j, _, _), value in zip(targets, values):
            out[b][j] = out[b].get(j, 0.0) + value
        return out

    def _why_plain(self) -> str | None:
        """Why the fast paths do not run for this model (None: they do)."""
        if not self.prefix_cache:
            return "prefix_cache off"
        fast, why = fast_paths(self.model.config)
        return None if fast else why

    @property
    def _cache_arg(self) -> str:
        """The forward keyword for a KV cache: `cache` since transformers 5.24 (`past_key_values`, its old
        name, now warns on every call), `past_key_values` before."""
        if getattr(self, "_cache_name", None) is None:
            import inspect
            params = inspect.signature(self.model.get_decoder().forward).parameters
            self._cache_name = "cache" if "cache" in params else "past_key_values"
        return self._cache_name


class _Picker:
    """Chooses each row's next token: argmax, or a draw at the request's temperature."""

    def __init__(self, params, samples: list[int], prompts: list[list[int]], device: str):
        import torch
        self.temperature = params.temperature
        self.generators = []
        if self.temperature > 0:
            for sample, prompt in zip(samples, prompts):
                digest = hashlib.sha256(f"{params.seed}:{sample}:{prompt}".encode()).digest()
                self.generators.append(torch.Generator(device=device).manual_seed(
                    int.from_bytes(digest[:8], "little")))

    def __call__(self, logits, rows: list[int]) -> list[int]:
        import torch
        if self.temperature <= 0:
            return logits.argmax(dim=-1).tolist()
        probs = torch.softmax(logits.float() / self.temperature, dim=-1)
        return [int(torch.multinomial(probs[b], 1, generator=self.generators[row]))
                for b, row in enumerate(rows)]


def _score_rows(i: int, suffix: list[int], choices: list[list[int]]):
    """Rows to run for one request: (request index, token ids, [(choice, position, token)]).

    When every choice is one token, one row reads them all at the last prompt position;
    otherwise each choice gets its own row with its tokens appended.
    """
    if all(len(c) == 1 for c in choices):
        return [(i, suffix, [(j, len(suffix) - 1, c[0]) for j, c in enumerate(choices)])]
    return [(i, suffix + c, [(j, len(suffix) + t - 1, tok) for t, tok in enumerate(c)])
            for j, c in enumerate(choices)]


class _Finisher:
    """Tells when a row's answer is complete before its end-of-turn token: it holds a stop string, or
    (json_object) its first JSON object has closed. Rows that are done leave the batch at once."""

    def __init__(self, tokenizer, params):
        self.tokenizer = tokenizer
        self.stops = [s for s in params.stop if s]
        self.json = params.json_object
        self.closes: dict[int, bool] = {}  # token id -> its text has a "}"

    def __call__(self, tokens: list[int]) -> bool:
        if not self.stops and not (self.json and self._closes(tokens[-1])):
            return False
        text = self.tokenizer.decode(tokens, skip_special_tokens=True)
        if any(stop in text for stop in self.stops):
            return True
        return self.json and json_object_end(text) is not None

    def _closes(self, token: int) -> bool:
        if token not in self.closes:
            self.closes[token] = "}" in self.tokenizer.decode([token])
        return self.closes[token]


def _even_size(n: int, limit: int) -> int:
    """The batch size that splits n rows into the fewest batches of at most `limit`, evenly."""
    batches = max(1, -(-n // limit))
    return -(-n // batches)


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


def _batches_by_length(seqs: list[list[int]], size: int, key=None, lexical: bool = False) -> list[list[int]]:
    """Indices grouped into batches of similar length (and equal key), so padding stays small.

    lexical: order by the tokens themselves, so sequences sharing a prefix are batched together."""
    order = sorted(range(len(seqs)), key=lambda i: ((key(i) if key else ""), seqs[i] if lexical else len(seqs[i])))
    batches, current = [], []
    for i in order:
        if current and (len(current) == size or (key and key(i) != key(current[0]))):
            batches.append(current)
            current = []
        current.append(i)
    if current:
        batches.append(current)
    return batches


# the catch-all: the embedded model's name, a Hugging Face id or a local directory
register_backend(BackendType("local", takes=lambda model, endpoints: True,
                             create=lambda model, device="auto", batch_size=16, **_: LocalBackend(
                                 model, device=device, batch_size=batch_size)))
