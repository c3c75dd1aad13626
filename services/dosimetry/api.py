"""HTTP boundary of the dosimetry service: read the body, call the operation, answer.

``POST /operations/sirt-activity`` (docs/ARCHITECTURE.md "Internal service protocol"): the
caller's ``Parameters`` in, ``{"output": Parameters, "write": [Observation, Provenance]}`` out.
Bad input is a 422 OperationOutcome naming the parameter; a contraindicated plan is a 200 with
``status`` ``contraindicated``.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response

from netliver.fhir.models import parse_resource
from netliver.web import fhir_response, read_fhir_body, read_json_body
from services.dosimetry.fhir_in import RECORD
from services.dosimetry.operation import dose_comparison, sirt_activity

__all__ = ["blueprint"]

blueprint = Blueprint("dosimetry", __name__)


def _sirt_parameters() -> dict[str, Any]:
    """The request's Parameters, validated with the pinned models but for the resources of its
    ``record`` parameters: those are the patient's results the gateway read from its own store
    (a caller cannot send them, the gateway refuses it), validated when they were stored, and
    read here field by field (:func:`~services.dosimetry.fhir_in.dose_records`). Validating
    them again was two fifths of the service's time for a patient with one earlier plan."""
    data = read_json_body()
    params = data.get("parameter") if isinstance(data, dict) else None
    checked = data
    if isinstance(params, list):
        checked = {**data, "parameter": [p for p in params if not (isinstance(p, dict) and p.get("name") == RECORD)]}
    parse_resource(checked, "Parameters")
    result: dict[str, Any] = data
    return result


@blueprint.post("/operations/sirt-activity")
def sirt_activity_view() -> Response:
    return fhir_response(sirt_activity(_sirt_parameters()))


@blueprint.post("/operations/dose-comparison")
def dose_comparison_view() -> Response:
    return fhir_response(dose_comparison(read_fhir_body("Parameters")))
