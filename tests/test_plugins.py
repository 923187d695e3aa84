"""A metric, an assertion type and a backend added from outside, each one file, installed the way a
third-party package installs them (entry points in its metadata): the task file, the checks, the run and
the report find them. tests/test_registry.py does the same for an arm type."""

from __future__ import annotations

import sys
import textwrap

import pytest

import tunewise
from conftest import oracle
from tunewise import registry
from tunewise.backends import FakeBackend, is_remote, make_backend

METRIC = '''
from tunewise.measure import Metric
from tunewise.registry import register_metric


def first_letter(pred, target):
    """1 when the answer starts with the target's first letter."""
    return float(str(pred or "")[:1].lower() == str(target)[:1].lower())


register_metric(Metric("first_letter", first_letter, tasks=("classification", "generation")))
'''

ASSERTION = '''
from typing import Literal

from pydantic import Field

from tunewise.registry import register_assertion
from tunewise.task import AssertionSettings


@register_assertion
class MaxChars(AssertionSettings):
    """The answer has at most `value` characters."""
    type: Literal["max_chars"]
    value: int = Field(gt=0)

    def check(self, text: str) -> bool:
        return len(text) <= self.value
'''

BACKEND = '''
from tunewise.backends import FakeBackend
from tunewise.registry import BackendType, register_backend


def create(model, **_):
    word = model.removeprefix("shout:")
    return FakeBackend(lambda messages: word, name=model)


register_backend(BackendType("shout", takes=lambda model, endpoints: model.startswith("shout:"), create=create,
                             remote=True, priority=25))
'''

ENTRY_POINTS = """\
[tunewise.metrics]
first_letter = tw_first_letter

[tunewise.assertions]
max_chars = tw_max_chars

[tunewise.backends]
shout = tw_shout
"""


@pytest.fixture
def plugins(tmp_path, monkeypatch):
    """A package of three one-file plugins, on sys.path with its entry points, loaded as tunewise loads any."""
    site = tmp_path / "site"
    site.mkdir()
    for module, source in (("tw_first_letter", METRIC), ("tw_max_chars", ASSERTION), ("tw_shout", BACKEND)):
        (site / f"{module}.py").write_text(textwrap.dedent(source))
    meta = site / "tw_plugins-0.1.dist-info"
    meta.mkdir()
    (meta / "METADATA").write_text("Metadata-Version: 2.1\nName: tw-plugins\nVersion: 0.1\n")
    (meta / "entry_points.txt").write_text(ENTRY_POINTS)
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setattr(registry, "_LOADED", False)
    registry.load_plugins()
    yield
    for kind, name in (("metric", "first_letter"), ("assertion", "max_chars"), ("backend", "shout")):
        registry.unregister(kind, name)
    for module in ("tw_first_letter", "tw_max_chars", "tw_shout"):
        sys.modules.pop(module, None)


def _task(task_file, **changes):
    task = tunewise.load_task(task_file)
    return tunewise.validate_task(dict(task.model_dump(), **changes), file=str(task_file))


def test_entry_points_register_each_kind(plugins):
    assert "first_letter" in registry.names("metric")
    assert "max_chars" in registry.names("assertion")
    assert "shout" in registry.names("backend")


def test_a_plugin_metric_is_measured_and_reported(plugins, task_file, tmp_path):
    task = _task(task_file, metrics=["accuracy", "first_letter"])
    result = tunewise.run(task, home=tmp_path / "h", progress=False, backend_factory=lambda m: FakeBackend(oracle))
    metrics = result.summaries["zero_shot"]["metrics"]
    assert metrics["first_letter"]["value"] == metrics["accuracy"]["value"] == 1.0
    assert "first_letter" in result.report_paths["markdown"].read_text()
    with pytest.raises(tunewise.TaskFileError, match="unknown metric 'first'; known: .*first_letter"):
        _task(task_file, metrics=["first"])


def test_a_plugin_assertion_is_checked_and_becomes_a_metric(plugins, task_file, tmp_path):
    task = _task(task_file, assertions=[{"type": "max_chars", "value": 8}, {"type": "max_chars", "name": "tiny",
                                                                          "value": 3}])
    result = tunewise.run(task, home=tmp_path / "h", progress=False, backend_factory=lambda m: FakeBackend(oracle))
    metrics = result.summaries["zero_shot"]["metrics"]
    assert metrics["max_chars"]["value"] == 1.0 and metrics["tiny"]["value"] == 0.0  # "positive" has 8 letters
    with pytest.raises(tunewise.TaskFileError, match=r"assertions\.0\.value: .*greater than 0"):
        _task(task_file, assertions=[{"type": "max_chars", "value": 0}])
    with pytest.raises(tunewise.TaskFileError, match="unknown assertion type 'max'; assertion types: .*max_chars"):
        _task(task_file, assertions=[{"type": "max"}])


def test_a_plugin_backend_takes_its_model_names(plugins, task_file, tmp_path):
    assert is_remote("shout:positive") and not is_remote("shout-not-mine")
    assert make_backend("shout:positive").generate  # built by the plugin, not the local backend
    task = _task(task_file, model="shout:positive")
    result = tunewise.run(task, home=tmp_path / "h", progress=False)  # no backend_factory: the registry builds it
    positives = result.summaries["zero_shot"]["metrics"]["accuracy"]["value"]
    assert 0 < positives < 1  # every answer is "positive"
    with pytest.raises(tunewise.TaskFileError, match="fine-tunes, which needs a local model"):
        tunewise.run(_task(task_file, model="shout:positive", arms=[{"type": "lora"}]), home=tmp_path / "h2",
                     progress=False)


def test_a_removed_plugin_is_gone(plugins, task_file):
    registry.unregister("assertion", "max_chars")
    with pytest.raises(tunewise.TaskFileError, match="unknown assertion type 'max_chars'"):
        _task(task_file, assertions=[{"type": "max_chars", "value": 8}])
