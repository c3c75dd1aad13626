"""The ``$tumor-response`` operation without HTTP: Bundle and query parameters in, ``OperationResult`` out.

Used by the Flask view (``api.py``), the demo and the benchmark. The chosen criterion decides
the response; the case-report form also shows the other criteria of :data:`CRF_CRITERIA`.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from netliver.fhir.builders import OperationResult
from services.response.domain.biochemical import biochemical_responses
from services.response.domain.bor import BorSettings
from services.response.domain.criteria import Evaluation, evaluate
from services.response.domain.ctcae import worst_grades
from services.response.domain.model import ResponseInputError
from services.response.fhir_in import input_error, parse_input, parse_settings
from services.response.fhir_out import CaseReportForm, build_outputs

__all__ = ["CRF_CRITERIA", "run_tumor_response"]

#: Criteria shown on the case-report form of Rozenblum et al. (Eur J Radiol) Table 1 (its four columns, then the
#: viable-tumour criteria used after liver-directed therapy).
CRF_CRITERIA = ("recist-1.1", "choi", "irecist", "percist", "mrecist", "easl")


def run_tumor_response(body: Mapping[str, Any], args: Mapping[str, Any], version: str) -> OperationResult:
    """The whole operation without Flask: settings, parse, evaluate, map. Raises ``FhirError``."""
    settings = parse_settings(args)
    criterion = settings["criterion"]
    parsed = parse_input(body, settings)
    bor = BorSettings(settings["confirmation_days"], settings["min_sd_days"])
    exclude = None if settings["treated_lesions"] == "default" else settings["treated_lesions"] == "not-evaluable"
    try:
        evaluation = evaluate(criterion, parsed.assessments, parsed.treatments, bor=bor,
                              exclude_treated=exclude)
    except ResponseInputError as exc:
        raise input_error(exc) from None
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
