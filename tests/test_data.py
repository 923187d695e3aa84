import json

import pytest

from tunewise.errors import DataError, LeakageError, TaskFileError
from tunewise.task import validate_task
from tunewise.task.data import check_leakage, find_leakage, label_set, load_examples, make_splits


def task_for(path, **extra):
    data = {"instruction": "Classify.", "data": {"path": str(path), "input": "word", "target": "label"}}
    data.update(extra)
    return validate_task(data)


def rows(n):
    return [{"word": f"w{i}", "label": "positive" if i % 3 else "negative"} for i in range(n)]


def write_jsonl(path, items):
    path.write_text("".join(json.dumps(r) + "\n" for r in items))
    return path


def test_jsonl_csv_and_parquet_load_the_same(tmp_path):
    items = rows(30)
    jsonl = write_jsonl(tmp_path / "d.jsonl", items)
    csv = tmp_path / "d.csv"
    csv.write_text("word,label\n" + "".join(f"{r['word']},{r['label']}\n" for r in items))
    import pyarrow as pa
    import pyarrow.parquet as pq
    parquet = tmp_path / "d.parquet"
    pq.write_table(pa.Table.from_pylist(items), parquet)
    loaded = [[(e.input, e.target) for e in load_examples(task_for(p))] for p in (jsonl, csv, parquet)]
    assert loaded[0] == loaded[1] == loaded[2] and len(loaded[0]) == 30


def test_hf_datasets_directory_with_its_splits(tmp_path):
    import datasets
    dd = datasets.DatasetDict({"train": datasets.Dataset.from_list(rows(20)),
                               "test": datasets.Dataset.from_list(rows(6))})
    dd.save_to_disk(str(tmp_path / "ds"))
    task = task_for(tmp_path / "ds")
    splits = make_splits(task, load_examples(task))
    assert splits.sizes() == {"train": 20, "dev": 0, "test": 6}


def test_template_over_several_fields(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [{"title": "A", "body": "b", "label": "x"}])
    task = validate_task({"instruction": "i", "data": {"path": str(path), "input": "{title}: {body}",
                                                       "target": "label"}})
    assert load_examples(task)[0].input == "A: b"


@pytest.mark.parametrize("content, line, field, message", [
    ('{"word": "a", "label": "positive"}\n{"word": "b", "label": \n', 2, None, "malformed JSON"),
    ('{"word": "a", "label": "positive"}\n{"label": "positive"}\n', 2, "word", "missing field"),
    ('{"word": "  ", "label": "positive"}\n', 1, "word", "empty value"),
    ('{"word": "a", "label": "neutral"}\n', 1, "label", "not in the label set"),
    ('["a", "positive"]\n', 1, None, "expected a JSON object"),
])
def test_bad_jsonl_rows(tmp_path, content, line, field, message):
    path = tmp_path / "d.jsonl"
    path.write_text(content)
    with pytest.raises(DataError, match=message) as err:
        load_examples(task_for(path, labels=["negative", "positive"]))
    assert (err.value.line, err.value.field, err.value.file) == (line, field, str(path))


def test_non_utf8_is_reported_with_its_line(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_bytes(b'{"word": "a", "label": "x"}\n{"word": "caf\xe9", "label": "x"}\n')
    with pytest.raises(DataError, match="not valid UTF-8") as err:
        load_examples(task_for(path))
    assert err.value.line == 2
    csv = tmp_path / "d.csv"
    csv.write_bytes(b"word,label\na,x\nb,x\ncaf\xe9,x\n")
    with pytest.raises(DataError, match="not valid UTF-8") as err:
        load_examples(task_for(csv))
    assert err.value.line == 4


def test_csv_cell_count_errors(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("word,label\na,x\nb,x,extra\n")
    with pytest.raises(DataError, match="3 cells but the header has 2") as err:
        load_examples(task_for(path))
    assert err.value.line == 3
    path.write_text("word,label\na,x\nb\n")
    with pytest.raises(DataError, match="too few cells") as err:
        load_examples(task_for(path))
    assert (err.value.line, err.value.field) == (3, "label")


def test_csv_line_numbers_count_multiline_cells(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text('word,label\n"two\nlines",x\nc,\n')
    with pytest.raises(DataError, match="empty value") as err:
        load_examples(task_for(path))
    assert err.value.line == 4


def test_missing_data_file(tmp_path):
    with pytest.raises(DataError, match="data file not found"):
        load_examples(task_for(tmp_path / "nope.jsonl"))


def test_labels_are_inferred_sorted(tmp_path):
    task = task_for(write_jsonl(tmp_path / "d.jsonl", rows(9)))
    assert label_set(task, load_examples(task)) == ["negative", "positive"]


def test_splits_are_seeded_stratified_disjoint_and_capped(tmp_path):
    task = task_for(write_jsonl(tmp_path / "d.jsonl", rows(300)),
                    splits={"train": 0.6, "dev": 0.2, "test": 0.2, "seed": 3, "max_test": 30})
    examples = load_examples(task)
    a, b = make_splits(task, examples), make_splits(task, examples)
    assert [e.id for e in a.test] == [e.id for e in b.test]
    assert a.sizes() == {"train": 180, "dev": 60, "test": 30}
    ids = [set(e.id for e in part) for part in (a.train, a.dev, a.test)]
    assert not (ids[0] & ids[1] or ids[0] & ids[2] or ids[1] & ids[2])
    share = sum(e.target == "negative" for e in a.test) / 30
    assert share == pytest.approx(1 / 3, abs=0.04)
    other = make_splits(task_for(task.data.path, splits={"seed": 4}), examples)
    assert [e.id for e in other.test] != [e.id for e in a.test]


def test_split_column(tmp_path):
    items = [dict(r, split="test" if i < 5 else "train") for i, r in enumerate(rows(20))]
    path = write_jsonl(tmp_path / "d.jsonl", items)
    task = validate_task({"instruction": "i", "data": {"path": str(path), "input": "word", "target": "label",
                                                       "split_column": "split"}})
    assert make_splits(task, load_examples(task)).sizes() == {"train": 15, "dev": 0, "test": 5}
    items[3]["split"] = "holdout"
    write_jsonl(path, items)
    with pytest.raises(DataError, match="split value 'holdout'") as err:
        load_examples(task)
    assert (err.value.line, err.value.field) == (4, "split")


def test_empty_test_split_is_an_error(tmp_path):
    task = task_for(write_jsonl(tmp_path / "d.jsonl", rows(1)), splits={"train": 0.5, "dev": 0.0, "test": 0.4})
    with pytest.raises(TaskFileError, match="test split is empty"):
        make_splits(task, load_examples(task), task_file="t.yaml")


def test_leakage_is_counted_and_strict_makes_it_an_error(tmp_path):
    items = rows(40) + [{"word": "W1 ", "label": "positive"}] * 10  # duplicates of w1, by normalized text
    task = task_for(write_jsonl(tmp_path / "d.jsonl", items), splits={"seed": 0})
    splits = make_splits(task, load_examples(task))
    leak = find_leakage(splits)
    assert leak.count > 0 and "leakage" in leak.message()
    assert check_leakage(splits, strict=False, file="t.yaml").count == leak.count
    with pytest.raises(LeakageError):
        check_leakage(splits, strict=True, file="t.yaml")


def support_rows(problems=10, repeats=12):
    """A support log: each problem asked many times in the same words, answered the same way."""
    return [{"word": f"my printer {p} fails", "label": "positive" if p % 2 else "negative", "problem": f"p{p}"}
            for p in range(problems) for _ in range(repeats)]


def test_repeated_inputs_leak_and_the_message_names_the_remedy(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", support_rows())
    task = task_for(path)
    leak = find_leakage(make_splits(task, load_examples(task)))
    assert leak.count == leak.test_items == 24 and len(leak.ids) == 24
    assert "group_by" in leak.message() and "dedupe" in leak.message()


def test_group_by_keeps_every_group_in_one_split(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", support_rows())
    task = task_for(path, splits={"group_by": "problem", "seed": 3})
    splits = make_splits(task, load_examples(task))
    where = {}
    for name in ("train", "dev", "test"):
        for e in getattr(splits, name):
            assert where.setdefault(e.group, name) == name, f"group {e.group} in two splits"
    assert find_leakage(splits).count == 0
    assert len(splits.train) + len(splits.dev) + len(splits.test) == 120
    assert len(splits.test) == 24 and len(splits.dev) == 24  # two whole groups each, 20% of the rows


def test_dedupe_keeps_one_row_per_input_and_counts_the_rest(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", support_rows())
    task = task_for(path, splits={"dedupe": True, "train": 0.4, "dev": 0.2, "test": 0.4})
    splits = make_splits(task, load_examples(task))
    assert splits.duplicates_dropped == 110
    assert sorted(e.input for e in splits.train + splits.dev + splits.test) == sorted(
        f"my printer {p} fails" for p in range(10))
    assert find_leakage(splits).count == 0


def test_group_by_names_a_field_every_row_has(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", rows(10))
    task = task_for(path, splits={"group_by": "problem"})
    with pytest.raises(DataError, match="d.jsonl:1: problem: missing field"):
        load_examples(task)


def test_the_decision_metric_follows_the_target_then_the_primary_then_the_task_type():
    base = {"instruction": "x", "data": {"path": "d.jsonl", "input": "w", "target": "y"}, "type": "extraction",
            "json_keys": ["name"]}
    assert validate_task(base).decision_metric() == ("key_accuracy", "the main quality metric of extraction tasks")
    targeted = validate_task(dict(base, metrics=["json_valid"], target={"metric": "key_accuracy", "value": 0.9}))
    assert targeted.decision_metric() == ("key_accuracy", "the target's metric")
    assert targeted.metric_names() == ["json_valid", "key_accuracy"]  # a target's metric is always measured
    assert validate_task(dict(base, primary_metric="json_valid")).decision_metric()[0] == "json_valid"
    with pytest.raises(TaskFileError, match="differs from the target's metric"):
        validate_task(dict(base, primary_metric="json_valid", target={"metric": "key_accuracy"}))
    with pytest.raises(TaskFileError, match="target.metric: unknown metric 'bleu'"):
        validate_task(dict(base, target={"metric": "bleu"}))
    assert validate_task(dict(base, prices={})).prices.requests_per_month is None  # no volume unless stated
