"""The arm role: one way to get answers, prepared on train/dev, then predicting on test."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar

from ..backends.base import Backend, Message, Progress
from ..task import ArmSettings, Task
from ..task.data import Example, Splits
from ..traits import Traits


@dataclass
class Prediction:
    example: Example
    messages: list[Message]
    raw: str
    parsed: Any
    latency_s: float
    input_tokens: int
    output_tokens: int
    cached: bool
    extra: dict[str, Any] = field(default_factory=dict)  # e.g. choice log-probabilities


Advance = Callable[[int, str], None]  # (steps done, a short status such as the loss)


@dataclass
class ArmContext:
    """What the runner lends an arm while it prepares."""
    home: Path                                         # where trained models are kept
    base_backend: Callable[[str], Backend]             # the shared, untrained backend of a model name
    progress: Callable[[str, int], Advance | None]     # a progress bar: (description, total)
    prepared: Callable[[str], "Arm"]                   # another arm of the run, prepared (hybrids use it)
    backend: Callable[[str], Backend] | None = None    # a model's backend with answers cached in the store
    log: Callable[[str], None] = lambda message: None  # a line for the user (e.g. a search's estimate)
    cache: Callable[[Backend], Backend] = lambda backend: backend  # any backend, answers cached in the store


class Arm:
    """The protocol every arm type implements; register a subclass with `tunewise.arms.register`.

    Class attributes tell the registry and the report what the type is: `Config` (its pydantic
    configuration, whose `type` literal names the arm type), `traits` (trains weights, changes only the
    prompt, shows worked answers, ...: the decision, executor, reports and checks read these, and the
    family the report names follows from them) and `methods` (a short description per type name).
    """
    Config: ClassVar[type[ArmSettings]]
    traits: ClassVar[Traits]
    methods: ClassVar[dict[str, str]]

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "traits" not in cls.__dict__ and isinstance(cls.__dict__.get("family"), str):
            cls.traits = Traits.of_family(cls.family)  # declared the older way: a family alone

    name: str
    model: str                    # which model this arm's backend must load
    backend: Backend | None = None  # set by prepare when the arm brings its own model (fine-tuned arms)
    training: dict | None = None    # what training recorded, for the store

    def __init__(self, config: ArmSettings, task: Task, labels: list[str], configs: dict[str, ArmSettings]):
        """`configs` holds every arm of the run by name, for arms that refer to others."""
        raise NotImplementedError

    def prepare(self, splits: Splits, ctx: ArmContext) -> None:
        """Build the prompt, pick examples or train, from train/dev only."""

    def prompt_template(self) -> list[Message]:
        """The exact prompt, with the input shown as {input}; recorded with the results."""
        raise NotImplementedError

    def predict(self, examples: list[Example], backend: Backend,
                progress: Progress | None = None) -> list[Prediction]:
        """Answers for each example, in order."""
        raise NotImplementedError

    # -- what consistency measurement needs -------------------------------------
    decoding: str = "generate"  # or "constrained": the labels are scored

    @property
    def asks_instruction(self) -> bool:
        """Whether the prompt carries an instruction that can be reworded."""
        return False

    def variant(self, *, instruction: str | None = None,
                sampling: tuple[float, int | list[int]] | None = None) -> "Arm":
        """A copy asked with a reworded instruction, or sampled at (temperature, sample index)."""
        raise NotImplementedError

    # -- what the report says about the type ------------------------------------------
    @classmethod
    def data_required(cls, config: dict[str, Any], training: dict | None) -> str:
        """The task data the arm used, in words (the comparison table's 'data required')."""
        return "none"
