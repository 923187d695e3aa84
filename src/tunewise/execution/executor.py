"""The units of a run and the executors that run them.

A unit is one arm (or learning-curve point) evaluated on one seed's splits: it prepares the arm (builds its
prompt, searches, or trains) from that seed's train/dev and predicts that seed's test split. Units are
independent except that a hybrid needs its tuned arm's trained model (same seed): `needs` names the
units that must finish first. Executors run units and hand each result to the driver, which alone writes
the store: `LocalExecutor` one after another in this process (the order and results of a run before
executors existed), `tunewise.ray_executor.RayExecutor` as Ray tasks.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ..arms import ArmContext, build, traits
from ..backends import Backend
from ..measure.consistency import measure as measure_consistency
from ..measure.evaluate import prediction_rows, summarize
from ..store.cache import CachedBackend
from ..task import Task, arm_name
from ..task.data import Splits, normalize


@dataclass
class Unit:
    seed: int
    arm: str                  # the arm's name in the task (a curve point's own name, e.g. lora@64)
    name: str                 # its name in the store: the arm's, or arm@seedN on a re-split
    position: int
    config: Any               # the arm's settings
    curve: dict | None        # {"of": arm, "size"|"k": n} for a curve point, {"of": arm, "seed": n} on a re-split
    needs: list[str] = field(default_factory=list)  # store names of the units to finish first
    tuned: bool = False       # trains a model (the resources a scheduler reserves may differ)


@dataclass
class UnitResult:
    name: str
    position: int
    config: dict
    prompt: Any
    training: dict | None
    curve: dict | None
    model: str
    rows: list[dict]
    summary: dict
    wall_s: float             # predicting and scoring, as stored
    unit_s: float = 0.0       # the whole unit, preparation (training, search) included


def seed_name(arm: str, seed: int, main_seed: int) -> str:
    """An arm's name in the store on a seed's splits: its own on the main split."""
    return arm if seed == main_seed else f"{arm}@seed{seed}"


def plan_units(task: Task, plan: list[tuple[Any, dict | None]]) -> list[Unit]:
    """Every arm and curve point on the main seed, then the task's arms on each further seed (the learning
    curve runs on the main seed only: its points are many trainings, and one curve answers how much data
    fine-tuning needs)."""
    seeds = task.splits.all_seeds()
    main = seeds[0]
    configs = {arm_name(c): c for c, _ in plan}
    units = [_unit(config, curve, main, main, position, configs) for position, (config, curve) in enumerate(plan)]
    for seed in seeds[1:]:
        for config in task.arms:
            name = arm_name(config)
            units.append(_unit(config, {"of": name, "seed": seed}, seed, main, len(units), configs))
    return units


def _unit(config, curve, seed: int, main: int, position: int, configs: dict) -> Unit:
    name = arm_name(config)
    kind = traits(config.type)
    # a plain hybrid asks its tuned arm's model; a matched one trains its own, with the settings its tuned
    # arm's search chose when it searched (as a curve point does): those need that arm first
    plain = kind.hybrid and config.training == "plain"
    settings_from = getattr(config, "settings_from", None)
    if kind.hybrid and not plain and getattr(configs.get(config.tuned), "search", None):
        settings_from = config.tuned
    needs = [seed_name(config.tuned if plain else settings_from, seed, main)] if plain or settings_from else []
    trains = kind.trains_weights and not plain
    return Unit(seed=seed, arm=name, name=seed_name(name, seed, main), position=position, config=config,
                curve=curve, needs=needs, tuned=trains)


@dataclass
class Setup:
    """What every unit of a run needs, the same on the driver and on a worker."""
    task: Task
    labels: list[str]
    splits: dict[int, Splits]        # by seed: the seeds with units to run
    plan: list                       # arm_plan: (config, curve) of the main seed's arms and curve points
    home: Path
    make: Callable[[str], Backend]   # a model name's backend
    scope: str                       # the request cache's scope ("" reuses answers across runs)


class _NoBars:
    def callback(self, description: str, total: int):
        return None


class UnitRunner:
    """Prepares and evaluates units in one process: one backend per model, each arm prepared once per seed.

    `cache_store` answers and keeps requests (the store on the driver; on a Ray worker, a snapshot that
    sends new answers back to the driver).
    """

    def __init__(self, setup: Setup, cache_store, bars=None, log: Callable[[str], None] = lambda m: None):
        self.task, self.labels, self.splits, self.home = setup.task, setup.labels, setup.splits, setup.home
        self.configs = {arm_name(c): c for c, _ in setup.plan}
        self.make, self.scope = setup.make, setup.scope
        self.cache_store, self.bars, self.log = cache_store, bars or _NoBars(), log
        self.base: dict[str, Backend] = {}
        self.cached: dict[str, CachedBackend] = {}
        self.arms: dict[tuple[int, str], Any] = {}
        self.judges: dict[int, Any] = {}
        self.tasks = {seed: self.task.on_seed(seed) if seed != self.task.splits.seed else self.task
                      for seed in self.splits}

    def base_backend(self, model: str) -> Backend:
        if model not in self.base:
            self.base[model] = self.make(model)
        return self.base[model]

    def cache(self, backend: Backend) -> CachedBackend:
        """One store-cached wrapper per model: answers saved as they come, reruns answered from the store."""
        if backend.model_key not in self.cached:
            self.cached[backend.model_key] = CachedBackend(backend, self.cache_store, scope=self.scope)
        return self.cached[backend.model_key]

    def prepared(self, seed: int, name: str):
        """The arm `name` on this seed's splits, prepared once."""
        if (seed, name) not in self.arms:
            task = self.tasks[seed]
            arm = build(self.configs[name], task, self.labels, self.configs)
            ctx = ArmContext(home=self.home, base_backend=self.base_backend, progress=self.bars.callback,
                             prepared=lambda other: self.prepared(seed, other),
                             backend=lambda model: self.cache(self.base_backend(model)), log=self.log,
                             cache=self.cache)
            arm.prepare(self.splits[seed], ctx)
            self.arms[seed, name] = arm
        return self.arms[seed, name]

    def judge(self, seed: int):
        """The task's judge (rubric scores) on this seed, asking through the store's cache."""
        if seed not in self.judges:
            from ..measure.judge import Judge
            task = self.tasks[seed]
            self.judges[seed] = Judge(task.judge, task, self.cache(self.base_backend(task.judge.model)))
        return self.judges[seed]

    def release(self, seed: int) -> None:
        """Forget a seed's prepared arms (their trained models) once its units are done."""
        for key in [k for k in self.arms if k[0] == seed]:
            del self.arms[key]

    def evaluate(self, unit: Unit, arm) -> UnitResult:
        """Predict the unit's test split, score it, and (for the task's arms) measure consistency."""
        task = self.tasks[unit.seed]
        test = self.splits[unit.seed].test
        backend = self.cache(arm.backend or self.base_backend(arm.model))
        start = time.perf_counter()
        paths = getattr(getattr(backend, "inner", backend), "paths", None)
        if paths is not None:
            paths.clear()  # the engine's paths for this arm's test answers, not an earlier arm's
        predictions = arm.predict(test, backend, self.bars.callback(unit.name, len(test)))
        mark_answers_seen(predictions, self.splits[unit.seed], task)
        rows = prediction_rows(predictions, task.metric_names(), task)
        judged = self.judge(unit.seed).score_rows(rows) if task.judge is not None and task.judge.rubric else None
        summary = summarize(rows, task.metric_names(), seed=task.splits.seed, task=task)
        if judged is not None:
            summary["judge"] = judged
        summary["predict_s"] = time.perf_counter() - start
        if paths:  # which of the local engine's paths answered (a plain one says why): the report names it
            summary["engine"] = dict(paths)
        if (unit.curve is None or "seed" in unit.curve) and task.consistency.enabled:
            begin = time.perf_counter()
            summary["consistency"] = measure_consistency(arm, test, backend, task,
                                                         self.bars.callback(f"{unit.name} consistency", 2),
                                                         test_seconds=sum(p.latency_s for p in predictions))
            summary["consistency"]["seconds"] = time.perf_counter() - begin
        return UnitResult(unit.name, unit.position, arm_config(unit.config), arm.prompt_template(), arm.training,
                          unit.curve, arm.model, rows, summary, time.perf_counter() - start)

    def run(self, unit: Unit) -> UnitResult:
        start = time.perf_counter()
        result = self.evaluate(unit, self.prepared(unit.seed, unit.arm))
        result.unit_s = time.perf_counter() - start
        return result


def mark_answers_seen(predictions, splits, task) -> None:
    """Whether each test item's answer is one a train example has: generated answers only (every label is
    seen). The report compares the two groups: what training can teach against facts it never saw."""
    if task.type != "generation" or not task.data.has_target:
        return
    seen = {normalize(e.target_text) for e in splits.train}
    for p in predictions:
        p.extra["answer_in_train"] = normalize(p.example.target_text) in seen


def arm_config(config) -> dict:
    return dict(config.model_dump(mode="json"), name=arm_name(config))


class LocalExecutor:
    """Units one after another in this process, in plan order (a hybrid's tuned arm comes first in any
    order: the runner prepares it when the hybrid asks)."""

    def run(self, units: list[Unit], setup: Setup, store, bars, log, on_start: Callable,
            on_done: Callable) -> None:
        runner = UnitRunner(setup, store, bars, log)
        for i, unit in enumerate(units):
            begin = time.perf_counter()
            arm = runner.prepared(unit.seed, unit.arm)
            on_start(unit, arm)
            result = runner.evaluate(unit, arm)
            result.unit_s = time.perf_counter() - begin
            on_done(result)
            if all(u.seed != unit.seed for u in units[i + 1:]):
                runner.release(unit.seed)


def arm_plan(task: Task) -> list[tuple[object, dict | None]]:
    """The task's arms, then the learning curve's extra points: (config, curve point or None)."""
    plan: list[tuple[object, dict | None]] = [(a, None) for a in task.arms]
    curve = task.learning_curve
    if curve is None:
        return plan
    tuned = _find(task, curve.arm, "train_size")
    if tuned is not None:
        name = arm_name(tuned)
        for size in curve.sizes:
            if size == "all":
                continue  # the arm itself is the curve's last point
            # every planned epoch runs and the last is kept, with no dev evaluation: a point costs its
            # training examples, not a toll of dev answers per epoch (early stopping on tiny sets stops on
            # noise); a searched arm's points train with the settings its search chose
            train = tuned.train.model_copy(update={"train_size": size, "min_passes": curve.min_passes,
                                                   "patience": 0, "eval_max": 0})
            plan.append((tuned.model_copy(update={"name": f"{name}@{size}", "train": train, "search": None,
                                                  "settings_from": name if tuned.search else None}),
                         {"of": name, "size": size}))
    few = _find(task, curve.few_shot_arm, "examples")
    if few is not None:
        name = arm_name(few)
        draws = curve.draws if few.selection == "random" else 1  # the most similar examples are one set
        for k in sorted(set(curve.ks) | {few.k}):
            for draw in range(draws):
                if (k, draw) == (few.k, few.draw):
                    continue  # the arm itself
                point = f"{name}@k{k}" + (f"#{draw}" if draw else "")
                plan.append((few.model_copy(update={"name": point, "k": k, "draw": draw}),
                             {"of": name, "k": k, "draw": draw}))
    return plan


def _find(task: Task, name: str | None, role: str):
    """The named arm, or the first whose learning curve varies `role` (train_size or examples)."""
    for arm in task.arms:
        if traits(arm.type).curve == role and name in (None, arm_name(arm)):
            return arm
    return None
