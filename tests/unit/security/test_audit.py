"""The audit trail (IHE BALP): an AuditEvent per patient for every read, search and write of
patient data and every operation, naming the client, the patient and the outcome, searchable by
patient, entity, agent and date, and never holding the data itself."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient

from gateway.app import create_app
from netliver.fhir.models import validate_resource
from netliver.settings import Settings
from tests.support.jwks import JwksServer

pytestmark = pytest.mark.unit
SECRET_NAME, SECRET_MRN, SECRET_BIRTH = "Ixtlilxochitl", "MRN-55501234", "1944-07-08"


@pytest.fixture(scope="module")
def idp() -> Iterator[JwksServer]:
    with JwksServer() as server:
        yield server


@pytest.fixture
def client(tmp_path: Path, idp: JwksServer) -> FlaskClient:
    settings = Settings.from_env({
        "AUTH_MODE": "jwt", "AUTH_JWKS_URL": idp.jwks_url, "AUTH_ISSUER": idp.issuer,
        "AUTH_AUDIENCE": idp.audience, "DATABASE_URL": f"sqlite:///{tmp_path / 'store.db'}",
        "ORTHANC_URL": "http://127.0.0.1:9", "ORTHANC_CATCHUP_S": "0", "RATE_LIMIT_PER_MINUTE": "0",
        "JOB_SWEEP_S": "0", "LOG_LEVEL": "WARNING", "INTERNAL_TOKEN": "a-long-test-secret-for-the-workers",
        "ELIGIBILITY_URL": "http://127.0.0.1:9", "RESPONSE_URL": "http://127.0.0.1:9",
        "DOSIMETRY_URL": "http://127.0.0.1:9"})
    return create_app(settings).test_client()


def _as(idp: JwksServer, client_id: str, scopes: str = "system/*.cruds") -> dict[str, str]:
    return {"Authorization": f"Bearer {idp.mint(scopes, client_id=client_id)}"}


def _events(client: FlaskClient, idp: JwksServer, query: str) -> list[dict[str, Any]]:
    resp = client.get(f"/fhir/$audit-trail?{query}", headers=_as(idp, "auditor", "system/AuditEvent.rs"))
    assert resp.status_code == 200, resp.get_json()
    return [e["resource"] for e in resp.get_json()["entry"]]


def _seed(client: FlaskClient, idp: JwksServer) -> None:
    patient = {"resourceType": "Patient", "id": "p1", "name": [{"family": SECRET_NAME}],
               "identifier": [{"system": "urn:mrn", "value": SECRET_MRN}], "birthDate": SECRET_BIRTH}
    obs = {"resourceType": "Observation", "id": "o1", "status": "final", "code": {"text": "bilirubin"},
           "subject": {"reference": "Patient/p1"}, "valueQuantity": {"value": 1.1, "unit": "mg/dL"}}
    writer = _as(idp, "ris-writer")
    assert client.put("/fhir/Patient/p1", json=patient, headers=writer).status_code == 201
    assert client.put("/fhir/Observation/o1", json=obs, headers=writer).status_code == 201


def test_reads_searches_and_writes_are_audited_per_patient_with_client_and_outcome(
        client: FlaskClient, idp: JwksServer) -> None:
    _seed(client, idp)
    reader = _as(idp, "viewer-app")
    assert client.get("/fhir/Observation/o1", headers=reader).status_code == 200
    assert client.get(f"/fhir/Patient?identifier=urn:mrn|{SECRET_MRN}", headers=reader).status_code == 200
    assert client.get("/fhir/Observation/nope", headers=reader).status_code == 404
    events = _events(client, idp, "patient=p1")
    kinds = sorted((e["subtype"][0]["code"], e["action"], e["agent"][0]["who"]["identifier"]["value"]) for e in events)
    assert kinds == [("read", "R", "viewer-app"), ("search-type", "E", "viewer-app"),
                     ("update", "U", "ris-writer"), ("update", "U", "ris-writer")]
    for event in events:
        validate_resource(event)
        assert event["outcome"] == "0"
        assert event["entity"][0]["what"] == {"reference": "Patient/p1"}
    failed = _events(client, idp, "entity=Observation/nope")
    assert [e["outcome"] for e in failed] == ["4"]
    by_agent = _events(client, idp, "agent=viewer-app")
    assert len(by_agent) == 3
    # Reading the audit trail about a patient is itself audited (the auditor's first search).
    dated = _events(client, idp, "patient=Patient/p1&date=ge2000-01-01")
    assert len(dated) == 5 and dated[0]["agent"][0]["who"]["identifier"]["value"] == "auditor"
    assert _events(client, idp, "patient=p1&date=lt2000-01-01") == []


def test_audit_events_never_hold_the_data(client: FlaskClient, idp: JwksServer) -> None:
    _seed(client, idp)
    client.get(f"/fhir/Patient?identifier=urn:mrn|{SECRET_MRN}&name={SECRET_NAME}&birthdate={SECRET_BIRTH}",
               headers=_as(idp, "viewer-app"))
    text = json.dumps(_events(client, idp, "_count=500"))
    for secret in (SECRET_NAME, SECRET_MRN, SECRET_BIRTH, "bilirubin"):
        assert secret not in text


def test_operations_are_audited_even_when_they_fail(client: FlaskClient, idp: JwksServer) -> None:
    _seed(client, idp)
    resp = client.post("/fhir/Patient/p1/$evaluate-eligibility", json={"resourceType": "Parameters"},
                       headers=_as(idp, "cds-client"))
    assert resp.status_code >= 400  # the eligibility service is not running
    events = _events(client, idp, "agent=cds-client")
    assert len(events) == 1 and events[0]["subtype"][0]["code"] == "operation"
    assert events[0]["entity"][0]["what"] == {"reference": "Patient/p1"}
    assert events[0]["outcome"] in {"4", "8"}


def test_reading_the_audit_trail_needs_its_scope(client: FlaskClient, idp: JwksServer) -> None:
    assert client.get("/fhir/$audit-trail", headers=_as(idp, "x", "system/Patient.rs")).status_code == 403
    assert client.get("/fhir/$audit-trail?date=yesterday",
                      headers=_as(idp, "auditor", "system/AuditEvent.rs")).status_code == 400
