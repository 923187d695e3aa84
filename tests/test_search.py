"""The searched arm: a budgeted search on dev that finds what was planted, never reads test labels, resumes."""

import json

import optuna
import pytest

import tunewise
from conftest import oracle
from tunewise.backends import FakeBackend
from tunewise.store.sqlite import Store

SMALL = {"trials": 10, "paraphrases": False, "levers": False, "ks": [0], "decodings": ["generate"]}


def run(task_file, tmp_path, backend, alone=False, **search):
    task = tunewise.load_task(task_file)
    arms = [{"type": "searched", "search": dict(SMALL, **search)}] + ([] if alone else [{"type": "zero_shot"}])
    task = tunewise.validate_task(dict(task.model_dump(), arms=arms, consistency={"enabled": False}))
    return tunewise.run(task, home=tmp_path / "home", progress=False, backend_factory=lambda model: backend)


def searched(result):
    return next(a for a in Store(result.store_path).arms(result.run_id) if a["name"] == "searched")


def test_the_search_finds_a_planted_instruction(task_file, tmp_path):
    planted = "PLANTED: say whether the word is positive or negative."
    backend = FakeBackend(lambda m: oracle(m) if planted in m[0]["content"] else "positive")
    result = run(task_file, tmp_path, backend, instructions=["Say something.", planted])
    record = searched(result)["training"]
    assert record["best"]["instruction"] == planted and record["dev_score"] == 1.0
    assert result.summaries["searched"]["metrics"]["accuracy"]["value"] == 1.0
    assert result.summaries["zero_shot"]["metrics"]["accuracy"]["value"] < 1.0
    assert planted in searched(result)["prompt"][0]["content"]  # the winning prompt, verbatim


def test_the_search_finds_a_planted_number_of_examples(task_file, tmp_path):
    def two_shots_only(messages):
        shots = sum(m["role"] == "assistant" for m in messages)
        return oracle(messages) if shots == 2 else "positive"
    result = run(task_file, tmp_path, FakeBackend(two_shots_only), ks=[0, 1, 2, 4], selections=["random"],
                 example_sets=1, trials=12)
    assert searched(result)["training"]["best"]["examples"] == 2


def test_the_search_never_reads_the_test_split(task_file, tmp_path):
    seen = []

    def spy(messages):
        seen.append(json.dumps(messages))
        return oracle(messages)
    task = tunewise.load_task(task_file)
    from tunewise.task.data import load_examples, make_splits
    test_inputs = [e.input for e in make_splits(task, load_examples(task)).test]
    result = run(task_file, tmp_path, FakeBackend(spy), alone=True, trials=6, ks=[0, 2],
                 decodings=["generate", "constrained"])
    n_search = len(seen) - len(test_inputs)  # the arm's test answers come last
    during_search = "".join(seen[:n_search])
    assert n_search > 0 and not any(text in during_search for text in test_inputs)
    assert searched(result)["training"]["trials"]


class Interrupting(FakeBackend):
    def __init__(self, after):
        super().__init__(oracle)
        self.after = after

    def generate(self, requests, progress=None):
        if self.calls + len(requests) > self.after:
            raise tunewise.Interrupted(2)
        return super().generate(requests, progress)


SPACE = {"trials": 10, "instructions": ["Say it.", "Classify it."], "ks": [0, 1, 2, 4], "selections": ["random"]}


def test_an_interrupted_search_resumes_without_repeating_a_trial(task_file, tmp_path):
    with pytest.raises(KeyboardInterrupt):
        run(task_file, tmp_path, Interrupting(after=12), **SPACE)
    journal = next((tmp_path / "home" / "search").glob("*.journal"))
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(journal)))
    study = optuna.load_study(study_name=journal.stem, storage=storage)
    before = {t.number: (t.params, t.value) for t in study.trials if t.state.name in ("COMPLETE", "PRUNED")}
    assert 0 < len(before) < 10

    fresh = FakeBackend(oracle)
    result = run(task_file, tmp_path, fresh, **SPACE)
    trials = searched(result)["training"]["trials"]
    assert len(trials) == 10 and len({t["number"] for t in trials}) == 10
    after = {t.number: (t.params, t.value) for t in optuna.load_study(study_name=journal.stem, storage=storage).trials}
    assert all(after[n] == before[n] for n in before)  # the finished trials were kept, not run again


def test_label_words_and_calibration_are_searched(task_file, tmp_path):
    """The model 'knows' the words good/bad only: the search should pick those label words."""
    def good_bad(messages):
        label = oracle(messages)
        return {"positive": "good", "negative": "bad"}[label] if "good" in messages[0]["content"] else "positive"
    result = run(task_file, tmp_path, FakeBackend(good_bad), trials=10,
                 label_words={"positive": ["good"], "negative": ["bad"]}, decodings=["generate", "constrained"])
    best = searched(result)["training"]["best"]
    assert best["words"] == {"negative": "bad", "positive": "good"}
    assert result.summaries["searched"]["metrics"]["accuracy"]["value"] == 1.0  # answers mapped back to labels


def test_a_proposer_adds_instructions_through_gepa(task_file, tmp_path):
    """GEPA reflects with the proposer model; its rewritten instruction competes in the search."""
    better = "Decide: is the word positive or negative? PLANTED"

    def respond(messages):
        text = messages[-1]["content"]
        if "```" in text or "assistant" in text.lower() and "instruction" in text.lower():
            return f"```\n{better}\n```"  # the proposer's reflection answers with a new instruction
        return oracle(messages) if "PLANTED" in messages[0]["content"] else "positive"
    result = run(task_file, tmp_path, FakeBackend(respond), trials=8, proposer="fake", proposer_calls=12)
    record = searched(result)["training"]
    assert record["best"]["instruction"] == better


def test_the_search_finds_a_planted_example_layout(task_file, tmp_path):
    """The model reads examples written out in its message, and copies an assistant turn's: list must win."""
    def reads_a_list(messages):
        if any(m["role"] == "assistant" for m in messages):
            return [m for m in messages if m["role"] == "assistant"][-1]["content"]  # copies the last turn
        return oracle([{"role": "user", "content": messages[-1]["content"].split("Now this one:")[-1]}])
    result = run(task_file, tmp_path, FakeBackend(reads_a_list), ks=[2], selections=["random"], example_sets=1,
                 layouts=["turns", "list"], trials=6)
    record = searched(result)["training"]
    assert record["best"]["layout"] == "list" and record["dev_score"] == 1.0
    [user] = [m for m in searched(result)["prompt"] if m["role"] == "user"]  # one message: examples, then input
    assert user["content"].startswith("Examples:\n\n") and user["content"].endswith("Now this one:\n{input}")
    assert user["content"].count("\nAnswer: ") == 2
