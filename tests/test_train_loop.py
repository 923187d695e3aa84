"""The SFT loop on a tiny random Llama: token-weighted gradient accumulation, exact resume, settings checks."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from tunewise.task import TrainSettings
from tunewise.training.loop import SFTExample, SFTTrainer


def _model(dropout: float = 0.0):
    from transformers import LlamaConfig, LlamaForCausalLM
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                         attention_dropout=dropout)
    return LlamaForCausalLM(config)


def _example(prompt: list[int], answer: list[int]) -> SFTExample:
    return SFTExample(prompt + answer, [-100] * len(prompt) + answer)


# answers of 2 and 7 tokens: equal weights per micro-batch would differ from the mean over tokens
TWO = [_example([5, 6, 7, 8, 9], [10, 11]), _example([12, 13, 14], [20, 21, 22, 23, 24, 25, 26])]
EIGHT = [_example([3 + i, 4 + i, 5 + i], [30 + i] * (1 + i % 4)) for i in range(8)]


def _settings(**kw) -> TrainSettings:
    defaults = dict(learning_rate=1e-2, seed=3, precision="float32", warmup_ratio=0.0, patience=0)
    return TrainSettings(**{**defaults, **kw})


def _accumulated_gradients(monkeypatch, tmp_path, **kw):
    """The gradient the optimizer step receives (read before clipping), and the logged loss."""
    seen = []
    clip = torch.nn.utils.clip_grad_norm_

    def record(params, max_norm):
        seen.append([p.grad.clone() for p in params])
        return clip(params, max_norm)

    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", record)
    state = SFTTrainer(_model(), _settings(**kw), TWO, out_dir=tmp_path).train()
    assert state.step == 1 and len(seen) == 1
    return seen[0], state.losses[0]["loss"]


def _token_mean_gradient():
    """The gradient of the mean cross-entropy over both examples' answer tokens, computed directly."""
    model = _model()
    model.train()
    total, count = 0.0, 0
    for example in TWO:
        logits = model(torch.tensor([example.input_ids])).logits[0, :-1]
        targets = torch.tensor(example.labels[1:])
        total = total + torch.nn.functional.cross_entropy(logits, targets, reduction="sum")
        count += int((targets != -100).sum())
    loss = total / count
    loss.backward()
    return [p.grad for p in model.parameters()], loss.item()


def test_accumulated_gradient_is_that_of_the_mean_over_all_answer_tokens(monkeypatch, tmp_path):
    expected, expected_loss = _token_mean_gradient()
    accumulated, logged = _accumulated_gradients(monkeypatch, tmp_path / "a", grad_accum=2, batch_size=1)
    batched, batched_logged = _accumulated_gradients(monkeypatch, tmp_path / "b", grad_accum=1, batch_size=2)
    for want, got, one_batch in zip(expected, accumulated, batched):
        torch.testing.assert_close(got, want, atol=1e-6, rtol=1e-5)
        torch.testing.assert_close(one_batch, want, atol=1e-6, rtol=1e-5)
    assert logged == pytest.approx(expected_loss, abs=1e-6)
    assert batched_logged == pytest.approx(expected_loss, abs=1e-6)


def _train(out_dir, progress=None):
    model = _model(dropout=0.3)  # a new process would start from fresh weights
    args = _settings(epochs=3, batch_size=2, grad_accum=2, checkpoint_every_s=1e-9)
    state = SFTTrainer(model, args, EIGHT, out_dir=out_dir, progress=progress).train()
    return model, state


def test_an_interrupted_training_resumes_to_the_same_weights_with_dropout(tmp_path):
    reference, _ = _train(tmp_path / "ref")
    calls = []

    def stop_at_the_third_step(n, info):
        calls.append(n)
        if len(calls) == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _train(tmp_path / "run", stop_at_the_third_step)
    seen = []
    resumed, state = _train(tmp_path / "run", lambda n, info: seen.append((n, info)))
    assert seen[0] == (2, "resumed") and state.step == 6  # from the 2 saved steps, not from zero
    for (name, want), got in zip(reference.named_parameters(), resumed.parameters()):
        assert torch.equal(want, got), name


def test_resume_restores_the_python_and_numpy_random_states(tmp_path):
    SFTTrainer(_model(), _settings(), TWO, out_dir=tmp_path).save_checkpoint()
    expected = (random.random(), np.random.rand(), torch.rand(1).item())
    random.seed(99), np.random.seed(99), torch.manual_seed(99)
    SFTTrainer(_model(), _settings(), TWO, out_dir=tmp_path)._resume()
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == expected


@pytest.mark.parametrize("missing", ["learning_rate", "seed"])
def test_the_caller_must_resolve_learning_rate_and_seed(missing, tmp_path):
    with pytest.raises(ValueError, match=missing):
        SFTTrainer(_model(), _settings(**{missing: None}), TWO, out_dir=tmp_path)
