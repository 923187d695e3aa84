"""The bundled example: word sentiment from vaderSentiment's human-rated lexicon."""

from __future__ import annotations

import json
import re
from importlib import resources
from pathlib import Path

from .arms import traits
from .backends.models import package_dir
from .demo_support import write_support
from .errors import MissingDependencyError, TunewiseError
from .task import Task, load_task

LEXICON_INSTALL = "pip install --no-deps vaderSentiment==3.3.2"
WORD = re.compile(r"[a-z][a-z'\-]*[a-z]")


def lexicon_path() -> Path:
    directory = package_dir("vaderSentiment")  # found, not imported: it would import requests
    path = directory / "vader_lexicon.txt" if directory else None
    if path is None or not path.exists():
        raise MissingDependencyError(f"the demo's word list comes from vaderSentiment; install it with: "
                                     f"{LEXICON_INSTALL}")
    return path


def word_rows(min_abs: float = 1.0) -> list[dict]:
    """Words (not emoticons) whose mean rating is at least min_abs from neutral."""
    rows, seen = [], set()
    for line in lexicon_path().read_text(encoding="utf-8").splitlines():
        parts = line.split("\t")
        if len(parts) < 2 or not WORD.fullmatch(parts[0]) or parts[0] in seen:
            continue  # the lexicon lists a few words twice: keep the first rating
        seen.add(parts[0])
        mean = float(parts[1])
        if abs(mean) >= min_abs:
            rows.append({"word": parts[0], "label": "positive" if mean > 0 else "negative", "rating": mean})
    return rows


def write_demo(directory: str | Path, *, overwrite: bool = True) -> Path:
    """Write the task file and its data into a directory; return the task file. Without `overwrite`, a file
    there that differs from the demo's (one the user edited) is refused, not replaced."""
    directory = Path(directory)
    data = "".join(json.dumps(row) + "\n" for row in word_rows())
    task = (resources.files("tunewise") / "examples" / "word_sentiment.yaml").read_text(encoding="utf-8")
    files = {directory / "word_sentiment.jsonl": data, directory / "word_sentiment.yaml": task}
    _write(directory, files, overwrite)
    return directory / "word_sentiment.yaml"


def _write(directory: Path, files: dict[Path, str], overwrite: bool) -> None:
    if not overwrite:
        for path, text in files.items():
            if path.exists() and (not path.is_file() or path.read_text(encoding="utf-8", errors="replace") != text):
                raise TunewiseError("exists and differs from the demo's (edited?); tunewise leaves it as it is: "
                                    "move it away or write the demo to another directory", file=str(path))
    try:
        directory.mkdir(parents=True, exist_ok=True)
        for path, text in files.items():
            path.write_text(text, encoding="utf-8")
    except OSError as err:
        raise TunewiseError(f"cannot write the demo here ({err.strerror or err}); choose another directory",
                            file=str(directory)) from None


def write_explain(directory: str | Path, *, overwrite: bool = True) -> Path:
    """Write the explain example (topics to explain, no targets, scored by assertions) into a directory."""
    examples = resources.files("tunewise") / "examples"
    files = {Path(directory) / name: (examples / name).read_text(encoding="utf-8")
             for name in ("explain_topics.jsonl", "explain.yaml")}
    _write(Path(directory), files, overwrite)
    return Path(directory) / "explain.yaml"


DEMOS = {"word_sentiment": write_demo, "explain": write_explain, "support": write_support}


def demo_task(directory: str | Path, quick: bool = False, name: str = "word_sentiment") -> tuple[Task, Path]:
    """A bundled example's task; quick keeps the prompting arms only (no training)."""
    task_file = DEMOS[name](directory)
    task = load_task(task_file)
    if quick:
        arms = [a for a in task.arms if traits(a.type).prompting]
        task = task.model_copy(update={"arms": arms, "learning_curve": None})
    return task, task_file
