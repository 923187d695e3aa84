"""Fine-tuning arms (LoRA, full) and hybrid arms (a tuned model asked with a prompt arm's prompt)."""

from __future__ import annotations

import copy
import hashlib
import json
import math
import random
import shutil
import warnings
from pathlib import Path

from ..backends.base import Backend, Progress
from ..config import FineTuneArm, HybridArm, Task, ZeroShotArm, arm_name
from ..data import Example, Splits, _take, fingerprint
from ..errors import MissingDependencyError, TunewiseError
from ..metrics import get_metric
from .base import ArmContext
from .prompt import PromptArm

ATTENTION = ("q_proj", "k_proj", "v_proj", "o_proj", "c_attn", "query_key_value", "Wqkv", "qkv_proj")
DEFAULT_LR = {"lora": 1e-3, "full": 5e-5}


class TunedArm:
    """Trains on the train split in the arm's own prompt format, selects on dev, predicts with the result."""

    def __init__(self, config: FineTuneArm, task: Task, labels: list[str], prompt_config=None):
        self.config, self.task, self.labels = config, task, labels
        self.name = arm_name(config)
        self.model = config.model or task.model
        prompter_config = (prompt_config or ZeroShotArm(type="zero_shot")).model_copy(
            update={"decoding": config.decoding, "name": self.name})
        self.prompter = PromptArm(prompter_config, task, labels, bare=prompt_config is None)
        self.backend: Backend | None = None
        self.training: dict | None = None
        self.out_dir: Path | None = None

    # -- preparation: train, or load what an earlier run trained ------------------
    def prepare(self, splits: Splits, ctx: ArmContext) -> None:
        base = ctx.base_backend(self.model)
        if not hasattr(base, "tokenizer"):
            raise TunewiseError(f"arm {self.name!r}: fine-tuning needs a local model, not {self.model!r}",
                                field="model")
        self.prompter.prepare(splits)
        train = self.train_examples(splits)
        key = self.train_key(base, train)
        self.out_dir = ctx.home / "tuned" / f"{self.config.type}-{key}"
        done = self.out_dir / "done.json"
        if done.exists():
            model = self._load(base)
        else:
            model = self._train(base, train, splits, ctx)
        self.training = json.loads(done.read_text())
        self.training["path"] = str(self.out_dir)
        self.backend = _tuned_backend(base, model, f"{base.model_key}+{self.config.type}:{key}")

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
        config = self.config.model_dump(mode="json", exclude={"name", "decoding", "merge"})
        body = {"base": base.model_key, "config": config, "data": fingerprint(train),
                "prompt": self.prompter.prompt_template(), "epochs": self.epochs(len(train)), "seed": self.seed,
                "selection": "scored labels" if self.task.type == "classification" else "first metric"}
        return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:12]

    def _train(self, base, train: list[Example], splits: Splits, ctx: ArmContext):
        import torch
        from ..train import SFTTrainer, TrainResult, build_example, count_params, flops_per_token, write_json
        model = self._fresh_model(base)
        eot = base.end_of_turn_id()
        examples = [build_example(base.tokenizer, base.render(self.prompter.messages(e)), e.target_text, eot,
                                  self.config.train.max_length) for e in train]
        epochs = self.epochs(len(train))
        trainer = SFTTrainer(
            model, self.config.train, examples, out_dir=self.out_dir, evaluate=self._dev_evaluator(base, splits),
            pad_id=base.pad_id(), lr=self.config.train.learning_rate or DEFAULT_LR[self.config.type],
            epochs=epochs, seed=self.seed, device=base.device)
        trainer.progress = ctx.progress(f"{self.name} train", trainer.total_steps)
        state = trainer.train()
        trainable, total = count_params(model)
        flops = flops_per_token(model, full=self.config.type == "full") * state.tokens_seen
        result = TrainResult(state, trainable, total, flops, epochs, trainer.precision)
        self._save(model, base)
        model = self._for_inference(model, base)
        summary = dict(result.summary(), train_examples=len(train), device=base.device,
                       torch_threads=torch.get_num_threads())
        write_json(self.out_dir / "done.json", summary)
        (self.out_dir / "checkpoint.pt").unlink(missing_ok=True)
        return model

    def _fresh_model(self, base):
        """A private copy of the base weights (the shared backend's model must stay untouched)."""
        import torch
        from transformers import AutoModelForCausalLM
        from ..models import resolve_model
        dtype = torch.bfloat16 if base.device.startswith("cuda") else torch.float32
        model = AutoModelForCausalLM.from_pretrained(resolve_model(self.model), dtype=dtype).to(base.device)
        torch.manual_seed(self.seed)  # LoRA's initial weights
        if self.config.type == "full":
            return model
        try:
            from peft import LoraConfig, get_peft_model
        except ImportError:
            raise MissingDependencyError("LoRA needs peft: pip install 'tunewise[train]'") from None
        targets = self.config.target_modules or _attention_modules(model)
        lora = LoraConfig(r=self.config.r, lora_alpha=self.config.alpha, lora_dropout=self.config.dropout,
                          target_modules=targets, task_type="CAUSAL_LM")
        with warnings.catch_warnings():  # peft calls a transformers API deprecated in v5
            warnings.simplefilter("ignore", FutureWarning)
            return get_peft_model(model, lora)

    def _dev_evaluator(self, base, splits: Splits):
        """Dev metric after each epoch: the task's first metric on up to eval_max dev items.

        Classification scores the labels (one forward pass per item) whatever the arm's decoding:
        the cheaper, smoother signal for choosing an epoch.
        """
        if not splits.dev:
            return None
        rng = random.Random(self.seed)
        key = (lambda e: str(e.target)) if self.task.type == "classification" else None
        dev = _take(rng.sample(splits.dev, len(splits.dev)), self.config.train.eval_max, key, rng)
        metric = get_metric(self.task.metric_names()[0])
        prompter = self.prompter
        if self.task.type == "classification":
            prompter = copy.copy(prompter)
            prompter.config = prompter.config.model_copy(update={"decoding": "constrained"})

        def evaluate(model) -> float:
            preds = prompter.predict(dev, _tuned_backend(base, model, "dev-eval"))
            return metric.aggregate([p.parsed for p in preds], [e.target for e in dev])
        return evaluate

    def _save(self, model, base) -> None:
        """LoRA: the adapter in PEFT's format (transformers and vLLM load it). Full: the whole model."""
        target = self.out_dir / ("adapter" if self.config.type == "lora" else "model")
        if target.exists():
            shutil.rmtree(target)
        model.save_pretrained(str(target))
        base.tokenizer.save_pretrained(str(target))

    def _for_inference(self, model, base):
        if self.config.type == "full":
            return model.eval()
        merged = model.merge_and_unload().eval()  # same outputs, no adapter overhead per token
        if self.config.merge:
            merged.save_pretrained(str(self.out_dir / "merged"))
            base.tokenizer.save_pretrained(str(self.out_dir / "merged"))
        return merged

    def _load(self, base):
        import torch
        from transformers import AutoModelForCausalLM
        from ..models import resolve_model
        dtype = torch.bfloat16 if base.device.startswith("cuda") else torch.float32
        if self.config.type == "full":
            return AutoModelForCausalLM.from_pretrained(str(self.out_dir / "model"), dtype=dtype).to(base.device).eval()
        from peft import PeftModel
        model = AutoModelForCausalLM.from_pretrained(resolve_model(self.model), dtype=dtype).to(base.device)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            return PeftModel.from_pretrained(model, str(self.out_dir / "adapter")).merge_and_unload().eval()

    # -- prediction ---------------------------------------------------------------
    def prompt_template(self):
        return self.prompter.prompt_template()

    def predict(self, examples: list[Example], backend: Backend, progress: Progress | None = None):
        return self.prompter.predict(examples, backend, progress)


class Hybrid:
    """The fine-tuned model of one arm, asked with the prompt of a prompt arm."""

    def __init__(self, config: HybridArm, task: Task, labels: list[str], prompt_config):
        self.config, self.task = config, task
        self.name = arm_name(config)
        prompt = prompt_config.model_copy(update={"decoding": config.decoding, "name": self.name})
        self.prompter = PromptArm(prompt, task, labels)
        self.tuned: TunedArm | None = None
        self.backend: Backend | None = None
        self.model = task.model
        self.training = None

    def prepare(self, splits: Splits, ctx: ArmContext) -> None:
        self.prompter.prepare(splits)
        self.tuned = ctx.prepared(self.config.tuned)
        self.model = self.tuned.model
        self.backend = self.tuned.backend
        self.training = {"uses": self.config.tuned, "path": self.tuned.training.get("path")}

    def prompt_template(self):
        return self.prompter.prompt_template()

    def predict(self, examples: list[Example], backend: Backend, progress: Progress | None = None):
        return self.prompter.predict(examples, backend, progress)


def _tuned_backend(base, model, key: str):
    from ..backends.local import LocalBackend
    return LocalBackend(base.model_name, device=base.device, batch_size=base.batch_size, model_obj=model,
                        tokenizer=base.tokenizer, key=key)


def _attention_modules(model) -> list[str]:
    import torch
    names = {name.rsplit(".", 1)[-1] for name, module in model.named_modules() if isinstance(module, torch.nn.Linear)}
    found = [n for n in ATTENTION if n in names]
    if not found:
        raise TunewiseError("cannot tell this model's attention projections; set target_modules",
                            field="target_modules")
    return found

