"""The shared FHIR helpers: pinned models, OperationOutcome errors, builders, CodeSystems."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from netliver.fhir.builders import (
    OperationResult,
    canonical_json,
    codeable,
    deterministic_id,
    provenance,
    quantity,
    reference,
)
from netliver.fhir.codesystems import CODESYSTEMS, THERAPY_SYSTEM, codes_of, codesystem_resource
from netliver.fhir.models import model_class, parse_resource, validate_resource
from netliver.fhir.outcome import FhirError, Issue


def test_models_are_r4b_not_r5() -> None:
    assert "R4B" in model_class("Observation").__module__


def test_parse_names_every_invalid_element() -> None:
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": [
        {"resource": {"resourceType": "Patient", "id": "p", "birthDate": "yesterday"}},
        {"resource": {"resourceType": "Observation", "status": "final", "code": {"text": "x"},
                      "valueQuantity": {"value": "lots"}}}]}
    with pytest.raises(FhirError) as err:
        parse_resource(bundle)
    assert err.value.status == 400
    expressions = [e for issue in err.value.to_fhir()["issue"] for e in issue.get("expression", [])]
    assert "Bundle.entry[0].resource.birthDate" in expressions
    assert any(e.startswith("Bundle.entry[1].resource.valueQuantity") for e in expressions)


@pytest.mark.parametrize(("data", "status"), [
    ([1, 2], 400), ({"no": "type"}, 400), ({"resourceType": "Nonsense"}, 400),
])
def test_not_a_resource_is_400(data: Any, status: int) -> None:
    with pytest.raises(FhirError) as err:
        parse_resource(data)
    assert err.value.status == status


def test_wrong_resource_type_for_the_operation_is_422() -> None:
    with pytest.raises(FhirError) as err:
        parse_resource({"resourceType": "Patient"}, expected="Bundle")
    assert err.value.status == 422 and err.value.issues[0].expression == ("resourceType",)


def test_operation_outcome_shape() -> None:
    err = FhirError(422, "value", "bilirubin must not be negative", "Observation.valueQuantity.value",
                    more=(Issue("value", "second problem", ("x",)),))
    body = err.to_fhir()
    assert body["resourceType"] == "OperationOutcome"
    assert [i["diagnostics"] for i in body["issue"]] == ["bilirubin must not be negative", "second problem"]
    assert body["issue"][0]["expression"] == ["Observation.valueQuantity.value"]
    validate_resource(body)


def test_deterministic_ids_are_stable_and_distinct() -> None:
    a = deterministic_id("eligibility", "p1", {"x": 1, "y": [1, 2]})
    assert a == deterministic_id("eligibility", "p1", {"y": [1, 2], "x": 1})  # key order is irrelevant
    assert a != deterministic_id("eligibility", "p2", {"x": 1, "y": [1, 2]})
    assert a != deterministic_id("eligibility", "p1", {"x": 1, "y": [2, 1]})  # list order is not


def test_provenance_needs_targets_and_is_valid_r4() -> None:
    with pytest.raises(ValueError):
        provenance(targets=[], service="s", version="1")
    prov = provenance(targets=[reference("Observation", "o1")], service="eligibility", version="0.1.0",
                      inputs=[reference("Patient", "p1")], policy=["https://netliver.org/fhir/rules|2026.11.1"])
    validate_resource(prov)
    assert prov["agent"][0]["who"]["identifier"]["value"] == "eligibility/0.1.0"
    again = provenance(targets=[reference("Observation", "o1")], service="eligibility", version="0.1.0")
    assert again["id"] == prov["id"]


def test_operation_result_refuses_resources_without_identity() -> None:
    with pytest.raises(ValueError):
        OperationResult({"resourceType": "Bundle"}, [{"resourceType": "Observation"}])


@pytest.mark.parametrize("system_id", sorted(CODESYSTEMS))
def test_codesystems_are_valid_and_complete(system_id: str) -> None:
    resource = codesystem_resource(system_id, "0.1.0")
    validate_resource(resource)
    codes = [c["code"] for c in resource["concept"]]
    assert len(codes) == len(set(codes)) == resource["count"]


def test_contract_codes_are_present() -> None:
    assert codes_of(THERAPY_SYSTEM) == {
        "surgical-resection", "liver-transplant", "ablation-rfa", "ablation-mwa", "ablation-laser",
        "ablation-cryo", "ablation-ire", "tae", "ctace", "deb-tace", "sirt", "prrt", "ia-prrt"}
    assert {"eligible", "eligible-with-caution", "ineligible", "insufficient-data"} == CODESYSTEMS["eligibility-status"].codes()


_decimal_values = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False)


@settings(max_examples=50, deadline=None)
@given(value=_decimal_values, unit=st.sampled_from(["mg/dL", "Gy", "%", "mm", "GBq"]),
       code=st.text(alphabet="abcdefghijklmnopqrstuvwxyz-", min_size=1, max_size=20))
def test_built_observations_round_trip_through_the_models(value: float, unit: str, code: str) -> None:
    obs = {"resourceType": "Observation", "id": deterministic_id("t", code, value), "status": "final",
           "code": codeable("https://netliver.org/fhir/CodeSystem/observation-code", code),
           "subject": reference("Patient", "p1"), "valueQuantity": quantity(value, unit)}
    round_tripped = validate_resource(obs)
    assert canonical_json(round_tripped) == canonical_json(obs)


@pytest.mark.parametrize("status", [401, 403])
def test_a_dependency_refusing_the_gateway_s_own_credentials_is_502_not_the_caller_s_401(status: int) -> None:
    # An upstream FHIR server refusing FHIR_UPSTREAM_TOKEN says nothing about the caller's token:
    # relaying 401/403 would tell a correctly authorised caller that its token is wrong.
    import json

    import requests

    from netliver.upstream import relay_error

    resp = requests.Response()
    resp.status_code = status
    resp._content = json.dumps({"resourceType": "OperationOutcome", "issue": [
        {"severity": "error", "code": "security", "diagnostics": "invalid bearer token"}]}).encode()
    err = relay_error(resp, "https://upstream.example/fhir")
    assert err.status == 502 and "https://upstream.example/fhir" in err.diagnostics
    resp.status_code = 404  # a plain not-found is still relayed as it is
    assert relay_error(resp, "https://upstream.example/fhir").status == 404
