import pytest

from conftest import TASK_YAML
from tunewise.errors import TaskFileError
from tunewise.task import load_task, validate_task


def write(tmp_path, text):
    path = tmp_path / "t.yaml"
    path.write_text(text)
    return path


def test_loads_and_resolves_defaults(task_file):
    task = load_task(task_file)
    resolved = task.resolved()
    assert resolved["metrics"] == ["accuracy", "macro_f1"]
    assert [a["name"] for a in resolved["arms"]] == ["zero_shot", "structured", "few_shot"]
    assert resolved["arms"][2]["k"] == 2 and resolved["arms"][2]["selection"] == "random"
    assert task.data_path() == task_file.parent / "words.csv"


def test_unknown_key_names_line_and_field(tmp_path):
    path = write(tmp_path, TASK_YAML.replace("  target: label\n", "  target: label\n  colour: red\n"))
    with pytest.raises(TaskFileError) as err:
        load_task(path)
    assert str(err.value) == f"{path}:7: data.colour: unknown key"


def test_unknown_key_inside_an_arm(tmp_path):
    path = write(tmp_path, TASK_YAML.replace("{type: few_shot, k: 2}", "{type: few_shot, kk: 2}"))
    with pytest.raises(TaskFileError) as err:
        load_task(path)
    assert err.value.line == 15 and err.value.field.endswith("kk")


def test_wrong_value_type(tmp_path):
    path = write(tmp_path, TASK_YAML.replace("seed: 1", "seed: one"))
    with pytest.raises(TaskFileError) as err:
        load_task(path)
    assert err.value.line == 11 and err.value.field == "splits.seed"


def test_unknown_arm_type(tmp_path):
    path = write(tmp_path, TASK_YAML.replace("{type: zero_shot}", "{type: zero_shoot}"))
    with pytest.raises(TaskFileError, match="unknown arm type 'zero_shoot'") as err:
        load_task(path)
    assert err.value.line == 13


def test_yaml_syntax_error_has_line(tmp_path):
    path = write(tmp_path, TASK_YAML.replace("type: classification", "type: [classification"))
    with pytest.raises(TaskFileError, match="invalid YAML") as err:
        load_task(path)
    assert err.value.line is not None


def test_unknown_metric(tmp_path):
    path = write(tmp_path, TASK_YAML + "metrics: [accuracy, bleu]\n")
    with pytest.raises(TaskFileError, match="unknown metric 'bleu'"):
        load_task(path)


def test_fractions_over_one(tmp_path):
    path = write(tmp_path, TASK_YAML.replace("test: 0.3", "test: 0.6"))
    with pytest.raises(TaskFileError, match="add up to 1.3"):
        load_task(path)


def test_extraction_needs_keys():
    with pytest.raises(TaskFileError, match="json_keys"):
        validate_task({"type": "extraction", "instruction": "x", "data": {"path": "a.jsonl", "input": "t",
                                                                          "target": "y"}})


def test_constrained_needs_classification():
    data = {"type": "generation", "instruction": "x", "data": {"path": "a.jsonl", "input": "t", "target": "y"},
            "arms": [{"type": "zero_shot", "decoding": "constrained"}]}
    with pytest.raises(TaskFileError, match="constrained decoding"):
        validate_task(data)


def test_duplicate_arm_names():
    data = {"instruction": "x", "data": {"path": "a.jsonl", "input": "t", "target": "y"},
            "arms": [{"type": "zero_shot"}, {"type": "zero_shot"}]}
    with pytest.raises(TaskFileError, match="unique"):
        validate_task(data)
