"""CDS Hooks against an EHR whose FHIR server is not netliver's: Medplum's FHIR router
(``tests/support/fhir_engine``) holds the record, the CDS client written from the specification
(``tests/support/cds_client.py``) prefetches from it by the discovery templates, or sends it as
``fhirServer`` for the gateway to read. A template that only netliver's store understands (a
bare id in ``subject=``) returns nothing here, and the card would silently change.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from flask.testing import FlaskClient

from gateway.app import create_app
from infra.demo_patients import realistic_patient
from netliver.settings import Settings
from services.eligibility.app import create_app as create_eligibility_app
from tests.support.cds_client import CdsClientSim, gateway_env
from tests.support.fhir_engine import FhirEngine, fhir_engine_fixture
from tests.support.jwks import JwksServer
from tests.support.served import ServedApp

fhir_engine = fhir_engine_fixture(scope="module")

PUBLIC = "https://netliver.hospital.test"
SERVICE = f"{PUBLIC}/cds-services/liver-directed-therapy"
PATH = "/cds-services/liver-directed-therapy"
PATIENT = "engine-p1"
OO = {"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "exception",
                                                     "diagnostics": "prefetch query failed"}]}


@pytest.fixture(scope="module")
def record() -> dict[str, Any]:
    return realistic_patient(PATIENT)


@pytest.fixture(scope="module")
def engine(fhir_engine: FhirEngine, record: dict[str, Any]) -> FhirEngine:
    fhir_engine.reset()
    for entry in record["entry"]:
        res = entry["resource"]
        resp = requests.put(f"{fhir_engine.base_url}/{res['resourceType']}/{res['id']}", json=res,
                            headers={"Content-Type": "application/fhir+json"}, timeout=30)
        assert resp.status_code in (200, 201), resp.text[:500]
    return fhir_engine


@pytest.fixture(scope="module")
def ehr() -> Iterator[CdsClientSim]:
    with CdsClientSim() as client:
        yield client


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory, ehr: CdsClientSim) -> Iterator[FlaskClient]:
    tmp: Path = tmp_path_factory.mktemp("cds-engine")
    with JwksServer() as idp, ServedApp(create_eligibility_app(Settings(log_level="WARNING"))) as eligibility:
        settings = Settings.from_env(gateway_env(tmp, idp, ehr, eligibility.url, PUBLIC))
        yield create_app(settings).test_client()


def _templates(gateway: FlaskClient) -> dict[str, str]:
    templates: dict[str, str] = gateway.get("/cds-services").get_json()["services"][0]["prefetch"]
    return templates


def _cards(gateway: FlaskClient, ehr: CdsClientSim, body: dict[str, Any]) -> list[tuple[str, str, str]]:
    resp = gateway.post(PATH, json=body, headers={"Authorization": f"Bearer {ehr.token(SERVICE)}"})
    assert resp.status_code == 200, resp.get_json()
    return [(c["summary"], c["indicator"], c["detail"]) for c in resp.get_json()["cards"]]


def test_every_template_returns_the_whole_record_on_the_independent_engine(
        gateway: FlaskClient, engine: FhirEngine, record: dict[str, Any]) -> None:
    loaded: dict[str, int] = {}
    for entry in record["entry"]:
        loaded[entry["resource"]["resourceType"]] = loaded.get(entry["resource"]["resourceType"], 0) + 1
    for key, template in _templates(gateway).items():
        rtype = template.split("?")[0].split("/")[0]
        resp = requests.get(f"{engine.base_url}/{template.replace('{{context.patientId}}', PATIENT)}", timeout=30)
        assert resp.status_code == 200, (key, resp.text[:300])
        body = resp.json()
        found = 1 if body["resourceType"] == "Patient" else len(body.get("entry", []))
        assert found == loaded.get(rtype, 0), (key, template, found)
    # What the old templates did: a bare id in subject= finds nothing on this engine.
    bare = requests.get(f"{engine.base_url}/Observation?subject={PATIENT}", timeout=30).json()
    assert not bare.get("entry")


def test_the_same_card_prefetched_fetched_or_recovered_from_an_operation_outcome(
        gateway: FlaskClient, ehr: CdsClientSim, engine: FhirEngine, record: dict[str, Any]) -> None:
    prefetch = ehr.prefetch(_templates(gateway), engine.base_url, PATIENT)
    full = _cards(gateway, ehr, ehr.hook_request(PATIENT, prefetch=prefetch))
    assert full[0][0].startswith("Eligible: TAE, cTACE, PRRT; with caution: RFA, MWA, laser, cryo, IRE")
    # Prefetch absent: every key read from the engine (the patient is only the EHR's).
    fetched = _cards(gateway, ehr, ehr.hook_request(PATIENT, fhir_server=engine.base_url, access_token="t"))
    assert fetched == full
    # An OperationOutcome in two keys: those are read from the engine.
    broken = {**prefetch, "lesions": OO, "medications": OO}
    assert _cards(gateway, ehr, ehr.hook_request(PATIENT, prefetch=broken, fhir_server=engine.base_url,
                                                 access_token="t")) == full
    # Without fhirServer those keys cannot be had: 412, never the card of a record without lesions.
    resp = gateway.post(PATH, json=ehr.hook_request(PATIENT, prefetch=broken),
                        headers={"Authorization": f"Bearer {ehr.token(SERVICE)}"})
    assert resp.status_code == 412


def test_an_ehr_patient_the_engine_does_not_know_is_412(gateway: FlaskClient, ehr: CdsClientSim,
                                                       engine: FhirEngine) -> None:
    resp = gateway.post(PATH, json=ehr.hook_request("nobody", fhir_server=engine.base_url, access_token="t"),
                        headers={"Authorization": f"Bearer {ehr.token(SERVICE)}"})
    assert resp.status_code == 412
    assert resp.get_json()["issue"][0]["expression"] == ["prefetch.patient"]
