"""The request edge (``netliver.edge``, ``netliver.json_edge``): hostile or careless bodies and
queries are a 400 OperationOutcome naming the limit or the element, before any view walks them
(FHIR JSON, R4 §2.6.2: numbers are finite decimals; strings hold no C0 controls)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient

from gateway.app import create_app
from netliver.fhir.models import is_resource_type
from netliver.fhir.outcome import FhirError
from netliver.json_edge import JsonLimits, check_structure, parse_json
from netliver.settings import Settings

pytestmark = pytest.mark.unit
LIMITS = JsonLimits(max_depth=8, max_number_chars=20)
FHIR = "application/fhir+json"


def _refusal(fn: Any, *args: Any) -> FhirError:
    with pytest.raises(FhirError) as err:
        fn(*args)
    assert err.value.status == 400
    return err.value


def test_depth_is_bounded_at_the_limit_both_ways() -> None:
    assert parse_json(b"[" * 8 + b"]" * 8, LIMITS) is not None
    assert "MAX_JSON_DEPTH" in _refusal(parse_json, b"[" * 9 + b"]" * 9, LIMITS).diagnostics
    # Brackets inside strings do not count.
    assert parse_json(json.dumps({"a": "[[[[[[[[[[[[{{{{{{{"}).encode(), LIMITS) == {"a": "[[[[[[[[[[[[{{{{{{{"}


def test_number_length_is_bounded_at_the_limit_both_ways() -> None:
    assert parse_json(b"[" + b"9" * 20 + b"]", LIMITS) == [int("9" * 20)]
    assert "MAX_JSON_NUMBER_CHARS" in _refusal(parse_json, b"[" + b"9" * 21 + b"]", LIMITS).diagnostics
    assert "MAX_JSON_NUMBER_CHARS" in _refusal(parse_json, b"[0." + b"1" * 19 + b"]", LIMITS).diagnostics


@pytest.mark.parametrize("text", [b"NaN", b"Infinity", b"-Infinity", b"1e400", b"-1e309"])
def test_non_finite_numbers_are_refused(text: bytes) -> None:
    _refusal(parse_json, b'{"value": ' + text + b"}", LIMITS)
    assert parse_json(b'{"value": 1e300}', LIMITS) == {"value": 1e300}


@pytest.mark.parametrize("escape", ["\\u0000", "\\u001f", "\\ud800", "\\udfff"])
def test_control_characters_and_lone_surrogates_are_refused_with_their_element(escape: str) -> None:
    err = _refusal(parse_json, ('{"name": [{"family": "A' + escape + '"}]}').encode(), LIMITS)
    assert err.expression == "name[0].family"
    # Tab, CR, LF and a surrogate pair are fine.
    assert parse_json(b'{"a": "x\\t\\r\\n\\ud83d\\ude00"}', LIMITS) == {"a": "x\t\r\n\U0001F600"}


@pytest.mark.parametrize(("body", "element"), [
    ({"resourceType": 7}, "resourceType"),
    ({"resourceType": "NoSuchType"}, "resourceType"),
    ({"resourceType": "Quantity"}, "resourceType"),
    ({"resourceType": "Bundle", "type": {"a": 1}}, "Bundle.type"),
    ({"resourceType": "Bundle", "type": "transaction", "entry": 3}, "Bundle.entry"),
    ({"resourceType": "Bundle", "type": "transaction", "entry": ["x"]}, "Bundle.entry[0]"),
    ({"resourceType": "Bundle", "type": "transaction", "entry": [{"fullUrl": ["u"]}]}, "Bundle.entry[0].fullUrl"),
    ({"resourceType": "Bundle", "type": "transaction", "entry": [{"request": {"method": 1}}]},
     "Bundle.entry[0].request.method"),
    ({"resourceType": "Bundle", "entry": [{"resource": {"resourceType": {"x": 1}}}]},
     "Bundle.entry[0].resource.resourceType"),
    ({"resourceType": "Parameters", "parameter": [{"name": {"x": 1}}]}, "Parameters.parameter[0].name"),
    ({"resourceType": "Parameters", "parameter": [{"name": "a", "part": [{"valueString": "b"}]}]},
     "Parameters.parameter[0].part[0].name"),
    ({"resourceType": "Parameters", "parameter": [{"name": "p", "resource": {"resourceType": "Nope"}}]},
     "Parameters.parameter[0].resource.resourceType"),
    ({"hook": "patient-view", "prefetch": {"patient": {"resourceType": ["Patient"]}}}, "prefetch.patient.resourceType"),
])
def test_structure_refusals_name_the_element(body: dict[str, Any], element: str) -> None:
    assert _refusal(check_structure, body, is_resource_type).expression == element


def test_well_formed_bodies_pass_the_structure_check() -> None:
    check_structure({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": "urn:uuid:1", "resource": {"resourceType": "Patient"},
         "request": {"method": "POST", "url": "Patient"}}]}, is_resource_type)
    check_structure({"resourceType": "Parameters", "parameter": [
        {"name": "a", "part": [{"name": "b", "valueDecimal": 1.5}]}]}, is_resource_type)


@pytest.fixture
def client(tmp_path: Path) -> FlaskClient:
    settings = Settings.from_env({
        "AUTH_MODE": "off", "DATABASE_URL": f"sqlite:///{tmp_path / 'store.db'}", "ORTHANC_URL": "http://127.0.0.1:9",
        "ORTHANC_CATCHUP_S": "0", "RATE_LIMIT_PER_MINUTE": "0", "JOB_SWEEP_S": "0", "LOG_LEVEL": "WARNING",
        "ELIGIBILITY_URL": "http://127.0.0.1:9", "RESPONSE_URL": "http://127.0.0.1:9",
        "DOSIMETRY_URL": "http://127.0.0.1:9"})
    return create_app(settings).test_client()


def _post(client: FlaskClient, path: str, raw: bytes | str, method: str = "POST") -> Any:
    resp = client.open(path, method=method, data=raw, content_type=FHIR)
    body = resp.get_json()
    assert body["resourceType"] == "OperationOutcome", body
    return resp.status_code, body["issue"][0]


GATEWAY_POSTS = ["/fhir/Observation", "/fhir", "/fhir/$sirt-activity", "/fhir/$evaluate-eligibility",
                 "/fhir/$voxel-dosimetry", "/cds-services/liver-directed-therapy", "/hooks/orthanc/stable-study"]


@pytest.mark.parametrize("path", GATEWAY_POSTS)
def test_hostile_json_is_a_400_on_every_body_taking_endpoint(client: FlaskClient, path: str) -> None:
    deep = "[" * 5000 + "]" * 5000
    assert _post(client, path, deep)[0] == 400
    huge = '{"resourceType": "Parameters", "parameter": [{"name": "a", "valueInteger": ' + "9" * 5000 + "}]}"
    status, issue = _post(client, path, huge)
    assert status == 400 and "MAX_JSON_NUMBER_CHARS" in issue["diagnostics"]
    nan = '{"resourceType": "Parameters", "parameter": [{"name": "weightKg", "valueDecimal": NaN}]}'
    assert _post(client, path, nan)[0] == 400
    name = {"resourceType": "Parameters", "parameter": [{"name": {"x": 1}, "valueString": "y"}]}
    status, issue = _post(client, path, json.dumps(name))
    assert status == 400 and issue["expression"] == ["Parameters.parameter[0].name"]


def test_a_nested_resource_type_that_is_not_a_string_is_a_400_on_put_bundle(client: FlaskClient) -> None:
    body = {"resourceType": "Bundle", "id": "b1", "type": "collection",
            "entry": [{"resource": {"resourceType": {"nested": True}}}]}
    status, issue = _post(client, "/fhir/Bundle/b1", json.dumps(body), method="PUT")
    assert status == 400 and issue["expression"] == ["Bundle.entry[0].resource.resourceType"]


@pytest.mark.parametrize("entry", [{"fullUrl": ["x"]}, 5, {"request": {"method": "POST", "url": ["Patient"]}}])
def test_transaction_bundles_with_wrong_json_types_are_a_400(client: FlaskClient, entry: Any) -> None:
    body = {"resourceType": "Bundle", "type": "transaction", "entry": [entry]}
    assert _post(client, "/fhir", json.dumps(body))[0] == 400
    assert _post(client, "/fhir", json.dumps({"resourceType": "Bundle", "type": {"x": 1}}))[0] == 400


def test_control_characters_in_the_query_are_a_400_and_nothing_is_searched(client: FlaskClient) -> None:
    resp = client.get("/fhir/Patient?identifier=a%00b")
    assert resp.status_code == 400 and resp.get_json()["issue"][0]["expression"] == ["identifier"]
    assert client.get("/fhir/Patient?identifier=a%01b").status_code == 400
    assert client.get("/fhir/Patient?identifier=ab").status_code == 200


def test_a_body_is_checked_once_and_a_valid_one_still_works(client: FlaskClient) -> None:
    patient = {"resourceType": "Patient", "id": "p1", "name": [{"family": "Tab\there"}]}
    resp = client.put("/fhir/Patient/p1", data=json.dumps(patient), content_type=FHIR)
    assert resp.status_code == 201, resp.get_json()
