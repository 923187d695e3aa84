"""The task file's sections as typed settings: data, splits, generation, the settings every arm and every
training shares, knowledge, targets, consistency, endpoints, prices, the judge; `Strict` rejects unknown
keys, booleans given for numbers, infinities and NaN.
"""

from __future__ import annotations

import re
import string
from typing import Annotated, Any, Literal, Union, get_args
from urllib.parse import urlparse

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class FieldError(ValueError):
    """A check across fields that knows which one is wrong: the error names it and finds its line."""

    def __init__(self, message: str, *loc: str | int):
        super().__init__(message)
        self.loc = loc


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)  # an infinite price or rate is a typo

    @model_validator(mode="before")
    @classmethod
    def _no_booleans_as_numbers(cls, data: Any) -> Any:
        # YAML reads true/false/yes/no as booleans, which pydantic would take as 1 and 0 (`seed: true`: seed 1)
        for name, value in data.items() if isinstance(data, dict) else ():
            field = cls.model_fields.get(name)
            items = value if isinstance(value, list) else [value]
            if field and any(isinstance(v, bool) for v in items) and _numeric(field.annotation):
                raise FieldError("expected a number, got a boolean (true/false/yes/no)", name)
        return data

    def changed(self, *names: str) -> list[str]:
        """The named settings whose values differ from their defaults (set as a copy of a task sets them all)."""
        fields = type(self).model_fields
        return [n for n in names if getattr(self, n) != fields[n].get_default(call_default_factory=True)]


def not_finite(value: Any) -> str:
    """What pydantic's "should be a finite number" means for NaN or an infinity."""
    if isinstance(value, float) and value != value:
        return "NaN is not a number; give a number"
    return f"{value} is not a finite number; give a number"


def _numeric(annotation: Any) -> bool:
    """Whether a field (or its list's items) takes numbers and not booleans."""
    if annotation is bool:
        return False
    if annotation in (int, float):
        return True
    args = get_args(annotation)
    return bool(args) and bool not in args and any(_numeric(a) for a in args)


def filled_name(value: str | None) -> str | None:
    """A name given empty would read as no name at all (`group_by: ''` groups nothing) or as the current folder."""
    if value is not None and not value.strip():
        raise ValueError("is empty; write the name out")
    return value


class DataConfig(Strict):
    path: str = Field(description="JSONL, CSV or Parquet file, or a saved `datasets` directory")
    format: Literal["auto", "jsonl", "csv", "parquet", "hf"] = "auto"
    input: str | None = Field(None, description="a field name, or a template such as '{title}: {body}'; "
                                                "without it each row is a conversation (data.messages)")
    messages: str | None = Field(None, description="the field holding each row's conversation: a list of "
                                                   "{role, content} messages (OpenAI's chat format; ShareGPT's "
                                                   "{from, value} is mapped); default messages (or conversations)")
    target: str | None = Field(None, description="the field holding the expected output; a generation task "
                                                "scored by assertions or a judge alone may have none; in a "
                                                "conversation, default the final assistant message")
    split_column: str | None = Field(None, description="use this column's train/dev/test values")

    @field_validator("input")
    @classmethod
    def _template(cls, value: str | None) -> str | None:
        if value is not None:
            input_fields(value)
        return value

    _messages = field_validator("messages")(filled_name)

    @model_validator(mode="after")
    def _one_input(self) -> "DataConfig":
        if self.input is not None and self.messages is not None:
            raise FieldError("give data.input (one text built from a row's fields) or data.messages (a "
                             "conversation per row), not both", "messages")
        return self

    @property
    def conversation(self) -> bool:
        """Each row is a conversation: its messages are the input."""
        return self.input is None

    @property
    def has_target(self) -> bool:
        """Answers can be compared with a target: a target field, or a conversation's final assistant message."""
        return self.target is not None or self.conversation

    def input_fields(self) -> list[str]:
        return [] if self.input is None else input_fields(self.input)


FIELD_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_\-]*")


def input_fields(template: str) -> list[str]:
    """The fields a template names ({title}; {{ and }} are literal braces), or the template itself when it
    names none (then it is a field's name). ValueError says what is wrong with a malformed template."""
    names = []
    try:
        parts = list(string.Formatter().parse(template))
    except ValueError as err:
        raise ValueError(f"{err} in {template!r}; fields are written {{name}}, a literal brace {{{{ or }}}}") from None
    for _, name, spec, conversion in parts:
        if name is None:
            continue
        if not FIELD_NAME.fullmatch(name) or spec or conversion:
            shown = "{" + name + (f"!{conversion}" if conversion else "") + (f":{spec}" if spec else "") + "}"
            raise ValueError(f"{shown} in {template!r} is not a field: fields are written {{name}} (a letter, "
                             f"then letters, digits, _ or -; no index, attribute or format), a literal brace "
                             f"{{{{ or }}}}")
        names.append(name)
    return names or [template]


# seeds reach numpy's and optuna's generators, which take at most 2**32 - 1: a larger one would fail only
# once training or a search starts, after the other arms ran
MAX_SEED = 2**32 - 1


class SplitConfig(Strict):
    train: float = Field(0.6, ge=0, le=1)
    dev: float = Field(0.2, ge=0, le=1)
    test: float = Field(0.2, gt=0, le=1)
    seed: int = Field(0, ge=0, le=MAX_SEED)
    seeds: list[Annotated[int, Field(ge=0, le=MAX_SEED)]] | None = Field(
        None, description="repeat the comparison on these re-splits (the first is the report's main split); the "
                          "verdict states its stability")
    stratify: bool = True  # only for classification
    group_by: str | None = Field(None, description="a data field: rows sharing its value stay in one split "
                                                    "(no test group is seen in training)")
    dedupe: bool = Field(False, description="keep one row per input (case and spacing ignored); the count "
                                            "dropped is reported")
    max_train: int | None = Field(None, gt=0)
    max_dev: int | None = Field(None, gt=0)
    max_test: int | None = Field(None, gt=0)

    @model_validator(mode="after")
    def _fractions_fit(self) -> "SplitConfig":
        total = self.train + self.dev + self.test
        if total > 1.0 + 1e-9:
            raise ValueError(f"train + dev + test fractions add up to {total:g}, more than 1")
        return self

    _group = field_validator("group_by")(filled_name)

    @field_validator("seeds")
    @classmethod
    def _seeds(cls, value: list[int] | None) -> list[int] | None:
        if value is None:
            return value
        if not value:
            raise ValueError("is empty; list the split seeds to repeat the comparison on, e.g. [0, 1, 2]")
        _distinct([str(s) for s in value], "seed")
        return value

    @model_validator(mode="after")
    def _main_seed(self) -> "SplitConfig":
        if self.seeds is None:
            return self
        if "seed" in self.model_fields_set and self.seed != self.seeds[0]:
            raise FieldError(f"seed {self.seed} is not the first of seeds {self.seeds}: give seeds alone (the first "
                             f"is the main split)", "seed")
        self.seed = self.seeds[0]
        return self

    def all_seeds(self) -> list[int]:
        """The split seeds the comparison runs on; the first is the main one."""
        return list(self.seeds) if self.seeds else [self.seed]


class ExecutorConfig(Strict):
    """Where the independent units of a run (arms, curve points, seeds) run; results are the same either way."""
    type: Literal["local", "ray"] = Field("local", description="local: one after another in this process; "
                                                               "ray: as Ray tasks (pip install 'tunewise[ray]')")
    address: str | None = Field(None, description="a Ray cluster (ray://host:10001, auto); default: a local "
                                                  "Ray instance on this machine's cores")
    cpus: float = Field(1, gt=0, description="CPUs each unit asks for")
    gpus: float = Field(0, ge=0, description="GPUs each unit asks for (0 on CPU-only clusters)")
    memory_gb: float | None = Field(None, gt=0, description="memory each unit asks for; default: no reservation")

    @field_validator("address")
    @classmethod
    def _address(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"auto|local|(ray://)?[\w.\-]+:\d+", value):
            raise ValueError(f"{value!r} is not a Ray address: auto, local, ray://HOST:PORT (Ray Client) or HOST:PORT")
        return value

    @model_validator(mode="after")
    def _only_for_ray(self) -> "ExecutorConfig":
        given = self.changed("address", "cpus", "gpus", "memory_gb")
        if self.type == "local" and given:
            raise FieldError("is for executor type ray; the local executor runs the units one after another in "
                             "this process, and would ignore it", given[0])
        return self


class GenerationConfig(Strict):
    max_tokens: int = Field(32, gt=0, le=32768,
                            description="an answer's token budget (a typo of 1e9 would run for hours)")
    temperature: float = Field(0.0, ge=0)
    stop: list[str] = Field(default_factory=list)
    seed: int = Field(0, ge=0, le=MAX_SEED)


class ArmSettings(Strict):
    """What every arm type's configuration has; each type adds its own fields (see tunewise.arms)."""
    type: str
    name: str | None = None
    model: str | None = Field(None, description="overrides the task's model for this arm")
    decoding: Literal["generate", "constrained"] = Field(
        "generate", description="constrained: score each label instead of generating (classification)")
    calibrate: bool = Field(False, description="constrained only: subtract each label's score for a content-free "
                                               "input (contextual calibration), removing the prompt's label bias")

    def references(self) -> list[tuple[str, str, tuple[str, ...]]]:
        """Other arms this one names: (field, arm name, the families that arm must belong to)."""
        return []

    def check_types(self, types: dict[str, str]) -> tuple[str, str] | None:
        """A problem with the types of the arms this one names ({name: type}), as (message, field); None: fine."""
        return None

    def check_data(self, task: Any, labels: list[str], sizes: dict[str, int]) -> tuple[str, str] | None:
        """A problem of this arm's settings with the task, its labels and its split sizes, found before any
        model work, as (message, field under the arm); None: fine."""
        return None

    def unused(self, task: Any, sizes: dict[str, int]) -> list[tuple[str, str]]:
        """Settings set away from their defaults that this arm will not read, as (field under the arm, why):
        each is a warning."""
        return []


def arm_name(arm: ArmSettings) -> str:
    return arm.name or arm.type


class Levers(Strict):
    """The three levers of a structured prompt, each switchable."""
    context: bool = True
    output_format: bool = True
    constraints: bool = True


class TrainSettings(Strict):
    """Training knobs, named after their TRL/transformers counterparts where one exists: the single source
    of every setting the training loop reads (the arm resolves the defaults left as None)."""
    epochs: int = Field(1, gt=0, description="num_train_epochs")
    learning_rate: float | None = Field(None, gt=0, description="default 1e-3 for LoRA, 5e-5 for full")
    batch_size: int = Field(8, gt=0, description="per_device_train_batch_size")
    grad_accum: int = Field(1, gt=0, description="gradient_accumulation_steps")
    max_length: int = Field(256, gt=8, description="longer training sequences are cut")
    weight_decay: float = Field(0.0, ge=0)
    warmup_ratio: float = Field(0.05, ge=0, le=1)
    patience: int = Field(1, ge=0, description="epochs without dev improvement before stopping")
    loss_on: Literal["final", "all_assistant"] = Field(
        "final", description="conversations: the loss on the final assistant message (the target) only, or on "
                             "every assistant message of the conversation (TRL's assistant_only_loss)")
    eval_max: int = Field(200, ge=0, description="dev items scored after each epoch (0: none, the last epoch kept)")
    checkpoint_every_s: float = Field(60.0, gt=0, description="how often an interrupted run can resume from")
    train_size: int | None = Field(None, gt=0, description="use only this many train examples (stratified)")
    min_passes: int = Field(0, ge=0, description="repeat epochs until this many examples were seen")
    max_epochs: int = Field(10, gt=0, description="cap on epochs added by min_passes")
    seed: int | None = Field(None, ge=0, le=MAX_SEED, description="defaults to the split seed")
    processes: Union[Annotated[int, Field(ge=1)], Literal["auto"]] = Field(
        "auto", description="data-parallel training processes (accelerate, DDP): auto is one per visible GPU "
                            "when there are several, else one (in this process); a number on CPU runs that "
                            "many CPU processes")
    precision: Literal["auto", "float32", "bfloat16"] = Field(
        "auto", description="bfloat16: mixed precision (bf16 matrix products; a LoRA's frozen base held in bf16 "
                            "while it trains; float32 trained weights, gradients and optimizer); auto: bfloat16 "
                            "where the hardware has it natively, else float32")
    share_prefix: bool = Field(True, description="run the tokens a batch's sequences all start with (the chat "
                               "template, the instruction) once for the batch: the same loss and gradients, fewer "
                               "tokens; models whose attention it does not model train without it")


class LearningCurve(Strict):
    """Quality against the amount of task data, for fine-tuning and for few-shot prompting."""
    arm: str | None = Field(None, description="the fine-tune arm; default the first one")
    sizes: list[Union[Annotated[int, Field(gt=0)], Literal["all"]]] = Field(
        default_factory=lambda: [16, 64, 256, "all"], description="train examples; none may exceed the train split")
    few_shot_arm: str | None = Field(None, description="the few-shot arm; default the first one")
    ks: list[Annotated[int, Field(gt=0, le=64)]] = Field(default_factory=lambda: [1, 2, 4, 8])
    draws: int = Field(3, ge=1, le=20, description="seeded example sets tried at each k (random selection): "
                                                   "one set's score depends on which examples it drew")
    min_passes: int = Field(256, ge=0, description="small train sizes repeat epochs up to this many examples")

    @field_validator("sizes", "ks")
    @classmethod
    def _distinct(cls, value: list) -> list:
        repeated = sorted({str(v) for v in value if value.count(v) > 1})
        if repeated:
            raise ValueError(f"{', '.join(repeated)} listed twice")
        return value


class KnowledgeConfig(Strict):
    """Passages a retrieval arm can put in the prompt: JSONL or CSV rows, or a folder of text files."""
    path: str = Field(description="a .jsonl or .csv file, or a folder of .txt/.md files (one passage per paragraph)")
    field: str = Field("text", description="the field holding a passage's text (JSONL/CSV)")

    _names = field_validator("path", "field")(filled_name)


class Target(Strict):
    """What the user needs; the decision recommends fine-tuning only when prompting falls short."""
    metric: str | None = Field(None, description="default: the task's decision metric")
    # every quality metric is a share between 0 and 1: a target outside it can never be met, or always is
    value: float | None = Field(None, ge=0, le=1, description="the quality needed on the test split")
    consistency: float | None = Field(None, ge=0, le=1, description="sample agreement needed")
    min_gain: float = Field(0.02, ge=0, le=1, description="smallest quality gain worth fine-tuning for")


class ConsistencyConfig(Strict):
    """How steady an arm's answers are: over samples, over reworded instructions, in format."""
    enabled: bool = True
    samples: int = Field(5, ge=2)
    temperature: float = Field(0.7, gt=0)
    paraphrases: list[str] | None = Field(None, description="rewordings of the instruction; default: 3 generic")
    max_items: int = Field(50, gt=0, description="test items used (the first n)")
    max_share: float = Field(0.5, gt=0, le=1, description="the most of an arm's evaluation time the pass may "
                             "take: fewer items when its repeats would exceed it (1: no limit)")

    @field_validator("paraphrases")
    @classmethod
    def _some_paraphrases(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and not value:
            raise ValueError("is empty, which would quietly mean the 3 generic rewordings; list yours, or leave "
                             "paraphrases out")
        _no_blank(value or [], "paraphrase")
        return value


class Endpoint(Strict):
    """A server speaking OpenAI's chat-completions API; arms name it like a model."""
    base_url: str = Field(description="e.g. https://api.openai.com/v1 or http://localhost:8000/v1")
    model: str = Field(description="the model name the server expects")
    api_key_env: str | None = Field(None, description="environment variable holding the API key (never stored)")
    concurrency: int = Field(8, gt=0)
    timeout_s: float = Field(60.0, gt=0)
    max_retries: int = Field(6, ge=0)
    backoff_s: float = Field(0.5, ge=0, description="first retry waits up to this (doubling, with jitter)")
    logprobs: bool = Field(True, description="score choices through logprobs when the server offers them")
    tokenizer: str | None = Field(None, description="HF id or path to count tokens when usage is absent")

    @field_validator("base_url")
    @classmethod
    def _url(cls, value: str) -> str:
        # a malformed URL would otherwise be retried with backoff before it failed
        parts = urlparse(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"{value!r} is not an http(s) URL; e.g. http://localhost:8000/v1")
        try:
            parts.port  # noqa: B018  raises on a port that is not a number
        except ValueError as err:
            raise ValueError(f"{value!r}: {err}") from None
        return value


class ModelPrice(Strict):
    input_per_million: float = Field(ge=0)
    output_per_million: float = Field(ge=0)


class Budget(Strict):
    """What a run may spend: the plan is cut to fit (search trials, the learning curve, consistency samples,
    training epochs, in that order), or the run is refused before any model work."""
    minutes: float | None = Field(None, gt=0, description="wall-clock minutes on this machine, as the plan estimates")
    money: float | None = Field(None, gt=0, description="in the prices' currency: priced tokens and hardware time")

    @model_validator(mode="after")
    def _something(self) -> "Budget":
        if self.minutes is None and self.money is None:
            raise ValueError("gives no limit: set minutes, money, or both")
        return self


class Prices(Strict):
    """Prices for cost per request, one-time training cost and break-even volume."""
    models: dict[str, ModelPrice] = Field(default_factory=dict, description="per model name, per million tokens")
    hardware_per_hour: float = Field(0.10, ge=0, description="local hardware price per hour (inference)")
    training_per_hour: float | None = Field(None, ge=0, description="default: hardware_per_hour")
    requests_per_month: int | None = Field(
        None, ge=0, description="your volume; cost at volume enters the decision only when it is stated")
    currency: str = "USD"



def assertion_metric_name(config: dict) -> str:
    """The metric an assertion (its configuration as stored) is reported as: its name, else its type."""
    return config.get("name") or config["type"]


class AssertionSettings(Strict):
    """What every assertion type's schema has; each type (tunewise.measure.assertions) adds its fields and
    its `check` of one answer's text."""
    type: str
    name: str | None = Field(None, description="the metric's name; default: the type")

    def metric_name(self) -> str:
        return assertion_metric_name(self.model_dump())

    def check(self, text: str) -> bool:
        raise NotImplementedError


# -- the judge: a model scoring answers against the user's rubric, or comparing two arms' answers ----------
class Criterion(Strict):
    name: str = Field(description="a short name, e.g. clarity")
    description: str = Field(description="what the judge looks for, and what the scale's ends mean")
    scale: tuple[int, int] = Field((1, 5), description="[lowest, highest] whole-number score")

    @model_validator(mode="after")
    def _criterion(self):
        if not self.name.strip() or not self.description.strip():
            raise ValueError("name and description must not be empty")
        if self.scale[0] >= self.scale[1]:
            raise FieldError(f"[{self.scale[0]}, {self.scale[1]}] is not a scale: the lowest score comes first "
                             f"and must be below the highest", "scale")
        return self


class JudgeConfig(Strict):
    """An LLM judge: any local model or an endpoint's name (the embedded model for tests only)."""
    model: str = Field(description="a model id, a local directory, or the name of one of the task's endpoints")
    rubric: list[Criterion] = Field(default_factory=list, description="criteria, each scored on its scale")
    pairs: list[tuple[str, str]] = Field(default_factory=list, description="arm pairs compared answer "
                                         "against answer, asked in both orders (a disagreement is a tie)")
    human_score: str | None = Field(None, description="a data field holding a person's score of human_answer "
                                    "on the rubric's scale: the judge's agreement with it is reported")
    human_answer: str | None = Field(None, description="the data field holding the answer the person scored")
    max_tokens: int = Field(256, gt=0, le=32768, description="room for the judge's rationale and scores")
    min_agreement: float = Field(0.5, ge=-1, le=1, description="below this rank correlation with the human "
                                 "scores, the report warns that the judge's scores are not to be trusted")

    _names = field_validator("model", "human_score", "human_answer")(filled_name)

    @model_validator(mode="after")
    def _judge(self):
        if not self.rubric and not self.pairs:
            raise ValueError("has nothing to judge: give a rubric, pairs of arms, or both")
        names = [c.name for c in self.rubric]
        repeated = next((n for i, n in enumerate(names) if n in names[:i]), None)
        if repeated:
            raise FieldError(f"criterion {repeated!r} is listed twice", "rubric")
        if (self.human_score is None) != (self.human_answer is None):
            raise FieldError("human_score and human_answer go together: the score of which answer?",
                             "human_score" if self.human_score is None else "human_answer")
        if self.human_score and not self.rubric:
            raise FieldError("human scores are compared with rubric scores; the judge has no rubric", "human_score")
        for i, (a, b) in enumerate(self.pairs):
            if a == b:
                raise FieldError(f"compares arm {a!r} with itself", "pairs", i)
        return self



def _no_blank(items: list[str], what: str) -> None:
    if any(not item.strip() for item in items):
        raise ValueError(f"a {what} is empty; remove it or write it out")


def _distinct(items: list[str], what: str) -> None:
    repeated = sorted({x for x in items if items.count(x) > 1})
    if repeated:
        raise ValueError(f"{what} {repeated[0]!r} is listed twice")


def _distinguishable(labels: list[str]) -> None:
    pair = indistinct(labels)
    if pair:
        raise ValueError(f"labels {pair[0]!r} and {pair[1]!r} differ only in case or spacing, so an answer "
                         f"cannot tell them apart; make them one label")


def indistinct(labels: list[str]) -> tuple[str, str] | None:
    """Two labels equal but for case and spacing (answers are matched ignoring both), or None."""
    seen: dict[str, str] = {}
    for label in labels:
        key = " ".join(label.casefold().split())
        if key in seen:
            return seen[key], label
        seen[key] = label
    return None

