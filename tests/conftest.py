"""Shared fixtures: a tiny random Llama (the real transformers code path) and small task files."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

CHATML = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
          "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")

CORPUS = ["Word: happy positive", "Word: sad negative", "Classify the sentiment of the word.",
          "Answer with exactly one word: negative or positive.", "Context: Constraints: Output format:",
          "the quick brown fox jumps over the lazy dog 0123456789 {}\":,."] * 20


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A 2-layer Llama with random weights and a byte-level BPE tokenizer, saved like a hub model."""
    import torch
    from tokenizers import ByteLevelBPETokenizer
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    out = tmp_path_factory.mktemp("tiny-llama")
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(CORPUS, vocab_size=400, min_frequency=1,
                            special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"])
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe._tokenizer, eos_token="<|im_end|>",
                                        pad_token="<|im_end|>", bos_token="<|im_start|>")
    tokenizer.chat_template = CHATML
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
                         bos_token_id=tokenizer.bos_token_id, tie_word_embeddings=True,
                         initializer_range=0.5)  # large weights: varied, readable random outputs
    model = LlamaForCausalLM(config)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def tiny_backend(tiny_model_dir):
    from tunewise.backends.local import LocalBackend
    device = os.environ.get("TUNEWISE_TEST_DEVICE", "cpu")
    if device == "cpu":
        return LocalBackend(str(tiny_model_dir), device="cpu", batch_size=4)
    # TUNEWISE_TEST_DEVICE=cuda: the backend's GPU code paths, in float32 so that the exact comparisons hold
    # (a GPU backend loads bfloat16 by default); CI has no GPU
    from transformers import AutoModelForCausalLM
    model = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir)).to(device).eval()
    return LocalBackend(str(tiny_model_dir), device=device, batch_size=4, model_obj=model)


WORDS = [("happy", "positive"), ("sad", "negative"), ("joy", "positive"), ("awful", "negative"),
         ("great", "positive"), ("terrible", "negative"), ("love", "positive"), ("hate", "negative"),
         ("bright", "positive"), ("gloomy", "negative"), ("kind", "positive"), ("cruel", "negative"),
         ("calm", "positive"), ("angry", "negative"), ("brave", "positive"), ("afraid", "negative"),
         ("win", "positive"), ("lose", "negative"), ("smile", "positive"), ("cry", "negative")]


@pytest.fixture
def words_csv(tmp_path) -> Path:
    path = tmp_path / "words.csv"
    path.write_text("word,label\n" + "".join(f"{w},{l}\n" for w, l in WORDS))
    return path


TASK_YAML = """\
name: words
type: classification
data:
  path: words.csv
  input: "Word: {word}"
  target: label
instruction: Classify the sentiment of the word.
context: Ten people rated each word.
constraints: [Answer with the label only.]
model: fake
splits: {train: 0.5, dev: 0.2, test: 0.3, seed: 1}
arms:
  - {type: zero_shot}
  - {type: structured, decoding: constrained}
  - {type: few_shot, k: 2}
"""


@pytest.fixture
def task_file(tmp_path, words_csv) -> Path:
    path = tmp_path / "task.yaml"
    path.write_text(TASK_YAML)
    return path


def oracle(messages):
    """A fake responder that knows the fixture's words."""
    text = messages[-1]["content"].lower()
    return next((label for word, label in WORDS if word in text.split()), "positive")


pytest_plugins = ["bundle_fixtures"]  # the bundle tests' shared run (session scope: made once)
