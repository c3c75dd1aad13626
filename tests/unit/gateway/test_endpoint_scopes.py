"""Scopes of the gateway's non-REST endpoints under ``AUTH_MODE=jwt`` (contract, "Authentication":
a token whose scopes do not cover the resource types an operation reads or writes gets 403), and
what the CDS Hooks service reads when the EHR's prefetch is partial (CDS Hooks 2.0, "Prefetch":
a service fetches what the client did not prefetch), the internal token at start, and the 400 of
structurally broken bodies (never a 500).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient

from gateway.app import create_app
from netliver.settings import Settings
from tests.support.jwks import JwksServer

pytestmark = pytest.mark.unit

#: What the Orthanc hook does: records an Endpoint and an ImagingStudy, finds the Patient and the
#: planned activity (Observation), and starts the voxel-dosimetry job (Task, results, Provenance).
HOOK_SCOPES = ("system/ImagingStudy.cru system/Endpoint.cu system/Patient.rs system/Observation.crus "
               "system/Task.cru system/DiagnosticReport.cu system/Provenance.cu")
#: What eligibility reads from the store for a patient (Patient/{id}/$evaluate-eligibility).
CDS_READ_SCOPES = ("system/Patient.rs system/Observation.rs system/Condition.rs system/Procedure.rs "
                   "system/MedicationStatement.rs system/AllergyIntolerance.rs system/ImagingStudy.rs "
                   "system/BodyStructure.rs")
ORTHANC_STUDY_ID = "27f7126f-4f66a63e-2fa1c4ca-73e1bd2c-3f6ec8d1"
CLOSED_PORT_URL = "http://127.0.0.1:9"  # nothing listens on the discard port


@pytest.fixture(scope="module")
def idp() -> Iterator[JwksServer]:
    with JwksServer() as server:
        yield server


@pytest.fixture
def client(tmp_path: Path, idp: JwksServer) -> FlaskClient:
    settings = Settings.from_env({
        "AUTH_MODE": "jwt", "AUTH_JWKS_URL": idp.jwks_url, "AUTH_ISSUER": idp.issuer,
        "AUTH_AUDIENCE": idp.audience, "DATABASE_URL": f"sqlite:///{tmp_path / 'store.db'}",
        "ORTHANC_URL": CLOSED_PORT_URL, "ORTHANC_CATCHUP_S": "0", "RATE_LIMIT_PER_MINUTE": "0",
        "JOB_SWEEP_S": "0", "LOG_LEVEL": "WARNING", "INTERNAL_TOKEN": "a-long-test-secret-for-the-workers",
    })
    return create_app(settings).test_client()


def _bearer(idp: JwksServer, scopes: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {idp.mint(scopes)}"}


def test_the_orthanc_hook_needs_every_scope_of_what_it_writes(client: FlaskClient, idp: JwksServer) -> None:
    only_imaging = client.post("/hooks/orthanc/stable-study", json={"ID": ORTHANC_STUDY_ID},
                               headers=_bearer(idp, "system/ImagingStudy.c"))
    assert only_imaging.status_code == 403
    diagnostics = " ".join(i["diagnostics"] for i in only_imaging.get_json()["issue"])
    assert "Task" in diagnostics and "Endpoint" in diagnostics
    # With the scopes the hook gets past authorisation: the PACS (not running) is then a 503.
    full = client.post("/hooks/orthanc/stable-study", json={"ID": ORTHANC_STUDY_ID}, headers=_bearer(idp, HOOK_SCOPES))
    assert full.status_code == 503 and full.headers.get("Retry-After")


def _cds_request(prefetch: dict[str, Any] | None) -> dict[str, Any]:
    body: dict[str, Any] = {"hook": "patient-view", "hookInstance": "d1577c69-dfbe-44ad-ba6d-3e05e953b2ea",
                            "context": {"userId": "Practitioner/1", "patientId": "p1"}}
    if prefetch is not None:
        body["prefetch"] = prefetch
    return body


def test_cds_patient_view_needs_read_scopes_of_everything_it_reads(client: FlaskClient, idp: JwksServer) -> None:
    narrow = "system/Patient.rs system/Observation.rs system/Condition.rs system/Procedure.rs"
    resp = client.post("/cds-services/liver-directed-therapy", json=_cds_request(None),
                       headers=_bearer(idp, narrow))
    assert resp.status_code == 403
    assert "AllergyIntolerance" in " ".join(i["diagnostics"] for i in resp.get_json()["issue"])
    # With every read scope the request passes authorisation (the patient is unknown: 404).
    resp = client.post("/cds-services/liver-directed-therapy", json=_cds_request(None),
                       headers=_bearer(idp, CDS_READ_SCOPES))
    assert resp.status_code == 404


def test_cds_reads_from_the_store_what_the_prefetch_left_out(client: FlaskClient, idp: JwksServer) -> None:
    writer = _bearer(idp, "system/*.cruds")
    patient = {"resourceType": "Patient", "id": "p1", "birthDate": "1960-05-01"}
    ascites = {"resourceType": "Condition", "id": "c1", "subject": {"reference": "Patient/p1"},
               "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                                              "code": "active"}]},
               "code": {"coding": [{"system": "http://snomed.info/sct", "code": "389026000"}]}}
    allergy = {"resourceType": "AllergyIntolerance", "id": "a1", "patient": {"reference": "Patient/p1"},
               "code": {"text": "iodinated contrast"}}
    for res in (patient, ascites, allergy):
        assert client.put(f"/fhir/{res['resourceType']}/{res['id']}", json=res, headers=writer).status_code in (200, 201)
    services = client.application.extensions["netliver"]["services"]
    seen: list[dict[str, Any]] = []

    def fake_call_json(service: str, operation: str, body: Any, params: Any = None, request_id: str = "") -> Any:
        seen.append(body)
        return {"cards": []}

    services.call_json = fake_call_json
    # The EHR prefetched the patient and (no) Observations, but not the Conditions.
    prefetch = {"patient": patient, "observations": {"resourceType": "Bundle", "type": "searchset", "entry": []}}
    resp = client.post("/cds-services/liver-directed-therapy", json=_cds_request(prefetch),
                       headers=_bearer(idp, CDS_READ_SCOPES))
    assert resp.status_code == 200, resp.get_json()
    types = sorted(e["resource"]["resourceType"] for e in seen[0]["entry"])
    assert types == ["AllergyIntolerance", "Condition", "Patient"]
    # A prefetched key wins over the store: an empty Conditions prefetch means no Conditions.
    prefetch["conditions"] = {"resourceType": "Bundle", "type": "searchset", "entry": []}
    client.post("/cds-services/liver-directed-therapy", json=_cds_request(prefetch),
                headers=_bearer(idp, CDS_READ_SCOPES))
    assert sorted(e["resource"]["resourceType"] for e in seen[1]["entry"]) == ["AllergyIntolerance", "Patient"]


def test_jwt_mode_refuses_to_start_with_the_published_internal_token(tmp_path: Path, idp: JwksServer) -> None:
    # The default INTERNAL_TOKEN is in the repository: with it, anyone could call the internal job
    # endpoints (which write resources) and the PACS hook without a JWT.
    env = {"AUTH_MODE": "jwt", "AUTH_JWKS_URL": idp.jwks_url, "AUTH_ISSUER": idp.issuer,
           "AUTH_AUDIENCE": idp.audience, "DATABASE_URL": f"sqlite:///{tmp_path / 'store.db'}",
           "ORTHANC_CATCHUP_S": "0", "RATE_LIMIT_PER_MINUTE": "0", "JOB_SWEEP_S": "0", "LOG_LEVEL": "WARNING"}
    for published in (None, Settings.internal_token, "change-me"):
        settings = Settings.from_env(env if published is None else {**env, "INTERNAL_TOKEN": published})
        with pytest.raises(ValueError, match="INTERNAL_TOKEN"):
            create_app(settings)
    # A secret of the deployment's own is accepted, and so is the default with auth off (demo).
    create_app(Settings.from_env({**env, "INTERNAL_TOKEN": "a-long-test-secret-for-the-workers"}))
    create_app(Settings.from_env({**env, "AUTH_MODE": "off"}))


def test_the_catch_up_call_works_with_the_internal_token_alone_in_jwt_mode(client: FlaskClient, idp: JwksServer) -> None:
    internal = {"X-Internal-Token": "a-long-test-secret-for-the-workers"}
    # Past authentication, the PACS (not running) answers: 503, not a 401 asking for a JWT too.
    resp = client.post("/hooks/orthanc/catch-up", headers=internal)
    assert resp.status_code == 503, resp.get_json()
    assert client.post("/hooks/orthanc/catch-up", headers={"X-Internal-Token": "wrong"}).status_code == 401
    # A JWT alone, even with every scope, is not the internal token.
    assert client.post("/hooks/orthanc/catch-up", headers=_bearer(idp, "system/*.cruds")).status_code == 401


@pytest.mark.parametrize(("path", "body", "expression"), [
    ("/fhir/Patient/p1/$evaluate-eligibility", {"resourceType": "Parameters", "parameter": 5}, "Parameters.parameter"),
    ("/fhir/Patient/p1/$evaluate-eligibility", {"resourceType": "Parameters", "parameter": [5]},
     "Parameters.parameter[0]"),
    ("/fhir/$voxel-dosimetry", {"resourceType": "Parameters", "parameter": {"name": "method"}}, "Parameters.parameter"),
    ("/fhir/$voxel-dosimetry", {"resourceType": "Parameters", "parameter": ["method"]}, "Parameters.parameter[0]"),
    ("/cds-services/liver-directed-therapy",
     {"hook": "patient-view", "context": {"patientId": "p1"},
      "prefetch": {"patient": {"resourceType": "Patient", "id": "p1"},
                   "observations": {"resourceType": "Bundle", "type": "searchset", "entry": 5}}},
     "prefetch.observations.entry"),
])
def test_structurally_broken_bodies_are_400_naming_the_element(client: FlaskClient, idp: JwksServer, path: str,
                                                              body: dict[str, Any], expression: str) -> None:
    writer = _bearer(idp, "system/*.cruds")
    assert client.put("/fhir/Patient/p1", json={"resourceType": "Patient", "id": "p1"}, headers=writer).status_code in (200, 201)
    resp = client.post(path, json=body, headers=writer)
    assert resp.status_code == 400, resp.get_json()
    assert resp.get_json()["issue"][0]["expression"] == [expression]
