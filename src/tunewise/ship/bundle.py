"""The bundle: what `export` writes and `predict`/`serve` read — an arm's prompt, its model, its measured quality.

    bundle/
      manifest.json   the run, the arm, its test metrics with intervals, versions, the model reference, every
                      other file's SHA-256 and its own digest (`manifest_digest`)
      prompt.json     how the arm asks: its prompt arm's config and task texts, label words, examples, passages
      README.md       a Hugging Face model card
      adapter/        LoRA arms: the PEFT adapter (adapter_config.json, adapter_model.safetensors)
      model/          full fine-tuning: the weights and tokenizer
      merged/         with --merge: the LoRA weights merged into the base model, with its tokenizer

A loaded bundle rebuilds the arm's own prompt arm (`tunewise.arms`), so it asks, decodes and parses
answers with the same code the run evaluated it with. `prompt.json` records the task's `data` section, so a
bundle knows whether its task reads conversations (no `data.input`): then an input is a list of {role,
content} messages, sent as the run sent a test conversation, and its examples keep their messages.
"""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, model_serializer

from ..arms import Prediction, PromptArm, arm_class
from ..backends import Backend
from ..errors import TunewiseError
from ..task import Endpoint, Strict, validate_task
from ..task.data import Example, Splits, _ends_with_user, conversation_example

FORMAT = 2  # 2: manifest.json carries its own digest
MANIFEST, PROMPT, CARD = "manifest.json", "prompt.json", "README.md"
# the task fields a prompt arm reads: instruction and lever texts, type, labels, decoding, input template, metrics
PROMPT_FIELDS = ("name", "type", "labels", "json_keys", "instruction", "context", "output_format", "constraints",
                 "metrics", "primary_metric", "generation", "data", "splits", "assertions")


class Shot(Strict):
    input: str
    target: Any
    messages: list[dict[str, str]] | None = Field(
        None, description="a conversation example's messages before its target (input is their transcript)")

    @model_serializer(mode="wrap")
    def _without_messages(self, handler):
        """A text example is written as before conversations existed: {input, target}."""
        data = handler(self)
        if self.messages is None:
            data.pop("messages", None)
        return data


class PromptSpec(Strict):
    """The prompt arm that asks the model, with the state `prepare` gave it on the run's train split."""
    format: int = FORMAT
    task: dict[str, Any] = Field(description="the task fields the prompt and parser read")
    arm: dict[str, Any] = Field(description="the prompt arm's config (its levers, decoding, examples)")
    labels: list[str]
    words: dict[str, str] = Field(description="the word the model says for each label")
    bare: bool = Field(description="the input alone, no instruction (a tuned model's default prompt)")
    shot_seed: int
    shots: list[Shot] | None = Field(None, description="the fixed examples; None: chosen per input")
    pool: list[Shot] = Field(default_factory=list, description="similar selection: the examples chosen from")
    passages: list[str] = Field(default_factory=list, description="retrieval: the knowledge source")
    messages: list[dict[str, str]] = Field(description="the prompt template as the run stored it")
    parser: str = Field(description="how an answer is read, in words")


class ModelRef(Strict):
    """Where answers come from: a local base model (with tuned weights in the bundle) or an endpoint."""
    name: str = Field(description="the run's model name: embedded, hub id, local directory or endpoint name")
    key: str = Field(description="the weights' identity when the run was made (cache key)")
    path: str | None = Field(None, description="the local directory the base weights were loaded from")
    endpoint: Endpoint | None = Field(None, description="an OpenAI-compatible server (its key is never stored)")
    weights: Literal["adapter", "model"] | None = Field(None, description="tuned weights in the bundle")
    merged: bool = False
    # how a local model's prompts become tokens, so the model card's code reproduces predict without tunewise
    rendering: Literal["chat_template", "plain"] | None = Field(
        None, description="chat_template: the tokenizer's; plain: each message's content and a blank line")
    leading_ids: list[int] = Field(default_factory=list, description="special tokens before a plain rendering")
    stop_ids: list[int] = Field(default_factory=list, description="tokens that end an answer")


class Manifest(Strict):
    format: int = FORMAT
    name: str = Field(description="the model id `serve` answers to")
    run_id: str
    arm: str
    arm_type: str
    family: str
    method: str
    recommended: bool
    task: str
    task_type: str
    metric: str = Field(description="the decision metric")
    metrics: dict[str, dict[str, Any]] = Field(description="test metrics: value, low, high (95% bootstrap)")
    n_test: int
    decision: dict[str, Any]
    model: ModelRef
    data_fingerprint: str
    config_hash: str
    versions: dict[str, dict[str, str]]
    created_at: float
    run_status: str = Field("done", description="the run's status at export: done, failed, interrupted, running")
    gguf: dict[str, Any] | None = Field(None, description="export --gguf: the file, its quantization, whether "
                                                          "the Modelfile's template is exact, parity with the run")
    files: dict[str, str] = Field(default_factory=dict, description="path -> sha256")
    digest: str = Field("", description="SHA-256 of this manifest's content but this field (manifest_digest)")


# -- a prompt arm to and from its spec ------------------------------------------------------
def prompt_spec(prompter: PromptArm, messages: list[dict[str, str]]) -> PromptSpec:
    """The spec of a prepared prompt arm."""
    from ..arms.retrieval import Retrieval
    task = prompter.task.model_dump(mode="json")
    dynamic = prompter.k and prompter.shots is None
    return PromptSpec(
        task=_prompt_task(task), arm=prompter.config.model_dump(mode="json"),
        labels=list(prompter.labels), words=dict(prompter.words), bare=prompter.system is None,
        shot_seed=prompter.shot_seed, shots=None if dynamic else [_shot(e) for e in prompter.shots or []],
        pool=[_shot(e) for e in prompter.pool] if dynamic else [],
        passages=list(prompter.index.passages) if isinstance(prompter, Retrieval) else [],
        messages=messages, parser=_parser(prompter))


def _prompt_task(task: dict[str, Any]) -> dict[str, Any]:
    """The task fields the bundle keeps: the judge is not one (it needs its own model), so its metrics go too;
    the assertions stay, and predict scores them."""
    from ..task.rules import declared_names
    kept = {k: task[k] for k in PROMPT_FIELDS}
    judged = set(declared_names([], task.get("judge"))) - set(declared_names(task["assertions"], None))
    kept["metrics"] = [m for m in task["metrics"] or [] if m not in judged] or None
    if task.get("primary_metric") in judged:
        kept["primary_metric"] = None
    return kept


def _shot(example: Example) -> Shot:
    messages = None if example.messages is None else [dict(m) for m in example.messages]
    return Shot(input=example.input, target=example.target, messages=messages)


def _example(shot: Shot, i: int) -> Example:
    messages = None if shot.messages is None else tuple(dict(m) for m in shot.messages)
    return Example(id=f"shot{i}", input=shot.input, target=shot.target, line=0, messages=messages)


def _parser(prompter: PromptArm) -> str:
    kind = prompter.task.type
    if kind == "classification":
        how = "the label scored highest" if prompter.decoding == "constrained" else \
            "the label word stated (an exact answer first, else the earliest label word mentioned)"
        return f"{how}; labels {prompter.labels}, said as {prompter.words}"
    if kind == "extraction":
        return "the first JSON object in the answer (a fenced block or bare braces)"
    return "the answer text, stripped"


def build_prompter(spec: PromptSpec) -> PromptArm:
    """The prompt arm a spec describes, ready to answer."""
    # the task without its arms (they may name models and arms the bundle does not carry): the defaults
    task = validate_task({k: v for k, v in spec.task.items() if k != "arms"}, file=PROMPT)
    cls = arm_class(spec.arm["type"])
    config = cls.Config.model_validate(spec.arm)
    prompter = cls(config, task, spec.labels, {}, bare=spec.bare, words=spec.words, shot_seed=spec.shot_seed)
    if spec.passages:
        from ..arms.knowledge import BM25Index
        prompter.index = BM25Index(spec.passages)  # before prepare, which would read the task's knowledge file
    if spec.shots is not None:
        prompter.shots = [_example(s, i) for i, s in enumerate(spec.shots)]
        prompter.pool = list(prompter.shots)
    else:
        prompter.prepare(Splits([_example(s, i) for i, s in enumerate(spec.pool)], [], []))
    return prompter


# -- a loaded bundle ---------------------------------------------------------------------------
class Bundle:
    """An exported arm, loaded: answers inputs as the arm answered the test split."""

    def __init__(self, path: Path, manifest: Manifest, spec: PromptSpec, prompter: PromptArm, backend: Backend):
        self.path, self.manifest, self.spec = path, manifest, spec
        self.prompter, self.backend = prompter, backend
        self.task = prompter.task

    @classmethod
    def load(cls, path: str | Path, *, device: str = "auto", batch_size: int = 16) -> "Bundle":
        path = Path(path)
        manifest, spec = read_bundle(path)
        prompter = build_prompter(spec)
        return cls(path, manifest, spec, prompter, load_backend(manifest.model, path, device, batch_size))

    @property
    def name(self) -> str:
        return self.manifest.name

    @property
    def conversation(self) -> bool:
        """The task reads conversations (no `data.input`): an input is its list of messages."""
        return self.task.data.conversation

    def examples(self, inputs: list[str | list[dict[str, Any]]], ids: list[str] | None = None) -> list[Example]:
        """The inputs as examples to answer. A single-turn task's input is its text; a conversation task's is
        a list of {role, content} messages ending with the user's (a system message, if any, first), checked
        as the data's are (`DataError`, naming `messages[i]`), or a text, taken as one user message."""
        return [self._example(item, ids[i] if ids else str(i)) for i, item in enumerate(inputs)]

    def _example(self, item: str | list[dict[str, Any]], example_id: str) -> Example:
        if not self.conversation:
            if not isinstance(item, str):
                raise TunewiseError("this bundle's task reads one input text, not a list of messages: send the "
                                    "input alone", field="messages")
            return Example(id=example_id, input=item, target=None, line=0)
        messages = [{"role": "user", "content": item}] if isinstance(item, str) else list(item)
        example = conversation_example(messages, id=example_id)
        _ends_with_user(example.messages, "messages", {"file": None, "line": None}, what="the reply")
        return example

    def answer(self, examples: list[Example], generation: dict[str, Any] | None = None,
               progress=None) -> list[Prediction]:
        """The arm's predictions; `generation` overrides the task's decoding settings (max_tokens, temperature,
        stop, seed) for generated answers."""
        return self._prompter(generation).predict(examples, self.backend, progress)

    def _prompter(self, generation: dict[str, Any] | None) -> PromptArm:
        if not generation:
            return self.prompter
        other = copy.copy(self.prompter)
        settings = self.task.generation.model_copy(update=generation)
        other.task = self.task.model_copy(update={"generation": settings})
        return other

    def prompt_tokens(self, example: Example) -> int | None:
        """The tokens of the prompt an input is asked with; None for a remote model."""
        encode = getattr(self.backend, "encode", None)
        return len(encode(self.prompter.messages(example))) if encode else None

    def context_limit(self) -> int | None:
        """The longest sequence the local model takes (prompt and answer); None when unknown."""
        if getattr(self.backend, "encode", None) is None:
            return None
        return getattr(self.backend.model.config, "max_position_embeddings", None)

    def warm(self) -> None:
        """Load the weights now rather than on the first request."""
        if getattr(self.backend, "encode", None) is not None:
            self.backend.model  # noqa: B018  the property loads them
            self.backend.tokenizer  # noqa: B018


def read_bundle(path: Path) -> tuple[Manifest, PromptSpec]:
    """The bundle's manifest and prompt, once every file is checked to be the one exported."""
    if not (path / MANIFEST).is_file():
        raise TunewiseError(f"not a tunewise bundle (no {MANIFEST}); write one with: tunewise export RUN",
                            file=str(path))
    raw = _json(path / MANIFEST)
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        version = raw.get("format") if isinstance(raw, dict) else None
        raise TunewiseError(f"bundle format {version}; this tunewise reads format {FORMAT}: export the arm again",
                            file=str(path))
    if raw.get("digest") != manifest_digest(raw):
        raise TunewiseError("changed since it was exported (its content does not match the digest it was "
                            "exported with); export the arm again", file=str(path / MANIFEST))
    manifest = _validated(raw, Manifest, path / MANIFEST)
    check_files(path, manifest)
    spec = _read(path / PROMPT, PromptSpec)
    if spec.format != FORMAT:
        raise TunewiseError(f"bundle format {spec.format}; this tunewise reads format {FORMAT}", file=str(path))
    return manifest, spec


def manifest_digest(data: dict[str, Any]) -> str:
    """The SHA-256 of a manifest's content (as parsed from its JSON) without its `digest`: any edited value
    changes it, a change of layout or key order does not."""
    content = {k: v for k, v in data.items() if k != "digest"}
    return hashlib.sha256(json.dumps(content, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


def sealed(manifest: Manifest) -> str:
    """The manifest's JSON with its digest in place."""
    manifest.digest = manifest_digest(json.loads(manifest.model_dump_json()))
    return manifest.model_dump_json(indent=2)


CHECKED_BYTES = 64 << 20  # files up to this size are checked on every load; larger weights only when exported


def check_files(path: Path, manifest: Manifest) -> None:
    """The bundle's files are the ones exported, and no others: an edited prompt would answer differently
    from the arm that was measured, an added file (a tokenizer, a config) could change how it loads. Hidden
    files (a desktop's `.DS_Store`) are no loader's and are let be."""
    for name, digest in manifest.files.items():
        file = path / name
        if not file.is_file():
            raise TunewiseError("missing from the bundle", file=str(file))
        if file.stat().st_size <= CHECKED_BYTES and sha256(file) != digest:
            raise TunewiseError("changed since it was exported (its SHA-256 is not the one manifest.json "
                                "records); export the arm again", file=str(file))
    listed = {*manifest.files, MANIFEST}
    for file in sorted(path.rglob("*")):
        name = file.relative_to(path).as_posix()
        if file.is_file() and name not in listed and not any(p.startswith(".") for p in name.split("/")):
            raise TunewiseError("not one of the files exported (added since); remove it or export the arm again",
                                file=str(file))


def sha256(file: Path) -> str:
    digest = hashlib.sha256()
    with file.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _read(path: Path, model):
    return _validated(_json(path), model, path)


def _json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise TunewiseError("missing from the bundle", file=str(path)) from None
    except ValueError as err:
        raise TunewiseError(f"not valid JSON: {err}", file=str(path)) from None


def _validated(data: Any, model, path: Path):
    try:
        return model.model_validate(data)
    except ValidationError as err:
        first = err.errors()[0]
        raise TunewiseError(first["msg"], file=str(path), field=".".join(str(p) for p in first["loc"])) from None


def load_backend(model: ModelRef, path: Path, device: str, batch_size: int) -> Backend:
    """The arm's model: its endpoint, or the local base model with the bundle's tuned weights, loaded as the
    run loaded them (so the answers are the ones measured)."""
    from ..backends import make_backend, remote_backend
    if model.endpoint is not None:
        return remote_backend(model.endpoint)
    base = make_backend(model.name, device=device, batch_size=batch_size)
    if model.weights is None:
        return base
    from ..backends.local import LocalBackend
    from ..backends.models import load_adapter, load_saved
    if model.weights == "adapter":
        weights = load_adapter(model.name, path / "adapter", base.device)
    else:
        weights = load_saved(path / "model", base.device)
    return LocalBackend.sharing(base, weights, f"{base.model_key}+bundle:{path.resolve()}")


def prediction_record(p: Prediction) -> dict[str, Any]:
    """One answer as `predict` writes it and `serve` returns it: id, answer, parsed value, label scores."""
    record = {"id": p.example.id, "answer": p.raw, "parsed": p.parsed}
    if "logprobs" in p.extra:
        record["scores"] = p.extra["logprobs"]
    return record
