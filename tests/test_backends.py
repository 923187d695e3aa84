"""The local backend on a tiny random Llama: the real transformers code path, offline and fast."""

import math

import pytest
import torch

from tunewise.backends.base import GenParams, GenRequest, ScoreRequest, request_key
from tunewise.backends.local import LocalBackend, _common_prefix_len

SYSTEM = {"role": "system", "content": "Classify the sentiment of the word."}


def msgs(word, shots=()):
    out = [SYSTEM]
    for w, label in shots:
        out += [{"role": "user", "content": f"Word: {w}"}, {"role": "assistant", "content": label}]
    return out + [{"role": "user", "content": f"Word: {word}"}]


def naive_logprob(backend, messages, choice):
    """Sum of log p(choice tokens | prompt) from one plain forward pass over the whole sequence."""
    prompt, cont = backend.encode(messages), backend.choice_ids(choice)
    ids = torch.tensor([prompt + cont], device=backend.model.device)
    with torch.no_grad():
        logits = backend.model(input_ids=ids).logits[0].float().log_softmax(-1)
    return sum(logits[len(prompt) + t - 1, tok].item() for t, tok in enumerate(cont))


def test_generation_is_batch_invariant(tiny_backend):
    words = ["happy", "sad", "a much longer input than the others", "joy", "brown fox"]
    params = GenParams(max_tokens=6)
    batched = tiny_backend.generate([GenRequest(msgs(w), params) for w in words])
    single = [tiny_backend.generate([GenRequest(msgs(w), params)])[0] for w in words]
    assert [g.text for g in batched] == [g.text for g in single]
    for g, w in zip(batched, words):
        assert g.input_tokens == len(tiny_backend.encode(msgs(w)))
        assert 1 <= g.output_tokens <= 6 and g.latency_s > 0


def plain_backend(backend, **kw):
    return LocalBackend(backend.model_name, model_obj=backend.model, tokenizer=backend.tokenizer,
                        prefix_cache=False, **kw)


@pytest.mark.parametrize("shots", [(), (("joy", "positive"), ("awful", "negative"))])
def test_fast_greedy_decoding_matches_transformers_generate(tiny_backend, shots):
    """The prefix-cached loop that drops finished rows picks the same tokens as `model.generate`."""
    words = ["happy", "sad", "the lazy dog jumps", "fox", "0123", "brown", "quick fox", "a"]
    requests = [GenRequest(msgs(w, shots), GenParams(max_tokens=7)) for w in words]
    fast = tiny_backend.generate(requests)
    slow = plain_backend(tiny_backend, batch_size=3).generate(requests)
    assert [g.text for g in fast] == [g.text for g in slow]
    assert [g.output_tokens for g in fast] == [g.output_tokens for g in slow]
    assert any(g.output_tokens < 7 for g in fast) or len({g.text for g in fast}) > 1


def test_sampled_answer_does_not_depend_on_its_batch(tiny_backend):
    params = GenParams(max_tokens=6, temperature=1.0, seed=3)
    requests = [GenRequest(msgs(w), params, sample=i % 3) for i, w in enumerate(["happy", "sad", "fox", "dog", "joy"])]
    together = [g.text for g in tiny_backend.generate(requests)]
    alone = [tiny_backend.generate([r])[0].text for r in requests]
    assert together == alone


def test_generation_honours_stop_strings(tiny_backend):
    full = tiny_backend.generate([GenRequest(msgs("happy"), GenParams(max_tokens=8))])[0].text
    assert full, "the random model should say something"
    stop = full.strip()[1:3]
    cut = tiny_backend.generate([GenRequest(msgs("happy"), GenParams(max_tokens=8, stop=(stop,)))])[0].text
    assert stop not in cut and full.startswith(cut)


@pytest.mark.parametrize("choices", [("positive", "negative"), ("very good indeed", "bad", "so-so")])
@pytest.mark.parametrize("shots", [(), (("joy", "positive"), ("awful", "negative"))])
def test_choice_scores_match_a_plain_forward_pass(tiny_backend, choices, shots):
    words = ["happy", "sad", "the lazy dog", "fox"]
    requests = [ScoreRequest(msgs(w, shots), choices) for w in words]
    plain = LocalBackend(tiny_backend.model_name, model_obj=tiny_backend.model, tokenizer=tiny_backend.tokenizer,
                         prefix_cache=False, batch_size=3)
    # small packs: rows of one request land in different packed sequences
    small_packs = LocalBackend(tiny_backend.model_name, model_obj=tiny_backend.model,
                               tokenizer=tiny_backend.tokenizer, pack_tokens=9)
    fast, slow = tiny_backend.score_choices(requests), plain.score_choices(requests)
    for req, f, s, p in zip(requests, fast, slow, small_packs.score_choices(requests)):
        expected = [naive_logprob(tiny_backend, req.messages, c) for c in choices]
        assert f.logprobs == pytest.approx(expected, abs=1e-4)
        assert s.logprobs == pytest.approx(expected, abs=1e-4)
        assert p.logprobs == pytest.approx(expected, abs=1e-4)
        assert f.best() == s.best() == p.best()
        assert f.input_tokens == len(tiny_backend.encode(req.messages))


def test_progress_reports_every_item_once(tiny_backend):
    seen = []
    requests = [ScoreRequest(msgs(w), ("positive", "negative", "so so")) for w in ["a", "bb", "ccc", "dddd", "e"]]
    tiny_backend.score_choices(requests, progress=seen.append)
    assert sum(seen) == 5
    seen.clear()
    tiny_backend.generate([GenRequest(msgs(w), GenParams(max_tokens=2)) for w in "abcdef"], progress=seen.append)
    assert sum(seen) == 6


def test_common_prefix_leaves_each_sequence_a_token():
    assert _common_prefix_len([[1, 2, 3], [1, 2, 3]]) == 2
    assert _common_prefix_len([[1, 2, 3], [1, 5]]) == 1
    assert _common_prefix_len([[1, 2]]) == 0


def test_sampling_differs_by_sample_index_and_repeats_exactly(tiny_backend):
    params = GenParams(max_tokens=8, temperature=1.5, seed=7)
    a0 = tiny_backend.generate([GenRequest(msgs("happy"), params, sample=0)])[0].text
    again = tiny_backend.generate([GenRequest(msgs("happy"), params, sample=0)])[0].text
    others = {tiny_backend.generate([GenRequest(msgs("happy"), params, sample=i)])[0].text for i in range(1, 5)}
    assert a0 == again
    assert others - {a0}


def test_cache_key_covers_model_prompt_params_and_sample():
    base = GenRequest(msgs("x"), GenParams())
    keys = {request_key("m", base), request_key("m2", base), request_key("m", GenRequest(msgs("y"), GenParams())),
            request_key("m", GenRequest(msgs("x"), GenParams(max_tokens=5))),
            request_key("m", GenRequest(msgs("x"), GenParams(), sample=1)),
            request_key("m", ScoreRequest(msgs("x"), ("a", "b")))}
    assert len(keys) == 6
    assert request_key("m", base) == request_key("m", GenRequest(msgs("x"), GenParams()))
    assert not math.isnan(len(keys))


def test_cache_sends_a_concurrent_backend_everything_at_once_and_saves_each_answer_on_arrival(tmp_path):
    from tunewise.backends.fake import FakeBackend
    from tunewise.store.cache import CachedBackend
    from tunewise.store.sqlite import Store
    store = Store(tmp_path / "cache.db")
    saved_as_they_arrive, calls = [], []

    class Streaming(FakeBackend):  # what OpenAIBackend offers: on_result for each answer as it finishes
        def generate(self, requests, progress=None, on_result=None):
            calls.append(len(requests))
            answers = super().generate(requests)
            for i, answer in enumerate(answers):
                on_result(i, answer)
                saved_as_they_arrive.append(store.db.execute("SELECT COUNT(*) FROM cache").fetchone()[0])
            return answers
    cached = CachedBackend(Streaming(), store, chunk=4)
    requests = [GenRequest([{"role": "user", "content": f"w{i}"}], GenParams()) for i in range(10)]
    first = cached.generate(requests[:3])
    both = cached.generate(requests)
    assert calls == [3, 7]  # one call for all that is not cached, whatever the chunk size
    assert saved_as_they_arrive == list(range(1, 11))
    assert [g.text for g in both[:3]] == [g.text for g in first] and all(g.cached for g in both[:3])


def test_a_row_stops_at_its_stop_string_instead_of_running_on(tiny_backend):
    full = tiny_backend.generate([GenRequest(msgs("sad"), GenParams(max_tokens=12))])[0]
    stop = full.text.strip()[2:4]
    params = GenParams(max_tokens=12, stop=(stop,))
    fast = tiny_backend.generate([GenRequest(msgs("sad"), params)])[0]
    plain = plain_backend(tiny_backend).generate([GenRequest(msgs("sad"), params)])[0]
    assert fast.text == plain.text and stop not in fast.text
    assert fast.output_tokens < full.output_tokens == plain.output_tokens


def test_the_finisher_ends_a_json_answer_when_its_object_closes(tiny_backend):
    from tunewise.backends.local import _Finisher
    ids = tiny_backend.tokenizer('Sure: {"a": {"b": 1}, "c": "}"} and more', add_special_tokens=False)["input_ids"]
    done = _Finisher(tiny_backend.tokenizer, GenParams(json_object=True))
    first = next(n for n in range(1, len(ids) + 1) if done(ids[:n]))
    text = tiny_backend.tokenizer.decode(ids[:first])
    assert text.rstrip().endswith('"}"}') and '"b": 1}' in text
    assert not _Finisher(tiny_backend.tokenizer, GenParams())(ids)


def test_finished_text_keeps_the_first_json_object_or_cuts_at_a_stop():
    from tunewise.backends.base import finish_text
    json_params = GenParams(json_object=True)
    assert finish_text('```json\n{"a": [1, "}"]}\n``` extra {"b": 2}', json_params) == '```json\n{"a": [1, "}"]}'
    assert finish_text('{"a": 1', json_params) == '{"a": 1'           # never closed: kept whole
    assert finish_text('{a: 1} {"b": 2}', json_params) == '{a: 1} {"b": 2}'  # the first object is not JSON
    assert finish_text("yes. no", GenParams(stop=(".",))) == "yes"


def test_batches_are_even():
    from tunewise.backends.local import _even_size
    assert [_even_size(n, 128) for n in (1, 128, 129, 150, 300)] == [1, 128, 65, 75, 100]


def test_decoding_reads_the_shared_prefix_through_the_attention_interface(tiny_backend, monkeypatch):
    """Rows read the shared prefix once (no copy per row); a model that never dispatches attention
    through transformers' interface is noticed and decoded by copying the prefix, with the same answers."""
    import contextlib

    from tunewise.backends import shared_prefix
    shots = (("joy", "positive"), ("awful", "negative"))
    requests = [GenRequest(msgs(w, shots), GenParams(max_tokens=5)) for w in ["happy", "sad", "the lazy dog"]]
    expected = [g.text for g in plain_backend(tiny_backend).generate(requests)]
    states = []
    real = shared_prefix.reading

    @contextlib.contextmanager
    def recorded(model, prefix_kv):
        with real(model, prefix_kv) as state:
            states.append(state)
            yield state
    monkeypatch.setattr(shared_prefix, "reading", recorded)
    assert [g.text for g in tiny_backend.generate(requests)] == expected
    assert states and states[0].calls > 0

    @contextlib.contextmanager
    def ignored(model, prefix_kv):  # as a model whose attention does not go through the interface
        yield shared_prefix._Prefix(prefix_kv)
    monkeypatch.setattr(shared_prefix, "reading", ignored)
    assert [g.text for g in tiny_backend.generate(requests)] == expected
