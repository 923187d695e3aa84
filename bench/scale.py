"""How each stage's cost grows with the task's size: time and peak memory on generated tasks of 1k, 10k and 50k rows.

    python bench/scale.py [--write]          # 1k, 10k, 50k rows, train capped at 1000 and not (~8 min on 2 cores)
    python bench/scale.py --rows 1000,2000,4000 --train-batches 3      # a check in about 2 minutes
    options: --rows 1000,10000,50000  --eval-items 0.4% | 4,40,200  --train-cap 1000  --train-batches 12
             --only capped|uncapped

The task: short generated reviews ("the hotel was really lovely and calm today"), labels positive/negative,
deterministic from --seed; splits 0.6/0.2/0.2 stratified, as the demo's. Each size runs twice: `capped`
sets splits.max_train (--train-cap), `uncapped` trains on the whole train split. A size whose train split is
within the cap runs once (both settings are the same there).
Each (size, setting) runs in a fresh process, through the functions `tunewise run` calls, one stage after
another, each timed (perf_counter) with its own peak memory (Linux: the peak RSS is reset before each stage;
the table shows the peak over the RSS at the stage's start, so models loaded before a stage are not in it):
  loading     the task file read and every row read and checked into an Example (load_task, load_examples)
  splitting   make_splits (stratified fractions, the train cap)
  checking    the runner's checks before any arm: label_set, check_leakage, check_before_running, and the
              data fingerprint the run is stored under
  selection   a few-shot arm (k=8, selection: similar) indexes the whole train split and picks the shots of
              every evaluated item (PromptArm.prepare, shots_for); items: the evaluated items, pool: train rows
  evaluation  that arm answers the evaluated items with the local backend (the embedded SmolLM2-135M scoring
              the labels, float32 on CPU); the items: --eval-items, default 0.4% of the rows, first of the test split
  training    one epoch of a LoRA arm (r=8, alpha=16, batch 8, lr 1e-3, attention) through the
              arm's own SFT sequences and tunewise's SFTTrainer, without the dev evaluation after the epoch.
              Setup (every train row's SFT sequence, the trainer, the epoch's batch plan) is measured whole; of
              the epoch's batches the first --train-batches run (0: all), and the rest are estimated at their
              time per padded token (a step only collates and runs its own batch)
Slopes: least squares of log(time) on log(items) over the sizes (1 is linear; "vs rows": on log(rows), so
a stage whose cost a cap fixes has a slope near 0 there). MB per 1k rows: the peak's growth with the rows
(least squares). Other processes' use of the CPUs during each stage is measured (/proc/stat) and reported.
Progress goes to stderr, the Markdown to stdout; --write records it in BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import importlib
import json
import math
import os
import random
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine  # noqa: E402  (sets HF_HUB_OFFLINE)

ROOT = Path(__file__).resolve().parent.parent
BEGIN, END = "<!-- scale:begin -->", "<!-- scale:end -->"
STAGES = ["loading", "splitting", "checking", "selection", "evaluation", "training"]
LINEAR = 1.15  # a slope above this is reported as growing faster than linearly
SHORT_S = 0.1  # a stage this fast at every size has no slope worth fitting
REPEAT_S = 0.5  # a data stage faster than this is timed 5 times, the fastest counting

# ---------------------------------------------------------------- the generated task
SUBJECTS = ["the hotel", "the room", "the food", "the staff", "the screen", "the battery", "the delivery",
            "the price", "the movie", "the book", "the app", "the car", "the coffee", "the seller", "the update",
            "the service", "the concert", "the shoes", "the garden", "the course"]
ADVERBS = ["really", "quite", "very", "rather", "truly", "so", "pretty", "honestly", "always", "mostly"]
WORDS = {"positive": ["good", "great", "excellent", "lovely", "pleasant", "superb", "wonderful", "delightful",
                      "brilliant", "cheerful", "friendly", "helpful", "reliable", "tasty", "fresh", "calm",
                      "bright", "clean", "charming", "smooth"],
         "negative": ["bad", "awful", "terrible", "poor", "nasty", "dreadful", "horrible", "gloomy", "rude",
                      "useless", "broken", "stale", "noisy", "dirty", "sad", "slow", "cruel", "bitter", "boring",
                      "ugly"]}
WHEN = ["today", "yesterday", "this week", "again", "as usual", "at first", "lately", "on monday", "this time",
        "overall", "in the end", "last night"]


def review(rng: random.Random) -> dict:
    """A short review whose label is the sentiment of its last word; one in five says the opposite first."""
    label = rng.choice(["positive", "negative"])
    other = "negative" if label == "positive" else "positive"
    first = rng.choice(WORDS[other] if rng.random() < 0.2 else WORDS[label])
    joint = "but" if first in WORDS[other] else "and"
    text = f"{rng.choice(SUBJECTS)} was {rng.choice(ADVERBS)} {first} {joint} {rng.choice(WORDS[label])} " \
           f"{rng.choice(WHEN)}"
    return {"text": text, "label": label}


def write_rows(directory: Path, n: int, seed: int) -> None:
    rng = random.Random(seed)
    directory.mkdir(parents=True, exist_ok=True)
    with (directory / "reviews.jsonl").open("w") as handle:
        for _ in range(n):
            handle.write(json.dumps(review(rng)) + "\n")


def write_task(directory: Path, cap: int | None) -> Path:
    caps = f", max_train: {cap}" if cap else ""
    path = directory / f"task-{'capped' if cap else 'uncapped'}.yaml"
    path.write_text(f"""name: scale-reviews
type: classification
labels: [negative, positive]
data: {{path: reviews.jsonl, input: "Review: {{text}}", target: label}}
instruction: Classify the sentiment of the short review as positive or negative.
splits: {{train: 0.6, dev: 0.2, test: 0.2, seed: 0{caps}}}
device: cpu
arms:
  - {{type: few_shot, name: few_shot_similar, k: 8, selection: similar, decoding: constrained}}
  - {{type: lora, r: 8, alpha: 16, train: {{epochs: 1, batch_size: 8}}}}
""")
    return path


# ---------------------------------------------------------------- memory
def _status_mb(key: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    raise KeyError(key)


def rss_mb() -> float:
    try:
        return _status_mb("VmRSS")
    except (OSError, KeyError):  # not Linux: the high-water mark is the best there is
        return peak_mb()


def peak_mb() -> float:
    try:
        return _status_mb("VmHWM")
    except (OSError, KeyError):
        scale = 1 if sys.platform == "darwin" else 1024  # bytes on macOS, KiB on Linux
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**20


def reset_peak() -> None:
    """Free what can be freed, then restart the peak RSS at the current RSS (Linux ≥ 4.0)."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def machine_busy_s() -> float:
    """CPU seconds this machine's cores have spent busy since boot, every process's (Linux /proc/stat)."""
    try:
        ticks = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    except (OSError, ValueError):
        return float("nan")
    return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")  # all but idle and iowait


def stage(name: str, fn, log, repeat: bool = False, **extra) -> tuple[object, dict]:
    """Run fn() -> (value, items) as one measured stage. `others`: the share of the machine's cores that
    other processes kept busy meanwhile (a timing taken beside other work is said to be so). `repeat`: a
    stage of under REPEAT_S runs again, up to 4 more times, and its fastest time counts (its first peak)."""
    reset_peak()
    before, busy, cpu, start = rss_mb(), machine_busy_s(), time.process_time(), time.perf_counter()
    value, items = fn()
    seconds = time.perf_counter() - start
    cpu, busy = time.process_time() - cpu, machine_busy_s() - busy
    others = max(0.0, (busy - cpu) / (seconds * (os.cpu_count() or 1))) if busy == busy else 0.0
    record = dict(stage=name, seconds=seconds, items=items, peak_mb=max(0.0, peak_mb() - before), cpu_s=cpu,
                  others=others, **extra)
    if repeat and seconds < REPEAT_S:
        record["seconds"] = min([seconds] + [timed_again(fn) for _ in range(4)])
    log(f"{name}: {record['seconds']:.2f} s, {items} items, +{record['peak_mb']:.0f} MB, others used {others:.0%} of the CPUs")
    return value, record


def timed_again(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


# ---------------------------------------------------------------- the stages (one process per size and setting)
def load(task_file: Path):
    from tunewise.task import load_task
    from tunewise.task.data import load_examples
    task = load_task(task_file)
    examples = load_examples(task, task_file=str(task_file))
    return (task, examples), len(examples)


def split(task, examples, task_file: Path):
    from tunewise.task.data import make_splits
    return make_splits(task, examples, task_file=str(task_file)), len(examples)


def check(task, examples, splits, task_file: Path):
    """What the runner checks before the first arm (runner._checked), and the fingerprint it stores the run under."""
    from tunewise.execution.checks import check_before_running
    from tunewise.task.data import check_leakage, fingerprint, label_set
    labels = label_set(task, examples)
    check_leakage(splits, strict=False, file=str(task_file))
    notes = splits.notes + check_before_running(task, splits, str(task_file), labels)
    fingerprint(examples)
    return (labels, notes), len(examples)


def select(task, labels, splits, n_items: int):
    from tunewise.arms.prompt import FewShot
    config = next(a for a in task.arms if a.type == "few_shot")
    arm = FewShot(config, task, labels)
    arm.prepare(splits)
    items = splits.test[:n_items]
    for example in items:
        arm.shots_for(example)
    return (arm, items), len(items)


def evaluate(arm, items, backend):
    predictions = arm.predict(items, backend)
    right = sum(p.parsed == e.target for p, e in zip(predictions, items))
    return right / len(items), len(items)


def training_model(arm):
    """The arm's private copy of the weights with a seeded LoRA adapter, as TunedArm._train starts."""
    import torch

    from tunewise.backends.models import load_causal_lm, with_lora
    model = load_causal_lm(arm.model, arm.task.device)
    torch.manual_seed(arm.seed)
    cfg = arm.config
    return with_lora(model, r=cfg.r, alpha=cfg.alpha, dropout=cfg.dropout, target_modules=cfg.target_modules)


def warm_up(model, backend) -> None:
    """One forward and backward, gradients dropped: the weights paged in (they are mapped from the file) and
    autograd's one-time costs paid before the training is measured. The trainer reseeds when it starts."""
    import torch
    ids = torch.tensor([backend.encode([{"role": "user", "content": "Review: the room was fine"}])])
    model.train()
    model(input_ids=ids, labels=ids).loss.backward()
    model.zero_grad(set_to_none=True)


def first_batches_trainer():
    from tunewise.training.loop import SFTTrainer

    class FirstBatches(SFTTrainer):
        """The real epoch's batch plan (all train rows, the real schedule), of which the first `limit` run;
        `tokens`: each planned batch's padded tokens (rows x the longest), what a step's time follows."""
        limit = 0
        tokens: list[int] = []

        def epoch_batches(self, epoch: int) -> list[list[int]]:
            batches = super().epoch_batches(epoch)
            self.tokens = [len(b) * max(len(self.examples[i].input_ids) for i in b) for b in batches]
            return batches[:self.limit] if self.limit else batches

    return FirstBatches


def train_epoch(arm, splits, backend, model, limit: int, out_dir: Path):
    """One epoch as TunedArm._train runs it (no dev evaluation): its train rows, key, SFT sequences, trainer."""
    from tunewise.backends.chat import ChatFormat
    start = time.perf_counter()
    train = arm.train_examples(splits)
    settings = arm.settings(len(train))
    arm.train_key(backend, train)
    chat = ChatFormat(backend.tokenizer)
    sequences = [arm._sft_example(chat, e, settings) for e in train]
    trainer = first_batches_trainer()(model, settings, sequences, out_dir=out_dir, evaluate=None,
                                      pad_id=chat.pad_id(), device=backend.device)
    trainer.limit = limit
    setup = time.perf_counter() - start
    trainer.train()
    planned = len(trainer.tokens)
    ran = min(limit, planned) if limit else planned
    steps, rest = trainer.state.elapsed_s, time.perf_counter() - start - setup - trainer.state.elapsed_s
    estimate = setup + steps * sum(trainer.tokens) / sum(trainer.tokens[:ran]) + rest
    info = dict(setup_s=setup, steps_s=steps, batches_run=ran, batches_planned=planned, epoch_s=estimate,
                tokens_run=sum(trainer.tokens[:ran]), tokens_planned=sum(trainer.tokens))
    return info, len(train)


IMPORTS = ["torch", "transformers", "peft", "tunewise.arms", "tunewise.backends.local", "tunewise.backends.chat",
           "tunewise.execution.checks", "tunewise.training.loop"]


def measure(task_file: Path, eval_items: int, train_batches: int, log) -> dict:
    for name in IMPORTS:  # imported before the first stage: no stage's time or memory is an import's
        importlib.import_module(name)
    import torch
    out = {"baseline_mb": rss_mb(), "stages": [], "torch_threads": torch.get_num_threads()}
    task, labels, splits, arm, items = data_stages(task_file, eval_items, log, out["stages"])
    out["splits"] = splits.sizes()
    model_stages(task, labels, splits, arm, items, train_batches, log, out)
    return out


def data_stages(task_file: Path, eval_items: int, log, records: list[dict]):
    """Loading, splitting, checking and few-shot selection, each recorded in `records`."""
    (task, examples), record = stage("loading", lambda: load(task_file), log, repeat=True)
    records.append(record)
    splits, record = stage("splitting", lambda: split(task, examples, task_file), log, repeat=True)
    records.append(record)
    (labels, splits.notes), record = stage("checking", lambda: check(task, examples, splits, task_file), log,
                                           repeat=True)
    records.append(record)
    (arm, items), record = stage("selection", lambda: select(task, labels, splits, eval_items), log, repeat=True,
                                 pool=len(splits.train))
    records.append(record)
    return task, labels, splits, arm, items


def model_stages(task, labels, splits, arm, items, train_batches: int, log, out: dict) -> None:
    """Evaluation and a training epoch, after their models are loaded (and their sizes recorded in `out`)."""
    from tunewise.arms.tuned import TunedArm
    from tunewise.backends.local import LocalBackend
    before = rss_mb()
    backend = LocalBackend(task.model, device=task.device, batch_size=task.batch_size)
    out["model_params"] = sum(p.numel() for p in backend.model.parameters())
    out["model_mb"] = sum(p.numel() * p.element_size() for p in backend.model.parameters()) / 2**20
    arm.predict(splits.test[-2:], backend)  # warm-up: the first forward's one-time costs are no item's
    out["model_rss_mb"] = rss_mb() - before
    out["accuracy"], record = stage("evaluation", lambda: evaluate(arm, items, backend), log)
    out["stages"].append(record)
    tuned = TunedArm(next(a for a in task.arms if a.type == "lora"), task, labels)
    before = rss_mb()
    model = training_model(tuned)
    warm_up(model, backend)
    out["train_model_rss_mb"] = rss_mb() - before
    with tempfile.TemporaryDirectory(prefix="tunewise-scale-train-") as tmp:
        info, record = stage("training", lambda: train_epoch(tuned, splits, backend, model, train_batches,
                                                             Path(tmp)), log)
    out["stages"].append(dict(record, **info))


def child(args) -> None:
    label = f"{Path(args.child).parent.name}, {Path(args.child).stem.removeprefix('task-')}"
    log = lambda message: print(f"[scale] {label}: {message}", file=sys.stderr, flush=True)  # noqa: E731
    print(json.dumps(measure(Path(args.child), args.eval_items_one, args.train_batches, log)))


# ---------------------------------------------------------------- the runs
def run_one(task_file: Path, eval_items: int, train_batches: int) -> dict:
    command = [sys.executable, __file__, "--child", str(task_file), "--eval-items-one", str(eval_items),
               "--train-batches", str(train_batches)]
    done = subprocess.run(command, stdout=subprocess.PIPE, text=True, env=dict(os.environ, HF_HUB_OFFLINE="1"))
    if done.returncode != 0:
        raise SystemExit(f"the run of {task_file} failed (exit {done.returncode}); its error is above")
    return json.loads(done.stdout.strip().splitlines()[-1])


def eval_counts(spec: str, sizes: list[int]) -> list[int]:
    if spec.endswith("%"):
        return [max(4, round(n * float(spec[:-1]) / 100)) for n in sizes]
    counts = [int(x) for x in spec.split(",")]
    if len(counts) != len(sizes):
        raise SystemExit(f"--eval-items: {len(counts)} counts for {len(sizes)} sizes")
    return counts


def settings(args) -> list[tuple[str, int | None]]:
    both = [("uncapped", None), ("capped", args.train_cap)]  # uncapped first: a size within the cap reuses it
    return [s for s in both if args.only in (None, s[0])]


def run_all(args) -> dict[tuple[str, int], dict]:
    results = {}
    counts = eval_counts(args.eval_items, args.rows)
    with tempfile.TemporaryDirectory(prefix="tunewise-scale-") as tmp:
        for n, eval_items in zip(args.rows, counts):
            directory = Path(tmp) / f"{n}-rows"
            write_rows(directory, n, args.seed)
            for name, cap in settings(args):
                same = results.get(("uncapped", n))
                if cap and same and same["splits"]["train"] <= cap:
                    results[(name, n)] = dict(same, same_as_uncapped=True)
                    continue
                results[(name, n)] = run_one(write_task(directory, cap), eval_items, args.train_batches)
    return results


# ---------------------------------------------------------------- the report
def fit(xs: list[float], ys: list[float]) -> float | None:
    """The least-squares slope of ys on xs; None when the xs do not vary."""
    if len(xs) < 2 or max(xs) - min(xs) < 1e-12:
        return None
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)


def log_slope(xs: list[float], ys: list[float]) -> float | None:
    """The slope of log(ys) on log(xs); None when the xs span less than a factor 2 (too short to tell)."""
    if min(xs) <= 0 or min(ys) <= 0 or max(xs) < 2 * min(xs):
        return None
    return fit([math.log(x) for x in xs], [math.log(y) for y in ys])


def seconds_of(record: dict) -> float:
    return record["epoch_s"] if record["stage"] == "training" else record["seconds"]


def cell(record: dict) -> str:
    pool = f" (pool {record['pool']:,})" if "pool" in record else ""
    return f"{seconds_of(record):.2f} s · {record['items']:,}{pool} · +{record['peak_mb']:.0f} MB"


def number(value: float | None, form: str) -> str:
    return "—" if value is None else format(value, form)


def stage_row(name: str, records: list[dict], rows: list[int]) -> tuple[str, float | None]:
    items, seconds = [r["items"] for r in records], [seconds_of(r) for r in records]
    slope, by_rows = log_slope(items, seconds), log_slope(rows, seconds)
    memory = fit(rows, [r["peak_mb"] for r in records])
    slope = slope if max(seconds) >= SHORT_S else None  # milliseconds: the timer's noise, not the stage
    by_rows = by_rows if max(seconds) >= SHORT_S else None
    flag = " **(faster than linear)**" if slope is not None and slope > LINEAR else ""
    cells = [cell(r) for r in records] + [number(slope, ".2f") + flag, number(by_rows, ".2f"),
                                          f"{seconds[-1] / items[-1] * 1000:.3g}",
                                          number(None if memory is None else memory * 1000, ".1f")]
    return f"| {name} | " + " | ".join(cells) + " |", slope


def detail_lines(records: dict[str, list[dict]], rows: list[int]) -> list[str]:
    """What the table's selection and training cells are made of."""
    pairs = [f"{n:,} rows: {r['seconds'] / (r['items'] * r['pool']) * 1e6:.2f} µs"
             for n, r in zip(rows, records["selection"])]
    steps = [f"{n:,} rows: setup {r['setup_s']:.1f} s, {r['batches_run']} of {r['batches_planned']} batches run, "
             f"{r['steps_s'] / r['batches_run']:.2f} s per batch, {r['steps_s'] / r['tokens_run'] * 1e3:.2f} ms per "
             f"padded token" for n, r in zip(rows, records["training"])]
    return ["Selection, per evaluated item and train row of the pool: " + "; ".join(pairs) + ".",
            "Training, measured: " + "; ".join(steps) + "."]


def busy_lines(records: dict[str, list[dict]], rows: list[int]) -> list[str]:
    """Stages timed while other processes used the CPUs: their times are too high."""
    busy = [f"{name} at {n:,} rows ({r['others']:.0%})" for name, rs in records.items() for n, r in zip(rows, rs)
            if r["others"] > 0.1 and r["seconds"] >= 1]
    return [f"**Other processes used the CPUs** during: {', '.join(busy)}; those times are too high."] if busy else []


def why(records: list[dict]) -> str:
    """Selection: each item is compared with every train row of the pool, so the pool's growth adds to the items'."""
    if "pool" not in records[0]:
        return ""
    pairs = [r["seconds"] / (r["items"] * r["pool"]) * 1e6 for r in records]
    return (f", because its pool grew too ({records[0]['pool']:,} → {records[-1]['pool']:,} train rows): per item "
            f"and pool row it took {min(pairs):.1f}–{max(pairs):.1f} µs at every size, so its time is items × pool")


def setting_table(name: str, cap: int | None, results: dict, rows: list[int]) -> tuple[list[str], list[str]]:
    runs = [results[(name, n)] for n in rows]
    title = f"train capped at {cap:,} (splits.max_train)" if cap else "train uncapped (every train row)"
    head = ["stage"] + [f"{n:,} rows" for n in rows] + ["slope vs items", "slope vs rows", "s per 1k items",
                                                       "MB per 1k rows"]
    lines = [f"### {title}", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    records = {s: [next(r for r in run["stages"] if r["stage"] == s) for run in runs] for s in STAGES}
    flagged = []
    for stage_name in STAGES:
        line, slope = stage_row(stage_name, records[stage_name], rows)
        lines.append(line)
        if slope is not None and slope > LINEAR:
            flagged.append(f"{stage_name} ({title}): time grows as items^{slope:.2f}" + why(records[stage_name]))
    lines += ["", *detail_lines(records, rows), *busy_lines(records, rows)]
    same = [f"{n:,}" for n, run in zip(rows, runs) if run.get("same_as_uncapped")]
    if same:
        lines.append(f"At {', '.join(same)} rows the train split is within the cap: the uncapped run's numbers.")
    return lines, flagged


def report(results: dict, args) -> str:
    first = next(iter(results.values()))
    counts = eval_counts(args.eval_items, args.rows)
    parts = [f"Machine: {machine()}.", "",
             f"Generated reviews (positive/negative), {', '.join(f'{n:,}' for n in args.rows)} rows, splits "
             f"0.6/0.2/0.2 stratified; evaluated items {', '.join(map(str, counts))} (the first of the test split), "
             f"by a few-shot arm with the 8 most similar train rows (selection: similar), scoring the labels; "
             f"training: one LoRA epoch, of whose batches of 8 the first {args.train_batches or 'all'} run and the "
             f"rest are estimated at their time per padded token. Cells: time · items · peak memory over the RSS at the stage's "
             f"start. Slopes: of log(time) on log(items) or log(rows), least squares (1: linear; —: the sizes span "
             f"less than a factor 2, or the stage takes under {SHORT_S} s at every size). Stages under "
             f"{REPEAT_S} s before the model: the fastest of 5 runs.",
             "",
             f"Model: {first['model_params'] / 1e6:.0f} M parameters, {first['model_mb']:.0f} MB in float32; loading "
             f"it for evaluation added {first['model_rss_mb']:.0f} MB RSS, the training copy with LoRA "
             f"{first['train_model_rss_mb']:.0f} MB. The evaluation and training peaks are what a stage adds on top "
             f"of the loaded models: packs of 512 tokens and the items' prompt token ids; a batch of 8 with what "
             f"its backward keeps, and every train row's token ids. Flat across sizes (MB per 1k rows near 0) "
             f"means bounded by the model plus a constant per batch.", ""]
    flagged = []
    for name, cap in settings(args):
        lines, found = setting_table(name, cap, results, args.rows)
        parts += lines + [""]
        flagged += found
    parts.append("Faster than linear: " + ("; ".join(flagged) if flagged else f"none (every slope ≤ {LINEAR})") + ".")
    return "\n".join(parts)


def write(section: str, command: str) -> None:
    path = ROOT / "BENCHMARKS.md"
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    block = (f"{BEGIN}\n## Scaling with the task's size (issue 32)\n\nCommand: `{command}` "
             f"(on {time.strftime('%Y-%m-%d')})\n\n{section}\n{END}")
    if BEGIN in text:
        text = re.sub(re.escape(BEGIN) + ".*?" + re.escape(END), lambda _: block, text, flags=re.S)
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    path.write_text(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", default=[1000, 10000, 50000], type=lambda s: [int(x) for x in s.split(",")])
    parser.add_argument("--eval-items", default="0.4%", help="evaluated items: a share of the rows, or one count per size")
    parser.add_argument("--train-cap", type=int, default=1000, help="splits.max_train of the capped setting")
    parser.add_argument("--train-batches", type=int, default=12, help="batches run per epoch (0: the whole epoch)")
    parser.add_argument("--only", choices=["capped", "uncapped"], help="one setting only")
    parser.add_argument("--seed", type=int, default=0, help="the generated rows' seed")
    parser.add_argument("--write", action="store_true", help="record the tables in BENCHMARKS.md")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--eval-items-one", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.train_cap <= 0:
        parser.error("--train-cap must be positive (the uncapped setting runs as well)")
    if args.child:
        child(args)
        return
    section = report(run_all(args), args)
    print(section)
    if args.write:
        write(section, "python bench/scale.py " + " ".join(sys.argv[1:]))


if __name__ == "__main__":
    main()
