"""The OpenAI-compatible backend against a real HTTP server on 127.0.0.1 with injected faults."""

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time

import pytest

import tunewise
from conftest import oracle
from tunewise.backends.base import GenParams, GenRequest, ScoreRequest
from tunewise.backends.openai import BackendError, OpenAIBackend
from tunewise.store.sqlite import Store
from tunewise.task import validate_task
from tunewise.testing import FaultyServer

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


def test_interrupt_finishes_the_requests_in_flight_then_stops():
    before = signal.getsignal(signal.SIGINT)
    with FaultyServer(lambda m: "positive", delay_s=0.5) as server:
        backend = OpenAIBackend(server.url, "m", concurrency=2)
        saved = []
        threading.Timer(0.2, os.kill, (os.getpid(), signal.SIGINT)).start()
        with pytest.raises(KeyboardInterrupt):
            backend.generate([GenRequest(msgs(f"w{i}"), GenParams()) for i in range(10)],
                             on_result=lambda i, answer: saved.append((i, answer.text)))
        assert sorted(saved) == [(0, "positive"), (1, "positive")]  # both in flight, answered and handed over
        assert server.received == 2  # and nothing more was sent
    assert signal.getsignal(signal.SIGINT) is before


def test_a_failing_request_lets_the_others_in_flight_finish():
    with FaultyServer(lambda m: "positive") as server:
        server.faults = lambda n, body: "400" if "w3" in body["messages"][-1]["content"] else None  # at once
        server.answer = lambda body, answer=server.answer: time.sleep(0.3) or answer(body)  # the others: 0.3 s
        saved = []
        with pytest.raises(BackendError, match="HTTP 400"):
            OpenAIBackend(server.url, "m", concurrency=4).generate(
                [GenRequest(msgs(f"w{i}"), GenParams()) for i in range(10)], on_result=lambda i, a: saved.append(i))
        assert sorted(saved) == [0, 1, 2] and server.received == 4  # answered and handed over; no more sent


def test_second_interrupt_stops_at_once():
    with FaultyServer(lambda m: "positive", delay_s=3.0) as server:
        backend = OpenAIBackend(server.url, "m", concurrency=2)
        saved = []
        for at in (0.2, 0.4):
            threading.Timer(at, os.kill, (os.getpid(), signal.SIGINT)).start()
        start = time.perf_counter()
        with pytest.raises(KeyboardInterrupt):
            backend.generate([GenRequest(msgs(f"w{i}"), GenParams()) for i in range(10)],
                             on_result=lambda i, answer: saved.append(i))
        assert time.perf_counter() - start < 2.0 and saved == []  # did not wait for the 3-s answers


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


def _kill_and_resume(tmp_path, sig):
    """Run the task, kill it with `sig` at ten random moments, rerun each time until it finishes; also run it
    once uninterrupted. Returns (reference server, server, unsaved after each kill, results of each run)."""
    rows = [{"word": f"word{i}", "label": "positive" if i % 2 else "negative"} for i in range(300)]
    data = tmp_path / "words.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    responder = lambda m: "positive" if int(m[-1]["content"].split("word")[-1]) % 3 else "negative"  # noqa: E731
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    cmd = [sys.executable, "-m", "tunewise", "run", "--no-progress", "--home"]

    def run_to_end(server, home, kills):
        """Returns, after each kill, how many more answers the server has delivered than the client has saved."""
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
                    proc.send_signal(sig)
                    code = proc.wait(timeout=60)
                    # SIGTERM: the CLI's exit after an interrupt (128 + 15), or the default action before it started
                    assert code in ((-signal.SIGKILL,) if sig == signal.SIGKILL else (143, -signal.SIGTERM)), \
                        proc.stderr.read()
                    time.sleep(0.1)  # let the server finish writing to dead connections
                    unsaved.append(sum(server.answered.values()) - _saved_answers(home))
                    continue
            assert proc.wait(timeout=120) == 0, proc.stderr.read()
            return unsaved

    def results(home):
        store = Store(home / "tunewise.db")
        run = store.list_runs()
        assert len(run) == 1 and run[0]["status"] == "done"
        return {a["name"]: [(r["example_id"], r["raw"], r["parsed"]) for r in store.predictions(run[0]["id"], a["name"])]
                for a in store.arms(run[0]["id"])}

    with FaultyServer(responder, delay_s=0.04) as reference_server:
        run_to_end(reference_server, tmp_path / "ref", kills=0)
    with FaultyServer(responder, delay_s=0.04) as server:
        unsaved = run_to_end(server, tmp_path / "killed", kills=10)
    assert len(unsaved) == 10  # the run was long enough to be interrupted ten times
    assert results(tmp_path / "killed") == results(tmp_path / "ref")
    assert len(server.answered) == sum(reference_server.answered.values())  # every request answered
    return server, unsaved


def test_kill9_ten_times_resumes_to_the_same_results_resending_only_requests_in_flight(tmp_path):
    server, unsaved = _kill_and_resume(tmp_path, signal.SIGKILL)
    # `unsaved` is cumulative: answers delivered minus answers saved, after each kill
    lost = [b - a for a, b in zip([0] + unsaved, unsaved)]
    assert all(0 <= n <= 4 for n in lost), lost  # at most the requests in flight (concurrency 4) at a kill
    # every request sent twice is one whose answer was lost in flight; no saved answer was asked again
    assert sum(server.answered.values()) - len(server.answered) == unsaved[-1]


def test_sigterm_ten_times_resumes_without_sending_any_request_twice(tmp_path):
    server, unsaved = _kill_and_resume(tmp_path, signal.SIGTERM)
    assert unsaved == [0] * 10  # each stop waited for its requests in flight and saved their answers
    # counted at the server: every request arrived exactly once over the eleven processes
    assert server.received == len(server.answered) == sum(server.answered.values())


def test_ctrl_c_in_the_cli_waits_for_the_requests_in_flight_and_exits_130(tmp_path):
    rows = [{"word": f"word{i}", "label": "positive" if i % 2 else "negative"} for i in range(40)]
    data = tmp_path / "words.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with FaultyServer(lambda m: "positive", delay_s=1.0) as server:
        task = tmp_path / "task.yaml"
        task.write_text(KILL_TASK.format(data=data, url=server.url))
        proc = subprocess.Popen([sys.executable, "-m", "tunewise", "run", "--no-progress", "--home",
                                 str(tmp_path / "h"), str(task)], env=dict(os.environ, HF_HUB_OFFLINE="1"),
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 60
        while server.received < 4 and time.monotonic() < deadline:  # four requests in flight, none answered
            time.sleep(0.02)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 130
        stderr = proc.stderr.read()
        assert "finishing 4 request(s) in flight" in stderr and "run the same command again" in stderr
        assert server.received == 4 and _saved_answers(tmp_path / "h") == 4
