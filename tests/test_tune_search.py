"""The searched fine-tune: Optuna over training settings on dev, resumable, recorded, reused by hybrids and the
learning curve; and the dev score measured as test measures it."""

import json

import pytest

import tunewise
from tunewise.errors import TunewiseError
from tunewise.store.sqlite import Store
from tunewise.task import validate_task
from tunewise.training import loop as train_module

# the label follows the word, whatever the number after it: learnable by a tiny model, and dev items are new rows
ROWS = [(f"{word} {n}", label) for n in range(30) for word, label in (("happy", "positive"), ("sad", "negative"))]


MODULES = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


@pytest.fixture
def planted(tmp_path, tiny_model_dir):
    path = tmp_path / "planted.csv"
    path.write_text("word,label\n" + "".join(f"{w},{l}\n" for w, l in ROWS))

    def make(search=None, more_arms=(), curve=None, **arm):
        lora = {"type": "lora", "decoding": "constrained", "r": 8, "target_modules": MODULES,
                # float32: the search under test, the same on every CPU (auto is bfloat16 where it is native)
                "train": {"epochs": 3, "batch_size": 4, "patience": 0, "precision": "float32"}, **arm}
        if search:
            lora["search"] = search
        return validate_task({
            "name": "planted", "instruction": "Classify the word.", "model": str(tiny_model_dir), "batch_size": 8,
            "data": {"path": str(path), "input": "Word: {word}", "target": "label"},
            "splits": {"train": 0.5, "dev": 0.25, "test": 0.25, "seed": 0}, "arms": [lora, *more_arms],
            **({"learning_curve": curve} if curve else {})})
    return make


def _trainings(monkeypatch) -> list[float]:
    """The learning rate of every training that actually runs."""
    seen = []
    original = train_module.SFTTrainer.train

    def counted(self):
        seen.append(self.args.learning_rate)
        return original(self)
    monkeypatch.setattr(train_module.SFTTrainer, "train", counted)
    return seen


def test_the_search_finds_the_planted_learning_rate(planted, tmp_path, monkeypatch):
    seen = _trainings(monkeypatch)
    task = planted({"trials": 3, "learning_rate": [1e-7, 3e-2, 1e-6]})
    result = tunewise.run(task, home=tmp_path / "home", progress=False)
    training = Store(result.store_path).arms(result.run_id)[0]["training"]
    record = training["tune_search"]
    assert sorted(seen) == [1e-7, 1e-6, 3e-2]  # each value tried once; the winner's training is its trial's
    assert record["best"] == {"learning_rate": 3e-2}
    values = {t["params"]["learning_rate"]: t["value"] for t in record["trials"]}
    assert values[3e-2] > max(values[1e-7], values[1e-6])
    assert training["learning_rate"] == 3e-2 and training["best_dev"] == record["dev_score"]
    assert {t["epochs_run"] for t in record["trials"] if t["state"] == "complete"} == {3}
    report = result.report
    found = next(s for s in report.searches if s.arm == "lora")
    assert found.kind == "fine-tune" and found.best == {"learning_rate": 3e-2}
    assert "learning_rate" in found.contributions


def test_an_interrupted_search_resumes_without_repeating_a_trial(planted, tmp_path, monkeypatch):
    task = planted({"trials": 3, "learning_rate": [1e-7, 3e-2, 1e-6]})
    seen = []
    original = train_module.SFTTrainer.train

    def interrupted(self):
        seen.append(self.args.learning_rate)
        if len(seen) == 2:
            raise KeyboardInterrupt
        return original(self)
    monkeypatch.setattr(train_module.SFTTrainer, "train", interrupted)
    with pytest.raises(KeyboardInterrupt):
        tunewise.run(task, home=tmp_path / "home", progress=False)
    first, second = seen
    resumed = _trainings(monkeypatch)
    result = tunewise.run(task, home=tmp_path / "home", progress=False)
    assert first not in resumed  # the finished trial is not trained again
    assert resumed[0] == second  # the interrupted one is tried again, with its settings
    assert sorted([first, *resumed]) == [1e-7, 1e-6, 3e-2]
    record = Store(result.store_path).arms(result.run_id)[0]["training"]["tune_search"]
    assert len(record["trials"]) == 3 and record["best"] == {"learning_rate": 3e-2}


def test_the_learning_curve_and_a_hybrid_train_with_the_settings_the_search_chose(planted, tmp_path, monkeypatch):
    seen = _trainings(monkeypatch)
    task = planted({"trials": 2, "learning_rate": [1e-7, 3e-2]}, more_arms=[
        {"type": "structured", "decoding": "constrained"},
        {"type": "hybrid", "tuned": "lora", "prompt": "structured", "decoding": "constrained"}],
        curve={"sizes": [4, "all"], "min_passes": 0})
    result = tunewise.run(task, home=tmp_path / "home", progress=False)
    arms = {a["name"]: a for a in Store(result.store_path).arms(result.run_id)}
    assert arms["hybrid"]["training"]["learning_rate"] == 3e-2 and "tune_search" not in arms["hybrid"]["training"]
    assert arms["lora@4"]["training"]["learning_rate"] == 3e-2
    assert sorted(seen) == [1e-7, 3e-2, 3e-2, 3e-2]  # two trials, then the hybrid and the curve point
    effort = result.report.effort  # the hybrid's settings were found by lora's search: both sides searched
    assert effort["hybrid"].searched and effort["hybrid"].shared_with == "lora" and effort["hybrid"].trials == 2
    assert effort["lora"].searched and not effort["structured"].trials


def test_dev_is_scored_with_the_arms_own_decoding(planted, tmp_path, monkeypatch):
    """A generating arm chooses its epoch on generated answers, parsed as on test, not on scored labels."""
    from tunewise.backends.local import LocalBackend
    calls = {"generate": 0, "score": 0}
    generate, score = LocalBackend.generate, LocalBackend.score_choices

    def counted_generate(self, requests, progress=None):
        calls["generate"] += self.model_key == "dev-eval"
        return generate(self, requests, progress)

    def counted_score(self, requests, progress=None):
        calls["score"] += self.model_key == "dev-eval"
        return score(self, requests, progress)
    monkeypatch.setattr(LocalBackend, "generate", counted_generate)
    monkeypatch.setattr(LocalBackend, "score_choices", counted_score)
    tunewise.run(planted(decoding="generate"), home=tmp_path / "home", progress=False)
    assert calls == {"generate": 3, "score": 0}  # one dev pass per epoch, generated


@pytest.mark.parametrize("arm, field", [
    ({"type": "full", "search": {"r": [4, 8]}}, "arms.0.search.r"),
    ({"search": {"trials": 2}}, "arms.0.search"),
    ({"search": {"learning_rate": []}}, "arms.0.search.learning_rate"),
    ({"search": {"learning_rate": [1e-3]}, "settings_from": "x"}, "arms.0.settings_from"),
])
def test_bad_search_settings_are_refused_before_training(planted, tmp_path, arm, field, monkeypatch):
    seen = _trainings(monkeypatch)
    with pytest.raises(TunewiseError) as err:
        tunewise.run(planted(**arm), home=tmp_path / "home", progress=False)
    assert field in str(err.value) or err.value.field == field, str(err.value)
    assert not seen


def test_a_setting_the_search_chooses_is_named_as_having_no_effect(planted, tmp_path):
    task = planted({"trials": 1, "learning_rate": [1e-2]}, train={"learning_rate": 5e-3, "epochs": 1, "patience": 0})
    from tunewise.execution.runner import _checked
    splits = _checked(task, False, "<task>")[2]
    assert any("arms.0.train.learning_rate: the search chooses it" in n for n in splits.notes), splits.notes


def test_the_search_record_keeps_each_trials_cost(planted, tmp_path):
    task = planted({"trials": 2, "learning_rate": [1e-7, 3e-2], "train_size": 6})
    result = tunewise.run(task, home=tmp_path / "home", progress=False)
    training = Store(result.store_path).arms(result.run_id)[0]["training"]
    record = training["tune_search"]
    assert record["train_size"] == 6 and training["train_examples"] == result.report.info["splits"]["train"]  # the winner trains on all
    assert all(t["tokens"] > 0 and t["seconds"] is not None for t in record["trials"])
    assert json.dumps(record)  # stored as JSON


def _arm(name, training, value, low, high, n=100):
    from types import SimpleNamespace
    metric = SimpleNamespace(value=value, low=low, high=high)
    return SimpleNamespace(name=name, training=training, summary=SimpleNamespace(metrics={"accuracy": metric}, n=n))


def test_a_dev_to_test_drop_beyond_the_intervals_is_a_warning_for_every_arm_chosen_on_dev():
    from types import SimpleNamespace

    from tunewise.analysis.build import dev_drops
    arms = [_arm("lora", {"best_dev": 0.667, "dev_items": 60, "best_epoch": 2}, 0.111, 0.05, 0.18),
            _arm("searched", {"kind": "search", "dev_score": 0.95, "dev_items": 80}, 0.70, 0.63, 0.77),
            _arm("steady", {"best_dev": 0.82, "dev_items": 60, "best_epoch": 1}, 0.80, 0.72, 0.88),
            _arm("zero_shot", None, 0.5, 0.4, 0.6)]
    report = SimpleNamespace(main_arms=lambda: arms, metric="accuracy")
    found = dev_drops(report)
    assert len(found) == 2 and found[0].startswith("arm 'lora': the epoch kept (2) scored accuracy 0.667 on 60")
    assert found[1].startswith("arm 'searched': the search's winning prompt scored accuracy 0.950")


def test_the_plan_counts_a_searchs_trials_and_the_curve_points_own_sizes(planted, tmp_path):
    from tunewise.execution.runner import make_plan
    task = planted({"trials": 2, "learning_rate": [1e-7, 3e-2], "train_size": 6},
                   curve={"sizes": [4, "all"], "min_passes": 20})
    _, plan = make_plan(task, log=lambda m: None)
    parts = [(p.unit, p.part, p.requests) for p in plan.parts if p.unit.startswith("lora")]
    dev = 16  # the planted data's dev split: every dev item, after each epoch
    assert parts[:3] == [("lora", "search", 3 * dev), ("lora", "search", 3 * dev), ("lora", "training", 3 * dev)]
    # the curve point trains 4 examples for max(3, 20 / 4) epochs and keeps the last: no dev answers
    assert ("lora@4", "training", 0) in parts
    assert all(p.seconds > 0 for p in plan.parts if p.part in ("search", "training"))
