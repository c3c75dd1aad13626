"""The Parameters form of the operations whose OperationDefinition declares an ``input`` Bundle."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.operations import bundle_input
from netliver.fhir.outcome import FhirError

BUNDLE = {"resourceType": "Bundle", "type": "collection", "entry": []}


def _params(*parameter: dict[str, Any]) -> dict[str, Any]:
    return {"resourceType": "Parameters", "parameter": list(parameter)}


def test_a_bare_bundle_is_the_input_itself() -> None:
    assert bundle_input(BUNDLE, "tumor-response") == (BUNDLE, {})


def test_parameters_give_the_bundle_and_the_other_declared_values_as_query_text() -> None:
    body = _params({"name": "input", "resource": BUNDLE}, {"name": "criteria", "valueCode": "choi"},
                   {"name": "minSdDays", "valueInteger": 56})
    assert bundle_input(body, "tumor-response") == (BUNDLE, {"criteria": "choi", "minSdDays": "56"})
    dated = _params({"name": "date", "valueDate": "2026-03-01"}, {"name": "input", "resource": BUNDLE})
    assert bundle_input(dated, "evaluate-eligibility") == (BUNDLE, {"date": "2026-03-01"})


@pytest.mark.parametrize(("body", "expression"), [
    (_params({"name": "criteria", "valueCode": "choi"}), "Parameters.parameter.where(name='input')"),
    (_params({"name": "input", "resource": {"resourceType": "Patient"}}), "Parameters.parameter[0].resource"),
    (_params({"name": "input", "resource": BUNDLE}, {"name": "input", "resource": BUNDLE}),
     "Parameters.parameter[1].name"),
    (_params({"name": "input", "resource": BUNDLE}, {"name": "colour", "valueCode": "red"}),
     "Parameters.parameter[1].name"),
    (_params({"name": "input", "resource": BUNDLE}, {"name": "criteria", "valueString": "choi"}),
     "Parameters.parameter[1].valueCode"),
])
def test_unusable_parameters_are_422_naming_the_element(body: dict[str, Any], expression: str) -> None:
    with pytest.raises(FhirError) as caught:
        bundle_input(body, "tumor-response")
    assert caught.value.status == 422
    assert caught.value.issues[0].expression == (expression,)
