"""Sessions that send a request once more when the server closed its pooled connection
(``netliver.sessions``), against a local HTTP/1.1 server that keeps connections alive and
closes one, on a chosen request, after reading it and before answering: the keep-alive race
of a server whose idle timeout ends as the client reuses the connection."""

from __future__ import annotations

import json
import socket
import struct
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import BinaryIO

import pytest
import requests

from gateway.service_client import ServiceClient
from netliver import sessions
from netliver.fhir.outcome import FhirError
from netliver.settings import Settings
from netliver.upstream import FhirClient

_ANSWER = json.dumps({"status": "pass", "version": "test", "output": {}}).encode()


@dataclass
class _Server:
    """Closes the ``close_on``-th request of each connection (1-based; 0: none) unanswered, with
    an RST when ``reset``; sleeps ``stall_s`` before each answer. ``seen`` is (connection,
    method, path, body) of every request read."""

    close_on: int = 0
    reset: bool = False
    stall_s: float = 0.0
    seen: list[tuple[int, str, str, bytes]] = field(default_factory=list)
    url: str = ""

    def serve(self, listener: socket.socket) -> None:
        n = 0
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            n += 1
            threading.Thread(target=self._connection, args=(conn, n), daemon=True).start()

    def _connection(self, conn: socket.socket, number: int) -> None:
        reader = conn.makefile("rb")
        with conn:
            for count in range(1, 100):
                request = _read_request(reader)
                if request is None:
                    return
                self.seen.append((number, *request))
                if count == self.close_on or self.close_on < 0:
                    if self.reset:
                        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    return
                time.sleep(self.stall_s)
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/fhir+json\r\n"
                             b"Content-Length: %d\r\n\r\n%s" % (len(_ANSWER), _ANSWER))


def _read_request(reader: BinaryIO) -> tuple[str, str, bytes] | None:
    line = reader.readline()
    if not line:
        return None
    method, path, _ = line.decode().split(" ", 2)
    length = 0
    while (header := reader.readline()) not in (b"\r\n", b""):
        name, _, value = header.decode().partition(":")
        if name.strip().lower() == "content-length":
            length = int(value)
    return method, path, reader.read(length)


@pytest.fixture
def server() -> Iterator[_Server]:
    listener = socket.create_server(("127.0.0.1", 0))
    srv = _Server(url=f"http://127.0.0.1:{listener.getsockname()[1]}")
    thread = threading.Thread(target=srv.serve, args=(listener,), daemon=True)
    thread.start()
    yield srv
    listener.shutdown(socket.SHUT_RDWR)  # wakes the accept
    listener.close()
    thread.join(timeout=5)


@pytest.mark.parametrize("reset", [False, True], ids=["closed", "reset"])
def test_a_get_on_a_connection_the_server_closed_goes_once_more_on_a_new_one(server: _Server, reset: bool) -> None:
    server.close_on, server.reset = 2, reset
    s = sessions.session()
    assert s.get(server.url + "/a", timeout=5).status_code == 200
    assert s.get(server.url + "/b", timeout=5).json()["status"] == "pass"
    assert [(c, m, p) for c, m, p, _ in server.seen] == [(1, "GET", "/a"), (1, "GET", "/b"), (2, "GET", "/b")]


def test_a_plain_session_fails_there(server: _Server) -> None:
    # what every client did before: the request fails though the server is up
    server.close_on = 2
    s = requests.Session()
    s.get(server.url + "/a", timeout=5)
    with pytest.raises(requests.ConnectionError) as caught:
        s.get(server.url + "/b", timeout=5)
    assert sessions.connection_aborted(caught.value)


def test_a_post_goes_again_only_where_its_session_allows(server: _Server) -> None:
    server.close_on = 2
    idempotent = sessions.session()
    idempotent.get(server.url + "/a", timeout=5)
    with pytest.raises(requests.ConnectionError):
        idempotent.post(server.url + "/op", json={"n": 1}, timeout=5)
    assert [m for _, m, _, _ in server.seen] == ["GET", "POST"]

    server.seen.clear()
    allowed = sessions.session({*sessions.IDEMPOTENT, "POST"})
    allowed.get(server.url + "/a", timeout=5)
    assert allowed.post(server.url + "/op", json={"n": 1}, timeout=5).status_code == 200
    posts = [(c, body) for c, m, _, body in server.seen if m == "POST"]
    assert len(posts) == 2 and posts[0][0] != posts[1][0]
    assert posts[0][1] == posts[1][1] == b'{"n": 1}'  # the same body, whole, on the new connection


def test_a_streamed_body_does_not_go_again(server: _Server) -> None:
    # it has been read by the first try; sending again would send nothing, or half of it
    server.close_on = 2
    allowed = sessions.session({*sessions.IDEMPOTENT, "POST"})
    allowed.get(server.url + "/a", timeout=5)
    with pytest.raises(requests.ConnectionError):
        allowed.post(server.url + "/op", data=iter([b"part one, ", b"part two"]), timeout=5)
    assert [m for _, m, _, _ in server.seen] == ["GET", "POST"]


def test_once_more_and_no_more(server: _Server) -> None:
    server.close_on = -1  # every request closed unanswered
    with pytest.raises(requests.ConnectionError):
        sessions.session().get(server.url + "/a", timeout=5)
    assert len(server.seen) == 2


def test_a_timeout_is_not_sent_again(server: _Server) -> None:
    # the server may still be working on it
    server.stall_s = 1.0
    with pytest.raises(requests.ReadTimeout):
        sessions.session().get(server.url + "/slow", timeout=0.2)
    assert len(server.seen) == 1


def test_a_refused_connection_is_not_a_closed_one() -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
    with pytest.raises(requests.ConnectionError) as caught:
        sessions.session().get(f"http://127.0.0.1:{port}/", timeout=2)
    assert not sessions.connection_aborted(caught.value)


def test_the_gateway_reaches_a_service_across_the_race(server: _Server) -> None:
    # health and an operation (POST) both survive; before, each answered fail / 503
    server.close_on = 2
    client = ServiceClient(Settings(eligibility_url=server.url))
    assert client.health("eligibility")["status"] == "pass"
    assert client.health("eligibility")["status"] == "pass"
    client = ServiceClient(Settings(eligibility_url=server.url))
    client.health("eligibility")
    assert client.call_json("eligibility", "evaluate", {"resourceType": "Parameters"}) == json.loads(_ANSWER)
    assert [m for _, m, _, _ in server.seen][-2:] == ["POST", "POST"]


def test_the_upstream_client_reads_again_but_does_not_post_again(server: _Server) -> None:
    server.close_on = 2
    client = FhirClient(server.url)
    client.read("Patient", "a")
    assert client.read("Patient", "b")["status"] == "pass"
    server.close_on, server.seen = -1, []  # the next request, on the connection now open
    with pytest.raises(FhirError) as caught:
        client.transaction({"resourceType": "Bundle", "type": "transaction"})
    assert caught.value.status == 503
    assert [m for _, m, _, _ in server.seen] == ["POST"]
