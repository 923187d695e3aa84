"""A knowledge source for retrieval arms: passages read from a file or a folder, searched with BM25 (bm25s)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from ..errors import DataError, MissingDependencyError, TaskFileError
from ..task import Task
from ..task.data import read_rows

TEXT_SUFFIXES = (".txt", ".md")
ROW_SUFFIXES = (".jsonl", ".ndjson", ".json", ".csv", ".tsv", ".parquet", ".pq")


@dataclass(frozen=True)
class Passage:
    text: str
    file: str
    line: int | None  # where it starts: a row's line, a paragraph's first line
    field: str | None = None  # the row's field holding it


def load_passages(task: Task) -> list[str]:
    """Every passage of the task's knowledge source; an empty one is an error, never silently skipped."""
    return [p.text for p in read_passages(task)]


def read_passages(task: Task) -> list[Passage]:
    """The passages with where each comes from, so an error can name its file and line."""
    config = task.knowledge
    if config is None:
        raise TaskFileError("a retrieval arm needs a knowledge source: knowledge: {path: ..., field: text}",
                            field="knowledge")
    path = task.path_of(config.path)
    if path.is_dir():
        files = sorted(f for f in path.rglob("*") if f.is_file())
        passages = [p for f in files if f.suffix in TEXT_SUFFIXES for p in _file_passages(f)]
        others = [f.name for f in files if f.suffix not in TEXT_SUFFIXES]
        if not passages and others:
            raise DataError(f"the knowledge source holds no passage: no .txt or .md file, only {len(others)} "
                            f"other file(s) such as {others[0]!r}", file=str(path))
    else:
        passages = _row_passages(path, config.field)
    if not passages:
        raise DataError("the knowledge source holds no passage", file=str(path))
    return passages


def _row_passages(path: Path, field: str) -> list[Passage]:
    if path.exists() and path.suffix.lower() not in ROW_SUFFIXES:  # read_rows' advice would name data.format
        advice = f"a {path.suffix} file is read from a folder of .txt/.md files: point knowledge.path at the folder " \
            f"holding it" if path.suffix.lower() in TEXT_SUFFIXES else "a knowledge file is JSONL, CSV or Parquet " \
            "rows (a passage each, in knowledge.field), or a folder of .txt/.md files"
        shown = path.suffix or "a file without a suffix"
        raise DataError(f"cannot read {shown} as knowledge; {advice}", file=str(path))
    passages = []
    for line, row in read_rows(path):
        text = row.get(field)
        if not isinstance(text, str) or not text.strip():
            raise DataError("missing or empty passage", file=str(path), line=line, field=field)
        passages.append(Passage(text.strip(), str(path), line, field))
    return passages


def _file_passages(file: Path) -> list[Passage]:
    raw = file.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise DataError(f"not valid UTF-8 text (byte 0x{raw[err.start]:02x}); knowledge files are UTF-8 text",
                        file=str(file), line=raw[: err.start].count(b"\n") + 1) from None
    text = text.replace("\r\n", "\n").replace("\r", "\n")  # line ends as read_text gives them
    return [Passage(text, str(file), line) for line, text in _paragraphs(text)]


def _paragraphs(text: str) -> list[tuple[int, str]]:
    """Each paragraph with the line it starts on."""
    found, line = [], 1
    for i, part in enumerate(re.split(r"(\n\s*\n)", text)):
        if i % 2 == 0 and part.strip():  # the odd parts are the blank lines between paragraphs
            found.append((line + part[: len(part) - len(part.lstrip())].count("\n"), part.strip()))
        line += part.count("\n")
    return found


class BM25Index:
    """Okapi BM25 over the passages (bm25s: sparse matrices, no network); English stopwords removed."""

    def __init__(self, passages: list[str]):
        try:
            import bm25s
        except ImportError:
            raise MissingDependencyError("retrieval needs bm25s: pip install 'tunewise[retrieval]'") from None
        self.passages = passages
        self.bm25s = bm25s
        self.index = bm25s.BM25()
        self.index.index(bm25s.tokenize(passages, stopwords="en", show_progress=False), show_progress=False)

    def search(self, queries: list[str], k: int) -> list[list[int]]:
        """The indices of the k best passages for each query, best first."""
        k = min(k, len(self.passages))
        tokens = self.bm25s.tokenize(queries, stopwords="en", show_progress=False)
        found, _ = self.index.retrieve(tokens, k=k, show_progress=False, n_threads=1)
        return [[int(i) for i in row] for row in found]


def contains_answer(passages: list[str], answer: str) -> bool:
    """Whether a retrieved passage holds the expected answer (normalized), the retrieval hit."""
    from ..measure.metrics import normalize_answer
    needle = normalize_answer(answer)
    return bool(needle) and any(needle in normalize_answer(p) for p in passages)
