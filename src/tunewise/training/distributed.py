"""Data-parallel training through accelerate: several GPUs (or CPU processes) share each epoch.

The loop stays `train.SFTTrainer`. When `train.processes` resolves to more than one, each epoch runs
under `accelerate launch --multi_gpu`: every process loads the model, resumes from the loop's checkpoint,
takes its share of each micro-batch (DDP averages the gradients, and each share's loss is scaled so the
step equals one process's over the whole batch), and the first process writes the checkpoint. This
process keeps what needs the run: dev evaluation after each epoch, the best epoch and early stopping.
An interrupted epoch resumes from the last checkpoint, as in the one-process loop.

    python -m tunewise.training.distributed JOB.json     # what each launched process runs
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

from ..errors import MissingDependencyError, RunError
from .loop import SFTExample, SFTTrainer, TrainState


def resolve_processes(setting: int | str, device: str) -> int:
    """train.processes: auto is one process per visible GPU when the device is 'cuda' and there are
    several; a named device (cuda:1), a CPU or one GPU train in this process."""
    if setting != "auto":
        return int(setting)
    if device != "cuda":
        return 1
    import torch
    return max(1, torch.cuda.device_count())


class LaunchedTrainer(SFTTrainer):
    """SFTTrainer whose epochs run in `processes` launched processes; evaluation stays here.

    `job` names what a process needs to rebuild the model: {"model": id or path, "lora": {r, alpha,
    dropout, target_modules} or None}.
    """

    def __init__(self, model, args, examples: list[SFTExample], *, job: dict, processes: int, **kwargs):
        super().__init__(model, args, examples, **kwargs)
        self.job, self.processes = job, processes

    def train(self) -> TrainState:
        self._resume()
        job_path = self.write_job()
        while self.state.epoch < self.epochs and not self.state.stopped_early:
            steps, elapsed = self.state.step, self.state.elapsed_s
            self.save_checkpoint()  # what the processes start from
            start = time.perf_counter()
            launch(job_path, self.processes, self.out_dir / "launch.log")
            self.load_checkpoint(self.out_dir / "checkpoint.pt")
            # the training's time includes starting the processes and loading the model in each
            self.state.elapsed_s = elapsed + time.perf_counter() - start
            if self.progress and self.state.step > steps:
                self.progress(self.state.step - steps, f"loss {self.state.losses[-1]['loss']:.3f}")
            self._end_epoch()
            self.save_checkpoint()
        return self.finish()

    def write_job(self) -> Path:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        examples = self.out_dir / "examples.json"
        examples.write_text(json.dumps([e.__dict__ for e in self.examples]))
        job = dict(self.job, settings=self.args.model_dump(mode="json"), examples=str(examples),
                   out_dir=str(self.out_dir), pad_id=self.pad_id, device=self.device.split(":")[0])
        path = self.out_dir / "job.json"
        path.write_text(json.dumps(job, indent=1))
        return path


def launch(job_path: Path, processes: int, log_path: Path) -> None:
    """`accelerate launch --multi_gpu` (torch.distributed.run underneath) of this module on the job;
    the processes' output goes to log_path."""
    try:
        import accelerate  # noqa: F401
    except ImportError:
        raise MissingDependencyError("training on several processes needs accelerate: "
                                     "pip install 'tunewise[train]'") from None
    several = ["--multi_gpu"] if processes > 1 else []  # accelerate refuses --multi_gpu for one process
    command = [sys.executable, "-m", "accelerate.commands.launch", *several, "--num_processes", str(processes),
               "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
               "--main_process_port", str(_free_port()), "-m", "tunewise.training.distributed", str(job_path)]
    with open(log_path, "w") as log:  # this launch's output alone
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=_environment(processes))
        try:
            code = process.wait()
        except BaseException:  # interrupted: stop the processes; the last checkpoint resumes the epoch
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
            raise
    if code:
        raise RunError(f"data-parallel training failed (exit status {code}): {_first_error(log_path)} "
                       f"(the processes' output: {log_path})")


def _first_error(log_path: Path) -> str:
    """The first exception a process raised, from the launch's log (torchrun's own summary comes last)."""
    lines = log_path.read_text(errors="replace").splitlines()
    errors = [line.strip() for line in lines if re.match(r"\s*(\[rank\d+\]:\s*)?[\w.]+(Error|Exception): ", line)]
    return errors[0] if errors else (lines[-1].strip() if lines else "no output")


def _environment(processes: int) -> dict[str, str]:
    """This process's environment, with tunewise importable and the CPU threads split between processes."""
    env = dict(os.environ)
    source = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (source, env.get("PYTHONPATH")) if p)
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // processes)))
    return env


def _free_port() -> int:
    """A port for the processes' rendezvous: not accelerate's fixed default, which two runs would share."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_job(job_path: Path) -> None:
    """One launched process: rebuild the model, resume from the checkpoint, train this epoch's rest."""
    import torch
    from accelerate import Accelerator
    from accelerate.utils import InitProcessGroupKwargs

    from ..backends.models import load_causal_lm, with_lora
    from ..task import TrainSettings
    job = json.loads(job_path.read_text())
    cpu = job["device"] == "cpu"
    # gloo on CPU, named: accelerate would pick MPI wherever torch has it, which needs mpirun
    handlers = [InitProcessGroupKwargs(backend="gloo")] if cpu else []
    accelerator = Accelerator(cpu=cpu, mixed_precision="no", kwargs_handlers=handlers)
    device = str(accelerator.device)
    model = load_causal_lm(job["model"], device)
    if job.get("lora"):
        torch.manual_seed(0)  # any: the checkpoint holds the weights to start from
        model = with_lora(model, **job["lora"])
    examples = [SFTExample(**e) for e in json.loads(Path(job["examples"]).read_text())]
    trainer = SFTTrainer(model, TrainSettings(**job["settings"]), examples, out_dir=Path(job["out_dir"]),
                         pad_id=job["pad_id"], device=device, accelerator=accelerator)
    trainer._resume()
    trainer.model.train()
    trainer.run_batches()
    trainer.save_checkpoint()  # the first process; the launcher returns once every process has ended
    # no wait_for_everyone(): its barrier names a GPU per process, which CPU processes on a machine with
    # fewer GPUs than processes do not have (seen on a one-GPU machine)
    accelerator.end_training()


if __name__ == "__main__":
    run_job(Path(sys.argv[1]))
