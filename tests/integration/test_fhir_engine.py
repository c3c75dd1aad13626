"""The independent FHIR engine harness (Medplum's router and in-memory repository over HTTP):
the behaviours upstream-mode tests rely on are checked here against the real engine."""

from __future__ import annotations

from typing import Any

import pytest
import requests

from tests.support.fhir_engine import FhirEngine, fhir_engine_fixture

fhir_engine = fhir_engine_fixture(scope="module")

_JSON = {"Content-Type": "application/fhir+json"}


@pytest.fixture()
def engine(fhir_engine: FhirEngine) -> FhirEngine:
    fhir_engine.reset()
    return fhir_engine


def _post(engine: FhirEngine, path: str, body: dict[str, Any]) -> requests.Response:
    return requests.post(f"{engine.base_url}/{path}", json=body, headers=_JSON, timeout=30)


def test_create_read_and_search_by_identifier(engine: FhirEngine) -> None:
    created = _post(engine, "Patient", {"resourceType": "Patient",
                                        "identifier": [{"system": "urn:test", "value": "p1"}]})
    assert created.status_code == 201
    assert created.headers["Location"].startswith(f"{engine.base_url}/Patient/")
    pid = created.json()["id"]
    assert requests.get(f"{engine.base_url}/Patient/{pid}", timeout=30).json()["id"] == pid
    hits = requests.get(f"{engine.base_url}/Patient", params={"identifier": "urn:test|p1"}, timeout=30).json()
    miss = requests.get(f"{engine.base_url}/Patient", params={"identifier": "urn:test|p2"}, timeout=30).json()
    assert [e["resource"]["id"] for e in hits["entry"]] == [pid]
    assert miss["total"] == 0


def test_engine_stores_decimals_as_numbers_not_as_sent_text(engine: FhirEngine) -> None:
    """A JSON number keeps no trailing zeros in a JavaScript engine: ``120.0`` is served back
    as ``120`` (why the gateway compares decimals numerically in upstream mode)."""
    body = ('{"resourceType":"Observation","status":"final","code":{"text":"x"},'
            '"valueQuantity":{"value":120.0}}')
    created = requests.post(f"{engine.base_url}/Observation", data=body, headers=_JSON, timeout=30)
    assert created.status_code == 201
    assert '"value":120}' in created.text
    assert '"value":120.0' not in created.text


def _patients(n: int) -> list[dict[str, Any]]:
    return [{"request": {"method": "PUT", "url": f"Patient/p{i}"},
             "resource": {"resourceType": "Patient", "id": f"p{i}"}} for i in range(n)]


def test_transactions_are_capped_at_fifty_updates(engine: FhirEngine) -> None:
    fifty = _post(engine, "", {"resourceType": "Bundle", "type": "transaction", "entry": _patients(50)})
    fifty_one = _post(engine, "", {"resourceType": "Bundle", "type": "transaction", "entry": _patients(51)})
    assert fifty.status_code == 200, fifty.text
    assert fifty.json()["type"] == "transaction-response"
    assert fifty_one.status_code == 400
    assert fifty_one.json()["resourceType"] == "OperationOutcome"


def test_search_pages_carry_total_and_next_links(engine: FhirEngine) -> None:
    _post(engine, "", {"resourceType": "Bundle", "type": "batch", "entry": _patients(25)})
    seen: list[str] = []
    url: str | None = f"{engine.base_url}/Patient?_count=10"
    while url:
        page = requests.get(url, timeout=30).json()
        assert page["total"] == 25
        seen += [e["resource"]["id"] for e in page.get("entry", [])]
        url = next((link["url"] for link in page["link"] if link["relation"] == "next"), None)
    assert sorted(seen) == sorted(f"p{i}" for i in range(25))


def test_validator_reports_invariants_and_unknown_elements(engine: FhirEngine) -> None:
    lesion = {"name": "lesion", "use": "in", "min": 0, "max": "*"}
    opdef = {"resourceType": "OperationDefinition", "status": "active", "kind": "operation",
             "name": "X", "code": "x", "system": False, "type": True, "instance": False,
             "parameter": [lesion]}
    bad = engine.validate(opdef)
    good = engine.validate({**opdef, "parameter": [{**lesion, "type": "string"}]})
    unknown = engine.validate({"resourceType": "Patient", "colour": "blue"})
    assert any("opd-1" in i["details"]["text"] for i in bad["issue"])
    assert not [i for i in good["issue"] if i["severity"] == "error"]
    assert [i["expression"] for i in unknown["issue"]] == [["Patient.colour"]]


def test_unknown_resource_is_a_404_operation_outcome(engine: FhirEngine) -> None:
    resp = requests.get(f"{engine.base_url}/Patient/absent", timeout=30)
    assert resp.status_code == 404
    assert resp.json()["resourceType"] == "OperationOutcome"
