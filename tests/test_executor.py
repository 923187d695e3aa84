"""Re-splits (splits.seeds), the units a run is made of, and the Ray executor against the local one."""

import json

import pytest

import tunewise
from conftest import oracle
from tunewise.backends import FakeBackend
from tunewise.execution.executor import plan_units
from tunewise.execution.runner import arm_plan, config_hash
from tunewise.store.sqlite import Store
from tunewise.task import ExecutorConfig, validate_task


def fake_factory(backend):
    return lambda model: backend


def words_task(tmp_path, words_csv, **overrides):
    data = {"name": "words", "instruction": "Classify the sentiment of the word.", "model": "fake",
            "data": {"path": str(words_csv), "input": "Word: {word}", "target": "label"},
            "splits": {"train": 0.5, "dev": 0.2, "test": 0.3, "seeds": [1, 2, 3]},
            "arms": [{"type": "zero_shot"}, {"type": "structured", "decoding": "constrained"},
                     {"type": "few_shot", "k": 2}]}
    data.update(overrides)
    return validate_task(data)


def test_each_seed_is_stored_as_its_arms_on_that_split(tmp_path, words_csv):
    task = words_task(tmp_path, words_csv)
    result = tunewise.run(task, home=tmp_path, progress=False, backend_factory=fake_factory(FakeBackend()))
    assert list(result.summaries) == ["zero_shot", "structured", "few_shot", "zero_shot@seed2", "structured@seed2",
                                      "few_shot@seed2", "zero_shot@seed3", "structured@seed3", "few_shot@seed3"]
    store = Store(result.store_path)
    arms = {a["name"]: a for a in store.arms(result.run_id)}
    assert arms["few_shot@seed3"]["curve"] == {"of": "few_shot", "seed": 3}
    assert arms["few_shot"]["curve"] is None
    # another seed's split: other test items, other few-shot examples
    main_ids = {r["example_id"] for r in store.predictions(result.run_id, "few_shot")}
    other = store.predictions(result.run_id, "few_shot@seed3")
    assert {r["example_id"] for r in other} != main_ids
    assert other[0]["messages"][1:3] != store.predictions(result.run_id, "few_shot")[0]["messages"][1:3]
    # each seed's arms are a one-seed run on that seed: its split, its examples, its bootstrap
    for seed, suffix in ((1, ""), (3, "@seed3")):
        single = tunewise.run(task.on_seed(seed), home=tmp_path / f"one{seed}", progress=False,
                              backend_factory=fake_factory(FakeBackend()))
        assert {k: untimed(v) for k, v in single.summaries.items()} == {
            k: untimed(result.summaries[k + suffix]) for k in single.summaries}


def test_the_report_gives_per_seed_values_verdicts_and_a_stability_line(tmp_path, words_csv):
    task = words_task(tmp_path, words_csv)
    result = tunewise.run(task, home=tmp_path, progress=False, backend_factory=fake_factory(FakeBackend()))
    report = result.report
    st = report.stability
    assert st.seeds == [1, 2, 3] and set(st.verdicts) == {1, 2, 3}
    values = [result.summaries[n]["metrics"]["accuracy"]["value"] for n in ("structured", "structured@seed2",
                                                                            "structured@seed3")]
    assert st.arms["structured"].values == dict(zip([1, 2, 3], values))
    assert st.arms["structured"].mean == pytest.approx(sum(values) / 3)
    # pooled: the three test splits' answers together (equal sizes: the pooled accuracy is the mean)
    assert st.pooled.n == 3 * result.summaries["structured"]["n"]
    for name in ("structured", "few_shot"):  # few-shot prompts differ by seed: every seed's answer counts
        each = [st.arms[name].values[s] for s in (1, 2, 3)]
        assert st.pooled.values[name].value == pytest.approx(sum(each) / 3)
    decision = report.decision
    assert decision.basis == st.pooled.basis and "3 re-splits pooled" in decision.basis
    agree = sum(v == decision.recommended for v in st.verdicts.values())
    assert decision.stability.startswith(f"{decision.recommended} recommended on {agree} of 3 re-splits")
    markdown = result.report_paths["markdown"].read_text()
    assert "## Across re-splits (accuracy)" in markdown and "| seed 1 | seed 2 | seed 3 | mean | sd |" in markdown
    assert "**Stability:**" in markdown
    assert 'id="re-splits"' in result.report_paths["html"].read_text()


def test_an_unstable_verdict_says_so_before_anything_else(tmp_path, words_csv):
    # the hashing fake answers differ by split: on these seeds the verdict changes with the split
    task = words_task(tmp_path, words_csv)
    result = tunewise.run(task, home=tmp_path, progress=False, backend_factory=fake_factory(FakeBackend()))
    st, decision = result.report.stability, result.report.decision
    assert not st.stable and len(set(st.verdicts.values())) > 1
    assert decision.reasons[0].startswith("Not stable across re-splits")
    assert "tentative" in decision.stability and "Not stable" in decision.stability
    others = [f"seed {s}: {v}" for s, v in st.verdicts.items() if v != decision.recommended]
    assert others and all(o in decision.stability for o in others)


def test_a_stable_verdict_is_one_line(tmp_path, words_csv):
    task = words_task(tmp_path, words_csv)
    result = tunewise.run(task, home=tmp_path, progress=False, backend_factory=fake_factory(FakeBackend(oracle)))
    decision = result.report.decision
    assert result.report.stability.stable
    assert decision.stability == f"{decision.recommended} recommended on 3 of 3 re-splits"
    assert not decision.reasons[0].startswith("Not stable")


def test_one_seed_keeps_the_configuration_and_report_as_before(tmp_path, task_file):
    task = tunewise.load_task(task_file)
    resolved = task.resolved()
    assert "seeds" not in resolved["splits"] and "executor" not in resolved
    result = tunewise.run(task, home=tmp_path, progress=False, backend_factory=fake_factory(FakeBackend(oracle)))
    assert result.report.stability is None and result.report.decision.stability is None
    assert "re-splits" not in result.report_paths["markdown"].read_text()
    # where units run is not part of what a run is: the same hash, so a run resumes on either executor
    assert config_hash(task) == config_hash(task.model_copy(update={"executor": ExecutorConfig(type="ray")}))


def test_an_interrupted_multi_seed_run_resumes_only_what_is_missing(tmp_path, words_csv):
    task = words_task(tmp_path, words_csv)
    backend = FakeBackend()
    first = tunewise.run(task, home=tmp_path, progress=False, backend_factory=fake_factory(backend))
    store = Store(first.store_path)
    with store.db:  # as if killed while the seed-3 few-shot arm ran
        store.db.execute("DELETE FROM arms WHERE run_id = ? AND name = 'few_shot@seed3'", (first.run_id,))
        store.db.execute("DELETE FROM cache")
    store.set_status(first.run_id, "interrupted")
    store.close()
    calls = backend.calls
    second = tunewise.run(task, home=tmp_path, progress=False, backend_factory=fake_factory(backend))
    assert second.run_id == first.run_id and list(second.unit_seconds) == ["few_shot@seed3"]
    assert backend.calls > calls  # its answers were asked again (the cache was lost with it), the others' not
    assert untimed(second.summaries["few_shot@seed3"]) == untimed(first.summaries["few_shot@seed3"])


def test_units_respect_hybrids_and_run_the_curve_on_the_main_seed():
    task = validate_task({
        "data": {"path": "x.csv", "input": "w", "target": "label"}, "instruction": "Classify.",
        "splits": {"seeds": [4, 7]},
        "arms": [{"type": "few_shot", "k": 2}, {"type": "lora"},
                 {"type": "hybrid", "tuned": "lora", "prompt": "few_shot", "training": "plain"},
                 {"type": "hybrid", "name": "matched", "tuned": "lora", "prompt": "few_shot"}],
        "learning_curve": {"sizes": [16, "all"], "ks": [1], "draws": 1}})
    units = {u.name: u for u in plan_units(task, arm_plan(task))}
    assert list(units) == ["few_shot", "lora", "hybrid", "matched", "lora@16", "few_shot@k1",
                           "few_shot@seed7", "lora@seed7", "hybrid@seed7", "matched@seed7"]
    # a plain hybrid asks its tuned arm's model (same seed); a matched one trains its own
    assert units["hybrid"].needs == ["lora"] and units["hybrid@seed7"].needs == ["lora@seed7"]
    assert units["matched"].needs == [] and units["matched"].tuned and not units["hybrid"].tuned
    assert units["lora@seed7"].tuned and units["lora@seed7"].seed == 7 and units["lora@16"].seed == 4
    assert [u.position for u in units.values()] == list(range(10))


def test_seeds_are_checked(tmp_path, words_csv):
    from tunewise.errors import TaskFileError
    for splits, message in (({"seeds": []}, "is empty"), ({"seeds": [1, 1]}, "listed twice"),
                            ({"seeds": [2, 3], "seed": 3}, "not the first of seeds")):
        with pytest.raises(TaskFileError, match=message):
            words_task(tmp_path, words_csv, splits=splits)


def test_without_ray_the_local_executor_runs_with_a_note(tmp_path, words_csv, monkeypatch):
    import importlib.util
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "ray" else real(name, *a))
    task = words_task(tmp_path, words_csv, executor="ray")
    said = []
    result = tunewise.run(task, home=tmp_path, progress=False, backend_factory=fake_factory(FakeBackend()),
                          log=said.append)
    assert any("pip install 'tunewise[ray]'" in line for line in said)
    assert len(result.summaries) == 9


def untimed(summary: dict) -> dict:
    out = {k: v for k, v in summary.items() if k not in ("cached", "predict_s", "unit_s", "examples_per_s", "latency_p50_s",
                                                          "latency_p95_s")}
    if out.get("consistency"):
        out["consistency"] = {k: v for k, v in out["consistency"].items() if k not in ("seconds", "model_s")}
    return out


# -- Ray ------------------------------------------------------------------------------------
def tiny_task(tiny_model_dir, words_csv, executor: str):
    return validate_task({
        "name": "words", "instruction": "Classify the sentiment of the word.", "model": str(tiny_model_dir),
        "data": {"path": str(words_csv), "input": "Word: {word}", "target": "label"}, "batch_size": 4,
        "splits": {"train": 0.6, "dev": 0.2, "test": 0.2, "seeds": [0, 1]}, "executor": executor,
        "generation": {"max_tokens": 4}, "consistency": {"samples": 2, "max_items": 2},
        "arms": [{"type": "zero_shot"}, {"type": "few_shot", "k": 2, "decoding": "constrained"},
                 {"type": "lora", "decoding": "constrained", "r": 4,
                  "train": {"epochs": 1, "batch_size": 4, "learning_rate": 1e-2}},
                 {"type": "hybrid", "tuned": "lora", "prompt": "few_shot", "decoding": "constrained"}]})


def stored(home, run_id) -> dict:
    """What a run stored, without what differs between identical runs (times, cache hits, paths)."""
    store = Store(home / "tunewise.db")
    out = {}
    for arm in store.arms(run_id):
        training = {k: v for k, v in (arm["training"] or {}).items()
                    if k not in ("wall_s", "path", "torch_threads", "losses", "examples_per_s", "tokens_per_s")}
        rows = [(r["example_id"], r["raw"], json.dumps(r["parsed"]), r["scores"], r["messages"])
                for r in store.predictions(run_id, arm["name"])]
        out[arm["name"]] = (arm["status"], arm["position"], arm["config"], arm["prompt"], arm["curve"], training,
                            untimed(arm["summary"]), rows)
    store.close()
    return out


def test_ray_stores_what_the_local_executor_stores(tmp_path, tiny_model_dir, words_csv):
    ray = pytest.importorskip("ray", reason="the Ray executor needs Ray: pip install 'tunewise[ray]'")
    local = tunewise.run(tiny_task(tiny_model_dir, words_csv, "local"), home=tmp_path / "local", progress=False)
    ray.init(num_cpus=2, include_dashboard=False, configure_logging=False, log_to_driver=False)
    try:
        said = []
        remote = tunewise.run(tiny_task(tiny_model_dir, words_csv, "ray"), home=tmp_path / "ray", progress=False,
                              log=said.append)
    finally:
        ray.shutdown()
    assert any(line.startswith("hybrid@seed1: done") for line in said)  # it ran on Ray
    a, b = stored(tmp_path / "local", local.run_id), stored(tmp_path / "ray", remote.run_id)
    assert list(a) == list(b) == ["zero_shot", "few_shot", "lora", "hybrid", "zero_shot@seed1", "few_shot@seed1",
                                  "lora@seed1", "hybrid@seed1"]
    for name in a:
        assert a[name] == b[name], name
    # the driver wrote every answer the workers computed: a rerun sends nothing
    cache = Store(tmp_path / "ray" / "tunewise.db")
    assert cache.db.execute("SELECT count(*) FROM cache").fetchone()[0] == Store(
        tmp_path / "local" / "tunewise.db").db.execute("SELECT count(*) FROM cache").fetchone()[0]
    assert remote.report.decision.stability == local.report.decision.stability


# -- GPU paths ------------------------------------------------------------------------------
def test_vllm_backend_scores_and_generates_like_the_local_backend(tiny_model_dir):
    pytest.importorskip("vllm", reason="vLLM is not installed (pip install 'tunewise[vllm]', GPU machines)")
    import torch
    if not torch.cuda.is_available():
        pytest.skip("vLLM needs a CUDA GPU; this machine has none")
    from tunewise.backends import ScoreRequest, make_backend
    from tunewise.backends.base import GenParams, GenRequest
    from tunewise.backends.local import LocalBackend
    vllm, local = make_backend(f"vllm:{tiny_model_dir}"), LocalBackend(str(tiny_model_dir), device="cuda")
    messages = [{"role": "user", "content": "Word: happy"}]
    a = vllm.score_choices([ScoreRequest(messages, ("positive", "negative"))])[0]
    b = local.score_choices([ScoreRequest(messages, ("positive", "negative"))])[0]
    assert a.logprobs == pytest.approx(b.logprobs, abs=0.05) and a.input_tokens == b.input_tokens
    request = GenRequest(messages, GenParams(max_tokens=8))
    assert vllm.generate([request])[0].text == local.generate([request])[0].text
