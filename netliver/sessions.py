"""HTTP sessions that send a request once more when the server had just closed the pooled
connection it went out on.

A server closes an idle keep-alive connection after its own timeout (gunicorn: 2 s). A client
that reuses that connection in the same instant sends into a socket the server is closing and
gets no answer: ``RemoteDisconnected`` or ``ConnectionResetError``, which ``requests`` gives as a
``ConnectionError`` around urllib3's ``ProtocolError`` ("Connection aborted."). With ``requests``'
default of no retries this failed about one request in forty that came within a few
milliseconds of the timeout: a gateway call to a service answered 503, ``/health`` said "fail",
a job's write-back was put off and the job run again.

RFC 9110 §9.2.2 lets a client send an idempotent request again after such a failure. The
adapter here does it once, on a new connection, for the methods its session is given: the
idempotent ones by default, and POST as well where the server's POST is known to be safe to
repeat (the services' operations compute and write nothing; the gateway's job calls are
checked against the job's state). Nothing else is sent again: a refused connection, a timeout
(the server may still be working), an answer that breaks off after its headers, or a request
whose body was streamed (it has been read).

urllib3's own ``Retry`` is not used for this: a read retry there also resends after a read
timeout, and once its count is spent ``requests`` gives that timeout as a ``ConnectionError``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3.exceptions import ProtocolError

__all__ = ["IDEMPOTENT", "ResendOnClosedConnection", "connection_aborted", "session"]

_log = logging.getLogger("netliver.sessions")

#: The methods RFC 9110 §9.2.2 names idempotent (TRACE is never sent here).
IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})


def connection_aborted(exc: BaseException) -> bool:
    """Whether ``exc`` is a connection closed before any answer came (urllib3's
    ``ProtocolError``), as opposed to a refused connection or a timeout."""
    return (isinstance(exc, requests.ConnectionError) and not isinstance(exc, requests.Timeout)
            and bool(exc.args) and isinstance(exc.args[0], ProtocolError))


class ResendOnClosedConnection(HTTPAdapter):
    """An adapter that sends a request of ``methods`` once more when its connection was closed
    before any answer came."""

    def __init__(self, methods: Iterable[str] = IDEMPOTENT) -> None:
        super().__init__()
        self.methods = frozenset(m.upper() for m in methods)

    def send(self, request: requests.PreparedRequest, stream: bool = False,
             timeout: float | tuple[float, float] | tuple[float, None] | None = None,
             verify: bool | str = True, cert: bytes | str | tuple[bytes | str, bytes | str] | None = None,
             proxies: Mapping[str, str] | None = None) -> requests.Response:
        kwargs: dict[str, Any] = {"stream": stream, "timeout": timeout, "verify": verify, "cert": cert,
                                  "proxies": proxies}
        try:
            return super().send(request, **kwargs)
        except requests.ConnectionError as exc:
            if (request.method or "").upper() not in self.methods or not connection_aborted(exc):
                raise
            if not isinstance(request.body, (bytes, str, type(None))):
                raise  # a streamed body (a generator, a file) has been read and cannot go again
            # urllib3 has closed that connection; the pool gives a new one.
            _log.info("connection closed before an answer; sending once more",
                      extra={"method": request.method, "error": str(exc.args[0])[:200]})
            return super().send(request, **kwargs)


def session(methods: Iterable[str] = IDEMPOTENT) -> requests.Session:
    """A ``requests.Session`` whose requests of ``methods`` survive a closed pooled connection."""
    s = requests.Session()
    adapter = ResendOnClosedConnection(methods)
    s.mount("http://", adapter)
    s.mount("https://", adapter)
    return s
