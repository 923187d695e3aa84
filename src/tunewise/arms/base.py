"""The arm role: one way to get answers, prepared on train/dev, then predicting on test."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol

from ..backends.base import Backend, Message, Progress
from ..data import Example, Splits


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


class Arm(Protocol):
    name: str
    model: str  # which model this arm's backend must load
    # set by prepare when the arm brings its own model (fine-tuned arms); else the runner's is used
    backend: Backend | None
    training: dict | None  # what training recorded, for the store

    def prepare(self, splits: Splits, ctx: ArmContext) -> None:
        """Build the prompt, pick examples or train, from train/dev only."""

    def prompt_template(self) -> list[Message]:
        """The exact prompt, with the input shown as {input}; recorded with the results."""

    def predict(self, examples: list[Example], backend: Backend,
                progress: Progress | None = None) -> list[Prediction]:
        """Answers for each example, in order."""
