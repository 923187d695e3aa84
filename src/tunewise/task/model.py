"""The Task: everything tunewise needs to compare ways of solving one task, with the checks across its
fields and the choice of the metrics it is measured and decided on."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal, Union

from pydantic import Field, field_validator, model_validator

from .. import registry
from .schema import (
    ArmSettings,
    AssertionSettings,
    Budget,
    ConsistencyConfig,
    DataConfig,
    Endpoint,
    ExecutorConfig,
    GenerationConfig,
    JudgeConfig,
    KnowledgeConfig,
    LearningCurve,
    Prices,
    SplitConfig,
    Strict,
    Target,
    _distinct,
    _distinguishable,
    _no_blank,
    arm_name,
)

TaskType = Literal["classification", "generation", "extraction"]
# what `arms:` and `assertions:` accept until the registered types replace them (see _accept below)
ArmConfig = ArmSettings
AssertionConfig = AssertionSettings

DEFAULT_METRICS: dict[str, list[str]] = {
    "classification": ["accuracy", "macro_f1"],
    "generation": ["exact_match", "token_f1", "rouge_l"],
    "extraction": ["json_valid", "key_accuracy"],
}
# the quality each task type is decided on when the task names none; format validity (json_valid) is a
# gate and a reported rate, not the thing ranked
MAIN_METRIC = {"classification": "accuracy", "generation": "token_f1", "extraction": "key_accuracy"}
GATES = ("json_valid",)


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
    # the union of the registered assertion types (tunewise.measure.assertions and plugins)
    assertions: list[AssertionConfig] = Field(default_factory=list, description="checks of each answer, each a "
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
    # the union of the registered arm types' configs (rebuilt by _accept as arm types register)
    arms: list[ArmConfig] = Field(default_factory=lambda: [{"type": "zero_shot"}, {"type": "structured"},
                                                           {"type": "few_shot"}], validate_default=True)
    knowledge: KnowledgeConfig | None = Field(None, description="passages for retrieval arms")
    learning_curve: LearningCurve | None = None
    target: Target | None = Field(None, description="the quality the user needs, e.g. accuracy 0.9")
    consistency: ConsistencyConfig = Field(default_factory=ConsistencyConfig)
    prices: Prices = Field(default_factory=Prices)
    budget: Budget | None = Field(None, description="what the run may spend; the plan is cut to fit it")
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
        from .rules import check_task
        check_task(self)
        return self

    def declared_metrics(self) -> list[str]:
        """The metrics the task file declares: each assertion, all of them passed, and the judge's rubric."""
        from .rules import declared_names
        judge = self.judge.model_dump() if self.judge else None
        return declared_names([a.model_dump() for a in self.assertions], judge)

    def known_metrics(self) -> list[str]:
        return sorted(registry.names("metric")) + self.declared_metrics()

    def metric_names(self) -> list[str]:
        """The metrics measured: the task's (or its type's defaults, when it has targets), the declared ones,
        plus the decision metric if missing."""
        defaults = DEFAULT_METRICS[self.type] if self.data.has_target else []
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
        if not self.data.has_target:
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
        for name in ("input", "messages"):  # one of them: a conversation task has no input, and before the
            if out["data"][name] is None:  # option existed no task had messages (its hash stays the same)
                del out["data"][name]
        if self.splits.seeds is None:
            del out["splits"]["seeds"]  # one seed: the configuration (and its hash) as before seeds existed
        if self.executor == ExecutorConfig():
            del out["executor"]
        if self.budget is None:
            del out["budget"]  # no budget: the configuration (and its hash) as before budgets existed
        return out

    def on_seed(self, seed: int) -> "Task":
        """The same task on the re-split of this seed (every seeded choice follows the split seed)."""
        splits = self.splits.model_copy(update={"seed": seed, "seeds": None})
        return self.model_copy(update={"splits": splits})


def _accept(field: str, configs: list[type]) -> None:
    """Make Task's `field` accept exactly the registered types' configs (a union discriminated by `type`)."""
    union = Annotated[Union[tuple(configs)], Field(discriminator="type")] if len(configs) > 1 else configs[0]
    globals()[_UNIONS[field]] = union
    # the field keeps the type it was first resolved with: set it anew, then rebuild the validator
    Task.model_fields[field].annotation = list[union]  # type: ignore[valid-type]
    Task.model_rebuild(force=True)


_UNIONS = {"arms": "ArmConfig", "assertions": "AssertionConfig"}
registry.on_register("arm", lambda classes: _accept("arms", list(dict.fromkeys(c.Config for c in classes))))
registry.on_register("assertion", lambda classes: _accept("assertions", classes))
