"""HTTP boundary of the dosimetry service: read the body, call the operation, answer.

``POST /operations/sirt-activity`` (docs/ARCHITECTURE.md "Internal service protocol"): the
caller's ``Parameters`` in, ``{"output": Parameters, "write": [Observation, Provenance]}`` out.
Bad input is a 422 OperationOutcome naming the parameter; a contraindicated plan is a 200 with
``status`` ``contraindicated``.
"""

from __future__ import annotations

from flask import Blueprint, Response

from netliver.web import fhir_response, read_fhir_body
from services.dosimetry.operation import dose_comparison, sirt_activity

__all__ = ["blueprint"]

blueprint = Blueprint("dosimetry", __name__)


@blueprint.post("/operations/sirt-activity")
def sirt_activity_view() -> Response:
    return fhir_response(sirt_activity(read_fhir_body("Parameters")))


@blueprint.post("/operations/dose-comparison")
def dose_comparison_view() -> Response:
    return fhir_response(dose_comparison(read_fhir_body("Parameters")))
