"""The local engine's fast paths against the plain ones, on tiny random models of each architecture users bring.

Tree scoring, shared-prefix decoding and the training loss that runs the output head on answer tokens only
were written against Llama. Each architecture here is built from its transformers config (no download):
2 layers, hidden 64, the fixture's byte-level tokenizer. Gemma 2/3 get a sliding window (16) shorter than
the prompts on every other layer, soft-capped attention and output logits, tied and scaled embeddings;
Mistral and Phi-3 a sliding window on every layer, as their older checkpoints have, and Qwen2 on its second.
Each fast path must give the model's own numbers; where one cannot, the engine runs another path and says
so (`LocalBackend.paths`), never returns a different number.
"""

from __future__ import annotations

import pytest
import torch

from conftest import CHATML, CORPUS
from tunewise.backends.base import GenParams, GenRequest, ScoreRequest
from tunewise.backends.local import LocalBackend
from tunewise.training.loop import AnswerLoss, SFTExample, prefix_sharing, shared_start

WINDOW = 16
SMALL = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
             num_key_value_heads=2, max_position_embeddings=512, initializer_range=0.5)


def _configs():
    from transformers import (
        Gemma2Config,
        Gemma3TextConfig,
        LlamaConfig,
        MistralConfig,
        Phi3Config,
        Qwen2Config,
        Qwen3Config,
    )
    capped = dict(head_dim=16, query_pre_attn_scalar=16, final_logit_softcapping=30.0, attn_logit_softcapping=50.0,
                  sliding_window=WINDOW, layer_types=["sliding_attention", "full_attention"], initializer_range=0.1)
    return {
        "llama": (LlamaConfig, dict(tie_word_embeddings=True)),
        "qwen2": (Qwen2Config, dict(tie_word_embeddings=False)),
        "qwen3": (Qwen3Config, dict(head_dim=16, tie_word_embeddings=True)),
        "gemma2": (Gemma2Config, capped),
        "gemma3": (Gemma3TextConfig, capped),
        "phi3": (Phi3Config, dict(sliding_window=WINDOW)),
        "mistral": (MistralConfig, dict(sliding_window=None)),
        "mistral-window": (MistralConfig, dict(sliding_window=WINDOW)),
        "qwen2-window": (Qwen2Config, dict(use_sliding_window=True, sliding_window=WINDOW, max_window_layers=1)),
    }


ARCHITECTURES = list(_configs())


def make_tokenizer():
    """The conftest fixture's byte-level BPE tokenizer with a ChatML template, kept in memory."""
    from tokenizers import ByteLevelBPETokenizer
    from transformers import PreTrainedTokenizerFast
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(CORPUS, vocab_size=400, min_frequency=1,
                            special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"])
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe._tokenizer, eos_token="<|im_end|>", pad_token="<|im_end|>",
                                  bos_token="<|im_start|>")
    tok.chat_template = CHATML
    return tok


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Models this small gain nothing from a second thread, and lose much when another process holds the cores
    (measured: 8 s for this file with one thread, 59 s with two, while a demo ran beside it)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def tokenizer():
    return make_tokenizer()


def build(name: str, tokenizer, **settings):
    from transformers import AutoModelForCausalLM
    config_class, extra = _configs()[name]
    config = config_class(vocab_size=len(tokenizer), eos_token_id=tokenizer.eos_token_id,
                          pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
                          **{**SMALL, **extra, **settings})
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config).eval()
    if name.startswith("gemma"):  # random norms: else the scaled embedding outweighs the layers and every
        with torch.no_grad():     # row repeats its last token
            for param_name, param in model.named_parameters():
                if "norm" in param_name:
                    param.normal_(0.0, 3.0)
    return model


@pytest.fixture(scope="module", params=ARCHITECTURES)
def arch(request, tokenizer):
    return request.param, build(request.param, tokenizer)


def backend(model, tokenizer, **kw) -> LocalBackend:
    return LocalBackend("tiny", model_obj=model, tokenizer=tokenizer, device="cpu", key="tiny", **kw)


SYSTEM = {"role": "system", "content": "Classify the sentiment of the word. Answer with exactly one word."}
SHOTS = (("joy", "positive"), ("awful", "negative"), ("the lazy dog", "negative"))
WORDS = ["happy", "sad", "the quick brown fox jumps over the lazy dog", "fox", "0123456789", "brown dog"]
LABELS = ("positive", "negative", "the quick brown fox", "sci", "science fiction")


def msgs(word, shots=SHOTS):
    out = [SYSTEM]
    for w, label in shots:
        out += [{"role": "user", "content": f"Word: {w}"}, {"role": "assistant", "content": label}]
    return out + [{"role": "user", "content": f"Word: {word}"}]


def full_forward_logprob(model, prompt: list[int], choice: list[int]) -> float:
    """log p(choice | prompt) from the model's own forward pass, its output head and all."""
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([prompt + choice])).logits[0].float().log_softmax(-1)
    return sum(logits[len(prompt) + t - 1, token].item() for t, token in enumerate(choice))


def test_the_prompts_outrun_the_sliding_window(tokenizer):
    b = backend(None, tokenizer)
    prompts = [b.encode(msgs(w)) for w in WORDS]
    assert min(len(p) for p in prompts) > 3 * WINDOW
    assert max(len(b.choice_ids(c)) for c in LABELS) > 3


def test_tree_scores_equal_the_plain_path_and_the_models_own_logits(arch, tokenizer):
    name, model = arch
    requests = [ScoreRequest(msgs(w), LABELS) for w in WORDS] + [ScoreRequest(msgs("joy", ()), LABELS[:3])]
    fast_backend = backend(model, tokenizer, pack_tokens=64)  # several packs after the shared prefix
    fast = fast_backend.score_choices(requests)
    assert fast_backend.paths["score"] == "tree"
    plain_backend = backend(model, tokenizer, prefix_cache=False, batch_size=3)
    plain = plain_backend.score_choices(requests)
    assert plain_backend.paths["score"] == "plain: prefix_cache off"
    worst = max(abs(f - p) for a, b in zip(fast, plain) for f, p in zip(a.logprobs, b.logprobs))
    assert worst < 1e-4, f"{name}: tree and plain scores differ by {worst:.3g}"
    own = [[full_forward_logprob(model, fast_backend.encode(r.messages), fast_backend.choice_ids(c))
            for c in r.choices] for r in requests[:3]]
    worst = max(abs(o - p) for a, b in zip(own, plain) for o, p in zip(a, b.logprobs))
    assert worst < 1e-4, f"{name}: the plain path's scores differ from the model's own logits by {worst:.3g}"


# decoding after a prefix shared through the attention interface, unless a sliding window shorter than the
# prompts could hide part of it: then each row decodes from its own cache, as transformers' generate does
DECODING = {name: "no shared prefix: sliding window of 16 tokens"
            for name in ("gemma2", "gemma3", "phi3", "mistral-window", "qwen2-window")}


def test_fast_decoding_gives_generates_answers_and_the_models_own_logits(arch, tokenizer, monkeypatch):
    name, model = arch
    path = check_decoding(model, tokenizer, monkeypatch)
    assert path.startswith(DECODING.get(name, "shared prefix")), path


@pytest.mark.parametrize("name", [n for n in ARCHITECTURES if n in DECODING])
def test_within_its_window_a_sliding_model_reads_the_shared_prefix(name, tokenizer, monkeypatch):
    """A window longer than prompt and answer hides nothing: the shared prefix is read once, soft caps and all."""
    model = build(name, tokenizer, sliding_window=256)
    assert check_decoding(model, tokenizer, monkeypatch) == "shared prefix"


def check_decoding(model, tokenizer, monkeypatch, max_tokens: int = 8) -> str:
    """Greedy answers equal to transformers' generate, and every step's logits the model's own for that
    row's prompt and answer so far. Returns the path the fast decoding took."""
    from tunewise.backends import local
    steps = []
    pick = local._Picker.__call__
    monkeypatch.setattr(local._Picker, "__call__", lambda self, logits, rows: steps.append(
        (logits.float().clone(), list(rows))) or pick(self, logits, rows))
    requests = [GenRequest(msgs(w), GenParams(max_tokens=max_tokens)) for w in WORDS]
    fast_backend = backend(model, tokenizer)
    prompts = [fast_backend.encode(r.messages) for r in requests]
    rows = fast_backend._decode(prompts, requests[0].params, [0] * len(prompts))
    path = fast_backend.paths["decode"]
    with torch.no_grad():  # each row's prompt and answer in one forward: the logits before each answer token
        own = [model(input_ids=torch.tensor([p + r])).logits[0, len(p) - 1:].float() for p, r in zip(prompts, rows)]
    for step, (logits, alive) in enumerate(steps):
        for b, row in enumerate(alive):
            gap = (logits[b] - own[row][step]).abs().max().item()
            limit = 1e-4 * max(1.0, own[row][step].abs().max().item())  # float32 noise on logits of this size
            assert gap < limit, f"{path}: step {step} of row {row} is {gap:.3g} off the model's logits"
    fast = fast_backend.generate(requests)
    plain = backend(model, tokenizer, prefix_cache=False, batch_size=3).generate(requests)
    assert [g.text for g in fast] == [g.text for g in plain], path
    assert [g.output_tokens for g in fast] == [g.output_tokens for g in plain]
    assert len({g.text for g in plain}) > 1 and any(g.output_tokens > 1 for g in plain)  # not a degenerate model
    return path


def test_answer_loss_and_its_gradients_equal_transformers_loss(arch, tokenizer):
    """The output head on answer tokens only: the loss and every gradient of transformers' own loss."""
    name, model = arch
    chat = backend(model, tokenizer).chat
    rows = [(chat.encode(msgs(w)), chat.tokens(label) + [tokenizer.eos_token_id])
            for w, label in [("happy", "positive"), ("the quick brown fox jumps", "the lazy dog"), ("sad", "no")]]
    width = max(len(p) + len(a) for p, a in rows)
    pads = [width - len(p) - len(a) for p, a in rows]  # right padding, as the loop collates
    ids = torch.tensor([p + a + [tokenizer.pad_token_id] * n for (p, a), n in zip(rows, pads)])
    labels = torch.tensor([[-100] * len(p) + a + [-100] * n for (p, a), n in zip(rows, pads)])
    mask = torch.tensor([[1] * (len(p) + len(a)) + [0] * n for (p, a), n in zip(rows, pads)])
    model.train()
    try:
        ours, our_grads = loss_and_grads(model, lambda: AnswerLoss(model, False, "cpu")(ids, labels, mask))
        theirs, their_grads = loss_and_grads(model, lambda: model(input_ids=ids, attention_mask=mask,
                                                                  labels=labels).loss)
    finally:
        model.eval()
        model.zero_grad(set_to_none=True)
    assert ours == pytest.approx(theirs, abs=1e-5), f"{name}: loss {ours} vs transformers' {theirs}"
    assert our_grads.keys() == their_grads.keys() and len(our_grads) > 10
    for param, grad in our_grads.items():
        assert torch.allclose(grad, their_grads[param], atol=1e-5, rtol=1e-4), f"{name}: gradient of {param}"


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_a_shared_start_run_once_gives_the_whole_sequences_loss_and_gradients(name, tokenizer):
    """Training's shared prefix (the chat template and instruction every row starts with, run once for the
    batch): the loss and every gradient of the plain pass, eager attention and the model's own alike. A model
    whose window the rows outgrow trains without it; the same model with a window they fit in is checked."""
    rows = [(backend(None, tokenizer).chat.encode(msgs(w, shots=())), label)
            for w, label in [("happy", "positive"), ("the quick brown fox", "the lazy dog"), ("sad", "no")]]
    rows = [(p, tokenizer(label, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]) for p, label in rows]
    longest = max(len(p) + len(a) for p, a in rows)
    windowed = build(name, tokenizer)
    if any(w for w in local_windows(windowed)):
        assert not prefix_sharing(windowed.config, longest), f"{name}: its window hides part of the rows"
    model = build(name, tokenizer, sliding_window=512) if any(w for w in local_windows(windowed)) else windowed
    assert prefix_sharing(model.config, longest)
    pads = [longest - len(p) - len(a) for p, a in rows]
    ids = torch.tensor([p + a + [tokenizer.pad_token_id] * n for (p, a), n in zip(rows, pads)])
    labels = torch.tensor([[-100] * len(p) + a + [-100] * n for (p, a), n in zip(rows, pads)])
    mask = torch.tensor([[1] * (len(p) + len(a)) + [0] * n for (p, a), n in zip(rows, pads)])
    shared = shared_start([SFTExample(i.tolist(), la.tolist()) for i, la in zip(ids, labels)])
    assert shared > 10, "the rows share their chat template and instruction"
    model.train()
    try:
        for attention in ("eager", model.config._attn_implementation):
            model.set_attn_implementation(attention)
            plain, plain_grads = loss_and_grads(model, lambda: AnswerLoss(model, False, "cpu")(ids, labels, mask))
            once, once_grads = loss_and_grads(model, lambda: AnswerLoss(model, False, "cpu")(
                ids, labels, mask, shared=shared))
            assert once == pytest.approx(plain, abs=1e-5), f"{name} ({attention}): loss {once} vs {plain}"
            assert once_grads.keys() == plain_grads.keys() and len(once_grads) > 10
            for param, grad in once_grads.items():
                # float32 sums in another order: equal to 1e-5 of the gradient's own scale
                scale = max(1.0, plain_grads[param].abs().max().item())
                assert torch.allclose(grad, plain_grads[param], atol=1e-5 * scale, rtol=1e-4), \
                    f"{name} ({attention}): gradient of {param} off by {(grad - plain_grads[param]).abs().max()}"
    finally:
        model.eval()
        model.zero_grad(set_to_none=True)


def local_windows(model) -> list:
    from tunewise.backends.local import layer_windows
    return list(layer_windows(model.config).values())


def loss_and_grads(model, compute):
    model.zero_grad(set_to_none=True)
    loss = compute()
    loss.backward()
    return loss.item(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def test_a_model_the_fast_paths_do_not_model_runs_the_plain_paths_and_says_why(tokenizer, monkeypatch):
    from transformers import Gemma3TextConfig, Llama4TextConfig, Qwen3NextConfig

    from tunewise.backends import local
    assert local.fast_paths(Qwen3NextConfig(num_hidden_layers=4)) == (False, "layer types ['linear_attention']")
    assert local.fast_paths(Llama4TextConfig(num_hidden_layers=4)) == (False, "layer types ['chunked_attention']")
    assert local.fast_paths(Gemma3TextConfig(use_bidirectional_attention=True)) == (False, "bidirectional attention")
    assert local.fast_paths(build("gemma2", tokenizer).config) == (True, "")
    model = build("llama", tokenizer)
    monkeypatch.setattr(local, "fast_paths", lambda config: (False, "layer types ['linear_attention']"))
    refused = backend(model, tokenizer)
    scores = refused.score_choices([ScoreRequest(msgs(w), LABELS[:3]) for w in WORDS[:3]])
    answers = refused.generate([GenRequest(msgs(w), GenParams(max_tokens=4)) for w in WORDS[:3]])
    assert refused.paths == {"score": "plain: layer types ['linear_attention']",
                             "decode": "plain: layer types ['linear_attention']"}
    plain = backend(model, tokenizer, prefix_cache=False)
    assert [s.logprobs for s in scores] == [s.logprobs for s in plain.score_choices(
        [ScoreRequest(msgs(w), LABELS[:3]) for w in WORDS[:3]])]
    assert [a.text for a in answers] == [a.text for a in plain.generate(
        [GenRequest(msgs(w), GenParams(max_tokens=4)) for w in WORDS[:3]])]


def test_a_run_names_the_path_its_model_could_not_take(tmp_path, tokenizer):
    """A Gemma 2 checkpoint whose window is shorter than its prompts decodes without the shared prefix: the run's
    notes say so, with the reason."""
    import json

    import tunewise
    from tunewise.store import Store
    from tunewise.task import validate_task
    model_dir = tmp_path / "gemma2"
    build("gemma2", tokenizer).save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    rows = [{"word": w, "label": lab} for w, lab in [("happy", "positive"), ("sad", "negative")] * 6]
    (tmp_path / "w.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    task = validate_task({"type": "classification", "instruction": SYSTEM["content"], "model": str(model_dir),
                          "data": {"path": "w.jsonl", "input": "Word: {word} " * 4, "target": "label"},
                          "base_dir": str(tmp_path), "consistency": {"enabled": False},
                          "generation": {"max_tokens": 3}, "arms": [{"type": "zero_shot"}]})
    result = tunewise.run(task, home=tmp_path / "home", progress=False)
    warnings = Store(result.store_path).get_run(result.run_id)["info"]["warnings"]
    assert any(f"decoding ran no shared prefix: sliding window of {WINDOW} tokens" in w for w in warnings)
    assert result.summaries["zero_shot"]["engine"]["decode"].startswith("no shared prefix")
