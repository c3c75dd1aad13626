"""The Flask base shared by the gateway and the services.

:func:`create_base_app` builds an app whose every error is an ``OperationOutcome`` with the
contract's status (never an HTML page or a stack trace); :func:`read_fhir_body` parses a request
body with the contract's 400/413/415 rules; :func:`fhir_response` answers FHIR JSON.

A body the app answers without reading (413 above ``MAX_BODY_BYTES``, 401, 429...) is read and
discarded, within bounds, before the answer goes out: HTTP clients such as ``requests`` and
``urllib`` send the whole body before they read, and a server that closes a connection with
unread data makes the kernel reset it, so they would see a broken pipe instead of the answer
(RFC 9112 section 9.6, tear-down: close in stages, reading what the client still sends).
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import time
import uuid
from collections.abc import Iterable, Mapping
from typing import Any

from flask import Blueprint, Flask, Response, current_app, g, has_request_context, request
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from netliver.fhir.outcome import FhirError
from netliver.json_edge import JsonLimits, check_structure, parse_json
from netliver.settings import Settings

__all__ = [
    "ACCEPTED_JSON_TYPES",
    "FHIR_JSON",
    "create_base_app",
    "create_service_app",
    "discard_unread_body",
    "fhir_response",
    "raw_body",
    "read_fhir_body",
    "read_json_body",
]

FHIR_JSON = "application/fhir+json"
ACCEPTED_JSON_TYPES = {"application/fhir+json", "application/json", "application/json+fhir"}
_log = logging.getLogger("netliver.web")

_STATUS_CODES = {
    400: "invalid", 401: "login", 403: "forbidden", 404: "not-found", 405: "not-supported",
    406: "not-supported", 409: "conflict", 410: "deleted", 412: "conflict", 413: "too-long", 414: "too-long", 431: "too-long",
    415: "not-supported", 422: "processing", 429: "throttled", 503: "transient",
}


def fhir_response(resource: Mapping[str, Any] | list[Any], status: int = 200,
                  headers: Mapping[str, str] | None = None) -> Response:
    if has_request_context():
        g.response_resource = resource  # what the answer is about, for the audit trail
    body = json.dumps(resource, ensure_ascii=False, separators=(",", ":"))
    return Response(body, status=status, headers=dict(headers or {}), mimetype=FHIR_JSON)


def error_response(err: FhirError) -> Response:
    return fhir_response(err.to_fhir(), err.status, err.headers)


def raw_body(limit: int | None) -> bytes:
    """The request body (read once, cached): 400 when the transfer is malformed, 413 above ``limit``."""
    try:
        raw = request.get_data(cache=True)
        # Without a Content-Length (chunked) the stream stops at the limit: one byte more means
        # the body was larger (werkzeug raises RequestEntityTooLarge on that read).
        larger = limit is not None and (len(raw) > limit or (len(raw) == limit and _more_after_limit()))
    except HTTPException:
        raise
    except Exception as exc:  # e.g. gunicorn's InvalidChunkSize from a malformed chunked body
        _log.info("unreadable body", extra={"path": request.path, "error": type(exc).__name__})
        raise FhirError(400, "invalid", "the body could not be read (malformed transfer encoding)") from None
    if larger:
        raise FhirError(413, "too-long", f"the body is larger than {limit} bytes (limit MAX_BODY_BYTES)")
    return raw


#: Bounds of the discarding of an unread body: at most this many bytes, this long in all, and
#: this long without data. Past them the connection is closed as before.
DISCARD_MAX_BYTES = 256 * 1024 * 1024
DISCARD_MAX_S = 15.0
DISCARD_IDLE_S = 2.0
_DISCARD_BLOCK = 256 * 1024


def discard_unread_body(environ: Mapping[str, Any], max_bytes: int = DISCARD_MAX_BYTES,
                        max_s: float = DISCARD_MAX_S, idle_s: float = DISCARD_IDLE_S) -> int:
    """Read and drop what is left of the request body; returns the bytes dropped.

    Reads the WSGI input stream itself, and only when the server ends that stream at the body's
    end (``wsgi.input_terminated``, as gunicorn does for Content-Length and chunked bodies;
    elsewhere a read past the body would wait for the client's next request). An already read
    body yields nothing; a declared length over ``max_bytes`` is not read at all. Under gunicorn
    each read waits at most ``idle_s`` (the socket's timeout, restored afterwards)."""
    length = environ.get("CONTENT_LENGTH") or ""
    chunked = "chunked" in str(environ.get("HTTP_TRANSFER_ENCODING", "")).lower()
    if not chunked and (not length.isdigit() or int(length) == 0 or int(length) > max_bytes):
        return 0
    stream = environ.get("wsgi.input")
    if stream is None or not environ.get("wsgi.input_terminated"):
        return 0
    sock = environ.get("gunicorn.socket")
    prior = sock.gettimeout() if isinstance(sock, socket.socket) else None
    deadline = time.monotonic() + max_s
    dropped = 0
    try:
        while dropped < max_bytes:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            if isinstance(sock, socket.socket):
                sock.settimeout(min(idle_s, remaining))
            block = stream.read(min(_DISCARD_BLOCK, max_bytes - dropped))
            if not block:
                break
            dropped += len(block)
    except (OSError, ValueError):  # timeout, reset or a malformed chunk: the connection closes
        pass
    finally:
        if isinstance(sock, socket.socket):
            with contextlib.suppress(OSError):
                sock.settimeout(prior)
    return dropped


def read_json_body(max_bytes: int | None = None) -> Any:
    """The request body as JSON: 415 for another media type, 413 above the limit, 400 if not JSON
    or outside the edge limits (:mod:`netliver.json_edge`). Parsed and checked once per request."""
    if "json_body" in g:
        return g.json_body
    ctype = (request.mimetype or "").lower()
    if ctype not in ACCEPTED_JSON_TYPES:
        raise FhirError(415, "not-supported",
                        f"Content-Type must be application/fhir+json (or application/json), not {ctype or 'none'!r}")
    limit = max_bytes or request.max_content_length
    if limit is not None and request.content_length is not None and request.content_length > limit:
        raise FhirError(413, "too-long", f"the body is larger than {limit} bytes (limit MAX_BODY_BYTES)")
    raw = raw_body(limit)
    if not raw.strip():
        raise FhirError(400, "invalid", "the request has no body; a FHIR resource was expected")
    settings: Settings = current_app.config["NETLIVER_SETTINGS"]
    data = parse_json(raw, JsonLimits(settings.max_json_depth, settings.max_json_number_chars))
    from netliver.fhir.models import is_resource_type

    check_structure(data, is_resource_type)
    g.json_body = data
    return data


def _more_after_limit() -> bool:
    try:
        return bool(request.stream.read(1))
    except RequestEntityTooLarge:
        return True


def read_fhir_body(expected: str | Iterable[str] | None = None) -> dict[str, Any]:
    """The request body as an R4 resource (validated with the pinned models), returned as JSON.

    The returned dict is the caller's JSON (not a model round-trip: no defaults added, nothing
    dropped); numbers are read as JSON numbers (1.50 becomes 1.5).
    """
    from netliver.fhir.models import parse_resource

    data = read_json_body()
    parse_resource(data, expected)
    result: dict[str, Any] = data
    return result


def create_base_app(name: str, version: str, settings: Settings) -> Flask:
    """A Flask app that speaks OperationOutcome for every error."""
    app = Flask(name)
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    app.config["NETLIVER_SETTINGS"] = settings
    app.config["NETLIVER_SERVICE"] = name
    app.config["NETLIVER_VERSION"] = version
    app.json.sort_keys = False  # type: ignore[attr-defined]

    @app.before_request
    def _start() -> None:
        g.request_id = request.headers.get("X-Request-ID") or uuid.uuid4().hex
        g.started = time.perf_counter()

    @app.after_request
    def _finish(resp: Response) -> Response:
        if resp.status_code >= 400:
            discard_unread_body(request.environ)
        resp.headers["X-Request-ID"] = g.get("request_id", "")
        elapsed_ms = (time.perf_counter() - g.get("started", time.perf_counter())) * 1000
        _log.info("request", extra={"method": request.method, "path": request.path,
                                    "status": resp.status_code, "ms": round(elapsed_ms, 1),
                                    "request_id": g.get("request_id")})
        return resp

    @app.errorhandler(FhirError)
    def _fhir_error(err: FhirError) -> Response:
        return error_response(err)

    @app.errorhandler(RequestEntityTooLarge)
    def _too_large(err: RequestEntityTooLarge) -> Response:
        return error_response(FhirError(413, "too-long", f"the body is larger than {settings.max_body_bytes} bytes"))

    @app.errorhandler(HTTPException)
    def _http_error(err: HTTPException) -> Response:
        status = err.code or 500
        code = _STATUS_CODES.get(status, "exception")
        diag = err.description or err.name
        if status == 404:
            diag = f"unknown resource or operation: {request.method} {request.path}"
        elif status == 405:
            status, diag = 405, f"{request.method} is not supported on {request.path}"
        return error_response(FhirError(status, code, diag))

    @app.errorhandler(Exception)
    def _unexpected(err: Exception) -> Response:
        _log.exception("unhandled error", extra={"path": request.path, "request_id": g.get("request_id")})
        return error_response(FhirError(500, "exception",
                                        f"internal error (request id {g.get('request_id', '?')}); nothing was written"))

    return app


def create_service_app(name: str, version: str, blueprint: Blueprint, settings: Settings | None = None) -> Flask:
    """The app of one internal service: logging, FHIR models loaded up front, the service's
    operations blueprint and ``/health``."""
    from netliver.edge import init_edge
    from netliver.fhir.models import preload
    from netliver.logs import configure_logging

    settings = settings or Settings.from_env()
    configure_logging(name, settings.log_level, settings.log_format)
    preload()
    app = create_base_app(name, version, settings)
    init_edge(app)
    app.register_blueprint(blueprint)

    @app.get("/health")
    def health() -> Response:
        return fhir_response({"status": "pass", "service": name, "version": version})

    return app
