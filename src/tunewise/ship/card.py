"""A bundle's README.md: a Hugging Face model card (YAML front matter, then Markdown) from the manifest."""

from __future__ import annotations

from pathlib import Path

import yaml

from ..backends.models import EMBEDDED
from .bundle import Manifest, PromptSpec

HF_TASKS = {"classification": "text-classification", "generation": "text-generation",
            "extraction": "text-generation"}


def model_card(manifest: Manifest, spec: PromptSpec) -> str:
    front = yaml.safe_dump(_front_matter(manifest), sort_keys=False, allow_unicode=True).strip()
    return "\n".join(["---", front, "---", "", *_body(manifest, spec)]) + "\n"


def _front_matter(m: Manifest) -> dict:
    meta: dict = {}
    if m.model.weights == "adapter":
        meta["library_name"] = "peft"
    elif m.model.weights == "model" or m.model.endpoint is None:
        meta["library_name"] = "transformers"
    if _hub_id(m):
        meta["base_model"] = m.model.name
    meta["tags"] = ["tunewise", m.family, m.arm_type]
    metrics = [{"type": name, "value": round(v["value"], 4), "name": f"{name} (test, n={m.n_test}{_ci(v)})"}
               for name, v in m.metrics.items() if v.get("value") is not None]
    meta["model-index"] = [{"name": m.name, "results": [{
        "task": {"type": HF_TASKS[m.task_type], "name": m.task},
        "dataset": {"name": m.task, "type": m.task, "split": "test"}, "metrics": metrics}]}]
    return meta


def _hub_id(m: Manifest) -> bool:
    """A model named on the Hugging Face hub, not the embedded one, a local directory or an endpoint."""
    return m.model.endpoint is None and m.model.name != EMBEDDED and not Path(m.model.name).expanduser().exists()


def _ci(v: dict) -> str:
    return f", 95% CI {v['low']:.3f}–{v['high']:.3f}" if v.get("low") is not None else ""


def _body(m: Manifest, spec: PromptSpec) -> list[str]:
    verdict = "the arm the run recommends" if m.recommended else \
        f"not the arm the run recommends ({m.decision.get('recommended') or 'none'})"
    if m.run_status != "done":
        verdict += f" (the run's status at export: {m.run_status}; not every arm finished, and the " \
                   f"recommendation compares only the arms that did)"
    lines = [f"# {m.name}", "",
             f"The `{m.arm}` arm ({m.method}) of the tunewise run `{m.run_id}` on the task `{m.task}`: {verdict}. "
             f"`tunewise predict` and `tunewise serve` answer with it as it answered the test split.", "",
             f"## Measured quality (test split, {m.n_test} items)", "",
             "| metric | value | 95% interval |", "|---|---|---|"]
    for name, v in m.metrics.items():
        value = "–" if v.get("value") is None else f"{v['value']:.3f}"
        interval = f"{v['low']:.3f}–{v['high']:.3f}" if v.get("low") is not None else "–"
        lines.append(f"| {name}{' (decision)' if name == m.metric else ''} | {value} | {interval} |")
    lines += ["", "## The decision", ""]
    lines += [f"- {reason}" for reason in m.decision.get("reasons", [])] or ["- (none recorded)"]
    lines += ["", "## What answers", "", *_what(m, spec), "", "## Use it", "", *_usage(m, spec), "",
              "## Provenance", "",
              f"Run `{m.run_id}`, config hash `{m.config_hash}`, data fingerprint `{m.data_fingerprint}`; "
              f"versions at the run {_versions(m.versions.get('run'))}, "
              f"at export {_versions(m.versions.get('export'))}. "
              f"`manifest.json` lists every other file's SHA-256 and its own digest; `predict` and `serve` refuse "
              f"a bundle changed since export."]
    return lines


def _what(m: Manifest, spec: PromptSpec) -> list[str]:
    model = m.model
    if model.endpoint is not None:
        source = f"the endpoint `{model.name}`: model `{model.endpoint.model}` at {model.endpoint.base_url}" + \
                 (f" (API key read from `${model.endpoint.api_key_env}`; never stored)" if model.endpoint.api_key_env
                  else "")
    else:
        source = f"the base model `{model.name}`" + (f" (`{model.path}`)" if model.path != model.name else "")
        if model.name == EMBEDDED:
            source += ", tunewise's embedded SmolLM2-135M-Instruct (Q4_1 GGUF, dequantized)"
        source += {"adapter": " with the LoRA adapter in `adapter/`", "model": ", fully fine-tuned: `model/`",
                   None: ""}[model.weights]
        if model.merged:
            source += "; `merged/` holds the adapter merged into the base weights"
    decoding = spec.arm.get("decoding", "generate")
    gen = spec.task.get("generation", {})
    how = "each label scored (log-likelihood), the highest wins" + \
          (", calibrated against a content-free input" if spec.arm.get("calibrate") else "") \
        if decoding == "constrained" else \
        f"generated (max_tokens {gen.get('max_tokens')}, temperature {gen.get('temperature')})"
    examples = ("none" if spec.shots == [] else f"{len(spec.shots)} fixed" if spec.shots is not None
                else f"the {spec.arm.get('k')} most similar of {len(spec.pool)} per input")
    return [f"- Model: {source}.", f"- Prompt: `prompt.json` (the template below; examples in the prompt: "
            f"{examples}{'; passages retrieved per input (BM25)' if spec.passages else ''}).",
            f"- Decoding: {how}.", f"- Parser: {spec.parser}.", "", "```json",
            *_template(spec), "```"]


def _template(spec: PromptSpec) -> list[str]:
    import json
    return json.dumps(spec.messages, indent=2, ensure_ascii=False).splitlines()


def conversation(spec: PromptSpec) -> bool:
    """The task reads conversations (its data has no input text): an input is a list of messages."""
    return spec.task.get("data", {}).get("input") is None


def _usage(m: Manifest, spec: PromptSpec) -> list[str]:
    talk = conversation(spec)
    inputs = "conversations.jsonl --out answers.jsonl   # a {\"messages\": [...]} per line" if talk else \
        "inputs.jsonl --out answers.jsonl   # JSONL, CSV or Parquet in"
    lines = ["`BUNDLE` is this directory. With tunewise installed:", "", "```bash",
             f"tunewise predict {_dir()} {inputs}",
             f"tunewise serve {_dir()}   # OpenAI-compatible: http://127.0.0.1:8000/v1, model \"{m.name}\"",
             "```"]
    if talk:
        lines += _chat_sample(m)
    if m.model.endpoint is not None:
        return lines
    weights = m.model.weights
    base = m.model.path or m.model.name
    load = {"adapter": [f'base = AutoModelForCausalLM.from_pretrained("{base}")',
                        f'model = PeftModel.from_pretrained(base, "{_dir()}/adapter")  # or merged/ with --merge',
                        f'tokenizer = AutoTokenizer.from_pretrained("{_dir()}/adapter")'],
            "model": [f'model = AutoModelForCausalLM.from_pretrained("{_dir()}/model")',
                      f'tokenizer = AutoTokenizer.from_pretrained("{_dir()}/model")'],
            None: [f'model = AutoModelForCausalLM.from_pretrained("{base}")',
                   f'tokenizer = AutoTokenizer.from_pretrained("{base}")']}[weights]
    imports = "from transformers import AutoModelForCausalLM, AutoTokenizer" + \
              ("\nfrom peft import PeftModel" if weights == "adapter" else "")
    where = ("send the arm's messages, then the conversation's own as turns, its system message appended to "
             "the arm's" if talk else "put your input where the template says `{input}`")
    lines += ["", "With transformers" + (" and peft" if weights == "adapter" else "") +
              f" (the arm's prompt is in `prompt.json`: {where}):", "",
              "```python", imports, *load, "```"]
    if spec.arm.get("decoding") == "constrained":
        lines += ["", "This arm scores each label and answers the most likely one; a plain `generate` may answer "
                      "differently. `tunewise predict`/`serve` score the labels as the run did."]
    vllm = f"vllm serve {base}" + (f" --enable-lora --lora-modules {m.name}={_dir()}/adapter" if weights == "adapter"
                                   else "")
    if weights == "model":
        vllm = f"vllm serve {_dir()}/model"
    lines += ["", "With vLLM (it serves the weights; send the arm's prompt from `prompt.json` yourself):", "",
              "```bash", vllm, "```"]
    return lines


def _chat_sample(m: Manifest) -> list[str]:
    """How a conversation is sent to `tunewise serve`: its whole history, as the run sent its test conversations."""
    return ["", "The task's inputs are conversations: send the whole history as a list of messages ending with "
                "the user's. The server sends it after the arm's prompt, as the run did; a system message of "
                "yours is appended to the arm's system message, not put in its place. With the `openai` "
                "package:", "", "```python", "from openai import OpenAI", "",
            'client = OpenAI(base_url="http://127.0.0.1:8000/v1", api_key="unused")  # or the --api-key',
            'messages = [{"role": "system", "content": "The customer has been a member since 2021."},  # optional',
            '            {"role": "user", "content": "Hello, I have a question about my order."},',
            '            {"role": "assistant", "content": "Of course: what is the order number?"},',
            '            {"role": "user", "content": "It is 1234."}]',
            f'reply = client.chat.completions.create(model="{m.name}", messages=messages)',
            "print(reply.choices[0].message.content)", "```"]


def _dir() -> str:
    return "BUNDLE"


def _versions(found: dict | None) -> str:
    return ", ".join(f"{k} {v}" for k, v in (found or {}).items()) or "unknown"
