"""Units as Ray tasks (`executor: ray`; pip install 'tunewise[ray]').

Each unit is a Ray task that declares its resources (executor.cpus, gpus, memory_gb) and streams back
what it produces: every new answer as it arrives, then the unit's result. The driver alone writes the
store: it saves the answers as they come (so Ctrl-C loses only requests in flight, as locally), then the
unit's arm row and predictions. Workers read the request cache from the driver's store, read-only, when
their machine can see it, else from a snapshot the driver sends; they never write it. A hybrid is
submitted once its tuned arm is done. Trained models are written under the home: a worker on a
machine that shares the driver's home writes them in place; otherwise they travel with the result, and
to the units that need them.
"""

from __future__ import annotations

import pickle
import queue
import secrets
import threading
import time
from pathlib import Path

from ..errors import RunError
from ..task import ExecutorConfig
from .executor import Setup, Unit, UnitRunner

MARK = ".driver"  # a file in the home whose token tells a worker it shares the driver's home


class RayExecutor:
    def __init__(self, settings: ExecutorConfig):
        self.settings = settings

    def run(self, units: list[Unit], setup: Setup, store, bars, log, on_start, on_done) -> None:
        import ray
        started = not ray.is_initialized()
        if started:
            ray.init(address=self.settings.address, include_dashboard=False, configure_logging=False,
                     log_to_driver=False)
        try:
            _Scheduler(self.settings, setup, store, log, on_done).run(units)
        finally:
            if started:
                ray.shutdown()


class _Scheduler:
    """Submits the units whose needs are met, and handles what each streams back, until all are done."""

    def __init__(self, settings: ExecutorConfig, setup: Setup, store, log, on_done):
        import ray
        self.settings, self.setup, self.store, self.log, self.on_done = settings, setup, store, log, on_done
        token = secrets.token_hex(8)
        setup.home.mkdir(parents=True, exist_ok=True)
        (setup.home / MARK).write_text(token)
        snapshot = store.cache_snapshot() if settings.address not in (None, "local") else None
        self.source = ray.put(CacheSource(str(store.path), str(setup.home), token, snapshot))
        self.setup_ref = ray.put(setup)
        self.trained: dict[str, str] = {}  # unit name -> its trained model's folder (under the home)
        self.timings: dict[str, float] = {}

    def run(self, units: list[Unit]) -> None:
        import ray
        waiting, running = list(units), {}
        try:
            while waiting or running:
                blocked = {u.name for u in waiting} | {u.name for u in running.values()}
                for unit in [u for u in waiting if not blocked & set(u.needs)]:
                    waiting.remove(unit)
                    running[self._submit(unit)] = unit
                if not running:
                    raise RunError(f"units wait on each other: {', '.join(u.name for u in waiting)}")
                ready, _ = ray.wait(list(running), num_returns=1)
                for stream in ready:
                    if self._take(stream, running[stream]):
                        del running[stream]
        except BaseException:
            for stream in running:
                ray.cancel(stream)
            raise

    def _submit(self, unit: Unit):
        gb = self.settings.memory_gb
        options = {"num_cpus": self.settings.cpus, "num_gpus": self.settings.gpus}
        if gb:
            options["memory"] = int(gb * 2**30)
        artefacts = {}
        for need in unit.needs:
            if need in self.trained:
                artefacts.update(_read_folder(Path(self.trained[need]), self.setup.home))
        return _remote().options(**options).remote(self.setup_ref, unit, self.source, artefacts)

    def _take(self, stream, unit: Unit) -> bool:
        """Handle the next thing a unit sent; True once the unit is finished."""
        import ray
        try:
            kind, payload = ray.get(next(stream))
        except StopIteration:
            raise RunError(f"unit {unit.name} ended without a result") from None
        if kind == "answers":
            model_key, what, items = payload
            self.store.cache_put(model_key, what, items)
            return False
        if kind == "error":
            raise payload
        result, files = payload
        _write_files(files, self.setup.home)
        if result.training and result.training.get("path"):
            self.trained[unit.name] = result.training["path"]
        self.timings[unit.name] = result.unit_s
        self.log(f"{unit.name}: done in {result.unit_s:.1f} s")
        self.on_done(result)
        return True


_REMOTE = None


def _remote():
    """The Ray task, made once (a generator function: Ray streams what it yields)."""
    global _REMOTE
    if _REMOTE is None:
        import ray
        _REMOTE = ray.remote(run_unit)
    return _REMOTE


class CacheSource:
    """Where a worker reads the request cache: the driver's store, when this machine can read it, else a
    snapshot of it taken when the run started."""

    def __init__(self, path: str, home: str, token: str, snapshot: dict | None):
        self.path, self.home, self.token, self.snapshot = path, home, token, snapshot

    def shares_home(self) -> bool:
        try:
            return (Path(self.home) / MARK).read_text() == self.token
        except OSError:
            return False


class WorkerCache:
    """The store as a worker's CachedBackend sees it: answers read from the cache source, new answers
    sent to the driver (which writes them) and kept here for the rest of the unit."""

    def __init__(self, source: CacheSource, out: queue.Queue):
        self.source, self.out = source, out
        self.new: dict[str, dict] = {}
        self.db = None

    def cache_get(self, keys: list[str]) -> dict[str, dict]:
        if self.db is None and self.source.shares_home():
            from ..store.sqlite import Store
            self.db = Store(self.source.path, readonly=True)  # opened in the thread that reads it
        found = self.db.cache_get(keys) if self.db is not None else {
            k: self.source.snapshot[k] for k in keys if k in (self.source.snapshot or {})}
        found.update({k: self.new[k] for k in keys if k in self.new})
        return found

    def cache_put(self, model_key: str, kind: str, items: list) -> None:
        from dataclasses import asdict
        for key, value in items:
            self.new[key] = asdict(value)
        self.out.put(("answers", (model_key, kind, items)))

    def close(self) -> None:
        if self.db is not None:
            self.db.close()


_BACKENDS: dict = {}  # a worker process keeps the models it loaded for the units it runs next


def run_unit(setup: Setup, unit: Unit, source: CacheSource, artefacts: dict[str, bytes]):
    """On a worker: run one unit, yielding ("answers", ...) as they arrive, then ("done", (result, files))
    or ("error", exception)."""
    out: queue.Queue = queue.Queue()

    def work() -> None:
        cache = WorkerCache(source, out)
        try:
            shared = source.shares_home()
            if not shared:
                _write_files(artefacts, setup.home)
            runner = UnitRunner(setup, cache)
            runner.base = _BACKENDS.setdefault(str(Path(setup.home).resolve()), {})
            result = runner.run(unit)
            path = (result.training or {}).get("path")
            files = _read_folder(Path(path), setup.home) if path and unit.tuned and not shared else {}
            out.put(("done", (result, files)))
        except BaseException as err:  # noqa: BLE001 - every failure goes back to the driver
            out.put(("error", _sendable(err)))
        finally:
            cache.close()

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    while True:
        kind, payload = out.get()
        yield kind, payload
        if kind != "answers":
            thread.join(timeout=5)
            return


def _sendable(err: BaseException) -> BaseException:
    """The error itself when it survives pickling, else a RunError with its message."""
    try:
        pickle.loads(pickle.dumps(err))
        return err
    except Exception:  # noqa: BLE001
        return RunError(f"{type(err).__name__}: {err}")


def _read_folder(folder: Path, home: Path) -> dict[str, bytes]:
    """Every file of a folder under the home, by its path relative to the home."""
    if not folder.is_dir():
        return {}
    return {str(p.relative_to(home)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _write_files(files: dict[str, bytes], home: Path) -> None:
    for relative, data in files.items():
        path = home / relative
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(path.name + f".{time.time_ns()}.part")
            tmp.write_bytes(data)
            tmp.replace(path)
