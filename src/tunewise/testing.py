"""An OpenAI-compatible HTTP server on 127.0.0.1 for tests and benchmarks, with switchable faults.

    with FaultyServer(responder=lambda messages: "positive") as server:
        server.faults = lambda n, body: "429" if n % 3 == 0 else None
        ... OpenAIBackend(server.url, "fake") ...

A fault is one of: "429" (with Retry-After), "500", "400" (not to be retried), "timeout" (answers after the client
gave up),
"malformed" (a 200 with a broken body), "drop" (closes the connection without an answer).
`answered` counts, per prompt, the answers delivered; `received` counts every request.
"""

from __future__ import annotations

import hashlib
import json
import socket
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable


def prompt_key(body: dict) -> str:
    text = json.dumps({"messages": body.get("messages"), "max_tokens": body.get("max_tokens"),
                       "temperature": body.get("temperature"), "seed": body.get("seed"),
                       "logprobs": body.get("logprobs")}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024  # the default backlog of 5 drops simultaneous connects (1 s SYN retries)


class FaultyServer:
    def __init__(self, responder: Callable[[list], str] | None = None, *, delay_s: float = 0.0,
                 retry_after: str = "0.05", timeout_sleep_s: float = 2.0, logprobs: bool = True,
                 models: list[str] | None = None):
        self.responder = responder or (lambda messages: "ok")
        self.delay_s = delay_s
        self.retry_after = retry_after
        self.timeout_sleep_s = timeout_sleep_s
        self.logprobs = logprobs
        self.models = models  # GET /v1/models lists these; None: the server has no model list (501)
        self.faults: Callable[[int, dict], str | None] = lambda n, body: None
        self.received = 0
        self.answered: Counter[str] = Counter()
        self.headers_seen: list[dict] = []
        self.lock = threading.Lock()
        self.httpd = _Server(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> "FaultyServer":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def answer(self, body: dict) -> dict:
        text = self.responder(body.get("messages") or [])
        words = text.split()
        choice: dict = {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
        if body.get("logprobs") and self.logprobs:
            first = words[0] if words else ""
            others = [{"token": first, "logprob": -0.1}] + [{"token": w, "logprob": -3.0 - i}
                                                             for i, w in enumerate(("yes", "no", "maybe"))]
            choice["logprobs"] = {"content": [{"token": first, "logprob": -0.1, "top_logprobs": others}]}
        prompt_tokens = sum(len(m.get("content", "").split()) for m in body.get("messages") or [])
        return {"id": "cmpl-test", "object": "chat.completion", "model": body.get("model"), "choices": [choice],
                "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": len(words),
                          "total_tokens": prompt_tokens + len(words)}}

    def _handler(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body are separate writes: no 40 ms stalls

            def log_message(self, *args):  # quiet
                pass

            def do_GET(self):  # the model list; not a request the counts above include
                if server.models is None or self.path.rstrip("/") != "/v1/models":
                    return self._send(501 if server.models is None else 404, b'{"error": "no such path"}')
                data = [{"id": m, "object": "model", "owned_by": "test"} for m in server.models]
                return self._send(200, json.dumps({"object": "list", "data": data}).encode())

            def do_POST(self):
                length = int(self.headers.get("content-length", 0))
                try:
                    body = json.loads(self.rfile.read(length))
                    assert isinstance(body, dict) and body.get("messages")
                except (ValueError, AssertionError, OSError):  # a client killed mid-request
                    self.close_connection = True
                    return None
                with server.lock:
                    server.received += 1
                    n = server.received
                    server.headers_seen.append(dict(self.headers))
                fault = server.faults(n, body)
                if server.delay_s:
                    time.sleep(server.delay_s)
                if fault == "429":
                    return self._send(429, b'{"error": "slow down"}', {"Retry-After": server.retry_after})
                if fault == "500":
                    return self._send(500, b'{"error": "boom"}')
                if fault == "400":
                    return self._send(400, b'{"error": "bad request"}')
                if fault == "timeout":
                    time.sleep(server.timeout_sleep_s)
                    return self._send(500, b'{"error": "too late"}')
                if fault == "malformed":
                    return self._send(200, b'{"choices": [{"message": ')
                if fault == "drop":
                    self.connection.shutdown(socket.SHUT_RDWR)
                    self.close_connection = True
                    return None
                payload = json.dumps(server.answer(body)).encode()
                if self._send(200, payload):
                    with server.lock:
                        server.answered[prompt_key(body)] += 1

            def _send(self, status: int, payload: bytes, headers: dict | None = None) -> bool:
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    for k, v in (headers or {}).items():
                        self.send_header(k, v)
                    self.end_headers()
                    self.wfile.write(payload)
                    self.wfile.flush()
                    return True
                except OSError:  # the client went away
                    self.close_connection = True
                    return False

        return Handler


async def _answer_connection(reader, writer, delay_s: float) -> None:
    """Minimal HTTP/1.1 keep-alive loop: read a request, wait delay_s, send a chat completion."""
    import asyncio
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            body = json.loads(await reader.readexactly(length))
            await asyncio.sleep(delay_s)
            text = "ok"
            payload = json.dumps({"id": "cmpl-bench", "object": "chat.completion", "model": body.get("model"),
                                  "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                                               "finish_reason": "stop"}],
                                  "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}}).encode()
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"
                         % len(payload) + payload)
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError, ValueError):
        pass
    finally:
        writer.close()


def serve_async(port: int, delay_s: float = 0.1) -> None:
    """A single-threaded asyncio server that answers every request after delay_s; for benchmarks,
    where the server must never be the bottleneck (threads would contend for the GIL)."""
    import asyncio

    async def main():
        server = await asyncio.start_server(lambda r, w: _answer_connection(r, w, delay_s), "127.0.0.1", port,
                                            backlog=4096)
        async with server:
            await server.serve_forever()
    asyncio.run(main())
