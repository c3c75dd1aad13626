"""A WADO-RS answer read as a stream (:func:`multipart_parts`): the parts read by their
Content-Length, or searched for their delimiters when they give none, are the parts that were
sent, however the network cuts the stream; a wrong length, a cut answer or a length far past
what arrives is a ``ValueError``, never a wrong part or a huge allocation. Over real HTTP (a
server started here), a chunked answer and a content-coded one are read too."""

from __future__ import annotations

import gzip
import http.server
import io
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from hypothesis import given, settings
from hypothesis import strategies as st

from services.dosimetry.imaging import dicomweb
from services.dosimetry.imaging.dicomweb import _body_stream
from services.dosimetry.imaging.errors import ImagingError, PacsUnavailableError
from services.dosimetry.imaging.multipart import boundary_of, multipart_bodies, multipart_parts

BOUNDARY = b"netliver-9a8b7c6d"


def _message(parts: list[bytes], lengths: list[bool], preamble: bytes = b"", padding: bytes = b"") -> bytes:
    out = [preamble]
    for i, (part, with_length) in enumerate(zip(parts, lengths, strict=True)):
        out.append((b"\r\n" if i or preamble else b"") + b"--" + BOUNDARY + padding + b"\r\n")
        out.append(b"Content-Type: application/dicom\r\n")
        if with_length:
            out.append(f"Content-Length: {len(part)}\r\n".encode())
        out.append(b"\r\n" + part)
    out.append(b"\r\n--" + BOUNDARY + b"--" + padding + b"\r\n")
    return b"".join(out)


class _Pieces(io.RawIOBase):
    """A socket's reads: each at most the next of ``sizes`` bytes (then what is left)."""

    def __init__(self, data: bytes, sizes: list[int]) -> None:
        self._data, self._sizes, self._at = data, list(sizes), 0

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        size = min(len(b), self._sizes.pop(0) if self._sizes else len(b), len(self._data) - self._at)
        b[:size] = self._data[self._at:self._at + size]
        self._at += size
        return size


def _stream(data: bytes, sizes: list[int] | None = None, buffer: int = 64) -> io.BufferedReader:
    return io.BufferedReader(_Pieces(data, sizes or []), buffer)


@settings(max_examples=200, deadline=None)
@given(parts=st.lists(st.binary(max_size=400), min_size=1, max_size=6),
       lengths=st.lists(st.booleans(), min_size=6, max_size=6),
       sizes=st.lists(st.integers(1, 700), max_size=40),
       preamble=st.sampled_from([b"", b"a preamble line", b"two\r\npreamble lines"]),
       padding=st.sampled_from([b"", b" \t "]))
def test_the_parts_read_are_the_parts_sent_with_or_without_lengths(
        parts: list[bytes], lengths: list[bool], sizes: list[int], preamble: bytes, padding: bytes) -> None:
    parts = [p.replace(b"--" + BOUNDARY, b"") for p in parts]  # the sender's boundary is not in a part
    message = _message(parts, lengths[:len(parts)], preamble, padding)
    assert list(multipart_parts(_stream(message, sizes), BOUNDARY)) == parts
    # the searching reader agrees on the same message
    assert list(multipart_bodies([message], BOUNDARY)) == parts


def test_a_part_with_its_length_is_read_whole_not_searched() -> None:
    """A body that holds CRLF, dashes and the start of the delimiter is taken by its length."""
    tricky = b"\r\n--" + BOUNDARY[:-1] + b"\r\n\r\n--\n"
    message = _message([tricky, b"second"], [True, True])
    assert list(multipart_parts(_stream(message), BOUNDARY)) == [tricky, b"second"]


def test_a_part_is_given_as_soon_as_its_delimiter_has_arrived() -> None:
    message = _message([b"first", b"second"], [True, True])
    cut = message.index(b"second") - 2
    seen: list[bytes] = []

    class Waiting(_Pieces):
        def readinto(self, b: Any) -> int:
            if self._at >= cut:
                assert seen == [b"first"]  # given before the rest is read
            return super().readinto(b)

    reader = io.BufferedReader(Waiting(message, [cut]), 8)
    for body in multipart_parts(reader, BOUNDARY):
        seen.append(body)
    assert seen == [b"first", b"second"]


@pytest.mark.parametrize("with_length", [True, False])
@pytest.mark.parametrize("cut", [5, 30, 60, 75, -30, -8, -3])
def test_an_answer_cut_short_raises_instead_of_losing_parts(cut: int, with_length: bool) -> None:
    message = _message([b"x" * 20, b"y" * 20], [with_length, with_length])
    with pytest.raises(ValueError, match="truncated"):
        list(multipart_parts(_stream(message[:cut]), BOUNDARY))


@pytest.mark.parametrize("declared", [19, 21, 25])
def test_a_wrong_content_length_is_an_error_not_a_wrong_part(declared: int) -> None:
    message = _message([b"x" * 20, b"y" * 20], [True, True]).replace(b"Content-Length: 20", f"Content-Length: {declared}".encode(), 1)
    with pytest.raises(ValueError, match=f"Content-Length {declared}"):
        list(multipart_parts(_stream(message), BOUNDARY))


def test_a_length_far_past_what_arrives_is_truncated_not_allocated() -> None:
    """A Content-Length of 1 TiB on a short answer: read in pieces, so the answer's end is met
    (a single read of that size would ask for 1 TiB first)."""
    message = _message([b"x" * 20], [True]).replace(b"Content-Length: 20", b"Content-Length: 1099511627776")
    with pytest.raises(ValueError, match="truncated"):
        list(multipart_parts(_stream(message), BOUNDARY))


def test_an_answer_of_no_parts_gives_none() -> None:
    assert list(multipart_parts(_stream(b"--" + BOUNDARY + b"--\r\n"), BOUNDARY)) == []


def test_a_non_digit_length_is_searched_for_instead() -> None:
    message = _message([b"abc", b"defg"], [True, True]).replace(b"Content-Length: 3", b"Content-Length: three")
    assert list(multipart_parts(_stream(message), BOUNDARY)) == [b"abc", b"defg"]


# -- over HTTP ------------------------------------------------------------------------------------

_PARTS = [bytes(range(256)) * 40, b"\r\n--" + BOUNDARY[:-2] + b"\r\n" * 3, b"", b"last"]


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        body = _message(_PARTS, [True, False, True, True], b"preamble")
        self.send_response(200)
        self.send_header("Content-Type", f'multipart/related; type="application/dicom"; boundary={BOUNDARY.decode()}')
        if self.path == "/gzip":
            body = gzip.compress(body)
            self.send_header("Content-Encoding", "gzip")
        if self.path == "/chunked":
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for start in range(0, len(body), 777):
                piece = body[start:start + 777]
                self.wfile.write(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
            self.wfile.write(b"0\r\n\r\n")
            return
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_args: object) -> None:
        pass


def _serving(handler: type[http.server.BaseHTTPRequestHandler]) -> Iterator[str]:
    """A server of ``handler`` on a free loopback port, its URL, stopped after."""
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()
    thread.join()


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    yield from _serving(_Handler)


@pytest.mark.parametrize("path", ["/plain", "/chunked"])
def test_an_http_answer_is_read_as_a_stream(server: str, path: str) -> None:
    with requests.get(server + path, stream=True, timeout=10, headers={"Accept-Encoding": "identity"}) as response:
        stream = _body_stream(response)
        assert stream is not None
        assert list(multipart_parts(stream, boundary_of(response.headers["Content-Type"]) or b"")) == _PARTS


def test_a_content_coded_answer_is_left_to_the_decoding_reader(server: str) -> None:
    with requests.get(server + "/gzip", stream=True, timeout=10) as response:
        assert _body_stream(response) is None
        assert list(multipart_bodies(response.iter_content(1024), BOUNDARY)) == _PARTS


@pytest.mark.parametrize("path", ["/plain", "/chunked"])
def test_without_the_standard_librarys_response_urllib3s_is_read_buffered(
        server: str, path: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dicomweb, "_STDLIB_RESPONSE", type("AnotherResponse", (), {}))
    with requests.get(server + path, stream=True, timeout=10, headers={"Accept-Encoding": "identity"}) as response:
        stream = _body_stream(response)
        assert isinstance(stream, io.BufferedReader)
        assert list(multipart_parts(stream, BOUNDARY)) == _PARTS


# -- a PACS whose answer breaks off -----------------------------------------------------------------

_BROKEN_PART = b"\x01" * 4000


class _BreakingHandler(http.server.BaseHTTPRequestHandler):
    """Sends one whole part and half of the next, then stalls (``/stall``), closes the connection
    short of the Content-Length it declared (``/short``), or closes an answer of no declared length
    (``/close``); or sends, whole and of a declared length, an answer whose first part declares
    ten bytes fewer than it holds (``/wrong``)."""

    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        body = _message([_BROKEN_PART, _BROKEN_PART], [True, True])
        cut = len(body) - 3000
        if "/wrong" in self.path:
            body = body.replace(f"Content-Length: {len(_BROKEN_PART)}".encode(),
                                f"Content-Length: {len(_BROKEN_PART) - 10}".encode(), 1)
            cut = len(body)
        self.send_response(200)
        self.send_header("Content-Type", f'multipart/related; type="application/dicom"; boundary={BOUNDARY.decode()}')
        if "/close" not in self.path:
            self.send_header("Content-Length", str(len(body)))
        else:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body[:cut])
        self.wfile.flush()
        if "/stall" in self.path:
            time.sleep(1.5)
        self.close_connection = True

    def log_message(self, *_args: object) -> None:
        pass


@pytest.fixture(scope="module")
def breaking_server() -> Iterator[str]:
    yield from _serving(_BreakingHandler)


def _read_all(client: dicomweb.PacsClient) -> list[tuple[bytes, ...]]:
    """The series' parts, with the error mapping of a job's WADO-RS reads."""
    return dicomweb._call("WADO-RS series 1.2.4", lambda: list(client.iter_series_parts("1.2.3", "1.2.4")))


@pytest.mark.parametrize("buffered", [False, True])
@pytest.mark.parametrize("how", ["stall", "short"])
def test_an_answer_broken_off_by_the_connection_is_the_pacs_unavailable(
        breaking_server: str, how: str, buffered: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """A read timeout, or a connection closed short of the length the PACS declared, is a PACS
    failure (503, retried), not a malformed instance."""
    if buffered:
        monkeypatch.setattr(dicomweb, "_STDLIB_RESPONSE", type("AnotherResponse", (), {}))
    client = dicomweb.make_client(f"{breaking_server}/{how}", timeout_s=0.3)
    with pytest.raises(PacsUnavailableError, match=r"WADO-RS series 1\.2\.4"):
        _read_all(client)


@pytest.mark.parametrize("buffered", [False, True])
def test_an_answer_of_no_declared_length_cut_short_is_a_truncated_answer(
        breaking_server: str, buffered: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    if buffered:
        monkeypatch.setattr(dicomweb, "_STDLIB_RESPONSE", type("AnotherResponse", (), {}))
    client = dicomweb.make_client(f"{breaking_server}/close", timeout_s=5)
    with pytest.raises(ImagingError, match="truncated") as raised:
        _read_all(client)
    assert not isinstance(raised.value, PacsUnavailableError)


@pytest.mark.parametrize("buffered", [False, True])
def test_a_wrong_part_length_in_a_whole_answer_is_a_malformed_answer_not_the_pacs_unavailable(
        breaking_server: str, buffered: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """The answer has bytes left when the wrong length is found: it did not end short, so this is
    not a connection failure to retry."""
    if buffered:
        monkeypatch.setattr(dicomweb, "_STDLIB_RESPONSE", type("AnotherResponse", (), {}))
    client = dicomweb.make_client(f"{breaking_server}/wrong", timeout_s=5)
    with pytest.raises(ImagingError, match=f"Content-Length {len(_BROKEN_PART) - 10}") as raised:
        _read_all(client)
    assert not isinstance(raised.value, PacsUnavailableError)


# -- the connection kept for the next series ------------------------------------------------------

class _CountingHandler(_Handler):
    """:class:`_Handler`'s answer (chunked under ``/chunked/``), counting the connections made."""

    connections = 0

    def setup(self) -> None:
        type(self).connections += 1
        super().setup()

    def do_GET(self) -> None:
        self.path = "/chunked" if self.path.startswith("/chunked/") else "/plain"
        super().do_GET()


@pytest.mark.parametrize("buffered", [False, True])
@pytest.mark.parametrize("coding", ["plain", "chunked"])
def test_the_series_of_a_job_share_one_connection(coding: str, buffered: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """Read past urllib3, an answer looked unfinished to it and its connection was closed with it:
    a new connection for each series. Read to its end, the connection goes back to the pool."""
    if buffered:
        monkeypatch.setattr(dicomweb, "_STDLIB_RESPONSE", type("AnotherResponse", (), {}))
    _CountingHandler.connections = 0
    for url in _serving(_CountingHandler):
        client = dicomweb.make_client(f"{url}/{coding}", timeout_s=5)
        for _ in range(3):
            assert list(client.iter_series_parts("1.2.3", "1.2.4")) == _PARTS
    assert _CountingHandler.connections == 1
