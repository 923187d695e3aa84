"""The retrieval arm: context provided dynamically — the passages most relevant to each input, in the prompt."""

from __future__ import annotations

import dataclasses
import time
from typing import Any, Literal

from pydantic import Field, model_serializer

from ..registry import register_arm as register
from ..task import Levers
from ..task.data import Example, Splits
from ..traits import Traits
from .prompt import FewShotConfig, PromptArm
from .prompts import build_messages


class RetrievalConfig(FewShotConfig):
    """A few-shot prompt (k: 0 for none) whose context lever holds the passages retrieved for each input."""
    type: Literal["retrieval"]  # type: ignore[assignment]
    k: int = Field(0, ge=0, le=64, description="worked examples from train, as in few_shot")
    passages: int = Field(3, gt=0, le=20, description="passages retrieved per input")
    retriever: Literal["bm25"] = "bm25"
    query: Literal["user_turns", "last_user", "all_turns"] = Field(
        "user_turns", description="conversations: what is searched with: the user's messages, the last counted "
                                  "twice (user_turns), the last user message alone, or every message")
    levers: Levers = Field(default_factory=Levers)
    structured: bool = Field(True, description="the task's context, format and constraints too")
    position: Literal["system", "user"] = Field(
        "system", description="where the passages go: appended to the system message, or in the user message "
                              "before the input (each worked example then shows its own passages)")

    @model_serializer(mode="wrap")
    def _dump(self, handler):
        data = handler(self)
        if data.get("position") == "system":
            data.pop("position")  # configurations (and their hashes) made before the setting existed stay the same
        return data


@register
class Retrieval(PromptArm):
    """BM25 over the task's knowledge source; the top passages go into the system prompt's context."""
    Config = RetrievalConfig
    traits = Traits(retrieves=True)
    methods = {"retrieval": "prompt + retrieval (BM25)"}

    def __init__(self, config: RetrievalConfig, task, labels, configs=None, **kw):
        super().__init__(config, task, labels, configs, **kw)
        self.index = None
        self._found: dict[str, list[str]] = {}

    def _levers(self):
        return self.config.levers if self.config.structured else super()._levers()

    def prepare(self, splits: Splits, ctx=None) -> None:
        from .knowledge import BM25Index, load_passages
        super().prepare(splits, ctx)
        if self.index is None:
            self.index = BM25Index(load_passages(self.task))

    def query(self, example: Example) -> str:
        """The text searched with: the input, or the chosen turns of a conversation."""
        if example.messages is None:
            return example.input
        users = [m["content"] for m in example.messages if m["role"] == "user"]
        if self.config.query == "last_user":
            return users[-1]
        if self.config.query == "all_turns":
            return "\n".join(m["content"] for m in example.messages)
        return "\n".join(users + users[-1:])  # BM25 counts a repeated query term again: the last weighs twice

    def retrieve(self, examples: list[Example]) -> float:
        """Find the passages of every input not searched yet; returns the seconds it took."""
        todo = list(dict.fromkeys(q for q in map(self.query, examples) if q not in self._found))
        start = time.perf_counter()
        if todo:
            for text, found in zip(todo, self.index.search(todo, self.config.passages)):
                self._found[text] = [self.index.passages[i] for i in found]
        return time.perf_counter() - start

    def found(self, example: Example) -> list[str]:
        return self._found[self.query(example)]

    def block(self, example: Example) -> str:
        passages = "\n".join(f"[{i}] {p}" for i, p in enumerate(self.found(example), start=1))
        return f"Relevant passages (retrieved for this input):\n{passages}"

    def messages(self, example: Example):
        if self.config.position == "user":
            return self._messages_in_user_turns(example)
        self.retrieve([example])
        messages = super().messages(example)
        block = self.block(example)
        if messages[0]["role"] == "system":
            messages[0] = {"role": "system", "content": f"{messages[0]['content']}\n\n{block}"}
        else:
            messages.insert(0, {"role": "system", "content": block})
        return messages

    def _messages_in_user_turns(self, example: Example):
        """The passages before the input, and each worked example's own before it: the examples show how an
        answer reads passages, in the form the target has."""
        shots = self.shots_for(example)
        self.retrieve([example, *shots])
        return build_messages(self.system, [self._with_passages(s) for s in shots], self._with_passages(example),
                              self.answer, self.layout)

    def _with_passages(self, example: Example) -> Example:
        block = self.block(example)
        if example.messages is None:
            return dataclasses.replace(example, input=f"{block}\n\n{example.input}")
        turns = [dict(m) for m in example.messages]
        last = max(i for i, m in enumerate(turns) if m["role"] == "user")
        turns[last]["content"] = f"{block}\n\n{turns[last]['content']}"
        return dataclasses.replace(example, messages=tuple(turns))

    def prompt_template(self):
        messages = super().prompt_template()
        where = "appended to the system prompt" if self.config.position == "system" else \
            "put in the user message before it (each worked example's own before that example)"
        note = {"role": "note", "content": f"the {self.config.passages} passages of the knowledge source most "
                                           f"relevant to the input (BM25) are {where}"}
        return [note] + messages

    def predict(self, examples, backend, progress=None):
        shots = [s for e in examples for s in self.shots_for(e)] if self.config.position == "user" else []
        seconds = self.retrieve(examples + shots)
        preds = super().predict(examples, backend, progress)
        from .knowledge import contains_answer
        for p in preds:
            p.latency_s += seconds / max(1, len(preds))  # retrieval is part of each request's cost
            if self.task.type != "classification" and p.example.target is not None:
                p.extra["retrieval_hit"] = contains_answer(self.found(p.example), p.example.target_text)
        return preds

    @classmethod
    def data_required(cls, config: dict[str, Any], training: dict | None) -> str:
        shots = f"{config.get('k')} examples and " if config.get("k") else ""
        return f"{shots}{config.get('passages', 3)} passages a request from the knowledge source"
