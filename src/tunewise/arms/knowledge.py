"""A knowledge source for retrieval arms: passages read from a file or a folder, searched with BM25 (bm25s)."""

from __future__ import annotations

import re

from ..errors import DataError, MissingDependencyError, TaskFileError
from ..task import Task
from ..task.data import read_rows

TEXT_SUFFIXES = (".txt", ".md")


def load_passages(task: Task) -> list[str]:
    """Every passage of the task's knowledge source; an empty one is an error, never silently skipped."""
    config = task.knowledge
    if config is None:
        raise TaskFileError("a retrieval arm needs a knowledge source: knowledge: {path: ..., field: text}",
                            field="knowledge")
    path = task.path_of(config.path)
    if path.is_dir():
        passages = [p for f in sorted(path.rglob("*")) if f.suffix in TEXT_SUFFIXES
                    for p in _paragraphs(f.read_text(encoding="utf-8"))]
    else:
        passages = []
        for line, row in read_rows(path):
            text = row.get(config.field)
            if not isinstance(text, str) or not text.strip():
                raise DataError("missing or empty passage", file=str(path), line=line, field=config.field)
            passages.append(text.strip())
    if not passages:
        raise DataError("the knowledge source holds no passage", file=str(path))
    return passages


def _paragraphs(text: str) -> list[str]:
    return [p.strip() for p in re.split(r"\n\s*\n", text) if p.strip()]


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
