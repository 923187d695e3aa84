"""`predict`: a bundle's answers for every row of a file, written as JSONL, resumable.

Rows are read as a task's data is (JSONL, CSV, Parquet, a saved `datasets` directory) and rendered with the
task's input template, or, for a task whose rows are conversations, read as its conversations are: a list of
{role, content} messages (`messages`, ShareGPT's `conversations`, or the field the task names). A
conversation that ends with an assistant message has it as its target, as in the run; one that ends with the
user's message is answered. Each batch's answers are written and flushed before the next batch starts, so a
killed run loses at most the batch in flight, and running the same command again skips the rows already
written. The sidecar `OUT.tunewise` records each batch written (the bytes and their SHA-256): a file
without one, or changed since, is never written into. When the rows hold the task's target field, the
answers are scored with the run's metrics.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ..errors import DataError
from ..measure import get_metric
from ..measure.evaluate import summarize
from ..store.owned import Resume, check_appendable
from ..task.data import (
    Example,
    _conversation,
    _ends_with_user,
    _target,
    _text_field,
    messages_field,
    read_messages,
    read_rows,
    transcript,
)
from .bundle import Bundle, prediction_record

WRITER = "tunewise predict"  # the sidecar's writer: only a file predict wrote is resumed
RECORD_START = b'{"id": '  # every record's first bytes (json.dumps of `prediction_record`)


@dataclass
class PredictResult:
    out: Path
    written: int                 # rows answered by this call
    skipped: int                 # rows found already written (resumed)
    summary: dict[str, Any] | None = None  # metrics, when the input holds targets
    ids: list[str] = field(default_factory=list)


def predict_file(bundle: Bundle, input_path: str | Path, out: str | Path, *, batch_size: int = 64,
                 id_field: str = "id", progress: bool = True,
                 log: Callable[[str], None] = lambda message: None) -> PredictResult:
    """Answer every row of `input_path` not yet in `out`, appending one JSON line per row. `out` is a new
    file or one this command wrote, as its sidecar shows (`tunewise.store.owned`), checked with the rows
    already answered before any byte changes."""
    from ..execution.runner import _Bars
    out, source = Path(out), _source(bundle)
    examples = read_inputs(bundle, Path(input_path), id_field)
    resume = check_appendable(out, WRITER, _own_line)
    done = written_ids(out, resume, source)
    _same_rows(done, examples, source, out)
    todo = [e for e in examples if e.id not in done]
    if done:
        log(f"resuming: {len(examples) - len(todo)} of {len(examples)} rows already in {out}")
    with _Bars(progress) as bars, resume.start({"bundle": source}, "the answers") as append:
        advance = bars.callback("predict", len(todo))
        for start in range(0, len(todo), batch_size):
            answers = bundle.answer(todo[start:start + batch_size], progress=advance)
            append("".join(json.dumps(_record(p, source), ensure_ascii=False) + "\n" for p in answers).encode())
    return PredictResult(out, len(todo), len(examples) - len(todo), score(bundle, out, examples),
                         [e.id for e in examples])


def _own_line(line: bytes, complete: bool) -> bool:
    """A line of predict's shape: a record with an id and the bundle (or the start of one, cut by a kill)."""
    if not complete:
        return line.startswith(RECORD_START) or RECORD_START.startswith(line)
    try:
        record = json.loads(line)
    except ValueError:
        return False
    return isinstance(record, dict) and {"id", "bundle"} <= set(record)


def _source(bundle: Bundle) -> str:
    """Which arm answered: a resumed file must go on with the same one."""
    return f"{bundle.manifest.run_id}/{bundle.manifest.arm}"


def _same_rows(done: dict[str, dict], examples: list[Example], source: str, out: Path) -> None:
    """Rows already in `out` must be these rows' answers, by this bundle: ids alone could match another file's."""
    for e in examples:
        record = done.get(e.id)
        if record is None:
            continue
        if record.get("input") != e.input:
            raise DataError(f"row id {e.id!r} was answered for another input ({str(record.get('input'))[:40]!r}); "
                            "choose another --out", file=str(out), line=record["_line"])
        if record.get("bundle") != source:
            raise DataError(f"written by another bundle ({record.get('bundle')}, not {source}); choose another --out",
                            file=str(out), line=record["_line"])


def _record(p, source: str) -> dict[str, Any]:
    record = prediction_record(p)
    record.update(input=p.example.input, bundle=source)
    if p.example.target is not None:
        record["target"] = p.example.target
    record.update(latency_s=p.latency_s, input_tokens=p.input_tokens, output_tokens=p.output_tokens)
    return record


def read_inputs(bundle: Bundle, path: Path, id_field: str) -> list[Example]:
    """The rows as examples: the input rendered with the task's template (or a row's `input` field), or a
    conversation task's messages (the input is their transcript); the target when the row has it; the id from
    `id_field` (else the row's line or number)."""
    task = bundle.task
    template, fields = task.data.input, task.data.input_fields()
    examples, seen = [], set()
    for line, row in read_rows(path):
        where = {"file": str(path), "line": line}
        messages = None
        if bundle.conversation:
            messages, target = _conversation_row(task, row, where)
            text = transcript(messages)
        else:
            if all(f in row for f in fields) or "input" not in row:
                values = {f: _text_field(row, f, where) for f in fields}
                text = values[template] if template in values else template.format(**values)
            else:
                text = _text_field(row, "input", where)
            target = _target(task, row, where) if task.data.target in row else None
        labels = bundle.prompter.labels
        if target is not None and task.type == "classification" and labels and target not in labels:
            raise DataError(f"label {target!r} is not one of the bundle's labels {labels}",
                            field=task.data.target, **where)
        example_id = str(row[id_field]) if row.get(id_field) is not None else str(line)
        if example_id in seen:
            raise DataError(f"id {example_id!r} repeats an earlier row's (answers are matched to rows by id)",
                            field=id_field, **where)
        seen.add(example_id)
        examples.append(Example(id=example_id, input=text, target=target, line=line, messages=messages))
    if not examples:
        raise DataError("the input has no rows", file=str(path))
    return examples


def _conversation_row(task, row: dict[str, Any], where: dict) -> tuple[tuple[dict[str, str], ...], Any]:
    """A conversation row's messages before the reply, and its target: a final assistant message is the target
    as in the run (or, with data.target, the row's target field); a row ending with the user's message is
    answered. The messages are in the task's field (data.messages), else in `messages` or ShareGPT's
    `conversations`. Checked by the data's own code: an error names the file, the line and `messages[i]`."""
    name = messages_field(task, row)
    if name not in row and {"messages", "conversations"} & set(row):  # the task names its own field (data.messages);
        name = "messages" if "messages" in row else "conversations"   # a row in OpenAI's or ShareGPT's is read too
        task = task.model_copy(update={"data": task.data.model_copy(update={"messages": name})})
    messages, _ = read_messages(row.get(name), name, where, missing=name not in row)
    if task.data.target is None and messages and messages[-1]["role"] == "assistant":
        messages, target, _ = _conversation(task, row, where)
        return messages, target
    _ends_with_user(messages, name, where, what="the conversation" if task.data.target else "the reply")
    return messages, _target(task, row, where) if task.data.target in row else None


def written_ids(out: Path, resume: Resume, source: str) -> dict[str, dict]:
    """The records of the batches `resume` kept, by id (with their `_line`)."""
    if resume.header is not None and resume.header.get("bundle") != source:
        raise DataError(f"written by another bundle ({resume.header.get('bundle')}, not {source}); "
                        "choose another --out", file=str(out))
    ids = {}
    for number, raw in enumerate(resume.data.splitlines(), start=1):
        try:
            record = json.loads(raw)
            ids[str(record["id"])] = dict(record, _line=number)
        except (ValueError, KeyError, TypeError):
            raise DataError("not a line this command wrote; choose another --out", file=str(out),
                            line=number) from None
    return ids


def score(bundle: Bundle, out: Path, examples: list[Example]) -> dict[str, Any] | None:
    """The run's metrics (with 95% bootstrap intervals) over every answered row, when the rows hold targets."""
    if any(e.target is None for e in examples):
        return None
    answered = {str(r["id"]): dict(r, cached=False)
                for r in map(json.loads, out.read_text(encoding="utf-8").splitlines())}
    rows = [answered[e.id] for e in examples]  # in input order, as the run's intervals resample
    task = bundle.task
    names = [n for n in task.metric_names() if not get_metric(n, task).stored]  # a judge is not asked here
    return summarize(rows, names, seed=task.splits.seed, task=task)
