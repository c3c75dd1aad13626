"""The tumour-board page in the gateway: jwt mode asks for the same read scopes as the REST API
(401 without a token, 403 with too few scopes, never a page with data), off mode renders the
stored case, and unknown patients or figures are 404 OperationOutcomes."""

from __future__ import annotations

from pathlib import Path

import pytest
from flask.testing import FlaskClient

from gateway.app import create_app
from netliver.fhir.codesystems import STATUS_SYSTEM, THERAPY_SYSTEM
from netliver.settings import Settings
from tests.support.jwks import JwksServer

READ_ALL = "system/Patient.rs system/Observation.rs system/DiagnosticReport.rs system/BodyStructure.rs"


def _settings(tmp_path: Path, **extra: str) -> Settings:
    return Settings.from_env({"DATABASE_URL": f"sqlite:///{tmp_path / 'store.db'}", "ORTHANC_URL": "http://127.0.0.1:9",
                              "ORTHANC_CATCHUP_S": "0", "RATE_LIMIT_PER_MINUTE": "0", "JOB_SWEEP_S": "0",
                              "LOG_LEVEL": "WARNING", "INTERNAL_TOKEN": "a-long-test-secret-for-the-workers", **extra})


@pytest.fixture
def open_client(tmp_path: Path) -> FlaskClient:
    return create_app(_settings(tmp_path, AUTH_MODE="off")).test_client()


@pytest.mark.parametrize("path", ["/app/", "/app/patient/p1", "/app/patient/p1/figure/waterfall.png",
                                  "/app/patient/p1/report.pdf"])
def test_without_a_token_the_page_is_a_401_outcome(jwt_client: FlaskClient, path: str) -> None:
    resp = jwt_client.get(path)
    assert resp.status_code == 401 and resp.get_json()["resourceType"] == "OperationOutcome"


def test_a_token_must_cover_every_type_the_page_reads(jwt_client: FlaskClient, idp: JwksServer) -> None:
    narrow = jwt_client.get("/app/patient/p1", headers={"Authorization": f"Bearer {idp.mint('system/Patient.rs')}"})
    assert narrow.status_code == 403
    assert "DiagnosticReport" in " ".join(i["diagnostics"] for i in narrow.get_json()["issue"])
    enough = jwt_client.get("/app/patient/p1", headers={"Authorization": f"Bearer {idp.mint(READ_ALL)}"})
    assert enough.status_code == 404  # authorised; the patient is unknown


def test_the_page_renders_a_stored_case_and_refuses_unknown_things(open_client: FlaskClient) -> None:
    open_client.put("/fhir/Patient/p1", json={"resourceType": "Patient", "id": "p1", "name": [{"text": "Ada Example"}]})
    open_client.put("/fhir/Observation/e1", json={
        "resourceType": "Observation", "id": "e1", "status": "final", "subject": {"reference": "Patient/p1"},
        "code": {"coding": [{"system": THERAPY_SYSTEM, "code": "sirt", "display": "SIRT"}]},
        "effectiveDateTime": "2026-01-05",
        "valueCodeableConcept": {"coding": [{"system": STATUS_SYSTEM, "code": "ineligible"}]},
        "note": [{"text": "[SIRT-ABS-LSF · absolute · met] Lung shunt above 20 %. Source: EANM 2022"}]})
    page = open_client.get("/app/patient/p1")
    html = page.get_data(as_text=True)
    assert page.status_code == 200 and page.mimetype == "text/html"
    assert "Ada Example" in html and 'data-status="ineligible"' in html and "SIRT-ABS-LSF" in html
    assert "<script" not in html  # usable without JavaScript
    found = open_client.get("/app/?q=ada").get_data(as_text=True)
    assert "/app/patient/p1" in found and "/app/patient/p1" not in open_client.get("/app/?q=zzz").get_data(as_text=True)
    assert open_client.get("/app/patient/p1/figure/waterfall.png").status_code == 404  # no lesions stored
    assert open_client.get("/app/patient/nobody").status_code == 404
    pdf = open_client.get("/app/patient/p1/report.pdf")
    assert pdf.status_code == 200 and pdf.data.startswith(b"%PDF-")
