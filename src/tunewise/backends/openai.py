"""Any server that speaks OpenAI's chat-completions API: OpenAI, vLLM, Ollama, llama.cpp's server, LiteLLM.

Requests run concurrently (bounded), each with a timeout; 429, 5xx, time-outs, dropped connections and
malformed bodies are retried with exponential backoff and jitter, honouring Retry-After. The API key is
read from the environment variable the task names and is never stored.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import random
import signal
import ssl
import threading
import time
from typing import Any, Callable

from ..errors import Interrupted, RunError, TunewiseError
from ..task.parsing import parse_label
from .base import ChoiceScores, Generation, GenRequest, Message, Progress, ScoreRequest, finish_text

OnResult = Callable[[int, Any], None]  # (request index, result) as soon as one finishes
log = logging.getLogger(__name__)
RETRY_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}


class BackendError(RunError):
    """The server kept failing, or refused the request (a failure at run time: exit code 1)."""


class OpenAIBackend:
    def __init__(self, base_url: str, model: str, *, api_key_env: str | None = None, concurrency: int = 8,
                 timeout_s: float = 60.0, max_retries: int = 6, backoff_s: float = 0.5, max_backoff_s: float = 30.0,
                 logprobs: bool = True, tokenizer: Any = None, seed: int = 0):
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.model_key = f"openai:{self.base_url}|{model}"
        self.api_key_env = api_key_env
        self.concurrency, self.timeout_s, self.max_retries = concurrency, timeout_s, max_retries
        self.backoff_s, self.max_backoff_s = backoff_s, max_backoff_s
        self.logprobs = logprobs  # try choice scoring through logprobs; falls back when the server lacks them
        self.tokenizer = tokenizer  # estimates tokens when a response has no usage
        self.rng = random.Random(seed)
        self.stats = {"sent": 0, "retried": 0}

    # -- protocol ---------------------------------------------------------------
    def generate(self, requests: list[GenRequest], progress: Progress | None = None,
                 on_result: OnResult | None = None) -> list[Generation]:
        return _run(self._all(requests, self._generate_one, progress, on_result))

    def score_choices(self, requests: list[ScoreRequest], progress: Progress | None = None,
                      on_result: OnResult | None = None) -> list[ChoiceScores]:
        return _run(self._all(requests, self._score_one, progress, on_result))

    async def _all(self, requests, one, progress, on_result):
        """C workers, each with its own one-connection client, take requests from a queue.

        One shared httpx pool of C connections spends time quadratic in C assigning requests to
        connections (measured: 53 requests/s at C=64); one connection per client keeps that constant.
        Ctrl-C, SIGTERM or a request that fails for good stops the workers taking new requests; those in
        flight finish (and reach on_result) before KeyboardInterrupt or the error is raised, so a resumed
        run never sends them again.
        """
        import httpx
        queue: asyncio.Queue[int] = asyncio.Queue()
        for i in range(len(requests)):
            queue.put_nowait(i)
        results: list[Any] = [None] * len(requests)
        headers = self._headers()
        tls = ssl.create_default_context()  # loading the CA bundle takes ~30 ms: once, not per worker

        async def worker():
            limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
            async with httpx.AsyncClient(timeout=self.timeout_s, limits=limits, headers=headers,
                                         verify=tls) as client:
                while not queue.empty() and not stop.halted:
                    i = queue.get_nowait()
                    try:
                        results[i] = await one(client, requests[i])
                    except Exception:
                        stop.halted = True  # the others finish (and hand over) what they have in flight
                        raise
                    if on_result:
                        on_result(i, results[i])
                    if progress:
                        progress(1)
        with _StopOnSignal() as stop:  # installed before the first request is sent
            workers = [asyncio.ensure_future(worker()) for _ in range(min(self.concurrency, len(requests)))]
            stop.tasks = workers
            outcomes = await asyncio.gather(*workers, return_exceptions=True)
        failures = [o for o in outcomes if isinstance(o, BaseException)]
        if stop.signum is not None or any(isinstance(f, asyncio.CancelledError) for f in failures):
            raise Interrupted(stop.signum or signal.SIGINT)
        if failures:
            raise failures[0]
        return results

    def _headers(self) -> dict[str, str]:
        if not self.api_key_env:
            return {}
        key = os.environ.get(self.api_key_env)
        if not key:
            raise TunewiseError(f"the environment variable {self.api_key_env} (the API key) is not set",
                                field="api_key_env")
        return {"Authorization": f"Bearer {key}"}

    # -- one request ------------------------------------------------------------
    async def _generate_one(self, client, request: GenRequest) -> Generation:
        params = request.params
        body = {"model": self.model, "messages": list(request.messages), "max_tokens": params.max_tokens,
                "temperature": params.temperature, "seed": params.seed * 1_000_003 + request.sample}
        if params.stop:
            body["stop"] = list(params.stop)
        start = time.perf_counter()
        data = await self._post(client, body)
        latency = time.perf_counter() - start
        text = finish_text(_content(data), params)
        tokens_in, tokens_out = self._usage(data, request.messages, text)
        return Generation(text, tokens_in, tokens_out, latency)

    async def _score_one(self, client, request: ScoreRequest) -> ChoiceScores:
        body = {"model": self.model, "messages": list(request.messages), "max_tokens": 1, "temperature": 0.0}
        if self.logprobs:
            body.update(logprobs=True, top_logprobs=20)
        start = time.perf_counter()
        data = await self._post(client, body)
        scores = _choice_logprobs(data, request.choices) if self.logprobs else None
        if scores is None:  # no logprobs offered: generate an answer and parse it
            body = {"model": self.model, "messages": list(request.messages), "max_tokens": 16, "temperature": 0.0}
            data = await self._post(client, body)
            label = parse_label(_content(data), list(request.choices))
            scores = [0.0 if c == label else -1e9 for c in request.choices]
        tokens_in, tokens_out = self._usage(data, request.messages, _content(data))
        return ChoiceScores(scores, tokens_in, tokens_out, time.perf_counter() - start)

    async def _post(self, client, body: dict) -> dict:
        import httpx
        url = f"{self.base_url}/chat/completions"
        last = "no attempt"
        for attempt in range(self.max_retries + 1):
            self.stats["sent"] += 1
            retry_after = None
            try:
                response = await client.post(url, json=body)
            except (httpx.UnsupportedProtocol, httpx.InvalidURL) as err:  # retrying cannot mend the URL
                raise BackendError(f"{url} is not a URL a request can go to ({err}); check base_url",
                                   field="base_url") from None
            except (httpx.TimeoutException, httpx.TransportError) as err:
                last = f"{type(err).__name__}: {err}".strip(": ")
            else:
                if response.status_code in RETRY_STATUS:
                    last = f"HTTP {response.status_code}"
                    retry_after = _retry_after(response.headers.get("retry-after"))
                elif response.status_code >= 400:
                    raise BackendError(f"{url} answered HTTP {response.status_code}: {response.text[:200]}")
                else:
                    try:
                        data = response.json()
                        _content(data)
                        return data
                    except (ValueError, KeyError, IndexError, TypeError):
                        last = "malformed response body"
            if attempt < self.max_retries:
                self.stats["retried"] += 1
                await asyncio.sleep(self._delay(attempt, retry_after))
        raise BackendError(f"{url} failed {self.max_retries + 1} times; last: {last}")

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        """Exponential backoff with full jitter; a server's Retry-After wins when it asks for longer."""
        backoff = self.rng.uniform(0, min(self.max_backoff_s, self.backoff_s * 2 ** attempt))
        return max(backoff, retry_after) if retry_after is not None else backoff

    def _usage(self, data: dict, messages: list[Message], text: str) -> tuple[int, int]:
        usage = data.get("usage") or {}
        if "prompt_tokens" in usage and "completion_tokens" in usage:
            return int(usage["prompt_tokens"]), int(usage["completion_tokens"])
        return self._estimate(messages), self._count(text)

    def _count(self, text: str) -> int:
        if self.tokenizer is not None:
            return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])
        return max(1, math.ceil(len(text) / 4)) if text else 0  # ~4 characters a token, when nothing better

    def count_tokens(self, messages: list[Message]) -> int:
        """The prompt's tokens as this client counts them (the server's own count comes with its answer)."""
        return self._estimate(messages)

    def _estimate(self, messages: list[Message]) -> int:
        return sum(self._count(m["content"]) + 4 for m in messages)  # a few tokens of chat markup per turn


def _content(data: dict) -> str:
    content = data["choices"][0]["message"]["content"]
    if content is None:
        return ""
    if not isinstance(content, str):
        raise TypeError("content is not text")
    return content


def _choice_logprobs(data: dict, choices: tuple[str, ...]) -> list[float] | None:
    """Each choice's log-probability from the first answer token's top alternatives, or None if absent.

    A choice is matched by the top token that begins it (case and leading space ignored), which is exact
    for labels whose first tokens differ.
    """
    try:
        top = data["choices"][0]["logprobs"]["content"][0]["top_logprobs"]
    except (KeyError, IndexError, TypeError):
        return None
    if not top:
        return None
    scores = []
    for choice in choices:
        wanted = choice.strip().lower()
        matches = [t["logprob"] for t in top if t["token"].strip() and wanted.startswith(t["token"].strip().lower())]
        scores.append(max(matches) if matches else -1e9)
    return scores if any(s > -1e9 for s in scores) else None


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        from email.utils import parsedate_to_datetime
        try:
            return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
        except (TypeError, ValueError):
            return None


class _StopOnSignal:
    """While a batch is sent: the first SIGINT/SIGTERM asks the workers to stop after their request in
    flight; a second one cancels them at once. Only in the main thread (signals go nowhere else)."""

    def __init__(self):
        self.signum: int | None = None  # the signal that came, if one did
        self.halted = False  # no new requests: a signal came, or a request failed
        self.tasks: list[asyncio.Future] = []
        self._installed: list[tuple[int, Any]] = []

    def __enter__(self) -> "_StopOnSignal":
        if threading.current_thread() is not threading.main_thread():
            return self
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous = signal.getsignal(sig)
            try:
                loop.add_signal_handler(sig, self._on_signal, sig)
            except (NotImplementedError, RuntimeError, ValueError):  # Windows' loop has no signal handlers
                continue
            self._installed.append((sig, previous))
        return self

    def __exit__(self, *exc) -> None:
        loop = asyncio.get_running_loop()
        for sig, previous in self._installed:
            loop.remove_signal_handler(sig)
            signal.signal(sig, previous)

    def _on_signal(self, signum: int) -> None:
        if self.signum is not None:
            for task in self.tasks:
                task.cancel()
            return
        self.signum, self.halted = signum, True
        in_flight = sum(not task.done() for task in self.tasks)
        log.warning("stopping: finishing %d request(s) in flight so none is sent twice "
                    "(interrupt again to stop now)", in_flight)


def _run(coro):
    """asyncio.run, also from inside a running event loop (a notebook): then in a helper thread."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    box: dict[str, Any] = {}

    def target():
        try:
            box["value"] = asyncio.run(coro)
        except BaseException as err:  # handed to the caller's thread
            box["error"] = err
    thread = threading.Thread(target=target)
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box["value"]


def from_endpoint(endpoint) -> OpenAIBackend:
    """The backend of one of the task's `endpoints:` (a token counter loaded when it names a tokenizer)."""
    tokenizer = None
    if endpoint.tokenizer:
        from transformers import AutoTokenizer

        from .models import resolve_model
        tokenizer = AutoTokenizer.from_pretrained(resolve_model(endpoint.tokenizer))
    return OpenAIBackend(endpoint.base_url, endpoint.model, api_key_env=endpoint.api_key_env,
                         concurrency=endpoint.concurrency, timeout_s=endpoint.timeout_s,
                         max_retries=endpoint.max_retries, backoff_s=endpoint.backoff_s,
                         logprobs=endpoint.logprobs, tokenizer=tokenizer)
