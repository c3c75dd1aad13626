"""The audit trail (IHE BALP): an AuditEvent per patient for every read, search and write of
patient data and every operation, naming the client, the patient and the outcome, searchable by
patient, entity, agent and date, and never holding the data itself."""

from __future__ import annotations

import json
from typing import Any

import pytest
from flask.testing import FlaskClient

from netliver.fhir.models import validate_resource
from tests.support.jwks import JwksServer

pytestmark = pytest.mark.unit
SECRET_NAME, SECRET_MRN, SECRET_BIRTH = "Ixtlilxochitl", "MRN-55501234", "1944-07-08"


def _as(idp: JwksServer, client_id: str, scopes: str = "system/*.cruds") -> dict[str, str]:
    return {"Authorization": f"Bearer {idp.mint(scopes, client_id=client_id)}"}


def _events(jwt_client: FlaskClient, idp: JwksServer, query: str) -> list[dict[str, Any]]:
    resp = jwt_client.get(f"/fhir/$audit-trail?{query}", headers=_as(idp, "auditor", "system/AuditEvent.rs"))
    assert resp.status_code == 200, resp.get_json()
    return [e["resource"] for e in resp.get_json()["entry"]]


def _seed(jwt_client: FlaskClient, idp: JwksServer) -> None:
    patient = {"resourceType": "Patient", "id": "p1", "name": [{"family": SECRET_NAME}],
               "identifier": [{"system": "urn:mrn", "value": SECRET_MRN}], "birthDate": SECRET_BIRTH}
    obs = {"resourceType": "Observation", "id": "o1", "status": "final", "code": {"text": "bilirubin"},
           "subject": {"reference": "Patient/p1"}, "valueQuantity": {"value": 1.1, "unit": "mg/dL"}}
    writer = _as(idp, "ris-writer")
    assert jwt_client.put("/fhir/Patient/p1", json=patient, headers=writer).status_code == 201
    assert jwt_client.put("/fhir/Observation/o1", json=obs, headers=writer).status_code == 201


def test_reads_searches_and_writes_are_audited_per_patient_with_client_and_outcome(
        jwt_client: FlaskClient, idp: JwksServer) -> None:
    _seed(jwt_client, idp)
    reader = _as(idp, "viewer-app")
    assert jwt_client.get("/fhir/Observation/o1", headers=reader).status_code == 200
    assert jwt_client.get(f"/fhir/Patient?identifier=urn:mrn|{SECRET_MRN}", headers=reader).status_code == 200
    assert jwt_client.get("/fhir/Observation/nope", headers=reader).status_code == 404
    events = _events(jwt_client, idp, "patient=p1")
    kinds = sorted((e["subtype"][0]["code"], e["action"], e["agent"][0]["who"]["identifier"]["value"]) for e in events)
    assert kinds == [("read", "R", "viewer-app"), ("search-type", "E", "viewer-app"),
                     ("update", "U", "ris-writer"), ("update", "U", "ris-writer")]
    for event in events:
        validate_resource(event)
        assert event["outcome"] == "0"
        assert event["entity"][0]["what"] == {"reference": "Patient/p1"}
    failed = _events(jwt_client, idp, "entity=Observation/nope")
    assert [e["outcome"] for e in failed] == ["4"]
    by_agent = _events(jwt_client, idp, "agent=viewer-app")
    assert len(by_agent) == 3
    # Reading the audit trail about a patient is itself audited (the auditor's first search).
    dated = _events(jwt_client, idp, "patient=Patient/p1&date=ge2000-01-01")
    assert len(dated) == 5 and dated[0]["agent"][0]["who"]["identifier"]["value"] == "auditor"
    assert _events(jwt_client, idp, "patient=p1&date=lt2000-01-01") == []


def test_audit_events_never_hold_the_data(jwt_client: FlaskClient, idp: JwksServer) -> None:
    _seed(jwt_client, idp)
    jwt_client.get(f"/fhir/Patient?identifier=urn:mrn|{SECRET_MRN}&name={SECRET_NAME}&birthdate={SECRET_BIRTH}",
               headers=_as(idp, "viewer-app"))
    text = json.dumps(_events(jwt_client, idp, "_count=500"))
    for secret in (SECRET_NAME, SECRET_MRN, SECRET_BIRTH, "bilirubin"):
        assert secret not in text


def test_operations_are_audited_even_when_they_fail(jwt_client: FlaskClient, idp: JwksServer) -> None:
    _seed(jwt_client, idp)
    resp = jwt_client.post("/fhir/Patient/p1/$evaluate-eligibility", json={"resourceType": "Parameters"},
                       headers=_as(idp, "cds-jwt_client"))
    assert resp.status_code >= 400  # the eligibility service is not running
    events = _events(jwt_client, idp, "agent=cds-jwt_client")
    assert len(events) == 1 and events[0]["subtype"][0]["code"] == "operation"
    assert events[0]["entity"][0]["what"] == {"reference": "Patient/p1"}
    assert events[0]["outcome"] in {"4", "8"}


def test_reading_the_audit_trail_needs_its_scope(jwt_client: FlaskClient, idp: JwksServer) -> None:
    assert jwt_client.get("/fhir/$audit-trail", headers=_as(idp, "x", "system/Patient.rs")).status_code == 403
    assert jwt_client.get("/fhir/$audit-trail?date=yesterday",
                      headers=_as(idp, "auditor", "system/AuditEvent.rs")).status_code == 400
