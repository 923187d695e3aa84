"""Bad input never crashes, never corrupts, never passes silently: each kind pinned (issue 17).

Every case runs the command line in-process, as a user would, against a home that already holds one
finished run, and checks the exit code (2: bad input, 1: a failure at run time), that the error is one
line naming what is wrong (file, line and field where there are some), that no traceback is printed, and
that the store is unchanged, or consistent (a run that failed is marked so). Unusual input that is valid
(a byte-order mark, CRLF line ends, Unicode labels) must give the same results as the plain form.
Almost every case fails before a model is loaded: the whole module runs in seconds.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner

from conftest import TASK_YAML, WORDS
from tunewise.cli import main

CSV = "word,label\n" + "".join(f"{w},{label}\n" for w, label in WORDS)


# -- helpers ------------------------------------------------------------------------------
def invoke(*args) -> "Result":
    result = CliRunner().invoke(main, [str(a) for a in args])
    return Result(result.exit_code, result.output, result.exception)


class Result:
    def __init__(self, code: int, output: str, exception: BaseException | None):
        self.code, self.output = code, output
        self.crashed = exception is not None and not isinstance(exception, SystemExit)

    def error_line(self) -> str:
        """The one line an error prints; asserts there is exactly one and no traceback."""
        assert not self.crashed and "Traceback" not in self.output, self.output
        lines = [line for line in self.output.splitlines() if line.strip()]
        errors = [line for line in lines if line.startswith("error: ")]
        assert len(errors) == 1 and errors[0] == lines[-1], self.output
        return errors[0]


def snapshot(home: Path):
    """Everything the store holds, and the files beside it: equal before and after means untouched."""
    db = home / "tunewise.db"
    if not db.exists():
        return None
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        tables = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
        rows = {t: sorted(repr(tuple(r)) for r in con.execute(f"SELECT * FROM {t}")) for t in tables}
    finally:
        con.close()
    files = sorted(str(p.relative_to(home)) for p in home.rglob("*") if not p.name.startswith("tunewise.db"))
    return rows, files


@pytest.fixture(scope="module")
def finished_home(tmp_path_factory) -> Path:
    """A home with one finished run of the fixture task."""
    root = tmp_path_factory.mktemp("finished")
    (root / "words.csv").write_text(CSV)
    (root / "task.yaml").write_text(TASK_YAML)
    result = invoke("run", root / "task.yaml", "--no-progress", "--home", root / "home")
    assert result.code == 0, result.output
    return root / "home"


@pytest.fixture
def home(finished_home, tmp_path) -> Path:
    target = tmp_path / "home"
    shutil.copytree(finished_home, target)
    return target


def sub(old: str, new: str):
    def edit(text: str) -> str:
        assert old in text, old
        return text.replace(old, new)
    return edit


def add(extra: str):
    return lambda text: text + extra


def arms(*lines: str):
    """Replace the task's arms."""
    return lambda text: text.split("arms:")[0] + "arms:\n" + "".join(f"  - {line}\n" for line in lines)


def then(*edits):
    def edit(text: str) -> str:
        for e in edits:
            text = e(text)
        return text
    return edit


def rows_csv(pairs) -> str:
    return "word,label\n" + "".join(f"{w},{label}\n" for w, label in pairs)


def jsonl(rows) -> str:
    return "".join(json.dumps(r) + "\n" for r in rows)


JSONL_TASK = sub("path: words.csv", "path: words.jsonl")
WORDS_JSONL = jsonl({"word": w, "label": label} for w, label in WORDS)


# -- the task file ------------------------------------------------------------------------
# kind: (category, edit of the task text, what else the case needs ("tiny": the tiny model's directory for
#        MODEL, "emptydir": an empty directory for EMPTYDIR, a function: the task file's bytes rewritten),
#        exit code, key words of the error, in order)
TASK_CASES = {
    "yaml syntax": ("task file", sub("type: classification", "type: [classification"), None, 2,
                    ["task.yaml:3:", "invalid YAML"]),
    "yaml tab indentation": ("task file", sub("  input:", "\tinput:"), None, 2, ["task.yaml:", "invalid YAML"]),
    "top level is a list": ("task file", lambda t: "- a\n- b\n", None, 2, ["task.yaml:1:", "mapping"]),
    "empty task file": ("task file", lambda t: "", None, 2, ["task.yaml:1:", "mapping"]),
    "task file not UTF-8": ("task file", None, lambda raw: raw.replace(b"Ten people", b"Dix personnes \xff"), 2,
                            ["task.yaml:8:", "not valid UTF-8"]),
    "task file in UTF-16": ("task file", None, lambda raw: raw.decode().encode("utf-16"), 2,
                            ["task.yaml:1:", "not valid UTF-8", "UTF-16"]),
    "duplicate top-level key": ("task file", add("model: other\n"), None, 2,
                                ["task.yaml:16:", "model", "given twice"]),
    "duplicate nested key": ("task file", sub("  target: label\n", "  target: label\n  target: word\n"), None, 2,
                             ["task.yaml:7:", "data.target", "given twice"]),
    "unknown top-level key": ("task file", add("colour: red\n"), None, 2, ["task.yaml:16:", "colour: unknown key"]),
    "unknown nested key": ("task file", sub("seed: 1}", "seed: 1, colour: red}"), None, 2,
                           ["task.yaml:11:", "splits.colour: unknown key"]),
    "missing required field": ("task file", sub("instruction: Classify the sentiment of the word.\n", ""), None, 2,
                               ["instruction: required, but missing"]),
    "missing nested field": ("task file", sub('  input: "Word: {word}"\n', ""), None, 2,
                             ["data.input: required, but missing"]),  # data.target may be missing (issue 19)
    "field of the wrong type": ("task file", sub("instruction: Classify the sentiment of the word.",
                                                 "instruction: [Classify]"), None, 2,
                                ["task.yaml:7:", "instruction:", "valid string"]),
    "section of the wrong type": ("task file", add("generation: 32\n"), None, 2, ["task.yaml:16:", "generation:"]),
    "unknown arm type": ("arms", sub("{type: zero_shot}", "{type: zero_shoot}"), None, 2,
                         ["task.yaml:13:", "arms.0", "unknown arm type 'zero_shoot'", "few_shot"]),
    "arm without a type": ("arms", sub("{type: zero_shot}", "{name: plain}"), None, 2,
                           ["task.yaml:13:", "arms.0", "needs a type"]),
    "unknown field of an arm type": ("arms", sub("{type: zero_shot}", "{type: zero_shot, k: 3}"), None, 2,
                                     ["task.yaml:13:", "arms.0.k: unknown key"]),
    "arms not a list": ("arms", lambda t: t.split("arms:")[0] + "arms: zero_shot\n", None, 2,
                        ["task.yaml:12:", "arms:", "valid list"]),
    "arms empty": ("arms", lambda t: t.split("arms:")[0] + "arms: []\n", None, 2,
                   ["task.yaml:12:", "arms:", "is empty", "leave arms out"]),
    "duplicate arm names": ("arms", arms("{type: zero_shot}", "{type: zero_shot}"), None, 2,
                            ["task.yaml:14:", "arms.1", "unique", "name:"]),
    "hybrid naming no tuned arm": ("arms", arms("{type: zero_shot}", "{type: hybrid, tuned: lora, prompt: zero_shot}"),
                                   None, 2, ["task.yaml:14:", "arms.1.tuned", "'lora' is not the name"]),
    "hybrid without its tuned key": ("arms", arms("{type: zero_shot}", "{type: hybrid, prompt: zero_shot}"), None, 2,
                                     ["task.yaml:14:", "arms.1.tuned: required"]),
    "lora prompt naming no arm": ("arms", arms("{type: zero_shot}", "{type: lora, prompt: structured}"), None, 2,
                                  ["arms.1.prompt", "'structured' is not the name"]),
    "constrained decoding on generation": ("arms", then(sub("type: classification", "type: generation"),
                                                        arms("{type: zero_shot, decoding: constrained}")), None, 2,
                                           ["task.yaml:13:", "arms.0.decoding", "classification"]),
    "calibrate without constrained": ("arms", arms("{type: zero_shot, calibrate: true}"), None, 2,
                                      ["arms.0.calibrate", "decoding: constrained"]),
    "retrieval without knowledge": ("arms", arms("{type: retrieval}"), None, 2,
                                    ["task.yaml:13:", "arms.0", "knowledge"]),
    "few-shot k zero": ("arms", sub("{type: few_shot, k: 2}", "{type: few_shot, k: 0}"), None, 2,
                        ["task.yaml:15:", "arms.2.k", "greater than 0"]),
    "few-shot k beyond its cap": ("arms", sub("{type: few_shot, k: 2}", "{type: few_shot, k: 500}"), None, 2,
                                  ["arms.2.k", "less than or equal to 64"]),
    "few-shot k beyond the train split": ("sizes", sub("{type: few_shot, k: 2}", "{type: few_shot, k: 12}"), None, 2,
                                          ["task.yaml:", "arms.2.k", "12 examples", "train split has 10"]),
    "lora rank zero": ("arms", arms("{type: lora, r: 0}"), None, 2, ["arms.0.r", "greater than 0"]),
    "fine-tuning a remote model": ("models", arms("{type: lora}"), None, 2,
                                   ["model:", "fine-tunes", "local model", "'fake'"]),
    "train_size beyond the train split": ("sizes", then(arms("{type: lora, train: {train_size: 50}}"),
                                                        sub("model: fake", "model: MODEL")), "tiny", 2,
                                          ["arms.0.train.train_size", "50", "10 train examples"]),
    "learning curve without an arm to vary": ("learning curve", then(arms("{type: zero_shot}"),
                                                                     add("learning_curve: {sizes: [4]}\n")), None, 2,
                                              ["task.yaml:14:", "learning_curve", "lora, full or few_shot"]),
    "learning curve sizes zero and negative": ("learning curve", then(arms("{type: lora}"),
                                                                      add("learning_curve: {sizes: [0, -5]}\n")),
                                               None, 2, ["learning_curve.sizes.0", "greater than 0"]),
    "learning curve sizes beyond the train split": ("learning curve",
                                                    then(arms("{type: lora}"), sub("model: fake", "model: MODEL"),
                                                         add("learning_curve: {sizes: [4, 1000, all]}\n")),
                                                    "tiny", 2,
                                                    ["learning_curve.sizes", "1000", "train split has 10"]),
    "learning curve size repeated": ("learning curve", then(arms("{type: lora}"),
                                                            add("learning_curve: {sizes: [4, 4]}\n")), None, 2,
                                     ["learning_curve.sizes", "4 listed twice"]),
    "learning curve size not a number": ("learning curve", then(arms("{type: lora}"),
                                                                add("learning_curve: {sizes: [al]}\n")), None, 2,
                                         ["learning_curve.sizes.0"]),
    "learning curve ks beyond the train split": ("learning curve", add("learning_curve: {ks: [1, 11]}\n"), None, 2,
                                                 ["learning_curve.ks", "11", "train split has 10"]),
    "learning curve arm not a fine-tune arm": ("learning curve", add("learning_curve: {arm: zero_shot}\n"), None, 2,
                                               ["learning_curve.arm", "'zero_shot' is not a lora or full arm"]),
    "learning curve few_shot_arm wrong": ("learning curve", add("learning_curve: {few_shot_arm: structured}\n"),
                                          None, 2, ["learning_curve.few_shot_arm", "not a few_shot arm"]),
    "seed true": ("types", sub("seed: 1", "seed: true"), None, 2,
                  ["task.yaml:11:", "splits.seed", "got a boolean"]),
    "batch size yes": ("types", add("batch_size: yes\n"), None, 2, ["task.yaml:16:", "batch_size", "boolean"]),
    "boolean in a list of numbers": ("types", add("learning_curve: {ks: [1, true]}\n"), None, 2,
                                     ["learning_curve.ks", "boolean"]),
    "negative split seed": ("types", sub("seed: 1", "seed: -1"), None, 2,
                            ["task.yaml:11:", "splits.seed", "greater than or equal to 0"]),
    "negative generation seed": ("types", add("generation: {seed: -3}\n"), None, 2,
                                 ["generation.seed", "greater than or equal to 0"]),
    "negative training seed": ("types", arms("{type: lora, train: {seed: -2}}"), None, 2,
                               ["arms.0.train.seed", "greater than or equal to 0"]),
    "seed not a number": ("types", sub("seed: 1", "seed: one"), None, 2, ["splits.seed", "valid integer"]),
    "fraction above one": ("types", sub("train: 0.5", "train: 1.5"), None, 2, ["splits.train", "less than or equal"]),
    "fractions over one together": ("types", sub("test: 0.3", "test: 0.6"), None, 2, ["splits", "add up to 1.3"]),
    "max_tokens zero": ("types", add("generation: {max_tokens: 0}\n"), None, 2, ["generation.max_tokens"]),
    "max_tokens huge": ("types", add("generation: {max_tokens: 1000000000}\n"), None, 2,
                        ["generation.max_tokens", "32768"]),
    "negative temperature": ("types", add("generation: {temperature: -1}\n"), None, 2, ["generation.temperature"]),
    "consistency samples one": ("types", add("consistency: {samples: 1}\n"), None, 2, ["consistency.samples"]),
    "negative price": ("types", add("prices: {hardware_per_hour: -1}\n"), None, 2, ["prices.hardware_per_hour"]),
    "infinite price": ("types", add("prices: {hardware_per_hour: .inf}\n"), None, 2,
                       ["prices.hardware_per_hour", "finite"]),
    "target value a word": ("types", add("target: {value: high}\n"), None, 2, ["target.value", "valid number"]),
    "epochs zero": ("types", arms("{type: lora, train: {epochs: 0}}"), None, 2, ["arms.0.train.epochs"]),
    "max_test zero": ("types", sub("seed: 1}", "seed: 1, max_test: 0}"), None, 2, ["splits.max_test"]),
    "group_by with split_column": ("types", then(sub("target: label\n", "target: label\n  split_column: s\n"),
                                                 sub("seed: 1}", "seed: 1, group_by: word}")), None, 2,
                                   ["splits.group_by", "split_column"]),
    "template single brace": ("templates", sub('"Word: {word}"', '"Word: {"'), None, 2,
                              ["task.yaml:5:", "data.input", "Single '{'", "{{"]),
    "template closing brace": ("templates", sub('"Word: {word}"', '"Word: }"'), None, 2,
                               ["task.yaml:5:", "data.input", "Single '}'"]),
    "template empty braces": ("templates", sub('"Word: {word}"', '"Word: {}"'), None, 2,
                              ["task.yaml:5:", "data.input", "{} in", "not a field"]),
    "template positional field": ("templates", sub('"Word: {word}"', '"Word: {0}"'), None, 2,
                                  ["data.input", "{0}", "not a field"]),
    "template attribute": ("templates", sub('"Word: {word}"', '"Word: {word.upper}"'), None, 2,
                           ["data.input", "{word.upper}", "not a field"]),
    "template format spec": ("templates", sub('"Word: {word}"', '"Word: {word:>5}"'), None, 2,
                             ["data.input", "{word:>5}", "not a field"]),
    "template conversion": ("templates", sub('"Word: {word}"', '"Word: {word!r}"'), None, 2,
                            ["data.input", "{word!r}", "not a field"]),
    "template index": ("templates", sub('"Word: {word}"', '"Word: {word[0]}"'), None, 2,
                       ["data.input", "{word[0]}", "not a field"]),
    "template naming a missing field": ("templates", sub('"Word: {word}"', '"Word: {wrd}"'), None, 2,
                                        ["words.csv:2:", "wrd: missing field"]),
    "empty-string label": ("labels", add("labels: ['', positive, negative]\n"), None, 2,
                           ["task.yaml:16:", "labels", "label ''", "empty"]),
    "label padded with spaces": ("labels", add("labels: [' positive', negative]\n"), None, 2,
                                 ["labels", "' positive'", "spaces"]),
    "duplicate labels": ("labels", add("labels: [positive, positive, negative]\n"), None, 2,
                         ["task.yaml:16:", "labels", "'positive' is listed twice"]),
    "a single label": ("labels", add("labels: [positive]\n"), None, 2, ["labels", "at least two labels"]),
    "labels differing only in case": ("labels", add("labels: [Positive, positive, negative]\n"), None, 2,
                                      ["labels", "'Positive' and 'positive'", "case"]),
    "labels on a generation task": ("labels", then(sub("type: classification", "type: generation"),
                                                   arms("{type: zero_shot}"), add("labels: [a, b]\n")), None, 2,
                                    ["labels", "classification tasks, not generation"]),
    "metrics empty": ("metrics", add("metrics: []\n"), None, 2, ["task.yaml:16:", "metrics", "is empty"]),
    "unknown metric": ("metrics", add("metrics: [bleu]\n"), None, 2, ["metrics", "unknown metric 'bleu'"]),
    "json_valid on classification": ("metrics", add("metrics: [accuracy, json_valid]\n"), None, 2,
                                     ["task.yaml:16:", "metrics", "json_valid does not apply to a classification"]),
    "key_accuracy on generation": ("metrics", then(sub("type: classification", "type: generation"),
                                                   arms("{type: zero_shot}"), add("metrics: [key_accuracy]\n")),
                                   None, 2, ["metrics", "key_accuracy does not apply to a generation"]),
    "metric listed twice": ("metrics", add("metrics: [accuracy, accuracy]\n"), None, 2,
                            ["metrics", "'accuracy' is listed twice"]),
    "unknown target metric": ("metrics", add("target: {metric: bleu, value: 0.9}\n"), None, 2,
                              ["task.yaml:16:", "target.metric", "unknown metric 'bleu'"]),
    "target metric of another task type": ("metrics", add("target: {metric: json_valid, value: 0.9}\n"), None, 2,
                                           ["target.metric", "json_valid does not apply"]),
    "primary metric differing from the target's": ("metrics",
                                                   add("primary_metric: macro_f1\ntarget: {metric: accuracy}\n"),
                                                   None, 2, ["task.yaml:16:", "primary_metric", "differs"]),
    "extraction without keys": ("metrics", sub("type: classification", "type: extraction"), None, 2,
                                ["task.yaml:2:", "type", "json_keys"]),
    "extraction with empty keys": ("metrics", then(sub("type: classification", "type: extraction"),
                                                   arms("{type: zero_shot}"), add("json_keys: []\n")), None, 2,
                                   ["json_keys", "is empty"]),
    "unknown device": ("devices", add("device: banana\n"), None, 2,
                       ["task.yaml:16:", "device", "unknown device 'banana'", "auto, cpu"]),
    "endpoint URL without a scheme": ("endpoints", add("endpoints: {e: {base_url: 'htp:/nope', model: m}}\n"),
                                      None, 2, ["task.yaml:16:", "endpoints.e.base_url", "not an http(s) URL"]),
    "endpoint URL with a bad port": ("endpoints", add("endpoints: {e: {base_url: 'http://host:abc/v1', model: m}}\n"),
                                     None, 2, ["endpoints.e.base_url", "Port"]),
    "endpoint API key not set": ("endpoints", then(sub("model: fake", "model: e"),
                                                   add("endpoints: {e: {base_url: 'http://127.0.0.1:9/v1', model: m, "
                                                       "api_key_env: TUNEWISE_TEST_UNSET_KEY}}\n")), None, 2,
                                 ["endpoints.e.api_key_env", "TUNEWISE_TEST_UNSET_KEY", "not set"]),
    "model directory missing": ("models", sub("model: fake", "model: ./no-such-model"), None, 2,
                                ["task.yaml:", "model:", "no model directory './no-such-model'"]),
    "model path is a file": ("models", sub("model: fake", "model: words.csv"), None, 2,
                             ["model:", "is a file"]),
    "model directory without config.json": ("models", sub("model: fake", "model: EMPTYDIR"), "emptydir", 2,
                                            ["model:", "has no config.json"]),
    "hub id not cached while offline": ("models", sub("model: fake", "model: nobody-tunewise/no-such-model"), None, 2,
                                        ["model:", "not in the Hugging Face cache", "HF_HUB_OFFLINE"]),
    "arm model missing": ("models", arms("{type: zero_shot, model: ./gone}"), None, 2,
                          ["arms.0.model", "no model directory './gone'"]),
    # found by trying inputs no case above listed
    "input holding the target field": ("templates", sub('"Word: {word}"', '"{word}: {label}"'), None, 2,
                                       ["task.yaml:5:", "data.input", "target field 'label'", "in the question"]),
    "target value above one": ("types", add("target: {value: 1.5}\n"), None, 2,
                               ["task.yaml:16:", "target.value", "less than or equal to 1"]),
    "min_gain above one": ("types", add("target: {min_gain: 5}\n"), None, 2, ["target.min_gain", "less than"]),
    "empty instruction": ("task file", sub("instruction: Classify the sentiment of the word.", "instruction: ' '"),
                          None, 2, ["task.yaml:7:", "instruction", "is empty"]),
    "empty paraphrase list": ("task file", add("consistency: {paraphrases: []}\n"), None, 2,
                              ["consistency.paraphrases", "is empty", "3 generic"]),
    "empty constraint": ("task file", sub("constraints: [Answer with the label only.]", "constraints: ''"), None, 2,
                         ["task.yaml:9:", "constraints", "is empty"]),
    "learning curve with no point": ("learning curve", add("learning_curve: {sizes: [], ks: []}\n"), None, 2,
                                     ["task.yaml:16:", "learning_curve", "no point to run"]),
    # assertions (issue 19): each kind's bad configuration names the task file's field
    "word_count min above max": ("assertions", add("assertions: [{type: word_count, min: 300, max: 200}]\n"), None, 2,
                                 ["task.yaml:16:", "assertions.0.min", "min 300 is above max 200"]),
    "word_count without bounds": ("assertions", add("assertions: [{type: word_count}]\n"), None, 2,
                                  ["assertions.0", "needs min, max or both"]),
    "sentence_count negative": ("assertions", add("assertions: [{type: sentence_count, min: -1}]\n"), None, 2,
                                ["assertions.0.min", "greater than or equal to 0"]),
    "contains a bad regex": ("assertions", add("assertions: [{type: contains, regex: true, value: ['(for']}]\n"),
                             None, 2, ["task.yaml:16:", "assertions.0.value.0", "not a valid regular expression"]),
    "contains all on not_contains": ("assertions", add("assertions: [{type: not_contains, value: x, all: true}]\n"),
                                     None, 2, ["assertions.0.all", "applies to contains"]),
    "not_contains with no value": ("assertions", add("assertions: [{type: not_contains, value: []}]\n"), None, 2,
                                   ["assertions.0.value", "is empty"]),
    "starts_with an empty string": ("assertions", add("assertions: [{type: starts_with, value: ''}]\n"), None, 2,
                                    ["assertions.0.value.0", "matches every answer"]),
    "is_json with a value": ("assertions", add("assertions: [{type: is_json, value: x}]\n"), None, 2,
                             ["assertions.0.value: unknown key"]),
    "json_schema not a schema": ("assertions", add("assertions: [{type: json_schema, value: {type: 12}}]\n"), None, 2,
                                 ["assertions.0.value", "not a valid JSON Schema"]),
    "json_schema not a mapping": ("assertions", add("assertions: [{type: json_schema, value: schema.json}]\n"), None,
                                  2, ["assertions.0.value", "valid dictionary"]),
    "reading_grade min above max": ("assertions", add("assertions: [{type: reading_grade, min: 12, max: 6}]\n"),
                                    None, 2, ["assertions.0.min", "above max"]),
    "language code unknown": ("assertions", add("assertions: [{type: language, value: english}]\n"), None, 2,
                              ["assertions.0.value", "unknown language code 'english'", "en"]),
    "no_refusal with an option": ("assertions", add("assertions: [{type: no_refusal, regex: true}]\n"), None, 2,
                                  ["assertions.0.regex: unknown key"]),
    "unknown assertion type": ("assertions", add("assertions: [{type: word_cnt, min: 1}]\n"), None, 2,
                               ["assertions.0", "unknown assertion type 'word_cnt'", "word_count"]),
    "assertion named like a metric": ("assertions", add("assertions: [{type: no_refusal, name: accuracy}]\n"), None,
                                      2, ["assertions.0.name", "built-in metric"]),
    "two assertions of one name": ("assertions", add("assertions: [{type: no_refusal}, {type: no_refusal}]\n"), None,
                                   2, ["assertions.1", "named 'no_refusal'", "name:"]),
    "primary metric no assertion has": ("assertions", add("assertions: [{type: no_refusal}]\nprimary_metric: polite\n"),
                                        None, 2, ["primary_metric", "unknown metric 'polite'", "no_refusal"]),
    # the judge
    "judge with nothing to judge": ("judge", add("judge: {model: fake}\n"), None, 2, ["judge", "nothing to judge"]),
    "judge scale upside down": ("judge", add("judge: {model: fake, rubric: [{name: c, description: d, scale: [5, 1]}]}\n"),
                                None, 2, ["judge.rubric.0.scale", "lowest score comes first"]),
    "judge criterion twice": ("judge", add("judge: {model: fake, rubric: [{name: c, description: d}, "
                                           "{name: c, description: e}]}\n"), None, 2,
                              ["judge.rubric", "criterion 'c' is listed twice"]),
    "judge pair naming no arm": ("judge", add("judge: {model: fake, pairs: [[zero_shot, lora]]}\n"), None, 2,
                                 ["judge.pairs.0", "'lora' is not an arm"]),
    "judge model missing": ("judge", add("judge: {model: ./no-judge, pairs: [[zero_shot, structured]]}\n"), None, 2,
                            ["task.yaml:", "judge.model", "no model directory './no-judge'"]),
    "judge pair of one arm": ("judge", add("judge: {model: fake, pairs: [[zero_shot, zero_shot]]}\n"), None, 2,
                              ["judge.pairs.0", "with itself"]),
    "judge human score without the answer": ("judge", add("judge: {model: fake, human_score: s, rubric: "
                                                          "[{name: c, description: d}]}\n"), None, 2,
                                             ["judge.human_answer", "go together"]),
    "judge rubric deciding a searched arm": ("judge", then(arms("{type: searched}"), add(
        "judge: {model: fake, rubric: [{name: c, description: d}]}\nprimary_metric: rubric\n")), None, 2,
        ["primary_metric", "selects on dev"]),
    # reference-free tasks
    "no target on a classification task": ("reference-free", sub("  target: label\n", ""), None, 2,
                                           ["data.target", "required for a classification task"]),
    "no target and nothing to score with": ("reference-free", then(sub("type: classification", "type: generation"),
                                                                   sub("  target: label\n", ""),
                                                                   arms("{type: zero_shot}")), None, 2,
                                            ["data.target", "assertions or a judge rubric"]),
    "no target with a few-shot arm": ("reference-free", then(sub("type: classification", "type: generation"),
                                                             sub("  target: label\n", ""),
                                                             arms("{type: zero_shot}", "{type: few_shot, k: 2}"),
                                                             add("assertions: [{type: no_refusal}]\n")), None, 2,
                                      ["arms.1", "few_shot", "worked answers", "data.target"]),
    "no target with a lora arm": ("reference-free", then(sub("type: classification", "type: generation"),
                                                         sub("  target: label\n", ""), arms("{type: lora}"),
                                                         add("assertions: [{type: no_refusal}]\n")), None, 2,
                                  ["arms.0", "trains on worked answers"]),
    "no target with a reference metric": ("reference-free", then(sub("type: classification", "type: generation"),
                                                                 sub("  target: label\n", ""), arms("{type: zero_shot}"),
                                                                 add("assertions: [{type: no_refusal}]\n"
                                                                     "metrics: [token_f1]\n")), None, 2,
                                          ["metrics", "token_f1 compares answers with targets"]),
}


@pytest.mark.parametrize("kind", list(TASK_CASES))
def test_bad_task_file(kind, tmp_path, home, monkeypatch, request):
    category, edit, data, code, words = TASK_CASES[kind]
    monkeypatch.chdir(tmp_path)  # relative model paths resolve here
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    (tmp_path / "words.csv").write_text(CSV)
    text = edit(TASK_YAML) if edit else TASK_YAML
    if data == "tiny":
        text = text.replace("MODEL", str(request.getfixturevalue("tiny_model_dir")))
    if data == "emptydir":
        (tmp_path / "empty-model").mkdir()
        text = text.replace("EMPTYDIR", str(tmp_path / "empty-model"))
    task = tmp_path / "task.yaml"
    task.write_bytes(data(text.encode()) if callable(data) else text.encode())
    before = snapshot(home)
    result = invoke("run", task, "--no-progress", "--home", home)
    assert result.code == code, result.output
    line = result.error_line()
    _in_order(line, words)
    assert snapshot(home) == before  # nothing stored for input refused up front


def _in_order(line: str, words: list[str]) -> None:
    at = 0
    for word in words:
        found = line.find(word, at)
        assert found >= 0, f"{word!r} missing after position {at} in: {line}"
        at = found + len(word)


# -- the data -----------------------------------------------------------------------------
def setup_symlink_loop(tmp_path: Path) -> None:
    os.symlink(tmp_path / "words.csv", tmp_path / "words.csv")


def setup_dangling_symlink(tmp_path: Path) -> None:
    os.symlink(tmp_path / "gone.csv", tmp_path / "words.csv")


def setup_directory(tmp_path: Path) -> None:
    (tmp_path / "words.csv").mkdir()


def setup_empty_knowledge(tmp_path: Path) -> None:
    (tmp_path / "words.csv").write_text(CSV)
    (tmp_path / "kb").mkdir()


def setup_plain_directory(tmp_path: Path) -> None:
    (tmp_path / "rows").mkdir()
    (tmp_path / "rows" / "a.csv").write_text(CSV)


# kind: (category, edit of the task, the data file's content or a setup function, exit code, key words)
DATA_CASES = {
    "data file missing": ("files", sub("words.csv", "nope.csv"), CSV, 2, ["nope.csv:", "data file not found"]),
    "data path a plain directory": ("files", sub("path: words.csv", "path: rows"), setup_plain_directory, 2,
                                    ["rows:", "is a directory", "point data.path at a file"]),
    "data file a directory with a data suffix": ("files", None, setup_directory, 2,
                                                 ["words.csv:", "is a directory"]),
    "symlink loop": ("files", None, setup_symlink_loop, 2, ["words.csv:", "symbolic link", "loops"]),
    "dangling symlink": ("files", None, setup_dangling_symlink, 2, ["words.csv:", "symbolic link", "missing"]),
    "unknown suffix": ("files", sub("words.csv", "words.txt"), {"words.txt": CSV}, 2,
                       ["words.txt:", "cannot tell the format", "data.format"]),
    "fake parquet": ("files", sub("words.csv", "words.parquet"), {"words.parquet": CSV}, 2,
                     ["words.parquet:", "not a readable Parquet file"]),
    "format contradicting the file": ("files", sub("path: words.csv", "path: words.csv\n  format: hf"), CSV, 2,
                                      ["words.csv:", "hf needs a directory"]),
    "empty CSV file": ("CSV", None, "", 2, ["words.csv:1:", "no header row"]),
    "header only": ("CSV", None, "word,label\n", 2, ["words.csv:", "no rows"]),
    "duplicated header column": ("CSV", None, "word,label,label\n" + "".join(f"{w},{l},x\n" for w, l in WORDS), 2,
                                 ["words.csv:1:", "label:", "'label' twice"]),
    "unclosed quote": ("CSV", None, CSV.replace("joy,positive", '"joy,positive'), 2,
                       ["words.csv:4:", "malformed CSV", "quote"]),
    "unclosed quote in the last row": ("CSV", None, CSV + '"late,positive\n', 2, ["words.csv:22:", "malformed CSV"]),
    "text after a closing quote": ("CSV", None, CSV.replace("joy,positive", '"joy"x,positive'), 2,
                                   ["words.csv:4:", "malformed CSV"]),
    "more cells than the header": ("CSV", None, CSV.replace("joy,positive", "joy,positive,extra"), 2,
                                   ["words.csv:4:", "3 cells but the header has 2"]),
    "fewer cells than the header": ("CSV", None, CSV.replace("joy,positive", "joy"), 2,
                                    ["words.csv:4:", "label:", "too few cells"]),
    "CSV not UTF-8": ("encodings", None, CSV.encode().replace(b"joy", b"j\xf6y"), 2,
                      ["words.csv:4:", "not valid UTF-8", "0xf6"]),
    "CSV in UTF-16": ("encodings", None, CSV.encode("utf-16"), 2, ["words.csv:1:", "not valid UTF-8", "UTF-16"]),
    "JSONL in UTF-16": ("encodings", JSONL_TASK, {"words.jsonl": WORDS_JSONL.encode("utf-16")}, 2,
                        ["words.jsonl:1:", "not valid UTF-8", "UTF-16"]),
    "JSONL malformed line": ("JSONL", JSONL_TASK, {"words.jsonl": WORDS_JSONL.replace('"joy"', "joy")}, 2,
                             ["words.jsonl:3:", "malformed JSON"]),
    "JSONL truncated last line": ("JSONL", JSONL_TASK, {"words.jsonl": WORDS_JSONL[:-9]}, 2,
                                  ["words.jsonl:20:", "malformed JSON"]),
    "JSONL line not an object": ("JSONL", JSONL_TASK, {"words.jsonl": WORDS_JSONL + '["a", "b"]\n'}, 2,
                                 ["words.jsonl:21:", "expected a JSON object, got list"]),
    "JSONL NaN value": ("JSONL", JSONL_TASK, {"words.jsonl": WORDS_JSONL + '{"word": "x", "label": NaN}\n'}, 2,
                        ["words.jsonl:21:", "NaN", "null"]),
    "JSONL nested too deeply": ("JSONL", JSONL_TASK, {"words.jsonl": "[" * 100000 + "]" * 100000 + "\n"}, 2,
                                ["words.jsonl:1:", "malformed JSON"]),
    "missing field": ("rows", JSONL_TASK, {"words.jsonl": WORDS_JSONL + '{"word": "x"}\n'}, 2,
                      ["words.jsonl:21:", "label: missing field"]),
    "null value": ("rows", JSONL_TASK, {"words.jsonl": WORDS_JSONL + '{"word": null, "label": "positive"}\n'}, 2,
                   ["words.jsonl:21:", "word: empty value"]),
    "whitespace-only value": ("rows", None, CSV.replace("joy,positive", "   ,positive"), 2,
                              ["words.csv:4:", "word: empty value"]),
    "empty-string target": ("rows", JSONL_TASK, {"words.jsonl": WORDS_JSONL + '{"word": "x", "label": ""}\n'}, 2,
                            ["words.jsonl:21:", "label: empty value"]),
    "label outside the label set": ("labels", add("labels: [negative, positive]\n"),
                                    CSV.replace("joy,positive", "joy,neutral"), 2,
                                    ["words.csv:4:", "label:", "'neutral' is not in the label set"]),
    "a one-label data set": ("labels", None, rows_csv((w, "positive") for w, _ in WORDS), 2,
                             ["words.csv:", "label:", "every row has the label 'positive'", "two labels"]),
    "labels differing only in case in the data": ("labels", None, CSV.replace("joy,positive", "joy,Positive"), 2,
                                                  ["words.csv:", "label:", "'Positive' and 'positive'", "case"]),
    "labels differing only in spacing in the data": ("labels", JSONL_TASK, {"words.jsonl": WORDS_JSONL.replace(
        '"label": "positive"}', '"label": "very  good"}', 1).replace('"label": "positive"}', '"label": "very good"}')
        .replace('"label": "negative"}', '"label": "bad"}')}, 2, ["'very  good' and 'very good'", "spacing"]),
    "extraction target not JSON": ("rows", then(sub("type: classification", "type: extraction"),
                                                arms("{type: zero_shot}"), add("json_keys: [name]\n"), JSONL_TASK),
                                   {"words.jsonl": jsonl({"word": w, "label": "{oops"} for w, _ in WORDS)}, 2,
                                   ["words.jsonl:1:", "label:", "not valid JSON"]),
    "extraction target lacking a key": ("rows", then(sub("type: classification", "type: extraction"),
                                                     arms("{type: zero_shot}"), add("json_keys: [name]\n"), JSONL_TASK),
                                        {"words.jsonl": jsonl({"word": w, "label": {"nom": w}} for w, _ in WORDS)}, 2,
                                        ["words.jsonl:1:", "label:", "lacks key 'name'"]),
    "split column with a bad value": ("splits", sub("target: label\n", "target: label\n  split_column: s\n"),
                                      "word,label,s\n" + "".join(f"{w},{l},{'tst' if i else 'train'}\n"
                                                                  for i, (w, l) in enumerate(WORDS)), 2,
                                      ["words.csv:3:", "s:", "split value 'tst'"]),
    "group_by naming a missing field": ("splits", sub("seed: 1}", "seed: 1, group_by: topic}"), CSV, 2,
                                        ["words.csv:2:", "topic: missing field"]),
    "empty test split": ("splits", None, rows_csv([("happy", "positive"), ("sad", "negative")]), 2,
                         ["task.yaml:", "splits.test", "the test split is empty"]),
    "leakage with --strict": ("splits", None, rows_csv(WORDS[:2] * 10), 2, ["task.yaml:", "splits:", "leakage"]),
    # found by trying inputs no case above listed
    "JSONL key repeated in a row": ("JSONL", JSONL_TASK, {"words.jsonl": WORDS_JSONL.replace(
        '{"word": "joy"', '{"word": "joy", "word": "sad"')}, 2, ["words.jsonl:3:", "'word' appears twice"]),
    "CSV header cell padded with spaces": ("CSV", None, CSV.replace("word,label", "word, label"), 2,
                                           ["words.csv:2:", "label: missing field", "' label'"]),
    "empty knowledge folder": ("files", then(arms("{type: zero_shot}", "{type: retrieval}"),
                                             add("knowledge: {path: kb}\n")), setup_empty_knowledge, 2,
                               ["kb:", "holds no passage"]),
    # found by an independent second look
    "a decimal label among integers": ("labels", JSONL_TASK, {"words.jsonl": jsonl(
        {"word": w, "label": (1.0 if i == 0 else int(label == "positive"))} for i, (w, label) in enumerate(WORDS))},
        2, ["words.jsonl:2:", "label:", "label 0 is an integer", "line 1 is a decimal number", "same way"]),
    "a boolean label among strings": ("labels", JSONL_TASK, {"words.jsonl": WORDS_JSONL.replace(
        '"label": "negative"}', '"label": true}', 1)}, 2, ["words.jsonl:2:", "label:", "true is a boolean",
                                                            "line 1 is a string"]),
}


@pytest.mark.parametrize("kind", list(DATA_CASES))
def test_bad_data(kind, tmp_path, home):
    category, edit, data, code, words = DATA_CASES[kind]
    task = tmp_path / "task.yaml"
    task.write_text(edit(TASK_YAML) if edit else TASK_YAML)
    if callable(data):
        data(tmp_path)
    else:
        for name, content in (data if isinstance(data, dict) else {"words.csv": data}).items():
            path = tmp_path / name
            path.write_bytes(content if isinstance(content, bytes) else content.encode())
    before = snapshot(home)
    strict = ["--strict"] if "strict" in kind else []
    result = invoke("run", task, "--no-progress", *strict, "--home", home)
    assert result.code == code, result.output
    _in_order(result.error_line(), words)
    assert snapshot(home) == before


def test_unreadable_data_file(tmp_path, home, monkeypatch):
    """Permission denied (as root, which reads anything, the denial is simulated)."""
    (tmp_path / "task.yaml").write_text(TASK_YAML)
    data = tmp_path / "words.csv"
    data.write_text(CSV)
    _deny_reading(data, monkeypatch)
    before = snapshot(home)
    result = invoke("run", tmp_path / "task.yaml", "--no-progress", "--home", home)
    assert result.code == 2
    _in_order(result.error_line(), ["words.csv:", "cannot read the data", "Permission denied"])
    assert snapshot(home) == before


def test_unreadable_task_file(tmp_path, home, monkeypatch):
    task = tmp_path / "task.yaml"
    task.write_text(TASK_YAML)
    _deny_reading(task, monkeypatch)
    result = invoke("run", task, "--no-progress", "--home", home)
    assert result.code == 2
    _in_order(result.error_line(), ["task.yaml:", "cannot read the task file", "Permission denied"])


def _deny_reading(path: Path, monkeypatch) -> None:
    """Permission denied on `path` (as root, which reads anything, the denial is simulated)."""
    if os.geteuid() != 0:
        path.chmod(0)
        return
    real = Path.read_bytes
    monkeypatch.setattr(Path, "read_bytes", lambda self: _denied(self) if self.name == path.name else real(self))


def _denied(path):
    raise PermissionError(13, "Permission denied", str(path))


# -- the store and the home ---------------------------------------------------------------
def run_id_of(home: Path) -> str:
    con = sqlite3.connect(f"file:{home / 'tunewise.db'}?mode=ro", uri=True)
    try:
        return con.execute("SELECT id FROM runs ORDER BY created_at DESC").fetchone()[0]
    finally:
        con.close()


def foreign_db(path: Path) -> None:
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE contacts (name TEXT, phone TEXT)")
    con.execute("INSERT INTO contacts VALUES ('Ada', '123')")
    con.commit()
    con.close()


def newer_schema(path: Path) -> None:
    con = sqlite3.connect(path)
    con.execute("PRAGMA user_version = 99")
    con.commit()
    con.close()


def store_bytes(home: Path):
    return (home / "tunewise.db").read_bytes() if (home / "tunewise.db").exists() else None


def task_in(tmp_path: Path) -> Path:
    (tmp_path / "words.csv").write_text(CSV)
    (tmp_path / "task.yaml").write_text(TASK_YAML)
    return tmp_path / "task.yaml"


# kind: (category, setup(tmp_path, home) -> the command's arguments, exit code, key words)
STORE_CASES = {
    "home is a file (run)": ("home", lambda t, h: _then((t / "f").write_text("x"),
                             ["run", task_in(t), "--no-progress", "--home", t / "f"]), 2,
                             ["f:", "is a file, not a directory", "--home"]),
    "home is a file (show)": ("home", lambda t, h: _then((t / "f").write_text("x"), ["show", "--home", t / "f"]), 2,
                              ["f:", "--home: is a file"]),
    "home under /proc": ("home", lambda t, h: ["run", task_in(t), "--no-progress", "--home", "/proc/tunewise-x/h"],
                         2, ["/proc/tunewise-x/h:", "cannot create the store's directory", "--home"]),
    "no store (show)": ("home", lambda t, h: ["show", "--home", t / "empty"], 2, ["no results store", "run a task"]),
    "no store (runs)": ("home", lambda t, h: ["runs", "--home", t / "empty"], 2, ["no results store"]),
    "no store (report)": ("home", lambda t, h: ["report", "--home", t / "empty"], 2, ["no results store"]),
    "store is garbage (run)": ("store", lambda t, h: _then((h / "tunewise.db").write_bytes(b"\x00garbage" * 300),
                                                 ["run", task_in(t), "--no-progress", "--home", h]), 2,
                               ["tunewise.db:", "not a readable results store", "--home"]),
    "store is garbage (runs)": ("store", lambda t, h: _then(
                                (h / "tunewise.db").write_bytes(b"not sqlite at all\n" * 99), ["runs", "--home", h]),
                                2, ["tunewise.db:", "not a readable results store"]),
    "store is another program's database (run)": ("store", lambda t, h: (h / "tunewise.db").unlink() or
                                                  foreign_db(h / "tunewise.db") or
                                                  ["run", task_in(t), "--no-progress", "--home", h], 2,
                                                  ["tunewise.db:", "not a tunewise results store", "contacts",
                                                   "untouched"]),
    "store is another program's database (show)": ("store", lambda t, h: (h / "tunewise.db").unlink() or
                                                   foreign_db(h / "tunewise.db") or ["show", "--home", h], 2,
                                                   ["not a tunewise results store"]),
    "store from a newer tunewise (run)": ("store", lambda t, h: newer_schema(h / "tunewise.db") or
                                          ["run", task_in(t), "--no-progress", "--home", h], 2,
                                          ["tunewise.db:", "schema version 99", "upgrade tunewise"]),
    "store from a newer tunewise (show)": ("store", lambda t, h: newer_schema(h / "tunewise.db") or
                                           ["show", "--home", h], 2, ["schema version 99", "upgrade"]),
    "empty store file (show)": ("store", lambda t, h: (t / "e").mkdir() or (t / "e" / "tunewise.db").touch() or
                                ["show", "--home", t / "e"], 2, ["tunewise.db:", "empty", "run a task first"]),
    "store cut short by an interrupted write": ("store", lambda t, h: _then((h / "tunewise.db").write_bytes(
        (h / "tunewise.db").read_bytes()[:20000]), ["runs", "--home", h]), 2,
        ["tunewise.db:", "malformed", "move it away"]),
    "unknown run id": ("commands", lambda t, h: ["show", "nope", "--home", h], 2, ["no run 'nope'", "tunewise runs"]),
    "ambiguous run prefix": ("commands", lambda t, h: _second_run(t, h) or ["show", "2", "--home", h], 2,
                             ["run '2' is ambiguous", "2 runs", "give more of the id"]),
    "compare with an unknown run": ("commands", lambda t, h: ["compare", "latest", "nope", "--home", h], 2,
                                    ["no run 'nope'"]),
    "report --out under a file": ("commands", lambda t, h: _then((t / "file").write_text("x"),
                                                       ["report", "--out", t / "file" / "sub", "--home", h]), 2,
                                  ["file/sub:", "cannot write the report", "--out"]),
}


def _then(*effects_and_args):
    """Setup effects (already done when the arguments are evaluated), then the command's arguments."""
    return effects_and_args[-1]


def _second_run(tmp_path: Path, home: Path) -> None:
    task = task_in(tmp_path)
    task.write_text(TASK_YAML.replace("seed: 1", "seed: 2"))
    assert invoke("run", task, "--no-progress", "--home", home).code == 0


@pytest.mark.parametrize("kind", list(STORE_CASES))
def test_bad_store_or_home(kind, tmp_path, home):
    category, setup, code, words = STORE_CASES[kind]
    args = setup(tmp_path, home)
    before, raw = snapshot(home) if category != "store" else None, store_bytes(home)
    result = invoke(*args)
    assert result.code == code, result.output
    _in_order(result.error_line(), words)
    assert store_bytes(home) == raw  # a refused store is left byte for byte as it was
    if before is not None:
        assert snapshot(home) == before


def test_read_commands_write_nothing_and_survive_a_read_only_home(home, tmp_path, monkeypatch):
    """show, runs, compare and report --out elsewhere change no byte of the store; when SQLite cannot open it
    read-only in place (a read-only disk, a WAL file it cannot create), they read it as an immutable file."""
    raw = store_bytes(home)
    real = sqlite3.connect

    def read_only_disk(database, *args, **kwargs):
        if "mode=ro" in str(database):
            raise sqlite3.OperationalError("attempt to write a readonly database")
        return real(database, *args, **kwargs)
    monkeypatch.setattr(sqlite3, "connect", read_only_disk)
    for args in (["show"], ["show", "--format", "json"], ["runs"], ["compare", "latest", "latest"],
                 ["report", "--out", tmp_path / "out"]):
        result = invoke(*args, "--home", home)
        assert result.code == 0 and "error" not in result.output, (args, result.output)
    assert store_bytes(home) == raw and (tmp_path / "out" / "report.html").exists()
    # writing the report into the read-only home is refused in one line that names the way out
    real_write = Path.write_text
    monkeypatch.setattr(Path, "write_text", lambda self, *a, **k: _read_only(self) if home in self.parents
                        else real_write(self, *a, **k))
    result = invoke("report", "--home", home)
    assert result.code == 2
    _in_order(result.error_line(), ["runs/", "cannot write the report here", "Read-only file system", "--out"])


def _read_only(path):
    raise OSError(30, "Read-only file system", str(path))


def test_a_damaged_run_breaks_neither_the_others_nor_runs(home, tmp_path):
    """A run whose stored record cannot be analysed fails alone (exit 1); the others show and report."""
    good = run_id_of(home)
    _second_run(tmp_path, home)
    bad = run_id_of(home)
    con = sqlite3.connect(home / "tunewise.db")
    con.execute("UPDATE runs SET config_json = '{\"metrics\": [\"accuracy\"]}' WHERE id = ?", (bad,))
    con.commit()
    con.close()
    result = invoke("show", bad, "--home", home)
    assert result.code == 1
    _in_order(result.error_line(), [bad, "cannot be analysed", "other runs are unaffected"])
    assert invoke("show", good, "--home", home).code == 0
    assert invoke("report", good, "--out", tmp_path / "r", "--home", home).code == 0
    listed = invoke("runs", "--home", home)
    assert listed.code == 0 and good in listed.output and bad in listed.output


def _failing(exc):
    def generate(self, requests, progress=None):
        raise exc
    return generate


@pytest.mark.parametrize("failure, code, words, status", [
    (OSError(28, "No space left on device"), 1, ["failed", "No space left on device", "what finished is kept"],
     "failed"),
    (RuntimeError("the model misbehaved"), 1, ["RuntimeError: the model misbehaved", "unexpected", "--debug"],
     "failed"),
    (KeyboardInterrupt(), 130, None, "interrupted"),
], ids=["failure at run time", "unexpected failure", "interrupted"])
def test_a_run_that_stops_is_marked_and_resumes(failure, code, words, status, tmp_path, monkeypatch):
    """A failed or interrupted run is marked so (never left 'running'); the same command then resumes it."""
    from tunewise.backends.fake import FakeBackend
    task = task_in(tmp_path)
    monkeypatch.setattr(FakeBackend, "generate", _failing(failure))
    result = invoke("run", task, "--no-progress", "--home", tmp_path / "h")
    assert result.code == code, result.output
    if words:
        _in_order(result.error_line(), words)
    else:
        assert "interrupted: finished work is saved" in result.output and "Traceback" not in result.output
    listed = invoke("runs", "--home", tmp_path / "h").output
    assert f" {status} " in listed, listed
    assert f"({status}: not every arm finished)" in invoke("show", "--home", tmp_path / "h").output
    monkeypatch.undo()
    resumed = invoke("run", task, "--no-progress", "--home", tmp_path / "h")
    assert resumed.code == 0 and "resuming" in resumed.output
    assert invoke("runs", "--home", tmp_path / "h").output.split()[3] == "done"


def test_a_run_killed_outright_shows_as_interrupted(home):
    """kill -9 leaves the run marked running; its process is gone, so `runs` says interrupted."""
    con = sqlite3.connect(home / "tunewise.db")
    import socket
    info = json.dumps({"process": {"pid": 2 ** 22 + 12345, "host": socket.gethostname()}})
    con.execute("UPDATE runs SET status = 'running', info_json = json_patch(info_json, ?)", (info,))
    con.commit()
    con.close()
    assert " interrupted " in invoke("runs", "--home", home).output


def test_demo_write_task_never_overwrites_an_edited_file(tmp_path):
    first = invoke("demo", "--write-task", tmp_path / "demo")
    assert first.code == 0
    again = invoke("demo", "--write-task", tmp_path / "demo")
    assert again.code == 0  # the same files: nothing lost
    task = tmp_path / "demo" / "word_sentiment.yaml"
    task.write_text(task.read_text() + "# my edit\n")
    result = invoke("demo", "--write-task", tmp_path / "demo")
    assert result.code == 2
    _in_order(result.error_line(), ["word_sentiment.yaml:", "differs from the demo's", "leaves it"])
    assert task.read_text().endswith("# my edit\n")


# -- unusual input that is valid: the same results as its plain form --------------------------------
VALID_VARIANTS = {
    "CSV with a byte-order mark": (None, {"words.csv": "\ufeff" + CSV}),
    "CSV with CRLF line ends": (None, {"words.csv": CSV.replace("\n", "\r\n")}),
    "CSV with every field quoted": (None, {"words.csv": "".join(
        ",".join(f'"{cell}"' for cell in line.split(",")) + "\n" for line in CSV.splitlines())}),
    "CSV with blank lines": (None, {"words.csv": CSV.replace("\n", "\n\n", 5)}),
    "JSONL with a byte-order mark": (JSONL_TASK, {"words.jsonl": "\ufeff" + WORDS_JSONL}),
    "JSONL with CRLF line ends": (JSONL_TASK, {"words.jsonl": WORDS_JSONL.replace("\n", "\r\n")}),
    "JSONL with extra fields": (JSONL_TASK, {"words.jsonl": jsonl({"word": w, "label": label, "note": None}
                                                                   for w, label in WORDS)}),
    "task file with a byte-order mark": ("bom", None),
    "task file with CRLF line ends": ("crlf", None),
}


@pytest.fixture(scope="module")
def plain_metrics(finished_home) -> dict:
    return _metrics(finished_home)


def _metrics(home: Path) -> dict:
    result = invoke("show", "--format", "json", "--home", home)
    assert result.code == 0, result.output
    report = json.loads(result.output)
    return {a["name"]: {m: v["value"] for m, v in a["summary"]["metrics"].items()} for a in report["arms"]}


@pytest.mark.parametrize("kind", list(VALID_VARIANTS))
def test_unusual_valid_input_gives_the_same_results(kind, tmp_path, plain_metrics):
    edit, files = VALID_VARIANTS[kind]
    (tmp_path / "words.csv").write_text(CSV)
    text = edit(TASK_YAML) if callable(edit) else TASK_YAML
    raw = text.encode()
    if edit == "bom":
        raw = "\ufeff".encode() + raw
    elif edit == "crlf":
        raw = text.replace("\n", "\r\n").encode()
    (tmp_path / "task.yaml").write_bytes(raw)
    for name, content in (files or {}).items():
        (tmp_path / name).write_bytes(content.encode())
    result = invoke("run", tmp_path / "task.yaml", "--no-progress", "--home", tmp_path / "h")
    assert result.code == 0 and "Traceback" not in result.output, result.output
    assert _metrics(tmp_path / "h") == plain_metrics


def test_unicode_labels_and_long_fields_are_data_like_any_other(tmp_path):
    words = [(w, {"positive": "положительный", "negative": "négatif"}[label]) for w, label in WORDS]
    long_text = "long " * 40000  # 200,000 characters: more than the csv module's default field limit
    (tmp_path / "words.csv").write_text(rows_csv(words) + f'"{long_text}",négatif\n', encoding="utf-8")
    (tmp_path / "task.yaml").write_text(TASK_YAML)
    result = invoke("run", tmp_path / "task.yaml", "--no-progress", "--home", tmp_path / "h")
    assert result.code == 0, result.output
    report = json.loads(invoke("show", "--format", "json", "--home", tmp_path / "h").output)
    assert report["info"]["labels"] == ["négatif", "положительный"]
    assert sum(report["info"]["splits"].values()) == 21  # every row placed, the long one too
    assert report["warnings"] == []


# -- nothing silent: what used to vanish is a warning, in the output and in the report --------------------
SILENT_CASES = {
    "rows rounded away by stratified splitting": (
        None, rows_csv(WORDS[:13] + [("meh", "neutral")]), {"train": 8, "dev": 2, "test": 4},
        ["no test item has the label 'neutral' (1 row)"]),
    "fractions leaving rows in no split": (
        sub("train: 0.5", "train: 0.2"), CSV, {"train": 4, "dev": 4, "test": 6},
        ["6 of 20 rows are in no split", "add up to 0.7"]),
    "a split capped by max_train": (
        sub("seed: 1}", "seed: 1, max_train: 4}"), CSV, {"train": 4, "dev": 4, "test": 6},
        ["splits.max_train 4 left out 6 of the 10 train rows"]),
    "a price for a model no arm uses": (
        add("prices: {models: {gpt-9: {input_per_million: 1, output_per_million: 2}}}\n"), CSV,
        {"train": 10, "dev": 4, "test": 6}, ["prices.models.gpt-9: no arm uses a model of that name"]),
    "rows dropped by dedupe": (
        sub("seed: 1}", "seed: 1, dedupe: true}"), CSV + "happy,positive\nsad,negative\n",
        {"train": 10, "dev": 4, "test": 6}, ["splits.dedupe dropped 2 row(s)"]),
}


@pytest.mark.parametrize("kind", list(SILENT_CASES))
def test_nothing_is_dropped_silently(kind, tmp_path):
    edit, data, sizes, words = SILENT_CASES[kind]
    (tmp_path / "words.csv").write_text(data)
    (tmp_path / "task.yaml").write_text(edit(TASK_YAML) if edit else TASK_YAML)
    home = tmp_path / "h"
    result = invoke("run", tmp_path / "task.yaml", "--no-progress", "--home", home)
    assert result.code == 0, result.output
    for word in words:
        assert word in result.output  # said while running ...
    report = json.loads(invoke("show", "--format", "json", "--home", home).output)
    assert report["info"]["splits"] == sizes and report["status"] == "done"
    markdown = next((home / "runs").glob("*/report.md")).read_text()
    html = next((home / "runs").glob("*/report.html")).read_text()
    shown = invoke("show", "--home", home).output
    for word in words:  # ... and in every form of the report
        assert any(word in w for w in report["warnings"]) and word in markdown and word in shown
        assert word.replace("'", "&#39;") in html


# -- real models: failures found before loading, warnings the user can act on, none they cannot ------------
def tiny_task(tmp_path: Path, model_dir: Path, extra: str = "", data: str = CSV) -> Path:
    (tmp_path / "words.csv").write_text(data)
    text = arms("{type: zero_shot, decoding: constrained}")(TASK_YAML.replace("model: fake", f"model: {model_dir}"))
    (tmp_path / "task.yaml").write_text(text + "consistency: {enabled: false}\nbatch_size: 4\n" + extra)
    return tmp_path / "task.yaml"


def test_cuda_asked_for_on_a_machine_without_it(tmp_path, tiny_model_dir, home):
    import torch
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    before = snapshot(home)
    result = invoke("run", tiny_task(tmp_path, tiny_model_dir, "device: cuda\n"), "--no-progress", "--home", home)
    assert result.code == 2
    _in_order(result.error_line(), ["task.yaml:", "device:", "'cuda' asked for", "no CUDA device", "device: auto"])
    assert snapshot(home) == before


def test_prompts_past_the_model_context_are_reported(tmp_path, tiny_model_dir):
    """The tiny model attends to 512 positions; inputs of about 700 tokens are answered, and said to be
    unreliable, with their count."""
    words = [(f"{w} " + "the quick brown fox " * 120, label) for w, label in WORDS]
    task = tiny_task(tmp_path, tiny_model_dir, data=rows_csv(words))
    result = invoke("run", task, "--no-progress", "--home", tmp_path / "h")
    assert result.code == 0, result.output
    expected = "6 of 6 prompts and their answers run past the model's context of 512 tokens"
    assert expected in result.output
    report = json.loads(invoke("show", "--format", "json", "--home", tmp_path / "h").output)
    assert any(expected in w for w in report["warnings"])


def test_training_examples_cut_to_max_length_are_reported(tmp_path, tiny_model_dir):
    task = tiny_task(tmp_path, tiny_model_dir)
    task.write_text(task.read_text().replace(
        "  - {type: zero_shot, decoding: constrained}",
        "  - {type: lora, decoding: constrained, r: 2, train: {epochs: 1, max_length: 12, eval_max: 2}}"))
    result = invoke("run", task, "--no-progress", "--home", tmp_path / "h")
    assert result.code == 0, result.output
    expected = "10 of 10 training examples were longer than train.max_length 12 tokens"
    assert expected in result.output
    report = json.loads(invoke("show", "--format", "json", "--home", tmp_path / "h").output)
    assert any(expected in w for w in report["warnings"])


def test_no_library_warning_the_user_cannot_act_on(tiny_backend):
    """transformers 5 deprecated `past_key_values`; the local backend passes the cache by its new name."""
    import warnings

    from tunewise.backends.base import GenParams, GenRequest, ScoreRequest
    messages = [{"role": "user", "content": "Word: happy"}]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        tiny_backend.generate([GenRequest(messages, GenParams(max_tokens=3))])
        tiny_backend.score_choices([ScoreRequest(messages, ("positive", "negative"))])


def test_an_unforeseen_failure_is_one_line_and_debug_shows_it(tmp_path, monkeypatch):
    """The last resort: an error nobody foresaw is still one line (exit 1); --debug shows the traceback."""
    import tunewise.task
    monkeypatch.setattr(tunewise.task, "load_task", lambda path: 1 / 0)
    result = invoke("run", task_in(tmp_path), "--no-progress", "--home", tmp_path / "h")
    assert result.code == 1
    _in_order(result.error_line(), ["ZeroDivisionError", "unexpected", "--debug"])
    with pytest.raises(ZeroDivisionError):
        CliRunner().invoke(main, ["run", str(tmp_path / "task.yaml"), "--debug"], catch_exceptions=False)


def test_an_empty_home_is_refused_not_taken_for_the_current_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = invoke("run", task_in(tmp_path), "--no-progress", "--home", "")
    assert result.code == 2 and not result.crashed and "Traceback" not in result.output
    assert "Invalid value for '--home': is empty" in result.output
    assert not (tmp_path / "tunewise.db").exists()


def test_run_on_a_read_only_home_is_refused_before_any_work(home, tmp_path, monkeypatch):
    """As root every folder is writable, so the read-only disk is simulated where SQLite would meet it."""
    raw = store_bytes(home)
    real = sqlite3.connect

    def read_only_disk(database, *args, **kwargs):
        con = real(database, *args, **kwargs)
        con.execute("PRAGMA query_only = ON")  # every write now fails as on a read-only disk
        return con
    monkeypatch.setattr(sqlite3, "connect", read_only_disk)
    result = invoke("run", task_in(tmp_path), "--no-progress", "--home", home)
    assert result.code == 2
    _in_order(result.error_line(), ["tunewise.db:", "cannot write the results store", "--home"])
    assert store_bytes(home) == raw
