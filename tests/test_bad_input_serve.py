"""serve under clients that go wrong (issue 28): one that disconnects halfway through its body, one that stalls,
and a bad --host, each a line of log or error, never a traceback; the server goes on serving."""

from __future__ import annotations

import logging
import socket
import time

import pytest

pytest.importorskip("fastapi")

from test_bad_input import invoke  # noqa: E402
from tunewise.ship.bundle import Bundle  # noqa: E402
from tunewise.ship.serve import ServeSettings, serving  # noqa: E402

HEAD = ("POST /v1/chat/completions HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
        "Content-Length: 200\r\n\r\n")


def _address(url: str) -> tuple[str, int]:
    host, port = url.removeprefix("http://").removesuffix("/v1").rsplit(":", 1)
    return host, int(port)


def _ask(url: str, name: str) -> dict:
    import httpx
    body = {"model": name, "messages": [{"role": "user", "content": "Word: happy1"}]}
    return httpx.post(f"{url}/chat/completions", json=body, timeout=60).json()


def _until_closed(sock: socket.socket) -> str:
    """Everything the server sends until it closes the connection (a reply may come in several pieces)."""
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data.decode()


def _tracebacks(records) -> list[str]:
    return [r.getMessage() for r in records if r.exc_info or "Exception in ASGI" in r.getMessage()]


@pytest.fixture
def bundle(tiny_run):
    return Bundle.load(tiny_run.bundle("zero_shot"), device="cpu")


def test_a_client_that_disconnects_mid_body_is_one_log_line(bundle, caplog):
    caplog.set_level(logging.WARNING)
    with serving(bundle, ServeSettings(port=0)) as url:
        with socket.create_connection(_address(url)) as sock:
            sock.sendall((HEAD + '{"model": "').encode())
        deadline = time.monotonic() + 10
        while not any("dropped" in r.getMessage() for r in caplog.records) and time.monotonic() < deadline:
            time.sleep(0.05)
        answer = _ask(url, bundle.name)  # the server goes on serving
    dropped = [r.getMessage() for r in caplog.records if "dropped" in r.getMessage()]
    assert len(dropped) == 1 and "disconnected before its body arrived" in dropped[0], caplog.text
    assert not _tracebacks(caplog.records), caplog.text
    assert answer["choices"][0]["message"]["content"]


def test_a_stalled_client_is_dropped_after_the_read_timeout(bundle, caplog):
    caplog.set_level(logging.WARNING)
    with serving(bundle, ServeSettings(port=0, read_timeout_s=0.5)) as url:
        with socket.create_connection(_address(url), timeout=10) as sock:
            sock.sendall((HEAD + '{"model": "').encode())
            started = time.monotonic()
            reply = _until_closed(sock)
            waited = time.monotonic() - started
        answer = _ask(url, bundle.name)
    assert reply.startswith("HTTP/1.1 408") and '"request_timeout"' in reply, reply
    assert 0.4 < waited < 10  # the timeout, not the socket's own 10 s
    dropped = [r.getMessage() for r in caplog.records if "dropped" in r.getMessage()]
    assert len(dropped) == 1 and "did not arrive within 0.5 s" in dropped[0], caplog.text
    assert not _tracebacks(caplog.records), caplog.text
    assert answer["choices"][0]["message"]["content"]


@pytest.mark.parametrize("host", ["999.1.1.1", "no-such-host.invalid", "192.0.2.1"])
def test_a_host_that_is_not_this_machines_names_the_host(tiny_run, host):
    result = invoke("serve", tiny_run.bundle("zero_shot"), "--host", host, "--port", "0", "--device", "cpu")
    assert result.code == 2
    line = result.error_line()
    assert line.startswith("error: host: cannot listen on") and host in line, line


def test_a_read_timeout_that_is_not_a_positive_number_is_refused(tiny_run):
    for value in ("0", "nan", "-1"):
        result = invoke("serve", tiny_run.bundle("zero_shot"), "--read-timeout-s", value)
        assert result.code == 2 and "Invalid value for '--read-timeout-s'" in result.output, result.output
