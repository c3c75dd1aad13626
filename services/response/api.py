"""HTTP boundary of the response service: parse, call the domain, map to FHIR.

``POST /operations/tumor-response?criteria=...`` (docs/ARCHITECTURE.md "Internal service
protocol"): the body is the caller's Bundle, the answer ``{"output": <collection Bundle>,
"write": [...]}``. Optional query parameters (defaults in docs/response.md):
``confirmationDays`` (0), ``minSdDays`` (42), ``biochemicalThresholdPercent`` (50),
``treatedLesions`` (``measure`` | ``not-evaluable``; default ``measure``).
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any

from flask import Blueprint, current_app, jsonify, request
from flask.typing import ResponseReturnValue

from netliver.fhir.builders import OperationResult
from netliver.fhir.outcome import FhirError
from netliver.web import read_fhir_body
from services.response.domain.biochemical import DEFAULT_THRESHOLD_PERCENT, biochemical_responses
from services.response.domain.bor import BorSettings
from services.response.domain.criteria import CRITERIA, Evaluation, evaluate
from services.response.domain.ctcae import worst_grades
from services.response.domain.model import ResponseInputError
from services.response.fhir_mapping import CaseReportForm, build_outputs, parse_input

__all__ = ["blueprint", "run_tumor_response"]

blueprint = Blueprint("response", __name__)

#: Criteria shown on the `003_…` Table 1 case-report form (its four columns, then the
#: viable-tumour criteria used after liver-directed therapy).
CRF_CRITERIA = ("recist-1.1", "choi", "irecist", "percist", "mrecist", "easl")


def _int_param(args: Any, name: str, default: int) -> int:
    raw = args.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise FhirError(422, "value", f"{name} must be a whole number of days, not {raw!r}", name) from None
    if value < 0:
        raise FhirError(422, "value", f"{name} must not be negative", name)
    return value


def _settings(args: Any) -> dict[str, Any]:
    criterion = args.get("criteria") or "recist-1.1"
    if criterion not in CRITERIA:
        raise FhirError(422, "not-supported",
                        f"unknown criterion {criterion!r}; expected one of {', '.join(CRITERIA)}", "criteria")
    raw_threshold = args.get("biochemicalThresholdPercent")
    threshold = DEFAULT_THRESHOLD_PERCENT
    if raw_threshold:
        try:
            threshold = Decimal(raw_threshold)
        except InvalidOperation:
            threshold = Decimal(-1)
        if not threshold.is_finite() or threshold <= 0:
            raise FhirError(422, "value", "biochemicalThresholdPercent must be a positive number",
                            "biochemicalThresholdPercent")
    treated = args.get("treatedLesions")
    if treated not in (None, "", "not-evaluable", "measure"):
        raise FhirError(422, "value", "treatedLesions must be not-evaluable or measure", "treatedLesions")
    return {
        "criterion": criterion,
        "confirmation_days": _int_param(args, "confirmationDays", 0),
        "min_sd_days": _int_param(args, "minSdDays", 42),
        "biochemical_threshold_percent": str(threshold),
        "treated_lesions": treated or "default",
    }


def run_tumor_response(body: dict[str, Any], args: Any, version: str) -> OperationResult:
    """The whole operation without Flask: settings, parse, evaluate, map. Raises ``FhirError``."""
    settings = _settings(args)
    criterion = settings["criterion"]
    parsed = parse_input(body, settings)
    bor = BorSettings(settings["confirmation_days"], settings["min_sd_days"])
    exclude = None if settings["treated_lesions"] == "default" else settings["treated_lesions"] == "not-evaluable"
    try:
        evaluation = evaluate(criterion, parsed.assessments, parsed.treatments, bor=bor,
                              exclude_treated=exclude)
    except ResponseInputError as exc:
        raise FhirError(422, "value", str(exc), exc.element) from None
    others: dict[str, Evaluation | str] = {}
    for name in CRF_CRITERIA:
        if name == criterion:
            others[name] = evaluation
            continue
        try:
            others[name] = evaluate(name, parsed.assessments, parsed.treatments, bor=bor)
        except ResponseInputError as exc:
            others[name] = str(exc)
    baseline = evaluation.result.baseline_date
    markers = biochemical_responses(parsed.markers, baseline,
                                    Decimal(settings["biochemical_threshold_percent"]))
    after = sorted(t.performed for t in parsed.treatments if t.performed > baseline)
    grades = worst_grades(parsed.labs, after[0] if after else baseline)
    output, write = build_outputs(parsed, criterion, evaluation, markers, grades,
                                  CaseReportForm(others), settings=settings, version=version)
    return OperationResult(output=output, write=write)


@blueprint.post("/operations/tumor-response")
def tumor_response() -> ResponseReturnValue:
    body = read_fhir_body("Bundle")
    version = str(current_app.config.get("NETLIVER_VERSION", "0"))
    return jsonify(run_tumor_response(body, request.args, version))
