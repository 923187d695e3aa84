"""The demo task on several seeds: the local executor against Ray on the same cores, and the time projected
on N workers from the measured per-unit times.

    python bench/scaling.py                    # the demo's prompting arms and LoRA, seeds 0,1,2 (about an hour on 2 cores)
    python bench/scaling.py --limit 12 --seeds 0,1 --arms zero_shot_scored,lora   # a check in a few minutes

Each executor runs in a fresh home (no request cache, no trained adapter, no search trials reused).
Projection: a unit's time is what it took as a Ray task (one CPU); with N workers the run takes at
least the longest chain of units that wait on each other (C) and at least their total over N (S / N);
greedy list scheduling is within C + S / N, so T(N) ≈ O + max(C, S / N), where O is Ray's measured fixed
cost (the Ray run's wall time less max(C, S / 2) on this machine's 2 workers).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from tunewise.arms import family
from tunewise.demo import demo_task
from tunewise.execution.executor import plan_units
from tunewise.execution.runner import arm_plan, run
from tunewise.task import arm_name


def bench_task(directory: Path, seeds: list[int], limit: int | None, trials: int | None, executor: str,
               only: list[str] | None = None):
    task, task_file = demo_task(directory)
    arms = [a for a in task.arms if family(a.type) in ("prompt", "fine-tune")]  # no hybrid: the quick demo + LoRA
    if only:
        arms = [a for a in arms if arm_name(a) in only]
    if trials:
        arms = [a.model_copy(update={"search": a.search.model_copy(update={"trials": trials})})
                if a.type == "searched" else a for a in arms]
    splits = task.splits.model_copy(update={"seeds": seeds, "seed": seeds[0]})
    if limit:
        splits = splits.model_copy(update={"max_train": limit, "max_dev": limit, "max_test": limit})
    return task.model_copy(update={"arms": arms, "learning_curve": None, "splits": splits,
                                   "executor": task.executor.model_copy(update={"type": executor})}), task_file


def measure(executor: str, args) -> dict:
    with tempfile.TemporaryDirectory(prefix=f"tunewise-scaling-{executor}-") as tmp:
        task, task_file = bench_task(Path(tmp) / "demo", args.seeds, args.limit, args.trials, executor, args.arms)
        start = time.perf_counter()
        result = run(task, home=Path(tmp) / "home", progress=False, task_file=str(task_file), log=lambda m: None)
        wall = time.perf_counter() - start
        units = plan_units(task, arm_plan(task))
        return {"executor": executor, "wall_s": wall, "unit_s": result.unit_seconds,
                "needs": {u.name: u.needs for u in units}, "verdict": result.report.decision.stability}


def critical_path(unit_s: dict[str, float], needs: dict[str, list[str]]) -> float:
    done: dict[str, float] = {}

    def finish(name: str) -> float:
        if name not in done:
            done[name] = unit_s.get(name, 0.0) + max((finish(n) for n in needs.get(name, [])), default=0.0)
        return done[name]
    return max((finish(n) for n in unit_s), default=0.0)


def projection(ray: dict, workers: list[int]) -> tuple[float, float, float, dict[int, float]]:
    total = sum(ray["unit_s"].values())
    chain = critical_path(ray["unit_s"], ray["needs"])
    overhead = max(0.0, ray["wall_s"] - max(chain, total / 2))
    return total, chain, overhead, {n: overhead + max(chain, total / n) for n in workers}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", default="0,1,2", type=lambda s: [int(x) for x in s.split(",")])
    parser.add_argument("--limit", type=int, help="cap train, dev and test at this many items (a quick check)")
    parser.add_argument("--trials", type=int, help="the searched arm's trials (default: the demo's)")
    parser.add_argument("--arms", type=lambda s: s.split(","), help="only these of the demo's arms (a quick check)")
    parser.add_argument("--workers", default="1,2,4,8,16", type=lambda s: [int(x) for x in s.split(",")])
    parser.add_argument("--out", type=Path, help="write the measurements as JSON here")
    args = parser.parse_args()
    import ray
    local = measure("local", args)
    ray.init(num_cpus=2, include_dashboard=False, configure_logging=False, log_to_driver=False)
    try:
        remote = measure("ray", args)
    finally:
        ray.shutdown()
    total, chain, overhead, projected = projection(remote, args.workers)
    print("| executor | wall s | units | sum of unit s |\n|---|---|---|---|")
    for m in (local, remote):
        print(f"| {m['executor']} (2 cores) | {m['wall_s']:.0f} | {len(m['unit_s'])} | {sum(m['unit_s'].values()):.0f} |")
    print(f"\nRay against local on the same cores: {remote['wall_s'] / local['wall_s'] - 1:+.0%} wall time; "
          f"fixed cost O = {overhead:.0f} s, critical path C = {chain:.0f} s, total S = {total:.0f} s")
    print("projected on N one-CPU workers, T(N) = O + max(C, S/N): " +
          ", ".join(f"N={n}: {t:.0f} s" for n, t in projected.items()))
    print(f"verdicts: local: {local['verdict']}; ray: {remote['verdict']}")
    if args.out:
        args.out.write_text(json.dumps({"local": local, "ray": remote, "projection": projected}, indent=1))


if __name__ == "__main__":
    main()
