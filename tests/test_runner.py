import dataclasses
import json
import sqlite3

import pytest

import tunewise
from conftest import oracle
from tunewise.backends import FakeBackend
from tunewise.errors import StoreError
from tunewise.store.sqlite import SCHEMA_VERSION, Store


def fake_factory(backend):
    return lambda model: backend


def test_run_stores_everything_and_writes_reports(task_file, tmp_path):
    task = tunewise.load_task(task_file)
    backend = FakeBackend(oracle)
    result = tunewise.run(task, home=tmp_path / "home", progress=False, backend_factory=fake_factory(backend))
    assert set(result.summaries) == {"zero_shot", "structured", "few_shot"}
    for summary in result.summaries.values():
        assert summary["metrics"]["accuracy"]["value"] == 1.0  # the oracle knows every word
        assert summary["n"] == 6
    store = Store(result.store_path)
    run = store.get_run(result.run_id)
    assert run["status"] == "done" and run["config"]["arms"][2]["k"] == 2
    assert run["info"]["splits"] == {"train": 10, "dev": 4, "test": 6}
    rows = store.predictions(result.run_id, "few_shot")
    assert len(rows) == 6 and len(rows[0]["messages"]) == 2 + 2 * 2  # system, 2 shots, input
    assert {r["scores"]["accuracy"] for r in rows} == {1.0}
    structured = store.predictions(result.run_id, "structured")
    assert structured[0]["extra"]["logprobs"].keys() == {"negative", "positive"}
    report = json.loads(result.report_paths["json"].read_text())
    assert [a["name"] for a in report["arms"]] == ["zero_shot", "structured", "few_shot"]
    markdown = result.report_paths["markdown"].read_text()
    assert "| zero_shot | prompt: zero-shot |" in markdown and "Output format:" in markdown


def test_rerun_answers_from_the_cache(task_file, tmp_path):
    task = tunewise.load_task(task_file)
    backend = FakeBackend(oracle)
    first = tunewise.run(task, home=tmp_path, progress=False, backend_factory=fake_factory(backend))
    calls = backend.calls
    second = tunewise.run(task, home=tmp_path, progress=False, backend_factory=fake_factory(backend))
    assert backend.calls == calls and first.run_id != second.run_id
    assert all(s["cached"] == 6 for s in second.summaries.values())
    assert {k: untimed(v) for k, v in first.summaries.items()} == {k: untimed(v) for k, v in second.summaries.items()}


def untimed(summary: dict) -> dict:
    """A summary without what differs between identical runs: cache hits and wall times."""
    out = {k: v for k, v in summary.items() if k not in ("cached", "predict_s", "unit_s")}
    if out.get("consistency"):
        out["consistency"] = {k: v for k, v in out["consistency"].items() if k != "seconds"}
    return out


@pytest.mark.parametrize("cache", ["develop", "measure"])
def test_interrupted_run_resumes_without_redoing_work(task_file, tmp_path, monkeypatch, cache):
    monkeypatch.setattr("tunewise.store.cache.CHUNK", 2)
    task = tunewise.load_task(task_file)
    task = task.model_copy(update={"consistency": task.consistency.model_copy(update={"enabled": False}),
                                   "cache": cache})  # measure: answers are the run's own, reused by its resume
    reference = tunewise.run(task, home=tmp_path / "ref", progress=False,
                             backend_factory=fake_factory(FakeBackend(oracle)))

    class Flaky(FakeBackend):
        def __init__(self, fail_at):
            super().__init__(oracle)
            self.fail_at = fail_at

        def _answer(self, messages, salt=""):
            if self.calls == self.fail_at:
                raise KeyboardInterrupt
            return super()._answer(messages, salt)

    first = Flaky(fail_at=9)  # arm 1 is done (6 calls), arm 2 has saved one chunk of 2 when it stops
    with pytest.raises(KeyboardInterrupt):
        tunewise.run(task, home=tmp_path / "w", progress=False, backend_factory=fake_factory(first))
    second = FakeBackend(oracle)
    resumed = tunewise.run(task, home=tmp_path / "w", progress=False, backend_factory=fake_factory(second))
    assert second.calls == 18 - 8  # the 8 finished requests are not sent again
    assert len(Store(tmp_path / "w" / "tunewise.db").list_runs()) == 1  # the same run, resumed
    for name, summary in resumed.summaries.items():
        assert summary["metrics"] == reference.summaries[name]["metrics"]


def test_store_has_a_versioned_schema(tmp_path):
    store = Store(tmp_path / "s.db")
    assert store.version() == SCHEMA_VERSION
    store.close()
    db = sqlite3.connect(tmp_path / "s.db")
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.commit()
    db.close()
    with pytest.raises(StoreError, match="upgrade tunewise"):
        Store(tmp_path / "s.db")


def test_few_shot_similar_picks_the_nearest_examples(task_file, tmp_path):
    from tunewise.arms import build
    from tunewise.task.data import load_examples, make_splits
    task = tunewise.load_task(task_file)
    config = task.arms[2].model_copy(update={"selection": "similar", "k": 1})
    arm = build(config, task, ["negative", "positive"])
    splits = make_splits(task, load_examples(task))
    arm.prepare(splits)
    probe = splits.train[0].__class__(id="x", input="Word: " + splits.train[3].input[6:] + "s", target="", line=0)
    assert arm.shots_for(probe) == [splits.train[3]]


def test_calibration_removes_a_constant_label_bias(task_file, tmp_path):
    from tunewise.backends.base import ChoiceScores

    class Biased(FakeBackend):
        """Prefers 'positive' by a constant, plus a weaker true signal for each word."""
        def score_choices(self, requests, progress=None):
            out = []
            for r in requests:
                blank = "N/A" in r.messages[-1]["content"]
                label = None if blank else oracle(r.messages)
                out.append(ChoiceScores([-2.0 + 1.5 * (label == "negative"), -0.1 + 0.5 * (label == "positive")],
                                        1, 0, 0.001))
            return out

    task = tunewise.load_task(task_file)
    arms = [{"type": "structured", "decoding": "constrained", "name": "raw"},
            {"type": "structured", "decoding": "constrained", "calibrate": True, "name": "calibrated"}]
    task = tunewise.validate_task(dict(task.model_dump(), arms=arms, consistency={"enabled": False}))
    result = tunewise.run(task, home=tmp_path, progress=False, backend_factory=fake_factory(Biased(oracle)))
    assert result.summaries["raw"]["metrics"]["accuracy"]["value"] == 0.5          # always 'positive'
    assert result.summaries["calibrated"]["metrics"]["accuracy"]["value"] == 1.0
    rows = Store(result.store_path).predictions(result.run_id, "calibrated")
    assert "uncalibrated" in rows[0]["extra"]


def test_calibrate_needs_scored_labels():
    with pytest.raises(tunewise.TaskFileError, match="calibrate needs decoding: constrained"):
        tunewise.validate_task({"instruction": "x", "data": {"path": "d.jsonl", "input": "w", "target": "y"},
                                "arms": [{"type": "zero_shot", "calibrate": True}]})


def test_the_consistency_pass_keeps_within_its_share_of_an_arm(task_file):
    from types import SimpleNamespace

    from tunewise.measure.consistency import item_count
    from tunewise.task import ConsistencyConfig
    task = tunewise.load_task(task_file)
    task = task.model_copy(update={"consistency": ConsistencyConfig(samples=5, max_items=50)})
    generated = SimpleNamespace(decoding="generate", asks_instruction=True)
    scored = SimpleNamespace(decoding="constrained", asks_instruction=True)
    bare = SimpleNamespace(decoding="constrained", asks_instruction=False)
    assert item_count(generated, 200, task) == 25  # 5 samples + 3 paraphrases: 8 runs x 25 items = the test split
    assert item_count(scored, 200, task) == 50     # 3 paraphrase runs x 50 <= 200
    assert item_count(scored, 60, task) == 20
    assert item_count(bare, 60, task) == 50        # nothing to rerun: sample agreement comes from the scores
    unlimited = task.model_copy(update={"consistency": ConsistencyConfig(samples=5, max_items=50, max_share=1)})
    assert item_count(generated, 200, unlimited) == 50


class SlowSamples(FakeBackend):
    """Answers as the fake does; a sampled answer records `sampled_s` of model time, a greedy one 1 ms; and
    each generate call's size is kept."""

    def __init__(self, sampled_s: float):
        super().__init__(oracle)
        self.sampled_s, self.call_sizes = sampled_s, []

    def generate(self, requests, progress=None):
        self.call_sizes.append(len(requests))
        return [dataclasses.replace(g, latency_s=self.sampled_s if r.params.temperature > 0 else g.latency_s)
                for r, g in zip(requests, super().generate(requests, progress))]


@pytest.mark.parametrize("sampled_s, items", [(0.001, 10), (0.004, 4)])
def test_the_consistency_pass_stops_at_its_share_of_measured_time(task_file, sampled_s, items):
    """max_share caps the pass by the model time its answers record: when sampled answers cost as much as
    greedy ones, every item the call count allows; when they cost 4 times as much, only the first few. Each
    pass asks all its items' samples in one call, so the backend can batch them."""
    from tunewise.arms import build
    from tunewise.measure.consistency import item_count, measure
    from tunewise.task import ConsistencyConfig
    task = tunewise.load_task(task_file)
    task = task.model_copy(update={"consistency": ConsistencyConfig(samples=5, max_items=50, max_share=0.5)})
    arm = build(task.arms[0], task, ["negative", "positive"], {})
    from tunewise.task.data import Example
    examples = [Example(id=str(i), input=f"Word: {w}{i}", target="positive", line=i, fields={"word": f"{w}{i}"})
                for i, w in enumerate(["good", "bad", "happy", "sad", "calm", "angry"] * 14)]
    backend = SlowSamples(sampled_s)
    test_seconds = sum(p.latency_s for p in arm.predict(examples, backend))  # 84 answers, 84 ms
    assert item_count(arm, len(examples), task) == 10  # 8 runs an item: 10 items' calls fit the test's 84
    backend.call_sizes.clear()
    out = measure(arm, examples, backend, task, test_seconds=test_seconds)
    assert out["items"] == items
    assert out["model_s"] <= test_seconds + 1e-9 or items == 4  # the first 4 are measured whatever they cost
    sample_calls = [n for n in backend.call_sizes if n % 5 == 0 and n >= 20]
    assert sample_calls[0] == 20  # the first 4 items' 5 samples each, in one call
def test_the_summary_shows_the_consistency_share_of_each_arm(task_file, tmp_path):
    task = tunewise.load_task(task_file)
    result = tunewise.run(task, home=tmp_path, progress=False, backend_factory=fake_factory(FakeBackend(oracle)))
    arm = result.report.arms[0]
    assert arm.summary.predict_s > 0 and arm.summary.consistency.seconds > 0
    assert 0 < arm.summary.consistency_share < 1
    assert "eval s (consistency)" in result.report_paths["markdown"].read_text()


def test_each_arms_result_is_said_as_it_finishes(task_file, tmp_path):
    """The first arms' numbers show while the others still run, not only in the final report."""
    said = []
    tunewise.run(tunewise.load_task(task_file), home=tmp_path, progress=False, log=said.append,
                 backend_factory=fake_factory(FakeBackend(oracle)))
    results = [line for line in said if " in " in line and "(95% CI " in line]
    assert [line.split(":")[0] for line in results] == ["zero_shot", "structured", "few_shot"]
    assert all(line.split(": ")[1].startswith("accuracy ") for line in results)
