"""The arm role: one way to get answers, prepared on train/dev, then predicting on test."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

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


class Arm(Protocol):
    name: str
    model: str  # which model this arm's backend must load

    def prepare(self, splits: Splits) -> None:
        """Build the prompt, pick examples or train, from train/dev only."""

    def prompt_template(self) -> list[Message]:
        """The exact prompt, with the input shown as {input}; recorded with the results."""

    def predict(self, examples: list[Example], backend: Backend,
                progress: Progress | None = None) -> list[Prediction]:
        """Answers for each example, in order."""
