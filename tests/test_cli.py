"""The command line, as a user meets it: tables, one-line errors, exit codes."""

import pytest
from click.testing import CliRunner

from conftest import TASK_YAML
from tunewise.cli import main


def invoke(*args, cwd=None):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def test_run_then_show(task_file, tmp_path):
    home = tmp_path / "home"
    result = invoke("run", task_file, "--no-progress", "--home", home)
    assert result.exit_code == 0, result.output
    assert "zero_shot" in result.output and "few_shot" in result.output and "report:" in result.output
    shown = invoke("show", "latest", "--home", home)
    assert shown.exit_code == 0 and "prompt: structured (scored labels)" in shown.output
    md = invoke("show", "latest", "--format", "markdown", "--home", home)
    assert md.output.startswith("# tunewise run")
    assert invoke("runs", "--home", home).output.count("words") == 1


def test_report_and_compare(task_file, tmp_path):
    home = tmp_path / "home"
    invoke("run", task_file, "--no-progress", "--home", home)
    (task_file.parent / "task2.yaml").write_text(TASK_YAML.replace("seed: 1", "seed: 2"))
    invoke("run", task_file.parent / "task2.yaml", "--no-progress", "--home", home)
    out = tmp_path / "out"
    result = invoke("report", "latest", "--out", out, "--home", home)
    assert result.exit_code == 0 and (out / "report.html").exists() and (out / "report.md").exists()
    assert "Recommendation:" in (out / "report.md").read_text()
    runs = [line.split()[0] for line in invoke("runs", "--home", home).output.splitlines()]
    compared = invoke("compare", runs[1], runs[0], "--home", home)
    assert compared.exit_code == 0 and "difference" in compared.output and "few_shot" in compared.output
    assert invoke("compare", runs[0], "nope", "--home", home).exit_code == 2


BAD = {
    "yaml syntax": (lambda t, d: t.replace("type: classification", "type: [classification"), None,
                    "invalid YAML"),
    "unknown key": (lambda t, d: t + "colour: red\n", None, "colour: unknown key"),
    "bad value": (lambda t, d: t.replace("seed: 1", "seed: one"), None, "splits.seed:"),
    "unknown arm": (lambda t, d: t.replace("{type: zero_shot}", "{type: zero_shoot}"), None, "unknown arm type"),
    "missing data file": (lambda t, d: t.replace("words.csv", "nope.csv"), None, "data file not found"),
    "missing field": (lambda t, d: t, "word,label\nhappy,positive\nsad\n", "words.csv:3: label: row has too few"),
    "empty value": (lambda t, d: t, "word,label\nhappy,positive\n,negative\n", "words.csv:3: word: empty value"),
    "label outside set": (lambda t, d: t + "labels: [negative, positive]\n",
                          "word,label\nhappy,positive\nmeh,neutral\n", "words.csv:3: label: label 'neutral'"),
    "non-utf8": (lambda t, d: t, b"word,label\nhappy,positive\ncaf\xe9,positive\n", "words.csv:3: not valid UTF-8"),
    "extra cells": (lambda t, d: t, "word,label\nhappy,positive,x\n", "words.csv:2: 3 cells but"),
    "empty test split": (lambda t, d: t, "word,label\nhappy,positive\nsad,negative\n",
                         "splits.test: the test split is empty"),
    "unknown metric": (lambda t, d: t + "metrics: [bleu]\n", None, "unknown metric 'bleu'"),
}


@pytest.mark.parametrize("kind", list(BAD))
def test_bad_input_gives_one_line_error_and_exit_2(kind, tmp_path, words_csv):
    edit, data, expected = BAD[kind]
    if data is not None:
        words_csv.write_bytes(data if isinstance(data, bytes) else data.encode())
    task = tmp_path / "task.yaml"
    task.write_text(edit(TASK_YAML, words_csv))
    result = invoke("run", task, "--no-progress", "--home", tmp_path / "home")
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    assert expected in lines[0]
    assert "Traceback" not in result.output


def test_leakage_warns_and_strict_fails(tmp_path, words_csv):
    words_csv.write_text("word,label\n" + "happy,positive\nsad,negative\n" * 10)
    task = tmp_path / "task.yaml"
    task.write_text(TASK_YAML)
    relaxed = invoke("run", task, "--no-progress", "--home", tmp_path / "h")
    assert relaxed.exit_code == 0 and "warning:" in relaxed.output and "leakage" in relaxed.output
    strict = invoke("run", task, "--no-progress", "--strict", "--home", tmp_path / "h2")
    assert strict.exit_code == 2 and "leakage" in strict.output


def test_debug_shows_the_traceback(tmp_path):
    task = tmp_path / "task.yaml"
    task.write_text("colour: red\n")
    from tunewise.errors import TaskFileError
    with pytest.raises(TaskFileError):
        CliRunner().invoke(main, ["run", str(task), "--debug"], catch_exceptions=False)


def test_show_unknown_run(tmp_path, task_file):
    invoke("run", task_file, "--no-progress", "--home", tmp_path)
    result = invoke("show", "nope", "--home", tmp_path)
    assert result.exit_code == 2 and "no run 'nope'" in result.output


@pytest.mark.parametrize("args, message", [
    (["run", "--bogus", "x.yaml"], "error: No such option '--bogus'; see 'tunewise run --help'"),
    (["run"], "error: Missing argument 'TASK_FILE'; see 'tunewise run --help'"),
    (["nosuch"], "error: No such command 'nosuch'; see 'tunewise --help'"),
])
def test_usage_errors_are_one_line(args, message):
    import subprocess
    import sys
    done = subprocess.run([sys.executable, "-m", "tunewise", *args], capture_output=True, text=True)
    assert done.returncode == 2 and done.stderr.strip() == message
