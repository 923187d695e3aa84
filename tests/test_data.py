import json

import pytest

from tunewise.config import validate_task
from tunewise.data import check_leakage, find_leakage, label_set, load_examples, make_splits
from tunewise.errors import DataError, LeakageError, TaskFileError


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
