"""HTTP boundary of the dosimetry service: parse, call the domain, map to FHIR.

``POST /operations/sirt-activity`` (docs/ARCHITECTURE.md "Internal service protocol"): the
caller's ``Parameters`` in, ``{"output": Parameters, "write": [Observation, Provenance]}`` out.
Bad input is a 422 OperationOutcome naming the parameter; a contraindicated plan is a 200 with
``status`` ``contraindicated``.
"""

from __future__ import annotations

from flask import Blueprint, Response

from netliver.web import fhir_response, read_fhir_body
from services.dosimetry import __version__
from services.dosimetry.domain.errors import DosimetryInputError
from services.dosimetry.domain.planning import plan_sirt
from services.dosimetry.fhir_mapping import input_error, parse_sirt_request, sirt_result

__all__ = ["blueprint"]

blueprint = Blueprint("dosimetry", __name__)


@blueprint.post("/operations/sirt-activity")
def sirt_activity() -> Response:
    body = read_fhir_body("Parameters")
    request = None
    try:
        request = parse_sirt_request(body)
        plan = plan_sirt(request.inputs)
    except DosimetryInputError as err:
        raise input_error(err, request) from None
    return fhir_response(sirt_result(plan, request, __version__))
