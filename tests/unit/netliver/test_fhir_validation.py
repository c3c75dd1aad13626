"""Required bindings and invariants beyond structure (FHIR R4 §4.1.5 and the Observation
invariants obs-6/obs-7): each rule both ways."""

from __future__ import annotations

from typing import Any

import pytest

from netliver.fhir.outcome import FhirError
from netliver.fhir.validation import check_resource, resource_issues


def _obs(**extra: Any) -> dict[str, Any]:
    return {"resourceType": "Observation", "status": "final", "code": {"text": "bilirubin"}, **extra}


def _expressions(resource: dict[str, Any]) -> list[str]:
    return [e for issue in resource_issues(resource) for e in issue.expression]


@pytest.mark.parametrize("status", ["registered", "final", "corrected", "entered-in-error", "unknown"])
def test_every_observation_status_of_the_r4_value_set_is_accepted(status: str) -> None:
    assert resource_issues(_obs(status=status)) == []


@pytest.mark.parametrize(("resource", "expression"), [
    (_obs(status="bogus"), "Observation.status"),
    (_obs(status="Final"), "Observation.status"),  # codes are case-sensitive
    (_obs(valueQuantity={"value": 1, "comparator": "~"}), "Observation.valueQuantity.comparator"),
    ({"resourceType": "Patient", "gender": "f"}, "Patient.gender"),
    ({"resourceType": "Patient", "name": [{"family": "A"}, {"use": "nick"}]}, "Patient.name[1].use"),
    ({"resourceType": "Task", "status": "running", "intent": "order"}, "Task.status"),
    ({"resourceType": "DiagnosticReport", "status": "done", "code": {"text": "x"}}, "DiagnosticReport.status"),
    ({"resourceType": "Bundle", "type": "collection", "entry": [{"resource": _obs(status="x")}]},
     "Bundle.entry[0].resource.status"),
])
def test_a_code_outside_a_required_binding_is_named(resource: dict[str, Any], expression: str) -> None:
    assert _expressions(resource) == [expression]
    with pytest.raises(FhirError) as caught:
        check_resource(resource)
    assert caught.value.status == 400 and caught.value.code == "code-invalid"


def test_valid_codes_in_nested_elements_pass() -> None:
    patient = {"resourceType": "Patient", "gender": "female", "name": [{"use": "official", "family": "A"}],
               "telecom": [{"system": "phone", "use": "work", "value": "1"}]}
    assert resource_issues(patient) == []
    assert resource_issues(_obs(valueQuantity={"value": 1, "comparator": "<="})) == []


def test_obs6_data_absent_reason_only_without_a_value() -> None:
    absent = {"text": "not performed"}
    assert resource_issues(_obs(dataAbsentReason=absent)) == []
    assert _expressions(_obs(dataAbsentReason=absent, valueQuantity={"value": 1})) == ["Observation.dataAbsentReason"]
    component = {"code": {"text": "a"}, "dataAbsentReason": absent, "valueString": "x"}
    assert _expressions(_obs(component=[component])) == ["Observation.component[0].dataAbsentReason"]


def test_obs7_a_component_with_the_observations_own_code_has_no_value_beside_it() -> None:
    code = {"coding": [{"system": "http://loinc.org", "code": "85354-9"}]}
    same = {"code": code, "valueQuantity": {"value": 120}}
    other = {"code": {"coding": [{"system": "http://loinc.org", "code": "8480-6"}]}, "valueQuantity": {"value": 120}}
    assert resource_issues(_obs(code=code, component=[same])) == []
    assert resource_issues(_obs(code=code, component=[other], valueString="x")) == []
    assert _expressions(_obs(code=code, component=[same], valueString="x")) == ["Observation.component[0].code"]
