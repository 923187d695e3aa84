"""One small run on the tiny random Llama, shared by the export, predict and serve tests (session scope)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

import tunewise
from tunewise.ship.export import export
from tunewise.store.sqlite import Store
from tunewise.task import validate_task

# 64 rows: 22 test items, enough for the first-20 adapter check
ROWS = [(f"{stem}{i}", label) for i in range(16) for stem, label in
        (("happy", "positive"), ("sad", "negative"), ("joy", "positive"), ("awful", "negative"))]

ARMS = [{"type": "zero_shot"},
        {"type": "structured", "decoding": "constrained"},
        {"type": "few_shot", "k": 2},
        {"type": "lora", "r": 8, "train": {"epochs": 4, "batch_size": 8, "learning_rate": 3e-2, "patience": 4}},
        {"type": "hybrid", "tuned": "lora", "prompt": "structured", "decoding": "constrained"}]


@dataclass
class TinyRun:
    home: Path
    run_id: str
    task: object
    model_dir: Path
    bundles: Path

    def store(self) -> Store:
        return Store(self.home / "tunewise.db")

    def bundle(self, arm: str | None = None, **kw) -> Path:
        """The arm's bundle (exported once per arm and options)."""
        out = self.bundles / f"{arm or 'recommended'}{'-merged' if kw.get('merge') else ''}"
        if not out.exists():
            export(self.store(), self.run_id, out, arm, **kw)
        return out

    def rows(self, arm: str) -> list[dict]:
        return self.store().predictions(self.run_id, arm)

    def summary(self, arm: str) -> dict:
        return next(a["summary"] for a in self.store().arms(self.run_id) if a["name"] == arm)


def tiny_task(data: Path, model_dir: Path, arms=ARMS, **extra):
    spec = {"name": "words", "instruction": "Classify the sentiment of the word.",
            "data": {"path": str(data), "input": "Word: {word}", "target": "label"},
            "model": str(model_dir), "batch_size": 8, "generation": {"max_tokens": 6},
            "splits": {"train": 0.5, "dev": 0.15, "test": 0.35, "seed": 0},
            "consistency": {"enabled": False}, "arms": arms}
    spec.update(extra)
    return validate_task(spec)


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, tiny_model_dir) -> TinyRun:
    root = tmp_path_factory.mktemp("bundle-run")
    data = root / "words.csv"
    data.write_text("word,label\n" + "".join(f"{w},{label}\n" for w, label in ROWS))
    task = tiny_task(data, tiny_model_dir)
    result = tunewise.run(task, home=root / "home", progress=False)
    return TinyRun(root / "home", result.run_id, task, tiny_model_dir, root / "bundles")
