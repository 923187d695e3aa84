"""Fine-tuning arms (LoRA, full) and hybrid arms (a tuned model asked with a prompt arm's prompt)."""

from __future__ import annotations

import hashlib
import json
import math
import random
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_serializer

from ..backends.base import Backend, Progress
from ..errors import TunewiseError
from ..measure import get_metric
from ..registry import arm_class
from ..registry import register_arm as register
from ..registry import traits as traits_of
from ..task import ArmSettings, Task, TrainSettings, arm_name
from ..task.data import Example, Splits, _take, fingerprint
from ..traits import Traits
from .base import Arm, ArmContext
from .prompt import PromptArm, ZeroShotConfig
from .searched import SearchSpace
from .tune_search import TuneSearch, run_search, search_key

DEFAULT_LR = {"lora": 1e-3, "full": 5e-5}
PROMPTING = ("prompt", "retrieval")  # the families whose prompt a tuned model can be trained and asked with


class FineTuneConfig(ArmSettings):
    type: Literal["lora", "full"]
    prompt: str = Field("bare", description="bare (the input alone) or the name of a prompt arm, "
                                            "used in training and at inference")
    r: int = Field(8, gt=0, description="LoRA rank")
    alpha: int = Field(16, gt=0, description="LoRA alpha")
    dropout: float = Field(0.0, ge=0, lt=1, description="LoRA dropout (0: no mask to draw at each step)")
    target_modules: list[str] | None = Field(None, description="LoRA targets; default: the attention projections")
    train: TrainSettings = Field(default_factory=TrainSettings)
    merge: bool = Field(False, description="also save the LoRA weights merged into a full model")
    search: TuneSearch | None = Field(None, description="search the training settings on dev (Optuna)")
    settings_from: str | None = Field(None, description="train with the settings another lora/full arm's search "
                                                        "chose (its learning curve and matched hybrids do)")

    @model_serializer(mode="wrap")
    def _dump(self, handler):
        data = handler(self)
        for name in ("search", "settings_from"):
            if data.get(name, 0) is None:
                data.pop(name)  # configurations (and their hashes) made before the settings existed stay the same
        return data

    def references(self):
        found = [] if self.prompt == "bare" else [("prompt", self.prompt, PROMPTING)]
        return found + ([("settings_from", self.settings_from, ("fine-tune",))] if self.settings_from else [])

    def check_data(self, task: Task, labels: list[str], sizes: dict[str, int]) -> tuple[str, str] | None:
        s = self.search
        if s is None:
            return None
        if self.settings_from:
            return "an arm either searches its settings or takes another arm's (settings_from), not both", \
                "settings_from"
        if self.type == "full" and (s.r or s.target_modules):
            return "r and target_modules are LoRA settings: a full fine-tune has neither", \
                "search.r" if s.r else "search.target_modules"
        if not sizes["dev"]:
            return "the fine-tune search scores trials on dev, and the dev split is empty", "search"
        if s.train_size and s.train_size > sizes["train"]:
            return f"train_size {s.train_size} is more than the {sizes['train']} train examples", "search.train_size"
        return None

    def unused(self, task: Task, sizes: dict[str, int]) -> list[tuple[str, str]]:
        """Settings the search chooses for itself, given here too."""
        if self.search is None:
            return []
        given = {"learning_rate": ("train.learning_rate", self.train.learning_rate is not None),
                 "epochs": ("train.epochs", bool(self.train.changed("epochs"))),
                 "r": ("r", bool(self.changed("r"))),
                 "target_modules": ("target_modules", self.target_modules is not None)}
        return [(field, f"the search chooses it (search.{name}), so this setting has no effect")
                for name, (field, set_here) in given.items() if set_here and getattr(self.search, name)]


class HybridConfig(ArmSettings):
    """A fine-tuned model asked with a prompt arm's prompt, trained with that same prompt (matched)."""
    type: Literal["hybrid"]
    tuned: str = Field(description="name of a lora or full arm: its training settings (matched), or its "
                                   "adapter (plain)")
    prompt: str = Field(description="name of a prompt arm (zero_shot, structured, few_shot, searched, retrieval)")
    training: Literal["matched", "plain"] = Field(
        "matched", description="matched: train an adapter with this prompt, as it is served; plain: reuse the "
                               "tuned arm's adapter, trained on the bare input (an ablation: train/serve mismatch)")
    alternate: bool = Field(False, description="search the prompt on the base model, fine-tune with the best, "
                                               "search again on the tuned model (needs a searched prompt arm)")

    def references(self):
        return [("tuned", self.tuned, ("fine-tune",)), ("prompt", self.prompt, PROMPTING)]

    def check_types(self, types: dict[str, str]):
        searched = traits_of(types.get(self.prompt, ""))
        if self.alternate and not (searched and searched.searches):
            return f"alternate searches the prompt again on the tuned model: prompt must name a searched arm, " \
                   f"not {self.prompt!r} ({types.get(self.prompt)})", "alternate"
        if self.alternate and self.training == "plain":
            return "alternate trains with the searched prompt: it needs training: matched", "training"
        return None


class _Prompted(Arm):
    """An arm that asks its model through a prompt arm (its `prompter`)."""
    prompter: PromptArm

    def prompt_template(self):
        return self.prompter.prompt_template()

    def predict(self, examples: list[Example], backend: Backend, progress: Progress | None = None):
        return self.prompter.predict(examples, backend, progress)

    @property
    def decoding(self) -> str:
        return self.prompter.decoding

    @property
    def asks_instruction(self) -> bool:
        return self.prompter.asks_instruction

    def variant(self, *, instruction=None, sampling=None):
        return self.prompter.variant(instruction=instruction, sampling=sampling)

    def restore(self, record: dict | None) -> PromptArm:
        """The prompt this arm was measured with, rebuilt from its training record (export ships it)."""
        if isinstance(self.prompter, PromptArm):
            return self.prompter
        return self.prompter.restore((record or {}).get("search") or {})

    @classmethod
    def data_required(cls, config: dict[str, Any], training: dict | None) -> str:
        n = (training or {}).get("train_examples")
        return f"{n} train examples" if n else "train split"


@register
class TunedArm(_Prompted):
    """Trains on the train split in the arm's own prompt format, selects on dev, predicts with the result."""

    Config = FineTuneConfig
    traits = Traits(trains_weights=True, asks_with_prompt=False, selects_on_dev=True, curve="train_size")
    methods = {"lora": "fine-tune: LoRA", "full": "fine-tune: full"}

    def __init__(self, config: FineTuneConfig, task: Task, labels: list[str], configs: dict | None = None):
        self.config, self.task, self.labels = config, task, labels
        self.name = arm_name(config)
        self.model = config.model or task.model
        prompt_config = (configs or {}).get(config.prompt) if config.prompt != "bare" else None
        prompter_config = (prompt_config or ZeroShotConfig(type="zero_shot")).model_copy(
            update={"decoding": config.decoding, "name": self.name})
        self.prompter = arm_class(prompter_config.type)(prompter_config, task, labels, configs,
                                                        bare=prompt_config is None)
        self.backend: Backend | None = None
        self.training: dict | None = None
        self.out_dir: Path | None = None

    # -- preparation: train, or load what an earlier run trained ------------------
    def prepare(self, splits: Splits, ctx: ArmContext) -> None:
        from ..backends import local_weights
        from ..backends.local import LocalBackend
        from ..backends.models import load_adapter, load_saved
        base = serving = ctx.base_backend(self.model)
        weights = local_weights(self.model)
        if weights and weights != self.model:  # vllm:ID: trained with transformers, the adapter served by vLLM
            base = ctx.base_backend(weights)
        if not isinstance(base, LocalBackend):
            raise TunewiseError(f"arm {self.name!r}: fine-tuning needs a local model, not {self.model!r}",
                                field="model")
        self.prompter.prepare(splits, ctx)
        searched = self._settle(base, splits, ctx)
        model = self._fit(base, splits, ctx)
        if model is None:
            model = load_saved(self.out_dir / "model", base.device) if self.config.type == "full" else \
                load_adapter(self.model, self.out_dir / "adapter", base.device, base.model)
        key = self.out_dir.name.split("-", 1)[1]
        self.training = json.loads((self.out_dir / "done.json").read_text())
        self.training["path"] = str(self.out_dir)
        if searched:
            self.training["tune_search"] = searched
        if self.config.settings_from:  # its settings came from that arm's search: the report's effort says so
            self.training["settings_from"] = self.config.settings_from
        if getattr(self.prompter, "training", None):  # a searched prompt: its search, for the report and export
            self.training["search"] = self.prompter.training
        self.backend = LocalBackend.sharing(base, model, f"{base.model_key}+{self.config.type}:{key}")
        if serving is not base and self.config.type == "lora":
            self.backend = serving.with_adapter(str(self.out_dir / "adapter"), f"{self.config.type}:{key}")

    def _fit(self, base, splits: Splits, ctx: ArmContext, report=None, bar: str | None = None):
        """Train on this arm's train examples unless an earlier run did (its done.json): the trained model, or
        None when it is on disk. `report(epoch, dev score, tokens)` follows the dev scores (a search's trial)."""
        train = self.train_examples(splits)
        key = self.train_key(base, train)
        self.out_dir = ctx.home / "tuned" / f"{self.config.type}-{key}"
        if (self.out_dir / "done.json").exists():
            return None
        return self._train(base, train, splits, ctx, report, bar)

    def _settle(self, base, splits: Splits, ctx: ArmContext) -> dict | None:
        """The settings to train with: searched on dev (the search's record is returned), another arm's
        search's (settings_from), or the arm's own."""
        if self.config.settings_from:
            chosen = ctx.prepared(self.config.settings_from).chosen()
            self.config = self.config.model_copy(update=dict(
                chosen, train=self.config.train.model_copy(update=chosen.pop("train"))))
            return None
        search = self.config.search
        if search is None:
            return None
        seed = search.seed if search.seed is not None else self.seed
        body = {"base": base.model_key, "config": self.config.model_dump(mode="json", exclude={"name", "decoding",
                                                                                            "merge"}),
                "train": fingerprint(splits.train), "dev": fingerprint(splits.dev),
                "prompt": self.prompter.prompt_template(), "seed": seed}

        def train(params: dict, report, number: int) -> dict:
            trial = self._with(params, train_size=search.train_size or self.config.train.train_size)
            trial._fit(base, splits, ctx, report, bar=f"{self.name} trial {number}")
            return dict(json.loads((trial.out_dir / "done.json").read_text()), path=str(trial.out_dir))
        record = run_search(self.name, search_key(body), ctx.home / "search", search, seed, train,
                            ctx.progress(f"{self.name} search", search.trials), ctx.log)
        self.config = self._with(record["best"]).config
        return record

    def _with(self, params: dict, train_size: int | None | str = "kept") -> "TunedArm":
        """This arm with a trial's settings (and no search): it trains and keys its training as a plain arm;
        `train_size` replaces the arm's own when given."""
        train = {k: params[k] for k in ("learning_rate", "epochs") if k in params}
        if train_size != "kept" and train_size != self.config.train.train_size:
            train["train_size"] = train_size
        lora = {k: params[k] for k in ("r", "target_modules") if k in params}
        config = self.config.model_copy(update=dict(lora, search=None, train=self.config.train.model_copy(
            update=train)))
        arm = TunedArm(config, self.task, self.labels)
        arm.prompter, arm.name = self.prompter, self.name  # the same prompt, already prepared
        return arm

    def chosen(self) -> dict:
        """The settings this arm trained with that a search chooses: what settings_from takes."""
        c = self.config
        return {"r": c.r, "target_modules": c.target_modules,
                "train": {"learning_rate": c.train.learning_rate, "epochs": c.train.epochs}}

    def train_examples(self, splits: Splits) -> list[Example]:
        size = self.config.train.train_size
        if size is None or size >= len(splits.train):
            return list(splits.train)
        rng = random.Random(self.seed)
        pool = list(splits.train)
        rng.shuffle(pool)
        key = (lambda e: str(e.target)) if self.task.type == "classification" else None
        return _take(pool, size, key, rng)

    @property
    def seed(self) -> int:
        return self.config.train.seed if self.config.train.seed is not None else self.task.splits.seed

    def epochs(self, n_train: int) -> int:
        """The configured epochs, repeated for small train sets up to min_passes examples."""
        train = self.config.train
        if not train.min_passes or n_train == 0:
            return train.epochs
        return max(train.epochs, min(train.max_epochs, math.ceil(train.min_passes / n_train)))

    def train_key(self, base, train: list[Example]) -> str:
        """Identifies a training: base model, settings, data and prompt; reruns reuse its result."""
        config = self.config.model_dump(mode="json", exclude={"name", "decoding", "merge", "search",
                                                              "settings_from"})
        if config["train"]["loss_on"] == "final":
            del config["train"]["loss_on"]  # keys made before the setting existed stay valid
        else:
            config["untrained"] = [e.untrained for e in train]  # messages of weight 0
        body = {"base": base.model_key, "config": config, "data": fingerprint(train),
                "prompt": self.prompter.prompt_template(), "epochs": self.epochs(len(train)), "seed": self.seed,
                "selection": f"{self.task.decision_metric()[0]}, decoded as tested"}
        return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:12]

    def settings(self, n_train: int) -> TrainSettings:
        """The training settings with every default resolved: what the loop reads, and all it reads."""
        train = self.config.train
        return train.model_copy(update={"learning_rate": train.learning_rate or DEFAULT_LR[self.config.type],
                                        "epochs": self.epochs(n_train), "seed": self.seed})

    def _train(self, base, train: list[Example], splits: Splits, ctx: ArmContext, report=None, bar=None):
        import torch

        from ..backends.chat import ChatFormat
        from ..backends.models import merged, private_copy, save_model, with_lora
        from ..training.distributed import LaunchedTrainer, resolve_processes
        from ..training.loop import SFTTrainer, TrainResult, count_params, flops_per_token, write_json
        settings = self.settings(len(train))
        model = private_copy(base.model)  # the shared backend's stays untouched
        cfg = self.config
        lora = dict(r=cfg.r, alpha=cfg.alpha, dropout=cfg.dropout, target_modules=cfg.target_modules) \
            if cfg.type == "lora" else None
        if lora:
            torch.manual_seed(self.seed)  # LoRA's initial weights
            model = with_lora(model, **lora)
        chat = ChatFormat(base.tokenizer)
        examples = [self._sft_example(chat, e, settings) for e in train]
        evaluate = self._dev_evaluator(base, splits)
        if evaluate and report:
            evaluate = _reporting(evaluate, report, sum(len(e.input_ids) for e in examples))
        options = dict(out_dir=self.out_dir, evaluate=evaluate, pad_id=chat.pad_id(), device=base.device)
        processes = resolve_processes(settings.processes, base.device)
        if processes > 1:  # several GPUs: each epoch in that many processes (accelerate, DDP)
            trainer = LaunchedTrainer(model, settings, examples, job={"model": self.model, "lora": lora},
                                      processes=processes, **options)
        else:
            trainer = SFTTrainer(model, settings, examples, **options)
        trainer.progress = ctx.progress(bar or f"{self.name} train", trainer.total_steps)
        state = trainer.train()
        trainable, total = count_params(model)
        flops = flops_per_token(model, full=self.config.type == "full") * state.tokens_seen
        result = TrainResult(state, trainable, total, flops, settings.epochs, trainer.precision)
        save_model(model, base.tokenizer, self.out_dir / ("adapter" if self.config.type == "lora" else "model"))
        if self.config.type == "lora":
            model = merged(model)
            if self.config.merge:
                save_model(model, base.tokenizer, self.out_dir / "merged")
        clipped = sum(e.clipped for e in examples)
        if clipped:  # said here and in the report: a cut prompt trains on less than the user wrote
            ctx.log(f"warning: arm {self.name!r}: {clipped} of {len(examples)} training examples were longer than "
                    f"train.max_length {settings.max_length} tokens and lost their prompt's start")
        summary = dict(result.summary(), train_examples=len(train), device=base.device, processes=processes,
                       torch_threads=torch.get_num_threads(), clipped=clipped, max_length=settings.max_length,
                       dev_items=getattr(evaluate, "items", 0), learning_rate=settings.learning_rate)
        write_json(self.out_dir / "done.json", summary)
        (self.out_dir / "checkpoint.pt").unlink(missing_ok=True)
        return model.eval()

    def _sft_example(self, chat, example: Example, settings: TrainSettings):
        """One training sequence: the prompt as the arm asks it, the target learned; with loss_on: all_assistant
        a conversation's earlier assistant messages are learned too."""
        from ..training.loop import build_example
        messages = self.prompter.messages(example)
        learned = []
        if settings.loss_on == "all_assistant" and example.messages is not None:
            try:
                learned = chat.assistant_spans(messages, assistant_indices(example, len(messages)))
            except ValueError as err:
                raise TunewiseError(f"arm {self.name!r}: {err}", field="train.loss_on") from None
        return build_example(chat.tokenizer, chat.render(messages), example.target_text, chat.end_of_turn_id(),
                             settings.max_length, learned, chat.leading_ids())

    def _dev_evaluator(self, base, splits: Splits):
        """Dev metric after each epoch: the task's decision metric on up to eval_max dev items (seeded, labels
        in proportion), answered with the arm's own decoding and parser, so the epoch kept is the best at what
        the test measures (scored labels would choose on another measurement than a generating arm's)."""
        from ..backends.local import LocalBackend
        if not splits.dev or not self.config.train.eval_max:
            return None
        rng = random.Random(self.seed)
        key = (lambda e: str(e.target)) if self.task.type == "classification" else None
        dev = _take(rng.sample(splits.dev, len(splits.dev)), self.config.train.eval_max, key, rng)
        metric = get_metric(self.task.decision_metric()[0], self.task)
        prompter = self.prompter

        def evaluate(model) -> float:
            preds = prompter.predict(dev, LocalBackend.sharing(base, model, "dev-eval"))
            return metric.aggregate([p.parsed for p in preds], [e.target for e in dev])
        evaluate.items = len(dev)
        return evaluate


def _reporting(evaluate, report, tokens_per_epoch: int):
    """The dev evaluator, telling a search's trial each epoch's score (which may prune the trial)."""
    epochs = 0

    def evaluated(model) -> float:
        nonlocal epochs
        score = evaluate(model)
        epochs += 1
        report(epochs, score, epochs * tokens_per_epoch)
        return score
    evaluated.items = evaluate.items
    return evaluated


@register
class Hybrid(_Prompted):
    """A fine-tuned model asked with a prompt arm's prompt.

    matched (the default) trains its own adapter, with the tuned arm's settings, on that prompt: the model
    is trained as it is asked. plain asks the tuned arm's model, trained on the bare input: an ablation
    that shows what a train/serve mismatch costs. alternate (BetterTogether, Soylu et al. 2024) searches
    the prompt on the base model, trains with the best, and searches again on the tuned model.
    """

    Config = HybridConfig
    traits = Traits(trains_weights=True, selects_on_dev=True)
    methods = {"hybrid": "hybrid: tuned + prompt"}

    def __init__(self, config: HybridConfig, task: Task, labels: list[str], configs: dict | None = None):
        self.config, self.task, self.labels = config, task, labels
        self.name = arm_name(config)
        configs = configs or {}
        tuned = configs[config.tuned]
        self.model = tuned.model or task.model
        self.inner: TunedArm | None = None
        if config.training == "matched":  # an adapter of its own, trained with the hybrid's prompt
            settings = tuned.model_copy(update={"name": self.name, "prompt": config.prompt,
                                                "decoding": config.decoding, "search": None})
            if tuned.search:  # the settings the tuned arm's search chose, not a search of its own
                settings = settings.model_copy(update={"settings_from": config.tuned})
            self.inner = TunedArm(settings, task, labels, configs)
            self.prompter = self.inner.prompter
        else:
            prompt = configs[config.prompt].model_copy(update={"decoding": config.decoding, "name": self.name})
            self.prompter = arm_class(prompt.type)(prompt, task, labels, configs)
        self.backend: Backend | None = None
        self.training = None

    def prepare(self, splits: Splits, ctx: ArmContext) -> None:
        if self.inner is None:
            self.prompter.prepare(splits, ctx)
            tuned = ctx.prepared(self.config.tuned)
            self.model, self.backend = tuned.model, tuned.backend
            self.training = {"uses": self.config.tuned, "path": tuned.training.get("path"), "matched": False}
            return
        self.inner.prepare(splits, ctx)  # a searched prompt searches on the base model first
        self.backend = self.inner.backend
        self.training = dict(self.inner.training, matched=True, settings_of=self.config.tuned)
        if self.config.alternate:
            self._search_again(splits, ctx)

    def _search_again(self, splits: Splits, ctx: ArmContext) -> None:
        """Search the prompt again on the tuned model, starting from the first search's best; record the dev
        score of each step on the search's dev items, so the report shows what each part added."""
        first = self.inner.prompter
        again = arm_class("searched")(first.config.model_copy(update={"name": f"{self.name}.again"}),
                                      self.task, self.labels)
        tuned = ctx.cache(self.backend)
        base = ctx.backend(self.model)
        again.prepare(splits, ctx, backend=tuned, also_try=[first.best_params])
        dev = again._dev_items(splits)
        space = SearchSpace(first, [self.task.instruction.strip()])
        baseline = space.arm(space.baseline())  # the task's own prompt: what the search started from
        steps = [("the task's prompt", "base", baseline, base),
                 ("prompt searched on the base model", "base", first, base),
                 ("that prompt", "tuned with it", first, tuned),
                 ("prompt searched again on the tuned model", "tuned with the first prompt", again, tuned)]
        self.training["alternation"] = [
            {"step": step, "model": model, "dev": _dev_score(arm, backend, dev, self.task), "dev_items": len(dev)}
            for step, model, arm, backend in steps]
        self.training["search"] = again.training
        self.training["first_search"] = first.training
        self.prompter = again


def assistant_indices(example: Example, prompt_length: int) -> list[int]:
    """Where a conversation's assistant messages (those it trains on) sit in a prompt of that length: the
    conversation's turns end the prompt, its system message (if any) merged into the prompt's first."""
    turns = [(i, m) for i, m in enumerate(example.messages or ()) if m["role"] != "system"]
    offset = prompt_length - len(turns)
    return [offset + k for k, (i, m) in enumerate(turns) if m["role"] == "assistant" and i not in example.untrained]


def _dev_score(arm, backend: Backend, dev: list[Example], task: Task) -> float:
    metric = get_metric(task.decision_metric()[0], task)
    preds = arm.predict(dev, backend)
    return metric.aggregate([p.parsed for p in preds], [e.target for e in dev])
