"""Assertions (issue 19): each kind passes a good answer and fails a bad one; the task file's assertions become
pass/fail metrics with intervals and paired tests, on a task without targets. Bad configurations are pinned
in test_bad_input.py."""

from __future__ import annotations

import json

import pytest

from tunewise.backends import FakeBackend
from tunewise.execution.runner import run
from tunewise.measure import get_metric
from tunewise.measure.assertions import passes, sentences, words
from tunewise.task import validate_task

GOOD = ("Gravity is the pull between things that have mass. For example, an apple falls from a tree because "
        "the Earth pulls it down. The Moon stays near us for the same reason.")

# kind: (configuration, an answer that passes, an answer that fails)
CASES = {
    "word_count": ({"type": "word_count", "min": 10, "max": 40}, GOOD, "Gravity pulls."),
    "word_count max": ({"type": "word_count", "max": 5}, "Gravity pulls things down.", GOOD),
    "sentence_count": ({"type": "sentence_count", "min": 3}, GOOD, "Gravity pulls things down."),
    "contains": ({"type": "contains", "value": ["for example", "such as"]}, GOOD, "Gravity pulls things."),
    "contains all": ({"type": "contains", "value": ["gravity", "moon"], "all": True}, GOOD,
                     "Gravity pulls things down."),
    "contains regex": ({"type": "contains", "value": [r"\bfor (example|instance)\b"], "regex": True}, GOOD,
                       "Gravity is, for examples sake, a pull."),
    "contains case sensitive": ({"type": "contains", "value": ["Earth"], "case_sensitive": True}, GOOD,
                                "the earth pulls."),
    "not_contains": ({"type": "not_contains", "value": ["as an AI"]}, GOOD, "As an AI, I think gravity pulls."),
    "starts_with": ({"type": "starts_with", "value": ["Gravity"]}, "  gravity is a pull.", "A pull is gravity."),
    "starts_with regex": ({"type": "starts_with", "value": [r"\d+\."], "regex": True}, "1. First", "First: 1."),
    "is_json": ({"type": "is_json"}, '```json\n{"a": 1}\n```', '{"a": 1'),
    "json_schema": ({"type": "json_schema", "value": {"type": "object", "required": ["name"],
                                                      "properties": {"name": {"type": "string"}}}},
                    '{"name": "Ada"}', '{"name": 3}'),
    "reading_grade": ({"type": "reading_grade", "max": 8}, "The cat sat on the mat. It was warm. It slept.",
                      "Photosynthesis constitutes the biochemical transformation of electromagnetic radiation "
                      "into chemically stored energy within chloroplast organelles."),
    "reading_grade min": ({"type": "reading_grade", "min": 12},
                          "Photosynthesis constitutes the biochemical transformation of electromagnetic radiation "
                          "into chemically stored energy within chloroplast organelles.", "The cat sat."),
    "language": ({"type": "language", "value": ["en"]}, GOOD,
                 "La gravité est la force qui attire les objets les uns vers les autres. Par exemple, une pomme "
                 "tombe de l'arbre."),
    "no_refusal": ({"type": "no_refusal"}, GOOD, "I'm sorry, but I can't help with that request."),
    "no_refusal as an AI": ({"type": "no_refusal"}, "Answers vary.", "As an AI language model, I cannot say."),
}


@pytest.mark.parametrize("kind", list(CASES))
def test_each_assertion_passes_and_fails(kind):
    config, good, bad = CASES[kind]
    assert passes(config, good) is True
    assert passes(config, bad) is False


def test_an_answer_that_could_not_be_read_fails_every_assertion_but_the_negative_one():
    assert passes({"type": "word_count", "max": 5}, None) is True  # zero words are within max 5
    assert passes({"type": "contains", "value": ["x"]}, None) is False
    assert passes({"type": "is_json"}, None) is False
    assert passes({"type": "no_refusal"}, None) is False  # nothing was said: not an answer


def test_extraction_answers_are_checked_as_their_json():
    schema = {"type": "json_schema", "value": {"type": "object", "required": ["city"]}}
    assert passes(schema, {"city": "Paris"}) and not passes(schema, {"town": "Paris"})


def test_counts():
    assert words("It's a well-known fact: 3 cats.") == 6
    assert sentences("One. Two!  Three? four") == 4
    assert sentences("") == 0


TASK = """\
name: explain
type: generation
data: {path: topics.jsonl, input: "{topic}"}
instruction: Write about the topic.
output_format: Two sentences with an example.
model: fake
splits: {train: 0, dev: 0, test: 1.0}
consistency: {enabled: false}
assertions:
  - {type: word_count, min: 6, name: long_enough}
  - {type: contains, value: ["for example"], name: has_example}
arms: [{type: zero_shot}, {type: structured}]
"""


def explain_task(tmp_path, n=24, text=TASK):
    (tmp_path / "topics.jsonl").write_text("".join(json.dumps({"topic": f"topic {i}"}) + "\n" for i in range(n)))
    (tmp_path / "task.yaml").write_text(text)
    from tunewise.task import load_task
    return load_task(tmp_path / "task.yaml")


def writer(messages):
    """Zero-shot answers tersely; the structured prompt (which has an output format) gets an example in every
    answer but the items whose topic number is divisible by 6."""
    topic = messages[-1]["content"]
    if "Output format" in messages[0]["content"] and int(topic.split()[-1]) % 6:
        return f"{topic} matters to everyone. For example, it shows up every day."
    return f"{topic} matters."


def test_a_task_without_targets_is_scored_by_its_assertions(tmp_path):
    task = explain_task(tmp_path)
    assert task.data.target is None
    assert task.metric_names() == ["long_enough", "has_example", "assertions"]
    assert task.decision_metric()[0] == "assertions"
    result = run(task, home=tmp_path / "home", progress=False,
                 backend_factory=lambda model: FakeBackend(writer, name=model))
    zero, structured = (result.summaries[a]["metrics"] for a in ("zero_shot", "structured"))
    assert zero["has_example"]["value"] == 0 and zero["long_enough"]["value"] == 0
    assert structured["has_example"]["value"] == pytest.approx(20 / 24)
    assert structured["has_example"]["low"] < 20 / 24 < structured["has_example"]["high"] <= 1
    report = result.report
    (c,) = report.comparisons  # the decision metric: every assertion passed
    assert (c.a, c.b, c.metric, c.test, c.n01, c.n10) == ("zero_shot", "structured", "assertions", "mcnemar", 20, 0)
    assert c.p == pytest.approx(2 * 0.5 ** 20)
    assert set(report.declared_tests) == {"long_enough", "has_example", "assertions"}
    from tunewise.reports.markdown import to_markdown
    text = to_markdown(report)
    assert "has_example (pass rate, 95% CI): zero_shot 0.000 (0.000–0.000); structured 0.833" in text
    assert "structured − zero_shot: +0.833" in text


def test_declared_metrics_are_rebuilt_from_the_stored_configuration(tmp_path):
    task = explain_task(tmp_path)
    stored = task.resolved()
    metric = get_metric("has_example", stored)
    assert metric.item("For example, this.", None) == 1.0 and metric.item("No.", None) == 0.0
    assert not metric.needs_target
    with pytest.raises(KeyError):
        get_metric("has_example")  # not a built-in metric


def test_default_arms_of_a_task_without_targets_leave_few_shot_out(tmp_path):
    task = explain_task(tmp_path, text=TASK.replace("arms: [{type: zero_shot}, {type: structured}]\n", ""))
    assert [a.type for a in task.arms] == ["zero_shot", "structured"]


def test_assertions_apply_to_a_task_with_targets_too():
    task = validate_task({"type": "generation", "data": {"path": "x.jsonl", "input": "q", "target": "a"},
                          "instruction": "Answer.", "assertions": [{"type": "no_refusal"}]})
    assert task.metric_names() == ["exact_match", "token_f1", "rouge_l", "no_refusal", "assertions"]
    assert task.decision_metric()[0] == "token_f1"  # the targets decide, as before


def test_the_explain_example_is_written_and_runs(tmp_path):
    from click.testing import CliRunner

    from tunewise.cli import main
    from tunewise.task import load_task
    result = CliRunner().invoke(main, ["demo", "--task", "explain", "--write-task", str(tmp_path / "ex")])
    assert result.exit_code == 0, result.output
    task = load_task(tmp_path / "ex" / "explain.yaml")
    assert task.data.target is None and [a.type for a in task.arms] == ["zero_shot", "structured"]
    assert task.metric_names() == ["about_300_words", "has_example", "beginner_level", "language", "no_refusal",
                                   "assertions"]

    def answer(messages):  # the structured prompt asks for examples: this writer gives one
        example = " For example, a ball falls when you drop it." if "Constraints" in messages[0]["content"] else ""
        return "It is a simple idea. " * 60 + example
    result = run(task, home=tmp_path / "home", progress=False, log=lambda m: None,
                 backend_factory=lambda model: FakeBackend(answer, name=model))
    zero, structured = (result.summaries[a]["metrics"] for a in ("zero_shot", "structured"))
    assert result.summaries["zero_shot"]["n"] == 30
    assert zero["about_300_words"]["value"] == 1.0 and zero["has_example"]["value"] == 0.0
    assert structured["assertions"]["value"] == 1.0 and zero["assertions"]["value"] == 0.0


def test_the_html_report_has_the_closing_note(tmp_path):
    from tunewise.reports.html import render_html
    result = run(explain_task(tmp_path), home=tmp_path / "home", progress=False,
                 backend_factory=lambda model: FakeBackend(writer, name=model))
    html = render_html(result.report)
    assert "Assertions and judge" in html and "has_example (pass rate, 95% CI)" in html


@pytest.mark.parametrize("module, config", [("textstat", {"type": "reading_grade", "max": 8}),
                                            ("langdetect", {"type": "language", "value": ["en"]}),
                                            ("jsonschema", {"type": "json_schema", "value": {"type": "object"}})])
def test_a_missing_library_says_which_install_brings_it(module, config, monkeypatch):
    from tunewise.errors import MissingDependencyError
    from tunewise.measure.assertions import _schema_validator
    _schema_validator.cache_clear()
    monkeypatch.setitem(__import__("sys").modules, module, None)  # import now fails, as when not installed
    with pytest.raises(MissingDependencyError, match=r"needs .*pip install 'tunewise\[assert\]'"):
        passes(config, '{"a": 1}')
    _schema_validator.cache_clear()
