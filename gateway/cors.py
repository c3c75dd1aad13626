"""CORS for browser-based EHRs and SMART apps (W3C Fetch standard, "CORS protocol").

Only origins listed in ``CORS_ALLOWED_ORIGINS`` (comma-separated ``scheme://host[:port]``; empty =
none, the default) get ``Access-Control-Allow-Origin``, and only on the FHIR, CDS Hooks, page and
SMART configuration paths. A preflight (``OPTIONS`` with ``Origin`` and
``Access-Control-Request-Method``) from an allowed origin is answered 204 here, before
authentication (browsers send preflights without credentials); one from another origin gets 403.
No credentials mode: callers send bearer tokens in ``Authorization``, never cookies.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import Flask, Response, request

from netliver.fhir.outcome import FhirError
from netliver.settings import Settings

__all__ = ["ALLOWED_METHODS", "CORS_PATH_PREFIXES", "init_cors", "parse_origins"]

CORS_PATH_PREFIXES = ("/fhir", "/cds-services", "/app", "/.well-known/smart-configuration")
ALLOWED_METHODS = ("GET", "POST", "PUT", "DELETE", "OPTIONS")
ALLOWED_HEADERS = ("Authorization", "Content-Type", "Accept", "Prefer", "If-Match", "If-None-Match",
                   "If-None-Exist", "X-Request-ID")
EXPOSED_HEADERS = ("Location", "Content-Location", "ETag", "Last-Modified", "Retry-After", "WWW-Authenticate",
                   "X-Request-ID", "X-RateLimit-Limit", "X-RateLimit-Remaining")
#: Seconds a browser may cache a preflight answer.
MAX_AGE_S = 600


def parse_origins(text: str) -> frozenset[str]:
    """The allowed origins; ``ValueError`` for anything that is not ``scheme://host[:port]``."""
    origins = set()
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        parts = urlsplit(item)
        if item == "*" or parts.scheme not in ("http", "https") or not parts.netloc \
                or parts.path not in ("", "/") or parts.query or parts.fragment or "@" in parts.netloc:
            raise ValueError(f"CORS_ALLOWED_ORIGINS: {item!r} is not an origin (scheme://host[:port]); "
                             "list every origin, a wildcard is not accepted")
        origins.add(f"{parts.scheme}://{parts.netloc}".lower())
    return frozenset(origins)


def _covered(path: str) -> bool:
    return any(path == p or path.startswith(p + "/") for p in CORS_PATH_PREFIXES)


def init_cors(app: Flask, settings: Settings) -> None:
    """Answer preflights and add CORS headers on ``app`` (call before ``init_auth``)."""
    origins = parse_origins(settings.cors_allowed_origins)

    @app.before_request
    def _preflight() -> Response | None:
        if request.method != "OPTIONS" or not _covered(request.path):
            return None
        origin = request.headers.get("Origin")
        if origin is None or "Access-Control-Request-Method" not in request.headers:
            return None  # a plain OPTIONS: Flask answers it with Allow
        if origin.lower() not in origins:
            raise FhirError(403, "forbidden", f"the origin {origin[:100]!r} is not allowed (CORS_ALLOWED_ORIGINS)")
        resp = Response(status=204)
        resp.headers["Access-Control-Allow-Methods"] = ", ".join(ALLOWED_METHODS)
        resp.headers["Access-Control-Allow-Headers"] = ", ".join(ALLOWED_HEADERS)
        resp.headers["Access-Control-Max-Age"] = str(MAX_AGE_S)
        return resp

    @app.after_request
    def _headers(resp: Response) -> Response:
        if not origins or not _covered(request.path):
            return resp
        resp.vary.add("Origin")
        origin = request.headers.get("Origin")
        if origin is not None and origin.lower() in origins:
            resp.headers["Access-Control-Allow-Origin"] = origin
            resp.headers["Access-Control-Expose-Headers"] = ", ".join(EXPOSED_HEADERS)
        return resp
