"""A searched fine-tune: Optuna over the training settings on the dev split, as the prompt search is.

Each trial trains with the settings it drew and is scored on dev after every epoch, with the arm's own
decoding and parser (what test measures); a trial that trails the others' median at the same epoch is
pruned. Trials are kept in a journal file and every training in its own folder, so an interrupted search
resumes without repeating a finished trial, and the trial it interrupted continues from its checkpoint.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
import warnings
from typing import Annotated, Any, Callable

from pydantic import Field, field_validator, model_validator

from ..errors import MissingDependencyError
from ..task import Strict
from ..task.schema import MAX_SEED

CHOICES = ("learning_rate", "r", "epochs", "target_modules")


class TuneSearch(Strict):
    """The training settings to search, and the search's budget."""
    trials: int = Field(8, gt=0, description="trainings tried (pruned ones included)")
    learning_rate: list[Annotated[float, Field(gt=0)]] | None = Field(None, description="train.learning_rate values")
    r: list[Annotated[int, Field(gt=0)]] | None = Field(None, description="LoRA ranks (alpha stays alpha/r × r)")
    epochs: list[Annotated[int, Field(gt=0, le=50)]] | None = Field(None, description="train.epochs values")
    target_modules: list[list[str]] | None = Field(None, description="LoRA target module lists")
    train_size: int | None = Field(None, gt=0, description="trials train on this many train examples "
                                                           "(stratified); the winner then trains on all of them")
    max_minutes: float | None = Field(None, gt=0, description="start no trial after this many minutes")
    seed: int | None = Field(None, ge=0, le=MAX_SEED, description="defaults to the arm's training seed")

    @field_validator(*CHOICES, mode="before")
    @classmethod
    def _some_choices(cls, value: Any) -> Any:
        if isinstance(value, list) and not value:
            raise ValueError("is empty: list the values to try, or leave it out to keep the arm's own")
        return value

    @field_validator("target_modules")
    @classmethod
    def _named_modules(cls, value: list[list[str]] | None) -> list[list[str]] | None:
        if value and any(not modules or any(not m.strip() for m in modules) for modules in value):
            raise ValueError("each choice lists one or more module names")
        return value

    @model_validator(mode="after")
    def _searches_something(self) -> "TuneSearch":
        if not self.space():
            raise ValueError(f"searches nothing: give one or more of {', '.join(CHOICES)}")
        return self

    def space(self) -> dict[str, list[Any]]:
        """Each searched setting's values, in the order given."""
        return {name: getattr(self, name) for name in CHOICES if getattr(self, name)}

    def size(self) -> int:
        return math.prod(len(values) for values in self.space().values())


def _study(name: str, key: str, folder, search: TuneSearch, seed: int):
    try:
        import optuna
    except ImportError:
        raise MissingDependencyError("the fine-tune search needs optuna: pip install optuna") from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend
    folder.mkdir(parents=True, exist_ok=True)
    storage = JournalStorage(JournalFileBackend(str(folder / f"{name}-tune-{key}.journal")))
    if search.trials >= search.size():  # every combination fits the budget: try each once
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            sampler = optuna.samplers.BruteForceSampler(seed=seed)
    else:
        sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=min(8, max(1, search.trials // 2)))
    study = optuna.create_study(study_name=f"{name}-tune-{key}", storage=storage, direction="maximize",
                                sampler=sampler, pruner=optuna.pruners.MedianPruner(n_startup_trials=2),
                                load_if_exists=True)
    _retry_interrupted(study)
    return study


def _retry_interrupted(study) -> None:
    """A trial an interrupted run left unfinished is tried again with the same settings (its training resumes
    from its checkpoint); no finished trial is repeated."""
    from optuna.trial import TrialState
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):  # the process was killed
        study.tell(trial.number, state=TrialState.FAIL)
    settled = [t.params for t in study.get_trials(deepcopy=False, states=(
        TrialState.COMPLETE, TrialState.PRUNED, TrialState.WAITING))]
    for trial in study.get_trials(deepcopy=False, states=(TrialState.FAIL,)):
        if trial.params not in settled:
            study.enqueue_trial(trial.params, skip_if_exists=False)
            settled.append(trial.params)


def search_key(body: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()[:12]


Trial = Callable[[dict[str, Any], Callable[[int, float, int], None], int], dict]


def run_search(name: str, key: str, folder, search: TuneSearch, seed: int, train: Trial,
               progress=None, log: Callable[[str], None] = lambda m: None) -> dict[str, Any]:
    """Run (or resume) the search, and return its record. `train(params, report, number)` trains one trial,
    calling `report(epoch, dev score, tokens trained so far)` after each epoch, and returns its summary."""
    import optuna
    from optuna.trial import TrialState
    study = _study(name, key, folder, search, seed)
    space = search.space()
    finished = (TrialState.COMPLETE, TrialState.PRUNED)
    left = search.trials - len(study.get_trials(deepcopy=False, states=finished))
    deadline = time.monotonic() + 60 * search.max_minutes if search.max_minutes else None
    summaries: dict[int, dict] = {}

    def objective(trial) -> float:
        params = {k: _suggest(trial, k, values) for k, values in space.items()}

        def report(epoch: int, score: float, tokens: int) -> None:
            trial.set_user_attr("tokens", tokens)  # a pruned trial's cost, which no summary records
            trial.report(score, epoch)
            if trial.should_prune():
                raise optuna.TrialPruned()
        summary = train(params, report, trial.number)
        summaries[trial.number] = summary
        trial.set_user_attr("summary", _kept(summary))
        return summary["best_dev"]

    def after(study, trial) -> None:
        if progress:
            progress(1, f"best {study.best_value:.3f}" if _complete(study) else "")
        if deadline and time.monotonic() > deadline:
            study.stop()

    if left > 0:
        log(f"fine-tune search {name!r}: {left} trainings left of {search.trials}, over "
            f"{', '.join(f'{k} {v}' for k, v in space.items())}")
        study.optimize(objective, n_trials=left, callbacks=[after], catch=())
    return _record(study, space, search)


def _suggest(trial, name: str, values: list[Any]) -> Any:
    """Optuna's categorical choices must be plain values: a module list is chosen by its index."""
    if name == "target_modules":
        return values[trial.suggest_categorical(name, list(range(len(values))))]
    return trial.suggest_categorical(name, values)


def _complete(study) -> bool:
    return any(t.state.name == "COMPLETE" for t in study.get_trials(deepcopy=False))


def _kept(summary: dict) -> dict:
    """What the record keeps of a trial's training: its cost and its dev scores, not its loss curve."""
    keys = ("wall_s", "tokens_seen", "epochs_run", "best_epoch", "best_dev", "dev_items", "path")
    return {k: summary.get(k) for k in keys}


def _record(study, space: dict[str, list[Any]], search: TuneSearch) -> dict[str, Any]:
    trials = []
    for t in study.get_trials(deepcopy=False):
        if t.state.name not in ("COMPLETE", "PRUNED"):
            continue
        params = {k: (space[k][v] if k == "target_modules" else v) for k, v in t.params.items()}
        kept = t.user_attrs.get("summary") or {}
        trials.append({"number": t.number, "state": t.state.name.lower(), "value": t.value, "params": params,
                       "seconds": t.duration.total_seconds() if t.duration else None,
                       "epochs_run": kept.get("epochs_run") or len(t.intermediate_values),
                       "tokens": kept.get("tokens_seen") or t.user_attrs.get("tokens"),
                       "dev_items": kept.get("dev_items")})
    if not _complete(study):
        raise RuntimeError("every trial of the fine-tune search was pruned")
    best = study.best_trial
    return {"kind": "tune search", "trials": trials, "best_trial": best.number,
            "best": {k: (space[k][v] if k == "target_modules" else v) for k, v in best.params.items()},
            "dev_score": best.value, "dev_items": max((t["dev_items"] or 0 for t in trials), default=0),
            "wall_s": sum(t["seconds"] or 0.0 for t in trials), "train_size": search.train_size,
            "space": {k: [str(v) for v in values] for k, values in space.items()}}
