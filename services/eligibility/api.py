"""HTTP boundary of the eligibility service: parse, call the domain, map to FHIR.

- ``POST /operations/evaluate-eligibility[?date=YYYY-MM-DD]`` (body: Bundle) →
  ``{"output": <collection Bundle>, "write": [Observations, DiagnosticReport, Provenance]}``
  (docs/ARCHITECTURE.md "Internal service protocol").
- ``POST /operations/cds-cards[?date=YYYY-MM-DD]`` (body: Bundle of the patient's resources) →
  ``{"cards": [...]}`` in CDS Hooks 2.0 card format.
"""

from __future__ import annotations

from datetime import date

from flask import Blueprint, Response, request

from netliver.web import fhir_response, read_fhir_body
from services.eligibility.cds_cards import eligibility_cards
from services.eligibility.fhir_in import evaluation_date, input_digest
from services.eligibility.operation import evaluate_bundle, evaluate_eligibility

__all__ = ["blueprint"]

blueprint = Blueprint("eligibility", __name__)


@blueprint.post("/operations/evaluate-eligibility")
def evaluate() -> Response:
    date_given = evaluation_date(request.args)
    bundle = read_fhir_body("Bundle")
    return fhir_response(evaluate_eligibility(bundle, date_given, validated=True))


@blueprint.post("/operations/cds-cards")
def cds_cards() -> Response:
    date_given = evaluation_date(request.args)
    bundle = read_fhir_body("Bundle")
    evaluation = evaluate_bundle(bundle, date_given or date.today(), validated=True)
    cards = eligibility_cards(evaluation, input_digest(bundle, date_given))
    return fhir_response({"cards": cards})
