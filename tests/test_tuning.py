"""Fine-tuning and hybrid arms on the tiny random Llama: recorded, resumable, reloadable."""


import pytest
import torch

import tunewise
from conftest import WORDS
from tunewise.execution.runner import arm_plan
from tunewise.task import TrainSettings, validate_task
from tunewise.training.loop import SFTTrainer, build_example


@pytest.fixture
def tuning_task(tmp_path, tiny_model_dir, words_csv):
    def make(**overrides):
        data = {"name": "words", "instruction": "Classify the sentiment of the word.",
                "data": {"path": str(words_csv), "input": "Word: {word}", "target": "label"},
                "model": str(tiny_model_dir), "batch_size": 4,
                "splits": {"train": 0.6, "dev": 0.2, "test": 0.2, "seed": 0},
                "arms": [{"type": "structured", "decoding": "constrained"},
                         {"type": "lora", "decoding": "constrained", "r": 4,
                          "train": {"epochs": 2, "batch_size": 4, "learning_rate": 1e-2}},
                         {"type": "hybrid", "tuned": "lora", "prompt": "structured", "decoding": "constrained"}]}
        data.update(overrides)
        return validate_task(data)
    return make


def test_lora_and_hybrid_arms_train_record_and_save(tuning_task, tmp_path):
    result = tunewise.run(tuning_task(), home=tmp_path / "home", progress=False)
    assert set(result.summaries) == {"structured", "lora", "hybrid"}
    from tunewise.store.sqlite import Store
    arms = {a["name"]: a for a in Store(result.store_path).arms(result.run_id)}
    training = arms["lora"]["training"]
    assert training["epochs_run"] == 2 and len(training["dev"]) == 2
    assert training["steps"] == 2 * 3  # 12 train words, batches of 4
    assert training["examples_seen"] == 24 and training["tokens_seen"] > 0
    assert 0 < training["trainable_params"] < training["total_params"]
    assert training["train_flops"] > 4 * training["total_params"] * training["tokens_seen"] * 0.5
    assert all("loss" in step for step in training["losses"])
    adapter = tmp_path / "home" / "tuned" / training["path"].split("/")[-1] / "adapter"
    assert (adapter / "adapter_config.json").exists() and (adapter / "adapter_model.safetensors").exists()
    # the tuned arm is asked with the bare input; the hybrid with the structured prompt
    assert arms["lora"]["prompt"][0] == {"role": "user", "content": "{input}"}
    assert arms["hybrid"]["prompt"][0]["role"] == "system"
    # matched (the default): the hybrid trains its own adapter with the structured prompt, the lora settings
    hybrid = arms["hybrid"]["training"]
    assert hybrid["matched"] and hybrid["settings_of"] == "lora" and "uses" not in hybrid
    assert hybrid["path"] != training["path"] and hybrid["steps"] == training["steps"]
    assert (tmp_path / "home" / "tuned" / hybrid["path"].split("/")[-1] / "adapter" / "adapter_config.json").exists()


def test_a_matched_hybrid_trains_on_the_prompt_it_is_asked_with(tuning_task, tmp_path, monkeypatch):
    """The adapter's training text is the hybrid's prompt (system turn and all), not the bare input."""
    from tunewise.training import loop as train_module
    seen = []
    original = train_module.build_example

    def spy(tokenizer, prompt, *args, **kw):
        seen.append(prompt)
        return original(tokenizer, prompt, *args, **kw)
    monkeypatch.setattr(train_module, "build_example", spy)
    task = tuning_task()
    tunewise.run(task, home=tmp_path, progress=False)
    bare = [p for p in seen if task.instruction not in p]
    prompted = [p for p in seen if task.instruction in p]
    assert len(bare) == len(prompted) == 12  # lora: the bare word; the hybrid: the structured prompt


def test_a_plain_hybrid_reuses_the_tuned_arms_adapter(tuning_task, tmp_path):
    arms = [{"type": "structured", "decoding": "constrained"},
            {"type": "lora", "decoding": "constrained", "r": 4, "train": {"epochs": 1, "batch_size": 4}},
            {"type": "hybrid", "tuned": "lora", "prompt": "structured", "decoding": "constrained",
             "training": "plain"}]
    result = tunewise.run(tuning_task(arms=arms), home=tmp_path, progress=False)
    from tunewise.store.sqlite import Store
    stored = {a["name"]: a for a in Store(result.store_path).arms(result.run_id)}
    assert stored["hybrid"]["training"]["uses"] == "lora" and not stored["hybrid"]["training"]["matched"]
    assert stored["hybrid"]["training"]["path"] == stored["lora"]["training"]["path"]


def test_saved_adapter_reloads_to_the_same_predictions(tuning_task, tmp_path, tiny_model_dir):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from tunewise.store.sqlite import Store
    result = tunewise.run(tuning_task(), home=tmp_path, progress=False)
    store = Store(result.store_path)
    arm = next(a for a in store.arms(result.run_id) if a["name"] == "lora")
    rows = store.predictions(result.run_id, "lora")
    base = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir))
    model = PeftModel.from_pretrained(base, arm["training"]["path"] + "/adapter").eval()
    from tunewise.backends.base import ScoreRequest
    from tunewise.backends.local import LocalBackend
    backend = LocalBackend(str(tiny_model_dir), model_obj=model, device="cpu", prefix_cache=False)
    scores = backend.score_choices([ScoreRequest(r["messages"], ("negative", "positive")) for r in rows])
    for row, score in zip(rows, scores):
        assert [score.logprobs[0], score.logprobs[1]] == pytest.approx(
            [row["extra"]["logprobs"]["negative"], row["extra"]["logprobs"]["positive"]], abs=1e-4)
        assert ("negative", "positive")[score.best()] == row["parsed"]


def test_a_rerun_reuses_the_finished_training(tuning_task, tmp_path, monkeypatch):
    first = tunewise.run(tuning_task(), home=tmp_path, progress=False)
    monkeypatch.setattr(SFTTrainer, "train", lambda self: pytest.fail("trained again"))
    second = tunewise.run(tuning_task(), home=tmp_path, progress=False)
    assert second.summaries["lora"]["metrics"] == first.summaries["lora"]["metrics"]
    assert second.summaries["lora"]["cached"] == second.summaries["lora"]["n"]


def _trainer(model, out_dir, examples, **kw):
    args = TrainSettings(epochs=2, batch_size=2, checkpoint_every_s=1e-9, patience=0, learning_rate=1e-2, seed=3)
    return SFTTrainer(model, args, examples, out_dir=out_dir, **kw)


def _examples(backend):
    eot = backend.end_of_turn_id()
    return [build_example(backend.tokenizer, backend.render([{"role": "user", "content": w}]), label, eot, 64)
            for w, label in WORDS[:8]]


def _lora(tiny_model_dir, dropout: float = 0.1):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM
    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir))
    return get_peft_model(base, LoraConfig(r=4, lora_alpha=8, lora_dropout=dropout,
                                           target_modules=["q_proj", "v_proj"]))


def test_interrupted_training_resumes_to_the_same_weights(tiny_backend, tiny_model_dir, tmp_path):
    examples = _examples(tiny_backend)
    reference = _lora(tiny_model_dir)
    _trainer(reference, tmp_path / "ref", examples).train()

    model = _lora(tiny_model_dir)
    steps = []

    def stop_at_five(n, info):
        steps.append(n)
        if len(steps) == 5:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _trainer(model, tmp_path / "run", examples, progress=stop_at_five).train()
    resumed_model = _lora(tiny_model_dir)  # a new process would start from fresh weights
    seen = []
    state = _trainer(resumed_model, tmp_path / "run", examples, progress=lambda n, info: seen.append(n)).train()
    assert seen[0] == 4 and state.step == 8  # resumed after the 4 saved steps, not from zero
    for (name, a), b in zip(reference.named_parameters(), resumed_model.parameters()):
        if a.requires_grad:
            assert torch.equal(a, b), name


def test_answer_and_end_of_turn_are_labeled_prompt_is_not(tiny_backend):
    example = _examples(tiny_backend)[0]
    prompt_len = len(tiny_backend.encode([{"role": "user", "content": WORDS[0][0]}]))
    assert example.labels[:prompt_len] == [-100] * prompt_len
    answer = tiny_backend.tokenizer(WORDS[0][1], add_special_tokens=False)["input_ids"]
    assert example.labels[prompt_len:] == answer + [tiny_backend.end_of_turn_id()]
    assert tiny_backend.tokenizer.decode([tiny_backend.end_of_turn_id()]) == "<|im_end|>"


def test_early_stopping_keeps_the_best_epoch(tiny_backend, tiny_model_dir, tmp_path):
    metrics = iter([0.5, 0.9, 0.7, 0.6, 0.4])
    model = _lora(tiny_model_dir)
    snapshots = []

    def evaluate(m):
        snapshots.append({k: v.detach().clone() for k, v in m.named_parameters() if v.requires_grad})
        return next(metrics)

    args = TrainSettings(epochs=5, batch_size=4, patience=2, learning_rate=1e-2, seed=0)
    state = SFTTrainer(model, args, _examples(tiny_backend), out_dir=tmp_path, evaluate=evaluate).train()
    assert state.epoch == 4 and state.stopped_early and state.best_epoch == 2
    for name, value in model.named_parameters():
        if value.requires_grad:
            assert torch.equal(value, snapshots[1][name])


def test_learning_curve_adds_train_sizes_and_shot_counts(tmp_path):
    task = validate_task({
        "instruction": "x", "data": {"path": "d.jsonl", "input": "w", "target": "y"},
        "arms": [{"type": "few_shot", "k": 4}, {"type": "lora"}],
        "learning_curve": {"sizes": [16, 64, "all"], "ks": [1, 4, 8], "min_passes": 100}})
    plan = {c.name or c.type: (c, curve) for c, curve in arm_plan(task)}
    # each k with three seeded example sets (draws); the arm itself is k=4's first
    assert list(plan) == ["few_shot", "lora", "lora@16", "lora@64", "few_shot@k1", "few_shot@k1#1", "few_shot@k1#2",
                          "few_shot@k4#1", "few_shot@k4#2", "few_shot@k8", "few_shot@k8#1", "few_shot@k8#2"]
    assert plan["lora@16"][0].train.train_size == 16 and plan["lora@16"][0].train.min_passes == 100
    assert plan["few_shot@k8"][1] == {"of": "few_shot", "k": 8, "draw": 0}
    assert plan["few_shot@k8#2"][0].draw == 2


def test_references_between_arms_are_checked():
    from tunewise.errors import TaskFileError
    base = {"instruction": "x", "data": {"path": "d.jsonl", "input": "w", "target": "y"}}
    with pytest.raises(TaskFileError, match="tuned .* is not the name of a fine-tune arm"):
        validate_task(dict(base, arms=[{"type": "zero_shot"}, {"type": "hybrid", "tuned": "zero_shot",
                                                                "prompt": "zero_shot"}]))
    with pytest.raises(TaskFileError, match="prompt .* is not the name of a prompt or retrieval arm"):
        validate_task(dict(base, arms=[{"type": "lora", "prompt": "nope"}]))


def test_full_fine_tuning_saves_the_model_and_a_rerun_loads_it(tuning_task, tmp_path, monkeypatch):
    task = tuning_task(arms=[{"type": "full", "decoding": "constrained",
                              "train": {"epochs": 1, "batch_size": 4, "learning_rate": 1e-4}}])
    first = tunewise.run(task, home=tmp_path, progress=False)
    from tunewise.store.sqlite import Store
    store = Store(first.store_path)
    [arm] = store.arms(first.run_id)
    training = arm["training"]
    assert training["trainable_params"] == training["total_params"]  # every weight trains
    assert training["train_flops"] == pytest.approx(6 * training["total_params"] * training["tokens_seen"], rel=0.01)
    model_dir = tmp_path / "tuned" / training["path"].split("/")[-1] / "model"
    assert (model_dir / "config.json").exists() and (model_dir / "model.safetensors").exists()
    monkeypatch.setattr(SFTTrainer, "train", lambda self: pytest.fail("trained again"))
    second = tunewise.run(task.model_copy(update={"cache": "measure"}), home=tmp_path, progress=False)
    assert second.summaries["full"]["cached"] == 0  # answered anew by the reloaded model ...
    a = [r["extra"]["logprobs"] for r in store.predictions(first.run_id, "full")]
    b = [r["extra"]["logprobs"] for r in Store(second.store_path).predictions(second.run_id, "full")]
    for x, y in zip(a, b):  # ... with the same scores
        assert list(x.values()) == pytest.approx(list(y.values()), abs=1e-4)


def test_bfloat16_mixed_precision_keeps_float32_weights_and_the_loss(tiny_backend, tiny_model_dir, tmp_path):
    """bf16 matrix products give nearly the float32 loss; weights and optimizer state stay float32."""
    examples = _examples(tiny_backend)
    losses = {}
    for precision in ("float32", "bfloat16"):
        model = _lora(tiny_model_dir)
        args = TrainSettings(epochs=1, batch_size=8, precision=precision, learning_rate=1e-2, seed=0)
        trainer = SFTTrainer(model, args, examples, out_dir=tmp_path / precision)
        assert trainer.precision == precision
        ids, labels, mask = trainer.collate(list(range(8)))
        losses[precision] = trainer.loss(ids, labels, mask).item()
        trainer.train()
        assert all(p.dtype == torch.float32 for p in model.parameters())
    assert losses["bfloat16"] == pytest.approx(losses["float32"], rel=0.03)
    assert losses["bfloat16"] != losses["float32"]  # the products really ran in bfloat16


def test_the_shared_start_trains_to_the_same_weights_with_eager_attention(tiny_backend, tiny_model_dir, tmp_path):
    """A batch's shared start run once (share_prefix) trains the weights the plain pass trains; the training
    runs with eager attention on a CPU and gives the model back with its own kernel."""
    examples = _examples(tiny_backend)
    args = TrainSettings(epochs=1, batch_size=4, learning_rate=1e-2, seed=0)
    with_dropout = SFTTrainer(_lora(tiny_model_dir), args, examples, out_dir=tmp_path / "dropout")
    assert not with_dropout.shared_start(list(range(4)))  # one mask for every row's start: not the plain pass
    weights, kernels = {}, []
    for share in (True, False):
        model = _lora(tiny_model_dir, dropout=0.0)
        own = model.config._attn_implementation
        args = TrainSettings(epochs=2, batch_size=4, precision="float32", learning_rate=1e-2, seed=0,
                             share_prefix=share)
        trainer = SFTTrainer(model, args, examples, out_dir=tmp_path / str(share))
        assert bool(trainer.shared_start(list(range(4)))) == share  # the chat template's start, every row
        trainer.progress = lambda n, info="", config=model.config: kernels.append(config._attn_implementation)
        trainer.train()
        assert model.config._attn_implementation == own
        weights[share] = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    assert set(kernels) == ({"eager"} if own == "sdpa" else {own})
    for name, value in weights[True].items():
        assert torch.allclose(value, weights[False][name], atol=1e-5), name


def test_bfloat16_training_holds_the_frozen_base_in_bfloat16_and_gives_it_back(tiny_backend, tiny_model_dir,
                                                                                tmp_path):
    """While a LoRA trains in bfloat16 its frozen base is held in bfloat16 (no cast at each step); after, and
    while dev is scored, the base is its own float32 weights again, unchanged."""
    model = _lora(tiny_model_dir)
    before = {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}
    seen = []

    def evaluate(m):
        seen.append(("dev", next(p for p in m.parameters() if not p.requires_grad).dtype))
        return 0.5
    args = TrainSettings(epochs=1, batch_size=4, precision="bfloat16", learning_rate=1e-2, seed=0)
    trainer = SFTTrainer(model, args, _examples(tiny_backend), out_dir=tmp_path, evaluate=evaluate)
    trainer.progress = lambda n, info="": seen.append(
        ("step", next(p for p in model.parameters() if not p.requires_grad).dtype))
    trainer.train()
    assert seen[0] == ("step", torch.bfloat16) and seen[-1] == ("dev", torch.float32)
    assert all(torch.equal(p, before[n]) for n, p in model.named_parameters() if not p.requires_grad)


def test_auto_precision_follows_the_hardware(monkeypatch):
    from tunewise.training import loop as train
    assert train.resolve_precision("float32", "cpu") == "float32"
    assert train.resolve_precision("bfloat16", "cpu") == "bfloat16"
    monkeypatch.setattr(train, "native_bf16", lambda device: False)
    assert train.resolve_precision("auto", "cpu") == "float32"
    monkeypatch.setattr(train, "native_bf16", lambda device: True)
    assert train.resolve_precision("auto", "cpu") == "bfloat16"
