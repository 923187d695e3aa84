"""`export`: a stored arm written as a bundle (see `tunewise.bundle`) that answers as the arm was measured.

The arm's prompt arm is rebuilt from the run's stored configuration (and, for examples in the prompt, its
data), then checked: the bundle's prompt must reproduce the exact messages the run sent for every test item,
or nothing is written. A conversation task's test items are read from its data for that check (their
messages are the input; the store keeps only their transcript and the prompts sent).
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Callable
from urllib.parse import urlsplit, urlunsplit

from ..analysis.build import build_report
from ..analysis.model import RunReport
from ..arms import PromptArm, arm_class, build
from ..backends import local_weights
from ..backends.models import model_key, resolve_model
from ..errors import TunewiseError
from ..store.owned import cannot_write, make_folder
from ..store.sqlite import Store
from ..task import Endpoint, Task, arm_name, validate_task
from ..task.data import Example, Splits, fingerprint, load_examples, make_splits
from .bundle import CARD, MANIFEST, PROMPT, Bundle, Manifest, ModelRef, PromptSpec, build_prompter, prompt_spec, sealed
from .card import model_card


def export(store: Store, run_id: str, out: str | Path, arm: str | None = None, *, merge: bool = False,
           gguf: str | None = None, log: Callable[[str], None] = lambda message: None) -> Path:
    """Write the bundle of a run's arm (the recommended one by default) into `out`, a new directory; `gguf`
    (a quantization: f16, q8_0, ...) adds the model as a GGUF file with an Ollama Modelfile."""
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise TunewiseError("already exists and is not an empty directory; choose another --out", file=str(out))
    report = _report(store, run_id)
    run = store.get_run(report.run_id)
    task = validate_task({k: v for k, v in run["config"].items() if k != "decision_metric"}, file="the run's task")
    stored = _stored_arm(store, report, arm, task)
    _warn_unfinished(report, log)
    prompter, model_name = rebuild_prompter(task, stored, run)
    rows = store.predictions(report.run_id, stored["name"])
    spec = prompt_spec(prompter, stored["prompt"])
    check_prompts(spec, rows, _conversations(task, run) if task.data.conversation else None)
    tmp = _scratch(out)
    try:
        model = _write_weights(tmp, task, stored, model_name, merge, log)
        (tmp / PROMPT).write_text(spec.model_dump_json(indent=2))
        manifest = _manifest(report, run, stored, model)
        if gguf:
            manifest.gguf = write_gguf(tmp, task, stored, model, gguf, rows, prompter, report, log)
        (tmp / CARD).write_text(model_card(manifest, spec))
        manifest.files = _hashes(tmp)
        (tmp / MANIFEST).write_text(sealed(manifest))
        if out.exists():
            out.rmdir()
        shutil.move(str(tmp), str(out))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def _scratch(out: Path) -> Path:
    """A new folder beside `out` to write the bundle in, moved into place once whole."""
    make_folder(out.parent, out, "the bundle")
    try:
        return Path(tempfile.mkdtemp(prefix=".export-", dir=out.parent))
    except OSError as err:
        raise cannot_write(out, "the bundle", err) from None


def _report(store: Store, run_id: str) -> RunReport:
    try:
        return build_report(store, run_id)
    except KeyError:
        raise TunewiseError(f"no run {run_id!r} in {store.path}") from None


def _stored_arm(store: Store, report: RunReport, name: str | None, task: Task) -> dict[str, Any]:
    arms = {a["name"]: a for a in store.arms(report.run_id)}
    if name is None:
        name = report.decision.recommended if report.decision else None
        if name is None:
            kind = report.decision.kind if report.decision else "no decision"
            raise TunewiseError(f"run {report.run_id} recommends no arm ({kind}); name the arm to export: "
                                f"{', '.join(arms)}")
    planned = name in {arm_name(c) for c in task.arms}
    if name not in arms and not planned:
        raise TunewiseError(f"run {report.run_id} has no arm {name!r}; its arms: {', '.join(arms)}")
    if name not in arms or arms[name]["status"] != "done":  # an arm that failed in training leaves no row
        ended = f" (the run {UNFINISHED[report.status]})" if report.status in UNFINISHED else ""
        raise TunewiseError(f"arm {name!r} of run {report.run_id} did not finish{ended}; run the task again "
                            f"to finish it")
    return arms[name]


UNFINISHED = {"failed": "failed", "interrupted": "was interrupted", "running": "is still running"}


def _warn_unfinished(report: RunReport, log) -> None:
    """An arm that finished is exported as measured; but the run's recommendation, which the bundle records,
    weighs only the arms that finished."""
    if report.status != "done":
        recommended = report.decision.recommended if report.decision else None
        log(f"warning: run {report.run_id} {UNFINISHED.get(report.status, report.status)}, so not every arm "
            f"finished: its recommendation ({recommended or 'none'}) compares only the arms that did; the "
            f"bundle's manifest and card say so")


# -- the prompt ------------------------------------------------------------------------------------
def rebuild_prompter(task: Task, stored: dict[str, Any], run: dict[str, Any]) -> tuple[PromptArm, str]:
    """The prompt arm that asked the arm's model, prepared as in the run (its examples from the same train
    split), and the name of that model."""
    try:
        cls = arm_class(stored["config"]["type"])
    except KeyError as err:
        raise TunewiseError(str(err).strip("\"'")) from None
    config = cls.Config.model_validate(stored["config"])
    configs = {arm_name(c): c for c in task.arms}
    labels = run["info"].get("labels") or []
    arm = build(config, task, labels, configs)
    if isinstance(arm, PromptArm):
        prompter = arm
    elif hasattr(arm, "restore"):  # a searched arm: its winner, from the search's record
        prompter = arm.restore(stored["training"])
    elif isinstance(getattr(arm, "prompter", None), PromptArm):  # fine-tuned and hybrid arms
        prompter = arm.prompter
    else:
        raise TunewiseError(f"arm {stored['name']!r}: arms of type {config.type!r} cannot be exported")
    prompter.prepare(_splits(task, run) if prompter.k else Splits([], [], []))
    return prompter, _model_of(config, configs, task)


def _model_of(config, configs: dict, task: Task) -> str:
    """The model an arm asks: its own, or (a hybrid) its tuned arm's, else the task's."""
    tuned = getattr(config, "tuned", None)
    if tuned in configs:
        return _model_of(configs[tuned], configs, task)
    return config.model or task.model


def _splits(task: Task, run: dict[str, Any]) -> Splits:
    """The run's splits, from its data file unchanged since the run (its examples are in the prompt)."""
    return make_splits(task, _examples(task, run, "the examples in the arm's prompt"))


def _conversations(task: Task, run: dict[str, Any]) -> dict[str, Example]:
    """A conversation task's examples by id, from its data unchanged since the run: the test items' messages."""
    return {e.id: e for e in _examples(task, run, "the test conversations the prompt is checked on")}


def _examples(task: Task, run: dict[str, Any], what: str) -> list[Example]:
    examples = load_examples(task)
    if fingerprint(examples) != run["data_fingerprint"]:
        raise TunewiseError(f"the data changed since run {run['id']}: {what} cannot be rebuilt",
                            file=str(task.data_path()))
    return examples


def check_prompts(spec: PromptSpec, rows: list[dict[str, Any]],
                  conversations: dict[str, Example] | None = None) -> None:
    """The bundle's prompt must give the messages the run sent, for every test item (a conversation task's
    items with their messages, from `conversations`)."""
    prompter = build_prompter(spec)
    for row in rows:
        messages = None
        if conversations is not None:
            if row["example_id"] not in conversations:
                raise TunewiseError(f"test item {row['example_id']} of the run is not in the data; the bundle's "
                                    f"prompt cannot be checked")
            messages = conversations[row["example_id"]].messages
        example = Example(id=row["example_id"], input=row["input"], target=row["target"], line=0, messages=messages)
        if prompter.messages(example) != row["messages"]:
            raise TunewiseError(f"the rebuilt prompt differs from the one the run sent for test item "
                                f"{row['example_id']}; the bundle would not answer as the arm was measured")


# -- the weights -----------------------------------------------------------------------------------
def _write_weights(out: Path, task: Task, stored: dict[str, Any], model: str, merge: bool, log) -> ModelRef:
    endpoint = task.endpoints.get(model)
    if endpoint is not None:
        if merge:
            raise TunewiseError("--merge needs a local model; this arm asks an endpoint")
        return ModelRef(name=model, key=f"openai:{endpoint.base_url}|{endpoint.model}",
                        endpoint=_without_credentials(endpoint, log))
    weights = local_weights(model, task.endpoints)
    ref = ModelRef(name=model, key=model_key(model), path=resolve_model(model),
                   **(_rendering(weights) if weights else {}))
    tuned = Path((stored["training"] or {}).get("path") or "")
    if stored["training"] is None or not tuned.name:  # a prompt arm
        if merge:
            raise TunewiseError("--merge needs a LoRA arm; this arm has no tuned weights")
        return ref
    if (tuned / "adapter").is_dir():
        _copy_adapter(tuned / "adapter", out / "adapter", model)
        ref.weights = "adapter"
        if merge:
            log("merging the adapter into the base model")
            _merge(model, out / "adapter", out / "merged")
            ref.merged = True
    elif (tuned / "model").is_dir():
        shutil.copytree(tuned / "model", out / "model")
        ref.weights = "model"  # full fine-tuning: the weights are the whole model, merged already
        if merge:
            log("note: a fully fine-tuned arm's weights are a whole model already (model/); --merge adds nothing")
    else:
        raise TunewiseError(f"the arm's tuned weights are gone from {tuned}; run the task again to retrain",
                            file=str(tuned))
    return ref


def _rendering(model: str) -> dict[str, Any]:
    """How the local model's prompts become tokens and where its answers end, read from its tokenizer and
    generation config (no weights loaded): what the model card's code needs to reproduce predict."""
    from transformers import AutoTokenizer, GenerationConfig

    from ..backends.chat import ChatFormat
    path = resolve_model(model)
    chat = ChatFormat(AutoTokenizer.from_pretrained(path))
    stops = {chat.tokenizer.eos_token_id, chat.end_of_turn_id()}
    try:
        eos = GenerationConfig.from_pretrained(path).eos_token_id
    except OSError:  # no generation_config.json
        eos = None
    stops.update(eos if isinstance(eos, list) else [eos])
    return {"rendering": "plain" if chat.plain else "chat_template", "leading_ids": chat.leading_ids(),
            "stop_ids": sorted(t for t in stops if t is not None)}


def write_gguf(out: Path, task: Task, stored: dict[str, Any], model: ModelRef, quantization: str,
               rows: list[dict[str, Any]], prompter, report: RunReport, log) -> dict[str, Any]:
    """model.gguf (llama.cpp's converter over the arm's weights: LoRA merged into the base), the Modelfile, and
    the test answers through llama.cpp beside the run's when llama-cpp-python is installed."""
    from transformers import AutoTokenizer

    from ..backends.chat import ChatFormat
    from .gguf import QUANTIZATIONS, convert, llama_cpp_available, modelfile
    if model.endpoint is not None:
        raise TunewiseError("--gguf needs a local model; this arm asks an endpoint")
    if quantization not in QUANTIZATIONS:
        raise TunewiseError(f"--gguf {quantization}: one of {', '.join(QUANTIZATIONS)}")
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=".gguf-") as scratch:
        convert(_hf_folder(out, model, Path(scratch)), out / "model.gguf", quantization, log)
    chat = ChatFormat(AutoTokenizer.from_pretrained(str(_tokenizer_folder(out, model))))
    stops = chat.tokenizer.convert_ids_to_tokens(model.stop_ids) + list(task.generation.stop)
    text, exact = modelfile(stored["prompt"], chat, stops, task.generation.model_dump(), "model.gguf")
    (out / "Modelfile").write_text(text, encoding="utf-8")
    record = {"file": "model.gguf", "quantization": quantization, "template_exact": exact}
    if not exact:
        log("warning: the Modelfile has no TEMPLATE: this model's chat template cannot be written as Ollama's "
            "exactly (Ollama will use the template it detects)")
    if prompter.decoding == "constrained":
        record["parity"] = {"checked": False, "why": "the arm scores labels; llama.cpp was not asked"}
    elif not llama_cpp_available():
        record["parity"] = {"checked": False, "why": "llama-cpp-python is not installed (pip install "
                                                     "'tunewise[bench]')"}
    else:
        record["parity"] = _parity(out / "model.gguf", chat, rows, prompter, task, report, stored["name"], log)
    return record


def _hf_folder(out: Path, model: ModelRef, scratch: Path) -> Path:
    """The Hugging Face folder of the arm's weights: merged/, model/, the base, or the adapter merged here."""
    if model.weights == "model":
        return out / "model"
    if model.weights == "adapter":
        if model.merged:
            return out / "merged"
        _merge(model.name, out / "adapter", scratch / "merged")
        return scratch / "merged"
    return Path(resolve_model(model.name))


def _tokenizer_folder(out: Path, model: ModelRef) -> Path:
    return out / "model" if model.weights == "model" else Path(resolve_model(model.name))


def _parity(gguf: Path, chat, rows: list[dict[str, Any]], prompter, task: Task, report: RunReport, arm: str,
            log) -> dict[str, Any]:
    """The run's test prompts (their token ids) answered by llama.cpp from the GGUF file: how many answers
    equal the run's, and the decision metric on both; a drop past the run's 95% interval is a warning."""
    from ..backends.base import GenParams, finish_text
    from ..measure import get_metric
    from .gguf import llama_answers
    prompts = [chat.encode(r["messages"]) for r in rows]
    gen = task.generation
    log(f"answering the {len(rows)} test items through llama.cpp from model.gguf")
    params = GenParams(gen.max_tokens, 0.0, tuple(gen.stop), gen.seed, json_object=task.type == "extraction")
    context = max(map(len, prompts)) + gen.max_tokens + 8  # the longest prompt and its answer
    raws = [finish_text(text, params) for text in llama_answers(gguf, prompts, gen.max_tokens, context)]
    name = task.decision_metric()[0]
    metric = get_metric(name, task)
    targets = [r["target"] for r in rows]
    ours = metric.aggregate([prompter._parse(raw) for raw in raws], targets)
    measured = next(a for a in report.arms if a.name == arm).summary.metrics[name]
    same = sum(raw == r["raw"] for raw, r in zip(raws, rows))
    if measured.low is not None and (ours < measured.low if metric.higher_is_better else ours > measured.high):
        log(f"warning: through llama.cpp the GGUF file scores {name} {ours:.3f}, outside the run's 95% interval "
            f"{measured.low:.3f}–{measured.high:.3f}: the exported model answers differently from the measured one")
    return {"checked": True, "items": len(rows), "same_answers": same, "agreement": same / max(1, len(rows)),
            "metric": name, "run": measured.value, "gguf": ours, "run_interval": [measured.low, measured.high]}


def _copy_adapter(source: Path, target: Path, base: str) -> None:
    """PEFT's adapter files (peft and vLLM load them) and the tokenizer saved beside them. The adapter's
    config names its base model as the run named it, not the directory of this machine it was loaded from."""
    shutil.copytree(source, target)
    for name in ("adapter_config.json", "adapter_model.safetensors"):
        if not (target / name).exists():
            raise TunewiseError(f"the adapter lacks {name}", file=str(source))
    config_file = target / "adapter_config.json"
    config = json.loads(config_file.read_text(encoding="utf-8"))
    config["base_model_name_or_path"] = base
    config_file.write_text(json.dumps(config, indent=2), encoding="utf-8")


def _merge(model: str, adapter: Path, target: Path) -> None:
    """The base model with the adapter merged in, in Hugging Face safetensors format with its tokenizer."""
    from transformers import AutoTokenizer

    from ..backends.models import load_adapter, save_model
    merged = load_adapter(model, adapter, "cpu")
    save_model(merged, AutoTokenizer.from_pretrained(resolve_model(model)), target)


def _without_credentials(endpoint: Endpoint, log) -> Endpoint:
    """The endpoint reference; a user name or password in its URL is dropped (the key stays in the environment)."""
    parts = urlsplit(endpoint.base_url)
    if parts.username is None and parts.password is None:
        return endpoint
    log("note: the endpoint's URL held credentials; the bundle keeps the URL without them")
    netloc = parts.hostname + (f":{parts.port}" if parts.port else "")
    return endpoint.model_copy(update={"base_url": urlunsplit(parts._replace(netloc=netloc))})


# -- the manifest ------------------------------------------------------------------------------------
def _manifest(report: RunReport, run: dict[str, Any], stored: dict[str, Any], model: ModelRef) -> Manifest:
    from ..execution.runner import _versions
    arm = next(a for a in report.arms if a.name == stored["name"])
    decision = report.decision
    return Manifest(
        name=f"{report.task}-{arm.name}", run_id=report.run_id, arm=arm.name, arm_type=arm.type,
        family=arm.family or "", method=arm.method,
        recommended=decision is not None and decision.recommended == arm.name,
        task=report.task, task_type=report.config["type"], metric=report.metric,
        metrics={k: v.model_dump() for k, v in arm.summary.metrics.items()}, n_test=arm.summary.n,
        decision=decision.model_dump(include={"recommended", "kind", "metric", "metric_why", "reasons"})
        if decision else {}, model=model, data_fingerprint=run["data_fingerprint"], config_hash=run["config_hash"],
        versions={"run": run["info"].get("versions", {}), "export": _versions_now(_versions())},
        created_at=time.time(), run_status=report.status)


def _versions_now(base: dict[str, str]) -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version
    for package in ("peft", "safetensors"):
        try:
            base[package] = version(package)
        except PackageNotFoundError:
            pass
    return base


def _hashes(folder: Path) -> dict[str, str]:
    from .bundle import sha256
    return {path.relative_to(folder).as_posix(): sha256(path)
            for path in sorted(p for p in folder.rglob("*") if p.is_file())}


__all__ = ["Bundle", "export"]
