"""The task description: a pydantic model whose file form is YAML."""

from __future__ import annotations

import re
import string
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args
from urllib.parse import urlparse

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from . import registry
from .errors import TaskFileError

TaskType = Literal["classification", "generation", "extraction"]

DEFAULT_METRICS: dict[str, list[str]] = {
    "classification": ["accuracy", "macro_f1"],
    "generation": ["exact_match", "token_f1", "rouge_l"],
    "extraction": ["json_valid", "key_accuracy"],
}
# the quality each task type is decided on when the task names none; format validity (json_valid) is a
# gate and a reported rate, not the thing ranked
MAIN_METRIC = {"classification": "accuracy", "generation": "token_f1", "extraction": "key_accuracy"}
GATES = ("json_valid",)
DECLARED = ("assertions", "rubric")  # metric names the task file's assertions and judge bring
ANSWER_ARMS = ("few_shot", "searched")  # prompt arms that show worked answers from the train split


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


def _numeric(annotation: Any) -> bool:
    """Whether a field (or its list's items) takes numbers and not booleans."""
    if annotation is bool:
        return False
    if annotation in (int, float):
        return True
    args = get_args(annotation)
    return bool(args) and bool not in args and any(_numeric(a) for a in args)


class DataConfig(Strict):
    path: str = Field(description="JSONL, CSV or Parquet file, or a saved `datasets` directory")
    format: Literal["auto", "jsonl", "csv", "parquet", "hf"] = "auto"
    input: str = Field(description="a field name, or a template such as '{title}: {body}'")
    target: str | None = Field(None, description="the field holding the expected output; a generation task "
                                                "scored by assertions or a judge alone may have none")
    split_column: str | None = Field(None, description="use this column's train/dev/test values")

    @field_validator("input")
    @classmethod
    def _template(cls, value: str) -> str:
        input_fields(value)
        return value

    def input_fields(self) -> list[str]:
        return input_fields(self.input)


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


class SplitConfig(Strict):
    train: float = Field(0.6, ge=0, le=1)
    dev: float = Field(0.2, ge=0, le=1)
    test: float = Field(0.2, gt=0, le=1)
    seed: int = Field(0, ge=0)
    seeds: list[int] | None = Field(None, description="repeat the comparison on these re-splits (the first is "
                                                      "the report's main split); the verdict states its stability")
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

    @field_validator("seeds")
    @classmethod
    def _seeds(cls, value: list[int] | None) -> list[int] | None:
        if value is None:
            return value
        if not value:
            raise ValueError("is empty; list the split seeds to repeat the comparison on, e.g. [0, 1, 2]")
        if any(s < 0 for s in value):
            raise ValueError("seeds must be 0 or more")
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


class GenerationConfig(Strict):
    max_tokens: int = Field(32, gt=0, le=32768,
                            description="an answer's token budget (a typo of 1e9 would run for hours)")
    temperature: float = Field(0.0, ge=0)
    stop: list[str] = Field(default_factory=list)
    seed: int = Field(0, ge=0)


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
    eval_max: int = Field(200, gt=0, description="dev items scored after each epoch")
    checkpoint_every_s: float = Field(60.0, gt=0, description="how often an interrupted run can resume from")
    train_size: int | None = Field(None, gt=0, description="use only this many train examples (stratified)")
    min_passes: int = Field(0, ge=0, description="repeat epochs until this many examples were seen")
    max_epochs: int = Field(10, gt=0, description="cap on epochs added by min_passes")
    seed: int | None = Field(None, ge=0, description="defaults to the split seed")
    processes: Union[Annotated[int, Field(ge=1)], Literal["auto"]] = Field(
        "auto", description="data-parallel training processes (accelerate, DDP): auto is one per visible GPU "
                            "when there are several, else one (in this process); a number on CPU runs that "
                            "many CPU processes")
    precision: Literal["auto", "float32", "bfloat16"] = Field(
        "auto", description="bfloat16: mixed precision (bf16 matrix products; float32 weights, gradients and "
                            "optimizer); auto: bfloat16 where the hardware has it natively, else float32")


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


class Prices(Strict):
    """Prices for cost per request, one-time training cost and break-even volume."""
    models: dict[str, ModelPrice] = Field(default_factory=dict, description="per model name, per million tokens")
    hardware_per_hour: float = Field(0.10, ge=0, description="local hardware price per hour (inference)")
    training_per_hour: float | None = Field(None, ge=0, description="default: hardware_per_hour")
    requests_per_month: int | None = Field(
        None, ge=0, description="your volume; cost at volume enters the decision only when it is stated")
    currency: str = "USD"


# -- assertions: cheap, deterministic checks of one answer, each a pass/fail metric --------------------------
class _Assertion(Strict):
    name: str | None = Field(None, description="the metric's name; default: the type")

    def metric_name(self) -> str:
        return self.name or self.type  # type: ignore[attr-defined]


class _Range(_Assertion):
    min: float | None = Field(None, ge=0)
    max: float | None = Field(None, ge=0)

    @model_validator(mode="after")
    def _bounds(self):
        if self.min is None and self.max is None:
            raise ValueError("needs min, max or both")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise FieldError(f"min {self.min:g} is above max {self.max:g}", "min")
        return self


class CountAssertion(_Range):
    """The answer's words (or sentences) number between min and max."""
    type: Literal["word_count", "sentence_count"]


class ReadingGradeAssertion(_Range):
    """The answer's Flesch-Kincaid grade level (textstat) lies between min and max (US school grades)."""
    type: Literal["reading_grade"]
    min: float | None = Field(None)


class TextAssertion(_Assertion):
    """contains: one of the values occurs (all: every one); not_contains: none does; starts_with: the answer
    begins with one. Values are plain text, or regular expressions with regex: true."""
    type: Literal["contains", "not_contains", "starts_with"]
    value: list[str]
    regex: bool = False
    case_sensitive: bool = False
    all: bool = Field(False, description="contains only: every value must occur")

    @field_validator("value", mode="before")
    @classmethod
    def _one_value(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @model_validator(mode="after")
    def _values(self):
        if not self.value:
            raise FieldError("is empty; give the text (or regex) to look for", "value")
        for i, item in enumerate(self.value):
            if not item:
                raise FieldError("an empty value matches every answer; remove it", "value", i)
            if self.regex:
                try:
                    re.compile(item)
                except re.error as err:
                    raise FieldError(f"{item!r} is not a valid regular expression: {err}", "value", i) from None
        if self.all and self.type != "contains":
            raise FieldError(f"applies to contains, not {self.type}", "all")
        return self


class JsonAssertion(_Assertion):
    """The answer is valid JSON."""
    type: Literal["is_json"]


class JsonSchemaAssertion(_Assertion):
    """The answer is JSON valid against a JSON Schema (jsonschema), given inline."""
    type: Literal["json_schema"]
    value: dict[str, Any] = Field(description="the JSON Schema, written in YAML or JSON")

    @field_validator("value")
    @classmethod
    def _schema(cls, value: dict[str, Any]) -> dict[str, Any]:
        from .assertions import check_schema
        check_schema(value)
        return value


class LanguageAssertion(_Assertion):
    """The answer is written in one of the languages (ISO 639-1 codes such as en, fr), as langdetect tells."""
    type: Literal["language"]
    value: list[str]

    @field_validator("value", mode="before")
    @classmethod
    def _one_value(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("value")
    @classmethod
    def _codes(cls, value: list[str]) -> list[str]:
        from .assertions import check_languages
        check_languages(value)
        return value


class RefusalAssertion(_Assertion):
    """The answer does not refuse ("I can't help with that", "As an AI ...")."""
    type: Literal["no_refusal"]


Assertion = Annotated[Union[CountAssertion, ReadingGradeAssertion, TextAssertion, JsonAssertion, JsonSchemaAssertion,
                            LanguageAssertion, RefusalAssertion], Field(discriminator="type")]
ASSERTION_TYPES = ("word_count", "sentence_count", "contains", "not_contains", "starts_with", "is_json",
                   "json_schema", "reading_grade", "language", "no_refusal")


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
    max_tokens: int = Field(256, gt=0, description="room for the judge's rationale and scores")
    min_agreement: float = Field(0.5, ge=-1, le=1, description="below this rank correlation with the human "
                                 "scores, the report warns that the judge's scores are not to be trusted")

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


class Task(Strict):
    """Everything tunewise needs to compare ways of solving one task."""
    name: str = "task"
    type: TaskType = "classification"
    data: DataConfig
    labels: list[str] | None = Field(None, description="classification label set; inferred if absent")
    json_keys: list[str] | None = Field(None, description="extraction: the keys expected")
    instruction: str
    context: str | None = None
    output_format: str | None = None
    constraints: list[str] = Field(default_factory=list)
    metrics: list[str] | None = None
    assertions: list[Assertion] = Field(default_factory=list, description="checks of each answer, each a "
                                        "pass/fail metric named after its type (or its name)")
    judge: JudgeConfig | None = Field(None, description="a model scoring answers against a rubric (metric "
                                      "`rubric`), or comparing arms pairwise")
    primary_metric: str | None = Field(None, description="the metric arms are ranked and decided on; default: "
                                                         "the target's metric, else the task type's main one")
    splits: SplitConfig = Field(default_factory=SplitConfig)
    model: str = "smollm2-135m"
    endpoints: dict[str, Endpoint] = Field(default_factory=dict, description="remote models by name")
    cache: Literal["develop", "measure"] = Field(
        "develop", description="develop: reuse answers from earlier runs; measure: fresh answers each run "
                               "(latency and samples measured anew), reused only to resume the same run")
    device: str = "auto"
    batch_size: int = Field(16, gt=0)
    generation: GenerationConfig = Field(default_factory=GenerationConfig)
    # the union of the registered arm types' configs (built by _arm_union as arm types register)
    arms: list[ArmConfig] = Field(default_factory=lambda: [{"type": "zero_shot"}, {"type": "structured"},
                                                           {"type": "few_shot"}], validate_default=True)
    knowledge: KnowledgeConfig | None = Field(None, description="passages for retrieval arms")
    learning_curve: LearningCurve | None = None
    target: Target | None = Field(None, description="the quality the user needs, e.g. accuracy 0.9")
    consistency: ConsistencyConfig = Field(default_factory=ConsistencyConfig)
    prices: Prices = Field(default_factory=Prices)
    executor: ExecutorConfig = Field(default_factory=ExecutorConfig)
    base_dir: str = Field(".", description="relative data paths resolve against this directory")

    @field_validator("executor", mode="before")
    @classmethod
    def _executor_name(cls, value: Any) -> Any:
        return {"type": value} if isinstance(value, str) else value  # `executor: ray`

    @field_validator("constraints", mode="before")
    @classmethod
    def _one_constraint(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("constraints")
    @classmethod
    def _no_blank_constraint(cls, value: list[str]) -> list[str]:
        _no_blank(value, "constraint")
        return value

    @field_validator("instruction")
    @classmethod
    def _instruction(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("is empty; say what the model should do")
        return value

    @field_validator("metrics")
    @classmethod
    def _known_metrics(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and not value:
            raise ValueError("is empty; list at least one metric, or leave metrics out for the task type's")
        _distinct(value or [], "metric")
        return value

    @field_validator("labels", "json_keys")
    @classmethod
    def _names(cls, value: list[str] | None, info) -> list[str] | None:
        if value is None:
            return value
        what = "label" if info.field_name == "labels" else "key"
        if len(value) < (2 if what == "label" else 1):
            raise ValueError("needs at least two labels: one label leaves nothing to classify" if what == "label"
                             else "is empty; list the keys the answer's JSON object must have")
        for item in value:
            if not item.strip() or item != item.strip():
                raise ValueError(f"{what} {item!r} is empty or has spaces around it (targets are read stripped)")
        _distinct(value, what)
        if what == "label":
            _distinguishable(value)
        return value

    @field_validator("device")
    @classmethod
    def _device(cls, value: str) -> str:
        if not re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", value):
            raise ValueError(f"unknown device {value!r}; use auto, cpu, cuda, cuda:N or mps")
        return value

    @field_validator("arms")
    @classmethod
    def _some_arms(cls, value: list) -> list:
        if not value:
            raise ValueError("is empty; list at least one arm, or leave arms out for zero_shot, structured "
                             "and few_shot")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> "Task":
        if self.splits.group_by and self.data.split_column:
            raise FieldError("has no effect with data.split_column: the column fixes the splits", "splits", "group_by")
        if self.type == "extraction" and not self.json_keys:
            raise FieldError("an extraction task needs json_keys: the keys the answer's JSON object must have",
                             "type")
        if self.labels and self.type != "classification":
            raise FieldError(f"labels are for classification tasks, not {self.type}", "labels")
        if self.data.target is not None and self.data.target in self.data.input_fields():
            raise FieldError(f"uses the target field {self.data.target!r}: the answer would be in the question",
                             "data", "input")
        names = [arm_name(a) for a in self.arms]
        for i, arm in enumerate(self.arms):
            if names[i] in names[:i]:
                raise FieldError(f"arm names must be unique; {names[i]!r} is repeated: give one a `name:`",
                                 "arms", i)
            if arm.decoding == "constrained" and self.type != "classification":
                raise FieldError(f"arm {arm_name(arm)!r}: constrained decoding needs a classification task",
                                 "arms", i, "decoding")
            if arm.calibrate and arm.decoding != "constrained":
                raise FieldError(f"arm {arm_name(arm)!r}: calibrate needs decoding: constrained",
                                 "arms", i, "calibrate")
            if registry.family(arm.type) == "retrieval" and self.knowledge is None:
                raise FieldError(f"arm {arm_name(arm)!r} retrieves passages, and the task has no knowledge "
                                 f"source: add knowledge: {{path: ..., field: text}}", "arms", i)
        self._check_declared_metrics()
        from .metrics import METRICS
        for name in self.metrics or []:
            if name not in self.known_metrics():
                raise FieldError(f"unknown metric {name!r}; known: {', '.join(self.known_metrics())}", "metrics")
            if name in METRICS and self.type not in METRICS[name].tasks:
                raise FieldError(f"{name} does not apply to a {self.type} task; it applies to "
                                 f"{' and '.join(METRICS[name].tasks)} tasks", "metrics")
        self._check_references()
        return self

    def _check_references(self) -> None:
        family, types = registry.family, registry.types
        kinds = {arm_name(a): a.type for a in self.arms}
        for i, arm in enumerate(self.arms):
            for field, name, families in arm.references():
                if family(kinds.get(name, "")) not in families:
                    allowed = [t for t in types() if family(t) in families]
                    raise FieldError(f"arm {arm_name(arm)!r}: {field} {name!r} is not the name of "
                                     f"a {' or '.join(families)} arm of the task ({', '.join(allowed)}); add "
                                     f"that arm or name one the task has", "arms", i, field)
            problem = arm.check_types(kinds)
            if problem:
                raise FieldError(f"arm {arm_name(arm)!r}: {problem[0]}", "arms", i, problem[1])
        curve = self.learning_curve
        if curve:
            if curve.arm and family(kinds.get(curve.arm, "")) != "fine-tune":
                raise FieldError(f"{curve.arm!r} is not a lora or full arm of the task", "learning_curve", "arm")
            if curve.few_shot_arm and kinds.get(curve.few_shot_arm) != "few_shot":
                raise FieldError(f"{curve.few_shot_arm!r} is not a few_shot arm of the task",
                                 "learning_curve", "few_shot_arm")
            if not any(family(t) == "fine-tune" or t == "few_shot" for t in kinds.values()):
                raise FieldError("needs a lora, full or few_shot arm to vary; the task has none",
                                 "learning_curve")
            tuned = any(family(t) == "fine-tune" for t in kinds.values()) and any(s != "all" for s in curve.sizes)
            if not tuned and not (curve.ks and "few_shot" in kinds.values()):
                raise FieldError("has no point to run: give sizes (with a lora or full arm) or ks (with a "
                                 "few_shot arm)", "learning_curve")
        from .metrics import METRICS
        target_metric = self.target.metric if self.target else None
        for loc, name in ((("target", "metric"), target_metric), (("primary_metric",), self.primary_metric)):
            if name is not None and name not in self.known_metrics():
                raise FieldError(f"unknown metric {name!r}; known: {', '.join(self.known_metrics())}", *loc)
            if name in METRICS and self.type not in METRICS[name].tasks:
                raise FieldError(f"{name} does not apply to a {self.type} task", *loc)
        if self.decision_metric()[0] == "rubric":
            picky = next((arm_name(a) for a in self.arms
                          if a.type == "searched" or registry.family(a.type) == "fine-tune"), None)
            if picky:
                raise FieldError(f"the judge's rubric scores only the test answers, and arm {picky!r} selects on "
                                 f"dev with the decision metric; decide on an assertion or a reference metric",
                                 "primary_metric" if self.primary_metric else "target")
        if target_metric and self.primary_metric and target_metric != self.primary_metric:
            raise FieldError(f"primary_metric {self.primary_metric!r} differs from the target's metric "
                             f"{self.target.metric!r}: the verdict is decided on one metric", "primary_metric")

    def _check_declared_metrics(self) -> None:
        """Assertion names distinct from each other and from the built-in metrics; a task without targets
        scored only by metrics that need none; a judge's pairs naming arms of the task."""
        from .metrics import METRICS
        seen: list[str] = []
        for i, assertion in enumerate(self.assertions):
            name = assertion.metric_name()
            if name in METRICS or name in DECLARED:
                raise FieldError(f"{name!r} is a built-in metric's name; give the assertion another name:",
                                 "assertions", i, "name")
            if name in seen:
                raise FieldError(f"two assertions are named {name!r}; give one a `name:`", "assertions", i)
            seen.append(name)
        arm_names = [arm_name(a) for a in self.arms]
        for i, pair in enumerate(self.judge.pairs if self.judge else []):
            missing = next((n for n in pair if n not in arm_names), None)
            if missing is not None:
                raise FieldError(f"{missing!r} is not an arm of the task ({', '.join(arm_names)})", "judge", "pairs", i)
        if self.data.target is None:
            self._check_reference_free()

    def _check_reference_free(self) -> None:
        from .metrics import METRICS
        if self.type != "generation":
            raise FieldError(f"required for a {self.type} task (only a generation task scored by assertions or a "
                             f"judge may go without targets)", "data", "target")
        if not self.declared_metrics():
            raise FieldError("is missing and nothing else can score the answers: a generation task without "
                             "targets needs assertions or a judge rubric", "data", "target")
        needing = [n for n in self.metrics or [] if n in METRICS and METRICS[n].needs_target]
        if needing:
            raise FieldError(f"{needing[0]} compares answers with targets, and the task has none (data.target); "
                             f"score with assertions or a judge", "metrics")
        if "arms" not in self.model_fields_set:  # the default arms: few_shot needs worked answers
            self.arms = [a for a in self.arms if a.type != "few_shot"]
        for i, arm in enumerate(self.arms):
            if arm.type in ANSWER_ARMS or registry.family(arm.type) in ("fine-tune", "hybrid"):
                what = "trains on" if registry.family(arm.type) != "prompt" else "shows the model"
                raise FieldError(f"arm {arm_name(arm)!r} {what} worked answers, and the task has no target "
                                 f"column (data.target): add one with the answers, or drop the arm", "arms", i)
        if self.learning_curve is not None:
            raise FieldError("varies the worked answers, and the task has none (data.target)", "learning_curve")

    def declared_metrics(self) -> list[str]:
        """The metrics the task file declares: each assertion, all of them passed, and the judge's rubric."""
        names = [a.metric_name() for a in self.assertions]
        if self.assertions:
            names.append("assertions")
        if self.judge and self.judge.rubric:
            names.append("rubric")
        return names

    def known_metrics(self) -> list[str]:
        from .metrics import METRICS
        return sorted(METRICS) + self.declared_metrics()

    def metric_names(self) -> list[str]:
        """The metrics measured: the task's (or its type's defaults, when it has targets), the declared ones,
        plus the decision metric if missing."""
        defaults = DEFAULT_METRICS[self.type] if self.data.target is not None else []
        names = list(self.metrics or defaults)
        names += [n for n in self.declared_metrics() if n not in names]
        main = self.decision_metric()[0]
        return names if main in names else names + [main]

    def decision_metric(self) -> tuple[str, str]:
        """The metric the verdict is decided on, and why it was chosen."""
        if self.target is not None and self.target.metric:
            return self.target.metric, "the target's metric"
        if self.primary_metric:
            return self.primary_metric, "the task's primary_metric"
        if self.data.target is None:
            if self.assertions:
                return "assertions", "the share of answers passing every assertion (the task has no targets)"
            return "rubric", "the judge's rubric score (the task has no targets)"
        names = self.metrics or DEFAULT_METRICS[self.type]
        if MAIN_METRIC[self.type] in names:
            return MAIN_METRIC[self.type], f"the main quality metric of {self.type} tasks"
        quality = [n for n in names if n not in GATES]
        return (quality or names)[0], "the first quality metric listed"

    def data_path(self) -> Path:
        return self.path_of(self.data.path)

    def path_of(self, name: str) -> Path:
        """A path from the task file, relative to the task file's folder."""
        path = Path(name).expanduser()
        return path if path.is_absolute() else Path(self.base_dir) / path

    def resolved(self) -> dict[str, Any]:
        """The configuration with every default filled in, as stored with results."""
        out = self.model_dump(mode="json")
        out["metrics"] = self.metric_names()
        name, why = self.decision_metric()
        out["decision_metric"] = {"name": name, "why": why}
        out["arms"] = [dict(a, name=arm_name(arm)) for a, arm in zip(out["arms"], self.arms)]
        if self.splits.seeds is None:
            del out["splits"]["seeds"]  # one seed: the configuration (and its hash) as before seeds existed
        if self.executor == ExecutorConfig():
            del out["executor"]
        return out

    def on_seed(self, seed: int) -> "Task":
        """The same task on the re-split of this seed (every seeded choice follows the split seed)."""
        splits = self.splits.model_copy(update={"seed": seed, "seeds": None})
        return self.model_copy(update={"splits": splits})


def _arm_union(configs: list[type[ArmSettings]]) -> None:
    """Make Task accept exactly the registered arm types (a union discriminated by `type`)."""
    global ArmConfig
    ArmConfig = Annotated[Union[tuple(configs)], Field(discriminator="type")] if len(configs) > 1 else configs[0]
    # the field keeps the type it was first resolved with: set it anew, then rebuild the validator
    Task.model_fields["arms"].annotation = list[ArmConfig]  # type: ignore[valid-type]
    Task.model_rebuild(force=True)


registry.on_register(_arm_union)


def arm_name(arm: ArmSettings) -> str:
    return arm.name or arm.type


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


def load_task(path: str | Path) -> Task:
    """Read a task file; errors name the file, the line and the field."""
    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise TaskFileError("task file not found", file=str(path)) from None
    except UnicodeDecodeError as err:
        raw = path.read_bytes()
        hint = "; it looks like UTF-16: save it as UTF-8" if raw[:2] in (b"\xff\xfe", b"\xfe\xff") else ""
        raise TaskFileError(f"not valid UTF-8 text{hint}", file=str(path), line=raw[: err.start].count(b"\n") + 1) \
            from None
    except OSError as err:
        raise TaskFileError(f"cannot read the task file ({err.strerror})", file=str(path)) from None
    try:
        root = yaml.compose(text)
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        line = mark.line + 1 if mark else None
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise TaskFileError(f"invalid YAML: {problem}", file=str(path), line=line) from None
    except RecursionError:
        raise TaskFileError("invalid YAML: nested too deeply", file=str(path)) from None
    if not isinstance(data, dict):
        raise TaskFileError("expected a mapping of task fields at the top level", file=str(path), line=1)
    _no_repeated_keys(root, str(path))
    data.setdefault("base_dir", str(path.parent))
    return validate_task(data, file=str(path), root=root)


def _no_repeated_keys(node: yaml.Node | None, file: str, where: str = "") -> None:
    """YAML lets a later key silently replace an earlier one; a task file that says a thing twice is a mistake."""
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key, value in node.value:
            name = str(key.value)
            field = f"{where}.{name}" if where else name
            if name in seen:
                raise TaskFileError(f"{name!r} is given twice; keep one (YAML would silently use the last)",
                                    file=file, line=key.start_mark.line + 1, field=field)
            seen.add(name)
            _no_repeated_keys(value, file, field)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _no_repeated_keys(item, file, f"{where}.{i}")


def validate_task(data: dict[str, Any], *, file: str = "<task>", root: yaml.Node | None = None) -> Task:
    try:
        return Task.model_validate(data)
    except ValidationError as err:
        first = err.errors()[0]
        cause = (first.get("ctx") or {}).get("error")
        raw_loc = (*first["loc"], *cause.loc) if isinstance(cause, FieldError) else first["loc"]
        loc = [str(p) for p in _file_loc(raw_loc)]
        line = _line_of(root, raw_loc) if root is not None else None
        field = ".".join(loc) or None
        message = str(cause) if isinstance(cause, ValueError) else first["msg"]
        if first["type"] == "extra_forbidden":
            message = "unknown key"
        elif first["type"] == "missing":
            message = "required, but missing"
        elif first["type"] in ("union_tag_invalid", "union_tag_not_found"):
            kind = first["input"].get("type") if isinstance(first["input"], dict) else None
            what, types = ("assertion", ASSERTION_TYPES) if loc[:1] == ["assertions"] else ("arm", registry.types())
            message = (f"unknown {what} type {kind!r}" if kind is not None else f"an {what} needs a type") + \
                f"; {what} types: {', '.join(types)}"
        raise TaskFileError(message, file=file, line=line, field=field) from None


def _file_loc(loc: tuple) -> list:
    """An error location as the file names it: without the tags pydantic adds for union members
    (an arm's type, 'constrained-int', "literal['all']")."""
    out = []
    for part in loc:
        tagged = out and isinstance(out[-1], int) and len(out) >= 2 and (
            (out[-2] == "arms" and part in registry.types()) or (out[-2] == "assertions" and part in ASSERTION_TYPES))
        if tagged or (isinstance(part, str) and (part.startswith(("constrained-", "literal[", "function-"))
                                                  or part in ("int", "str", "float"))):
            continue
        out.append(part)
    return out


def _line_of(node: yaml.Node | None, loc: tuple) -> int | None:
    """Walk a composed YAML tree along a pydantic error location; return the deepest line found."""
    line = node.start_mark.line + 1 if node is not None else None
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            match = next(((k, v) for k, v in node.value if k.value == str(part)), None)
            if match is None:
                continue  # pydantic adds union tags to loc that the file does not have
            key, node = match
            # an unknown key is reported at its own line; a bad value at the value's line
            line = key.start_mark.line + 1 if node is None else node.start_mark.line + 1
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
            line = node.start_mark.line + 1
    return line
