"""The results store: SQLite with numbered migrations; runs, arms, predictions and the request cache."""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Iterable

# Each entry moves the schema one version up; never edit a released one, append a new one.
MIGRATIONS: list[str] = [
    """
    CREATE TABLE runs (
        id TEXT PRIMARY KEY,
        task_name TEXT NOT NULL,
        created_at REAL NOT NULL,
        finished_at REAL,
        status TEXT NOT NULL,              -- running | done
        config_hash TEXT NOT NULL,
        config_json TEXT NOT NULL,         -- the resolved task configuration
        data_fingerprint TEXT NOT NULL,
        info_json TEXT NOT NULL DEFAULT '{}'  -- split sizes, labels, leakage, versions
    );
    CREATE TABLE arms (
        run_id TEXT NOT NULL REFERENCES runs(id),
        name TEXT NOT NULL,
        position INTEGER NOT NULL,
        config_json TEXT NOT NULL,
        prompt_json TEXT,                  -- the exact prompt template the arm used
        status TEXT NOT NULL,              -- running | done
        wall_s REAL,
        summary_json TEXT,
        PRIMARY KEY (run_id, name)
    );
    CREATE TABLE predictions (
        run_id TEXT NOT NULL,
        arm TEXT NOT NULL,
        example_id TEXT NOT NULL,
        position INTEGER NOT NULL,
        input TEXT NOT NULL,
        target_json TEXT NOT NULL,
        messages_json TEXT NOT NULL,
        raw TEXT NOT NULL,
        parsed_json TEXT,
        scores_json TEXT NOT NULL,
        extra_json TEXT NOT NULL DEFAULT '{}',
        latency_s REAL NOT NULL,
        input_tokens INTEGER NOT NULL,
        output_tokens INTEGER NOT NULL,
        cached INTEGER NOT NULL,
        PRIMARY KEY (run_id, arm, example_id)
    );
    CREATE TABLE cache (
        key TEXT PRIMARY KEY,
        model_key TEXT NOT NULL,
        kind TEXT NOT NULL,
        response_json TEXT NOT NULL,
        created_at REAL NOT NULL
    );
    """,
    # 2: fine-tuning records what it trained (losses, dev metric per epoch, time, tokens, FLOPs)
    """
    ALTER TABLE arms ADD COLUMN training_json TEXT;
    ALTER TABLE arms ADD COLUMN curve_json TEXT;  -- learning-curve point: {"of": arm, "size" or "k": n}
    """,
]

SCHEMA_VERSION = len(MIGRATIONS)


class Store:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(str(self.path), timeout=30)
        self.db.row_factory = sqlite3.Row
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.migrate()

    def close(self) -> None:
        self.db.close()

    def version(self) -> int:
        return self.db.execute("PRAGMA user_version").fetchone()[0]

    def migrate(self) -> None:
        current = self.version()
        if current > SCHEMA_VERSION:
            raise RuntimeError(f"{self.path} has schema version {current}; this tunewise knows "
                               f"{SCHEMA_VERSION}: upgrade tunewise")
        for number in range(current, SCHEMA_VERSION):
            with self.db:
                self.db.executescript(f"BEGIN; {MIGRATIONS[number]}; PRAGMA user_version = {number + 1}; COMMIT;")

    # -- runs ---------------------------------------------------------------
    def unfinished_run(self, config_hash: str, fingerprint: str) -> str | None:
        row = self.db.execute(
            "SELECT id FROM runs WHERE config_hash = ? AND data_fingerprint = ? AND status = 'running' "
            "ORDER BY created_at DESC LIMIT 1", (config_hash, fingerprint)).fetchone()
        return row["id"] if row else None

    def create_run(self, run_id: str, task_name: str, config: dict, config_hash: str,
                   fingerprint: str, info: dict) -> None:
        with self.db:
            self.db.execute(
                "INSERT INTO runs (id, task_name, created_at, status, config_hash, config_json, "
                "data_fingerprint, info_json) VALUES (?, ?, ?, 'running', ?, ?, ?, ?)",
                (run_id, task_name, time.time(), config_hash, json.dumps(config), fingerprint, json.dumps(info)))

    def finish_run(self, run_id: str) -> None:
        with self.db:
            self.db.execute("UPDATE runs SET status = 'done', finished_at = ? WHERE id = ?", (time.time(), run_id))

    def get_run(self, run_id: str) -> dict[str, Any] | None:
        if run_id == "latest":
            row = self.db.execute("SELECT * FROM runs ORDER BY created_at DESC LIMIT 1").fetchone()
        else:
            row = self.db.execute("SELECT * FROM runs WHERE id = ?", (run_id,)).fetchone()
            if row is None:  # a unique prefix is enough
                rows = self.db.execute("SELECT * FROM runs WHERE id LIKE ?", (run_id + "%",)).fetchall()
                row = rows[0] if len(rows) == 1 else None
        if row is None:
            return None
        run = dict(row)
        run["config"] = json.loads(run.pop("config_json"))
        run["info"] = json.loads(run.pop("info_json"))
        return run

    def list_runs(self) -> list[dict[str, Any]]:
        return [dict(r) for r in self.db.execute(
            "SELECT id, task_name, created_at, status FROM runs ORDER BY created_at DESC")]

    # -- arms ---------------------------------------------------------------
    def start_arm(self, run_id: str, name: str, position: int, config: dict, prompt: Any,
                  training: dict | None = None, curve: dict | None = None) -> None:
        with self.db:
            self.db.execute(
                "INSERT INTO arms (run_id, name, position, config_json, prompt_json, status, training_json, "
                "curve_json) VALUES (?, ?, ?, ?, ?, 'running', ?, ?) ON CONFLICT (run_id, name) DO UPDATE SET "
                "prompt_json = excluded.prompt_json, training_json = excluded.training_json",
                (run_id, name, position, json.dumps(config), json.dumps(prompt), json.dumps(training),
                 json.dumps(curve)))

    def finish_arm(self, run_id: str, name: str, summary: dict, wall_s: float) -> None:
        with self.db:
            self.db.execute("UPDATE arms SET status = 'done', summary_json = ?, wall_s = ? "
                            "WHERE run_id = ? AND name = ?", (json.dumps(summary), wall_s, run_id, name))

    def arm_status(self, run_id: str, name: str) -> str | None:
        row = self.db.execute("SELECT status FROM arms WHERE run_id = ? AND name = ?", (run_id, name)).fetchone()
        return row["status"] if row else None

    def arms(self, run_id: str) -> list[dict[str, Any]]:
        out = []
        for row in self.db.execute("SELECT * FROM arms WHERE run_id = ? ORDER BY position", (run_id,)):
            arm = dict(row)
            arm["config"] = json.loads(arm.pop("config_json"))
            arm["prompt"] = json.loads(arm.pop("prompt_json") or "null")
            arm["summary"] = json.loads(arm.pop("summary_json") or "null")
            arm["training"] = json.loads(arm.pop("training_json") or "null")
            arm["curve"] = json.loads(arm.pop("curve_json") or "null")
            out.append(arm)
        return out

    # -- predictions ----------------------------------------------------------
    def save_predictions(self, run_id: str, arm: str, rows: Iterable[dict[str, Any]]) -> None:
        with self.db:
            self.db.executemany(
                "INSERT OR REPLACE INTO predictions VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [(run_id, arm, r["example_id"], r["position"], r["input"], json.dumps(r["target"]),
                  json.dumps(r["messages"]), r["raw"], json.dumps(r["parsed"]), json.dumps(r["scores"]),
                  json.dumps(r.get("extra", {})), r["latency_s"], r["input_tokens"], r["output_tokens"],
                  int(r["cached"])) for r in rows])

    def predictions(self, run_id: str, arm: str) -> list[dict[str, Any]]:
        out = []
        for row in self.db.execute("SELECT * FROM predictions WHERE run_id = ? AND arm = ? ORDER BY position",
                                   (run_id, arm)):
            r = dict(row)
            for name in ("target", "messages", "parsed", "scores", "extra"):
                r[name] = json.loads(r.pop(f"{name}_json"))
            out.append(r)
        return out

    # -- request cache --------------------------------------------------------
    def cache_get(self, keys: list[str]) -> dict[str, dict]:
        found: dict[str, dict] = {}
        for start in range(0, len(keys), 500):
            chunk = keys[start:start + 500]
            marks = ",".join("?" * len(chunk))
            for row in self.db.execute(f"SELECT key, response_json FROM cache WHERE key IN ({marks})", chunk):
                found[row["key"]] = json.loads(row["response_json"])
        return found

    def cache_put(self, model_key: str, kind: str, items: list[tuple[str, Any]]) -> None:
        """Store finished responses; one transaction per batch, so an interrupt loses at most a batch."""
        now = time.time()
        with self.db:
            self.db.executemany(
                "INSERT OR REPLACE INTO cache (key, model_key, kind, response_json, created_at) VALUES (?, ?, ?, ?, ?)",
                [(key, model_key, kind, json.dumps(asdict(value)), now) for key, value in items])
