"""Loading a task's dataset, checking every row, splitting it, and finding leakage."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import random
import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from ..errors import DataError, LeakageError, MissingDependencyError, TaskFileError
from . import Task, indistinct


@dataclass(frozen=True)
class Example:
    """One row of the task: the rendered input, the target and where it came from."""
    id: str
    input: str
    target: Any
    line: int
    fields: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)
    split: str | None = None
    group: str | None = None  # rows of one group stay in one split (splits.group_by)
    human: tuple[str, float] | None = None  # an answer a person scored on the judge's rubric, and the score
    # a conversation's messages before its target ({role, content}; a system message only first); `input` is
    # then their transcript, which leakage, dedupe, similarity and reports read
    messages: tuple[dict[str, str], ...] | None = field(default=None, compare=False, hash=False)
    untrained: tuple[int, ...] = field(default=(), compare=False, hash=False)  # messages with weight 0

    @property
    def target_text(self) -> str:
        if isinstance(self.target, (dict, list)):
            return json.dumps(self.target, ensure_ascii=False)
        return str(self.target)


@dataclass
class Splits:
    train: list[Example]
    dev: list[Example]
    test: list[Example]
    duplicates_dropped: int = 0  # rows whose input repeated an earlier row's (splits.dedupe)
    notes: list[str] = field(default_factory=list)  # rows left out, labels missing from test: said, never silent

    def sizes(self) -> dict[str, int]:
        return {"train": len(self.train), "dev": len(self.dev), "test": len(self.test)}


SPLIT_NAMES = {"train": "train", "training": "train", "dev": "dev", "validation": "dev",
               "valid": "dev", "val": "dev", "test": "test", "testing": "test"}


# ---------------------------------------------------------------- reading rows
NOT_A_DATASET = ("is a directory, not a saved `datasets` directory (no dataset_info.json or dataset_dict.json); "
                 "point data.path at a file")

def read_rows(path: Path, fmt: str = "auto") -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield (line or row number, row) pairs; malformed rows raise DataError."""
    if not path.exists():
        if path.is_symlink():
            raise DataError("a symbolic link to nothing (its target is missing, or the link loops)", file=str(path))
        raise DataError("data file not found; check data.path (a relative path starts at the task file's folder)",
                        file=str(path))
    fmt = _guess_format(path) if fmt == "auto" else fmt
    if path.is_dir() != (fmt == "hf"):
        raise DataError(NOT_A_DATASET if path.is_dir() else
                        "data.format hf needs a directory saved with datasets' save_to_disk", file=str(path))
    readers = {"jsonl": _read_jsonl, "csv": _read_csv, "parquet": _read_parquet, "hf": _read_hf}
    try:
        yield from readers[fmt](path)
    except OSError as err:
        raise DataError(f"cannot read the data ({err.strerror or err})", file=str(path)) from None


def _guess_format(path: Path) -> str:
    if path.is_dir():
        saved = (path / "dataset_info.json").exists() or (path / "dataset_dict.json").exists()
        if not saved:
            raise DataError(NOT_A_DATASET, file=str(path))
        return "hf"
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson", ".json"):
        return "jsonl"
    if suffix in (".csv", ".tsv"):
        return "csv"
    if suffix in (".parquet", ".pq"):
        return "parquet"
    raise DataError(f"cannot tell the format from the suffix {suffix!r}; set data.format", file=str(path))


def _read_jsonl(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            text = _decode(raw, path, number)
            if number == 1:
                text = text.removeprefix("\ufeff")  # a byte-order mark some editors write
            if not text.strip():
                continue
            try:
                row = json.loads(text, parse_constant=_no_constant, object_pairs_hook=_no_repeated_json_keys)
            except json.JSONDecodeError as err:
                raise DataError(f"malformed JSON: {err.msg} (column {err.colno})",
                                file=str(path), line=number) from None
            except (ValueError, RecursionError) as err:  # NaN or Infinity; nesting deeper than Python's stack
                problem = str(err) if isinstance(err, ValueError) else "nested too deeply"
                raise DataError(f"malformed JSON: {problem}", file=str(path), line=number) from None
            if not isinstance(row, dict):
                raise DataError(f"expected a JSON object, got {type(row).__name__}",
                                file=str(path), line=number)
            yield number, row


def _no_repeated_json_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    names = [k for k, _ in pairs]
    repeated = next((k for i, k in enumerate(names) if k in names[:i]), None)
    if repeated is not None:
        raise ValueError(f"the key {repeated!r} appears twice in one object (only the last would be read)")
    return dict(pairs)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a value JSON allows; write null for a missing value")


def _read_csv(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        hint = "; it looks like UTF-16: save it as UTF-8" if raw[:2] in (b"\xff\xfe", b"\xfe\xff") else ""
        raise DataError(f"not valid UTF-8 (byte 0x{raw[err.start]:02x}){hint}", file=str(path), line=line) from None
    delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
    # a long text is a legitimate field; only the file's own length bounds one
    csv.field_size_limit(max(csv.field_size_limit(), len(text) + 1))
    # strict: a quote left open would otherwise swallow the rows after it into one field
    reader = csv.DictReader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    start = 1  # the line the record being read starts on
    try:
        names = reader.fieldnames
        if not names:
            raise DataError("the CSV file has no header row", file=str(path), line=1)
        repeated = next((n for i, n in enumerate(names) if n in names[:i]), None)
        if repeated is not None:
            raise DataError(f"the header names column {repeated!r} twice; rename one (only the last would be "
                            f"read)", file=str(path), line=1, field=repeated)
        start = 2
        for row in reader:
            line, start = start, reader.line_num + 1
            if None in row:  # more cells than header columns
                raise DataError(f"{len(names) + len(row[None])} cells but the header has {len(names)} columns",
                                file=str(path), line=line)
            missing = [k for k, v in row.items() if v is None]
            if missing:
                raise DataError(f"row has too few cells (no value for {missing[0]!r})",
                                file=str(path), line=line, field=missing[0])
            if any(v != "" for v in row.values()):
                yield line, row
    except csv.Error as err:
        raise DataError(f"malformed CSV: {err} (a quote opened and not closed swallows the rows after it; "
                        f"inside a quoted field write a quote as \"\")", file=str(path), line=start) from None


def _decode(raw: bytes, path: Path, line: int) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as err:
        hint = "; it looks like UTF-16: save it as UTF-8" if raw[:2] in (b"\xff\xfe", b"\xfe\xff") else ""
        raise DataError(f"not valid UTF-8 (byte 0x{raw[err.start]:02x} at column {err.start + 1}){hint}",
                        file=str(path), line=line) from None


def _read_parquet(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise MissingDependencyError("reading Parquet needs pyarrow: pip install 'tunewise[data]'") from None
    import pyarrow
    try:
        table = pq.read_table(path)
    except pyarrow.ArrowException as err:
        raise DataError(f"not a readable Parquet file ({str(err).splitlines()[0]})", file=str(path)) from None
    for number, row in enumerate(table.to_pylist(), start=1):
        yield number, row


def _read_hf(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    try:
        import datasets
    except ImportError:
        raise MissingDependencyError("reading a datasets directory needs datasets: "
                                     "pip install 'tunewise[data]'") from None
    try:
        loaded = datasets.load_from_disk(str(path))
    except (FileNotFoundError, ValueError, KeyError) as err:
        raise DataError(f"not a readable saved `datasets` directory ({str(err).splitlines()[0]})",
                        file=str(path)) from None
    if isinstance(loaded, datasets.DatasetDict):
        number = 0
        for split_name, part in loaded.items():
            for row in part:
                number += 1
                yield number, dict(row, __split__=split_name)
    else:
        for number, row in enumerate(loaded, start=1):
            yield number, row


# ---------------------------------------------------------------- checking rows
def load_examples(task: Task, *, task_file: str = "<task>") -> list[Example]:
    """Read and check every row; nothing is dropped silently."""
    path = task.data_path()
    examples, kinds, scored = [], {}, False
    score_field = task.judge.human_score if task.judge else None
    for line, row in read_rows(path, task.data.format):
        if not examples:
            _no_input_given(task, row, task_file)
        examples.append(_example(task, path, line, row))
        scored = scored or score_field in row
        if task.type == "classification":
            _same_label_kind(kinds, row.get(task.data.target), task.data.target, {"file": str(path), "line": line})
    if not examples:
        raise DataError("the dataset has no rows; add rows (a header alone is not data)", file=str(path))
    if score_field and not scored:
        raise DataError(f"no row has the field that judge.human_score names; fields: {', '.join(map(str, row))}",
                        file=str(path), field=score_field)
    return examples


def _no_input_given(task: Task, row: dict[str, Any], task_file: str) -> None:
    """Without data.input a task reads conversations: rows that hold none mean the input was left out."""
    if task.data.conversation and not task.data.messages and not {"messages", "conversations"} & set(row):
        raise TaskFileError("required, but missing: the rows hold no conversation (a `messages` list), so "
                            "data.input must say what the input is (a field name or a template)",
                            file=task_file, field="data.input")


def _same_label_kind(kinds: dict[str, int], value: Any, field: str, where: dict) -> None:
    """Labels written as one kind of value: a stray 1.0 among 1s, or true among strings, would become a
    class of its own ("1.0", "True") and a word in the prompt."""
    kind = {bool: "a boolean", int: "an integer", float: "a decimal number", str: "a string"}.get(
        type(value), type(value).__name__)
    if kinds and kind not in kinds:
        first_kind, first_line = next(iter(kinds.items()))
        raise DataError(f"label {json.dumps(value)} is {kind}, but the label on line {first_line} is {first_kind}; "
                        "write every label the same way", field=field, **where)
    kinds.setdefault(kind, where["line"])


def _example(task: Task, path: Path, line: int, row: dict[str, Any]) -> Example:
    where = {"file": str(path), "line": line}
    if task.data.conversation:
        messages, target, untrained = _conversation(task, row, where)
        values, text = {}, transcript(messages)
    else:
        values = {name: _text_field(row, name, where) for name in task.data.input_fields()}
        template = task.data.input
        text = values[template] if template in values else template.format(**values)
        target, messages, untrained = _target(task, row, where), None, ()
    split = None
    column = task.data.split_column or ("__split__" if "__split__" in row else None)
    if column:
        split = _split_value(row, column, where)
    group = _text_field(row, task.splits.group_by, where) if task.splits.group_by else None
    return Example(id=f"{line}", input=text, target=target, line=line, fields=values, split=split, group=group,
                   human=_human(task, row, where), messages=messages, untrained=untrained)


# ---------------------------------------------------------------- conversations
ROLES = ("system", "user", "assistant")
SHAREGPT_ROLES = {"human": "user", "gpt": "assistant", "system": "system", "user": "user", "assistant": "assistant"}
MESSAGE_KEYS = {"role", "content", "weight", "from", "value"}


def messages_field(task: Task, row: dict[str, Any]) -> str:
    """The field holding a row's conversation: data.messages, else `messages`, else ShareGPT's `conversations`."""
    if task.data.messages:
        return task.data.messages
    return "conversations" if "messages" not in row and "conversations" in row else "messages"


def _conversation(task: Task, row: dict[str, Any], where: dict) -> tuple[tuple[dict, ...], Any, tuple[int, ...]]:
    """A row's conversation: the messages before the target, the target, and the messages not to train on."""
    name = messages_field(task, row)
    messages, weights = read_messages(row.get(name), name, where, missing=name not in row)
    if task.data.target is not None:  # e.g. a label for the whole conversation
        _ends_with_user(messages, name, where, what="the conversation")
        return messages, _target(task, row, where), _zero_weights(weights)
    last = len(messages) - 1
    if not messages or messages[-1]["role"] != "assistant":
        shown = f"the last is a {messages[-1]['role']} message" if messages else "it is empty"
        raise DataError(f"no final assistant message ({shown}): a conversation's last message is its target, the "
                        f"reply to learn and to measure; or name a target field with data.target",
                        field=f"{name}[{max(last, 0)}]", **where)
    _ends_with_user(messages[:-1], name, where, what="the final assistant message")
    if weights[-1] == 0:
        raise DataError("weight 0 on the final assistant message: it is the target, what is learned and measured",
                        field=f"{name}[{last}].weight", **where)
    target = _target_value(task, messages[-1]["content"], f"{name}[{last}].content", where)
    return messages[:-1], target, _zero_weights(weights[:-1])


def read_messages(value: Any, name: str, where: dict, *, missing: bool = False) -> tuple[tuple[dict, ...], list]:
    """A list of {role, content} (or ShareGPT {from, value}) messages, checked: known roles, text content, at
    most one system message, first. Returns the messages as {role, content} and each one's weight."""
    if missing:
        raise DataError("missing field: a conversation row holds a list of {role, content} messages (name the "
                        "field with data.messages; for a row of fields, give data.input)", field=name, **where)
    if isinstance(value, str):  # a CSV cell holding the list as JSON
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            raise DataError("not a list of messages (a text that is not JSON)", field=name, **where) from None
    if not isinstance(value, list):
        raise DataError(f"expected a list of {{role, content}} messages, got {_kind(value)}", field=name, **where)
    messages, weights = [], []
    for i, item in enumerate(value):
        message, weight = read_message(item, f"{name}[{i}]", where)
        if message["role"] == "system" and i > 0:
            again = any(m["role"] == "system" for m in messages)
            why = "a second system message: a conversation has at most one" if again else \
                "a system message after the conversation started: it must come first"
            raise DataError(why, field=f"{name}[{i}].role", **where)
        messages.append(message)
        weights.append(weight)
    return tuple(messages), weights


def read_message(item: Any, name: str, where: dict) -> tuple[dict[str, str], Any]:
    """One message, checked: {role, content} or ShareGPT's {from, value}; returns it as {role, content} and
    its weight."""
    if not isinstance(item, dict):
        raise DataError(f"expected a message object {{role, content}}, got {_kind(item)}", field=name, **where)
    unknown = sorted(set(item) - MESSAGE_KEYS)
    if unknown:
        raise DataError(f"message key {unknown[0]!r} is not read (a message is {{role, content}}, optionally "
                        f"weight; tool calls are not supported)", field=f"{name}.{unknown[0]}", **where)
    sharegpt = "from" in item
    role_key, content_key = ("from", "value") if sharegpt else ("role", "content")
    roles = SHAREGPT_ROLES if sharegpt else {r: r for r in ROLES}
    role = item.get(role_key)
    if role not in roles:
        known = ", ".join(roles)
        raise DataError(f"unknown role {role!r}; a message's {role_key} is one of {known}",
                        field=f"{name}.{role_key}", **where)
    content = _content(item.get(content_key), f"{name}.{content_key}", where)
    weight = item.get("weight", 1)
    if weight not in (0, 1) or isinstance(weight, bool) or (weight == 0 and roles[role] != "assistant"):
        raise DataError(f"weight {weight!r}: a weight is 0 or 1, on assistant messages (0: not trained on)",
                        field=f"{name}.weight", **where)
    return {"role": roles[role], "content": content}, weight


def _content(value: Any, name: str, where: dict) -> str:
    if isinstance(value, list):  # OpenAI's content parts: text parts are read, others refused
        kinds = [p.get("type") if isinstance(p, dict) else _kind(p) for p in value]
        if any(k != "text" for k in kinds):
            other = next(k for k in kinds if k != "text")
            raise DataError(f"a content part of type {other!r}: only text parts are read", field=name, **where)
        value = "".join(str(p.get("text", "")) for p in value)
    if not isinstance(value, str):
        raise DataError(f"expected text content, got {_kind(value)}", field=name, **where)
    if not value.strip():
        raise DataError("empty content", field=name, **where)
    return value


def _ends_with_user(messages: tuple[dict, ...], name: str, where: dict, *, what: str) -> None:
    if not any(m["role"] == "user" for m in messages):
        raise DataError(f"no user message before {what}", field=name, **where)
    if messages[-1]["role"] != "user":
        raise DataError(f"{what} follows an {messages[-1]['role']} message; a reply answers a user message",
                        field=f"{name}[{len(messages) - 1}]", **where)


def _zero_weights(weights: list) -> tuple[int, ...]:
    return tuple(i for i, w in enumerate(weights) if w == 0)


def _kind(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a text", type(None): "null", bool: "a boolean"}.get(
        type(value), "a number" if isinstance(value, (int, float)) else type(value).__name__)


def transcript(messages: tuple[dict[str, str], ...] | list[dict[str, str]]) -> str:
    """A conversation as one text, a line per message: what leakage, dedupe and reports compare and show."""
    return "\n".join(f"{m['role']}: {m['content']}" for m in messages)


def conversation_example(messages: list[dict[str, str]], *, id: str = "request") -> Example:
    """An Example of a conversation given in code or a request (serve, predict): its messages are the input."""
    checked, _ = read_messages(list(messages), "messages", {"file": None, "line": None})
    return Example(id=id, input=transcript(checked), target=None, line=0, messages=checked)


def _human(task: Task, row: dict[str, Any], where: dict) -> tuple[str, float] | None:
    """The answer a person scored and their score, on the rows that have one (the judge's agreement check)."""
    judge = task.judge
    if judge is None or judge.human_score is None:
        return None
    value = row.get(judge.human_score)
    if value is None or (isinstance(value, str) and not value.strip()) or value != value:
        return None
    low, high = min(c.scale[0] for c in judge.rubric), max(c.scale[1] for c in judge.rubric)
    try:
        score = float(value)
    except (TypeError, ValueError):
        raise DataError(f"human score {value!r} is not a number", field=judge.human_score, **where) from None
    if isinstance(value, bool) or score != score or not low <= score <= high:
        scales = "scale" if len({c.scale for c in judge.rubric}) == 1 else "scales"
        raise DataError(f"human score {value!r} is outside the rubric's {scales} [{low}, {high}]",
                        field=judge.human_score, **where)
    return _text_field(row, judge.human_answer, where), score


def _text_field(row: dict[str, Any], name: str, where: dict) -> str:
    if name not in row:
        near = next((k for k in row if isinstance(k, str) and k.strip().casefold() == name.casefold()), None)
        hint = f" (the data has {near!r}: spacing or case differ)" if near is not None else ""
        raise DataError(f"missing field{hint}", field=name, **where)
    value = row[name]
    blank = isinstance(value, str) and not value.strip()
    if value is None or blank or (isinstance(value, float) and value != value):  # NaN: how Parquet marks a gap
        raise DataError("empty value", field=name, **where)
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def _target(task: Task, row: dict[str, Any], where: dict) -> Any:
    name = task.data.target
    if name is None:  # a reference-free task: assertions and a judge score the answer alone
        return None
    if task.type != "extraction":
        return _target_value(task, _text_field(row, name, where), name, where)
    if name not in row or row[name] in (None, ""):
        raise DataError("missing field", field=name, **where)
    return _target_value(task, row[name], name, where)


def _target_value(task: Task, value: Any, name: str, where: dict) -> Any:
    """A target checked for the task's type: a label of the set, a text, or a JSON object with the keys."""
    if task.type != "extraction":
        value = str(value).strip()
        if task.type == "classification" and task.labels and value not in task.labels:
            raise DataError(f"label {value!r} is not in the label set {task.labels}", field=name, **where)
        return value
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            raise DataError("target is not valid JSON", field=name, **where) from None
    if not isinstance(value, dict):
        raise DataError("target must be a JSON object", field=name, **where)
    missing = [k for k in task.json_keys or [] if k not in value]
    if missing:
        raise DataError(f"target lacks key {missing[0]!r}", field=name, **where)
    return value


def _split_value(row: dict[str, Any], column: str, where: dict) -> str:
    value = str(row.get(column, "")).strip().lower()
    if value not in SPLIT_NAMES:
        raise DataError(f"split value {value!r} is not one of train, dev, validation, test",
                        field=column, **where)
    return SPLIT_NAMES[value]


def label_set(task: Task, examples: list[Example]) -> list[str]:
    """The task's labels, or those seen in the data, sorted; a data set that cannot measure anything
    (one label) or whose labels an answer cannot tell apart is refused."""
    seen = sorted({str(e.target) for e in examples})
    where = {"file": str(task.data_path()), "field": task.data.target}
    if len(seen) < 2:
        raise DataError(f"every row has the label {seen[0]!r}: a one-label data set scores 1.0 whatever the "
                        f"answers; a classification task needs rows of at least two labels", **where)
    if task.labels:
        return list(task.labels)
    pair = indistinct(seen)
    if pair:
        raise DataError(f"labels {pair[0]!r} and {pair[1]!r} differ only in case or spacing, so an answer "
                        f"cannot tell them apart; make them one label in the data", **where)
    return seen


# ---------------------------------------------------------------- splitting
def make_splits(task: Task, examples: list[Example], *, task_file: str = "<task>") -> Splits:
    cfg = task.splits
    rng = random.Random(cfg.seed)
    kept = _dedupe(examples) if cfg.dedupe else examples
    dropped, examples = len(examples) - len(kept), kept
    if any(e.split for e in examples):
        parts = {name: [e for e in examples if e.split == name] for name in ("train", "dev", "test")}
        for part in parts.values():
            rng.shuffle(part)
    elif cfg.group_by:
        parts = _split_by_group(task, examples, rng)
    else:
        parts = _split_by_fraction(task, examples, rng)
    key = _stratum if task.type == "classification" and cfg.stratify and not cfg.group_by else None
    notes = _group_shares(task, examples, parts) if cfg.group_by and not any(e.split for e in examples) else []
    placed = sum(len(p) for p in parts.values())
    if placed < len(examples):
        notes.append(f"{len(examples) - placed} of {len(examples)} rows are in no split: the fractions add up to "
                     f"{cfg.train + cfg.dev + cfg.test:g} (splits.train/dev/test)")
    for name in parts:
        cap = getattr(cfg, f"max_{name}")
        if cap is not None and len(parts[name]) > cap:
            notes.append(f"splits.max_{name} {cap} left out {len(parts[name]) - cap} of the {len(parts[name])} "
                         f"{name} rows")
            parts[name] = _take(parts[name], cap, key, rng)
    splits = Splits(**parts, duplicates_dropped=dropped, notes=notes)
    if not splits.test:
        raise TaskFileError(f"the test split is empty ({len(examples)} rows; fractions {cfg.train:g}/"
                            f"{cfg.dev:g}/{cfg.test:g}); give splits.test a larger share or add rows",
                            file=task_file, field="splits.test")
    if task.type == "classification":
        tested = {str(e.target) for e in splits.test}
        absent = sorted({str(e.target) for e in examples} - tested)
        if absent:
            counts = {label: sum(str(e.target) == label for e in examples) for label in absent}
            shown = ", ".join(f"{label!r} ({n} row{'s' * (n != 1)})" for label, n in counts.items())
            notes.append(f"no test item has the label {shown}: the test measures nothing on it; add rows of "
                         f"that label")
    return splits


def _stratum(example: Example) -> str:
    return str(example.target)


def _split_by_fraction(task: Task, examples: list[Example], rng: random.Random) -> dict[str, list[Example]]:
    cfg = task.splits
    groups: dict[str, list[Example]] = defaultdict(list)
    stratify = task.type == "classification" and cfg.stratify
    for e in examples:
        groups[_stratum(e) if stratify else ""].append(e)
    parts: dict[str, list[Example]] = {"train": [], "dev": [], "test": []}
    for name in sorted(groups):
        group = groups[name]
        rng.shuffle(group)
        n_test = round(len(group) * cfg.test)
        n_dev = min(round(len(group) * cfg.dev), len(group) - n_test)
        # fractions that add up to 1 use every row: train takes what rounding left (a label's only row too)
        whole = cfg.train + cfg.dev + cfg.test > 1 - 1e-9
        n_train = len(group) - n_test - n_dev if whole else min(round(len(group) * cfg.train),
                                                                len(group) - n_test - n_dev)
        parts["test"] += group[:n_test]
        parts["dev"] += group[n_test:n_test + n_dev]
        parts["train"] += group[n_test + n_dev:n_test + n_dev + n_train]
    for part in parts.values():
        rng.shuffle(part)
    return parts


def _dedupe(examples: list[Example]) -> list[Example]:
    """The first row of each input (case and spacing ignored)."""
    seen: set[str] = set()
    out = []
    for e in examples:
        key = normalize(e.input)
        if key not in seen:
            seen.add(key)
            out.append(e)
    return out


def _split_by_group(task: Task, examples: list[Example], rng: random.Random) -> dict[str, list[Example]]:
    """Whole groups to test, then dev, until each holds its share of the rows; the rest train.

    Stratification gives way here: keeping a group together is what makes the test unseen.
    """
    cfg = task.splits
    groups: dict[str, list[Example]] = defaultdict(list)
    for e in examples:
        groups[e.group].append(e)
    order = sorted(groups)
    rng.shuffle(order)
    parts: dict[str, list[Example]] = {"train": [], "dev": [], "test": []}
    wanted = {"test": round(len(examples) * cfg.test), "dev": round(len(examples) * cfg.dev)}
    for name in order:
        part = next((p for p in ("test", "dev") if len(parts[p]) < wanted[p]), "train")
        parts[part] += groups[name]
    if cfg.train + cfg.dev + cfg.test < 1 - 1e-9:  # fractions leave rows unused: cap train at its share
        parts["train"] = parts["train"][:round(len(examples) * cfg.train)]
    for part in parts.values():
        rng.shuffle(part)
    return parts


FAR = 0.1  # a split's share of the rows this far from its fraction is reported


def _group_shares(task: Task, examples: list[Example], parts: dict[str, list[Example]]) -> list[str]:
    """Groups go whole into a split, so a few large ones can leave the shares far from the fractions: say so."""
    cfg, total = task.splits, len(examples)
    asked = {"train": cfg.train, "dev": cfg.dev, "test": cfg.test}
    if cfg.train + cfg.dev + cfg.test > 1 - 1e-9:  # train takes what the groups leave
        asked["train"] = 1 - cfg.dev - cfg.test
    got = {name: len(part) / total for name, part in parts.items()}
    if all(abs(got[name] - asked[name]) <= FAR for name in asked):
        return []
    groups = len({e.group for e in examples})
    shares = "/".join(f"{got[n]:.0%}" for n in asked)
    return [f"splits.group_by {cfg.group_by!r}: its {groups} groups split the rows {shares} (train/dev/test), far "
            f"from the fractions {'/'.join(f'{asked[n]:.0%}' for n in asked)}; each group stays whole, so more or "
            f"smaller groups split closer"]


def _take(items: list[Example], n: int, key, rng: random.Random) -> list[Example]:
    """The first n items, keeping each stratum's share when a key is given."""
    if key is None:
        return items[:n]
    groups: dict[str, list[Example]] = defaultdict(list)
    for e in items:
        groups[key(e)].append(e)
    quotas = {k: int(n * len(g) / len(items)) for k, g in groups.items()}
    leftover = n - sum(quotas.values())
    for k in sorted(groups, key=lambda k: -(n * len(groups[k]) / len(items) - quotas[k]))[:leftover]:
        quotas[k] += 1
    chosen = {id(e) for k, g in groups.items() for e in g[:quotas[k]]}
    return [e for e in items if id(e) in chosen]


# ---------------------------------------------------------------- leakage
def normalize(text: str) -> str:
    return re.sub(r"\s+", " ", text.casefold()).strip()


@dataclass
class Leakage:
    count: int
    examples: list[str]

    ids: list[str] = field(default_factory=list)  # the leaked test items
    test_items: int = 0

    def message(self) -> str:
        shown = ", ".join(repr(x) for x in self.examples[:5])
        return (f"{self.count} of {self.test_items} test input(s) also appear in train/dev (leakage), e.g. {shown}; "
                f"keep identical or related inputs in one split with splits: {{group_by: FIELD}} or "
                f"{{dedupe: true}}")


def find_leakage(splits: Splits) -> Leakage:
    seen = {normalize(e.input) for e in splits.train + splits.dev}
    begun = _beginnings(splits.train + splits.dev) if any(e.messages for e in splits.test) else None
    leaked = [e for e in splits.test if normalize(e.input) in seen or (begun and _begins(e, *begun))]
    return Leakage(count=len(leaked), examples=[e.input for e in leaked[:10]], ids=[e.id for e in leaked],
                   test_items=len(splits.test))


def _beginnings(seen: list[Example]) -> tuple[set, set]:
    """Every way a seen conversation begins (its turn prefixes), and the whole conversations, answers included."""
    prefixes, wholes = set(), set()
    for e in seen:
        turns = _turns(e, with_target=True)
        prefixes.update(turns[:i] for i in range(1, len(turns) + 1))
        wholes.add(turns)
    return prefixes, wholes


def _begins(example: Example, prefixes: set, wholes: set) -> bool:
    """A test conversation leaks when its input is how a train or dev conversation begins (the model saw what
    follows it), or when a whole train or dev conversation, answer included, begins it."""
    turns = _turns(example, with_target=False)
    return bool(turns) and (turns in prefixes or any(turns[:i] in wholes for i in range(1, len(turns) + 1)))


def _turns(example: Example, *, with_target: bool) -> tuple[str, ...]:
    """A conversation's user and assistant messages, normalized (a system message is setting, not dialogue)."""
    turns = tuple(f"{m['role']}:{normalize(m['content'])}" for m in example.messages or () if m["role"] != "system")
    if with_target and isinstance(example.target, str) and example.messages is not None:
        turns += (f"assistant:{normalize(example.target)}",)
    return turns


def check_leakage(splits: Splits, *, strict: bool, file: str) -> Leakage:
    leak = find_leakage(splits)
    if leak.count and strict:
        raise LeakageError(leak.message(), file=file, field="splits")
    return leak


def fingerprint(examples: list[Example]) -> str:
    """A short hash of the data, stored with every run."""
    digest = hashlib.sha256()
    for e in examples:
        digest.update(f"{e.id}\x1f{e.input}\x1f{e.target_text}\x1e".encode())
    return digest.hexdigest()[:16]
