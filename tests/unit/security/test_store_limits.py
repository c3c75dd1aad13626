"""One set of store limits, checked before the write, so a record valid on SQLite is valid on
PostgreSQL and the other way round; integers beyond the database's range are a 400, never an
overflow (500)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient

from gateway.app import create_app
from gateway.store.indexing import MAX_REF_TYPE_CHARS, MAX_TOKEN_CHARS
from gateway.store.search_params import MAX_OFFSET
from gateway.store.sql import MAX_VERSION_ID
from netliver.settings import Settings

pytestmark = pytest.mark.unit


@pytest.fixture
def client(tmp_path: Path) -> FlaskClient:
    settings = Settings.from_env({
        "AUTH_MODE": "off", "DATABASE_URL": f"sqlite:///{tmp_path / 'store.db'}", "ORTHANC_URL": "http://127.0.0.1:9",
        "ORTHANC_CATCHUP_S": "0", "RATE_LIMIT_PER_MINUTE": "0", "JOB_SWEEP_S": "0", "LOG_LEVEL": "WARNING"})
    app = create_app(settings)
    app.config["PROPAGATE_EXCEPTIONS"] = False
    return app.test_client()


def _issue(resp: Any) -> dict[str, Any]:
    body = resp.get_json()
    assert body["resourceType"] == "OperationOutcome", body
    return body["issue"][0]  # type: ignore[no-any-return]


def test_version_ids_beyond_the_column_are_a_400_and_odd_digits_a_404(client: FlaskClient) -> None:
    assert client.put("/fhir/Patient/p1", json={"resourceType": "Patient", "id": "p1"}).status_code == 201
    assert client.get("/fhir/Patient/p1/_history/1").status_code == 200
    assert client.get(f"/fhir/Patient/p1/_history/{MAX_VERSION_ID}").status_code == 404
    for too_big in (MAX_VERSION_ID + 1, 2**63, 10**30):
        resp = client.get(f"/fhir/Patient/p1/_history/{too_big}")
        assert resp.status_code == 400 and _issue(resp)["expression"] == ["versionId"]
    for odd in ("%C2%B2", "%D9%A1", "1.0"):  # superscript two and Arabic-Indic one are str.isdigit()
        assert client.get(f"/fhir/Patient/p1/_history/{odd}").status_code == 404


def test_offsets_beyond_the_limit_are_a_400(client: FlaskClient) -> None:
    assert client.get(f"/fhir/Patient?_offset={MAX_OFFSET}").status_code == 200
    for too_big in (MAX_OFFSET + 1, 2**63, 2**64):
        resp = client.get(f"/fhir/Patient?_offset={too_big}")
        assert resp.status_code == 400 and _issue(resp)["expression"] == ["_offset"]


def _patient(value: str, system: str = "urn:mrn") -> dict[str, Any]:
    return {"resourceType": "Patient", "id": "p2", "identifier": [{"system": system, "value": value}]}


def test_identifier_and_code_lengths_are_bounded_both_ways(client: FlaskClient) -> None:
    assert client.put("/fhir/Patient/p2", json=_patient("x" * MAX_TOKEN_CHARS)).status_code == 201
    resp = client.put("/fhir/Patient/p2", json=_patient("x" * (MAX_TOKEN_CHARS + 1)))
    assert resp.status_code == 400 and _issue(resp)["expression"] == ["Patient.identifier"]
    resp = client.put("/fhir/Patient/p2", json=_patient("x", system="urn:" + "s" * MAX_TOKEN_CHARS))
    assert resp.status_code == 400
    obs = {"resourceType": "Observation", "id": "o1", "status": "final",
           "code": {"coding": [{"system": "http://loinc.org", "code": "1" * (MAX_TOKEN_CHARS + 1)}]}}
    resp = client.put("/fhir/Observation/o1", json=obs)
    assert resp.status_code == 400 and _issue(resp)["expression"] == ["Observation.code"]
    assert client.get("/fhir/Patient/p2").get_json()["meta"]["versionId"] == "1"


def test_reference_types_longer_than_the_index_are_a_400(client: FlaskClient) -> None:
    def obs(rtype: str) -> dict[str, Any]:
        return {"resourceType": "Observation", "id": "o2", "status": "final", "code": {"text": "x"},
                "subject": {"reference": f"{rtype}/1"}}

    assert client.put("/fhir/Observation/o2", json=obs("P" + "a" * (MAX_REF_TYPE_CHARS - 1))).status_code == 201
    resp = client.put("/fhir/Observation/o2", json=obs("P" + "a" * MAX_REF_TYPE_CHARS))
    assert resp.status_code == 400 and _issue(resp)["expression"] == ["Observation.subject.reference"]
