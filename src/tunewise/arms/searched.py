"""The searched arm: prompt engineering as a budgeted search on the dev split, as fine-tuning gets an optimizer.

Optuna's TPE sampler (as DSPy's MIPROv2 uses) picks the instruction, the levers, the label words, the
number, selection and set of worked examples, the decoding and calibration, and on a task with `knowledge:`
how many passages are retrieved per input and where they sit; each trial is scored on
growing slices of the dev items and pruned early when it trails (median rule). With a proposer model,
GEPA's reflective rewriting adds instructions to choose from. Trials are kept in a journal file, and
every model answer in the store, so an interrupted search resumes without repeating a finished trial
and sends nothing twice. The test split is never read: only train (examples) and dev (scores).
"""

from __future__ import annotations

import hashlib
import json
import random
import time
from contextlib import contextmanager
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_serializer

from ..backends.base import Backend, GenParams, GenRequest
from ..errors import MissingDependencyError, RunError
from ..measure import get_metric
from ..measure.consistency import GENERIC_PARAPHRASES
from ..registry import register_arm as register
from ..task import ArmSettings, FieldError, Levers, Strict, Task
from ..task.data import Example, Splits, _take
from ..task.schema import MAX_SEED, filled_name
from ..traits import Traits
from .base import Arm, ArmContext
from .prompt import FewShotConfig, PromptArm, StructuredConfig
from .retrieval import Retrieval, RetrievalConfig

PASSAGES = [0, 1, 3]  # the passages searched on a task with knowledge, by default


class SearchSettings(Strict):
    """The search space and its budget."""
    trials: int = Field(30, gt=0, description="prompts tried (pruned ones included)")
    dev_items: int = Field(60, gt=0, description="dev items each trial is scored on (at most)")
    max_minutes: float | None = Field(None, gt=0, description="start no trial after this many minutes")
    instructions: list[str] = Field(default_factory=list, description="more instructions to try")
    paraphrases: bool = Field(True, description="also try generic rewordings of the instruction")
    levers: bool = Field(True, description="switch context, output format and constraints on and off")
    label_words: dict[str, list[str]] = Field(default_factory=dict,
                                              description="other words the model may use for a label (verbalizers)")
    ks: list[Annotated[int, Field(ge=0, le=64)]] = Field(default_factory=lambda: [0, 2, 4, 8], min_length=1,
                                                         description="worked examples in the prompt")
    selections: list[Literal["random", "similar"]] = Field(default_factory=lambda: ["random", "similar"])
    example_sets: int = Field(3, gt=0, description="seeded random example sets to choose from")
    layouts: list[Literal["turns", "list"]] = Field(default_factory=lambda: ["turns"],
                                                    description="how the examples are shown (few_shot's layout)")
    decodings: list[Literal["generate", "constrained"]] | None = Field(
        None, description="default: both for classification, generate otherwise")
    calibrate: bool = Field(True, description="try contextual calibration with scored labels")
    passages: list[Annotated[int, Field(ge=0, le=20)]] | None = Field(
        None, description="passages retrieved per input from the task's knowledge (0: none); default: [0, 1, 3] "
                          "on a task with knowledge, else none")
    passage_positions: list[Literal["system", "user"]] = Field(
        default_factory=lambda: ["system", "user"], description="where the passages go (the retrieval arm's position)")
    proposer: str | None = Field(None, description="a model or endpoint that rewrites the instruction (GEPA)")
    proposer_calls: int = Field(60, gt=0, description="dev evaluations GEPA may spend")
    seed: int | None = Field(None, ge=0, le=MAX_SEED, description="defaults to the split seed")

    _proposer = field_validator("proposer")(filled_name)

    @field_validator("ks", "selections", "layouts", "decodings", "passages", "passage_positions", mode="before")
    @classmethod
    def _some_choices(cls, value: Any) -> Any:
        if isinstance(value, list) and not value:  # an empty choice would fail the first trial that makes it
            raise ValueError("is empty: the search needs at least one choice here; leave it out for the default")
        return value

    @field_validator("instructions")
    @classmethod
    def _no_blank_instruction(cls, value: list[str]) -> list[str]:
        if any(not i.strip() for i in value):
            raise ValueError("an instruction is empty; remove it or write it out")
        return value

    @field_validator("label_words")
    @classmethod
    def _words(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        for label, words in value.items():
            if not words:
                raise FieldError(f"lists no word for {label!r}; give one or more, or leave the label out", label)
            if any(not w.strip() for w in words):
                raise FieldError(f"a word for {label!r} is empty", label)
        return value

    @model_serializer(mode="wrap")
    def _dump(self, handler):
        # the retrieval settings left out at their defaults: configurations (and their hashes) made before
        # they existed stay the same
        data = handler(self)
        if data.get("passages", 0) is None:
            data.pop("passages")
        if data.get("passage_positions") == ["system", "user"]:
            data.pop("passage_positions")
        return data

    def passage_choices(self, task: Task) -> list[int]:
        """The passages a trial may retrieve: [0] alone on a task without knowledge."""
        if task.knowledge is None:
            return [0]
        return sorted(set(PASSAGES if self.passages is None else self.passages))


class SearchedConfig(ArmSettings):
    type: Literal["searched"]
    search: SearchSettings = Field(default_factory=SearchSettings)

    def check_data(self, task: Task, labels: list[str], sizes: dict[str, int]) -> tuple[str, str] | None:
        s = self.search
        if task.type != "classification":
            if s.label_words:
                return f"label_words are for classification tasks, not {task.type}", "search.label_words"
            if "constrained" in (s.decodings or []):
                return "constrained decoding scores labels: it needs a classification task", "search.decodings"
        big = [k for k in s.ks if k > sizes["train"]]
        if big:
            return (f"ks {', '.join(map(str, big))} asks for more worked examples than the {sizes['train']} of the "
                    f"train split; use ks up to {sizes['train']}", "search.ks")
        if s.proposer and not sizes["train"]:
            return "the proposer reflects on train examples, and the train split is empty", "search.proposer"
        return _passages_problem(s, task) or _label_words_problem(s.label_words, labels)

    def unused(self, task: Task, sizes: dict[str, int]) -> list[tuple[str, str]]:
        searched = {"decoding": "search.decodings", "calibrate": "search.calibrate"}
        chosen = [(name, f"the search chooses it ({searched[name]}), {NO_EFFECT}")
                  for name in self.changed(*searched)]
        return chosen + _unused_search(self.search, task, sizes)


NO_EFFECT = "so this setting has no effect"


def _unused_search(s: SearchSettings, task: Task, sizes: dict[str, int]) -> list[tuple[str, str]]:
    """The search settings given that no trial will read."""
    shows = any(s.ks)
    decodings = s.decodings or (["constrained", "generate"] if task.type == "classification" else ["generate"])
    found = [
        ("selections", not shows, f"no trial shows examples (ks has only 0), {NO_EFFECT}"),
        ("layouts", not shows, f"no trial shows examples (ks has only 0), {NO_EFFECT}"),
        ("example_sets", not shows or "random" not in s.selections, f"no trial draws random examples, {NO_EFFECT}"),
        ("calibrate", "constrained" not in decodings, f"no trial scores labels (decoding: constrained), {NO_EFFECT}"),
        ("proposer_calls", not s.proposer, f"there is no proposer, {NO_EFFECT}"),
        ("passages", task.knowledge is None, f"the task has no knowledge source to retrieve from, {NO_EFFECT}"),
        ("passage_positions", not any(s.passage_choices(task)),
         f"no trial retrieves passages (no knowledge source, or passages has only 0), {NO_EFFECT}"),
        ("dev_items", s.dev_items > sizes["dev"], f"the dev split has {sizes['dev']} items: trials are scored on "
                                                  f"those {sizes['dev']}"),
    ]
    changed = s.changed(*(name for name, _, _ in found))
    return [(f"search.{name}", why) for name, no_effect, why in found if name in changed and no_effect]


def _passages_problem(s: SearchSettings, task: Task) -> tuple[str, str] | None:
    """Passages asked for on a task without knowledge, or more than its knowledge source holds."""
    if not any(s.passages or []):
        return None
    if task.knowledge is None:
        return ("passages are retrieved from the task's knowledge source, and the task has none: add "
                "knowledge: {path: ..., field: text}, or leave search.passages out", "search.passages")
    path = task.path_of(task.knowledge.path)
    if not path.exists():
        return f"the search retrieves passages, and the knowledge source {path} does not exist", "search.passages"
    from .knowledge import read_passages
    held = len(read_passages(task))
    big = [n for n in s.passages if n > held]
    if big:
        return (f"passages {', '.join(map(str, big))} asks for more than the {held} passages of the knowledge "
                f"source; use passages up to {held}", "search.passages")
    return None


def _label_words_problem(words: dict[str, list[str]], labels: list[str]) -> tuple[str, str] | None:
    """A label_words key that is no label (a typo would be dropped), or a word standing for two labels."""
    for label in words:
        if label not in labels:
            return f"{label!r} is not a label of the task ({', '.join(labels)}); check the spelling", \
                f"search.label_words.{label}"
    for i in range(max((len(w) for w in words.values()), default=0)):
        said: dict[str, str] = {}
        for label in labels:
            word = (words.get(label) or [])[i] if i < len(words.get(label) or []) else label
            other = said.setdefault(" ".join(word.casefold().split()), label)
            if other != label:
                return f"{word!r} would stand for both {other!r} and {label!r}: an answer could not tell them " \
                       f"apart", f"search.label_words.{label}"
    return None


@register
class Searched(Arm):
    """The best prompt a budgeted search found on dev; evaluated on test once, like every arm."""
    Config = SearchedConfig
    traits = Traits(shows_answers=True, searches=True, selects_on_dev=True)
    methods = {"searched": "prompt: searched"}
    backend = None

    def __init__(self, config: SearchedConfig, task: Task, labels: list[str], configs: dict | None = None, **kw):
        self.config, self.task, self.labels = config, task, labels
        self.name = config.name or config.type
        self.model = config.model or task.model
        self.settings = config.search
        self.seed = self.settings.seed if self.settings.seed is not None else task.splits.seed
        self.winner: PromptArm | None = None
        self.best_params: dict[str, Any] | None = None
        self.searched_on: str | None = None  # the model key searched on, when not the arm's own model
        self.training: dict | None = None

    # -- the search -----------------------------------------------------------------
    def prepare(self, splits: Splits, ctx: ArmContext, backend: Backend | None = None,
                also_try: list[dict[str, Any]] = ()) -> None:
        """Search on the arm's model, or on `backend` (a tuned model: a hybrid searching again), trying
        the user's prompt first and then `also_try` (another search's best parameters)."""
        if not splits.dev:
            raise ValueError(f"arm {self.name!r}: a prompt search needs a dev split (splits.dev > 0)")
        if backend is not None:
            self.searched_on = backend.model_key
        backend = backend or ctx.backend(self.model)
        dev = self._dev_items(splits)
        space = SearchSpace(self, self._instructions(splits, dev, ctx))
        study = self._study(ctx, dev, space, also_try)
        done = [t for t in study.trials if t.state.name in ("COMPLETE", "PRUNED")]
        left = self.settings.trials - len(done)
        if left > 0:
            ctx.log(self._estimate(splits, dev, backend, left, space, resumed=len(done)))
            self._optimize(study, splits, dev, backend, space, left, ctx)
        best = study.best_trial
        self.best_params = best.params
        self.winner = space.arm(best.params)
        self.winner.prepare(splits)
        self.training = self._record(study, space, dev)

    def _dev_items(self, splits: Splits) -> list[Example]:
        """A seeded slice of dev, labels in proportion, so every trial is scored on the same items."""
        rng = random.Random(self.seed)
        key = (lambda e: str(e.target)) if self.task.type == "classification" else None
        pool = rng.sample(splits.dev, len(splits.dev))
        return _take(pool, min(self.settings.dev_items, len(pool)), key, rng)

    def _instructions(self, splits: Splits, dev: list[Example], ctx: ArmContext) -> list[str]:
        own = self.task.instruction.strip()
        found = [own] + [i.strip() for i in self.settings.instructions]
        if self.settings.paraphrases:
            found += [p.format(instruction=own) for p in GENERIC_PARAPHRASES]
        if self.settings.proposer:
            found += propose_instructions(self, splits, dev, ctx)
        return list(dict.fromkeys(found))

    def _study(self, ctx: ArmContext, dev: list[Example], space: "SearchSpace", also_try=()):
        try:
            import optuna
        except ImportError:
            raise MissingDependencyError("the prompt search needs optuna: pip install optuna") from None
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        from optuna.storages import JournalStorage
        from optuna.storages.journal import JournalFileBackend
        folder = ctx.home / "search"
        folder.mkdir(parents=True, exist_ok=True)
        key = self._key(dev, space)
        storage = JournalStorage(JournalFileBackend(str(folder / f"{self.name}-{key}.journal")))
        study = optuna.create_study(study_name=f"{self.name}-{key}", storage=storage, direction="maximize",
                                    sampler=optuna.samplers.TPESampler(seed=self.seed, n_startup_trials=8),
                                    pruner=optuna.pruners.MedianPruner(n_startup_trials=4), load_if_exists=True)
        if not study.trials:
            for params in [space.baseline(), *also_try]:  # the user's own prompt is always tried first
                study.enqueue_trial(params, skip_if_exists=True)
        return study

    def _key(self, dev: list[Example], space: "SearchSpace") -> str:
        search = self.settings.model_dump(mode="json", exclude={"passages", "passage_positions"})
        body = {"model": self.model, "search": search, "dev": [e.id for e in dev],
                "instructions": space.instructions, "task": self.task.instruction, "labels": self.labels,
                "metric": self.task.decision_metric()[0]}
        if space.retrieves:  # only then: a search without retrieval keeps the key it had before retrieval existed
            body["retrieval"] = space.retrieval_key()
        if self.searched_on:  # a search on a tuned model is another search
            body["on"] = self.searched_on
        return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:12]

    def _optimize(self, study, splits, dev, backend, space, left, ctx) -> None:
        import optuna
        metric = get_metric(self.task.decision_metric()[0], self.task)
        rungs = sorted({max(1, len(dev) // 4), max(1, len(dev) // 2), len(dev)})
        advance = ctx.progress(f"{self.name} search", left)
        deadline = time.monotonic() + 60 * self.settings.max_minutes if self.settings.max_minutes else None

        def objective(trial) -> float:
            arm = space.arm(space.suggest(trial))
            arm.prepare(splits)
            value = 0.0
            for rung in rungs:
                preds = arm.predict(dev[:rung], backend)
                value = metric.aggregate([p.parsed for p in preds], [e.target for e in dev[:rung]])
                trial.set_user_attr("items", rung)  # what the trial cost, pruned or not: the report's effort row
                trial.set_user_attr("tokens", sum(p.input_tokens + p.output_tokens for p in preds))
                trial.report(value, rung)
                if rung < len(dev) and trial.should_prune():
                    raise optuna.TrialPruned()
            return value

        def after(study, trial) -> None:
            if advance:
                best = study.best_value if any(t.state.name == "COMPLETE" for t in study.trials) else float("nan")
                advance(1, f"best {best:.3f}")
            if deadline and time.monotonic() > deadline:
                study.stop()

        study.optimize(objective, n_trials=left, callbacks=[after], catch=())

    def _estimate(self, splits, dev, backend: Backend, left: int, space: "SearchSpace", resumed: int) -> str:
        """The search's cost before it is spent: calls, tokens, minutes from a measured rate, and money."""
        probe = space.arm(space.baseline())
        probe.prepare(splits)
        sample = dev[: min(24, len(dev))]  # batches amortize: a few items would understate the rate
        start = time.perf_counter()
        preds = probe.predict(sample, backend)
        rate = len(sample) / max(time.perf_counter() - start, 1e-6)
        longest = max(self.settings.ks, default=0)
        growth = 1 + sum(self.settings.ks) / max(1, len(self.settings.ks))  # examples lengthen prompts
        tokens = sum(p.input_tokens for p in preds) / len(preds) * growth
        calls = left * len(dev)
        minutes = calls * growth / rate / 60
        price = (self.task.prices.models.get(self.model) or None)
        money = f", about {calls * tokens * price.input_per_million / 1e6:.3g} {self.task.prices.currency}" \
            if price else ""
        again = f" ({resumed} done before, resumed)" if resumed else ""
        return (f"search {self.name!r}: {left} trials{again} × up to {len(dev)} dev items = up to {calls:,} calls, "
                f"~{calls * tokens:,.0f} input tokens (up to {longest} examples a prompt); at most about {minutes:.1f} "
                f"min at the measured {rate:.1f} items/s{money}, less as pruning stops weak trials early.")

    def _record(self, study, space: "SearchSpace", dev: list[Example]) -> dict[str, Any]:
        trials = [{"number": t.number, "state": t.state.name.lower(), "value": t.value,
                   "params": space.describe(t.params), "seconds": t.duration.total_seconds() if t.duration else None,
                   "items": t.user_attrs.get("items"), "tokens": t.user_attrs.get("tokens")}
                  for t in study.trials if t.state.name in ("COMPLETE", "PRUNED")]
        best = study.best_trial
        return {"kind": "search", "wall_s": sum(t["seconds"] or 0.0 for t in trials), "dev_items": len(dev),
                "dev_score": best.value, "best_trial": best.number, "best": space.describe(best.params),
                "trials": trials, "metric": self.task.decision_metric()[0]}

    def restore(self, record: dict[str, Any]) -> PromptArm:
        """The winner of a finished search rebuilt from its record (what the store keeps), without searching:
        `export` ships it. Call the winner's `prepare` with the same splits to pick its examples."""
        best = dict(record["best"])
        space = SearchSpace(self, [best["instruction"]])
        best["instruction"] = 0
        if "words" in best:  # described as the word map, or "the labels" for none
            words = None if best["words"] == "the labels" else best["words"]
            best["words"] = space.word_sets.index(words)
        self.winner = space.arm(best)
        self.training = record
        return self.winner

    # -- answering: the winner's prompt ------------------------------------------------
    def _arm(self) -> PromptArm:
        if self.winner is None:
            raise RuntimeError(f"arm {self.name!r} answers only after its search (prepare)")
        return self.winner

    def messages(self, example: Example):
        return self._arm().messages(example)

    def prompt_template(self):
        return self._arm().prompt_template()

    def predict(self, examples, backend, progress=None):
        return self._arm().predict(examples, backend, progress)

    @property
    def decoding(self) -> str:
        return self._arm().decoding

    @property
    def asks_instruction(self) -> bool:
        return self._arm().asks_instruction

    def variant(self, *, instruction=None, sampling=None):
        return self._arm().variant(instruction=instruction, sampling=sampling)

    @classmethod
    def data_required(cls, config: dict[str, Any], training: dict | None) -> str:
        best = (training or {}).get("best") or {}
        k = best.get("examples", 0)
        searched = (training or {}).get("dev_items")
        passages = best.get("passages")
        return (f"{k} examples in the prompt" if k else "none in the prompt") + \
            (f"; {passages} passages a request from the knowledge source" if passages else "") + \
            (f"; {searched} dev items to search" if searched else "")


class SearchSpace:
    """The choices a trial makes, turned into a prompt arm."""

    def __init__(self, arm: Searched, instructions: list[str]):
        self.owner, self.instructions = arm, instructions
        self.task, self.labels, self.settings = arm.task, arm.labels, arm.settings
        classification = self.task.type == "classification"
        self.decodings = self.settings.decodings or (["constrained", "generate"] if classification else ["generate"])
        self.word_sets = self._word_sets() if classification else [None]
        self.positions = list(self.settings.passage_positions)
        self.retrieves = any(self.settings.passage_choices(self.task))
        self._source: list[str] | None = None  # read when first needed: restoring a winner without passages never does
        self._index = None

    def source(self) -> list[str]:
        if self._source is None:
            from .knowledge import load_passages
            self._source = load_passages(self.task)
        return self._source

    def passages(self) -> list[int]:
        """The passages a trial may retrieve; a default above what the source holds retrieves all of it (a
        choice the user gives is checked before the run)."""
        chosen = self.settings.passage_choices(self.task)
        return sorted({min(n, len(self.source())) for n in chosen}) if self.retrieves else chosen

    def index(self):
        """The knowledge source's BM25 index, built once for every trial."""
        if self._index is None:
            from .knowledge import BM25Index
            self._index = BM25Index(self.source())
        return self._index

    def retrieval_key(self) -> dict[str, Any]:
        source = hashlib.sha256(json.dumps(self.source()).encode()).hexdigest()[:12]
        return {"passages": self.passages(), "positions": self.positions, "source": source}

    def _word_sets(self) -> list[dict[str, str] | None]:
        """The labels themselves, then the n-th alternative word of every label that lists one."""
        alternatives = self.settings.label_words
        depth = max((len(words) for words in alternatives.values()), default=0)
        sets: list[dict[str, str] | None] = [None]
        for i in range(depth):
            sets.append({label: (alternatives.get(label) or [])[i] if i < len(alternatives.get(label) or [])
                         else label for label in self.labels})
        return sets

    def baseline(self) -> dict[str, Any]:
        """The hand-written prompt: the user's instruction, every lever on, no examples."""
        # no examples, unless ks leaves 0 out: then the fewest it allows (a value outside ks fails the trial)
        k = 0 if 0 in self.settings.ks else min(self.settings.ks)
        params: dict[str, Any] = {"instruction": 0, "examples": k, "decoding": self.decodings[0]}
        if k:
            params["selection"] = self.settings.selections[0]
            if params["selection"] == "random":
                params["example_set"] = 0
            if len(self.settings.layouts) > 1:
                params["layout"] = self.settings.layouts[0]
        if self.settings.levers:
            params.update(context=True, output_format=True, constraints=True)
        if len(self.word_sets) > 1:
            params["words"] = 0
        if self.decodings[0] == "constrained" and self.settings.calibrate:
            params["calibrate"] = False
        if self.retrieves:
            params["passages"] = min(self.passages())
            if params["passages"]:
                params["position"] = self.positions[0]
        return params

    def suggest(self, trial) -> dict[str, Any]:
        s = self.settings
        params = {"instruction": trial.suggest_categorical("instruction", list(range(len(self.instructions))))}
        if s.levers:
            for lever in ("context", "output_format", "constraints"):
                params[lever] = trial.suggest_categorical(lever, [True, False])
        if len(self.word_sets) > 1:
            params["words"] = trial.suggest_categorical("words", list(range(len(self.word_sets))))
        params["examples"] = trial.suggest_categorical("examples", sorted(set(s.ks)))
        if params["examples"]:
            params["selection"] = trial.suggest_categorical("selection", list(s.selections))
            if params["selection"] == "random":
                params["example_set"] = trial.suggest_int("example_set", 0, s.example_sets - 1)
            if len(s.layouts) > 1:
                params["layout"] = trial.suggest_categorical("layout", list(s.layouts))
        params["decoding"] = trial.suggest_categorical("decoding", self.decodings)
        if params["decoding"] == "constrained" and s.calibrate:
            params["calibrate"] = trial.suggest_categorical("calibrate", [False, True])
        if self.retrieves:  # suggested last, so a search without retrieval samples as it did before
            params["passages"] = trial.suggest_categorical("passages", self.passages())
            if params["passages"]:
                params["position"] = trial.suggest_categorical("position", self.positions)
        return params

    def arm(self, params: dict[str, Any]) -> PromptArm:
        levers = Levers(**{k: params.get(k, True) for k in ("context", "output_format", "constraints")})
        common = {"name": self.owner.name, "model": self.owner.config.model, "decoding": params["decoding"],
                  "calibrate": params.get("calibrate", False)}
        k, passages = params.get("examples", 0), params.get("passages", 0)
        shown = {"k": k, "selection": params.get("selection", "random"), "structured": True, "levers": levers,
                 "layout": params.get("layout", self.settings.layouts[0])}
        if passages:  # the retrieval arm, with the examples (if any) shown as few_shot shows them
            config = RetrievalConfig(type="retrieval", passages=passages, position=params.get("position", "system"),
                                     **shown, **common)
        elif k:
            config = FewShotConfig(type="few_shot", **shown, **common)
        else:
            config = StructuredConfig(type="structured", levers=levers, **common)
        task = self.task.model_copy(update={"instruction": self.instructions[params.get("instruction", 0)]})
        words = self.word_sets[params.get("words", 0)]
        made = (Retrieval if passages else PromptArm)(config, task, self.labels, words=words,
                                                      shot_seed=self.owner.seed * 1000 + params.get("example_set", 0))
        if passages:
            made.index = self.index()
        return made

    def describe(self, params: dict[str, Any]) -> dict[str, Any]:
        """The choices in words, for the report (the instruction's text, not its index)."""
        out = dict(params)
        out["instruction"] = self.instructions[params.get("instruction", 0)]
        if "words" in params:
            out["words"] = self.word_sets[params["words"]] or "the labels"
        return out


# -- GEPA: instructions rewritten by reflecting on dev mistakes ------------------------------
def propose_instructions(arm: Searched, splits: Splits, dev: list[Example], ctx: ArmContext) -> list[str]:
    """Instructions GEPA evolves from the user's, reflecting (with the proposer model) on the answers it
    gets wrong; a small model proposes poorly, so the candidates still compete in the search."""
    try:
        import gepa
    except ImportError:
        raise MissingDependencyError("instruction proposals need gepa: pip install 'tunewise[search]'") from None
    task_backend = ctx.backend(arm.model)
    proposer = ctx.backend(arm.settings.proposer)
    failures: list[Exception] = []
    adapter = _GepaAdapter(arm, task_backend, failures)
    train = splits.train[: max(8, min(len(splits.train), 32))]

    def reflect(prompt: str) -> str:
        request = GenRequest([{"role": "user", "content": prompt}], GenParams(512, 0.0, (), arm.seed))
        with _kept(failures):
            return proposer.generate([request])[0].text

    result = gepa.optimize(seed_candidate={"instruction": arm.task.instruction}, trainset=train, valset=dev,
                           adapter=adapter, reflection_lm=reflect, max_metric_calls=arm.settings.proposer_calls,
                           seed=arm.seed, logger=_Quiet(), display_progress_bar=False, raise_on_exception=False)
    if failures:
        err = failures[0]
        raise RunError(f"arm {arm.name!r}: instruction proposals with {arm.settings.proposer!r} failed: "
                       f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}") from err
    found = [c["instruction"].strip() for c in result.candidates if c.get("instruction", "").strip()]
    ctx.log(f"search {arm.name!r}: GEPA proposed {len(found) - 1} instruction(s) with {arm.settings.proposer}")
    return found


@contextmanager
def _kept(failures: list[Exception]):
    """Note an error before GEPA catches it: GEPA logs a failed call and goes on, proposing nothing."""
    try:
        yield
    except Exception as err:
        failures.append(err)
        raise


class _GepaAdapter:
    """Scores an instruction on a batch (the arm's baseline prompt otherwise) and explains its misses."""

    def __init__(self, arm: Searched, backend: Backend, failures: list[Exception]):
        self.arm, self.backend, self.failures = arm, backend, failures
        self.metric = get_metric(arm.task.decision_metric()[0], arm.task)
        self.propose_new_texts = None

    def evaluate(self, batch, candidate, capture_traces=False):
        from gepa.core.adapter import EvaluationBatch
        task = self.arm.task.model_copy(update={"instruction": candidate["instruction"]})
        config = StructuredConfig(type="structured", name=self.arm.name, decoding="generate")
        with _kept(self.failures):
            preds = PromptArm(config, task, self.arm.labels).predict(list(batch), self.backend)
        scores = [float(self.metric.item(p.parsed, e.target)) for p, e in zip(preds, batch)]
        traces = [{"input": e.input, "output": p.raw, "expected": e.target_text} for p, e in zip(preds, batch)]
        return EvaluationBatch(outputs=[p.raw for p in preds], scores=scores,
                               trajectories=traces if capture_traces else None)

    def make_reflective_dataset(self, candidate, eval_batch, components_to_update):
        rows = [{"Inputs": t["input"], "Generated Outputs": t["output"],
                 "Feedback": f"Expected answer: {t['expected']}. Score {s:g}."}
                for t, s in zip(eval_batch.trajectories or [], eval_batch.scores)]
        return {name: rows for name in components_to_update}


class _Quiet:
    def log(self, message: str) -> None:
        pass
