"""The bodies of a ``multipart/related`` answer (a WADO-RS series), each given as it completes.

RFC 2046 5.1.1: the body is an optional preamble, then parts each opened by a delimiter line
``--boundary`` and headers ending in an empty line, and a close delimiter ``--boundary--``; a
delimiter after the first is preceded by CRLF, which belongs to it. The chunks of the answer are
gathered in one buffer that is searched from where the last search stopped and compacted only
when its consumed half is large, so each instance is copied once out of it (a CT of 256 instances
of 0.5 MB costs two copies, not the four of a general reader).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

__all__ = ["boundary_of", "multipart_bodies"]

_COMPACT_BYTES = 1 << 22


def boundary_of(content_type: str) -> bytes | None:
    """The boundary parameter of a ``multipart/*`` Content-Type (quoted or not), or None."""
    media_type, _, parameters = content_type.partition(";")
    if not media_type.strip().lower().startswith("multipart/"):
        return None
    for parameter in parameters.split(";"):
        name, _, value = parameter.partition("=")
        if name.strip().lower() == "boundary" and value.strip():
            return value.strip().strip('"').encode("utf-8")
    return None


def multipart_bodies(chunks: Iterable[bytes], boundary: bytes) -> Iterator[bytes]:
    """Each part's body, in order, as soon as the delimiter after it has arrived. A message that
    ends before its close delimiter raises ``ValueError`` (a truncated answer loses no part
    silently)."""
    delimiter = b"--" + boundary
    closing = b"\r\n" + delimiter
    buffer = bytearray()
    position = 0  # where the unread data starts
    scan = 0  # where to resume looking for the end of the current part's body
    opened = False
    closed = False
    for chunk in chunks:
        if closed:
            break
        buffer += chunk
        while True:
            if not opened:
                first = buffer.find(delimiter, position)
                if first < 0:
                    position = max(position, len(buffer) - len(delimiter))
                    break
                position, opened = first + len(delimiter), True
            if len(buffer) - position < 2:
                break
            if buffer[position:position + 2] == b"--":
                closed = True
                break
            headers_end = buffer.find(b"\r\n\r\n", position)
            if headers_end < 0:
                break
            body = headers_end + 4
            end = buffer.find(closing, max(body, scan))
            if end < 0:
                scan = max(body, len(buffer) - len(closing) + 1)
                break
            yield bytes(memoryview(buffer)[body:end])
            position = scan = end + len(closing)
        if position > _COMPACT_BYTES and position > len(buffer) // 2:
            del buffer[:position]
            scan -= position
            position = 0
    if not closed:
        raise ValueError("the multipart answer ended before its close delimiter (truncated)")
