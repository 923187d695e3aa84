"""Prompt-engineering arms: zero-shot, structured (three levers), few-shot; free or constrained decoding."""

from __future__ import annotations

import copy
import dataclasses
import heapq
import json
import random
from collections import Counter, defaultdict
from typing import Any, Literal

from pydantic import Field

from ..backends.base import Backend, GenParams, GenRequest, Message, Progress, ScoreRequest
from ..registry import register_arm as register
from ..task import ArmSettings, Levers, Task, arm_name
from ..task.data import Example, Splits, normalize, transcript
from ..task.parsing import parse_answer
from ..traits import Traits
from .base import Arm, Prediction
from .prompts import ALL_OFF, build_messages, system_text


class ZeroShotConfig(ArmSettings):
    type: Literal["zero_shot"]


class StructuredConfig(ArmSettings):
    type: Literal["structured"]
    levers: Levers = Field(default_factory=Levers)


class FewShotConfig(ArmSettings):
    type: Literal["few_shot"]
    k: int = Field(4, gt=0, le=64)
    selection: Literal["random", "similar"] = "random"
    structured: bool = Field(False, description="add context, format and constraints too")
    levers: Levers = Field(default_factory=Levers)
    draw: int = Field(0, ge=0, description="which seeded set of random examples (0: the split seed's)")
    layout: Literal["turns", "list"] = Field(
        "turns", description="turns: each example a user/assistant exchange; list: the examples written out in "
                             "the input's message (small models may copy an assistant turn's label)")


CONVERSATION_NOTE = ("the conversation's messages, in order (a system message of its own is appended to the "
                     "system message above)")


class PromptArm(Arm):
    """What all prompting strategies share: they differ in levers and examples."""

    traits = Traits()
    backend = None   # prompt arms use the runner's backend for their model
    training = None

    def __init__(self, config: ArmSettings, task: Task, labels: list[str], configs: dict | None = None,
                 bare: bool = False, words: dict[str, str] | None = None, shot_seed: int | None = None):
        self.config = config
        self.task = task
        self.labels = labels
        self.name = arm_name(config)
        self.model = config.model or task.model
        self.levers = self._levers()
        # the word the model says for each label (a verbalizer): the label itself unless a search chose others
        self.words = words or {label: label for label in labels}
        # bare: the input alone, no instruction (what a fine-tuned model is asked by default)
        self.system = None if bare else system_text(task, list(self.words.values()), self.levers)
        # (temperature, sample index, or one per example) for consistency runs
        self.sampling: tuple[float, int | list[int]] | None = None
        draw = getattr(config, "draw", 0)
        self.shot_seed = (task.splits.seed + 1_000_003 * draw) if shot_seed is None else shot_seed
        self.pool: list[Example] = []
        self.shots: list[Example] | None = None  # fixed examples (random selection)
        self.layout = getattr(config, "layout", "turns")

    def _levers(self) -> Levers:
        cfg = self.config
        if isinstance(cfg, StructuredConfig) or (isinstance(cfg, FewShotConfig) and cfg.structured):
            return cfg.levers
        return ALL_OFF

    @property
    def k(self) -> int:
        return getattr(self.config, "k", 0)

    @property
    def decoding(self) -> str:
        return self.config.decoding

    @property
    def asks_instruction(self) -> bool:
        return self.system is not None

    # -- preparation --------------------------------------------------------
    def prepare(self, splits: Splits, ctx=None) -> None:
        if not self.k:
            return
        if not splits.train:
            raise ValueError(f"arm {self.name!r} needs examples but the train split is empty")
        self.pool = list(splits.train)
        if getattr(self.config, "selection", "random") == "random":
            self.shots = self._random_shots(random.Random(self.shot_seed))
        else:
            self._index = [_ngrams(e.input) for e in self.pool]
            self._keys = [normalize(e.input) for e in self.pool]  # once, not per item (bench/scale.py)
            self._key_count = Counter(self._keys)
            self._similar: dict[str, list[Example]] = {}

    def _random_shots(self, rng: random.Random) -> list[Example]:
        """k seeded examples; for classification, labels take turns so each is shown."""
        if self.task.type != "classification":
            return rng.sample(self.pool, min(self.k, len(self.pool)))
        by_label: dict[str, list[Example]] = defaultdict(list)
        for e in self.pool:
            by_label[str(e.target)].append(e)
        for group in by_label.values():
            rng.shuffle(group)
        order = sorted(by_label)
        shots, turn = [], 0
        while len(shots) < min(self.k, len(self.pool)):
            group = by_label[order[turn % len(order)]]
            if group:
                shots.append(group.pop())
            turn += 1
        rng.shuffle(shots)
        return shots

    def shots_for(self, example: Example) -> list[Example]:
        if not self.k:
            return []
        if self.shots is not None:
            return self.shots
        key = normalize(example.input)
        if key not in self._similar:  # each item's prompt is built again for every consistency run
            query = _ngrams(example.input)
            # the k most similar, and enough more to leave out the pool's copies of the item itself: no sort of
            # the whole pool for every item
            take = self.k + self._key_count.get(key, 0)
            best = heapq.nsmallest(take, range(len(self.pool)), key=lambda i: (-_overlap(query, self._index[i]), i))
            picked = [self.pool[i] for i in best if self._keys[i] != key]
            self._similar[key] = list(reversed(picked[: self.k]))  # the most similar sits next to the input
        return self._similar[key]

    # -- prompts --------------------------------------------------------------
    def messages(self, example: Example) -> list[Message]:
        return build_messages(self.system, self.shots_for(example), example, self.answer, self.layout)

    def answer(self, example: Example) -> str:
        """A worked example's answer as the model should give it (its label's word)."""
        return self.words.get(str(example.target), example.target_text) if self.labels else example.target_text

    def prompt_template(self) -> list[Message]:
        shots = self.shots if self.shots is not None else []
        messages = build_messages(self.system, shots, "{input}", self.answer, self.layout)
        if self.k and self.shots is None:
            messages.insert(-1, {"role": "note", "content": f"{self.k} most similar train examples"})
        if self.task.data.conversation:  # not one message: the conversation's own turns
            messages[-1] = {"role": "note", "content": CONVERSATION_NOTE}
        return messages

    # -- prediction -------------------------------------------------------------
    def predict(self, examples: list[Example], backend: Backend,
                progress: Progress | None = None) -> list[Prediction]:
        all_messages = [self.messages(e) for e in examples]
        if self.config.decoding == "constrained":
            return self._predict_scored(examples, all_messages, backend, progress)
        return self._predict_generated(examples, all_messages, backend, progress)

    def variant(self, *, instruction: str | None = None,
                sampling: tuple[float, int | list[int]] | None = None) -> "PromptArm":
        """A copy asked with a reworded instruction, or sampled at a temperature with a sample index."""
        other = copy.copy(self)
        if instruction is not None and self.system is not None:
            other.system = system_text(self.task.model_copy(update={"instruction": instruction}),
                                       list(self.words.values()), self.levers)
        other.sampling = sampling
        return other

    def _predict_generated(self, examples, all_messages, backend, progress) -> list[Prediction]:
        gen = self.task.generation
        temperature, sample = self.sampling or (gen.temperature, 0)
        samples = sample if isinstance(sample, list) else [sample] * len(all_messages)
        params = GenParams(gen.max_tokens, temperature, tuple(gen.stop), gen.seed,
                           json_object=self.task.type == "extraction")
        outputs = backend.generate([GenRequest(m, params, s) for m, s in zip(all_messages, samples)], progress)
        return [Prediction(e, m, o.text, self._parse(o.text), o.latency_s, o.input_tokens, o.output_tokens, o.cached)
                for e, m, o in zip(examples, all_messages, outputs)]

    def _parse(self, raw: str):
        if self.task.type != "classification":
            return parse_answer(self.task.type, raw, self.labels)
        label_of = {word: label for label, word in self.words.items()}
        return label_of.get(parse_answer(self.task.type, raw, list(label_of)))

    def _predict_scored(self, examples, all_messages, backend, progress) -> list[Prediction]:
        choices = tuple(self.labels)
        words = tuple(self.words[label] for label in choices)
        outputs = backend.score_choices([ScoreRequest(m, words) for m in all_messages], progress)
        baselines = self._content_free_scores(examples, backend, words) if self.config.calibrate else None
        preds = []
        for i, (e, m, o) in enumerate(zip(examples, all_messages, outputs)):
            scores = o.logprobs if baselines is None else [a - b for a, b in zip(o.logprobs, baselines[i])]
            label = choices[max(range(len(scores)), key=scores.__getitem__)]
            extra = {"logprobs": dict(zip(choices, scores))}
            if baselines is not None:
                extra["uncalibrated"] = dict(zip(choices, o.logprobs))
            preds.append(Prediction(e, m, label, label, o.latency_s, o.input_tokens, o.output_tokens, o.cached,
                                    extra=extra))
        return preds

    def content_free_input(self, example: Example | None = None) -> Example | str:
        """The input with every field (or every message of a conversation) replaced by 'N/A' (Zhao et al., 2021)."""
        if example is not None and example.messages is not None:
            blank = tuple({"role": m["role"], "content": "N/A"} for m in example.messages)
            return dataclasses.replace(example, input=transcript(blank), messages=blank)
        template = self.task.data.input
        fields = self.task.data.input_fields()
        return "N/A" if template in fields else template.format(**{f: "N/A" for f in fields})

    def _content_free_scores(self, examples, backend, words: tuple[str, ...]) -> list[list[float]]:
        """Each item's label scores with its input replaced by a content-free one; identical prompts
        (fixed examples) are scored once."""
        prompts = [build_messages(self.system, self.shots_for(e), self.content_free_input(e), self.answer,
                                  self.layout) for e in examples]
        unique = {json.dumps(p): p for p in prompts}
        scored = backend.score_choices([ScoreRequest(p, words) for p in unique.values()])
        by_key = {k: s.logprobs for k, s in zip(unique, scored)}
        return [by_key[json.dumps(p)] for p in prompts]


@register
class ZeroShot(PromptArm):
    """The instruction alone."""
    Config = ZeroShotConfig
    methods = {"zero_shot": "prompt: zero-shot"}


@register
class Structured(PromptArm):
    """The instruction plus context, output format and constraints, each a switchable lever."""
    Config = StructuredConfig
    methods = {"structured": "prompt: structured"}


@register
class FewShot(PromptArm):
    """Worked examples from the train split in the prompt: seeded random (labels balanced) or the most similar."""
    Config = FewShotConfig
    traits = Traits(shows_answers=True, curve="examples")
    methods = {"few_shot": "prompt: few-shot"}

    @classmethod
    def data_required(cls, config: dict[str, Any], training: dict | None) -> str:
        return f"{config.get('k', '?')} examples in the prompt"


def _ngrams(text: str, n: int = 3) -> set[str]:
    padded = f" {normalize(text)} "
    return {padded[i:i + n] for i in range(max(1, len(padded) - n + 1))}


def _overlap(a: set[str], b: set[str]) -> float:
    shared = len(a & b)
    return shared / (len(a) + len(b) - shared or 1)  # the union's size, without building it
