"""What tunewise writes never costs the user a file, and what it reads back is what it wrote (issue 28).

`predict --out`, `report --out` and `export --out` write only into fresh paths or into files and folders
tunewise wrote itself (recognised by a sidecar it wrote, checked before any byte changes); a bundle is
checked whole, manifest.json included, before any model loads. Each case runs the command line in-process
on the shared tiny run (tests/bundle_fixtures.py) and checks the exit code, the one error line and that the
user's bytes are unchanged.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import sqlite3
from pathlib import Path

import pytest

from test_bad_input import _in_order, invoke

# a user's file of each shape; the CSV and the text end without a newline, and the JSONL's ids are the
# line numbers predict gives the rows of IN_CSV
SHAPES = {
    "text without a final newline": b"my notes\nthe second line has no newline",
    "CSV": b"word,label\nhappy,positive\nsad,negative",
    "JSONL with ids": b'{"id": "2", "note": "mine"}\n{"id": "3", "note": "mine too"}\n',
    "binary": bytes(range(256)) * 3,
}
IN_CSV = "word\nhappy\nsad\n"


def tree(folder: Path) -> dict[str, bytes]:
    """Every file under `folder` with its bytes: equal before and after means untouched."""
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def predict(bundle: Path, inputs: Path, out: Path, *extra):
    return invoke("predict", bundle, inputs, "--out", out, "--no-progress", "--device", "cpu", *extra)


@pytest.fixture
def inputs(tmp_path) -> Path:
    path = tmp_path / "in.csv"
    path.write_text(IN_CSV)
    return path


@pytest.fixture
def structured(tiny_run) -> Path:
    return tiny_run.bundle("structured")


# -- predict --out --------------------------------------------------------------------------------
@pytest.mark.parametrize("shape", SHAPES)
def test_predict_never_writes_into_a_file_it_did_not_write(shape, structured, inputs, tmp_path):
    out = tmp_path / "answers.jsonl"
    out.write_bytes(SHAPES[shape])
    before = tree(tmp_path)
    result = predict(structured, inputs, out)
    assert result.code == 2, result.output
    _in_order(result.error_line(), [f"error: {out}: ", "not a file tunewise wrote", "choose another --out"])
    assert tree(tmp_path) == before  # the bytes, and no sidecar left beside them


def test_predict_resumes_its_own_file_and_refuses_it_once_edited(structured, inputs, tmp_path):
    out = tmp_path / "answers.jsonl"
    assert predict(structured, inputs, out).code == 0
    again = predict(structured, inputs, out)
    assert again.code == 0 and "wrote 0 answers" in again.output and "(2 already there)" in again.output
    lines = out.read_text().splitlines()
    out.write_text(lines[0].replace('"id": "2"', '"id": "4"') + "\n" + lines[1] + "\n")
    before = tree(tmp_path)
    result = predict(structured, inputs, out)
    assert result.code == 2
    _in_order(result.error_line(), [f"error: {out}: ", "changed since tunewise wrote it", "choose another --out"])
    assert tree(tmp_path) == before


def test_predict_refuses_its_own_file_with_the_users_lines_appended(structured, inputs, tmp_path):
    out = tmp_path / "answers.jsonl"
    assert predict(structured, inputs, out).code == 0
    with out.open("a") as handle:
        handle.write("my own line\n")
    before = tree(tmp_path)
    result = predict(structured, inputs, out)
    assert result.code == 2
    _in_order(result.error_line(), [f"error: {out}:3: ", "not a line tunewise wrote", "choose another --out"])
    assert tree(tmp_path) == before


def test_predict_redoes_a_batch_written_but_not_yet_recorded(tiny_run, tmp_path):
    """A kill between a batch's flush and its record in the sidecar: the batch is cut off and answered again."""
    from tunewise.ship.bundle import Bundle
    from tunewise.ship.predict import predict_file
    from tunewise.store.owned import sidecar_of
    bundle = Bundle.load(tiny_run.bundle("structured"), device="cpu")
    inputs = tmp_path / "in.csv"
    inputs.write_text("word\n" + "".join(f"w{i}\n" for i in range(6)))
    out = tmp_path / "out.jsonl"
    predict_file(bundle, inputs, out, batch_size=4, progress=False)
    sidecar = sidecar_of(out)
    sidecar.write_text("".join(sidecar.read_text().splitlines(keepends=True)[:-1]))  # the last record lost
    result = predict_file(bundle, inputs, out, batch_size=4, progress=False)
    assert (result.skipped, result.written) == (4, 2)
    assert [json.loads(line)["id"] for line in out.read_text().splitlines()] == [str(i) for i in range(2, 8)]
    assert predict_file(bundle, inputs, out, progress=False).written == 0


def test_predict_refuses_a_sidecar_path_it_did_not_write(structured, inputs, tmp_path):
    from tunewise.store.owned import sidecar_of
    out = tmp_path / "answers.jsonl"
    sidecar_of(out).write_bytes(SHAPES["text without a final newline"])
    before = tree(tmp_path)
    result = predict(structured, inputs, out)
    assert result.code == 2
    _in_order(result.error_line(), [f"error: {sidecar_of(out)}: ", "not a file tunewise wrote",
                                    "choose another --out"])
    assert tree(tmp_path) == before


@pytest.mark.parametrize("where", ["under a file", "unwritable"])
def test_predict_out_that_cannot_be_written_names_it(where, structured, inputs, tmp_path):
    out = tmp_path / "notes.txt" / "answers.jsonl" if where == "under a file" else Path("/sys/answers.jsonl")
    (tmp_path / "notes.txt").write_bytes(SHAPES["text without a final newline"])
    result = predict(structured, inputs, out)
    assert result.code == 2, result.output
    line = result.error_line()
    _in_order(line, [f"error: {out}: ", "cannot write", "--out"])
    assert "unexpected" not in line
    assert (tmp_path / "notes.txt").read_bytes() == SHAPES["text without a final newline"]


# -- report --out ---------------------------------------------------------------------------------
@pytest.mark.parametrize("shape, name", list(zip(SHAPES, ["report.md", "report.html", "report.json", "report.md"])))
def test_report_never_overwrites_a_file_it_did_not_write(shape, name, tiny_run, tmp_path):
    out = tmp_path / "reports"
    out.mkdir()
    (out / name).write_bytes(SHAPES[shape])
    before = tree(out)
    result = invoke("report", tiny_run.run_id, "--out", out, "--home", tiny_run.home)
    assert result.code == 2, result.output
    _in_order(result.error_line(), [f"error: {out / name}: ", "not a file tunewise wrote", "choose another --out"])
    assert tree(out) == before  # not one of the three written


def test_report_replaces_its_own_files_never_an_edited_one(tiny_run, tmp_path):
    out = tmp_path / "reports"
    (out / "mine.txt").parent.mkdir()
    (out / "mine.txt").write_bytes(SHAPES["binary"])  # a file of the user's beside the reports: kept
    for _ in range(2):
        result = invoke("report", tiny_run.run_id, "--out", out, "--home", tiny_run.home)
        assert result.code == 0, result.output
    assert (out / "mine.txt").read_bytes() == SHAPES["binary"]
    with (out / "report.md").open("a") as handle:
        handle.write("\nmy notes on the run\n")
    before = tree(out)
    result = invoke("report", tiny_run.run_id, "--out", out, "--home", tiny_run.home)
    assert result.code == 2
    _in_order(result.error_line(), [f"error: {out / 'report.md'}: ", "changed since tunewise wrote it",
                                    "choose another --out"])
    assert tree(out) == before


# -- export --out ---------------------------------------------------------------------------------
@pytest.mark.parametrize("inside", [False, True], ids=["the --out itself", "a file inside --out"])
@pytest.mark.parametrize("shape", SHAPES)
def test_export_never_writes_over_a_file_it_did_not_write(shape, inside, tiny_run, tmp_path):
    out = tmp_path / "bundle"
    target = out / "manifest.json" if inside else out
    target.parent.mkdir(exist_ok=True)
    target.write_bytes(SHAPES[shape])
    before = tree(tmp_path)
    result = invoke("export", tiny_run.run_id, "structured", "--out", out, "--home", tiny_run.home)
    assert result.code == 2, result.output
    _in_order(result.error_line(), ["error: ", str(out)])
    assert tree(tmp_path) == before


@pytest.mark.parametrize("where", ["under a file", "unwritable"])
def test_export_out_that_cannot_be_written_names_it(where, tiny_run, tmp_path):
    (tmp_path / "notes.txt").write_bytes(SHAPES["text without a final newline"])
    out = tmp_path / "notes.txt" / "bundle" if where == "under a file" else Path("/sys/tunewise-bundle")
    result = invoke("export", tiny_run.run_id, "structured", "--out", out, "--home", tiny_run.home)
    assert result.code == 2, result.output
    line = result.error_line()
    _in_order(line, [f"error: {out}: ", "choose another --out"])
    assert "unexpected" not in line and ".export-" not in line
    assert tree(tmp_path) == {"notes.txt": SHAPES["text without a final newline"]}


def unfinished_home(tiny_run, tmp_path: Path, status: str, drop_arm: str | None = None) -> Path:
    """A copy of the tiny run's home with the run marked `status` (and an arm that never finished)."""
    home = tmp_path / "home"
    shutil.copytree(tiny_run.home, home)
    con = sqlite3.connect(home / "tunewise.db")
    info = json.dumps({"process": {"pid": os.getpid(), "host": socket.gethostname()}})  # alive: running
    con.execute("UPDATE runs SET status = ?, info_json = json_patch(info_json, ?)", (status, info))
    if drop_arm:  # an arm that failed while training leaves no row
        con.execute("DELETE FROM arms WHERE name = ?", (drop_arm,))
        con.execute("DELETE FROM predictions WHERE arm = ?", (drop_arm,))
    con.commit()
    con.close()
    return home


@pytest.mark.parametrize("status, words", [("failed", "failed"), ("running", "is still running")])
def test_export_of_an_unfinished_run_warns_and_says_so_in_the_bundle(status, words, tiny_run, tmp_path):
    home = unfinished_home(tiny_run, tmp_path, status)
    out = tmp_path / "bundle"
    result = invoke("export", tiny_run.run_id, "--out", out, "--home", home)
    assert result.code == 0, result.output
    _in_order(result.output, ["warning: run", words, "not every arm finished", "compares only", f"wrote {out}"])
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["run_status"] == status
    assert "not every arm finished" in (out / "README.md").read_text()


def test_export_of_an_arm_that_failed_says_it_failed(tiny_run, tmp_path):
    home = unfinished_home(tiny_run, tmp_path, "failed", drop_arm="lora")
    result = invoke("export", tiny_run.run_id, "lora", "--out", tmp_path / "bundle", "--home", home)
    assert result.code == 2
    line = result.error_line()
    _in_order(line, ["arm 'lora'", "did not finish", "the run failed", "run the task again"])
    assert "has no arm" not in line and not (tmp_path / "bundle").exists()
    result = invoke("export", tiny_run.run_id, "nosuch", "--out", tmp_path / "bundle", "--home", home)
    assert result.code == 2 and "has no arm 'nosuch'" in result.error_line()


# -- the bundle, verified whole -------------------------------------------------------------------
@pytest.fixture
def no_model_loads(monkeypatch):
    def load_backend(*args, **kwargs):
        raise AssertionError("a model was loaded from a bundle that should have been refused")
    monkeypatch.setattr("tunewise.ship.bundle.load_backend", load_backend)


def edited(bundle: Path, tmp_path: Path, edit) -> Path:
    copy = tmp_path / "edited"
    shutil.copytree(bundle, copy)
    edit(copy)
    return copy


def another_model(bundle: Path) -> None:
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest["model"]["name"] = manifest["model"]["path"] = "HuggingFaceTB/SmolLM2-360M-Instruct"
    (bundle / "manifest.json").write_text(json.dumps(manifest, indent=2))


def a_file_added(bundle: Path) -> None:
    (bundle / "adapter").mkdir(exist_ok=True)
    (bundle / "adapter" / "tokenizer_config.json").write_text("{}")


def format_1(bundle: Path) -> None:
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest["format"] = 1
    manifest.pop("digest")
    (bundle / "manifest.json").write_text(json.dumps(manifest, indent=2))


@pytest.mark.parametrize("edit, file, words", [
    (another_model, "manifest.json", ["changed since it was exported", "export the arm again"]),
    (a_file_added, "adapter/tokenizer_config.json", ["not one of the files exported", "export the arm again"]),
    (format_1, "", ["bundle format 1", "format 2", "export the arm again"]),
], ids=["manifest names another model", "a file added", "a bundle from before manifests had a digest"])
@pytest.mark.parametrize("command", ["predict", "serve"])
def test_a_bundle_changed_after_export_is_refused_before_any_model_loads(command, edit, file, words, structured,
                                                                         inputs, tmp_path, no_model_loads):
    bundle = edited(structured, tmp_path, edit)
    out = tmp_path / "answers.jsonl"
    result = predict(bundle, inputs, out) if command == "predict" else invoke("serve", bundle, "--port", 0)
    assert result.code == 2, result.output
    _in_order(result.error_line(), [f"error: {bundle / file}".rstrip("/") + ": ", *words])
    assert not out.exists()


def test_an_unchanged_bundle_passes_its_whole_check(structured):
    from tunewise.ship.bundle import read_bundle
    manifest, _ = read_bundle(structured)
    assert manifest.digest and manifest.run_status == "done"
