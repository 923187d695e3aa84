"""One run: load and split the data, prepare and evaluate every arm, store everything, write reports."""

from __future__ import annotations

import hashlib
import json
import secrets
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ..analysis.build import build_report
from ..arms import traits
from ..backends import Backend, is_remote, make_backend
from ..backends.models import progress_bars
from ..errors import RunError, TunewiseError
from ..reports import RunReport, write_reports
from ..store.cache import CachedBackend
from ..store.sqlite import Store
from ..task import Task, arm_name
from ..task.data import Splits, check_leakage, fingerprint, label_set, load_examples, make_splits
from ..task.loading import line_of
from .checks import check_before_running
from .executor import arm_plan

DEFAULT_HOME = Path(".tunewise")
VERBOSITY_WARN = 0.5  # a rank correlation of the judge's scores with answer length above this is reported


@dataclass
class RunResult:
    run_id: str
    store_path: Path
    report_paths: dict[str, Path]
    summaries: dict[str, dict] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    report: RunReport | None = None  # what the reports were written from
    unit_seconds: dict[str, float] = field(default_factory=dict)  # each unit run now, preparation included


class _Bars:
    """Progress bars on stderr (rich), or nothing."""

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self.progress = None

    def __enter__(self):
        if self.enabled:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )
            self.progress = Progress(TextColumn("{task.description:<22}"), BarColumn(), MofNCompleteColumn(),
                                     TimeElapsedColumn(), TextColumn("left"), TimeRemainingColumn(),
                                     TextColumn("{task.fields[info]}"), console=Console(stderr=True))
            self.progress.__enter__()
        return self

    def __exit__(self, *exc):
        if self.progress:
            self.progress.__exit__(*exc)

    def callback(self, description: str, total: int) -> Callable[[int, str], None] | None:
        if not self.progress:
            return None
        bar = self.progress.add_task(description, total=total, info="")

        def advance(n: int, info: str = "") -> None:
            self.progress.update(bar, advance=n, **({"info": info} if info else {}))
        return advance


def config_hash(task: Task) -> str:
    config = task.resolved()
    config.pop("base_dir", None)
    config.pop("executor", None)  # where units run changes no result: a run resumes on either executor
    return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:12]


@dataclass
class RunContext:
    """What the steps of one run share: the task, its checked data, the store, and how to reach models."""
    task: Task
    store: Store
    home: Path
    task_file: str
    progress: bool
    log: Callable[[str], None]
    make: Callable[[str], Backend]  # a model's backend, one per model for the whole run
    examples: list
    labels: list[str]
    splits: Splits
    leak: object                    # the leakage check's findings
    run_id: str = ""
    plan: object = None             # the plan made before the run, stored with it


def run(task: Task, *, home: str | Path = DEFAULT_HOME, strict: bool = False, progress: bool = True,
        backend_factory: Callable[[str], Backend] | None = None, task_file: str = "<task>",
        log: Callable[[str], None] | None = None, plan=None) -> RunResult:
    """Run every arm of the task on its test split; resume an unfinished identical run. `plan` (from
    `make_plan`) is stored with the run, so the report sets each unit's estimate beside its actual time; a task
    with a budget is planned and cut to fit it first (or refused, before any model is asked anything)."""
    log = log or (lambda msg: print(msg, file=sys.stderr))
    home = Path(home)
    examples, labels, splits, leak = _prepare(task, strict, task_file)  # every check; nothing written yet
    make = _once(backend_factory or _factory(task))
    if plan is None and task.budget is not None:
        task, plan = _planned(task, labels, splits, make, None, task_file, log)
        examples, labels, splits, leak = _prepare(task, strict, task_file)
    store = Store(home / "tunewise.db")
    try:
        with progress_bars(progress):
            return _run(RunContext(task, store, home, task_file, progress, log, make, examples, labels, splits,
                                   leak, plan=plan))
    finally:
        store.close()


def make_plan(task: Task, *, backend_factory: Callable[[str], Backend] | None = None, task_file: str = "<task>",
              budget=None, log: Callable[[str], None] | None = None):
    """What the run would send and spend, unit by unit, measured with a short probe; with a budget (given, or
    the task's) the task cut to fit it. Returns (task to run, plan)."""
    log = log or (lambda msg: print(msg, file=sys.stderr))
    examples, labels, splits, leak = _prepare(task, False, task_file)
    make = _once(backend_factory or _factory(task))
    return _planned(task, labels, splits, make, budget, task_file, log)


def _planned(task, labels, splits, make, budget, task_file, log):
    from .plan import plan_task
    with progress_bars(False):
        task, plan = plan_task(task, labels, splits, make, budget, task_file)
    for cut in plan.cuts:
        log(f"budget: cut {cut}")
    return task, plan


def backends_for(task: Task) -> Callable[[str], Backend]:
    """One backend per model, made when first asked for: a plan and the run after it share a loaded model."""
    return _once(_factory(task))


def _factory(task: Task) -> Callable[[str], Backend]:
    return lambda model: make_backend(model, device=task.device, batch_size=task.batch_size,
                                      endpoints=task.endpoints)


def _prepare(task: Task, strict: bool, task_file: str):
    """Load, check and split the data, and check the task against it and this machine: bad input fails
    here, before the store is touched or a model loaded."""
    try:
        return _checked(task, strict, task_file)
    except TunewiseError as err:  # a check against the data names a field: find its line
        if err.file == task_file and err.line is None and err.field:
            err.line = line_of(task_file, err.field)
        raise


def _checked(task: Task, strict: bool, task_file: str):
    examples = load_examples(task, task_file=task_file)
    labels = label_set(task, examples) if task.type == "classification" else []
    splits = make_splits(task, examples, task_file=task_file)
    leak = check_leakage(splits, strict=strict, file=task_file)
    splits.notes += check_before_running(task, splits, task_file, labels)
    return examples, labels, splits, leak


def _run(ctx: RunContext) -> RunResult:
    store, splits, leak, log = ctx.store, ctx.splits, ctx.leak, ctx.log
    notes = [f"warning: {note}" for note in splits.notes]  # stored for the report (leakage has its own part)
    if splits.duplicates_dropped:
        notes.insert(0, f"note: splits.dedupe dropped {splits.duplicates_dropped} row(s) whose input repeated "
                        f"an earlier row's")
    warnings = ([f"warning: {leak.message()}"] if leak.count else []) + notes
    for w in warnings:
        log(w)
    run_id, resumed = _open_run(ctx, notes)
    ctx.run_id = run_id
    if ctx.plan is not None and not (resumed and store.get_run(run_id)["info"].get("plan")):
        store.set_info(run_id, "plan", ctx.plan.to_dict())
    log(f"{'resuming' if resumed else 'run'} {run_id}: train {len(splits.train)}, dev {len(splits.dev)}, "
        f"test {len(splits.test)}")
    try:
        summaries, seconds = _run_arms(ctx)
    except KeyboardInterrupt:
        _mark(store, run_id, "interrupted")
        raise
    except OSError as err:  # a model that would not load or download, a full disk: the input was fine
        _mark(store, run_id, "failed")
        raise RunError(f"run {run_id} failed: {str(err).splitlines()[0] if str(err) else type(err).__name__}; "
                       f"fix that and run the same command: what finished is kept") from err
    except BaseException:
        _mark(store, run_id, "failed")
        raise
    store.finish_run(run_id)
    report = build_report(store, run_id)
    paths = write_reports(report, ctx.home / "runs" / run_id, checked=False)
    return RunResult(run_id, store.path, paths, summaries, warnings, report, seconds)


def _mark(store: Store, run_id: str, status: str) -> None:
    """Record how a run ended; a store that cannot take it (the disk that failed the run) must not hide why."""
    import sqlite3
    try:
        store.set_status(run_id, status)
    except sqlite3.Error:
        pass


def _run_arms(ctx: RunContext) -> tuple[dict[str, dict], dict[str, float]]:
    from .executor import Setup, arm_config, plan_units
    task, store, run_id, log, make = ctx.task, ctx.store, ctx.run_id, ctx.log, ctx.make
    plan = arm_plan(task)
    units = plan_units(task, plan)
    summaries = {u.name: _stored_summary(store, run_id, u.name) for u in units
                 if store.arm_status(run_id, u.name) == "done"}
    pending = [u for u in units if u.name not in summaries]
    seconds: dict[str, float] = {}
    seeds = {u.seed for u in pending}
    by_seed = {seed: ctx.splits if seed == task.splits.seed else make_splits(task.on_seed(seed), ctx.examples)
               for seed in seeds}
    setup = Setup(task, ctx.labels, by_seed, plan, ctx.home, make, run_id if task.cache == "measure" else "")

    def on_start(unit, arm) -> None:
        store.start_arm(run_id, unit.name, unit.position, arm_config(unit.config), arm.prompt_template(),
                        arm.training, unit.curve)

    noted: set[str] = set()  # the models whose plain rendering the run's notes name

    def on_done(result) -> None:
        result.summary["unit_s"] = result.unit_s  # the whole unit, preparation included: the plan's actual
        store.start_arm(run_id, result.name, result.position, result.config, result.prompt, result.training,
                        result.curve)  # a no-op locally; a Ray unit's first write
        store.save_predictions(run_id, result.name, result.rows)
        store.finish_arm(run_id, result.name, result.summary, result.wall_s)
        _warn_long_prompts(store, run_id, result.model, result.name, result.rows, task, log)
        _note_rendering(store, run_id, result, task, log, noted)
        _note_engine(store, run_id, result, log, noted)
        _warn_verbose_judge(store, run_id, result.name, result.summary, log)
        summaries[result.name] = result.summary
        seconds[result.name] = result.unit_s
        log(_result_line(result, task))

    _warn_self_preference(task, store, run_id, log)
    with _Bars(ctx.progress) as bars:
        _executor(task, log).run(pending, setup, store, bars, log, on_start, on_done)
    _judge_across_arms(ctx, setup.scope)
    return {u.name: summaries[u.name] for u in units if u.name in summaries}, seconds


def _warn_self_preference(task: Task, store: Store, run_id: str, log) -> None:
    """A judge that is also a judged arm's model tends to prefer that model's answers: say so."""
    if task.judge is None:
        return
    judged = [arm_name(a) for a in task.arms if (a.model or task.model) == task.judge.model]
    if judged:
        text = (f"warning: the judge {task.judge.model!r} is also the model of arm(s) {', '.join(judged)}: a judge "
                f"tends to prefer its own model's answers (self-preference); judge with another model")
        log(text)
        store.add_warnings(run_id, [text])


def _warn_verbose_judge(store: Store, run_id: str, name: str, summary: dict, log) -> None:
    rho = (summary.get("judge") or {}).get("length_correlation")
    if rho is not None and rho > VERBOSITY_WARN:
        text = (f"warning: arm {name!r}: the judge's rubric scores rise with the answers' length (rank correlation "
                f"{rho:.2f}); check that the rubric rewards content, not length (verbosity bias)")
        log(text)
        store.add_warnings(run_id, [text])


def _judge_across_arms(ctx: RunContext, scope: str) -> None:
    """Pairwise verdicts on the task's pairs, and the judge's agreement with human scores: stored in the run's
    info, the raw answers with them. The judge asks through the store's cache, so a rerun asks it nothing."""
    task, store, run_id, log = ctx.task, ctx.store, ctx.run_id, ctx.log
    if task.judge is None or not (task.judge.pairs or task.judge.human_score):
        return
    from ..measure.judge import Judge
    judge = Judge(task.judge, task, CachedBackend(ctx.make(task.judge.model), store, scope=scope))
    record: dict = {"model": task.judge.model}
    for a, b in task.judge.pairs:
        record.setdefault("pairs", []).append(judge.compare(a, b, store.predictions(run_id, a),
                                                            store.predictions(run_id, b), seed=task.splits.seed))
    if task.judge.human_score:
        agreement = judge.agreement(ctx.examples)
        record["agreement"] = agreement
        if not agreement["trusted"]:
            rho = agreement["spearman"]
            shown = "cannot be measured" if rho is None else f"is {rho:.2f}"
            text = (f"warning: the judge's rank correlation with the {agreement['n']} human scores {shown} "
                    f"(below {agreement['min_agreement']:g}): do not let its rubric scores decide")
            log(text)
            store.add_warnings(run_id, [text])
    store.set_info(run_id, "judge", record)


def _once(make: Callable[[str], Backend]) -> Callable[[str], Backend]:
    """One backend per model for the run: the units here and the judge's pairwise pass share a loaded model."""
    made: dict[str, Backend] = {}

    def once(model: str) -> Backend:
        if model not in made:
            made[model] = make(model)
        return made[model]
    return once


def _executor(task: Task, log):
    """The task's executor; without Ray installed, the local one (with a note)."""
    from .executor import LocalExecutor
    if task.executor.type == "local":
        return LocalExecutor()
    from importlib.util import find_spec
    if find_spec("ray") is None:
        log("note: executor ray needs Ray (pip install 'tunewise[ray]'); running the units here, one after another")
        return LocalExecutor()
    from .ray_executor import RayExecutor
    return RayExecutor(task.executor)


NEAR_ZERO = 0.05  # a prompt arm scoring below this on a base model most likely was not followed


def _note_rendering(store: Store, run_id: str, result, task: Task, log, noted: set[str]) -> None:
    """A model without a chat template (a base model) is asked in a plain rendering: the run's notes name it
    once, and a prompt arm that scores near zero on it is told why it may have."""
    if is_remote(result.model, task.endpoints):
        return
    from ..backends.models import rendering
    plain, how = rendering(result.model)
    if not plain:
        return
    notes = []
    if result.model not in noted:
        noted.add(result.model)
        notes.append(f"note: model {result.model!r} has no chat template (a base model): prompts are rendered as "
                     f"{how}, in training, evaluation and export alike")
    metric = result.summary["metrics"].get(task.decision_metric()[0], {})
    if traits(result.config["type"]).prompting and (metric.get("value") or 0) < NEAR_ZERO:
        notes.append(f"warning: arm {result.name!r} scored {metric.get('value') or 0:.3f} on {result.model!r}, a "
                     f"base model with no chat template: it was not trained to follow instructions; show it worked "
                     f"examples (few_shot) or fine-tune it")
    for text in notes:
        log(text)
    store.add_warnings(run_id, notes)


def _result_line(result, task: Task) -> str:
    """A unit's result as it finishes, so the first arms' numbers show long before the report."""
    name = task.decision_metric()[0]
    metric = result.summary["metrics"].get(name) or {}
    if metric.get("value") is None:
        return f"{result.name}: done in {result.unit_s:.0f} s"
    interval = f" (95% CI {metric['low']:.3f}–{metric['high']:.3f})" if metric.get("low") is not None else ""
    return f"{result.name}: {name} {metric['value']:.3f}{interval} in {result.unit_s:.0f} s"


def _note_engine(store: Store, run_id: str, result, log, noted: set[str]) -> None:
    """A fast path the engine could not take for a model (its architecture would make it inexact) is named
    once, with the reason: the answers came from the plain path, which is exact and slower."""
    for kind, path in (result.summary.get("engine") or {}).items():
        if ": " in path and f"{result.model}|{path}" not in noted:
            noted.add(f"{result.model}|{path}")
            text = f"note: model {result.model!r}: {'scoring' if kind == 'score' else 'decoding'} ran {path}"
            log(text)
            store.add_warnings(run_id, [text])


def _warn_long_prompts(store: Store, run_id: str, model: str, name: str, rows: list[dict], task: Task, log) -> None:
    """A prompt past the model's context is answered unreliably (positions it never saw, or cut): say so."""
    if is_remote(model, task.endpoints):
        return
    from ..backends.models import context_length
    limit = context_length(model)
    if limit is None:
        return
    long = sum(r["input_tokens"] + task.generation.max_tokens > limit for r in rows)
    if long:
        text = (f"warning: arm {name!r}: {long} of {len(rows)} prompts and their answers run past the model's "
                f"context of {limit} tokens; their answers are unreliable (shorten the inputs or the examples)")
        log(text)
        store.add_warnings(run_id, [text])


def _open_run(ctx: RunContext, warnings: list[str]) -> tuple[str, bool]:
    """The unfinished run of the same task and data to resume, or a new one."""
    store, task, splits, leak = ctx.store, ctx.task, ctx.splits, ctx.leak
    chash, fprint = config_hash(task), fingerprint(ctx.examples)
    existing = store.unfinished_run(chash, fprint)
    if existing:
        store.set_status(existing, "running")
        return existing, True
    run_id = f"{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"
    info = {"task_file": ctx.task_file, "splits": splits.sizes(), "labels": ctx.labels,
            "leakage": {"count": leak.count, "examples": leak.examples, "ids": leak.ids,
                        "test_items": leak.test_items},
            "duplicates_dropped": splits.duplicates_dropped, "warnings": warnings, "versions": _versions()}
    store.create_run(run_id, task.name, task.resolved(), chash, fprint, info)
    return run_id, False


def _stored_summary(store: Store, run_id: str, name: str) -> dict:
    return next(a["summary"] for a in store.arms(run_id) if a["name"] == name)


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version
    out = {"python": sys.version.split()[0]}
    for package in ("tunewise", "torch", "transformers"):
        try:
            out[package] = version(package)
        except PackageNotFoundError:
            pass
    return out
