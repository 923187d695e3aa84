"""The run plan: its counts are the requests a run sends, unit by unit; budgets cut it or refuse the run."""

import pytest
import yaml

import tunewise
from conftest import oracle
from tunewise.backends.fake import FakeBackend
from tunewise.execution import executor as executor_module
from tunewise.execution.budget import BudgetError
from tunewise.execution.plan import PROBE_SIZES
from tunewise.execution.runner import make_plan
from tunewise.task import load_task

ARMS = [{"type": "zero_shot"},
        {"type": "structured", "decoding": "constrained", "calibrate": True},
        {"type": "few_shot", "k": 2},
        {"type": "few_shot", "name": "similar", "k": 2, "selection": "similar", "decoding": "constrained",
         "calibrate": True},
        {"type": "searched", "search": {"trials": 3, "dev_items": 4, "ks": [0, 2], "paraphrases": False}}]


class Counting(FakeBackend):
    """The fake model, counting what reaches it: requests and tokens."""

    def __init__(self):
        super().__init__(responder=oracle)
        self.tokens = 0

    def generate(self, requests, progress=None):
        out = super().generate(requests, progress)
        self.tokens += sum(g.input_tokens + g.output_tokens for g in out)
        return out

    def score_choices(self, requests, progress=None):
        out = super().score_choices(requests, progress)
        self.tokens += sum(s.input_tokens for s in out)
        return out


def _task(task_file, **changes):
    data = yaml.safe_load(task_file.read_text())
    data.update({"arms": ARMS, "splits": {"train": 0.4, "dev": 0.3, "test": 0.3, "seed": 1},
                 "consistency": {"samples": 3, "max_items": 4, "max_share": 1.0,
                                 "paraphrases": ["Say if the word is positive or negative.",
                                                 "Is this word positive or negative?"]}}, **changes)
    task_file.write_text(yaml.safe_dump(data))
    return load_task(task_file)


def _per_unit(monkeypatch, backend) -> dict[str, int]:
    """Requests reaching the model during each unit (units run one after another)."""
    seen, original = {}, executor_module.UnitRunner.evaluate
    last = [0]

    def evaluate(self, unit, arm):
        result = original(self, unit, arm)
        seen[unit.name] = backend.calls - last[0]
        last[0] = backend.calls
        return result
    monkeypatch.setattr(executor_module.UnitRunner, "evaluate", evaluate)
    return seen


def test_the_plans_counts_are_the_requests_a_run_sends(task_file, tmp_path, monkeypatch):
    task = _task(task_file)
    _, plan = make_plan(task, backend_factory=lambda m: Counting(), log=lambda m: None)
    planned: dict[str, int] = {}
    bounds = set()
    for p in plan.parts:
        if p.part not in ("load", "probe"):
            planned[p.unit] = planned.get(p.unit, 0) + p.requests
            if p.bound:
                bounds.add(p.unit)
    backend = Counting()
    sent = _per_unit(monkeypatch, backend)
    tunewise.run(task, home=tmp_path / "home", progress=False, backend_factory=lambda m: backend, log=lambda m: None)
    assert set(sent) == set(planned) == {"zero_shot", "structured", "similar", "few_shot", "searched"}
    for unit, n in sent.items():
        if unit in bounds:  # a search: identical trials are answered from the cache
            assert 0 < n <= planned[unit], (unit, n, planned[unit])
        else:
            assert n == planned[unit], (unit, n, planned[unit])
    assert bounds == {"searched"}
    assert plan.total_line().startswith("total: about ")


def test_a_run_stores_its_plan_and_the_report_sets_estimates_beside_actual_times(task_file, tmp_path):
    task = _task(task_file)
    task, plan = make_plan(task, backend_factory=lambda m: Counting(), log=lambda m: None)
    result = tunewise.run(task, home=tmp_path / "home", progress=False, backend_factory=lambda m: Counting(),
                          log=lambda m: None, plan=plan)
    rows = {r.unit: r for r in result.report.plan_check.rows}
    assert set(rows) >= {"zero_shot", "searched"}
    assert all(r.actual_s is not None and r.estimated_s >= 0 for u, r in rows.items() if not u.startswith("load "))
    assert rows["load fake"].actual_s is None  # measured inside the first unit that asks the model
    assert result.report.plan_check.estimated_s == pytest.approx(plan.seconds)


def _priced(task_file, budget=None):
    arms = [*ARMS[:-1], {"type": "searched", "search": {"trials": 8, "dev_items": 4, "ks": [0, 2]}}]
    extra = {"arms": arms, "prices": {"models": {"fake": {"input_per_million": 1e6, "output_per_million": 1e6}},
                        "currency": "USD"}}  # a token costs 1: the plan's money is its tokens
    if budget:
        extra["budget"] = budget
    return _task(task_file, **extra)


def test_a_budget_that_cannot_fit_is_refused_before_any_model_work(task_file, tmp_path):
    task = _priced(task_file, {"money": 5})
    backend = Counting()
    with pytest.raises(BudgetError) as err:
        tunewise.run(task, home=tmp_path / "home", progress=False, backend_factory=lambda m: backend,
                     log=lambda m: None)
    assert "even the smallest plan needs" in str(err.value) and err.value.field == "budget"
    assert err.value.exit_code == 2
    # nothing stored, nothing trained or answered: only the plan's probe asked a few train items per prompt shape
    assert not (tmp_path / "home" / "tunewise.db").exists()
    assert backend.calls <= sum(PROBE_SIZES) * 6  # six prompt shapes


def test_a_budget_that_fits_is_cut_in_the_stated_order_and_met(task_file, tmp_path):
    full = make_plan(_priced(task_file), backend_factory=lambda m: Counting(),
                     log=lambda m: None)[1]
    budget = full.money * 0.8
    task = _priced(task_file, {"money": budget})
    cut, plan = make_plan(task, backend_factory=lambda m: Counting(), log=lambda m: None)
    assert plan.cuts and plan.cuts[0].startswith("searched: search trials")  # the searches are cut first
    assert plan.money <= budget
    backend = Counting()
    logged = []
    tunewise.run(task, home=tmp_path / "home", progress=False, backend_factory=lambda m: backend, log=logged.append)
    assert [line for line in logged if line.startswith("budget: cut ")]
    assert backend.tokens <= budget  # a token costs 1 here


def test_the_reports_show_the_plan_against_the_run(task_file, tmp_path):
    from tunewise.reports.html import render_html
    from tunewise.reports.markdown import to_markdown
    task, plan = make_plan(_task(task_file), backend_factory=lambda m: Counting(),
                           log=lambda m: None)
    result = tunewise.run(task, home=tmp_path / "home", progress=False, backend_factory=lambda m: Counting(),
                          log=lambda m: None, plan=plan)
    assert "## The plan against the run" in to_markdown(result.report)
    assert 'id="plan-check"' in render_html(result.report)


def test_the_plan_command_prints_a_total_scripts_can_read(task_file, tmp_path):
    from click.testing import CliRunner

    from tunewise.cli import main
    _task(task_file)
    out = CliRunner().invoke(main, ["plan", str(task_file)])
    assert out.exit_code == 0, out.output
    assert out.output.strip().splitlines()[-1].startswith("total: about ")
    out = CliRunner().invoke(main, ["run", str(task_file), "--home", str(tmp_path / "home"), "--plan",
                                    "--no-progress"], input="n\n")
    assert out.exit_code == 0 and "nothing run" in out.output and "total: about " in out.output
    out = CliRunner().invoke(main, ["plan", str(task_file), "--budget", "soon"])
    assert out.exit_code == 2 and "minutes=N" in out.output


@pytest.mark.parametrize("budget, words", [({}, "gives no limit"), ({"minutes": -1}, "greater than 0"),
                                           ({"hours": 2}, "unknown key")])
def test_a_bad_budget_is_one_line_naming_its_field(task_file, budget, words):
    from tunewise.errors import TaskFileError
    with pytest.raises(TaskFileError) as err:
        _task(task_file, budget=budget)
    assert "budget" in str(err.value) and words in str(err.value) and "\n" not in str(err.value)


def test_a_rate_charges_each_batch_its_fixed_cost_and_each_request_its_own():
    from tunewise.execution.plan import Rate
    rate = Rate(per_batch=1.0, per_item=0.1, batch=10, output_tokens=2)
    assert rate.seconds(25) == pytest.approx(3 * 1.0 + 2.5)           # batches of 10, 10 and 5
    assert rate.seconds(25, calls=5) == pytest.approx(5 * 1.0 + 2.5)  # five calls of 5: a batch each
    assert rate.seconds(0) == 0
