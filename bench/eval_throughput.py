"""Classification evaluation speed on the demo's test words: tunewise vs transformers generate vs llama.cpp.

    python bench/eval_throughput.py [--items 200]

Every engine answers the same chat-templated prompts (token for token) of two prompt arms of the demo
task: zero-shot, and 8-shot with 8 fixed train examples. tunewise scores the two labels (its
`constrained` decoding); the plain transformers loop and llama.cpp generate up to 3 tokens, greedy, as a
user of those libraries would. llama.cpp also gets a label-scoring row (last-position logits after
the prompt, its KV cache reused across prompts), the strongest baseline it offers.
Results: examples per second, accuracy, and achieved GFLOP/s (matrix products of the tokens each
engine runs, padding excluded).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import accuracy, demo_data, rate_table, timed  # noqa: E402
from tunewise.backends.local import _common_prefix_len  # noqa: E402

MAX_NEW = 3


@dataclass
class EvalRow:
    engine: str
    arm: str
    items: int
    seconds: float
    accuracy: float
    gflop: float  # useful matrix-product work done

    @property
    def per_second(self) -> float:
        return self.items / self.seconds


class Flops:
    """Matrix-product FLOPs of a forward pass: 2 x body weights per token, 2 x head per logits row."""

    def __init__(self, model):
        head = model.get_output_embeddings().weight.numel()
        embed = model.get_input_embeddings().weight.numel()
        tied = model.get_output_embeddings().weight.data_ptr() == model.get_input_embeddings().weight.data_ptr()
        total = sum(p.numel() for p in model.parameters())
        self.body = total - embed - (0 if tied else head)
        self.head = head

    def __call__(self, tokens: int, head_rows: int) -> float:
        return (2 * self.body * tokens + 2 * self.head * head_rows) / 1e9


def prompt_arms(data):
    from tunewise.arms import FewShotConfig, ZeroShotConfig
    from tunewise.arms.prompt import PromptArm
    zero = PromptArm(ZeroShotConfig(type="zero_shot", name="zero_shot", decoding="constrained"), data.task, data.labels)
    eight = PromptArm(FewShotConfig(type="few_shot", name="8-shot", k=8, decoding="constrained"), data.task, data.labels)
    eight.prepare(data.splits)
    return [zero, eight]


# -- engines -----------------------------------------------------------------------------------
def run_tunewise(backend, arm, test, flops: Flops) -> EvalRow:
    preds, seconds = timed(arm.predict, test, backend)
    prompts = [backend.encode(arm.messages(e)) for e in test]
    shared = _common_prefix_len(prompts)
    tokens = shared + sum(len(p) - shared for p in prompts)
    return EvalRow("tunewise (scores labels)", arm.name, len(test), seconds,
                   accuracy([p.parsed for p in preds], [e.target for e in test]), flops(tokens, len(test)))


def run_hf_generate(backend, arm, test, flops: Flops, batch_size: int = 16) -> EvalRow:
    """The loop a transformers user writes: left-padded batches in input order, model.generate, parse."""
    import torch

    from tunewise.task.parsing import parse_label
    tok, model = backend.tokenizer, backend.model
    texts = [backend.render(arm.messages(e)) for e in test]
    tok.padding_side = "left"
    answers, generated, prompt_tokens = [], 0, 0

    def loop():
        nonlocal generated, prompt_tokens
        for start in range(0, len(texts), batch_size):
            enc = tok(texts[start:start + batch_size], return_tensors="pt", padding=True, add_special_tokens=False)
            with torch.inference_mode():
                out = model.generate(**enc, max_new_tokens=MAX_NEW, do_sample=False, pad_token_id=backend.pad_id(),
                                     eos_token_id=backend.stop_token_ids())
            new = out[:, enc["input_ids"].shape[1]:]
            prompt_tokens += int(enc["attention_mask"].sum())
            generated += int((new != backend.pad_id()).sum())
            answers.extend(tok.batch_decode(new, skip_special_tokens=True))
    _, seconds = timed(loop)
    parsed = [parse_label(a, arm.labels) for a in answers]
    return EvalRow("transformers generate", arm.name, len(test), seconds,
                   accuracy(parsed, [e.target for e in test]), flops(prompt_tokens + generated, generated))


def load_llama(gguf: Path):
    try:
        from llama_cpp import Llama
    except ImportError:
        return None
    return Llama(model_path=str(gguf), n_ctx=2048, n_batch=512, n_threads=2, verbose=False, seed=0)


def run_llama_generate(llm, backend, arm, test, flops: Flops) -> EvalRow:
    """llama.cpp's completion API on the same token ids; it reuses the KV cache of a shared prefix itself."""
    from tunewise.task.parsing import parse_label
    prompts = [backend.encode(arm.messages(e)) for e in test]
    llm.reset()

    def loop():
        return [llm.create_completion(prompt=p, max_tokens=MAX_NEW, temperature=0.0) for p in prompts]
    outs, seconds = timed(loop)
    parsed = [parse_label(o["choices"][0]["text"], arm.labels) for o in outs]
    generated = sum(o["usage"]["completion_tokens"] for o in outs)
    shared = _common_prefix_len(prompts)
    tokens = shared + sum(len(p) - shared for p in prompts) + generated
    return EvalRow("llama.cpp generate (Q4_1)", arm.name, len(test), seconds,
                   accuracy(parsed, [e.target for e in test]), flops(tokens, generated + len(test)))


def run_llama_score(llm, backend, arm, test, flops: Flops) -> EvalRow:
    """llama.cpp scoring the labels' first tokens from the logits after each prompt, prefix KV reused."""
    import numpy as np
    prompts = [backend.encode(arm.messages(e)) for e in test]
    first = [backend.choice_ids(label)[0] for label in arm.labels]  # the demo's labels are one token each
    shared = _common_prefix_len(prompts)
    llm.reset()

    def loop():
        llm.eval(prompts[0][:shared])
        picked = []
        for p in prompts:
            llm.n_tokens = shared  # eval() drops the KV cache after n_tokens: the prefix stays
            llm.eval(p[shared:])
            # the last position's logits (llama-cpp-python keeps no copy unless logits_all=True)
            logits = np.ctypeslib.as_array(llm._ctx.get_logits(), shape=(llm.n_vocab(),))
            picked.append(arm.labels[int(np.argmax(logits[first]))])
        return picked
    picked, seconds = timed(loop)
    tokens = shared + sum(len(p) - shared for p in prompts)
    return EvalRow("llama.cpp scores labels (Q4_1)", arm.name, len(test), seconds,
                   accuracy(picked, [e.target for e in test]), flops(tokens, len(test)))


def run(items: int = 200, directory: Path | None = None, with_llama: bool = True) -> list[EvalRow]:
    from tunewise.backends.local import LocalBackend
    from tunewise.backends.models import EMBEDDED, embedded_gguf
    directory = directory or Path(tempfile.mkdtemp(prefix="tunewise-bench-"))
    data = demo_data(directory)
    test = data.splits.test[:items]
    backend = LocalBackend(EMBEDDED, device="cpu", batch_size=data.task.batch_size)
    flops = Flops(backend.model)
    llm = load_llama(embedded_gguf()) if with_llama else None
    rows = []
    for arm in prompt_arms(data):
        arm.predict(test[:8], backend)  # warm-up: first-call allocations, lazy imports
        rows.append(run_tunewise(backend, arm, test, flops))
        rows.append(run_hf_generate(backend, arm, test, flops))
        if llm is not None:
            rows.append(run_llama_generate(llm, backend, arm, test, flops))
            rows.append(run_llama_score(llm, backend, arm, test, flops))
    if llm is not None:
        llm.close()  # freed now, not by an interpreter shutting down
    return rows


def table(rows: list[EvalRow], peak: float | None = None) -> str:
    headers = ["engine", "prompt", "examples/s", f"s for {rows[0].items}", "accuracy"]
    cells = [[r.engine, r.arm, f"{r.per_second:.1f}", f"{r.seconds:.2f}", f"{r.accuracy:.3f}"] for r in rows]
    return rate_table(headers, cells, [r.gflop / r.seconds for r in rows], peak)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=200)
    parser.add_argument("--no-llama", action="store_true")
    args = parser.parse_args()
    print(table(run(args.items, with_llama=not args.no_llama)))


if __name__ == "__main__":
    main()
