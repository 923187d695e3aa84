"""The searched arm on a task with knowledge: it also searches how many passages to retrieve, where they go,
and shows worked examples beside them; its winner is rebuilt as measured; tasks without knowledge as before."""

import hashlib
import json
import re

import pytest

import tunewise
from tunewise.arms.searched import Searched
from tunewise.backends import FakeBackend
from tunewise.errors import TaskFileError
from tunewise.execution.checks import check_before_running
from tunewise.ship.export import export
from tunewise.store.sqlite import Store
from tunewise.task.data import load_examples, make_splits

CARS = ["Prius", "Civic", "Corolla", "Golf", "Model3"]
SMALL = {"trials": 10, "paraphrases": False, "levers": False, "ks": [0], "decodings": ["generate"]}


def cars_task(tmp_path, knowledge=True, facts=40, **search):
    """Two-digit owner numbers: BM25's tokenizer drops one-character words."""
    items = [{"question": f"Which car does owner {i} drive?", "answer": CARS[i % 5]} for i in range(10, 50)]
    (tmp_path / "qa.jsonl").write_text("".join(json.dumps(r) + "\n" for r in items))
    (tmp_path / "facts.jsonl").write_text("".join(
        json.dumps({"text": f"Owner {i} drives a {CARS[i % 5]}."}) + "\n" for i in range(10, 10 + facts)))
    task = {"name": "cars", "type": "generation", "instruction": "Name the car.", "model": "fake",
            "data": {"path": str(tmp_path / "qa.jsonl"), "input": "question", "target": "answer"},
            "metrics": ["exact_match"], "consistency": {"enabled": False},
            "splits": {"train": 0.5, "dev": 0.25, "test": 0.25, "seed": 3},
            "arms": [{"type": "searched", "search": dict(SMALL, **search)}]}
    if knowledge:
        task["knowledge"] = {"path": str(tmp_path / "facts.jsonl")}
    return tunewise.validate_task(task)


def asked(messages) -> str:
    return re.search(r"owner (\d+) drive\?", messages[-1]["content"]).group(1)


def passage_of(messages) -> str | None:
    """The car of the asked owner, if a passage about that owner is anywhere in the prompt."""
    text = "\n".join(m["content"] for m in messages)
    found = re.search(rf"Owner {asked(messages)} drives a (\w+)\.", text)
    return found.group(1) if found else None


def reader(messages):
    return passage_of(messages) or "Corolla"


def wordy_reader(messages):
    """Copies the passage's phrasing, unless a worked example shows the short answer."""
    car = passage_of(messages)
    if car is None:
        return "Corolla"
    shown = any(m["role"] == "assistant" and m["content"] in CARS for m in messages)
    return car if shown else f"The answer is {car}"


def run(task, tmp_path, responder):
    return tunewise.run(task, home=tmp_path / "home", progress=False,
                        backend_factory=lambda model: FakeBackend(responder))


def record(result):
    return next(a for a in Store(result.store_path).arms(result.run_id) if a["name"] == "searched")


def test_the_search_retrieves_when_the_passages_hold_the_answer(tmp_path):
    result = run(cars_task(tmp_path), tmp_path, reader)
    training = record(result)["training"]
    without = [t["value"] for t in training["trials"] if t["state"] == "complete" and not t["params"]["passages"]]
    assert training["best"]["passages"] > 0 and training["best"]["position"] in ("system", "user")
    assert training["dev_score"] == 1.0 and without and max(without) < 0.5
    assert result.summaries["searched"]["metrics"]["exact_match"]["value"] == 1.0
    assert "passages a request" in Searched.data_required({}, training)


def test_worked_examples_beside_the_passages_teach_the_short_answer(tmp_path):
    task = cars_task(tmp_path, trials=16, ks=[0, 2], selections=["random"], example_sets=1, passages=[0, 1])
    training = record(run(task, tmp_path, wordy_reader))["training"]
    best = training["best"]
    assert best["examples"] == 2 and best["passages"] == 1 and training["dev_score"] == 1.0
    wordy = [t["value"] for t in training["trials"] if t["params"]["passages"] and not t["params"]["examples"]]
    assert wordy and max(wordy) == 0.0  # "The answer is Prius" is no exact match (pruned trials: their last score)


def test_the_restored_winner_sends_the_measured_prompt(tmp_path):
    task = cars_task(tmp_path, trials=12, ks=[2], selections=["similar"], passages=[1], passage_positions=["user"])
    result = run(task, tmp_path, wordy_reader)
    stored = record(result)
    assert stored["training"]["best"]["position"] == "user"
    arm = Searched(task.arms[0], task, [])
    winner = arm.restore(stored["training"])
    winner.prepare(make_splits(task, load_examples(task)))
    rows = Store(result.store_path).predictions(result.run_id, "searched")
    examples = {e.id: e for e in load_examples(task)}
    for row in rows[:5]:
        messages = winner.messages(examples[row["example_id"]])
        assert messages == row["messages"]
        assert messages[-1]["content"].startswith("Relevant passages") and len(messages) == 6  # 2 shots
        assert messages[1]["content"].startswith("Relevant passages")  # each example shows its own
    export(Store(result.store_path), result.run_id, tmp_path / "bundle", "searched")  # checks every test item
    spec = json.loads((tmp_path / "bundle" / "prompt.json").read_text())
    assert spec["arm"]["type"] == "retrieval" and spec["arm"]["position"] == "user" and len(spec["passages"]) == 40


# measured with the code before retrieval was searched: the words task's search, its journal and trials
OLD_KEY = "searched-80aebc93c4bd"
OLD_TRIALS = "c132b326aa25"


def test_a_task_without_knowledge_searches_as_before(task_file, tmp_path):
    from conftest import oracle
    task = tunewise.load_task(task_file)
    task = tunewise.validate_task(dict(task.model_dump(), consistency={"enabled": False}, arms=[
        {"type": "searched", "search": {"trials": 6, "ks": [0, 2], "paraphrases": False}}]))
    result = tunewise.run(task, home=tmp_path / "home", progress=False,
                          backend_factory=lambda model: FakeBackend(oracle))
    [journal] = (tmp_path / "home" / "search").glob("*.journal")
    trials = record(result)["training"]["trials"]
    assert not any({"passages", "position"} & set(t["params"]) for t in trials)
    seen = json.dumps([(t["params"], t["value"]) for t in trials], sort_keys=True)
    assert (journal.stem, hashlib.sha256(seen.encode()).hexdigest()[:12]) == (OLD_KEY, OLD_TRIALS)
    search = Store(result.store_path).get_run(result.run_id)["config"]["arms"][0]["search"]
    assert not {"passages", "passage_positions"} & set(search)  # the run's configuration hash as before, too


def test_the_key_follows_the_retrieval_space(tmp_path):
    def key(**search):
        task = cars_task(tmp_path, trials=2, **search)
        arm = Searched(task.arms[0], task, [])
        splits = make_splits(task, load_examples(task))
        from tunewise.arms.searched import SearchSpace
        return arm._key(arm._dev_items(splits), SearchSpace(arm, ["Name the car."]))
    assert len({key(), key(passages=[0, 1]), key(passage_positions=["user"]), key(passages=[0, 1, 3])}) == 3
    assert key() == key(passages=[0, 1, 3])  # the default, said out loud


def notes_and_error(task, tmp_path):
    splits = make_splits(task, load_examples(task))
    try:
        return check_before_running(task, splits, "task.yaml"), None
    except TaskFileError as err:
        return None, str(err)


@pytest.mark.parametrize("search, knowledge, words", [
    ({"passages": [0, 2]}, False, ["arms.0.search.passages", "the task has none", "knowledge:"]),
    ({"passages": [0, 3, 8]}, True, ["arms.0.search.passages", "passages 8 asks", "more than the 5 passages"]),
])
def test_passages_that_cannot_be_retrieved_are_refused(tmp_path, search, knowledge, words):
    notes, error = notes_and_error(cars_task(tmp_path, knowledge=knowledge, facts=5, **search), tmp_path)
    assert error is not None and "\n" not in error
    assert [w in error for w in words] == [True] * len(words), error


@pytest.mark.parametrize("search", [{"passages": [0, 21]}, {"passages": []}, {"passage_positions": ["middle"]}])
def test_passage_settings_out_of_range_are_refused(tmp_path, search):
    with pytest.raises(TaskFileError, match="search.passage"):
        cars_task(tmp_path, **search)


@pytest.mark.parametrize("search, knowledge, field, why", [
    ({"passage_positions": ["user"]}, False, "search.passage_positions", "no trial retrieves passages"),
    ({"passages": [0]}, False, "search.passages", "no knowledge source"),
    ({"passages": [0], "passage_positions": ["user"]}, True, "search.passage_positions", "no trial retrieves"),
])
def test_retrieval_settings_no_trial_reads_are_warnings(tmp_path, search, knowledge, field, why):
    notes, error = notes_and_error(cars_task(tmp_path, knowledge=knowledge, **search), tmp_path)
    assert error is None
    assert [n for n in notes if n.startswith(f"arms.0.{field}:") and why in n and "no effect" in n], notes


def test_the_default_retrieval_settings_warn_of_nothing(tmp_path):
    for knowledge in (True, False):
        notes, error = notes_and_error(cars_task(tmp_path, knowledge=knowledge), tmp_path)
        assert error is None and not [n for n in notes if "search.passage" in n], notes


def test_a_searched_arm_that_may_retrieve_uses_the_knowledge_source(tmp_path):
    """No 'knowledge source unused' warning when the only arm reading it is a search over passages."""
    notes, error = notes_and_error(cars_task(tmp_path), tmp_path)
    assert error is None and not [n for n in notes if n.startswith("knowledge:")], notes
    notes, error = notes_and_error(cars_task(tmp_path, passages=[0]), tmp_path)
    assert [n for n in notes if n.startswith("knowledge: no arm retrieves")], notes
