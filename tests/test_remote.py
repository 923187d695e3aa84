"""The OpenAI-compatible backend against a real HTTP server on 127.0.0.1 with injected faults."""

import json
import os
import random
import signal
import subprocess
import sys
import time

import pytest

import tunewise
from tunewise.backends.base import GenParams, GenRequest, ScoreRequest
from tunewise.backends.openai import BackendError, OpenAIBackend
from tunewise.config import validate_task
from tunewise.store import Store
from tunewise.testing import FaultyServer

from conftest import oracle

SECRET = "sk-test-NEVER-STORE-THIS-12345"


def msgs(word):
    return [{"role": "system", "content": "Classify."}, {"role": "user", "content": f"Word: {word}"}]


def remote_task(url, tmp_path, words_csv, **extra):
    data = {"name": "remote", "instruction": "Classify the sentiment of the word.", "model": "remote",
            "data": {"path": str(words_csv), "input": "Word: {word}", "target": "label"},
            "endpoints": {"remote": {"base_url": url, "model": "test-model", "api_key_env": "TW_TEST_KEY",
                                     "concurrency": 4, "timeout_s": 0.5, "max_retries": 8, "backoff_s": 0.01}},
            "splits": {"train": 0.5, "dev": 0.0, "test": 0.5, "seed": 0},
            "consistency": {"samples": 3, "max_items": 5},
            "arms": [{"type": "zero_shot"}, {"type": "structured", "decoding": "constrained"}]}
    data.update(extra)
    return validate_task(data)


@pytest.fixture
def key(monkeypatch):
    monkeypatch.setenv("TW_TEST_KEY", SECRET)


FAULTS = ["429", "500", "timeout", "malformed", "drop"]


def test_every_fault_is_survived_with_correct_results(tmp_path, words_csv, key):
    with FaultyServer(oracle, timeout_sleep_s=1.0) as server:
        # the first requests meet every kind of fault, then one in four fails
        server.faults = lambda n, body: FAULTS[n - 1] if n <= len(FAULTS) else (FAULTS[n % 5] if n % 4 == 0 else None)
        result = tunewise.run(remote_task(server.url, tmp_path, words_csv), home=tmp_path / "h", progress=False)
        assert server.received > sum(server.answered.values())  # faults happened
    for summary in result.summaries.values():
        assert summary["metrics"]["accuracy"]["value"] == 1.0  # the oracle's answers, despite the faults
        assert summary["n"] == 10


def test_retry_after_is_honoured_and_retries_are_bounded():
    with FaultyServer(lambda m: "positive", retry_after="0.4") as server:
        server.faults = lambda n, body: "429" if n == 1 else None
        backend = OpenAIBackend(server.url, "m", backoff_s=0.0, max_retries=2)
        start = time.perf_counter()
        [gen] = backend.generate([GenRequest(msgs("x"), GenParams())])
        assert gen.text == "positive" and time.perf_counter() - start >= 0.4
        server.faults = lambda n, body: "500"
        with pytest.raises(BackendError, match="failed 3 times; last: HTTP 500"):
            backend.generate([GenRequest(msgs("y"), GenParams())])


def test_client_errors_are_not_retried():
    with FaultyServer() as server:
        backend = OpenAIBackend(server.url, "m", max_retries=5)
        server.faults = lambda n, body: "400"
        with pytest.raises(BackendError, match="HTTP 400"):
            backend.generate([GenRequest(msgs("x"), GenParams())])
        assert server.received == 1


def test_api_key_is_sent_but_never_stored(tmp_path, words_csv, key):
    with FaultyServer(oracle) as server:
        result = tunewise.run(remote_task(server.url, tmp_path, words_csv), home=tmp_path / "h", progress=False)
        assert all(h.get("Authorization") == f"Bearer {SECRET}" for h in server.headers_seen)
    for path in (tmp_path / "h").rglob("*"):
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path
    assert result.report_paths["html"].exists()


def test_missing_api_key_is_a_clear_error(tmp_path, words_csv, monkeypatch):
    monkeypatch.delenv("TW_TEST_KEY", raising=False)
    with FaultyServer(oracle) as server:
        with pytest.raises(tunewise.TunewiseError, match="TW_TEST_KEY"):
            tunewise.run(remote_task(server.url, tmp_path, words_csv), home=tmp_path / "h", progress=False)


def test_choice_scoring_uses_logprobs_or_falls_back_to_parsing():
    request = ScoreRequest(msgs("happy"), ("negative", "positive"))
    with FaultyServer(lambda m: "positive") as server:
        [scores] = OpenAIBackend(server.url, "m").score_choices([request])
        assert scores.logprobs == [-1e9, -0.1] and server.received == 1
    with FaultyServer(lambda m: "It is negative.", logprobs=False) as server:
        [scores] = OpenAIBackend(server.url, "m").score_choices([request])
        assert scores.best() == 0 and server.received == 2  # a logprob request, then a generation


def test_usage_is_estimated_with_the_tokenizer_when_absent(tiny_backend):
    with FaultyServer(lambda m: "positive word") as server:
        server.answer = lambda body, answer=server.answer: {k: v for k, v in answer(body).items() if k != "usage"}
        backend = OpenAIBackend(server.url, "m", tokenizer=tiny_backend.tokenizer)
        [gen] = backend.generate([GenRequest(msgs("x"), GenParams())])
    assert gen.output_tokens == len(tiny_backend.tokenizer("positive word", add_special_tokens=False)["input_ids"])
    assert gen.input_tokens > 0


def test_develop_reuses_answers_and_measure_draws_fresh_ones(tmp_path, words_csv, key):
    with FaultyServer(oracle) as server:
        task = remote_task(server.url, tmp_path, words_csv)
        tunewise.run(task, home=tmp_path / "h", progress=False)
        first = server.received
        tunewise.run(task, home=tmp_path / "h", progress=False)
        assert server.received == first  # develop: all from the cache
        measure = task.model_copy(update={"cache": "measure"})
        tunewise.run(measure, home=tmp_path / "h", progress=False)
        assert server.received == 2 * first  # measure: every request anew, samples included
    # the consistency samples are distinct requests (sample index in the key), never one cached answer
    seeds = {json.dumps(k) for k in server.answered}
    assert len(seeds) == len(server.answered)


def test_mixed_run_prices_each_arm_by_its_own_model(tmp_path, words_csv, tiny_model_dir, key):
    with FaultyServer(oracle) as server:
        task = remote_task(server.url, tmp_path, words_csv, arms=[
            {"type": "zero_shot", "decoding": "constrained"},
            {"type": "lora", "model": str(tiny_model_dir), "decoding": "constrained",
             "train": {"epochs": 1, "batch_size": 4}}],
            prices={"models": {"test-model": {"input_per_million": 5.0, "output_per_million": 15.0}},
                    "hardware_per_hour": 1.0})
        result = tunewise.run(task, home=tmp_path / "h", progress=False)
    report = json.loads(result.report_paths["json"].read_text())
    assert report["costs"]["zero_shot"]["basis"] == "tokens"
    assert report["costs"]["lora"]["basis"] == "seconds" and report["costs"]["lora"]["one_time"] > 0


def _saved_answers(home) -> int:
    import sqlite3
    path = home / "tunewise.db"
    if not path.exists():
        return 0
    db = sqlite3.connect(path)
    try:
        return db.execute("SELECT COUNT(*) FROM cache").fetchone()[0]
    except sqlite3.OperationalError:  # killed before the schema was written
        return 0
    finally:
        db.close()


KILL_TASK = """
name: killed
instruction: Classify the sentiment of the word.
model: remote
data: {{path: {data}, input: "Word: {{word}}", target: label}}
endpoints:
  remote: {{base_url: "{url}", model: m, concurrency: 4, timeout_s: 5, backoff_s: 0.01}}
splits: {{train: 0.0, dev: 0.0, test: 1.0, seed: 0}}
consistency: {{enabled: false}}
arms: [{{type: zero_shot}}, {{type: structured}}, {{type: zero_shot, name: scored, decoding: constrained}}]
"""


def test_killed_ten_times_resumes_to_the_same_results_without_resending(tmp_path):
    rows = [{"word": f"word{i}", "label": "positive" if i % 2 else "negative"} for i in range(300)]
    data = tmp_path / "words.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    responder = lambda m: "positive" if int(m[-1]["content"].split("word")[-1]) % 3 else "negative"  # noqa: E731
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    cmd = [sys.executable, "-m", "tunewise", "run", "--no-progress", "--home"]

    def run_to_end(server, home, kills):
        """Run, kill -9 at random moments, rerun, until done. Returns, after each kill, how many more
        answers the server has delivered than the client has saved."""
        task = tmp_path / f"task-{home.name}.yaml"
        task.write_text(KILL_TASK.format(data=data, url=server.url))
        rng = random.Random(7)
        unsaved = []
        while True:
            proc = subprocess.Popen(cmd + [str(home), str(task)], env=env, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.PIPE, text=True)
            if len(unsaved) < kills:
                time.sleep(rng.uniform(0.3, 1.5))
                if proc.poll() is None:
                    proc.send_signal(signal.SIGKILL)
                    proc.wait()
                    time.sleep(0.1)  # let the server finish writing to the dead connections
                    saved = _saved_answers(home)
                    unsaved.append(sum(server.answered.values()) - saved)
                    continue
            assert proc.wait(timeout=120) == 0, proc.stderr.read()
            return unsaved

    with FaultyServer(responder, delay_s=0.04) as reference_server:
        run_to_end(reference_server, tmp_path / "ref", kills=0)
    with FaultyServer(responder, delay_s=0.04) as server:
        unsaved = run_to_end(server, tmp_path / "killed", kills=10)
        answered = server.answered
    assert len(unsaved) == 10  # the run was long enough to be interrupted ten times
    # `unsaved` is cumulative: answers delivered minus answers saved, after each kill
    lost = [b - a for a, b in zip([0] + unsaved, unsaved)]
    assert all(0 <= n <= 4 for n in lost), lost  # at most the requests in flight (concurrency 4) at a kill
    resent = sum(answered.values()) - len(answered)
    # every request sent twice is one whose answer was lost in flight; no saved answer was asked again
    assert resent == unsaved[-1]
    assert len(answered) == sum(reference_server.answered.values())

    def results(home):
        store = Store(home / "tunewise.db")
        run = store.list_runs()
        assert len(run) == 1 and run[0]["status"] == "done"
        return {a["name"]: [(r["example_id"], r["raw"], r["parsed"]) for r in store.predictions(run[0]["id"], a["name"])]
                for a in store.arms(run[0]["id"])}
    assert results(tmp_path / "killed") == results(tmp_path / "ref")
