"""Hybrids trained as they are asked, alternation, each part's contribution; answers that do not read the input."""

import pytest

import tunewise
from tunewise.analysis.build import _contribution_statement, build_report
from tunewise.analysis.model import Contribution, Part
from tunewise.backends import FakeBackend
from tunewise.reports.markdown import to_markdown
from tunewise.reports.table import table_rows
from tunewise.store.sqlite import Store


@pytest.fixture
def many_words(tmp_path):
    """120 made-up words, labels at random: a word's nearest neighbours say nothing about its label."""
    import random
    rng = random.Random(0)
    rows = [(f"item{n}", rng.choice(["positive", "negative"])) for n in range(120)]
    LABELS.clear()
    LABELS.update({f"Word: {w}": label for w, label in rows})
    path = tmp_path / "many.csv"
    path.write_text("word,label\n" + "".join(f"{w},{label}\n" for w, label in rows))
    return path


LABELS: dict[str, str] = {}


def reads_the_input(messages):
    return LABELS[messages[-1]["content"]]


def copies_the_last_example(messages):
    answers = [m["content"] for m in messages[:-1] if m["role"] == "assistant"]
    return answers[-1] if answers else "positive"


def always_positive(messages):
    return "positive"


def few_shot_run(tmp_path, data, responder, selection):
    task = tunewise.validate_task({
        "name": "many", "model": "fake", "instruction": "Classify the sentiment of the word.",
        "data": {"path": str(data), "input": "Word: {word}", "target": "label"},
        "splits": {"train": 0.5, "dev": 0.1, "test": 0.4, "seed": 0}, "consistency": {"enabled": False},
        "arms": [{"type": "few_shot", "k": 2, "selection": selection, "decoding": "constrained"}]})
    result = tunewise.run(task, home=tmp_path / responder.__name__, progress=False,
                          backend_factory=lambda model: FakeBackend(responder))
    return build_report(Store(result.store_path), result.run_id)


def test_a_model_copying_the_last_example_is_caught(tmp_path, many_words):
    report = few_shot_run(tmp_path, many_words, copies_the_last_example, "similar")
    assert any("copies the last example" in w for w in report.warnings), report.warnings
    honest = few_shot_run(tmp_path, many_words, reads_the_input, "similar")
    assert honest.arms[0].value("accuracy") == 1.0
    assert not [w for w in honest.warnings if "last" in w or "answered" in w]


def test_one_label_for_every_input_is_caught_and_told_apart_from_copying(tmp_path, many_words):
    biased = few_shot_run(tmp_path, many_words, always_positive, "random")
    [warning] = [w for w in biased.warnings if "answered 'positive' to 100%" in w]
    # random shots are the same in every prompt: the last one's label decides which explanation applies
    last = biased.arms[0].prompt[-2]["content"]
    expected = "cannot be told apart" if last == "positive" else "a bias of the model"
    assert expected in warning
    copying = few_shot_run(tmp_path, many_words, copies_the_last_example, "random")
    [warning] = [w for w in copying.warnings if "answered" in w]
    assert "the last example's label copied, or a bias towards it" in warning


def part(role, arm, value, gain, low, high, p, significant):
    return Part(role=role, arm=arm, value=value, gain=gain, low=low, high=high, p_holm=p, significant=significant)


@pytest.mark.parametrize("gain, low, high, p, significant, words", [
    (0.05, 0.02, 0.08, 0.001, True, "better than either part alone: +0.050 over its better part"),
    (-0.01, -0.04, 0.02, 0.6, False, "statistically tied with its better part, weights alone (lora)"),
    (-0.2, -0.26, -0.14, 0.001, True, "worse than its better part, weights alone (lora)"),
])
def test_the_contribution_statement_follows_the_paired_test(gain, low, high, p, significant, words):
    lora = part("weights alone", "lora", 0.9, gain, low, high, p, significant)
    prompt = part("prompt alone", "structured", 0.6, 0.3 + gain, 0.2, 0.4, 0.001, True)
    c = Contribution(hybrid="h", value=0.9 + gain, training="matched", parts=[prompt, lora])
    assert words in _contribution_statement(c, "accuracy")


def test_plain_hybrids_are_named_as_a_mismatch():
    lora = part("weights alone", "lora", 0.9, -0.2, -0.26, -0.14, 0.001, True)
    c = Contribution(hybrid="h", value=0.7, training="plain", parts=[lora])
    assert "train/serve mismatch" in _contribution_statement(c, "accuracy")


@pytest.fixture
def alternating(tmp_path, tiny_model_dir, words_csv):
    task = tunewise.validate_task({
        "name": "words", "instruction": "Classify the sentiment of the word.", "model": str(tiny_model_dir),
        "data": {"path": str(words_csv), "input": "Word: {word}", "target": "label"}, "batch_size": 4,
        "splits": {"train": 0.6, "dev": 0.2, "test": 0.2, "seed": 0}, "consistency": {"enabled": False},
        "arms": [{"type": "searched", "search": {"trials": 3, "dev_items": 4, "ks": [0, 1], "paraphrases": False,
                                                 "decodings": ["constrained"], "calibrate": False}},
                 {"type": "lora", "decoding": "constrained", "r": 4,
                  "train": {"epochs": 1, "batch_size": 4, "learning_rate": 1e-2}},
                 {"type": "hybrid", "tuned": "lora", "prompt": "searched", "decoding": "constrained",
                  "alternate": True}]})
    result = tunewise.run(task, home=tmp_path / "home", progress=False)
    return task, result


def test_alternation_searches_trains_and_searches_again(alternating, tmp_path):
    task, result = alternating
    store = Store(result.store_path)
    hybrid = next(a for a in store.arms(result.run_id) if a["name"] == "hybrid")["training"]
    steps = hybrid["alternation"]
    assert [s["model"] for s in steps] == ["base", "base", "tuned with it", "tuned with the first prompt"]
    assert all(0 <= s["dev"] <= 1 and s["dev_items"] == 4 for s in steps)
    # each search's winner is at least the prompt it started from, on the same dev items
    assert steps[1]["dev"] >= steps[0]["dev"] and steps[3]["dev"] >= steps[2]["dev"]
    assert hybrid["search"]["trials"] and hybrid["first_search"]["trials"]
    assert hybrid["matched"] and hybrid["settings_of"] == "lora"
    report = build_report(store, result.run_id)
    [contribution] = report.contributions
    assert [p.arm for p in contribution.parts] == ["searched", "lora"] and contribution.steps == steps
    for p in contribution.parts:  # the gain is the hybrid's value minus the part's, on the same items
        assert p.gain == pytest.approx(contribution.value - p.value)
    text = to_markdown(report)
    assert "What each part of hybrid added (matched)" in text and "prompt searched again on the tuned model" in text
    header, rows = table_rows(report)  # the hybrid trained its own adapter: the table shows its seconds
    row = next(r for r in rows if r[0] == "hybrid")
    assert row[header.index("train s")] == f"{hybrid['wall_s']:.0f}"


def test_a_rerun_of_an_alternating_hybrid_sends_nothing_again(alternating, tmp_path):
    task, first = alternating
    again = tunewise.run(task, home=tmp_path / "home", progress=False)
    store = Store(again.store_path)
    trained = [{a["name"]: a["training"] for a in store.arms(run)} for run in (first.run_id, again.run_id)]
    assert again.run_id != first.run_id and trained[0]["hybrid"] == trained[1]["hybrid"]  # searches and training kept
    rows = store.predictions(again.run_id, "hybrid")
    assert rows and all(r["cached"] for r in rows)


def test_alternate_needs_a_searched_prompt():
    with pytest.raises(tunewise.TaskFileError, match="prompt must name a searched arm"):
        tunewise.validate_task({
            "name": "t", "instruction": "x", "data": {"path": "d.csv", "input": "w", "target": "l"},
            "arms": [{"type": "zero_shot"}, {"type": "lora"},
                     {"type": "hybrid", "tuned": "lora", "prompt": "zero_shot", "alternate": True}]})


def test_an_alternating_hybrid_exports_with_the_prompt_it_was_measured_with(alternating, tmp_path):
    """export rebuilds the second search's winner and checks it against the prompts the run sent."""
    import json

    from tunewise.ship.export import export
    task, result = alternating
    out = export(Store(result.store_path), result.run_id, tmp_path / "bundle", "hybrid")
    prompt = json.loads((tmp_path / "bundle" / "prompt.json").read_text())
    stored = next(a for a in Store(result.store_path).arms(result.run_id) if a["name"] == "hybrid")
    assert prompt and stored["prompt"] and (tmp_path / "bundle" / "adapter" / "adapter_config.json").exists()
    assert out is not None


def test_the_few_shot_curve_draws_several_example_sets_at_each_k(tmp_path, many_words):
    from tunewise.arms import build
    from tunewise.execution.runner import arm_plan
    from tunewise.task.data import load_examples, make_splits
    task = tunewise.validate_task({
        "name": "many", "model": "fake", "instruction": "Classify the sentiment of the word.",
        "data": {"path": str(many_words), "input": "Word: {word}", "target": "label"},
        "splits": {"train": 0.5, "dev": 0.1, "test": 0.4, "seed": 0}, "consistency": {"enabled": False},
        "arms": [{"type": "few_shot", "k": 2, "decoding": "constrained"}],
        "learning_curve": {"ks": [1, 2], "draws": 3}})
    plan = [(c.name, point) for c, point in arm_plan(task)]
    assert [name for name, _ in plan] == [None, "few_shot@k1", "few_shot@k1#1", "few_shot@k1#2",
                                          "few_shot@k2#1", "few_shot@k2#2"]
    splits = make_splits(task, load_examples(task))
    shots = []
    for config, _ in [arm_plan(task)[i] for i in (0, 4, 5)]:  # k=2: the arm itself and draws 1 and 2
        arm = build(config, task, ["negative", "positive"])
        arm.prepare(splits)
        shots.append(tuple(e.id for e in arm.shots))
    assert len(set(shots)) == 3, shots  # each draw its own examples
    similar = task.model_copy(update={"arms": [task.arms[0].model_copy(update={"selection": "similar"})]})
    assert len(arm_plan(similar)) == 2  # the arm and k=1: the most similar examples are one set, no draws

    result = tunewise.run(task, home=tmp_path, progress=False,
                          backend_factory=lambda model: FakeBackend(copies_the_last_example))
    needs = build_report(Store(result.store_path), result.run_id).data_needs
    assert [(p.k, p.draws) for p in needs.few_shot] == [(1, 3), (2, 3)]
    for point in needs.few_shot:
        assert point.low <= point.value <= point.high
    assert "lowest – highest set" in to_markdown(build_report(Store(result.store_path), result.run_id))
