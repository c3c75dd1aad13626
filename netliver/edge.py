"""The request edge: every request's path, query and JSON body are checked once, before a view
(or anything it calls) walks them.

:func:`init_edge` registers the check on an app; put it after authentication so an anonymous
caller costs no parsing (the URL length, ``MAX_URL_CHARS`` → 414, is checked before all else). A JSON body (``POST``/``PUT``/``PATCH`` with a JSON media type) is
parsed and checked by :func:`netliver.web.read_json_body` (limits of :mod:`netliver.json_edge`)
and cached for the view; a control character in the path or a query parameter is a 400 (FHIR
strings and ids hold none, and PostgreSQL refuses NUL in text).
"""

from __future__ import annotations

import re

from flask import Flask, current_app, request

from netliver.fhir.outcome import FhirError
from netliver.settings import Settings

__all__ = ["init_edge"]

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


def check_url() -> None:
    """414 for a URL longer than ``MAX_URL_CHARS`` (before authentication: it costs nothing)."""
    settings: Settings = current_app.config["NETLIVER_SETTINGS"]
    target = request.environ.get("RAW_URI") or request.full_path
    if len(target) > settings.max_url_chars:
        raise FhirError(414, "too-long", f"the URL is longer than {settings.max_url_chars} characters (limit MAX_URL_CHARS)")


def check_request() -> None:
    """Refuse control characters in the path and query, then parse and check a JSON body."""
    from netliver.web import ACCEPTED_JSON_TYPES, raw_body, read_json_body
    if _CONTROL.search(request.path):
        raise FhirError(400, "invalid", "the path holds a control character")
    for name, value in request.args.items(multi=True):
        if _CONTROL.search(name) or _CONTROL.search(value):
            raise FhirError(400, "invalid", "a query parameter holds a control character",
                            name if not _CONTROL.search(name) else None)
    if request.method in _BODY_METHODS and (request.mimetype or "").lower() in ACCEPTED_JSON_TYPES:
        if request.content_length == 0 or not raw_body(request.max_content_length).strip():
            return  # no body: the view says whether it needs one
        read_json_body()


def init_edge(app: Flask) -> None:
    """Register the checks: the URL length first of all, the rest where this is called."""
    app.before_request_funcs.setdefault(None, []).insert(0, check_url)
    app.before_request(check_request)
