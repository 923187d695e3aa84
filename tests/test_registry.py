"""An arm type added from outside: one class with its config, registered; the task, runner and report find it."""

import json
from typing import Literal

import pytest

import tunewise
from conftest import oracle
from tunewise.arms import Arm, Prediction, arm_class, family, method, register, types
from tunewise.backends import FakeBackend
from tunewise.task import ArmSettings


class ConstantConfig(ArmSettings):
    type: Literal["constant"]
    answer: str


@register
class Constant(Arm):
    """Answers the same label whatever the input: a baseline that asks no model."""
    Config = ConstantConfig
    family = "prompt"
    methods = {"constant": "baseline: one label"}

    def __init__(self, config, task, labels, configs):
        self.config, self.name, self.model = config, config.name or config.type, task.model

    def prompt_template(self):
        return [{"role": "note", "content": f"always {self.config.answer}"}]

    def predict(self, examples, backend, progress=None):
        return [Prediction(e, [], self.config.answer, self.config.answer, 0.001, 0, 1, False) for e in examples]

    def variant(self, *, instruction=None, sampling=None):
        return self


def test_a_registered_arm_type_is_found_by_name():
    assert "constant" in types() and arm_class("constant") is Constant
    assert family("constant") == "prompt" and method("constant") == "baseline: one label"
    assert family("zero_shot") == "prompt" and family("lora") == "fine-tune" and family("hybrid") == "hybrid"


def test_the_task_file_accepts_it_and_checks_its_fields(task_file):
    task = tunewise.load_task(task_file)
    data = dict(task.model_dump(), arms=[{"type": "constant", "answer": "positive"}])
    assert isinstance(tunewise.validate_task(data).arms[0], ConstantConfig)
    with pytest.raises(tunewise.TaskFileError, match="arms.0.answer: required, but missing"):
        tunewise.validate_task(dict(data, arms=[{"type": "constant"}]))
    with pytest.raises(tunewise.TaskFileError, match="unknown arm type 'nope'"):
        tunewise.validate_task(dict(data, arms=[{"type": "nope"}]))


def test_the_runner_and_report_use_it(task_file, tmp_path):
    task = tunewise.load_task(task_file)
    task = tunewise.validate_task(dict(task.model_dump(), arms=[{"type": "zero_shot"},
                                                                {"type": "constant", "answer": "positive"}]))
    result = tunewise.run(task, home=tmp_path, progress=False, backend_factory=lambda model: FakeBackend(oracle))
    assert result.summaries["zero_shot"]["metrics"]["accuracy"]["value"] == 1.0
    positives = result.summaries["constant"]["metrics"]["accuracy"]["value"]
    assert 0 < positives < 1
    assert result.summaries["constant"]["consistency"]["sample_agreement"] == 1.0
    report = json.loads(result.report_paths["json"].read_text())
    constant = next(a for a in report["arms"] if a["name"] == "constant")
    assert constant["method"] == "baseline: one label" and constant["family"] == "prompt"
    assert [(c["a"], c["b"]) for c in report["comparisons"]] == [("zero_shot", "constant")]
    assert report["decision"]["recommended"] == "zero_shot"
