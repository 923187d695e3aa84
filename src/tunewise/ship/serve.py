"""`serve`: a bundle behind an OpenAI-compatible HTTP API (FastAPI + uvicorn, `pip install 'tunewise[serve]'`).

The server asks the model with the arm's own prompt (instruction, examples, passages) and decoding, so answers
are the ones `predict` gives and the run measured. What a request's messages are depends on the task:

- a single-turn task (its data has an input text): the client sends the task's input as the last user
  message (chat) or as the prompt (completions). Earlier messages, a system message included, are not sent to
  the model: the arm's prompt replaces them.
- a conversation task (its rows are lists of messages): the chat request's whole history is the conversation,
  sent as the run sent a test conversation: the arm's system message first, then its examples, then the
  request's user and assistant messages as turns. The client's system (or `developer`) messages are the
  conversation's own system message (several are joined, in order, by a blank line), appended to the arm's
  system message, never replacing it. The last message must be the user's; tool messages are refused. A
  completion's prompt is one user message.

Requests that arrive together are answered together: the first waits a short window (`batch_window_ms`)
for others, then up to `max_batch` go to the engine in one call (one batched `generate` or
`score_choices`); while the engine works, new requests queue for the next batch. One engine thread runs
the model. Every bad request gets an OpenAI-style JSON error (`{"error": {"message", "type", "param",
"code"}}`) with its status, and the server keeps running. SIGTERM or Ctrl-C: no new connections, the
requests in flight are answered, then the process exits.

`stream: true` is answered with OpenAI's server-sent events once the answer is whole (the engine answers a
batch at once): the finished text goes out as deltas, word by word, then `data: [DONE]`. A request refused
before that gets the same JSON error as an unstreamed one.
"""

# no `from __future__ import annotations`: FastAPI reads the handlers' annotations (Request) at definition,
# and fastapi is imported inside create_app, where the module's globals could not resolve them later
import asyncio
import contextlib
import errno
import hmac
import json
import logging
import re
import secrets
import signal
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, AsyncIterator, Callable, Iterator, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..backends.openai import BackendError
from ..errors import DataError, Interrupted, MissingDependencyError, TunewiseError
from ..task import Strict
from ..task.data import Example, read_message
from ..task.schema import not_finite
from .bundle import Bundle

log = logging.getLogger(__name__)
INSTALL = "serving needs fastapi and uvicorn: pip install 'tunewise[serve]'"
SCORED_ANSWER_TOKENS = 16  # room a scored label needs after the prompt (labels are a few tokens)


class ServeSettings(Strict):
    host: str = Field("127.0.0.1", description="the address to bind; 0.0.0.0 exposes the server to the network")
    port: int = Field(8000, ge=0, le=65535, description="0: any free port")
    model_name: str | None = Field(None, description="the model id clients send; default: the bundle's name")
    api_key: str | None = Field(None, repr=False, description="clients must send it as a bearer token")
    max_body_bytes: int = Field(1_000_000, gt=0)
    max_messages: int = Field(64, gt=0, description="messages in a chat request, prompts in a completion request")
    max_tokens: int = Field(1024, gt=0, description="the most tokens a request may ask to generate")
    max_batch: int = Field(64, gt=0, description="requests answered in one engine call; 1: one at a time")
    batch_window_ms: float = Field(5.0, ge=0, le=10_000, allow_inf_nan=False,
                                   description="how long the first request waits for others")
    max_queue: int = Field(4096, gt=0, description="requests waiting beyond this are refused (503)")
    graceful_timeout_s: float = Field(30.0, gt=0, description="on shutdown, how long requests in flight get")
    read_timeout_s: float = Field(30.0, gt=0, allow_inf_nan=False,
                                  description="how long a request's body may take to arrive before it is dropped")


# -- errors ---------------------------------------------------------------------------------------
class ApiError(Exception):
    """A request the server refuses, as OpenAI's API reports it."""

    def __init__(self, status: int, message: str, *, type: str = "invalid_request_error", code: str | None = None,
                 param: str | None = None, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.type, self.code, self.param = status, message, type, code, param
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


class Dropped(Exception):
    """A request the client will not see answered: it disconnected, or its body stalled (then a 408 is sent)."""

    def __init__(self, why: str, status: int | None = None):
        super().__init__(why)
        self.status = status


class ContextTooLong(ApiError):
    def __init__(self, tokens: int, limit: int):
        super().__init__(400, f"the prompt and answer need {tokens} tokens; this model takes at most {limit}",
                         code="context_length_exceeded", param="messages")


# -- request bodies (unknown fields are refused, as OpenAI's API does) -------------------------------
class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)  # JSON parsing lets NaN through


class TextPart(_Body):
    type: Literal["text"]
    text: str


class ChatMessage(_Body):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[TextPart] | None = None
    name: str | None = None


class StreamOptions(_Body):
    include_usage: bool = False
    include_obfuscation: bool | None = None  # accepted; a local server sends no padding against side channels


class _Request(_Body):
    model: str
    max_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0, le=2)
    stop: str | list[str] | None = None
    seed: int | None = None
    n: int = 1
    stream: bool = False
    stream_options: StreamOptions | None = None
    top_p: float | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    user: str | None = None


class ChatRequest(_Request):
    messages: list[ChatMessage]
    max_completion_tokens: int | None = Field(None, ge=1)
    logprobs: bool = False
    top_logprobs: int | None = Field(None, ge=0, le=20)


class CompletionRequest(_Request):
    prompt: str | list[str]
    logprobs: int | None = Field(None, ge=0, le=20)
    echo: bool = False


@dataclass
class Job:
    text: str
    generation: dict[str, Any]
    example: Example | None = None  # a conversation task's request, its messages checked; else built from text


def job_examples(bundle: Bundle, jobs: list[Job]) -> list[Example]:
    return [job.example or bundle.examples([job.text])[0] for job in jobs]


# -- the engine: batches of jobs through the bundle ---------------------------------------------------
def answer_jobs(bundle: Bundle, jobs: list[Job]) -> list[Any]:
    """Each job's prediction, or the error that stopped it: one engine call per set of decoding settings,
    and one item at a time when a batch fails, so one bad input fails alone."""
    results: list[Any] = [None] * len(jobs)
    limit = bundle.context_limit()
    groups: dict[str, list[int]] = {}
    for i, job in enumerate(jobs):
        try:
            if limit:
                _check_context(bundle, job, limit)
        except ApiError as err:
            results[i] = err
            continue
        groups.setdefault(json.dumps(job.generation, sort_keys=True), []).append(i)
    for indices in groups.values():
        for i, result in zip(indices, _answer(bundle, [jobs[i] for i in indices])):
            results[i] = result
    return results


def _answer(bundle: Bundle, jobs: list[Job]) -> list[Any]:
    examples = job_examples(bundle, jobs)
    try:
        return bundle.answer(examples, jobs[0].generation)
    except Exception as err:  # noqa: BLE001  reported to the request(s), the server goes on
        if len(jobs) == 1 or isinstance(err, BackendError):  # an endpoint that failed is not asked n times more
            log.exception("answering failed")
            return [err] * len(jobs)
        return [result for job in jobs for result in _answer(bundle, [job])]


def _check_context(bundle: Bundle, job: Job, limit: int) -> None:
    (example,) = job_examples(bundle, [job])
    scored = bundle.prompter.decoding == "constrained"
    answer = SCORED_ANSWER_TOKENS if scored else job.generation.get("max_tokens", bundle.task.generation.max_tokens)
    need = bundle.prompt_tokens(example) + answer
    if need > limit:
        raise ContextTooLong(need, limit)


class Batcher:
    """Collects concurrent jobs into batches for the one engine thread."""

    def __init__(self, bundle: Bundle, settings: ServeSettings):
        self.bundle, self.settings = bundle, settings
        self.executor = ThreadPoolExecutor(1, thread_name_prefix="tunewise-engine")
        self.queue: asyncio.Queue | None = None
        self.task: asyncio.Task | None = None
        self.closing = False
        self.stats = {"jobs": 0, "batches": 0}

    async def start(self) -> None:
        self.queue = asyncio.Queue()
        self.task = asyncio.create_task(self._loop())

    async def stop(self) -> None:
        """Answer what is queued, then stop the engine."""
        self.closing = True
        if self.queue is not None:
            self.queue.put_nowait(None)
            await self.task
        self.executor.shutdown(wait=True)

    async def submit(self, jobs: list[Job]) -> list[Any]:
        if self.closing:
            raise ApiError(503, "the server is shutting down", type="server_error", code="shutting_down")
        if self.queue.qsize() + len(jobs) > self.settings.max_queue:
            raise ApiError(503, "the server is overloaded; retry later", type="server_error", code="overloaded",
                           headers={"Retry-After": "1"})
        loop = asyncio.get_running_loop()
        futures = [loop.create_future() for _ in jobs]
        for job, future in zip(jobs, futures):
            self.queue.put_nowait((job, future))
        results = await asyncio.gather(*futures)
        for result in results:
            if isinstance(result, ApiError):
                raise result
            if isinstance(result, BackendError):  # the bundle's endpoint failed, after its retries
                raise ApiError(502, f"the model's endpoint failed: {result}", type="server_error",
                               code="upstream_error")
            if isinstance(result, Exception):  # logged where it happened
                raise ApiError(500, "the engine failed on this request", type="server_error")
        return results

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        window = self.settings.batch_window_ms / 1000 if self.settings.max_batch > 1 else 0
        stopping = False
        while not stopping:
            first = await self.queue.get()
            if first is None:
                break
            if window:
                await asyncio.sleep(window)  # let requests sent together arrive
            batch = [first]
            while len(batch) < self.settings.max_batch and not self.queue.empty():
                item = self.queue.get_nowait()
                if item is None:
                    stopping = True
                    break
                batch.append(item)
            batch = [(job, f) for job, f in batch if not f.done()]  # a client that left is not answered
            if not batch:
                continue
            self.stats["batches"] += 1
            self.stats["jobs"] += len(batch)
            try:
                results = await loop.run_in_executor(self.executor, answer_jobs, self.bundle, [j for j, _ in batch])
            except Exception as err:  # noqa: BLE001
                results = [err] * len(batch)
            for (_, future), result in zip(batch, results):
                if not future.done():
                    future.set_result(result)


# -- the app ---------------------------------------------------------------------------------------
class Api:
    """What the endpoints do; `create_app` only routes requests here."""

    def __init__(self, bundle: Bundle, settings: ServeSettings):
        self.bundle, self.settings = bundle, settings
        self.name = settings.model_name or bundle.name
        self.batcher = Batcher(bundle, settings)

    def authorize(self, request) -> None:
        key = self.settings.api_key
        if key is None:
            return
        scheme, _, token = request.headers.get("authorization", "").strip().partition(" ")
        if not scheme or (scheme.lower() == "bearer" and not token.strip()):  # no key: OpenAI's words, code null
            raise ApiError(401, "You didn't provide an API key. You need to provide your API key in an Authorization "
                           "header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
                           headers={"WWW-Authenticate": "Bearer"})
        # constant time: how much of the key a guess got right does not show in the response time
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), key.encode()):
            raise ApiError(401, "incorrect API key provided", code="invalid_api_key",
                           headers={"WWW-Authenticate": "Bearer"})

    async def body(self, request, model: type[_Request]) -> Any:
        """The request's body, authorized, read within the size limit, validated, for this server's model."""
        self.authorize(request)
        data = await read_json(request, self.settings.max_body_bytes, self.settings.read_timeout_s)
        body = parse(model, data)
        if body.model != self.name:
            raise ApiError(404, f"the model {body.model!r} does not exist; this server answers as {self.name!r}",
                           code="model_not_found", param="model")
        return body

    async def chat(self, request) -> "dict[str, Any] | Events":
        body = await self.body(request, ChatRequest)
        decoding = generation(body, self.settings, body.max_completion_tokens)
        if self.bundle.conversation:  # the whole history, as the run sent its conversations
            example = chat_conversation(body, self.settings, self.bundle)
            job = Job(example.input, decoding, example)
        else:  # the last user message alone
            job = Job(chat_input(body, self.settings), decoding)
        (prediction,) = await self.batcher.submit([job])
        response = chat_response(self.name, prediction, body, job, self.bundle)
        return chat_events(response, _usage_chunk(body)) if body.stream else response

    async def completions(self, request) -> "dict[str, Any] | Events":
        body = await self.body(request, CompletionRequest)
        if body.echo:
            raise ApiError(400, "echo is not supported", param="echo")
        jobs = [Job(text, generation(body, self.settings)) for text in completion_inputs(body, self.settings)]
        predictions = await self.batcher.submit(jobs)
        response = completion_response(self.name, predictions, jobs, self.bundle, body.logprobs)
        return completion_events(response, _usage_chunk(body)) if body.stream else response

    def models(self, request) -> dict[str, Any]:
        self.authorize(request)
        return {"object": "list", "data": [_model_card(self.name, self.bundle)]}

    def model(self, request, model_id: str) -> dict[str, Any]:
        self.authorize(request)
        if model_id != self.name:
            raise ApiError(404, f"the model {model_id!r} does not exist", code="model_not_found", param="model")
        return _model_card(self.name, self.bundle)

    def health(self) -> dict[str, Any]:
        queue = self.batcher.queue
        return {"status": "ok", "model": self.name, "run_id": self.bundle.manifest.run_id,
                "arm": self.bundle.manifest.arm, "queued": queue.qsize() if queue else 0, **self.batcher.stats}


def create_app(bundle: Bundle, settings: ServeSettings):
    """The FastAPI app: routes, OpenAI-style errors, the batcher started and stopped with the server."""
    try:
        from fastapi import FastAPI, Request
        from fastapi.responses import JSONResponse, Response, StreamingResponse
        from starlette.exceptions import HTTPException
    except ImportError:
        raise MissingDependencyError(INSTALL) from None
    api = Api(bundle, settings)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        await api.batcher.start()
        yield
        await api.batcher.stop()  # after uvicorn has let the requests in flight finish

    app = FastAPI(title=f"tunewise: {api.name}", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.api = api

    def error_response(err: ApiError) -> JSONResponse:
        return JSONResponse(err.body(), status_code=err.status, headers=err.headers)

    def respond(answer):
        if isinstance(answer, Events):
            return StreamingResponse(answer.lines(), media_type="text/event-stream",
                                     headers={"Cache-Control": "no-cache"})
        return answer

    @app.exception_handler(ApiError)
    async def api_error(request, err: ApiError):
        return error_response(err)

    @app.exception_handler(Dropped)
    async def dropped(request, err: Dropped):  # one line, not a traceback: the client is gone or too slow
        client = f"{request.client.host}:{request.client.port}" if request.client else "a client"
        log.warning(f"dropped a request from {client} to {request.url.path}: {err}")
        if err.status is None:
            return Response(status_code=499)  # nobody reads it; nginx's code for a client that closed
        return error_response(ApiError(err.status, f"request dropped: {err}", code="request_timeout",
                                       headers={"Connection": "close"}))

    @app.exception_handler(HTTPException)
    async def http_error(request, err: HTTPException):  # unknown paths, wrong methods
        code = {404: "not_found", 405: "method_not_allowed"}.get(err.status_code)
        return error_response(ApiError(err.status_code, f"{request.method} {request.url.path}: {err.detail}",
                                       code=code))

    @app.exception_handler(Exception)
    async def server_error(request, err: Exception):
        log.exception("unexpected error")
        return error_response(ApiError(500, "internal error", type="server_error"))

    @app.post("/v1/chat/completions")
    async def chat(request: Request):
        return respond(await api.chat(request))

    @app.post("/v1/completions")
    async def completions(request: Request):
        return respond(await api.completions(request))

    @app.get("/v1/models")
    async def models(request: Request):
        return api.models(request)

    @app.get("/v1/models/{model_id:path}")
    async def model(model_id: str, request: Request):
        return api.model(request, model_id)

    @app.get("/health")
    async def health():
        return api.health()

    return app


def _model_card(name: str, bundle: Bundle) -> dict[str, Any]:
    m = bundle.manifest
    return {"id": name, "object": "model", "created": int(m.created_at), "owned_by": "tunewise",
            "tunewise": {"run_id": m.run_id, "arm": m.arm, "method": m.method, "metric": m.metric,
                         "metrics": m.metrics, "recommended": m.recommended}}


async def read_json(request, limit: int, timeout_s: float = 30.0) -> Any:
    """The body as JSON, refused (413) as soon as it passes `limit` bytes, declared or streamed; a client that
    disconnects first, or takes longer than `timeout_s` to send it, is dropped."""
    from starlette.requests import ClientDisconnect
    try:
        body = await asyncio.wait_for(_read_body(request, limit), timeout_s)
    except ClientDisconnect:
        raise Dropped("the client disconnected before its body arrived") from None
    except asyncio.TimeoutError:
        raise Dropped(f"its body did not arrive within {timeout_s:g} s (read_timeout_s)", status=408) from None
    return _json_object(body)


async def _read_body(request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise ApiError(400, "invalid Content-Length header")
        if int(declared) > limit:
            raise ApiError(413, f"the request body is {declared} bytes; the limit is {limit}",
                           code="request_too_large")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise ApiError(413, f"the request body passes the limit of {limit} bytes", code="request_too_large")
    return bytes(body)


def _json_object(body: bytes) -> dict:
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as err:
        raise ApiError(400, f"the body is not valid JSON: {err}", code="invalid_json") from None
    if not isinstance(data, dict):
        raise ApiError(400, "the body must be a JSON object", code="invalid_json")
    return data


def parse(model: type[BaseModel], data: dict) -> Any:
    try:
        body = model.model_validate(data)
    except ValidationError as err:
        first = err.errors()[0]
        param = ".".join(str(p) for p in first["loc"]) or None
        message = {"extra_forbidden": "unrecognized request argument",
                   "finite_number": not_finite(first["input"])}.get(first["type"], first["msg"])
        raise ApiError(400, f"{param}: {message}" if param else message, param=param) from None
    _supported(body)
    return body


def _supported(body: _Request) -> None:
    """Settings the engine cannot honour are refused rather than ignored."""
    if body.stream_options is not None and not body.stream:
        raise ApiError(400, "stream_options: only allowed when stream is true", param="stream_options")
    if body.n != 1:
        raise ApiError(400, "n: only one answer per request is supported", param="n")
    if body.top_p not in (None, 1):
        raise ApiError(400, "top_p: only 1 is supported", param="top_p")
    for name in ("presence_penalty", "frequency_penalty"):
        if getattr(body, name) not in (None, 0):
            raise ApiError(400, f"{name}: only 0 is supported", param=name)


def generation(body: _Request, settings: ServeSettings, max_completion: int | None = None) -> dict[str, Any]:
    """The request's decoding settings that override the arm's (the task's `generation`)."""
    out: dict[str, Any] = {}
    max_tokens = max_completion or body.max_tokens
    if max_tokens is not None:
        if max_tokens > settings.max_tokens:
            raise ApiError(400, f"max_tokens is {max_tokens}; this server allows at most {settings.max_tokens}",
                           param="max_tokens")
        out["max_tokens"] = max_tokens
    if body.temperature is not None:
        out["temperature"] = body.temperature
    if body.stop is not None:
        stops = [body.stop] if isinstance(body.stop, str) else body.stop
        if len(stops) > 4:
            raise ApiError(400, "stop: at most 4 sequences", param="stop")
        out["stop"] = stops
    if body.seed is not None:
        out["seed"] = body.seed
    return out


def _check_messages(body: ChatRequest, settings: ServeSettings) -> None:
    if not body.messages:
        raise ApiError(400, "messages must not be empty", param="messages")
    if len(body.messages) > settings.max_messages:
        raise ApiError(400, f"{len(body.messages)} messages; this server takes at most {settings.max_messages}",
                       param="messages")
    if body.messages[-1].role != "user":
        raise ApiError(400, "the last message must be the user's input", param="messages")


def chat_input(body: ChatRequest, settings: ServeSettings) -> str:
    """A single-turn task's input: the last message, the user's."""
    _check_messages(body, settings)
    last = body.messages[-1]
    content = last.content if isinstance(last.content, str) else "\n".join(p.text for p in last.content or [])
    if not content.strip():
        raise ApiError(400, "the user's message is empty", param="messages")
    return content


def chat_conversation(body: ChatRequest, settings: ServeSettings, bundle: Bundle) -> Example:
    """A conversation task's input: the request's messages, checked as the task's data is (each message's
    content; `messages[i]` names the one refused). System and developer messages become the conversation's
    own system message, joined in order by a blank line; the arm's prompt appends it to its own."""
    _check_messages(body, settings)
    where = {"file": None, "line": None}
    system, turns = [], []
    for i, message in enumerate(body.messages):
        if message.role == "tool":
            raise ApiError(400, f"messages[{i}]: tool messages are not supported: this task's conversations are "
                           "user and assistant messages (with a system message)", param="messages")
        content = [p.model_dump() for p in message.content] if isinstance(message.content, list) else message.content
        role = "system" if message.role == "developer" else message.role
        try:
            checked, _ = read_message({"role": role, "content": content}, f"messages[{i}]", where)
        except DataError as err:
            raise ApiError(400, str(err), param="messages") from None
        (system if role == "system" else turns).append(checked)
    own = [{"role": "system", "content": "\n\n".join(m["content"] for m in system)}] if system else []
    try:
        (example,) = bundle.examples([own + turns])
    except DataError as err:  # the checks above leave nothing to refuse here; a refusal is the request's
        raise ApiError(400, str(err), param="messages") from None
    return example


def completion_inputs(body: CompletionRequest, settings: ServeSettings) -> list[str]:
    prompts = [body.prompt] if isinstance(body.prompt, str) else body.prompt
    if not prompts:
        raise ApiError(400, "prompt must not be empty", param="prompt")
    if len(prompts) > settings.max_messages:
        raise ApiError(400, f"{len(prompts)} prompts; this server takes at most {settings.max_messages}",
                       param="prompt")
    if any(not p.strip() for p in prompts):
        raise ApiError(400, "a prompt is empty", param="prompt")
    return prompts


def _finish(prediction, job: Job, default_max: int) -> str:
    """'length' when a generated answer used every token it was allowed (it may have been cut)."""
    scored = "logprobs" in prediction.extra
    return "length" if not scored and prediction.output_tokens >= job.generation.get("max_tokens", default_max) \
        else "stop"


def _usage(predictions) -> dict[str, int]:
    prompt = sum(p.input_tokens for p in predictions)
    completion = sum(p.output_tokens for p in predictions)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def _extra(prediction) -> dict[str, Any]:
    """What tunewise adds to a choice: the parsed answer and, for scored arms, each label's score."""
    return {"parsed": prediction.parsed, "scores": prediction.extra.get("logprobs")}


def _logprobs(prediction, top: int | None) -> dict | None:
    """A scored arm's label scores in OpenAI's logprobs shape: each label as a token (the answer first)."""
    scores = prediction.extra.get("logprobs")
    if scores is None:
        return None
    ranked = sorted(scores.items(), key=lambda kv: -kv[1])
    alternatives = [{"token": label, "logprob": value, "bytes": None} for label, value in ranked[:top or 0]]
    return {"content": [{"token": prediction.raw, "logprob": scores.get(prediction.raw), "bytes": None,
                         "top_logprobs": alternatives}]}


def chat_response(name: str, prediction, body: ChatRequest, job: Job, bundle: Bundle) -> dict[str, Any]:
    return {"id": f"chatcmpl-{secrets.token_hex(12)}", "object": "chat.completion", "created": int(time.time()),
            "model": name,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": prediction.raw},
                         "logprobs": _logprobs(prediction, body.top_logprobs) if body.logprobs else None,
                         "finish_reason": _finish(prediction, job, bundle.task.generation.max_tokens),
                         "tunewise": _extra(prediction)}],
            "usage": _usage([prediction])}


def _completion_logprobs(prediction, top: int | None) -> dict | None:
    """A scored arm's label scores in the completions logprobs shape: the answer as the one token, the `top`
    best labels as its alternatives (with the answer, which OpenAI always includes)."""
    scores = prediction.extra.get("logprobs")
    if scores is None or top is None:
        return None
    ranked = dict(sorted(scores.items(), key=lambda kv: -kv[1])[:top])
    ranked.setdefault(prediction.raw, scores[prediction.raw])
    return {"tokens": [prediction.raw], "token_logprobs": [scores[prediction.raw]], "top_logprobs": [ranked],
            "text_offset": [0]}


def completion_response(name: str, predictions, jobs: list[Job], bundle: Bundle,
                        logprobs: int | None = None) -> dict[str, Any]:
    default = bundle.task.generation.max_tokens
    return {"id": f"cmpl-{secrets.token_hex(12)}", "object": "text_completion", "created": int(time.time()),
            "model": name,
            "choices": [{"index": i, "text": p.raw, "logprobs": _completion_logprobs(p, logprobs),
                         "finish_reason": _finish(p, job, default), "tunewise": _extra(p)}
                        for i, (p, job) in enumerate(zip(predictions, jobs))],
            "usage": _usage(predictions)}


# -- streaming: a finished answer as OpenAI's server-sent events ---------------------------------------
@dataclass
class Events:
    """A streamed answer: its chunks as server-sent events, closed by `data: [DONE]`."""
    chunks: list[dict[str, Any]]

    async def lines(self) -> AsyncIterator[str]:
        for chunk in self.chunks:
            yield f"data: {json.dumps(chunk)}\n\n"
        yield "data: [DONE]\n\n"


def _usage_chunk(body: _Request) -> bool:
    return body.stream_options is not None and body.stream_options.include_usage


def _pieces(text: str, scored: bool) -> list[str]:
    """The deltas of a finished answer: a scored label whole (the one token its logprobs describe), generated
    text word by word with the space before each word, so that they join back into exactly the text."""
    return [text] if scored else re.findall(r"\s*\S+|\s+", text)


def _stream(response: dict[str, Any], kind: str, choice_chunks, with_usage: bool) -> Events:
    """Every choice's chunks under the response's id; with usage, `usage: null` on each and a last chunk with no
    choices and the usage, as OpenAI sends them."""
    head = {"id": response["id"], "object": kind, "created": response["created"], "model": response["model"]}
    tail = {"usage": None} if with_usage else {}
    chunks = [{**head, "choices": [c], **tail} for choice in response["choices"] for c in choice_chunks(choice)]
    if with_usage:
        chunks.append({**head, "choices": [], "usage": response["usage"]})
    return Events(chunks)


def chat_events(response: dict[str, Any], with_usage: bool) -> Events:
    """The role first, the content's deltas (a scored label's carries its logprobs), then the finish reason."""
    def chunks(choice):
        def delta(content: dict, **rest):
            return {"index": choice["index"], "delta": content, "logprobs": None, "finish_reason": None, **rest}
        pieces = _pieces(choice["message"]["content"], choice["tunewise"]["scores"] is not None)
        return [delta({"role": "assistant", "content": ""}),
                *(delta({"content": p}, logprobs=choice["logprobs"] if i == 0 else None)
                  for i, p in enumerate(pieces)),
                delta({}, finish_reason=choice["finish_reason"], tunewise=choice["tunewise"])]
    return _stream(response, "chat.completion.chunk", chunks, with_usage)


def completion_events(response: dict[str, Any], with_usage: bool) -> Events:
    """Each prompt's text in deltas (a scored label's carries its logprobs), then a chunk with its finish reason."""
    def chunks(choice):
        def piece(text: str, **rest):
            return {"index": choice["index"], "text": text, "logprobs": None, "finish_reason": None, **rest}
        pieces = _pieces(choice["text"], choice["tunewise"]["scores"] is not None)
        return [*(piece(p, logprobs=choice["logprobs"] if i == 0 else None) for i, p in enumerate(pieces)),
                piece("", finish_reason=choice["finish_reason"], tunewise=choice["tunewise"])]
    return _stream(response, "text_completion", chunks, with_usage)


# -- running it ------------------------------------------------------------------------------------
def require() -> None:
    """Fail early, before a model loads, when the serve extra is missing."""
    import importlib.util
    if importlib.util.find_spec("fastapi") is None or importlib.util.find_spec("uvicorn") is None:
        raise MissingDependencyError(INSTALL)


def _server(bundle: Bundle, settings: ServeSettings):
    try:
        import uvicorn
    except ImportError:
        raise MissingDependencyError(INSTALL) from None
    config = uvicorn.Config(create_app(bundle, settings), log_level="warning", access_log=False, lifespan="on",
                            timeout_graceful_shutdown=int(settings.graceful_timeout_s), backlog=4096)
    return uvicorn.Server(config)


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as err:
        sock.close()
        # an address that does not resolve or is not this machine's is the host's fault; a busy port the port's
        field = "host" if isinstance(err, socket.gaierror) or err.errno == errno.EADDRNOTAVAIL else "port"
        raise TunewiseError(f"cannot listen on {host}:{port}: {err.strerror}", field=field) from None
    sock.listen(4096)
    return sock


def url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://{f'[{host}]' if ':' in host else host}:{port}/v1"


def serve(bundle: Bundle, settings: ServeSettings, log_line: Callable[[str], None] = print) -> None:
    """Serve until SIGTERM or Ctrl-C; requests in flight are answered before it returns."""
    server = _server(bundle, settings)
    sock = bind(settings.host, settings.port)
    bundle.warm()
    name = settings.model_name or bundle.name
    log_line(f"serving {name!r} ({bundle.manifest.method}) at {url_of(sock)}"
             f"{'' if settings.api_key else ' without an API key'}; Ctrl-C or SIGTERM stops it")
    with _stop_quietly():
        server.run(sockets=[sock])
    sock.close()
    log_line("stopped: requests in flight were answered")


@contextlib.contextmanager
def _stop_quietly() -> Iterator[None]:
    """uvicorn shuts down gracefully on SIGTERM/SIGINT, then raises the signal again for the handler that was
    there before: ours turns it into `Interrupted`, which ends serving normally."""
    installed = []
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            installed.append((sig, signal.signal(sig, _interrupt)))
    try:
        yield
    except KeyboardInterrupt:
        pass
    finally:
        for sig, previous in installed:
            signal.signal(sig, previous)


def _interrupt(signum, frame):
    raise Interrupted(signum)


@contextlib.contextmanager
def serving(bundle: Bundle, settings: ServeSettings | None = None) -> Iterator[str]:
    """The server in a background thread on a free port (tests, benchmarks, notebooks); yields its base URL."""
    settings = settings or ServeSettings(port=0)
    server = _server(bundle, settings)
    sock = bind(settings.host, settings.port)
    bundle.warm()
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        if not thread.is_alive():
            raise TunewiseError("the server did not start")
        time.sleep(0.01)
    try:
        yield url_of(sock)
    finally:
        server.should_exit = True
        thread.join()
        sock.close()
