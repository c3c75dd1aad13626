"""gunicorn's threaded worker answering its own errors as FHIR OperationOutcomes.

gunicorn answers a request it cannot parse (request line or header too long, malformed chunked
body, bad header) with an HTML page before the app sees it. :class:`FhirErrorWorker` writes an
``OperationOutcome`` with the same status instead, and logs the error without the request line
(which may hold patient identifiers in its query).
"""

from __future__ import annotations

import json
import logging
from typing import Any

from gunicorn import util
from gunicorn.http import errors
from gunicorn.workers.gthread import ThreadWorker

__all__ = ["FhirErrorWorker", "error_answer"]

_log = logging.getLogger("netliver.serving")

#: gunicorn's parse errors → (status, reason phrase, OperationOutcome code, diagnostics).
_KNOWN: list[tuple[type[BaseException], int, str, str, str]] = [
    (errors.LimitRequestLine, 414, "URI Too Long", "too-long",
     "the request line is longer than the server accepts (MAX_URL_CHARS)"),
    (errors.LimitRequestHeaders, 431, "Request Header Fields Too Large", "too-long",
     "a header is longer than the server accepts (MAX_HEADER_CHARS), or there are too many headers"),
    (errors.UnsupportedTransferCoding, 501, "Not Implemented", "not-supported",
     "the transfer coding is not supported"),
    (errors.ExpectationFailed, 417, "Expectation Failed", "not-supported", "the Expect header is not supported"),
    (errors.ForbiddenProxyRequest, 403, "Forbidden", "forbidden", "proxy request forbidden"),
    ((errors.InvalidChunkSize, errors.ChunkMissingTerminator, errors.InvalidChunkExtension), 400,  # type: ignore[list-item]
     "Bad Request", "invalid", "the chunked body is malformed"),
    (errors.ParseException, 400, "Bad Request", "invalid", "the HTTP request is malformed"),
]


def error_answer(exc: BaseException) -> tuple[int, str, bytes]:
    """(status, reason, OperationOutcome JSON) for an error gunicorn met while reading a request."""
    status, reason, code, text = 500, "Internal Server Error", "exception", "internal error; nothing was written"
    for kinds, k_status, k_reason, k_code, k_text in _KNOWN:
        if isinstance(exc, kinds) and not isinstance(exc, errors.InvalidResponseHeader | errors.InvalidResponseHeaderName):
            status, reason, code, text = k_status, k_reason, k_code, k_text
            break
    outcome = {"resourceType": "OperationOutcome",
               "issue": [{"severity": "error", "code": code, "diagnostics": text}]}
    return status, reason, json.dumps(outcome).encode()


class FhirErrorWorker(ThreadWorker):  # type: ignore[misc]
    def handle_error(self, req: Any, client: Any, addr: Any, exc: BaseException) -> None:
        status, reason, body = error_answer(exc)
        if status == 500:
            _log.error("error handling a request", exc_info=exc)
        else:
            _log.warning("refused a malformed request", extra={"status": status, "error": type(exc).__name__})
        head = (f"HTTP/1.1 {status} {reason}\r\nConnection: close\r\n"
                f"Content-Type: application/fhir+json\r\nContent-Length: {len(body)}\r\n\r\n").encode("latin-1")
        try:
            util.write_nonblock(client, head + body)
        except Exception:  # the client went away: nothing to answer
            _log.debug("could not send the error answer")
