"""Data-parallel training (accelerate, DDP): two CPU processes over gloo train what one process trains."""

from __future__ import annotations

import json

import pytest
import torch

from tunewise.backends.models import load_causal_lm, with_lora
from tunewise.task import TrainSettings
from tunewise.training.distributed import LaunchedTrainer, resolve_processes
from tunewise.training.loop import SFTTrainer, build_example

pytest.importorskip("accelerate")

LORA = {"r": 4, "alpha": 8, "dropout": 0.0, "target_modules": None}


def _examples(tokenizer, n: int):
    words = ["happy", "sad", "joy", "awful", "great", "terrible", "love", "hate", "kind", "cruel", "calm"]
    labels = ["positive", "negative"]
    eos = tokenizer.convert_tokens_to_ids("<|im_end|>")
    # prompts of different lengths: batches carry padding, and shares differ in length
    return [build_example(tokenizer, f"Word: {words[i % len(words)]}" + " very" * (i % 3), labels[i % 2], eos, 64)
            for i in range(n)]


def _lora_model(model_dir, device="cpu"):
    torch.manual_seed(3)  # the same initial adapter for both trainings
    return with_lora(load_causal_lm(str(model_dir), device), **LORA)


def _weights(model) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


def test_two_processes_train_the_same_weights_as_one(tiny_model_dir, tiny_backend, tmp_path):
    # 9 examples in batches of 4: the last micro-batch has one example, so one process has no share of it
    examples = _examples(tiny_backend.tokenizer, 9)
    settings = TrainSettings(epochs=2, learning_rate=5e-3, batch_size=4, grad_accum=2, seed=5, precision="float32",
                             patience=0, warmup_ratio=0.0)
    one_model = _lora_model(tiny_model_dir)
    start = _weights(one_model)
    one = SFTTrainer(one_model, settings, examples, out_dir=tmp_path / "one").train()

    calls = []
    two_model = _lora_model(tiny_model_dir)
    trainer = LaunchedTrainer(two_model, settings, examples, job={"model": str(tiny_model_dir), "lora": LORA},
                              processes=2, out_dir=tmp_path / "two",
                              evaluate=lambda model: calls.append(_weights(model)) or float(len(calls)))
    two = trainer.train()

    assert (two.step, two.epoch, two.examples_seen, two.tokens_seen) == (one.step, one.epoch, one.examples_seen,
                                                                         one.tokens_seen)
    assert [s["loss"] for s in two.losses] == pytest.approx([s["loss"] for s in one.losses], rel=1e-4)
    trained_one, trained_two = _weights(one_model), _weights(two_model)
    for name, value in trained_one.items():
        assert not torch.equal(value, start[name]) or "lora_B" not in name  # it trained
        torch.testing.assert_close(trained_two[name], value, rtol=1e-4, atol=1e-5)
    # evaluation stayed in this process, once per epoch, on the epoch's weights
    assert len(calls) == 2 and two.best_epoch == 2
    job = json.loads((tmp_path / "two" / "job.json").read_text())
    assert job["device"] == "cpu" and job["settings"]["seed"] == 5


def test_a_failed_launch_says_where_its_log_is(tiny_model_dir, tiny_backend, tmp_path):
    from tunewise.errors import RunError
    settings = TrainSettings(epochs=1, learning_rate=1e-3, batch_size=4, seed=1, precision="float32")
    model = _lora_model(tiny_model_dir)
    trainer = LaunchedTrainer(model, settings, _examples(tiny_backend.tokenizer, 4),
                              job={"model": str(tmp_path / "no-such-model"), "lora": LORA}, processes=2,
                              out_dir=tmp_path / "out")
    with pytest.raises(RunError, match="no-such-model.*launch.log"):
        trainer.train()


def test_processes_auto_is_one_per_visible_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    assert resolve_processes("auto", "cuda") == 4
    assert resolve_processes("auto", "cuda:1") == 1  # a named GPU: that one alone
    assert resolve_processes("auto", "cpu") == 1
    assert resolve_processes(3, "cpu") == 3
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert resolve_processes("auto", "cuda") == 1


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (none on this machine)")
def test_launched_training_on_the_gpus_matches_one_process(tiny_model_dir, tiny_backend, tmp_path):
    # one process per visible GPU (NCCL); with one GPU, one launched process: the handover and the
    # launched process's CUDA path, against the same training in this process
    examples = _examples(tiny_backend.tokenizer, 9)
    settings = TrainSettings(epochs=1, learning_rate=5e-3, batch_size=4, seed=5, patience=0, warmup_ratio=0.0)
    here = _lora_model(tiny_model_dir, "cuda")
    one = SFTTrainer(here, settings, examples, out_dir=tmp_path / "one", device="cuda").train()
    launched = _lora_model(tiny_model_dir, "cuda")
    two = LaunchedTrainer(launched, settings, examples, job={"model": str(tiny_model_dir), "lora": LORA},
                          processes=resolve_processes("auto", "cuda"), out_dir=tmp_path / "gpus",
                          device="cuda").train()
    assert (two.step, two.tokens_seen) == (one.step, one.tokens_seen)
    for name, value in _weights(here).items():
        torch.testing.assert_close(_weights(launched)[name].float(), value.float(), rtol=1e-2, atol=1e-3)


def test_more_processes_than_gpus_is_refused_before_running(task_file, monkeypatch):
    from tunewise.errors import TaskFileError
    from tunewise.execution.checks import _check_processes
    from tunewise.task import load_task
    text = task_file.read_text().replace("model: fake", "model: some/model")
    task_file.write_text(text + "  - {type: lora, train: {processes: 4}}\n")
    task = load_task(task_file)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    for device, message in [("cuda", "4 training processes asked for, one per GPU, but this machine has 2 GPU"),
                            ("cuda:1", "not on device 'cuda:1' alone")]:
        with pytest.raises(TaskFileError, match=message) as caught:
            _check_processes(task.model_copy(update={"device": device}), str(task_file))
        assert caught.value.field == "arms.3.train.processes"
    _check_processes(task.model_copy(update={"device": "cpu"}), str(task_file))  # CPU processes: any number
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    _check_processes(task.model_copy(update={"device": "auto"}), str(task_file))
