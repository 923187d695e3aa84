"""Tree scoring: every prompt and label token runs once, and the log-probabilities equal the plain path's."""

import random

import numpy as np
import pytest

from tunewise.backends.base import ScoreRequest
from tunewise.backends.local import LocalBackend
from tunewise.backends.tree import Tree, plan

SYSTEM = {"role": "system", "content": "Classify the sentiment of the word."}
# 1, 2, 3, 4, 6 and 12 tokens of the fixture's tokenizer; "sci" < "science" < "science fiction" share prefixes
LABELS = ("a", "positive", "sci", "the quick brown fox", "science", "science fiction")
WORDS = ["happy", "sad", "the lazy dog", "fox", "joy", "brown", "0123", "quick fox jumps"]


def msgs(word, shots=()):
    out = [SYSTEM]
    for w, label in shots:
        out += [{"role": "user", "content": f"Word: {w}"}, {"role": "assistant", "content": label}]
    return out + [{"role": "user", "content": f"Word: {word}"}]


def per_item_shots(rng: random.Random, word: str):
    """Shots that differ per item but often start alike, as similar-selected examples do."""
    pool = [("joy", "positive"), ("awful", "negative"), ("kind", "positive"), ("cruel", "negative")]
    return tuple(pool[: rng.randint(0, 2)] + rng.sample(pool, rng.randint(0, 3)))


def backend_like(base, **kw) -> LocalBackend:
    return LocalBackend(base.model_name, model_obj=base.model, tokenizer=base.tokenizer, **kw)


def test_the_fixture_labels_cover_the_shapes(tiny_backend):
    lengths = [len(tiny_backend.choice_ids(label)) for label in LABELS]
    assert {1, 4} <= set(lengths) and max(lengths) >= 6
    sci, science, fiction = (tiny_backend.choice_ids(label) for label in ("sci", "science", "science fiction"))
    assert science[:len(sci)] == sci and fiction[:len(science)] == science


@pytest.mark.parametrize("pack_tokens", [512, 24, 1])
def test_tree_scores_equal_the_plain_path(tiny_backend, pack_tokens):
    rng = random.Random(0)
    requests = [ScoreRequest(msgs(w, per_item_shots(rng, w)), LABELS) for w in WORDS]
    requests += [requests[2], ScoreRequest(msgs("happy"), LABELS[:3])]  # a repeated prompt, another label set
    plain = backend_like(tiny_backend, prefix_cache=False, batch_size=3).score_choices(requests)
    tree = backend_like(tiny_backend, pack_tokens=pack_tokens).score_choices(requests)
    for p, t in zip(plain, tree):
        assert t.logprobs == pytest.approx(p.logprobs, abs=1e-4)
        assert t.input_tokens == p.input_tokens


def test_a_pack_runs_each_unique_token_once():
    """Nodes = distinct prompt prefixes + distinct inner label prefixes under each prompt."""
    rng = random.Random(1)
    suffixes = [[rng.randint(1, 4) for _ in range(rng.randint(1, 8))] for _ in range(30)]
    labels = [[5], [6, 7], [6, 7, 8], [6, 9, 9, 9]]
    packs = plan(suffixes, [labels] * len(suffixes), budget=10_000)
    assert len(packs) == 1
    prompt_nodes = {tuple(s[:i + 1]) for s in suffixes for i in range(len(s))}
    label_nodes = {(tuple(s), tuple(c[:i + 1])) for s in suffixes for c in labels for i in range(len(c) - 1)}
    assert len(packs[0].tree) == len(prompt_nodes) + len(label_nodes)
    assert sorted(packs[0].items) == list(range(30))
    assert len(packs[0].reads) == 30 * sum(len(c) for c in labels)


def test_packs_keep_to_the_budget_and_cover_every_item():
    suffixes = [[i % 3, i, i + 1] for i in range(20)]
    packs = plan(suffixes, [[[1], [2, 3]]] * 20, budget=12)
    assert sorted(i for p in packs for i in p.items) == list(range(20))
    assert all(len(p.tree) <= 12 for p in packs)
    assert len(plan([[1] * 50], [[[2]]], budget=4)) == 1  # an item larger than the budget still runs


def test_ancestry_is_each_node_and_its_ancestors():
    tree = Tree()
    a = tree.add([1, 2, 3])
    b = tree.add([1, 2, 4])
    c = tree.add([9], under=a)
    allowed = tree.ancestry()
    assert tree.depths == [0, 1, 2, 2, 3]
    assert allowed[b].tolist() == [True, True, False, True, False]
    assert allowed[c].tolist() == [True, True, True, False, True]
    assert np.array_equal(np.tril(allowed), allowed)  # parents come first
    assert tree.new_nodes([1, 2, 4, 5]) == 1 and tree.new_nodes([1, 2]) == 0
