"""The prompt search against the field's optimisers: DSPy's MIPROv2 and GEPA against tunewise's `searched` arm.

    python bench/vs_dspy.py --dspy-python /tmp/dspy-venv/bin/python --out vs_dspy.json     # the full run
    python bench/vs_dspy.py --dspy-python /tmp/dspy-venv/bin/python --tasks demo --budget 30 --dev-items 10 \\
        --test 16 --out smoke.json                                                         # a smoke run (~4 min)

All three optimise a classifier for the same model, the embedded SmolLM2-135M GGUF
(`tunewise.backends.models.embedded_gguf()`) served by llama.cpp's OpenAI-compatible server
(`python -m llama_cpp.server`, from the `bench` extra: `pip install '.[bench]'`), on two tasks: the demo
task (`tunewise demo --write-task`: word sentiment) and bench/shapes.py's routing shape (14 topics). They see
the same train split, the same dev items (the searched arm's seeded, label-stratified slice of dev) and
are scored on the same test items. Each gets the same optimisation budget, B calls to the task model for
scoring candidates:
- `searched`: B / dev_items trials (Optuna TPE, pruned trials stop early and spend less), scored on
  dev_items; the demo task's own search space (its task file's searched arm), the default one for routing;
- MIPROv2 (`auto=None`): num_trials T with a minibatch of M dev items and a full dev evaluation every 5
  trials, T chosen so that dev_items + T*M + ceil(T/5)*dev_items <= B; num_candidates from T as MIPROv2's
  own rule has it; plus what it spends proposing instructions (a dataset summary and one proposal per
  candidate). Its demos are labeled train examples (up to 4, `--mipro-labeled`), not bootstrapped ones
  (`--mipro-bootstrapped 0`, DSPy's default is 4): bootstrapping keeps a demo only when the model's own
  answer parses and is right, and walks the train split until it has enough. With the 135M model almost
  no answer parses in DSPy's format (in the smoke run 19 of the first 19 train items failed, each costing
  a ChatAdapter call and a JSONAdapter retry, about 4.5 s), so one demo set would walk all 1,000 train
  items (~2,000 calls) before giving up: no matched budget contains it. `--mipro-bootstrapped 4` runs it;
- GEPA: `max_metric_calls=B` (its metric calls are model calls on train minibatches and dev), plus its
  reflection calls. It runs with `add_format_failure_as_feedback=True` (`--no-gepa-format-feedback` for
  DSPy's default, off): off, GEPA drops every answer that fails to parse from what it reflects on, and with
  the 135M model that was every answer, so in the smoke run it never reflected (0 reflection calls) and
  returned the seed program.
MIPROv2 asks its prompt model for a dataset summary and for each instruction proposal in DSPy's format too;
a proposal the 135M model does not answer in that format raises out of `compile` (it did in the smoke run).
A failed compile is reported as such, and the row's test accuracy is then the unoptimised program's.
DSPy's program is `dspy.Predict` of a signature `text -> label: Literal[labels]` whose instructions are the
task's instruction and context; its answers may run to 32 tokens (a well-formed ChatAdapter answer is about
20), its proposals and reflections to 512. The instruction proposals (MIPROv2's prompt model) and GEPA's reflections are asked of the same 135M
model: it is the only model of the comparison. Every call goes through a counting proxy in front of the
server, so the call counts are what reached the server, by optimiser and phase (optimisation, proposals,
test). Each side caches as it does by default, from empty: tunewise in a fresh store, DSPy in memory
(a repeated identical request is not sent twice on either side).

DSPy does not install cleanly beside tunewise's environment (it would downgrade python-dateutil and
importlib-metadata), so its side runs in a venv of its own, which this script starts as a subprocess:

    python3 -m venv /tmp/dspy-venv && /tmp/dspy-venv/bin/pip install dspy==3.4.1

The DSPy side imports nothing of tunewise: this file runs there with `--dspy-worker SPEC OUT`.
DSPy's LM sends `max_completion_tokens` to some models; llama.cpp's server reads only `max_tokens`, so
the proxy renames it (and counts how often it did). Test accuracy has a 95% percentile-bootstrap interval;
each DSPy row has an exact McNemar test against `searched` on the same test items.
"""

from __future__ import annotations

import argparse
import http.client
import json
import math
import os
import platform
import random
import socket
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

MODEL_NAME = "smollm2"
TASK_MAX_TOKENS = 32        # DSPy's answers: "[[ ## label ## ]]\n...\n\n[[ ## completed ## ]]" is about 20 tokens
PROPOSER_MAX_TOKENS = 512   # MIPROv2's prompt model and GEPA's reflection (tunewise's proposer asks 512 too)


# -- the machine -------------------------------------------------------------------------------------
def cpu_model() -> str:
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return platform.processor() or "unknown"
    return next((line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")),
                platform.processor() or "unknown")


def load_average() -> list[float]:
    try:
        return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]
    except OSError:
        return list(os.getloadavg())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- a counting proxy in front of llama.cpp's server ----------------------------------------------------
class Counter:
    """Chat-completion calls per phase (the first path segment: /PHASE/v1/chat/completions)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.phases: dict[str, dict[str, float]] = {}

    def add(self, phase: str, **values: float) -> None:
        with self.lock:
            row = self.phases.setdefault(phase, {"calls": 0, "prompt_tokens": 0, "completion_tokens": 0,
                                                 "errors": 0, "json_mode": 0, "renamed_max_tokens": 0,
                                                 "seconds": 0.0})
            for key, value in values.items():
                row[key] += value

    def get(self, phase: str) -> dict[str, float]:
        with self.lock:
            return dict(self.phases.get(phase, {"calls": 0, "prompt_tokens": 0, "completion_tokens": 0,
                                                "errors": 0, "json_mode": 0, "renamed_max_tokens": 0,
                                                "seconds": 0.0}))


def start_proxy(upstream_port: int, counter: Counter) -> tuple[ThreadingHTTPServer, int]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args) -> None:
            pass

        def _forward(self, method: str) -> None:
            parts = self.path.split("/", 2)  # "", PHASE, "v1/..."
            phase, rest = (parts[1], "/" + parts[2]) if len(parts) == 3 else ("none", self.path)
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0)) if method == "POST" else None
            chat = method == "POST" and rest.rstrip("/").endswith("/chat/completions")
            renamed = json_mode = 0
            if chat and body:
                try:
                    data = json.loads(body)
                except ValueError:
                    data = None
                if isinstance(data, dict):
                    if "max_completion_tokens" in data and "max_tokens" not in data:
                        data["max_tokens"] = data.pop("max_completion_tokens")
                        renamed = 1
                        body = json.dumps(data).encode()
                    json_mode = int("response_format" in data)
            start = time.perf_counter()
            conn = http.client.HTTPConnection("127.0.0.1", upstream_port, timeout=600)
            try:
                headers = {"Content-Type": "application/json"} if body is not None else {}
                conn.request(method, rest, body=body, headers=headers)
                response = conn.getresponse()
                payload = response.read()
                status = response.status
            finally:
                conn.close()
            if chat:
                usage = {}
                try:
                    usage = json.loads(payload).get("usage") or {}
                except (ValueError, AttributeError):
                    pass
                counter.add(phase, calls=1, prompt_tokens=usage.get("prompt_tokens", 0),
                            completion_tokens=usage.get("completion_tokens", 0), errors=int(status >= 400),
                            json_mode=json_mode, renamed_max_tokens=renamed, seconds=time.perf_counter() - start)
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def do_GET(self) -> None:
            self._forward("GET")

        def do_POST(self) -> None:
            self._forward("POST")

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, server.server_address[1]


def start_llama_server(gguf: Path, port: int, threads: int, log: Path) -> subprocess.Popen:
    command = [sys.executable, "-m", "llama_cpp.server", "--model", str(gguf), "--n_ctx", "2048",
               "--port", str(port), "--host", "127.0.0.1", "--n_threads", str(threads),
               "--n_threads_batch", str(threads), "--model_alias", MODEL_NAME, "--verbose", "False"]
    server = subprocess.Popen(command, stdout=open(log, "w"), stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"llama.cpp's server exited ({server.returncode}); see {log}. It needs the bench "
                             f"extra: pip install '.[bench]' (llama-cpp-python[server])")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/v1/models")
            if conn.getresponse().status == 200:
                return server
        except OSError:
            time.sleep(0.3)
    server.terminate()
    raise SystemExit(f"llama.cpp's server did not answer within 120 s; see {log}")


# -- statistics -----------------------------------------------------------------------------------------
def bootstrap_interval(correct: list[bool], n: int = 2000, seed: int = 0) -> tuple[float, float]:
    import numpy as np
    values = np.asarray(correct, dtype=float)
    if not len(values):
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, len(values), size=(n, len(values)))].mean(axis=1)
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


# -- the budget, shared --------------------------------------------------------------------------------
def plan(budget: int, dev_items: int) -> dict[str, dict[str, int]]:
    """Each optimiser's settings for about `budget` task-model calls scoring candidates on `dev_items`."""
    trials = max(2, round(budget / dev_items))
    minibatch = max(3, min(35, dev_items // 4))
    every = 5
    mipro_trials = 1
    while dev_items + (mipro_trials + 1) * minibatch + math.ceil((mipro_trials + 1) / every) * dev_items <= budget:
        mipro_trials += 1
    # MIPROv2's own rule (num_trials = max(2*M*log2(N), 1.5*N), M = 2 variables: instruction, demos), inverted
    candidates = max(2, min(12, int(mipro_trials / 1.5)))
    return {"searched": {"trials": trials, "dev_items": dev_items},
            "mipro": {"num_trials": mipro_trials, "num_candidates": candidates, "minibatch_size": minibatch,
                      "minibatch_full_eval_steps": every},
            "gepa": {"max_metric_calls": budget}}


# -- the tasks ------------------------------------------------------------------------------------------
def load(name: str, root: Path):
    """(task, labels, splits, search settings) of a benchmark task."""
    from tunewise.arms.searched import SearchSettings
    from tunewise.demo import write_demo
    from tunewise.task import load_task
    from tunewise.task.data import label_set, load_examples, make_splits
    if name == "demo":
        task_file = write_demo(root / "demo")
    elif name == "routing":
        sys.path.insert(0, str(Path(__file__).parent))
        from shapes import routing
        routing(root)
        task_file = root / "routing" / "task.yaml"
    else:
        raise SystemExit(f"unknown task {name!r}: demo or routing")
    task = load_task(task_file)
    examples = load_examples(task)
    splits = make_splits(task, examples)
    own = next((a for a in task.arms if a.type == "searched"), None)
    settings = own.search if own is not None else SearchSettings()
    return task, label_set(task, examples), splits, settings


def test_items(splits, n: int, seed: int):
    from tunewise.task.data import _take
    if not n or n >= len(splits.test):
        return list(splits.test)
    rng = random.Random(seed)
    return _take(rng.sample(splits.test, len(splits.test)), n, lambda e: str(e.target), rng)


# -- tunewise's searched arm ----------------------------------------------------------------------------
def run_searched(task, labels, splits, settings, test, proxy: str, counter: Counter, concurrency: int,
                 home: Path, log) -> dict:
    from tunewise.arms.base import ArmContext
    from tunewise.arms.searched import Searched, SearchedConfig
    from tunewise.backends.openai import OpenAIBackend
    from tunewise.store.cache import CachedBackend
    from tunewise.store.sqlite import Store

    store = Store(home / "store.db")

    def backend(phase: str):
        inner = OpenAIBackend(f"{proxy}/{phase}/v1", MODEL_NAME, concurrency=concurrency, timeout_s=600)
        return CachedBackend(inner, store)
    search_backend, test_backend = backend("searched-opt"), backend("searched-test")
    task = task.model_copy(update={"model": MODEL_NAME})
    arm = Searched(SearchedConfig(type="searched", search=settings), task, labels)
    ctx = ArmContext(home=home, base_backend=lambda model: search_backend, progress=lambda text, total: None,
                     prepared=lambda name: None, backend=lambda model: search_backend, log=log)
    start = time.perf_counter()
    arm.prepare(splits, ctx)
    opt_s = time.perf_counter() - start
    start = time.perf_counter()
    preds = arm.predict(test, test_backend)
    test_s = time.perf_counter() - start
    store.close()
    record = arm.training or {}
    states = [t["state"] for t in record.get("trials", [])]
    return {"optimiser": "searched", "opt_wall_s": opt_s, "test_wall_s": test_s,
            "correct": [str(p.parsed) == str(e.target) for p, e in zip(preds, test)],
            "answers": [None if p.parsed is None else str(p.parsed) for p in preds],
            "unparsed": sum(p.parsed is None for p in preds),
            "dev_score": record.get("dev_score"), "trials": len(states), "pruned": states.count("pruned"),
            "prompt": record.get("best"),
            "calls": {"opt": counter.get("searched-opt"), "test": counter.get("searched-test")}}


# -- DSPy's side (runs in DSPy's venv: no tunewise imports) ---------------------------------------------
def run_dspy(optimiser: str, spec: dict, out: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor
    from typing import Literal

    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # no 5 s attempt to download a price map
    import dspy

    dspy.configure_cache(enable_disk_cache=False, enable_memory_cache=True)  # from empty, this process only
    root = spec["proxy"]

    def lm(phase: str, max_tokens: int, temperature: float | None = 0.0):
        return dspy.LM(f"openai/{MODEL_NAME}", api_base=f"{root}/{phase}/v1", api_key="none",
                       temperature=temperature, max_tokens=max_tokens, num_retries=2)
    task_lm = lm(f"{optimiser}-opt", TASK_MAX_TOKENS)
    proposer_lm = lm(f"{optimiser}-propose", PROPOSER_MAX_TOKENS, temperature=1.0)
    test_lm = lm(f"{optimiser}-test", TASK_MAX_TOKENS)
    dspy.configure(lm=task_lm)

    labels = tuple(spec["labels"])
    signature = dspy.Signature(
        {"text": (str, dspy.InputField()), "label": (Literal[labels], dspy.OutputField())},
        spec["instruction"])
    program = dspy.Predict(signature)

    def example(row):
        return dspy.Example(text=row["text"], label=row["label"]).with_inputs("text")
    train = [example(r) for r in spec["train"]]
    dev = [example(r) for r in spec["dev"]]
    test = [example(r) for r in spec["test"]]

    def same(gold, pred) -> bool:
        return str(getattr(pred, "label", "")).strip().lower() == gold.label.lower()

    def metric(gold, pred, trace=None):
        return float(same(gold, pred))

    def feedback_metric(gold, pred, trace=None, pred_name=None, pred_trace=None):
        right = same(gold, pred)
        said = getattr(pred, "label", None)
        text = (f"Correct: the label is {gold.label}." if right else
                f"Wrong: answered {said!r}, the correct label is {gold.label!r}.")
        return dspy.Prediction(score=float(right), feedback=text)

    b = spec["plan"][optimiser]
    threads = spec["threads"]
    start = time.perf_counter()
    error = None
    try:
        if optimiser == "mipro":
            tuner = dspy.MIPROv2(metric=metric, prompt_model=proposer_lm, task_model=task_lm, auto=None,
                                 num_candidates=b["num_candidates"], num_threads=threads, max_errors=10 ** 6,
                                 max_bootstrapped_demos=b["max_bootstrapped_demos"],
                                 max_labeled_demos=b["max_labeled_demos"], seed=spec["seed"], verbose=False)
            best = tuner.compile(program, trainset=train, valset=dev, num_trials=b["num_trials"],
                                 minibatch=True, minibatch_size=b["minibatch_size"],
                                 minibatch_full_eval_steps=b["minibatch_full_eval_steps"])
        else:
            tuner = dspy.GEPA(metric=feedback_metric, max_metric_calls=b["max_metric_calls"],
                              reflection_lm=proposer_lm, num_threads=threads, seed=spec["seed"],
                              add_format_failure_as_feedback=spec["gepa_format_feedback"], track_stats=False)
            best = tuner.compile(program, trainset=train, valset=dev)
    except Exception as err:  # reported, not hidden: the row says the optimiser failed and why
        error = f"{type(err).__name__}: {str(err)[:500]}"
        best = program
    opt_s = time.perf_counter() - start

    best.set_lm(test_lm)
    failures: dict[str, int] = {}

    def answer(ex):
        try:
            return str(best(text=ex.text).label)
        except Exception as err:
            return err

    start = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        answers = list(pool.map(answer, test))
    test_s = time.perf_counter() - start
    for a in answers:
        if isinstance(a, Exception):
            failures[type(a).__name__] = failures.get(type(a).__name__, 0) + 1
    predictor = best.predictors()[0]
    history = test_lm.history[:3]
    samples = [{"messages": h.get("messages"), "outputs": h.get("outputs")} for h in history]
    out.write_text(json.dumps({
        "optimiser": optimiser, "opt_wall_s": opt_s, "test_wall_s": test_s, "error": error,
        "tested": "the unoptimised program: compile failed" if error else "the optimised program",
        "correct": [not isinstance(a, Exception) and a.strip().lower() == ex.label.lower()
                    for a, ex in zip(answers, test)],
        "answers": [None if isinstance(a, Exception) else a for a in answers],
        "unparsed": sum(isinstance(a, Exception) for a in answers), "failures": failures,
        "prompt": {"instruction": predictor.signature.instructions, "demos": len(predictor.demos)},
        "lm_history": {"opt": len(task_lm.history), "propose": len(proposer_lm.history),
                       "test": len(test_lm.history)},
        "samples": samples}, default=str))


# -- the run --------------------------------------------------------------------------------------------
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default="demo,routing", help="comma-separated: demo, routing")
    parser.add_argument("--optimisers", default="searched,mipro,gepa")
    parser.add_argument("--budget", type=int, default=80, help="task-model calls each optimiser scores with")
    parser.add_argument("--dev-items", type=int, default=20, help="dev items candidates are scored on")
    parser.add_argument("--test", type=int, default=60, help="test items (0: the whole test split)")
    parser.add_argument("--mipro-bootstrapped", type=int, default=0,
                        help="MIPROv2's max_bootstrapped_demos (DSPy's default 4: see the docstring for why 0)")
    parser.add_argument("--mipro-labeled", type=int, default=4, help="MIPROv2's max_labeled_demos")
    parser.add_argument("--gepa-format-feedback", action=argparse.BooleanOptionalAction, default=True,
                        help="GEPA's add_format_failure_as_feedback (DSPy's default: off; see the docstring)")
    parser.add_argument("--dspy-python", default=None,
                        help="the Python of a venv with dspy installed (default: this one, if it has dspy)")
    parser.add_argument("--threads", type=int, default=2, help="llama.cpp's threads")
    parser.add_argument("--concurrency", type=int, default=2, help="requests in flight, each side")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="vs_dspy.json")
    parser.add_argument("--dspy-worker", nargs=3, metavar=("OPTIMISER", "SPEC", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.dspy_worker:
        optimiser, spec, out = args.dspy_worker
        run_dspy(optimiser, json.loads(Path(spec).read_text()), Path(out))
        return

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    optimisers = [o.strip() for o in args.optimisers.split(",") if o.strip()]
    unknown = set(optimisers) - {"searched", "mipro", "gepa"}
    if unknown:
        raise SystemExit(f"unknown optimisers: {', '.join(sorted(unknown))}")
    dspy_python = args.dspy_python or sys.executable
    if {"mipro", "gepa"} & set(optimisers):
        probe = subprocess.run([dspy_python, "-c", "import dspy; print(dspy.__version__)"], capture_output=True,
                               text=True)
        if probe.returncode:
            raise SystemExit(f"{dspy_python} cannot import dspy. Make a venv for it: python3 -m venv /tmp/dspy-venv "
                             f"&& /tmp/dspy-venv/bin/pip install dspy==3.4.1; then --dspy-python "
                             f"/tmp/dspy-venv/bin/python")
        dspy_version = probe.stdout.strip()
    else:
        dspy_version = None

    import llama_cpp

    from tunewise.backends.models import embedded_gguf
    header = {"cpu": cpu_model(), "cores": os.cpu_count(), "load_start": load_average(),
              "python": platform.python_version(), "llama_cpp_python": llama_cpp.__version__, "dspy": dspy_version,
              "args": {k: v for k, v in vars(args).items() if k != "dspy_worker"}}
    print(f"CPU: {header['cpu']}, {header['cores']} cores; load average at start {header['load_start']}; "
          f"llama-cpp-python {header['llama_cpp_python']}, dspy {dspy_version}", flush=True)

    counter = Counter()
    results: list[dict] = []
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="vs_dspy_") as tmp:
        tmp = Path(tmp)
        port = free_port()
        server = start_llama_server(embedded_gguf(), port, args.threads, tmp / "llama_server.log")
        proxy_server, proxy_port = start_proxy(port, counter)
        proxy = f"http://127.0.0.1:{proxy_port}"
        try:
            for name in [t.strip() for t in args.tasks.split(",") if t.strip()]:
                results += run_task(name, args, optimisers, tmp, proxy, counter, dspy_python)
        finally:
            proxy_server.shutdown()
            server.terminate()
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()
    header["load_end"] = load_average()
    header["wall_s"] = time.perf_counter() - started
    print(f"\nload average at end {header['load_end']}; {header['wall_s']:.0f} s in all\n")
    print(table(results))
    Path(args.out).write_text(json.dumps({"machine": header, "results": results}, indent=1, default=str))
    print(f"\nwrote {args.out}")


def run_task(name: str, args, optimisers: list[str], tmp: Path, proxy: str, counter: Counter,
             dspy_python: str) -> list[dict]:
    from tunewise.analysis.stats import mcnemar_exact
    from tunewise.arms.searched import Searched, SearchedConfig
    task, labels, splits, settings = load(name, tmp / "tasks")
    b = plan(args.budget, min(args.dev_items, len(splits.dev)))
    b["mipro"].update(max_bootstrapped_demos=args.mipro_bootstrapped, max_labeled_demos=args.mipro_labeled)
    settings = settings.model_copy(update={"trials": b["searched"]["trials"], "dev_items": b["searched"]["dev_items"]})
    dev = Searched(SearchedConfig(type="searched", search=settings), task, labels)._dev_items(splits)
    test = test_items(splits, args.test, args.seed)
    print(f"\n## {name}: {len(labels)} labels; train {len(splits.train)}, dev {len(dev)} of {len(splits.dev)}, "
          f"test {len(test)} of {len(splits.test)}; plan {b}", flush=True)
    rows = []
    searched = None
    for optimiser in optimisers:
        for phase in ("opt", "propose", "test"):  # each task's counts from zero
            counter.phases.pop(f"{optimiser}-{phase}", None)
        if optimiser == "searched":
            home = tmp / f"home-{name}"
            home.mkdir(parents=True, exist_ok=True)
            row = run_searched(task, labels, splits, settings, test, proxy, counter, args.concurrency, home,
                               log=lambda text: print("  " + text, flush=True))
            row["calls"]["propose"] = counter.get("searched-propose")
            searched = row
        else:
            spec = {"proxy": proxy, "labels": labels, "threads": args.concurrency, "seed": args.seed, "plan": b,
                    "gepa_format_feedback": args.gepa_format_feedback,
                    "instruction": " ".join(filter(None, [task.instruction.strip(), (task.context or "").strip()])),
                    "train": rows_of(splits.train), "dev": rows_of(dev), "test": rows_of(test)}
            spec_path, out_path = tmp / f"{name}-{optimiser}-spec.json", tmp / f"{name}-{optimiser}-out.json"
            spec_path.write_text(json.dumps(spec))
            log_path = tmp / f"{name}-{optimiser}.log"  # DSPy logs every answer it cannot parse
            with open(log_path, "w") as log_file:
                done = subprocess.run([dspy_python, __file__, "--dspy-worker", optimiser, str(spec_path),
                                       str(out_path)], stdout=log_file, stderr=subprocess.STDOUT)
            logged = log_path.read_text(errors="replace")
            if done.returncode or not out_path.exists():
                print("\n".join(logged.splitlines()[-20:]), file=sys.stderr)
                row = {"optimiser": optimiser, "error": f"the DSPy worker exited {done.returncode}", "correct": []}
            else:
                row = json.loads(out_path.read_text())
            row["logged_parse_failures"] = logged.count("failed to parse")  # ChatAdapter's and JSONAdapter's
            row["calls"] = {phase: counter.get(f"{optimiser}-{phase}") for phase in ("opt", "propose", "test")}
        row["task"] = name
        row["labels"] = len(labels)
        row["test_items"] = len(test)
        row["plan"] = b.get(optimiser)
        correct = row.get("correct") or []
        row["accuracy"] = sum(correct) / len(correct) if correct else float("nan")
        row["ci95"] = bootstrap_interval(correct, seed=args.seed)
        if searched is not None and row is not searched and correct:
            p, only_other, only_searched = mcnemar_exact(searched["correct"], correct)
            row["vs_searched"] = {"mcnemar_p": p, "only_this_right": only_other, "only_searched_right": only_searched}
        rows.append(row)
        print(line(row), flush=True)
    return rows


def rows_of(items) -> list[dict]:
    return [{"text": e.input, "label": str(e.target)} for e in items]


def line(row: dict) -> str:
    c = row.get("calls", {})
    opt = sum(c.get(k, {}).get("calls", 0) for k in ("opt", "propose"))
    lo, hi = row.get("ci95", (float("nan"), float("nan")))
    extra = f"; {row.get('tested')}; error: {row['error'][:300]}" if row.get("error") else ""
    return (f"  {row['optimiser']}: test accuracy {row['accuracy']:.3f} ({lo:.3f}-{hi:.3f}), "
            f"{opt} optimisation calls ({c.get('propose', {}).get('calls', 0)} proposing), "
            f"{c.get('test', {}).get('calls', 0)} test calls, {row.get('opt_wall_s', 0):.0f} s + "
            f"{row.get('test_wall_s', 0):.0f} s, {row.get('unparsed', 0)} unparsed{extra}")


def table(rows: list[dict]) -> str:
    head = ["task", "optimiser", "test accuracy (95% CI)", "vs searched (McNemar p)", "optimisation calls",
            "of which proposing", "test calls", "optimise s", "test s", "unparsed test answers"]
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        c = r.get("calls", {})
        calls = {k: c.get(k, {}) for k in ("opt", "propose", "test")}
        lo, hi = r.get("ci95", (float("nan"), float("nan")))
        vs = r.get("vs_searched")
        out.append("| " + " | ".join([
            r["task"], r["optimiser"] + (" (failed)" if r.get("error") else ""),
            f"{r['accuracy']:.3f} ({lo:.3f}–{hi:.3f}), n={r['test_items']}",
            f"{r['accuracy'] - rows_searched(rows, r['task']):+.3f} (p={vs['mcnemar_p']:.3g})" if vs else "",
            str(calls["opt"].get("calls", 0) + calls["propose"].get("calls", 0)),
            str(calls["propose"].get("calls", 0)), str(calls["test"].get("calls", 0)),
            f"{r.get('opt_wall_s', 0):.0f}", f"{r.get('test_wall_s', 0):.0f}", str(r.get("unparsed", 0))]) + " |")
    return "\n".join(out)


def rows_searched(rows: list[dict], task: str) -> float:
    return next((r["accuracy"] for r in rows if r["task"] == task and r["optimiser"] == "searched"), float("nan"))


if __name__ == "__main__":
    main()
