"""The judge (issue 19), on the fake backend: rubric parsing, both orders for pairwise, caching, the raw
answers stored, costs, the bias guards, and agreement with human scores against a planted judge."""

from __future__ import annotations

import json

import pytest

from tunewise.backends import FakeBackend
from tunewise.execution.runner import run
from tunewise.measure.judge import pair_summary, parse_rubric, parse_winner, rubric_score, sign_test, spearman
from tunewise.store.sqlite import Store
from tunewise.task import Criterion, load_task

CLARITY = Criterion(name="clarity", description="clear to a beginner", scale=(1, 5))
EXAMPLES = Criterion(name="examples", description="concrete examples", scale=(0, 10))


def test_rubric_answers_are_read_from_json_or_text():
    raw = 'Sure. {"rationale": "Clear, one example.", "scores": {"clarity": 4, "examples": 5}}'
    assert parse_rubric(raw, [CLARITY, EXAMPLES]) == ({"clarity": 4, "examples": 5}, "Clear, one example.")
    assert parse_rubric("Clarity: 2\nExamples - 10/10\nGood overall.", [CLARITY, EXAMPLES])[0] == \
        {"clarity": 2, "examples": 10}
    assert rubric_score({"clarity": 4, "examples": 5}, [CLARITY, EXAMPLES]) == pytest.approx((0.75 + 0.5) / 2)


@pytest.mark.parametrize("raw", ['{"scores": {"clarity": 9}}', '{"scores": {}}', "I like it.",
                                 '{"scores": {"clarity": "great"}}'])
def test_a_rubric_answer_off_the_scale_or_without_a_score_is_unread(raw):
    scores, rationale = parse_rubric(raw, [CLARITY])
    assert scores is None and rubric_score(scores, [CLARITY]) is None and rationale


@pytest.mark.parametrize("raw, winner", [('{"winner": "2", "rationale": "x"}', "2"), ('{"winner": "Answer 1"}', "1"),
                                         ('{"winner": "tie"}', "tie"), ("Winner: answer 2.", "2"),
                                         ("Both are fine.", None)])
def test_pairwise_winner(raw, winner):
    assert parse_winner(raw) == winner


def test_statistics():
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert spearman([1, 2, 2, 3], [1, 3, 2, 4]) == pytest.approx(0.9486832980505139)  # scipy.stats.spearmanr
    assert spearman([1, 1, 1], [1, 2, 3]) is None
    assert sign_test(8, 0) == pytest.approx(2 / 2 ** 8)
    assert sign_test(3, 3) == 1.0
    items = [{"winner": w, "a_first": w, "b_first": w} for w in ["b"] * 6 + ["a"] * 2 + ["tie"] * 2]
    summary = pair_summary("a", "b", items)
    assert (summary["wins_b"], summary["wins_a"], summary["ties"], summary["win_rate_b"]) == (6, 2, 2, 0.7)
    assert summary["low"] < 0.7 < summary["high"]


TOPICS = ["gravity", "rain", "tides", "magnets", "clouds", "stars", "plants", "sound", "light", "heat"]
TASK = """\
name: explain
type: generation
data: {path: topics.jsonl, input: "{topic}"}
instruction: Write about the topic.
output_format: With an example.
model: fake
splits: {train: 0, dev: 0, test: 1.0}
consistency: {enabled: false}
prices: {models: {"fake:judge": {input_per_million: 1000, output_per_million: 2000}}}
judge:
  model: fake:judge
  rubric: [{name: clarity, description: "clear to a beginner", scale: [1, 5]}]
  pairs: [[zero_shot, structured]]
  human_score: human_score
  human_answer: answer
arms: [{type: zero_shot}, {type: structured}]
"""


def writer(messages):
    topic = messages[-1]["content"]
    if "Output format" in messages[0]["content"]:
        return f"{topic} is simple. For example, look around you."
    return f"{topic}."


def fair_judge(messages):
    """Scores an answer 5 with an example, else 2; prefers the answer with an example in either order;
    agrees with the human scores (planted: 1 to 5 by the answer's number of 'very')."""
    text = messages[-1]["content"]
    if "Answer 1" in text:
        first = text.split("<answer_1>")[1].split("</answer_1>")[0]
        second = text.split("<answer_2>")[1].split("</answer_2>")[0]
        if ("example" in first) == ("example" in second):
            return '{"rationale": "alike", "winner": "tie"}'
        return json.dumps({"rationale": "has an example", "winner": "1" if "example" in first else "2"})
    answer = text.split("<answer>")[1].split("</answer>")[0].strip()
    score = 1 + answer.count("very") if "very" in answer or answer.startswith("human") else \
        (5 if "example" in answer else 2)
    return json.dumps({"rationale": f"scored {score}", "scores": {"clarity": score}})


def first_position_judge(messages):
    """Always prefers the answer shown first: position bias, which asking both orders turns into ties."""
    if "Answer 1" in messages[-1]["content"]:
        return '{"rationale": "the first", "winner": "1"}'
    return fair_judge(messages)


def reversed_judge(messages):
    """Scores the human-scored answers in the reverse order of the people."""
    text = messages[-1]["content"]
    if "<answer>\nhuman" in text:
        answer = text.split("<answer>")[1].split("</answer>")[0]
        return json.dumps({"rationale": "reversed", "scores": {"clarity": 5 - answer.count("very")}})
    return fair_judge(messages)


def write(tmp_path, text=TASK):
    rows = []
    for i, topic in enumerate(TOPICS):
        row = {"topic": topic}
        if i < 5:  # people scored five answers: 1 to 5, by how many times they say "very"
            row.update(answer="human " + "very " * i + topic, human_score=i + 1)
        rows.append(row)
    (tmp_path / "topics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "task.yaml").write_text(text)
    return load_task(tmp_path / "task.yaml")


def run_with(tmp_path, judge, task=None, home="home"):
    backends = {}

    def make(model):
        backends[model] = FakeBackend(judge if model == "fake:judge" else writer, name=model)
        return backends[model]
    result = run(task or write(tmp_path), home=tmp_path / home, progress=False, backend_factory=make,
                 log=lambda message: None)
    return result, backends




def test_rubric_scores_are_stored_with_the_judges_raw_answer(tmp_path):
    result, _ = run_with(tmp_path, fair_judge)
    store = Store(result.store_path)
    try:
        rows = store.predictions(result.run_id, "structured")
    finally:
        store.close()
    judge = rows[0]["extra"]["judge"]
    assert json.loads(judge["raw"]) == {"rationale": "scored 5", "scores": {"clarity": 5}}
    assert judge["rationale"] == "scored 5" and judge["scores"] == {"clarity": 5}
    assert rows[0]["scores"]["rubric"] == 1.0
    (c,) = result.report.comparisons
    assert (c.metric, c.diff) == ("rubric", pytest.approx(0.75))
    usage = result.summaries["structured"]["judge"]
    assert usage["calls"] == 10 and usage["unparsed"] == 0 and usage["mean_words"] == pytest.approx(8.0)
    cost = result.report.costs["structured"].judge  # priced by the judge model's tokens
    assert cost == pytest.approx((usage["input_tokens"] * 1000 + usage["output_tokens"] * 2000) / 1e6)


def test_pairwise_asks_both_orders_and_a_position_biased_judge_ties(tmp_path):
    fair, backends = run_with(tmp_path, fair_judge, home="fair")
    (pair,) = fair.report.judge["pairs"]
    assert (pair["wins_b"], pair["wins_a"], pair["ties"], pair["order_disagreements"]) == (10, 0, 0, 0)
    assert pair["p_value"] == pytest.approx(2 / 2 ** 10)
    assert pair["usage"]["calls"] == 20  # each item asked twice, once in each order
    assert [i["a_first"] == i["b_first"] == "structured" for i in pair["items"]] == [True] * 10
    biased, _ = run_with(tmp_path, first_position_judge, home="biased")
    (pair,) = biased.report.judge["pairs"]
    assert (pair["wins_b"], pair["wins_a"], pair["ties"], pair["order_disagreements"]) == (0, 0, 10, 10)
    assert pair["win_rate_b"] == 0.5 and pair["p_value"] == 1.0
    assert all(len(i["raw"]) == 2 for i in pair["items"])  # both raw answers kept


def test_a_rerun_asks_the_judge_nothing_twice(tmp_path):
    task = write(tmp_path)
    first, backends = run_with(tmp_path, fair_judge, task=task)
    assert backends["fake:judge"].calls == 2 * 10 + 20 + 5  # rubric per arm, pairs in both orders, human items
    second, backends = run_with(tmp_path, fair_judge, task=task)
    assert backends["fake:judge"].calls == 0
    assert second.summaries["structured"]["judge"]["cached"] == 10
    assert second.report.judge["pairs"][0]["wins_b"] == 10


def test_agreement_with_human_scores_against_a_planted_judge(tmp_path):
    good, _ = run_with(tmp_path, fair_judge, home="good")
    agreement = good.report.judge["agreement"]
    assert (agreement["n"], agreement["spearman"], agreement["trusted"]) == (5, pytest.approx(1.0), True)
    assert [i["human"] for i in agreement["items"]] == [1, 2, 3, 4, 5]
    assert not any("human scores" in w for w in good.report.warnings)
    bad, _ = run_with(tmp_path, reversed_judge, home="bad")
    agreement = bad.report.judge["agreement"]
    assert agreement["spearman"] == pytest.approx(-1.0) and not agreement["trusted"]
    assert any("rank correlation with the 5 human scores is -1.00" in w for w in bad.report.warnings)
    from tunewise.reports.markdown import to_markdown
    assert "Spearman -1.00 (needed 0.5): NOT trusted" in to_markdown(bad.report)


def test_self_preference_and_verbosity_are_warned(tmp_path):
    task = write(tmp_path, TASK.replace("model: fake:judge", "model: fake"))  # the judge judges its own answers

    def long_is_good(messages):
        text = messages[-1]["content"]
        if "<answer>" in text:
            answer = text.split("<answer>")[1].split("</answer>")[0]
            return json.dumps({"scores": {"clarity": min(5, max(1, len(answer.split()) - 10))}})
        return fair_judge(messages) if "Answer 1" in text else writer(messages) + " really" * len(text)
    result = run(task, home=tmp_path / "home", progress=False, log=lambda message: None,
                 backend_factory=lambda model: FakeBackend(long_is_good, name=model))
    warnings = " ".join(result.report.warnings)
    assert "the judge 'fake' is also the model of arm(s) zero_shot, structured" in warnings
    assert "scores rise with the answers' length" in warnings


def test_a_human_score_that_is_not_a_number_names_its_line(tmp_path):
    write(tmp_path)
    path = tmp_path / "topics.jsonl"
    lines = path.read_text().splitlines()
    lines[2] = json.dumps({"topic": "tides", "answer": "x", "human_score": "good"})
    path.write_text("\n".join(lines) + "\n")
    from click.testing import CliRunner

    from tunewise.cli import main
    result = CliRunner().invoke(main, ["run", str(tmp_path / "task.yaml"), "--no-progress", "--home",
                                       str(tmp_path / "home")])
    assert result.exit_code == 2
    assert result.output.strip().splitlines()[-1].endswith("topics.jsonl:3: human_score: human score 'good' is not "
                                                           "a number")
