"""What an arm is, as traits the decision, executor, reports and checks read instead of type names.

An arm type declares its traits once (`traits = Traits(...)` on the class); its family, as reports name it,
follows from them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Family = Literal["prompt", "retrieval", "fine-tune", "hybrid"]
CurveRole = Literal["train_size", "examples"]


@dataclass(frozen=True)
class Traits:
    trains_weights: bool = False  # answers come from a model trained on the train split
    asks_with_prompt: bool = True  # asks with a prompt of its own (a plain fine-tune asks with the bare input)
    shows_answers: bool = False   # puts worked answers from the train split into its prompt
    retrieves: bool = False       # puts passages from the task's knowledge source into its prompt
    searches: bool = False        # its prompt is searched on the dev split
    selects_on_dev: bool = False  # chooses among candidates (prompts, epochs) by the decision metric on dev
    curve: CurveRole | None = None  # the learning curve it can vary: train examples, or worked examples shown

    @property
    def family(self) -> Family:
        if self.trains_weights:
            return "hybrid" if self.asks_with_prompt else "fine-tune"
        return "retrieval" if self.retrieves else "prompt"

    @property
    def prompting(self) -> bool:
        """Changes only the prompt (prompt and retrieval arms)."""
        return self.asks_with_prompt and not self.trains_weights

    @property
    def hybrid(self) -> bool:
        return self.trains_weights and self.asks_with_prompt

    @property
    def fine_tune(self) -> bool:
        """Trains weights and asks with the bare input (lora, full)."""
        return self.trains_weights and not self.asks_with_prompt

    @classmethod
    def of_family(cls, family: str | None) -> "Traits":
        """The traits a stored family implies, for an arm type this install does not register."""
        return {"fine-tune": cls(trains_weights=True, asks_with_prompt=False, selects_on_dev=True),
                "hybrid": cls(trains_weights=True, selects_on_dev=True),
                "retrieval": cls(retrieves=True), "prompt": cls()}.get(family or "", UNKNOWN)


UNKNOWN = Traits(asks_with_prompt=False)  # a type no install registers: neither prompting nor trained
