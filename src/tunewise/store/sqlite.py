"""The results store: SQLite with numbered migrations; runs, arms, predictions and the request cache."""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Iterable

from ..errors import RunError, StoreError, TunewiseError

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
UNFINISHED = ("running", "interrupted", "failed")  # a run in one of these resumes when its command runs again


def _open_readonly(path: Path) -> sqlite3.Connection:
    """Read without writing anything, even on a read-only disk: a WAL database needs its -shm file, which
    a read-only folder cannot hold; `immutable` reads the file as it is then (no other writer can exist)."""
    uri = path.resolve().as_uri()
    try:
        db = sqlite3.connect(f"{uri}?mode=ro", uri=True, timeout=30)
        db.execute("SELECT count(*) FROM sqlite_master").fetchone()
        return db
    except sqlite3.OperationalError:
        return sqlite3.connect(f"{uri}?immutable=1", uri=True)


class Store:
    """The store at `path`; `readonly` opens it for reading only (show, runs, report on a read-only home)."""

    def __init__(self, path: str | Path, *, readonly: bool = False):
        self.path = Path(path)
        self.readonly = readonly
        self.db = self._connect()
        try:
            self._check_identity()
            if not readonly:
                self.db.execute("PRAGMA journal_mode=WAL")
                self.db.execute("PRAGMA synchronous=NORMAL")
                self.migrate()
        except sqlite3.DatabaseError as err:
            self.db.close()
            raise self._error(err) from None
        except BaseException:
            self.db.close()
            raise

    def _connect(self) -> sqlite3.Connection:
        if self.readonly:
            if not self.path.is_file():
                raise StoreError("no results store here; run a task first", file=str(self.path))
            try:
                db = _open_readonly(self.path)
            except sqlite3.DatabaseError as err:
                raise self._error(err) from None
        else:
            if self.path.parent.exists() and not self.path.parent.is_dir():
                raise StoreError("is a file, not a directory; --home needs a directory", file=str(self.path.parent))
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as err:
                raise StoreError(f"cannot create the store's directory ({err.strerror}); choose another "
                                 f"--home", file=str(self.path.parent)) from None
            if self.path.is_dir():
                raise StoreError("is a directory, not a results store; choose another --home", file=str(self.path))
            try:
                db = sqlite3.connect(str(self.path), timeout=30)
            except sqlite3.Error as err:
                raise self._error(err) from None
        db.row_factory = sqlite3.Row
        return db

    def _check_identity(self) -> None:
        """Refuse another program's database and a newer tunewise's, before anything is written."""
        version = self.version()
        tables = [r[0] for r in self.db.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")]
        if version > SCHEMA_VERSION:
            raise StoreError(f"the store has schema version {version}, newer than the {SCHEMA_VERSION} this "
                             f"tunewise knows: upgrade tunewise (pip install -U tunewise), or use another --home",
                             file=str(self.path))
        if (version == 0 and tables) or (version > 0 and "runs" not in tables):
            shown = ", ".join(sorted(tables)[:5])
            raise StoreError(f"not a tunewise results store (an SQLite database with tables {shown}); tunewise "
                             f"leaves it untouched: choose another --home", file=str(self.path))
        if version == 0 and self.readonly:
            raise StoreError("the results store is empty; run a task first", file=str(self.path))

    def _error(self, err: sqlite3.Error) -> TunewiseError:
        return store_error(self.path, err)

    def close(self) -> None:
        self.db.close()

    def version(self) -> int:
        return self.db.execute("PRAGMA user_version").fetchone()[0]

    def migrate(self) -> None:
        current = self.version()
        for number in range(current, SCHEMA_VERSION):
            with self.db:
                self.db.executescript(f"BEGIN; {MIGRATIONS[number]}; PRAGMA user_version = {number + 1}; COMMIT;")

    # -- runs ---------------------------------------------------------------
    def unfinished_run(self, config_hash: str, fingerprint: str) -> str | None:
        row = self.db.execute(
            "SELECT id FROM runs WHERE config_hash = ? AND data_fingerprint = ? AND status IN (?, ?, ?) "
            "ORDER BY created_at DESC LIMIT 1", (config_hash, fingerprint, *UNFINISHED)).fetchone()
        return row["id"] if row else None

    def create_run(self, run_id: str, task_name: str, config: dict, config_hash: str,
                   fingerprint: str, info: dict) -> None:
        with self.db:
            self.db.execute(
                "INSERT INTO runs (id, task_name, created_at, status, config_hash, config_json, "
                "data_fingerprint, info_json) VALUES (?, ?, ?, 'running', ?, ?, ?, ?)",
                (run_id, task_name, time.time(), config_hash, json.dumps(config), fingerprint,
                 json.dumps(dict(info, process=_process()))))

    def finish_run(self, run_id: str) -> None:
        with self.db:
            self.db.execute("UPDATE runs SET status = 'done', finished_at = ? WHERE id = ?", (time.time(), run_id))

    def set_status(self, run_id: str, status: str) -> None:
        """running (with this process's id, so a run killed with -9 shows as interrupted), failed or
        interrupted."""
        with self.db:
            self.db.execute("UPDATE runs SET status = ? WHERE id = ?", (status, run_id))
            if status == "running":
                self.db.execute("UPDATE runs SET info_json = json_set(info_json, '$.process', json(?)) WHERE id = ?",
                                (json.dumps(_process()), run_id))

    def add_warnings(self, run_id: str, warnings: list[str]) -> None:
        """Warnings found while the arms ran (prompts past a model's context), shown by the report."""
        with self.db:
            row = self.db.execute("SELECT info_json FROM runs WHERE id = ?", (run_id,)).fetchone()
            info = json.loads(row["info_json"])
            info["warnings"] = list(dict.fromkeys(info.get("warnings", []) + warnings))
            self.db.execute("UPDATE runs SET info_json = ? WHERE id = ?", (json.dumps(info), run_id))

    def set_info(self, run_id: str, key: str, value: Any) -> None:
        """Add to a run's info what was measured across its arms (the judge's pairwise verdicts, its agreement
        with human scores), so the report is rebuilt from the store."""
        with self.db:
            row = self.db.execute("SELECT info_json FROM runs WHERE id = ?", (run_id,)).fetchone()
            info = json.loads(row["info_json"])
            info[key] = value
            self.db.execute("UPDATE runs SET info_json = ? WHERE id = ?", (json.dumps(info), run_id))

    def get_run(self, run_id: str) -> dict[str, Any] | None:
        if run_id == "latest":
            row = self.db.execute("SELECT * FROM runs ORDER BY created_at DESC LIMIT 1").fetchone()
        else:
            row = self.db.execute("SELECT * FROM runs WHERE id = ?", (run_id,)).fetchone()
            if row is None:  # a unique prefix is enough
                rows = self.db.execute("SELECT * FROM runs WHERE id LIKE ? ESCAPE '\\' ORDER BY id",
                                       (_like_prefix(run_id),)).fetchall()
                if len(rows) > 1:
                    shown = ", ".join(r["id"] for r in rows[:5]) + (", ..." if len(rows) > 5 else "")
                    raise StoreError(f"run {run_id!r} is ambiguous: it begins {len(rows)} runs ({shown}); "
                                     f"give more of the id")
                row = rows[0] if rows else None
        if row is None:
            return None
        run = dict(row)
        run["config"] = json.loads(run.pop("config_json"))
        run["info"] = json.loads(run.pop("info_json"))
        run["status"] = _live_status(run["status"], run["info"])
        return run

    def list_runs(self) -> list[dict[str, Any]]:
        out = []
        for r in self.db.execute("SELECT id, task_name, created_at, status, info_json FROM runs "
                                 "ORDER BY created_at DESC"):
            run = dict(r)
            try:
                info = json.loads(run.pop("info_json"))
            except (TypeError, ValueError):  # one damaged run must not hide the others
                info = {}
            run["status"] = _live_status(run["status"], info)
            out.append(run)
        return out

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

    def cache_snapshot(self) -> dict[str, dict]:
        """Every cached answer by key: what Ray workers on machines that cannot read the store start from."""
        return {row["key"]: json.loads(row["response_json"]) for row in self.db.execute(
            "SELECT key, response_json FROM cache")}

    def cache_put(self, model_key: str, kind: str, items: list[tuple[str, Any]]) -> None:
        """Store finished responses; one transaction per batch, so an interrupt loses at most a batch."""
        now = time.time()
        with self.db:
            self.db.executemany(
                "INSERT OR REPLACE INTO cache (key, model_key, kind, response_json, created_at) VALUES (?, ?, ?, ?, ?)",
                [(key, model_key, kind, json.dumps(asdict(value)), now) for key, value in items])


def store_error(path: Path, err: sqlite3.Error) -> TunewiseError:
    """What an SQLite error means to the user, in one line naming the store."""
    text, where = str(err), {"file": str(path)}
    if "not a database" in text or "malformed" in text:
        return StoreError(f"not a readable results store ({text}); move it away (or restore it from a backup) or "
                          f"choose another --home", **where)
    if "readonly" in text or "unable to open" in text:
        return StoreError(f"cannot write the results store ({text}); make its folder writable or choose "
                          f"another --home", **where)
    if "locked" in text or "busy" in text:
        return RunError(f"the results store stayed busy ({text}): another tunewise is writing to it; run again "
                        f"when it is done", **where)
    return RunError(f"the results store failed ({text})", **where)


def _like_prefix(text: str) -> str:
    """A LIKE pattern matching ids that begin with `text` (its % and _ taken literally)."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def _process() -> dict[str, Any]:
    return {"pid": os.getpid(), "host": socket.gethostname()}


def _live_status(status: str, info: Any) -> str:
    """A run still marked running whose process on this machine is gone was killed (kill -9, a crash)."""
    process = info.get("process") if isinstance(info, dict) else None
    if status != "running" or not isinstance(process, dict) or process.get("host") != socket.gethostname():
        return status
    try:
        os.kill(int(process["pid"]), 0)
    except ProcessLookupError:
        return "interrupted"
    except (OSError, ValueError, TypeError, KeyError):
        pass
    return status
