"""The ``$evaluate-eligibility`` operation without HTTP: Bundle in, ``OperationResult`` out.

Used by the Flask views (``api.py``), the CDS card view, the demo and the benchmark. The
evaluation date is the caller's ``date`` when given (and then part of the result ids), else
today.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any

from netliver.fhir.builders import OperationResult
from services.eligibility import __version__
from services.eligibility.domain.evaluation import TherapyVerdict, evaluate_all
from services.eligibility.domain.imaging import ImagingAdvice, imaging_advice
from services.eligibility.domain.rules import RuleSet
from services.eligibility.fhir_in import ParsedInput, bundle_to_facts, input_digest
from services.eligibility.fhir_out import build_output
from services.eligibility.ruleset import default_ruleset

__all__ = ["Evaluation", "evaluate_bundle", "evaluate_eligibility"]


@dataclass(frozen=True)
class Evaluation:
    parsed: ParsedInput
    verdicts: tuple[TherapyVerdict, ...]
    advice: tuple[ImagingAdvice, ...]
    rules: RuleSet


def evaluate_bundle(bundle: Mapping[str, Any], evaluated_on: date, rules: RuleSet | None = None,
                    *, validated: bool = False) -> Evaluation:
    """Read the Bundle and evaluate every therapy (raises ``FhirError`` on unusable input).

    ``validated``: the Bundle was already checked against the R4B models.
    """
    rules = rules or default_ruleset()
    parsed = bundle_to_facts(bundle, rules, evaluated_on, validated=validated)
    facts = parsed.facts
    verdicts = evaluate_all(facts, rules)
    site = facts.values.get("primary_site")
    ki67 = facts.values.get("ki67")
    grade = facts.values.get("grade")
    advice = imaging_advice(
        site.value if site is not None and isinstance(site.value, str) and not site.conflicting else None,
        ki67.value if ki67 is not None and isinstance(ki67.value, Decimal) and not ki67.conflicting else None,
        int(grade.value) if grade is not None and isinstance(grade.value, Decimal) and not grade.conflicting else None,
    )
    return Evaluation(parsed, verdicts, advice, rules)


def evaluate_eligibility(bundle: Mapping[str, Any], date_given: date | None = None,
                         rules: RuleSet | None = None, *, validated: bool = False) -> OperationResult:
    """``$evaluate-eligibility``: output collection Bundle and the resources to write."""
    evaluated_on = date_given or date.today()
    result = evaluate_bundle(bundle, evaluated_on, rules, validated=validated)
    output, write = build_output(result.parsed, result.verdicts, result.advice, result.rules,
                                 digest=input_digest(bundle, date_given), date_given=date_given,
                                 version=__version__)
    return OperationResult(output=output, write=write)
