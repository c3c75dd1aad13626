"""HTTP boundary of the response service: parse, call the domain, map to FHIR.

``POST /operations/tumor-response?criteria=...`` (docs/ARCHITECTURE.md "Internal service
protocol"): the body is the caller's Bundle, the answer ``{"output": <collection Bundle>,
"write": [...]}``. Optional query parameters (defaults in docs/response.md):
``confirmationDays`` (0), ``minSdDays`` (42), ``biochemicalThresholdPercent`` (50),
``treatedLesions`` (``measure`` | ``not-evaluable``; default ``measure``).
"""

from __future__ import annotations

from flask import Blueprint, current_app, jsonify, request
from flask.typing import ResponseReturnValue

from netliver.web import read_fhir_body
from services.response.operation import run_tumor_response

__all__ = ["blueprint"]

blueprint = Blueprint("response", __name__)


@blueprint.post("/operations/tumor-response")
def tumor_response() -> ResponseReturnValue:
    body = read_fhir_body("Bundle")
    version = str(current_app.config.get("NETLIVER_VERSION", "0"))
    return jsonify(run_tumor_response(body, request.args, version))
