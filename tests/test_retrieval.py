"""The retrieval arm: passages from a knowledge source put in the prompt, for each input."""

import json
import re

import pytest

import tunewise
from tunewise.arms.knowledge import BM25Index, load_passages
from tunewise.backends import FakeBackend
from tunewise.errors import DataError, TaskFileError

COLORS = ["red", "green", "blue", "amber", "violet"]


def facts_task(tmp_path, **extra):
    items = [{"question": f"What color is gadget number {i}?", "answer": COLORS[i % 5]} for i in range(40)]
    (tmp_path / "qa.jsonl").write_text("".join(json.dumps(r) + "\n" for r in items))
    (tmp_path / "facts.jsonl").write_text("".join(
        json.dumps({"text": f"Gadget number {i} is painted {COLORS[i % 5]}."}) + "\n" for i in range(40)))
    task = {"name": "gadgets", "type": "generation", "instruction": "Answer with the color only.",
            "data": {"path": str(tmp_path / "qa.jsonl"), "input": "question", "target": "answer"},
            "knowledge": {"path": str(tmp_path / "facts.jsonl")}, "model": "fake", "metrics": ["exact_match"],
            "consistency": {"enabled": False},
            "arms": [{"type": "zero_shot"}, {"type": "retrieval", "passages": 2}]}
    task.update(extra)
    return tunewise.validate_task(task)


def reader(messages):
    """Answers from a passage in the prompt about the asked gadget, else guesses."""
    number = re.search(r"number (\d+)\?", messages[-1]["content"]).group(1)
    found = re.search(rf"Gadget number {number} is painted (\w+)", messages[0]["content"])
    return found.group(1) if found else "grey"


def test_retrieval_puts_the_right_passage_in_the_prompt(tmp_path):
    task = facts_task(tmp_path)
    result = tunewise.run(task, home=tmp_path / "home", progress=False, backend_factory=lambda m: FakeBackend(reader))
    assert result.summaries["zero_shot"]["metrics"]["exact_match"]["value"] == 0.0
    assert result.summaries["retrieval"]["metrics"]["exact_match"]["value"] == 1.0
    assert result.summaries["retrieval"]["retrieval_hit_rate"] == 1.0
    report = json.loads(result.report_paths["json"].read_text())
    assert report["decision"]["recommended"] == "retrieval" and report["decision"]["kind"] == "retrieval"
    assert "passages a request" in next(a for a in report["arms"] if a["name"] == "retrieval")["data_required"]


def test_bm25_ranks_the_passage_that_shares_the_rare_words():
    index = BM25Index(["Gadget number 7 is painted red.", "Gadget number 17 is painted blue.", "Cats purr."])
    assert index.search(["What color is gadget number 17?"], 1) == [[1]]


def test_a_folder_of_text_files_is_one_passage_per_paragraph(tmp_path):
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "a.md").write_text("First paragraph.\n\nSecond\nparagraph.\n")
    (folder / "b.txt").write_text("Third.")
    task = facts_task(tmp_path, knowledge={"path": str(folder)})
    assert load_passages(task) == ["First paragraph.", "Second\nparagraph.", "Third."]


def test_bad_knowledge_sources_are_named(tmp_path):
    task = facts_task(tmp_path)
    (tmp_path / "facts.jsonl").write_text('{"text": "ok"}\n{"body": "no text field"}\n')
    with pytest.raises(DataError, match="facts.jsonl:2: text: missing or empty passage"):
        load_passages(task)
    with pytest.raises(TaskFileError, match="knowledge"):
        load_passages(facts_task(tmp_path, knowledge=None))


def test_a_hybrid_trains_and_answers_with_the_retrieved_context():
    from tunewise.task import validate_task
    task = validate_task({"instruction": "x", "data": {"path": "d.jsonl", "input": "w", "target": "y"},
                          "knowledge": {"path": "k.jsonl"},
                          "arms": [{"type": "retrieval"}, {"type": "lora", "prompt": "retrieval"},
                                   {"type": "hybrid", "tuned": "lora", "prompt": "retrieval"}]})
    from tunewise.arms import build
    configs = {a.name or a.type: a for a in task.arms}
    tuned = build(task.arms[1], task, [], configs)
    assert type(tuned.prompter).__name__ == "Retrieval"
