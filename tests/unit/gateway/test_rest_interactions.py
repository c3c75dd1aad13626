"""The REST interactions beyond read/search/update (FHIR R4 §3.1.0): PATCH, conditional update
and delete, If-None-Match: *, Prefer: return, type and system history, 406 for unserved formats,
a query string on POST — through the REST client on the embedded and the upstream store."""

from __future__ import annotations

from typing import Any

import pytest
from flask.testing import FlaskClient

from gateway.fhir_interactions import apply_json_patch, format_refusal, prefer_return, prefers_async
from netliver.fhir.outcome import FhirError
from tests.unit.gateway import test_store_rest as rest
from tests.unit.gateway.test_store_rest import FHIR_JSON, observation, put

store, app, client, scopes = rest.store, rest.app, rest.client, rest.scopes
PATCH_JSON = "application/json-patch+json"


def _patient(pid: str, mrn: str) -> dict[str, Any]:
    return {"resourceType": "Patient", "id": pid, "identifier": [{"system": "urn:mrn", "value": mrn}]}


def test_json_patch_operations_and_refusals() -> None:
    doc = {"resourceType": "Observation", "id": "o", "status": "final", "note": [{"text": "a"}]}
    patched = apply_json_patch(doc, [
        {"op": "replace", "path": "/status", "value": "amended"},
        {"op": "add", "path": "/note/-", "value": {"text": "b"}},
        {"op": "copy", "from": "/note/0", "path": "/note/0"},
        {"op": "test", "path": "/note/2/text", "value": "b"},
        {"op": "remove", "path": "/note/1"}])
    assert patched["status"] == "amended" and patched["note"] == [{"text": "a"}, {"text": "b"}]
    assert doc["status"] == "final"  # the input is untouched
    for bad, status in [([{"op": "test", "path": "/status", "value": "x"}], 422),
                        ([{"op": "replace", "path": "/id", "value": "x"}], 422),
                        ([{"op": "remove", "path": "/absent"}], 422),
                        ([{"op": "jump", "path": "/status"}], 400), ({"op": "add"}, 400)]:
        with pytest.raises(FhirError) as caught:
            apply_json_patch(doc, bad)
        assert caught.value.status == status


def test_formats_and_prefer_parsing() -> None:
    assert format_refusal(None, None) is None
    assert format_refusal("json", "application/fhir+json") is None
    assert format_refusal(None, "text/html, */*;q=0.1") is None
    assert format_refusal("xml", None) is not None and format_refusal(None, "application/fhir+xml") is not None
    assert prefer_return("return=minimal") == "minimal"
    assert prefer_return("handling=strict, return=OperationOutcome") == "OperationOutcome"
    assert prefer_return(None) == prefer_return("return=bogus") == "representation"
    assert prefer_return('Return="minimal"') == "minimal"  # tokens are case-insensitive, values may be quoted
    assert prefers_async("respond-async") and prefers_async("return=minimal, Respond-Async")
    assert prefers_async("respond-async; wait=10")
    assert not prefers_async(None) and not prefers_async("") and not prefers_async("return=minimal")
    assert not prefers_async("respond-asynchronously") and not prefers_async("handling=respond-async")


def test_patch_applies_to_the_current_version_only(client: FlaskClient) -> None:
    put(client, observation("o1"))
    ops = [{"op": "replace", "path": "/status", "value": "amended"}]
    done = client.patch("/fhir/Observation/o1", json=ops, headers={"Content-Type": PATCH_JSON})
    assert done.status_code == 200 and done.get_json()["status"] == "amended"
    assert done.get_json()["meta"]["versionId"] == "2"
    stale = client.patch("/fhir/Observation/o1", json=ops, headers={"Content-Type": PATCH_JSON, "If-Match": 'W/"1"'})
    assert stale.status_code == 412
    invalid = client.patch("/fhir/Observation/o1", json=[{"op": "replace", "path": "/status", "value": "bogus"}],
                           headers={"Content-Type": PATCH_JSON})
    assert invalid.status_code == 400 and invalid.get_json()["issue"][0]["expression"] == ["Observation.status"]
    assert client.patch("/fhir/Observation/o1", json=ops).status_code == 415
    assert client.patch("/fhir/Observation/none", json=ops, headers={"Content-Type": PATCH_JSON}).status_code == 404


def test_conditional_update_creates_updates_or_refuses(client: FlaskClient) -> None:
    body = {"resourceType": "Patient", "identifier": [{"system": "urn:mrn", "value": "C-1"}]}
    first = client.put("/fhir/Patient?identifier=urn:mrn|C-1", json=body, headers={"Content-Type": FHIR_JSON})
    assert first.status_code == 201
    pid = first.get_json()["id"]
    again = client.put("/fhir/Patient?identifier=urn:mrn|C-1", json={**body, "gender": "male"},
                       headers={"Content-Type": FHIR_JSON})
    assert again.status_code == 200 and again.get_json()["id"] == pid and again.get_json()["gender"] == "male"
    put(client, _patient("x1", "D"))
    put(client, _patient("x2", "D"))
    several = client.put("/fhir/Patient?identifier=urn:mrn|D", json=body, headers={"Content-Type": FHIR_JSON})
    assert several.status_code == 412
    wrong_id = client.put("/fhir/Patient?identifier=urn:mrn|C-1", json={**body, "id": "other"},
                          headers={"Content-Type": FHIR_JSON})
    assert wrong_id.status_code == 400


def test_conditional_delete_deletes_one_and_refuses_several(client: FlaskClient) -> None:
    put(client, _patient("d1", "E-1"))
    put(client, _patient("d2", "E-2"))
    put(client, _patient("d3", "E-2"))
    assert client.delete("/fhir/Patient?identifier=urn:mrn|E-1").status_code == 200
    assert client.get("/fhir/Patient/d1").status_code == 410
    assert client.delete("/fhir/Patient?identifier=urn:mrn|E-2").status_code == 412
    assert client.get("/fhir/Patient/d2").status_code == 200
    assert client.delete("/fhir/Patient?identifier=urn:mrn|none").status_code == 200
    assert client.delete("/fhir/Patient").status_code == 400


def test_if_none_match_star_creates_only(client: FlaskClient) -> None:
    assert put(client, _patient("n1", "N"), **{"If-None-Match": "*"}).status_code == 201
    assert put(client, _patient("n1", "N"), **{"If-None-Match": "*"}).status_code == 412


def test_prefer_return(client: FlaskClient) -> None:
    minimal = put(client, _patient("r1", "R"), Prefer="return=minimal")
    assert minimal.status_code == 201 and minimal.data == b"" and minimal.headers["ETag"] == 'W/"1"'
    assert minimal.headers["Location"].endswith("/Patient/r1/_history/1")
    outcome = put(client, {**_patient("r1", "R"), "gender": "other"}, Prefer="return=OperationOutcome")
    assert outcome.status_code == 200 and outcome.get_json()["resourceType"] == "OperationOutcome"
    full = put(client, {**_patient("r1", "R"), "gender": "female"})
    assert full.get_json()["gender"] == "female"


def test_post_with_a_query_is_a_conditional_create(client: FlaskClient) -> None:
    body = {"resourceType": "Patient", "identifier": [{"system": "urn:mrn", "value": "Q-1"}]}
    first = client.post("/fhir/Patient?identifier=urn:mrn|Q-1", json=body, headers={"Content-Type": FHIR_JSON})
    second = client.post("/fhir/Patient?identifier=urn:mrn|Q-1", json=body, headers={"Content-Type": FHIR_JSON})
    assert (first.status_code, second.status_code) == (201, 200)
    assert first.get_json()["id"] == second.get_json()["id"]
    found = client.get("/fhir/Patient?identifier=urn:mrn|Q-1").get_json()
    assert found["total"] == 1
    both = client.post("/fhir/Patient?identifier=urn:mrn|Q-1", json=body,
                       headers={"Content-Type": FHIR_JSON, "If-None-Exist": "identifier=urn:mrn|Q-1"})
    assert both.status_code == 400
    unknown = client.post("/fhir/Patient?colour=red", json=body, headers={"Content-Type": FHIR_JSON})
    assert unknown.status_code == 400


def test_type_and_system_history(client: FlaskClient) -> None:
    put(client, observation("h1"))
    put(client, observation("h1", value=2.0))
    put(client, _patient("h2", "H"))
    typed = client.get("/fhir/Observation/_history").get_json()
    assert typed["type"] == "history"
    assert [(e["request"]["url"], e["response"]["etag"]) for e in typed["entry"]] == [
        ("Observation/h1", 'W/"2"'), ("Observation/h1", 'W/"1"')]
    system = client.get("/fhir/_history?_count=2").get_json()
    assert [e["request"]["url"] for e in system["entry"]] == ["Patient/h2", "Observation/h1"]
    assert client.get("/fhir/_history?_since=2999-01-01").get_json().get("entry", []) == []
    assert client.get("/fhir/_history?colour=red").status_code == 400


@pytest.mark.parametrize(("url", "headers"), [
    ("/fhir/Patient?_format=xml", {}), ("/fhir/Patient/p1?_format=application/fhir+xml", {}),
    ("/fhir/Patient", {"Accept": "application/fhir+xml"}), ("/fhir/Patient", {"Accept": "text/turtle"}),
])
def test_unserved_formats_are_406(client: FlaskClient, url: str, headers: dict[str, str]) -> None:
    answer = client.get(url, headers=headers)
    assert answer.status_code == 406 and answer.get_json()["resourceType"] == "OperationOutcome"
    assert client.get("/fhir/Patient?_format=json").status_code == 200
