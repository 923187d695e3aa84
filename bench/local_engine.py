"""The local engine's four comparisons, side by side in one run; optionally recorded in BENCHMARKS.md.

    python bench/local_engine.py [--write]        # about 25 minutes on 2 cores

1. evaluation throughput: tunewise vs a plain transformers generate loop vs llama.cpp (bench/eval_throughput.py)
2. LoRA training throughput and accuracy: tunewise vs TRL's SFTTrainer (bench/train_throughput.py)
3. utilization: achieved GFLOP/s over the matmul peak torch reaches on this machine (bench/common.py)
4. end to end: wall time of `tunewise demo` in a fresh home (the model already converted)
llama.cpp rows need `pip install llama-cpp-python` (it compiles, about 10 minutes); without it they are skipped.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import eval_throughput  # noqa: E402
import train_throughput  # noqa: E402
from common import machine, matmul_peak  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
BEGIN, END = "<!-- local-engine:begin -->", "<!-- local-engine:end -->"


def demo_wall() -> tuple[float, str]:
    """Seconds for `tunewise demo` in a fresh home, and its recommendation line."""
    home = tempfile.mkdtemp(prefix="tunewise-demo-")
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "tunewise", "demo", "--home", home], env=env,
                          capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"tunewise demo failed:\n{done.stderr[-2000:]}")
    line = next((ln.strip() for ln in done.stdout.splitlines() if "ecommend" in ln), "")
    return seconds, line


def targets(evals, trains, demo_s: float) -> list[str]:
    def rate(engine_prefix: str, arm: str) -> float | None:
        row = next((r for r in evals if r.engine.startswith(engine_prefix) and r.arm == arm), None)
        return row.per_second if row else None

    lines = []
    for arm in ("zero_shot", "8-shot"):
        ours, gen, score = rate("tunewise", arm), rate("llama.cpp generate", arm), rate("llama.cpp scores", arm)
        if gen:
            lines.append(f"- {arm}: tunewise {ours:.1f} ex/s = **{ours / gen:.2f}×** llama.cpp generate "
                         f"({gen:.1f}), {ours / score:.2f}× llama.cpp label scoring ({score:.1f}) — target ≥ 2× "
                         f"{'met' if ours / gen >= 2 else 'NOT met'}")
    zero, eight = rate("tunewise", "zero_shot"), rate("tunewise", "8-shot")
    lines.append(f"- 8-shot / zero-shot throughput: **{eight / zero:.2f}** — target ≥ 0.8 "
                 f"{'met' if eight / zero >= 0.8 else 'NOT met'}")
    by = {r.engine: r for r in trains}
    for precision in ("float32", "bfloat16"):
        ours, theirs = by.get(f"tunewise ({precision})"), by.get(f"TRL SFTTrainer ({precision})")
        if ours and theirs:
            speed = ours.tokens_per_second / theirs.tokens_per_second
            gap = (ours.accuracy - theirs.accuracy) * 100
            lines.append(f"- LoRA training, {precision}: **{speed:.2f}×** TRL's tokens/s, accuracy "
                         f"{ours.accuracy:.3f} vs {theirs.accuracy:.3f} ({gap:+.1f} pt) — target ≥ 1.5× within 1 pt "
                         f"{'met' if speed >= 1.5 and gap >= -1 else 'NOT met'}")
    lines.append(f"- `tunewise demo` end to end: **{demo_s / 60:.1f} min** — target < 10 min "
                 f"{'met' if demo_s < 600 else 'NOT met'}")
    return lines


def report(args) -> str:
    peak32, peak16 = matmul_peak("float32"), matmul_peak("bfloat16")
    evals = eval_throughput.run(args.items, with_llama=not args.no_llama)
    trains = train_throughput.run(args.train)
    demo_s, recommendation = demo_wall()
    parts = [
        f"Machine: {machine()}. Matmul peak measured in the same run: float32 **{peak32:.0f} GFLOP/s**, "
        f"bfloat16 **{peak16:.0f} GFLOP/s** (best of square and model-shaped products, `bench/common.py`).",
        "",
        f"### 1. Evaluation: {args.items} test words of the demo task, examples per second",
        "",
        eval_throughput.table(evals, peak32),
        "",
        "### 2. LoRA training: the demo's `lora` arm (r=8, attention, 1 epoch, batch 8, lr 1e-3), same token sequences",
        "",
        train_throughput.table([r for r in trains if "float32" in r.engine], peak32),
        "",
        train_throughput.table([r for r in trains if "bfloat16" in r.engine], peak16) if any(
            "bfloat16" in r.engine for r in trains) else "",
        "",
        "### 3. Utilization: the GFLOP/s columns above (share of the float32 peak; bfloat16 rows: of the bfloat16 peak)",
        "",
        f"### 4. End to end: `tunewise demo` took **{demo_s:.0f} s ({demo_s / 60:.1f} min)**",
        "",
        f"Its verdict: {recommendation}" if recommendation else "",
        "",
        "### Targets",
        "",
        *targets(evals, trains, demo_s),
    ]
    return "\n".join(parts).replace("\n\n\n", "\n\n")


def write(section: str, command: str) -> None:
    path = ROOT / "BENCHMARKS.md"
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    block = f"{BEGIN}\n## Local engine (issue 6)\n\nCommand: `{command}` (on {time.strftime('%Y-%m-%d')})\n\n{section}\n{END}"
    if BEGIN in text:
        text = re.sub(re.escape(BEGIN) + ".*?" + re.escape(END), lambda _: block, text, flags=re.S)
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    path.write_text(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=200)
    parser.add_argument("--train", type=int, default=1000)
    parser.add_argument("--no-llama", action="store_true")
    parser.add_argument("--write", action="store_true", help="record the tables in BENCHMARKS.md")
    args = parser.parse_args()
    section = report(args)
    print(section)
    if args.write:
        write(section, "python bench/local_engine.py --write")


if __name__ == "__main__":
    main()
