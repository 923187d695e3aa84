"""serve: the OpenAI-compatible server answers as the arm was measured, batches, refuses bad requests."""

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

pytest.importorskip("fastapi")

from tunewise.backends.base import GenParams, GenRequest
from tunewise.backends.openai import OpenAIBackend
from tunewise.measure.evaluate import summarize
from tunewise.ship.bundle import Bundle
from tunewise.ship.serve import ServeSettings, create_app, serving
from tunewise.task.parsing import parse_answer

KEY = "tw-serve-test-key"


def served_rows(url: str, name: str, rows: list[dict], task, concurrency: int = 8) -> list[dict]:
    """The test split answered by the server through tunewise's own OpenAI-compatible backend, as stored rows."""
    backend = OpenAIBackend(url, name, concurrency=concurrency, max_retries=0, api_key_env="TW_SERVE_KEY")
    gen = task.generation
    params = GenParams(gen.max_tokens, gen.temperature, tuple(gen.stop), gen.seed)
    answers = backend.generate([GenRequest([{"role": "user", "content": r["input"]}], params) for r in rows])
    labels = sorted({r["target"] for r in rows})
    return [dict(r, raw=a.text, parsed=parse_answer(task.type, a.text, labels)) for r, a in zip(rows, answers)]


@pytest.mark.parametrize("arm", [None, "zero_shot", "lora", "hybrid"])  # recommended (structured), prompt, tuned
def test_round_trip_served_metric_equals_the_stored_one(tiny_run, arm, monkeypatch):
    monkeypatch.setenv("TW_SERVE_KEY", KEY)
    bundle = Bundle.load(tiny_run.bundle(arm), device="cpu")
    name = bundle.manifest.arm
    rows = tiny_run.rows(name)
    with serving(bundle, ServeSettings(port=0, api_key=KEY)) as url:
        served = served_rows(url, bundle.name, rows, tiny_run.task)
    assert [r["raw"] for r in served] == [r["raw"] for r in rows]
    metrics = tiny_run.task.metric_names()
    seed = tiny_run.task.splits.seed
    assert summarize(served, metrics, seed)["metrics"] == tiny_run.summary(name)["metrics"]  # values and intervals


@pytest.fixture(scope="module")
def client(tiny_run):
    from fastapi.testclient import TestClient
    bundle = Bundle.load(tiny_run.bundle("structured"), device="cpu")
    settings = ServeSettings(api_key=KEY, max_body_bytes=4000, max_messages=4, max_tokens=64)
    with TestClient(create_app(bundle, settings), headers={"Authorization": f"Bearer {KEY}"}) as client:
        client.model = bundle.name
        yield client


def chat(client, body=None, **kw):
    body = {"model": client.model, "messages": [{"role": "user", "content": "Word: happy1"}], **(body or {})}
    return client.post("/v1/chat/completions", json=body, **kw)


def test_chat_completions_models_and_health(client, tiny_run):
    stored, other = tiny_run.rows("structured")[:2]
    response = chat(client, {"logprobs": True, "top_logprobs": 2,
                             "messages": [{"role": "system", "content": "ignored: the arm's prompt replaces it"},
                                          {"role": "user", "content": [{"type": "text", "text": stored["input"]}]}]})
    assert response.status_code == 200
    data = response.json()
    choice = data["choices"][0]
    assert choice["message"] == {"role": "assistant", "content": stored["raw"]}
    assert choice["tunewise"]["parsed"] == stored["parsed"]
    assert [t["token"] for t in choice["logprobs"]["content"][0]["top_logprobs"]][0] == stored["parsed"]
    assert data["object"] == "chat.completion" and data["usage"]["prompt_tokens"] > 0
    prompts = [stored["input"], other["input"]]
    completion = client.post("/v1/completions", json={"model": client.model, "prompt": prompts})
    assert completion.status_code == 200
    assert [c["text"] for c in completion.json()["choices"]] == [stored["raw"], other["raw"]]
    assert client.get("/v1/models").json()["data"][0]["id"] == client.model
    assert client.get("/health").json()["status"] == "ok"


def too_big(client):
    return chat(client, {"messages": [{"role": "user", "content": "x" * 5000}]})


def chunked(client):  # no Content-Length: the limit applies as the body streams in
    def body():
        for _ in range(10):
            yield b" " * 1000
    return client.post("/v1/chat/completions", content=body())


BAD = {
    "malformed JSON": (lambda c: c.post("/v1/chat/completions", content=b'{"model": ', headers={
        "Content-Type": "application/json"}), 400, "invalid_json"),
    "not an object": (lambda c: c.post("/v1/chat/completions", json=[1, 2]), 400, "invalid_json"),
    "unknown model": (lambda c: chat(c, {"model": "gpt-4"}), 404, "model_not_found"),
    "oversized body": (too_big, 413, "request_too_large"),
    "oversized chunked body": (chunked, 413, "request_too_large"),
    "wrong token": (lambda c: chat(c, headers={"Authorization": "Bearer nope"}), 401, "invalid_api_key"),
    "no token": (lambda c: chat(c, headers={"Authorization": ""}), 401, None),  # "You didn't provide...", as OpenAI
    "max_tokens 10^9": (lambda c: chat(c, {"max_tokens": 10 ** 9}), 400, None),
    "empty messages": (lambda c: chat(c, {"messages": []}), 400, None),
    "too many messages": (lambda c: chat(c, {"messages": [{"role": "user", "content": "a"}] * 5}), 400, None),
    "last message not the user's": (lambda c: chat(c, {"messages": [{"role": "assistant", "content": "a"}]}), 400,
                                    None),
    "missing messages": (lambda c: c.post("/v1/chat/completions", json={"model": c.model}), 400, None),
    "unknown argument": (lambda c: chat(c, {"best_of": 3}), 400, None),
    "stream_options without stream": (lambda c: chat(c, {"stream_options": {"include_usage": True}}), 400, None),
    "wrong type": (lambda c: chat(c, {"temperature": "hot"}), 400, None),
    "empty prompt": (lambda c: c.post("/v1/completions", json={"model": c.model, "prompt": []}), 400, None),
    "unknown path": (lambda c: c.get("/v1/nothing"), 404, "not_found"),
    "wrong method": (lambda c: c.get("/v1/chat/completions"), 405, "method_not_allowed"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_requests_get_openai_errors_and_the_server_goes_on(client, case):
    send, status, code = BAD[case]
    response = send(client)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["message"] and error["type"] and error["code"] == code
    assert chat(client).status_code == 200  # still serving


def test_an_input_longer_than_the_model_takes_is_refused_alone(client, tiny_run):
    long = chat(client, {"messages": [{"role": "user", "content": "happy " * 600}]})  # within the body limit
    assert long.status_code == 400 and long.json()["error"]["code"] == "context_length_exceeded"
    from tunewise.ship.serve import ContextTooLong, Job, answer_jobs
    bundle = Bundle.load(tiny_run.bundle("structured"), device="cpu")
    good = tiny_run.rows("structured")[0]
    results = answer_jobs(bundle, [Job("happy " * 600, {}), Job(good["input"], {})])
    assert isinstance(results[0], ContextTooLong) and results[1].parsed == good["parsed"]


def test_concurrent_requests_are_batched(tiny_run):
    import httpx
    bundle = Bundle.load(tiny_run.bundle("zero_shot"), device="cpu")
    rows = tiny_run.rows("zero_shot")
    app_settings = ServeSettings(port=0, batch_window_ms=50)
    with serving(bundle, app_settings) as url:
        def ask(row):
            body = {"model": bundle.name, "messages": [{"role": "user", "content": row["input"]}]}
            return httpx.post(f"{url}/chat/completions", json=body, timeout=60).json()
        with ThreadPoolExecutor(len(rows)) as pool:
            answers = list(pool.map(ask, rows))
        health = httpx.get(url.removesuffix("/v1") + "/health").json()
    assert [a["choices"][0]["message"]["content"] for a in answers] == [r["raw"] for r in rows]
    assert health["jobs"] == len(rows) and health["batches"] < len(rows) / 2


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_sigterm_answers_the_requests_in_flight_then_exits_cleanly(tiny_run, tmp_path):
    import httpx
    port = free_port()
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path), HF_HUB_OFFLINE="1")
    bundle = tiny_run.bundle("zero_shot")
    server = subprocess.Popen([sys.executable, "-m", "tunewise", "serve", str(bundle), "--port", str(port),
                               "--batch-window-ms", "300", "--device", "cpu"],
                              env=env, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/health").status_code == 200:
                    break
            except httpx.TransportError:
                assert time.monotonic() < deadline and server.poll() is None, server.stderr.read()
                time.sleep(0.2)
        answers = []
        name = json.loads((bundle / "manifest.json").read_text())["name"]
        body = {"model": name, "messages": [{"role": "user", "content": "Word: happy1"}]}
        asking = threading.Thread(target=lambda: answers.append(httpx.post(f"{url}/v1/chat/completions", json=body,
                                                                           timeout=60)))
        asking.start()
        time.sleep(0.1)  # the request waits in the 300 ms batch window when the signal comes
        server.send_signal(signal.SIGTERM)
        asking.join()
        assert server.wait(timeout=30) == 0
    finally:
        if server.poll() is None:
            server.kill()
    assert answers[0].status_code == 200
    stderr = server.stderr.read()
    assert "serving" in stderr and "stopped" in stderr and "Traceback" not in stderr


@pytest.mark.parametrize("window", ["nan", "inf", "-1"])
def test_a_batch_window_that_is_not_a_finite_number_is_refused(tiny_run, window):
    from click.testing import CliRunner

    from tunewise.cli import main
    result = CliRunner().invoke(main, ["serve", str(tiny_run.bundle("structured")), "--batch-window-ms", window])
    assert result.exit_code == 2 and "--batch-window-ms" in result.output and "Traceback" not in result.output
