"""Export and predict: a bundle answers as its arm answered the run's test split."""

import json

import pytest

import tunewise
from bundle_fixtures import tiny_task
from conftest import oracle
from tunewise.errors import TunewiseError
from tunewise.ship.bundle import Bundle
from tunewise.ship.export import export
from tunewise.ship.predict import predict_file
from tunewise.store.sqlite import Store
from tunewise.testing import FaultyServer


def test_export_writes_manifest_card_prompt_and_adapter(tiny_run):
    bundle = tiny_run.bundle()  # the recommended arm
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert manifest["recommended"] and manifest["run_id"] == tiny_run.run_id
    stored = tiny_run.summary(manifest["arm"])["metrics"]["accuracy"]
    assert manifest["metrics"]["accuracy"] == {k: stored[k] for k in ("value", "low", "high", "higher_is_better")}
    assert manifest["data_fingerprint"] and manifest["config_hash"] and manifest["versions"]["export"]["torch"]
    assert manifest["decision"]["reasons"] and set(manifest["files"]) == {"README.md", "prompt.json"}
    lora = tiny_run.bundle("lora")
    assert {"adapter/adapter_config.json", "adapter/adapter_model.safetensors"} <= set(
        json.loads((lora / "manifest.json").read_text())["files"])
    card = (lora / "README.md").read_text()
    front = card.split("---")[1]
    import yaml
    meta = yaml.safe_load(front)
    assert meta["library_name"] == "peft" and meta["model-index"][0]["results"][0]["metrics"][0]["type"] == "accuracy"
    assert "PeftModel.from_pretrained" in card and "--enable-lora --lora-modules" in card
    assert "not the arm the run recommends" in card


@pytest.mark.parametrize("arm", ["few_shot", "structured"])  # serve's round trip covers the others
def test_predict_on_the_test_split_gives_the_stored_answers_and_metric(tiny_run, tmp_path, arm):
    rows = tiny_run.rows(arm)
    inputs = tmp_path / "test.jsonl"
    inputs.write_text("".join(json.dumps({"id": r["example_id"], "word": r["input"].removeprefix("Word: "),
                                          "label": r["target"]}) + "\n" for r in rows))
    result = predict_file(Bundle.load(tiny_run.bundle(arm), device="cpu"), inputs, tmp_path / "out.jsonl",
                          batch_size=8, progress=False)
    answers = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [a["id"] for a in answers] == [r["example_id"] for r in rows]
    assert [a["answer"] for a in answers] == [r["raw"] for r in rows]
    assert [a["parsed"] for a in answers] == [r["parsed"] for r in rows]
    if arm == "structured":  # a scored arm: each label's score
        assert answers[0]["scores"] == pytest.approx(rows[0]["extra"]["logprobs"], abs=1e-4)
    stored = tiny_run.summary(arm)["metrics"]
    assert {k: v["value"] for k, v in result.summary["metrics"].items()} == {k: v["value"] for k, v in stored.items()}


def test_predict_resumes_after_a_kill_and_skips_rows_written(tiny_run, tmp_path):
    bundle = Bundle.load(tiny_run.bundle("structured"), device="cpu")
    inputs = tmp_path / "in.csv"
    inputs.write_text("word\n" + "".join(f"w{i}\n" for i in range(10)))
    out = tmp_path / "out.jsonl"
    predict_file(bundle, inputs, out, batch_size=4, progress=False)
    full = out.read_text().splitlines()
    # a kill after the first batch, in the middle of writing the second
    out.write_text("\n".join(full[:4]) + "\n" + full[4][:10])
    calls = []
    answer = bundle.answer
    bundle.answer = lambda examples, *a, **k: calls.append(len(examples)) or answer(examples, *a, **k)
    result = predict_file(bundle, inputs, out, batch_size=4, progress=False)
    assert (result.skipped, result.written, calls) == (4, 6, [4, 2])
    def answers(lines):
        return [{k: v for k, v in json.loads(line).items() if k != "latency_s"} for line in lines]
    assert answers(out.read_text().splitlines()) == answers(full)
    assert [a["id"] for a in answers(full)] == [str(i) for i in range(2, 12)]  # CSV line numbers
    assert predict_file(bundle, inputs, out, progress=False).written == 0


def test_peft_loads_the_adapter_and_answers_as_the_arm(tiny_run):
    """Plain transformers + peft, none of tunewise's engine: the same greedy answers on the first 20 test items."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer
    bundle = tiny_run.bundle("lora", merge=True)
    tokenizer = AutoTokenizer.from_pretrained(bundle / "adapter")
    base = AutoModelForCausalLM.from_pretrained(tiny_run.model_dir)
    models = {"peft": PeftModel.from_pretrained(base, str(bundle / "adapter")).eval(),
              "merged": AutoModelForCausalLM.from_pretrained(bundle / "merged").eval()}
    rows = tiny_run.rows("lora")[:20]
    assert len(rows) == 20
    for name, model in models.items():
        answers = []
        for row in rows:
            ids = tokenizer.apply_chat_template(row["messages"], add_generation_prompt=True, return_tensors="pt",
                                                return_dict=True)["input_ids"]
            with torch.inference_mode():
                out = model.generate(ids, max_new_tokens=6, do_sample=False, eos_token_id=tokenizer.eos_token_id,
                                     pad_token_id=tokenizer.pad_token_id)
            answers.append(tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True).strip())
        assert answers == [r["raw"] for r in rows], name


def test_export_refuses_what_it_cannot_reproduce(tiny_run, tmp_path):
    store = tiny_run.store()
    with pytest.raises(TunewiseError, match="no arm 'nope'"):
        export(store, tiny_run.run_id, tmp_path / "a", "nope")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("")
    with pytest.raises(TunewiseError, match="not an empty directory"):
        export(store, tiny_run.run_id, tmp_path / "full", "structured")
    with pytest.raises(TunewiseError, match="--merge needs a LoRA arm"):
        export(store, tiny_run.run_id, tmp_path / "b", "structured", merge=True)
    assert not (tmp_path / "b").exists()
    with pytest.raises(TunewiseError, match="no run"):
        export(store, "nope", tmp_path / "c")


def test_export_refuses_when_the_data_changed(tmp_path, tiny_model_dir):
    data = tmp_path / "words.csv"
    from bundle_fixtures import ROWS
    data.write_text("word,label\n" + "".join(f"{w},{label}\n" for w, label in ROWS))
    task = tiny_task(data, "fake", arms=[{"type": "few_shot", "k": 2}])
    result = tunewise.run(task, home=tmp_path / "h", progress=False)
    data.write_text(data.read_text().replace("happy0", "glad0"))
    with pytest.raises(TunewiseError, match="data changed"):
        export(Store(result.store_path), result.run_id, tmp_path / "b", "few_shot")


PROMPT_ARMS = [
    {"type": "few_shot", "name": "similar", "k": 3, "selection": "similar"},
    {"type": "few_shot", "name": "calibrated", "k": 2, "decoding": "constrained", "calibrate": True},
    {"type": "structured", "name": "no_context", "levers": {"context": False}},
    {"type": "searched", "search": {"trials": 6, "dev_items": 6, "ks": [0, 2], "example_sets": 2,
                                    "label_words": {"positive": ["good"], "negative": ["bad"]}}},
    {"type": "retrieval", "passages": 2},
]


def test_every_prompt_arm_type_is_rebuilt_exactly(tmp_path, tiny_model_dir):
    """Export checks that the bundle's prompt gives the messages the run sent for every test item; predict then
    gives the stored answers (the fake model answers from the prompt's text)."""
    from bundle_fixtures import ROWS
    data = tmp_path / "words.csv"
    data.write_text("word,label\n" + "".join(f"{w},{label}\n" for w, label in ROWS))
    knowledge = tmp_path / "kb.jsonl"
    knowledge.write_text("".join(json.dumps({"text": f"{w} is a {label} word"}) + "\n" for w, label in ROWS[:12]))
    task = tiny_task(data, "fake", arms=PROMPT_ARMS, knowledge={"path": str(knowledge)})
    result = tunewise.run(task, home=tmp_path / "h", progress=False)
    store = Store(result.store_path)
    for arm in [a.get("name", a["type"]) for a in PROMPT_ARMS]:
        bundle = export(store, result.run_id, tmp_path / arm, arm)
        rows = store.predictions(result.run_id, arm)
        inputs = tmp_path / f"{arm}.jsonl"
        inputs.write_text("".join(json.dumps({"id": r["example_id"], "input": r["input"]}) + "\n" for r in rows))
        predict_file(Bundle.load(bundle), inputs, tmp_path / f"{arm}.out.jsonl", progress=False)
        answers = [json.loads(line) for line in (tmp_path / f"{arm}.out.jsonl").read_text().splitlines()]
        assert [a["parsed"] for a in answers] == [r["parsed"] for r in rows], arm
    spec = json.loads((tmp_path / "similar" / "prompt.json").read_text())
    assert spec["shots"] is None and len(spec["pool"]) == 32  # chosen per input from the train split
    assert json.loads((tmp_path / "retrieval" / "prompt.json").read_text())["passages"]


def test_remote_bundle_keeps_the_endpoint_never_the_key(tmp_path, words_csv, monkeypatch):
    secret = "sk-test-NEVER-EXPORT-THIS"
    monkeypatch.setenv("TW_TEST_KEY", secret)
    with FaultyServer(oracle) as server:
        endpoint = {"base_url": server.url, "model": "test-model", "api_key_env": "TW_TEST_KEY", "concurrency": 4}
        task = tiny_task(words_csv, "remote", endpoints={"remote": endpoint},
                         arms=[{"type": "zero_shot"}, {"type": "structured", "decoding": "constrained"}])
        result = tunewise.run(task, home=tmp_path / "h", progress=False)
        bundle = export(Store(result.store_path), result.run_id, tmp_path / "b", "zero_shot")
        for path in bundle.rglob("*"):
            assert secret not in path.read_text()
        manifest = json.loads((bundle / "manifest.json").read_text())
        assert manifest["model"]["endpoint"]["api_key_env"] == "TW_TEST_KEY"
        (tmp_path / "in.jsonl").write_text('{"word": "happy"}\n{"word": "sad"}\n')
        sent = server.received
        predict_file(Bundle.load(bundle), tmp_path / "in.jsonl", tmp_path / "out.jsonl", progress=False)
        assert server.received == sent + 2
        assert server.headers_seen[-1]["Authorization"] == f"Bearer {secret}"
    answers = [json.loads(line)["parsed"] for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert answers == ["positive", "negative"]


def test_cli_export_and_predict(tiny_run, tmp_path):
    from click.testing import CliRunner

    from tunewise.cli import main
    out = tmp_path / "bundle"
    result = CliRunner().invoke(main, ["export", tiny_run.run_id, "structured", "--out", str(out),
                                       "--home", str(tiny_run.home)])
    assert result.exit_code == 0, result.output
    assert f"wrote {out}" in result.output
    (tmp_path / "in.jsonl").write_text('{"id": "a", "word": "happy", "label": "positive"}\n')
    result = CliRunner().invoke(main, ["predict", str(out), str(tmp_path / "in.jsonl"), "--out",
                                       str(tmp_path / "o.jsonl"), "--no-progress", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert "wrote 1 answers" in result.output and "accuracy:" in result.output
    import pyarrow as pa
    import pyarrow.parquet as pq
    pq.write_table(pa.table({"id": ["a", "b"], "word": ["happy", "sad"]}), tmp_path / "in.parquet")
    result = CliRunner().invoke(main, ["predict", str(out), str(tmp_path / "in.parquet"), "--out",
                                       str(tmp_path / "p.jsonl"), "--no-progress", "--device", "cpu"])
    assert result.exit_code == 0 and [json.loads(line)["id"] for line in (tmp_path / "p.jsonl").open()] == ["a", "b"]
    result = CliRunner().invoke(main, ["predict", str(tmp_path), str(tmp_path / "in.jsonl"), "--out",
                                       str(tmp_path / "o2.jsonl")])
    assert result.exit_code == 2 and "not a tunewise bundle" in result.output
    result = CliRunner().invoke(main, ["export", "nope", "--out", str(tmp_path / "x"), "--home", str(tiny_run.home)])
    assert result.exit_code == 2 and result.output.startswith("error: no run 'nope'")


def test_predict_refuses_to_resume_another_files_or_another_bundles_answers(tiny_run, tmp_path):
    bundle = Bundle.load(tiny_run.bundle("structured"), device="cpu")
    first, other = tmp_path / "a.csv", tmp_path / "b.csv"
    first.write_text("word\nhappy\nsad\n")
    other.write_text("word\nhate\nlove\ncruel\n")
    out = tmp_path / "out.jsonl"
    predict_file(bundle, first, out, progress=False)
    with pytest.raises(TunewiseError, match="was answered for another input"):
        predict_file(bundle, other, out, progress=False)
    zero = Bundle.load(tiny_run.bundle("zero_shot"), device="cpu")
    with pytest.raises(TunewiseError, match="written by another bundle"):
        predict_file(zero, first, out, progress=False)


def test_predict_refuses_a_target_outside_the_bundles_labels(tiny_run, tmp_path):
    bundle = Bundle.load(tiny_run.bundle("structured"), device="cpu")
    inputs = tmp_path / "in.csv"
    inputs.write_text("word,label\nhappy,positive\nsad,neutral\n")
    with pytest.raises(TunewiseError, match="label 'neutral' is not one of the bundle's labels"):
        predict_file(bundle, inputs, tmp_path / "out.jsonl", progress=False)


def test_an_edited_bundle_is_refused(tiny_run, tmp_path):
    import shutil
    edited = tmp_path / "edited"
    shutil.copytree(tiny_run.bundle("structured"), edited)
    prompt = edited / "prompt.json"
    prompt.write_text(prompt.read_text().replace("Classify the sentiment", "Classify the colour"))
    with pytest.raises(TunewiseError, match="changed since it was exported"):
        Bundle.load(edited, device="cpu")


def test_a_task_with_assertions_exports_and_predict_scores_them(tmp_path):
    from bundle_fixtures import ROWS
    from tunewise.ship.bundle import Bundle
    data = tmp_path / "words.csv"
    data.write_text("word,label\n" + "".join(f"{w},{label}\n" for w, label in ROWS))
    task = tiny_task(data, "fake", arms=[{"type": "zero_shot"}], type="generation", labels=None,
                     assertions=[{"type": "word_count", "name": "short", "max": 3}])
    result = tunewise.run(task, home=tmp_path / "h", progress=False)
    out = export(Store(result.store_path), result.run_id, tmp_path / "b", "zero_shot")
    bundle = Bundle.load(out)
    assert "short" in bundle.task.metric_names() and bundle.task.assertions[0].name == "short"
