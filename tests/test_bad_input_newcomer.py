"""The newcomer's path (issue 28): --no-progress silences every bar, the libraries' included, and the terminal
table wraps a narrow console at spaces, never cutting a header or an interval short."""

from __future__ import annotations

import pytest
from rich.console import Console

import tunewise
from conftest import oracle
from tunewise.backends import FakeBackend
from tunewise.backends.models import _conversion_bar, progress_bars
from tunewise.reports.terminal import print_table


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    from conftest import TASK_YAML, WORDS
    root = tmp_path_factory.mktemp("table")
    (root / "words.csv").write_text("word,label\n" + "".join(f"{w},{label}\n" for w, label in WORDS))
    (root / "task.yaml").write_text(TASK_YAML)
    task = tunewise.load_task(root / "task.yaml")
    result = tunewise.run(task, home=root / "home", progress=False, backend_factory=lambda m: FakeBackend(oracle))
    return result.report


@pytest.mark.parametrize("width", [140, 160])
def test_the_table_wraps_but_never_cuts_a_word(report, width):
    console = Console(width=width, record=True)
    print_table(report, console)
    text = console.export_text()
    assert "…" not in text, text
    assert "(consistency)" in text and "(95%" in text and "train" in text
    assert max(len(line) for line in text.splitlines()) <= width


def test_a_console_too_narrow_for_whole_words_keeps_every_column(report):
    console = Console(width=100, record=True)
    print_table(report, console)
    table = console.export_text().split("\n\n")[0]
    assert max(len(line) for line in table.splitlines()) <= 100
    assert table.splitlines()[1].rstrip().endswith("┓")  # the right edge is drawn: no column cropped


def _bar_output(capsys, enabled: bool) -> str:
    from transformers import modeling_gguf_pytorch_utils as gguf_utils
    with progress_bars(enabled), _conversion_bar():
        for _ in gguf_utils.tqdm(range(3), desc="Converting and de-quantizing GGUF tensors..."):
            pass
    return capsys.readouterr().err


def test_no_progress_silences_the_gguf_conversion_bar(capsys):
    assert "Converting" in _bar_output(capsys, True)
    assert _bar_output(capsys, False) == ""
    from transformers import modeling_gguf_pytorch_utils as gguf_utils
    assert not isinstance(gguf_utils.tqdm, __import__("functools").partial)  # put back afterwards


def test_a_run_without_progress_turns_the_libraries_bars_off(task_file, tmp_path, monkeypatch):
    seen = []
    real = progress_bars

    def spy(enabled):
        seen.append(enabled)
        return real(enabled)
    monkeypatch.setattr("tunewise.execution.runner.progress_bars", spy)
    tunewise.run(tunewise.load_task(task_file), home=tmp_path, progress=False,
                 backend_factory=lambda m: FakeBackend(oracle))
    assert seen == [False]
