"""Serve a WSGI app (a Flask app of this repository, or a guard around one) over real HTTP on a
free loopback port in a thread, for tests that need a server other code reaches by URL."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from types import TracebackType
from typing import Any

from werkzeug.serving import make_server

__all__ = ["BearerGuard", "ServedApp"]

Wsgi = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class ServedApp:
    """``with ServedApp(app) as served: requests.get(served.url + "/health")``."""

    def __init__(self, app: Wsgi) -> None:
        self.server = make_server("127.0.0.1", 0, app, threaded=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02},
                                       daemon=True)

    def __enter__(self) -> ServedApp:
        self.thread.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.server.shutdown()
        self.thread.join(5)
        self.server.server_close()


class BearerGuard:
    """WSGI middleware playing an EHR's FHIR server's access control: every request needs
    ``Authorization: Bearer <token>`` (401 otherwise); each request's method, path and query
    are recorded in ``seen``."""

    def __init__(self, app: Wsgi, token: str) -> None:
        self.app = app
        self.token = token
        self.seen: list[tuple[str, str]] = []
        self.lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        target = environ.get("PATH_INFO", "") + ("?" + environ["QUERY_STRING"] if environ.get("QUERY_STRING") else "")
        with self.lock:
            self.seen.append((environ["REQUEST_METHOD"], target))
        if environ.get("HTTP_AUTHORIZATION") != f"Bearer {self.token}":
            start_response("401 Unauthorized", [("Content-Type", "application/fhir+json")])
            return [b'{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"login"}]}']
        return self.app(environ, start_response)
