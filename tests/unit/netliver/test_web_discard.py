"""Discarding an unread request body before an error answer, within its bounds."""

from __future__ import annotations

import io
import socket
from typing import Any

from netliver.web import discard_unread_body


class _Failing(io.BytesIO):
    """A body whose connection breaks after ``ok`` bytes."""

    def __init__(self, data: bytes, ok: int) -> None:
        super().__init__(data)
        self.ok = ok

    def read(self, size: int | None = -1) -> bytes:
        if self.tell() >= self.ok:
            raise ConnectionResetError("reset by peer")
        return super().read(min(size if size and size > 0 else self.ok, self.ok - self.tell()))


def _environ(body: io.IOBase, length: int | None, chunked: bool = False, **extra: Any) -> dict[str, Any]:
    env: dict[str, Any] = {"wsgi.input": body, "wsgi.input_terminated": True, **extra}
    if length is not None:
        env["CONTENT_LENGTH"] = str(length)
    if chunked:
        env["HTTP_TRANSFER_ENCODING"] = "chunked"
    return env


def test_the_rest_of_a_declared_body_is_read_and_dropped() -> None:
    body = io.BytesIO(b"x" * 1_000_000)
    body.read(1000)
    assert discard_unread_body(_environ(body, 1_000_000)) == 999_000
    assert body.read() == b""


def test_a_body_declared_over_the_bound_is_not_read() -> None:
    body = io.BytesIO(b"x" * 2000)
    assert discard_unread_body(_environ(body, 2000), max_bytes=1999) == 0
    assert body.tell() == 0
    assert discard_unread_body(_environ(body, 2000), max_bytes=2000) == 2000


def test_a_chunked_body_is_read_up_to_the_bound_only() -> None:
    body = io.BytesIO(b"x" * 5000)
    assert discard_unread_body(_environ(body, None, chunked=True), max_bytes=3000) == 3000
    assert body.tell() == 3000


def test_a_stream_the_server_does_not_end_at_the_body_is_not_read() -> None:
    """Werkzeug's development server hands over the socket itself for a Content-Length body:
    reading on would wait for the client's next request."""
    body = io.BytesIO(b"x" * 2000)
    env = _environ(body, 1000)
    del env["wsgi.input_terminated"]
    assert discard_unread_body(env) == 0
    assert body.tell() == 0


def test_no_body_and_a_read_body_cost_nothing() -> None:
    body = io.BytesIO(b"abc")
    assert discard_unread_body(_environ(body, None)) == 0
    assert discard_unread_body(_environ(body, 0)) == 0
    assert body.tell() == 0
    body.read()
    assert discard_unread_body(_environ(body, 3)) == 0


def test_a_broken_connection_ends_the_discarding_quietly() -> None:
    body = _Failing(b"x" * 10_000, ok=4096)
    assert discard_unread_body(_environ(body, 10_000)) == 4096


def test_a_silent_client_is_waited_for_idle_s_and_the_socket_timeout_restored() -> None:
    server, client = socket.socketpair()
    with server, client:
        server.settimeout(7.0)
        client.sendall(b"y" * 100)  # then nothing more of the declared 1000 bytes
        stream = server.makefile("rb", buffering=0)
        dropped = discard_unread_body(_environ(stream, 1000, **{"gunicorn.socket": server}), idle_s=0.2)
        assert dropped == 100
        assert server.gettimeout() == 7.0
