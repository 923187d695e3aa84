"""Every setting is used or refused (issue 28): each option of the search, knowledge, executor, judge and
splits is checked against the task before any model work, and a setting nothing reads is a warning naming it.

As in test_bad_input.py, each case runs the command line in-process against a home holding one finished run:
exit code 2, one error line naming file, line and field, no traceback, the store unchanged; or, for what is
allowed but suspicious, a run that succeeds with a warning in its output and in the report.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

import test_bad_input
from conftest import TASK_YAML, WORDS
from test_bad_input import CSV, _in_order, add, arms, invoke, snapshot, sub, then
from tunewise.cli import main

finished_home, home = test_bad_input.finished_home, test_bad_input.home  # the fixtures: a home with one run

SPLITS = "splits: {train: 0.5, dev: 0.2, test: 0.3, seed: 1}\n"


def searched(settings: str):
    return arms(f"{{type: searched, search: {{trials: 2, {settings}}}}}")


def csv_with(column: str, values) -> str:
    """The fixture's rows with one more column, its values in row order."""
    return f"word,label,{column}\n" + "".join(f"{w},{label},{v}\n" for (w, label), v in zip(WORDS, values))


def write_knowledge(files: dict[str, bytes | str]):
    def setup(tmp_path: Path) -> None:
        for name, content in files.items():
            path = tmp_path / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return setup


JUDGE = "judge: {model: fake, rubric: [{name: c, description: d}], "
RETRIEVAL = arms("{type: zero_shot}", "{type: retrieval}")
SPLIT_COLUMN = csv_with("s", ["train"] * 10 + ["dev"] * 4 + ["test"] * 6)


# kind: (edit of the task, the data (CSV text) or a setup function, key words of the error, in order)
LISTED = {  # the cases issue 28 lists
    "search ks beyond the train split": (searched("ks: [0, 40]"), None,
                                         ["task.yaml:13:", "arms.0.search.ks", "ks 40", "10 of the train split"]),
    "search label_words for a misspelled label": (searched("label_words: {postive: [good]}"), None,
                                                  ["task.yaml:13:", "arms.0.search.label_words.postive",
                                                   "'postive' is not a label", "negative, positive"]),
    "search proposer naming nothing": (searched("proposer: nobody-tunewise/none"), None,
                                       ["task.yaml:13:", "arms.0.search.proposer", "neither an endpoint",
                                        "nor a model that loads"]),
    "search selections empty": (searched("selections: []"), None,
                                ["task.yaml:13:", "arms.0.search.selections", "is empty"]),
    "search layouts empty": (searched("layouts: []"), None, ["arms.0.search.layouts", "is empty"]),
    "search decodings empty": (searched("decodings: []"), None, ["arms.0.search.decodings", "is empty"]),
    "search ks empty": (searched("ks: []"), None, ["arms.0.search.ks", "is empty"]),
    "search blank instruction": (searched("instructions: ['Say it.', '  ']"), None,
                                 ["task.yaml:13:", "arms.0.search.instructions", "an instruction is empty"]),
    # seeds: bounded when the task is read, not when training starts after the prompt arms ran
    "huge LoRA seed": (then(sub("model: fake", "model: MODEL"),
                            arms("{type: zero_shot}", "{type: lora, train: {seed: 99999999999999}}")), None,
                       ["task.yaml:14:", "arms.1.train.seed", "less than or equal to 4294967295"]),
    "huge split seed": (then(sub("model: fake", "model: MODEL"), sub("seed: 1}", "seed: 99999999999}"),
                             arms("{type: zero_shot}", "{type: lora}")), None,
                        ["task.yaml:11:", "splits.seed", "less than or equal to 4294967295"]),
    "group_by leaving the train split empty": (then(sub("seed: 1}", "seed: 1, group_by: label}"),
                                                    arms("{type: searched, search: {trials: 2}}")), None,
                                               ["task.yaml:11:", "splits.group_by", "arm 'searched' shows worked "
                                                "examples", "train split is empty", "put every group in another"]),
    "knowledge in a .txt file": (then(RETRIEVAL, add("knowledge: {path: kb.txt}\n")),
                                 write_knowledge({"kb.txt": "Happy is a positive word.\n"}),
                                 ["kb.txt:", "cannot read .txt as knowledge", "point knowledge.path at the folder"]),
    "binary bytes in a knowledge folder": (then(RETRIEVAL, add("knowledge: {path: kb}\n")), write_knowledge(
        {"kb/a.txt": "Happy is a positive word.\n", "kb/b.md": b"Sad is negative.\n\n\x89PNG\xff\x00\n"}),
        ["kb/b.md:3:", "not valid UTF-8 text", "0x89"]),
    "judge human_score naming a field no row has": (add(JUDGE + "human_score: hscore, human_answer: word}\n"), None,
                                                    ["words.csv:", "hscore:", "no row has the field that "
                                                     "judge.human_score names", "word, label"]),
    "judge human score outside several criteria's scales": (
        add(JUDGE.replace("]", ", {name: e, description: f, scale: [0, 3]}]") + "human_score: hscore, "
            "human_answer: word}\n"), csv_with("hscore", ["", "2", "", "9"] + [""] * 16),
        ["words.csv:5:", "hscore:", "human score '9' is outside the rubric's scales [0, 5]"]),
    "local executor with an address": (add("executor: {type: local, address: 'ray://head:10001'}\n"), None,
                                       ["task.yaml:16:", "executor.address", "is for executor type ray", "ignore it"]),
    "temperature NaN": (add("generation: {temperature: .nan}\n"), None,
                        ["task.yaml:16:", "generation.temperature", "NaN is not a number"]),
    "knowledge passage longer than the model's context": (
        then(sub("model: fake", "model: MODEL"), RETRIEVAL, add("knowledge: {path: kb.jsonl}\n")),
        write_knowledge({"kb.jsonl": '{"text": "Happy is positive."}\n' + json.dumps(
            {"text": "the quick brown fox " * 100_000}) + "\n"}),  # 2 MB
        ["kb.jsonl:2:", "text:", "1,999,999 characters", "longer than", "context can hold", "512 tokens"]),
}
SWEEP = {  # found by trying the other settings as a new user would
    "search label word standing for two labels": (searched("label_words: {positive: [negative]}"), None,
                                                  ["arms.0.search.label_words.positive", "'negative' would stand "
                                                   "for both 'negative' and 'positive'"]),
    "search label word empty": (searched("label_words: {positive: ['']}"), None,
                                ["task.yaml:13:", "arms.0.search.label_words.positive", "a word for 'positive' is empty"]),
    "search label words an empty list": (searched("label_words: {positive: []}"), None,
                                         ["arms.0.search.label_words.positive", "lists no word"]),
    "search label_words on a generation task": (then(sub("type: classification", "type: generation"),
                                                     searched("label_words: {positive: [good]}")), None,
                                                ["arms.0.search.label_words", "classification tasks, not generation"]),
    "search constrained decoding on a generation task": (then(sub("type: classification", "type: generation"),
                                                              searched("decodings: [constrained]")), None,
                                                         ["arms.0.search.decodings", "classification task"]),
    "search proposer with an empty train split": (then(sub("train: 0.5", "train: 0"), searched(
        "ks: [0], proposer: fake")), None, ["arms.0.search.proposer", "train split is empty"]),
    "huge search seed": (searched("seed: 4294967296"), None, ["arms.0.search.seed", "less than or equal"]),
    "huge generation seed": (add("generation: {seed: 4294967296}\n"), None, ["generation.seed", "less than"]),
    "huge seed among seeds": (sub("seed: 1}", "seeds: [1, 4294967296]}"), None, ["splits.seeds.1", "less than"]),
    "group_by leaving the dev split empty": (then(sub("seed: 1}", "seed: 1, group_by: label}"),
                                                  sub("train: 0.5, dev: 0.2, test: 0.3", "train: 0.2, dev: 0.2, "
                                                                                         "test: 0.6"),
                                                  searched("ks: [0]")), None,
                                             ["splits.group_by", "scores its prompt search's trials on dev",
                                              "dev split is empty"]),
    "knowledge folder of other files": (then(RETRIEVAL, add("knowledge: {path: kb}\n")),
                                        write_knowledge({"kb/notes.pdf": b"%PDF-1.4"}),
                                        ["kb:", "holds no passage", "no .txt or .md file", "'notes.pdf'"]),
    "knowledge file of another kind": (then(RETRIEVAL, add("knowledge: {path: kb.html}\n")),
                                       write_knowledge({"kb.html": "<p>Happy</p>"}),
                                       ["kb.html:", "cannot read .html as knowledge", "JSONL, CSV or Parquet rows"]),
    "judge max_tokens huge": (add(JUDGE + "max_tokens: 1000000000}\n"), None,
                              ["task.yaml:16:", "judge.max_tokens", "less than or equal to 32768"]),
    "judge human_score empty": (add(JUDGE + "human_score: '', human_answer: word}\n"), None,
                                ["task.yaml:16:", "judge.human_score", "is empty"]),
    "search proposer empty": (searched("proposer: ''"), None, ["task.yaml:13:", "arms.0.search.proposer", "is empty"]),
    "group_by empty": (sub("seed: 1}", "seed: 1, group_by: ''}"), None, ["task.yaml:11:", "splits.group_by",
                                                                         "is empty"]),
    "knowledge path empty (the task's folder)": (then(RETRIEVAL, add("knowledge: {path: ''}\n")),
                                                 write_knowledge({"notes.md": "Happy."}),
                                                 ["task.yaml:15:", "knowledge.path", "is empty"]),
    "knowledge field empty": (then(RETRIEVAL, add("knowledge: {path: kb.jsonl, field: ' '}\n")),
                              write_knowledge({"kb.jsonl": '{"text": "Happy."}\n'}), ["knowledge.field", "is empty"]),
    "local executor with cpus": (add("executor: {cpus: 4}\n"), None, ["executor.cpus", "is for executor type ray"]),
    "ray address malformed": (add("executor: {type: ray, address: 'http//head'}\n"), None,
                              ["task.yaml:16:", "executor.address", "not a Ray address", "ray://HOST:PORT"]),
    "ray units asking for more CPUs than the machine has": (add("executor: {type: ray, cpus: 100000}\n"), None,
                                                            ["task.yaml:16:", "executor.cpus", "100000 CPUs",
                                                             "no unit would ever start"]),
    "ray units asking for more memory than the machine has": (add("executor: {type: ray, memory_gb: 1e7}\n"), None,
                                                              ["executor.memory_gb", "1e+07 GB of memory"]),
}
CASES = {**LISTED, **SWEEP}


@pytest.mark.parametrize("kind", list(CASES))
def test_bad_setting(kind, tmp_path, home, monkeypatch, request):
    edit, data, words = CASES[kind]
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    if callable(data):
        (tmp_path / "words.csv").write_text(CSV)
        data(tmp_path)
    else:
        (tmp_path / "words.csv").write_text(data or CSV)
    text = edit(TASK_YAML)
    if "MODEL" in text:
        text = text.replace("MODEL", str(request.getfixturevalue("tiny_model_dir")))
    task = tmp_path / "task.yaml"
    task.write_text(text)
    before = snapshot(home)
    result = invoke("run", task, "--no-progress", "--home", home)
    assert result.code == 2, result.output
    _in_order(result.error_line(), words)
    assert snapshot(home) == before  # refused before anything was stored


# kind: (edit of the task, the data or a setup function, the warning's key words)
LISTED_WARNINGS = {
    "knowledge no arm reads": (add("knowledge: {path: kb}\n"), write_knowledge({"kb/a.txt": "Happy."}),
                               ["knowledge:", "no arm retrieves passages", "unused"]),
    "group_by far from the fractions": (then(sub("seed: 1}", "seed: 1, group_by: label}"), arms("{type: zero_shot}")),
                                        None, ["splits.group_by 'label'", "2 groups split the rows 0%/50%/50%",
                                               "far from the fractions 50%/20%/30%"]),
}
SWEEP_WARNINGS = {
    "judge min_agreement without human scores": (add(JUDGE + "min_agreement: 0.8}\n"), None,
                                                 ["judge.min_agreement", "no human scores", "no effect"]),
    "searched arm's own decoding": (arms("{type: searched, decoding: constrained, search: {trials: 2}}"), None,
                                    ["arms.0.decoding", "the search chooses it (search.decodings)", "no effect"]),
    "search setting with no effect": (searched("ks: [0], example_sets: 5"), None,
                                      ["arms.0.search.example_sets", "no trial draws random examples", "no effect"]),
    "search proposer_calls without a proposer": (searched("proposer_calls: 9"), None,
                                                 ["arms.0.search.proposer_calls", "there is no proposer"]),
    "search calibrate without scored labels": (searched("decodings: [generate], calibrate: false"), None,
                                               ["arms.0.search.calibrate", "no trial scores labels"]),
    "search dev_items beyond the dev split": (searched("dev_items: 100"), None,
                                              ["arms.0.search.dev_items", "the dev split has 4 items"]),
    "knowledge field for a folder": (then(RETRIEVAL, add("knowledge: {path: kb, field: body}\n")),
                                     write_knowledge({"kb/a.txt": "Happy."}),
                                     ["knowledge.field", "a folder's passages are its files' paragraphs"]),
    "more passages asked than the source holds": (then(arms("{type: retrieval, passages: 5}"),
                                                       add("knowledge: {path: kb}\n")),
                                                  write_knowledge({"kb/a.txt": "Happy.\n\nSad."}),
                                                  ["arms.0.passages", "holds 2 passages, so each prompt gets those"]),
    "fractions beside a split column": (sub("target: label\n", "target: label\n  split_column: s\n"), SPLIT_COLUMN,
                                        ["splits.train", "split column fixes the splits", "no effect"]),
    "re-split seeds beside a split column": (then(sub("target: label\n", "target: label\n  split_column: s\n"),
                                                  sub("splits: {train: 0.5, dev: 0.2, test: 0.3, seed: 1}",
                                                      "splits: {seeds: [1, 2]}")), SPLIT_COLUMN,
                                             ["splits.seeds", "each seed runs on the same ones"]),
    "stratify beside group_by": (then(sub("seed: 1}", "seed: 1, stratify: false, group_by: word}"),
                                      arms("{type: zero_shot}")), None,
                                 ["splits.stratify", "groups go whole", "no effect"]),
}
WARNINGS = {**LISTED_WARNINGS, **SWEEP_WARNINGS}


@pytest.mark.parametrize("kind", list(WARNINGS))
def test_setting_without_effect_is_a_warning(kind, tmp_path):
    edit, data, words = WARNINGS[kind]
    (tmp_path / "words.csv").write_text(CSV if data is None or callable(data) else data)
    if callable(data):
        data(tmp_path)
    (tmp_path / "task.yaml").write_text(edit(TASK_YAML))
    home = tmp_path / "h"
    result = invoke("run", tmp_path / "task.yaml", "--no-progress", "--home", home)
    assert result.code == 0, result.output
    said = next((line for line in result.output.splitlines() if words[0] in line), "")
    _in_order(said, ["warning: ", *words])
    report = json.loads(invoke("show", "--format", "json", "--home", home).output)
    assert any(words[0] in w for w in report["warnings"])


def test_a_proposer_that_fails_stops_the_run_and_debug_shows_why(tmp_path):
    """An endpoint that fails every request: GEPA would log it and propose nothing; the run fails."""
    from tunewise.testing import FaultyServer
    (tmp_path / "words.csv").write_text(CSV)
    task = tmp_path / "task.yaml"
    with FaultyServer() as server:
        server.faults = lambda n, body: "500"
        address = server.url.removeprefix("http://").removesuffix("/v1")
        task.write_text(searched("proposer: p, proposer_calls: 10")(TASK_YAML) +
                        f"endpoints: {{p: {{base_url: '{server.url}', model: m, max_retries: 0}}}}\n")
        result = invoke("run", task, "--no-progress", "--home", tmp_path / "h")
        assert result.code == 1
        _in_order(result.error_line(), ["arm 'searched'", "proposals with 'p' failed", address])
        runs = invoke("runs", "--home", tmp_path / "h").output
        assert "failed" in runs
        from tunewise.errors import RunError
        with pytest.raises(RunError):
            CliRunner().invoke(main, ["run", str(task), "--no-progress", "--home", str(tmp_path / "h"), "--debug"],
                               catch_exceptions=False)


def test_an_endpoint_that_does_not_answer_stops_the_run_before_any_arm(tmp_path):
    """A server that is down (nothing listens on port 9) is found by asking its model list, before any arm."""
    (tmp_path / "words.csv").write_text(CSV)
    task = tmp_path / "task.yaml"
    task.write_text(sub("model: fake", "model: e")(TASK_YAML) +
                    "endpoints: {e: {base_url: 'http://127.0.0.1:9/v1', model: m, max_retries: 0}}\n")
    result = invoke("run", task, "--no-progress", "--home", tmp_path / "h")
    assert result.code == 2
    _in_order(result.error_line(), ["task.yaml:", "endpoints.e.base_url", "127.0.0.1:9", "does not answer"])
    assert snapshot(tmp_path / "h") is None  # no store made: nothing ran


def test_a_model_name_the_server_does_not_list_is_a_warning(tmp_path):
    """The server answers, but lists other models: said before the run (a server may ignore the name)."""
    from tunewise.testing import FaultyServer
    (tmp_path / "words.csv").write_text(CSV)
    task = tmp_path / "task.yaml"
    with FaultyServer(lambda messages: "positive", models=["served-model"]) as server:
        task.write_text(sub("model: fake", "model: e")(TASK_YAML) +
                        f"endpoints: {{e: {{base_url: '{server.url}', model: typo-model, max_retries: 0}}}}\n")
        result = invoke("run", task, "--no-progress", "--home", tmp_path / "h")
        assert result.code == 0, result.output
        assert server.received == sum(server.answered.values())  # the model list is no completion request
    assert "endpoints.e.model: the server lists no model 'typo-model' (it lists served-model)" in result.output
    report = json.loads(next((tmp_path / "h" / "runs").glob("*/report.json")).read_text())
    assert any("typo-model" in w for w in report["warnings"])


def test_a_served_request_with_temperature_nan_is_told_it_is_not_a_number():
    from tunewise.ship.serve import ApiError, ChatRequest, parse
    body = json.loads('{"model": "m", "messages": [{"role": "user", "content": "hi"}], "temperature": NaN}')
    with pytest.raises(ApiError) as err:
        parse(ChatRequest, body)
    assert err.value.status == 400 and err.value.message == "temperature: NaN is not a number; give a number"


# -- compare: runs whose differences are not the arms' alone say so -----------------------------------------
COMPARED = {  # kind: (edit of the task, edit of the data, what the warning names; None: comparable)
    "different data": (None, lambda csv: csv + "glad,positive\n", "different data"),
    "different models": (sub("model: fake", "model: fake:other"), None, "different models (fake against fake:other)"),
    "different tasks": (sub("name: words", "name: moods"), None, "different tasks ('words' on accuracy, 'moods'"),
    "different splits": (sub("seed: 1}", "seed: 2}"), None, "different splits, so different test items"),
    "other arms of the same task": (sub("k: 2}", "k: 3}"), None, None),
}


@pytest.mark.parametrize("kind", list(COMPARED))
def test_compare_says_when_runs_are_not_comparable(kind, tmp_path, home):
    edit_task, edit_data, words = COMPARED[kind]
    (tmp_path / "words.csv").write_text(edit_data(CSV) if edit_data else CSV)
    (tmp_path / "task.yaml").write_text(edit_task(TASK_YAML) if edit_task else TASK_YAML)
    first = invoke("runs", "--home", home).output.split()[0]
    assert invoke("run", tmp_path / "task.yaml", "--no-progress", "--home", home).code == 0
    result = invoke("compare", first, "latest", "--home", home)
    assert result.code == 0, result.output
    warnings = [line for line in result.output.splitlines() if line.startswith("warning: ")]
    if words is None:
        assert warnings == [], result.output
    else:
        assert len(warnings) == 1, result.output
        _in_order(warnings[0], [f"runs {first} and ", "are not comparable", words, "not the arms' alone"])


def test_ray_units_asking_for_a_gpu_the_machine_lacks_are_refused(tmp_path, home):
    import torch
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    (tmp_path / "words.csv").write_text(CSV)
    (tmp_path / "task.yaml").write_text(TASK_YAML + "executor: {type: ray, gpus: 1}\n")
    before = snapshot(home)
    result = invoke("run", tmp_path / "task.yaml", "--no-progress", "--home", home)
    assert result.code == 2
    _in_order(result.error_line(), ["task.yaml:16:", "executor.gpus", "1 GPUs", "machine's 0", "no unit would ever start"])
    assert snapshot(home) == before


def test_a_copy_of_a_task_warns_of_nothing_more(tmp_path):
    """A task rebuilt from its dump (every setting then given) is the same task: no setting newly unused."""
    import tunewise
    from tunewise.execution.checks import check_before_running
    from tunewise.task.data import load_examples, make_splits
    (tmp_path / "words.csv").write_text(CSV)
    (tmp_path / "kb").mkdir()
    (tmp_path / "kb" / "a.txt").write_text("Happy.\n\nSad.")
    (tmp_path / "task.yaml").write_text(then(arms("{type: searched, search: {ks: [0]}}", "{type: retrieval}"),
                                             add("knowledge: {path: kb}\nexecutor: local\n" + JUDGE + "pairs: "
                                                 "[[searched, retrieval]]}\n"))(TASK_YAML))
    task = tunewise.load_task(tmp_path / "task.yaml")
    copy = tunewise.validate_task(task.model_dump())
    notes = [check_before_running(t, make_splits(t, load_examples(t)), "task.yaml", ["negative", "positive"])
             for t in (task, copy)]
    assert notes[0] == notes[1] == []
