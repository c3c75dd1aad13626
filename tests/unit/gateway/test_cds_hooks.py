"""CDS Hooks 2.0 as an EHR calls it: a CDS client written from the specification
(``tests/support/cds_client.py``: own keys, JWT per call, prefetch by template) against the
gateway in ``AUTH_MODE=jwt``, with the eligibility service over HTTP and, as the EHR's FHIR
server, a second netliver gateway with its own database behind a bearer-token guard.

The independent-engine version of the EHR server (Medplum) is in
``tests/integration/test_cds_ehr_engine.py``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from flask.testing import FlaskClient

from gateway.app import create_app
from gateway.cds.ehr import EhrFhirServer, EhrUnavailable
from gateway.cds.prefetch import PrefetchKey
from infra.demo_patients import realistic_patient
from netliver.settings import Settings
from services.eligibility.app import create_app as create_eligibility_app
from tests.support.cds_client import CdsClientSim, gateway_env
from tests.support.jwks import JwksServer
from tests.support.served import BearerGuard, ServedApp

PUBLIC = "https://netliver.hospital.test"
SERVICE = f"{PUBLIC}/cds-services/liver-directed-therapy"
PATH = "/cds-services/liver-directed-therapy"
EHR_TOKEN = "ehr-access-token-for-netliver"
CLOSED_PORT_URL = "http://127.0.0.1:9"
INTERNAL = "a-long-test-secret-for-the-workers"


def _env(tmp: Path, **more: str) -> dict[str, str]:
    return {"DATABASE_URL": f"sqlite:///{tmp / 'store.db'}", "ORTHANC_URL": CLOSED_PORT_URL,
            "ORTHANC_CATCHUP_S": "0", "RATE_LIMIT_PER_MINUTE": "0", "JOB_SWEEP_S": "0", "LOG_LEVEL": "WARNING",
            "INTERNAL_TOKEN": INTERNAL, **more}


def as_transaction(bundle: dict[str, Any]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": e["resource"], "request": {"method": "PUT",
                                                "url": f"{e['resource']['resourceType']}/{e['resource']['id']}"}}
        for e in bundle["entry"]]}


@pytest.fixture(scope="module")
def eligibility() -> Iterator[ServedApp]:
    with ServedApp(create_eligibility_app(Settings(log_level="WARNING"))) as served:
        yield served


@pytest.fixture(scope="module")
def ehr() -> Iterator[CdsClientSim]:
    with CdsClientSim() as client:
        yield client


@pytest.fixture(scope="module")
def ehr_fhir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, BearerGuard]]:
    """The EHR's FHIR server: a second netliver gateway (own database), token-guarded."""
    app = create_app(Settings.from_env(_env(tmp_path_factory.mktemp("ehr"), AUTH_MODE="off")))
    loaded = app.test_client().post("/fhir", json=as_transaction(realistic_patient("ehr-p1")))
    assert loaded.status_code == 200, loaded.get_json()
    guard = BearerGuard(app, EHR_TOKEN)
    with ServedApp(guard) as served:
        yield f"{served.url}/fhir", guard


def _gateway(tmp: Path, idp: JwksServer, ehr: CdsClientSim, eligibility: ServedApp, **more: str) -> FlaskClient:
    tmp.mkdir(parents=True, exist_ok=True)
    return create_app(Settings.from_env(gateway_env(tmp, idp, ehr, eligibility.url, PUBLIC, **more))).test_client()


@pytest.fixture
def gateway(tmp_path: Path, idp: JwksServer, ehr: CdsClientSim, eligibility: ServedApp) -> FlaskClient:
    return _gateway(tmp_path, idp, ehr, eligibility)


def _call(gateway: FlaskClient, ehr: CdsClientSim, body: dict[str, Any], token: str | None = None) -> Any:
    return gateway.post(PATH, json=body, headers={"Authorization": f"Bearer {token or ehr.token(SERVICE)}"})


def _templates(gateway: FlaskClient) -> dict[str, str]:
    discovery = gateway.get("/cds-services")
    assert discovery.status_code == 200
    templates: dict[str, str] = discovery.get_json()["services"][0]["prefetch"]
    return templates


def _card_text(resp: Any) -> list[tuple[str, str, str]]:
    assert resp.status_code == 200, resp.get_json()
    return [(c["summary"], c["indicator"], c["detail"]) for c in resp.get_json()["cards"]]


# -- discovery -------------------------------------------------------------------------------

def test_discovery_is_public_and_its_templates_cover_every_type_read(gateway: FlaskClient) -> None:
    resp = gateway.get("/cds-services")  # no token
    assert resp.status_code == 200
    service = resp.get_json()["services"][0]
    templates = service["prefetch"]
    assert templates["patient"] == "Patient/{{context.patientId}}"
    searched = {t.split("?")[0] for t in templates.values() if "?" in t}
    assert searched == {"Observation", "Condition", "Procedure", "MedicationStatement", "AllergyIntolerance",
                        "ImagingStudy", "BodyStructure"}
    for template in templates.values():
        if "?" in template:  # never a bare id in subject= (only Patient/<id> or patient=<id>)
            assert "patient={{context.patientId}}" in template or "subject=Patient/{{context.patientId}}" in template
            assert "_count=" in template
    reasons = service["extension"]["org.netliver.overrideReasons"]
    assert reasons and all(r["display"] and r["code"] and r["system"] for r in reasons)
    assert gateway.get("/fhir/CodeSystem/cds-override-reason").status_code == 401  # a token is needed there


# -- the same card from every source ----------------------------------------------------------

def test_the_same_card_from_prefetch_from_the_ehr_server_and_from_the_store(
        gateway: FlaskClient, ehr: CdsClientSim, idp: JwksServer, ehr_fhir: tuple[str, BearerGuard]) -> None:
    base, guard = ehr_fhir
    auth = {"Authorization": f"Bearer {EHR_TOKEN}"}
    prefetch = ehr.prefetch(_templates(gateway), base, "ehr-p1", auth)
    assert set(prefetch) == set(_templates(gateway))
    assert prefetch["observations"]["total"] == 57 and prefetch["lesions"]["total"] == 4
    assert prefetch["allergies"] is None  # no data: null
    full = _card_text(_call(gateway, ehr, ehr.hook_request("ehr-p1", prefetch=prefetch)))
    assert full[0][0].startswith("Eligible: TAE, cTACE, PRRT; with caution: RFA, MWA")
    # Nothing prefetched: every key is read from fhirServer with the fhirAuthorization token.
    guard.seen.clear()
    fetched = _card_text(_call(gateway, ehr, ehr.hook_request("ehr-p1", fhir_server=base, access_token=EHR_TOKEN)))
    assert fetched == full
    assert {m for m, _ in guard.seen} == {"GET"} and len(guard.seen) >= 8
    assert any(p.startswith("/fhir/BodyStructure?patient=ehr-p1") for _, p in guard.seen)
    # The patient is only the EHR's: netliver's store has never heard of it.
    smart = {"Authorization": f"Bearer {idp.mint('system/*.cruds')}"}
    assert gateway.get("/fhir/Patient/ehr-p1", headers=smart).status_code == 404
    # Loaded into netliver's store, with neither prefetch nor fhirServer: the same card.
    loaded = gateway.post("/fhir", json=as_transaction(realistic_patient("ehr-p1")), headers=smart)
    assert loaded.status_code == 200
    assert _card_text(_call(gateway, ehr, ehr.hook_request("ehr-p1"))) == full


def test_an_operation_outcome_in_a_key_is_fetched_and_never_read_as_no_data(
        gateway: FlaskClient, ehr: CdsClientSim, ehr_fhir: tuple[str, BearerGuard]) -> None:
    base, guard = ehr_fhir
    prefetch = ehr.prefetch(_templates(gateway), base, "ehr-p1", {"Authorization": f"Bearer {EHR_TOKEN}"})
    full = _card_text(_call(gateway, ehr, ehr.hook_request("ehr-p1", prefetch=prefetch)))
    failed = {"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "timeout",
                                                             "diagnostics": "query timed out"}]}
    broken = {**prefetch, "observations": failed, "conditions": failed}
    guard.seen.clear()
    again = _card_text(_call(gateway, ehr, ehr.hook_request("ehr-p1", prefetch=broken, fhir_server=base,
                                                            access_token=EHR_TOKEN)))
    assert again == full
    assert sorted(p.split("?")[0] for _, p in guard.seen) == ["/fhir/Condition", "/fhir/Observation"]
    # Without a FHIR server to ask, and a store that does not know the patient: 412, no card.
    resp = _call(gateway, ehr, ehr.hook_request("ehr-p1", prefetch=broken))
    assert resp.status_code == 412
    outcome = resp.get_json()
    assert outcome["resourceType"] == "OperationOutcome" and "cards" not in outcome
    assert {e for i in outcome["issue"] for e in i.get("expression", [])} == {"prefetch.observations",
                                                                             "prefetch.conditions"}


@pytest.mark.parametrize("server", ["down", "wrong-token"])
def test_an_ehr_server_that_cannot_be_read_is_412_never_a_card(
        gateway: FlaskClient, ehr: CdsClientSim, ehr_fhir: tuple[str, BearerGuard], server: str) -> None:
    base, _ = ehr_fhir
    prefetch = ehr.prefetch(_templates(gateway), base, "ehr-p1", {"Authorization": f"Bearer {EHR_TOKEN}"})
    del prefetch["medications"]
    url, token = (CLOSED_PORT_URL + "/fhir", EHR_TOKEN) if server == "down" else (base, "an-expired-token")
    resp = _call(gateway, ehr, ehr.hook_request("ehr-p1", prefetch=prefetch, fhir_server=url, access_token=token))
    assert resp.status_code == 412, resp.get_json()
    issue = resp.get_json()["issue"][0]
    assert issue["expression"] == ["prefetch.medications"]
    assert ("cannot be reached" if server == "down" else "refused the fhirAuthorization token") in issue["diagnostics"]


def test_null_is_no_data_but_a_null_patient_or_a_paged_prefetch_is_412(
        gateway: FlaskClient, ehr: CdsClientSim, ehr_fhir: tuple[str, BearerGuard]) -> None:
    base, _ = ehr_fhir
    prefetch = ehr.prefetch(_templates(gateway), base, "ehr-p1", {"Authorization": f"Bearer {EHR_TOKEN}"})
    no_meds = {**prefetch, "medications": None}
    resp = _call(gateway, ehr, ehr.hook_request("ehr-p1", prefetch=no_meds))
    assert resp.status_code == 200  # null: the EHR has none, the card is computed without them
    assert _call(gateway, ehr, ehr.hook_request("ehr-p1", prefetch={**prefetch, "patient": None})).status_code == 412
    paged = {**prefetch, "observations": {**prefetch["observations"],
                                          "link": [{"relation": "next", "url": f"{base}/Observation?page=2"}]}}
    resp = _call(gateway, ehr, ehr.hook_request("ehr-p1", prefetch=paged))
    assert resp.status_code == 412 and "next" in resp.get_json()["issue"][0]["diagnostics"]


def test_data_of_another_patient_is_refused_never_a_card_about_someone_else(
        gateway: FlaskClient, ehr: CdsClientSim, ehr_fhir: tuple[str, BearerGuard]) -> None:
    base, _ = ehr_fhir
    prefetch = ehr.prefetch(_templates(gateway), base, "ehr-p1", {"Authorization": f"Bearer {EHR_TOKEN}"})
    resp = _call(gateway, ehr, ehr.hook_request("someone-else", prefetch=prefetch))
    assert resp.status_code == 400
    assert resp.get_json()["issue"][0]["expression"] == ["prefetch.patient"]
    mixed = {**prefetch, "patient": {**prefetch["patient"], "id": "someone-else"}}
    resp = _call(gateway, ehr, ehr.hook_request("someone-else", prefetch=mixed))
    assert resp.status_code == 400
    expression = resp.get_json()["issue"][0]["expression"][0]
    index = int(expression.removeprefix("prefetch.observations.entry[").split("]")[0])
    assert prefetch["observations"]["entry"][index]["resource"]["subject"]["reference"] == "Patient/ehr-p1"


# -- request validation ----------------------------------------------------------------------

@pytest.mark.parametrize("remove", ["hook", "hookInstance", "context.userId", "context.patientId", "context"])
def test_a_request_without_a_required_field_is_400_naming_it(gateway: FlaskClient, ehr: CdsClientSim,
                                                             remove: str) -> None:
    body = ehr.hook_request("ehr-p1")
    if remove.startswith("context."):
        del body["context"][remove.split(".")[1]]
    else:
        del body[remove]
    resp = _call(gateway, ehr, body)
    assert resp.status_code == 400, resp.get_json()
    assert resp.get_json()["issue"][0]["expression"] == [remove]


@pytest.mark.parametrize(("prefetch", "expression"), [
    ({"observations": {"resourceType": "Bundle", "type": "searchset", "entry": 5}}, "prefetch.observations.entry"),
    ({"conditions": ["not", "a", "resource"]}, "prefetch.conditions"),
    ({"procedures": {"resourceType": "Observation", "status": "final"}}, "prefetch.procedures"),
])
def test_a_malformed_prefetch_value_is_400_naming_its_key(gateway: FlaskClient, ehr: CdsClientSim,
                                                          prefetch: dict[str, Any], expression: str) -> None:
    resp = _call(gateway, ehr, ehr.hook_request("ehr-p1", prefetch=prefetch))
    assert resp.status_code == 400, resp.get_json()
    assert resp.get_json()["issue"][0]["expression"] == [expression]


def test_fhir_authorization_without_fhir_server_is_400(gateway: FlaskClient, ehr: CdsClientSim) -> None:
    body = ehr.hook_request("ehr-p1", access_token=EHR_TOKEN)
    resp = _call(gateway, ehr, body)
    assert resp.status_code == 400 and resp.get_json()["issue"][0]["expression"] == ["fhirServer"]


# -- CDS client authentication --------------------------------------------------------------

def test_cds_client_tokens_by_the_specification(gateway: FlaskClient, ehr: CdsClientSim, idp: JwksServer,
                                               ehr_fhir: tuple[str, BearerGuard]) -> None:
    base, _ = ehr_fhir
    body = ehr.hook_request("ehr-p1", fhir_server=base, access_token=EHR_TOKEN)
    assert gateway.post(PATH, json=body).status_code == 401  # no token
    token = ehr.token(SERVICE, alg="RS384")
    assert _call(gateway, ehr, body, token).status_code == 200
    replay = _call(gateway, ehr, body, token)
    assert replay.status_code == 401 and "jti" in replay.get_json()["issue"][0]["diagnostics"]
    wrong_aud = _call(gateway, ehr, body, ehr.token(f"{PUBLIC}/cds-services"))
    assert wrong_aud.status_code == 401 and "audience" in wrong_aud.get_json()["issue"][0]["diagnostics"]
    expired = _call(gateway, ehr, body, ehr.token(SERVICE, issued_at=time.time() - 900))
    assert expired.status_code == 401 and "expired" in expired.get_json()["issue"][0]["diagnostics"]
    too_long = _call(gateway, ehr, body, ehr.token(SERVICE, lifetime_s=301))
    assert too_long.status_code == 401 and "300 s" in too_long.get_json()["issue"][0]["diagnostics"]
    assert _call(gateway, ehr, body, ehr.token(SERVICE, lifetime_s=300)).status_code == 200  # the boundary
    no_jti = _call(gateway, ehr, body, ehr.token(SERVICE, jti=None))
    assert no_jti.status_code == 401
    with CdsClientSim(issuer="https://rogue-ehr.test/") as rogue:
        unknown = _call(gateway, ehr, body, rogue.token(SERVICE))
    assert unknown.status_code == 401 and "not a trusted CDS client" in unknown.get_json()["issue"][0]["diagnostics"]
    # A hospital SMART access token is not a CDS client token, whatever its scopes.
    assert _call(gateway, ehr, body, idp.mint("system/*.cruds", aud=SERVICE)).status_code == 401
    # Signed by the EHR's issuer name but with a key it does not publish.
    forged = ehr.keys.unknown_key_token()
    assert _call(gateway, ehr, body, forged).status_code == 401


def test_a_jti_is_refused_by_every_gateway_process_once_used(tmp_path: Path, idp: JwksServer, ehr: CdsClientSim,
                                                              eligibility: ServedApp,
                                                              ehr_fhir: tuple[str, BearerGuard]) -> None:
    base, _ = ehr_fhir
    first = _gateway(tmp_path / "a", idp, ehr, eligibility)
    second = _gateway(tmp_path / "b", idp, ehr, eligibility)
    body = ehr.hook_request("ehr-p1", fhir_server=base, access_token=EHR_TOKEN)
    token = ehr.token(SERVICE)
    assert _call(first, ehr, body, token).status_code == 200
    assert _call(second, ehr, body, token).status_code == 401


def test_without_cds_clients_every_cds_call_is_refused_under_jwt(tmp_path: Path, idp: JwksServer,
                                                                 ehr: CdsClientSim, eligibility: ServedApp) -> None:
    gateway = _gateway(tmp_path, idp, ehr, eligibility, CDS_CLIENTS="")
    resp = _call(gateway, ehr, ehr.hook_request("ehr-p1"))
    assert resp.status_code == 401 and "CDS_CLIENTS" in resp.get_json()["issue"][0]["diagnostics"]
    with pytest.raises(ValueError, match="CDS_CLIENTS"):
        _gateway(tmp_path, idp, ehr, eligibility, CDS_CLIENTS='[{"iss": "x"}]')


def test_a_client_registered_with_its_fhir_servers_may_name_only_those(
        tmp_path: Path, idp: JwksServer, ehr: CdsClientSim, eligibility: ServedApp,
        ehr_fhir: tuple[str, BearerGuard]) -> None:
    base, guard = ehr_fhir
    body = ehr.hook_request("ehr-p1", fhir_server=base, access_token=EHR_TOKEN)
    elsewhere = json.dumps([{**ehr.registration, "fhir_servers": ["https://ehr.hospital.test/fhir"]}])
    guard.seen.clear()
    refused = _call(_gateway(tmp_path / "a", idp, ehr, eligibility, CDS_CLIENTS=elsewhere), ehr, body)
    assert refused.status_code == 403 and refused.get_json()["issue"][0]["expression"] == ["fhirServer"]
    assert guard.seen == []  # nothing was asked of the unregistered server
    registered = json.dumps([{**ehr.registration, "fhir_servers": [base + "/"]}])
    assert _call(_gateway(tmp_path / "b", idp, ehr, eligibility, CDS_CLIENTS=registered), ehr, body).status_code == 200


# -- feedback ----------------------------------------------------------------------------------

def test_feedback_is_recorded_as_audit_events_with_the_override_reason(
        gateway: FlaskClient, ehr: CdsClientSim, idp: JwksServer, ehr_fhir: tuple[str, BearerGuard]) -> None:
    base, _ = ehr_fhir
    resp = _call(gateway, ehr, ehr.hook_request("ehr-p1", fhir_server=base, access_token=EHR_TOKEN))
    card = resp.get_json()["cards"][0]
    assert card["links"] == [{"label": "Open the tumour-board page of this patient",
                              "url": f"{PUBLIC}/app/patient/ehr-p1", "type": "absolute"}]
    reason = card["overrideReasons"][0]
    feedback = {"feedback": [{"card": card["uuid"], "outcome": "overridden",
                              "overrideReason": {"reason": reason, "userComment": "board chose PRRT"},
                              "outcomeTimestamp": "2026-12-01T10:00:00Z"}]}
    url = f"{PATH}/feedback"
    sent = gateway.post(url, json=feedback, headers={"Authorization": f"Bearer {ehr.token(f'{SERVICE}/feedback')}"})
    assert sent.status_code == 200, sent.get_json()
    smart = {"Authorization": f"Bearer {idp.mint('system/AuditEvent.rs')}"}
    events = gateway.get("/fhir/AuditEvent", headers=smart).get_json()
    assert events["total"] == 1
    event = events["entry"][0]["resource"]
    details = {d["type"]: d["valueString"] for d in event["entity"][0]["detail"]}
    assert details["outcome"] == "overridden" and details["userComment"] == "board chose PRRT"
    assert reason["code"] in details["overrideReason"] and details["tenant"] == "hospital-a"
    assert event["agent"][0]["who"]["identifier"]["value"] == ehr.issuer
    assert event["entity"][0]["what"]["identifier"]["value"] == f"urn:uuid:{card['uuid']}"
    bad = {"feedback": [{"card": card["uuid"], "outcome": "accepted", "outcomeTimestamp": "2026-12-01T10:00:00Z"}]}
    refused = gateway.post(url, json=bad, headers={"Authorization": f"Bearer {ehr.token(f'{SERVICE}/feedback')}"})
    assert refused.status_code == 400
    assert refused.get_json()["issue"][0]["expression"] == ["feedback[0].acceptedSuggestions"]
    assert gateway.get("/fhir/AuditEvent", headers=smart).get_json()["total"] == 1
    unknown = gateway.post("/cds-services/other/feedback", json=feedback,
                           headers={"Authorization": f"Bearer {ehr.token(f'{PUBLIC}/cds-services/other/feedback')}"})
    assert unknown.status_code == 404


# -- reading the EHR's FHIR server -------------------------------------------------------------

def test_every_page_is_read_and_no_page_is_asked_of_another_server(ehr_fhir: tuple[str, BearerGuard]) -> None:
    base, guard = ehr_fhir
    small_pages = PrefetchKey("observations", "Observation", "Observation?patient={{context.patientId}}&_count=5")
    guard.seen.clear()
    with requests.Session() as session:
        found = EhrFhirServer(base, EHR_TOKEN, 10.0, session).fetch(small_pages, "ehr-p1")
    assert len(found) == 57 and len({r["id"] for r in found}) == 57
    assert len(guard.seen) == 12  # ceil(57 / 5) pages, each with the token
    foreign = EhrFhirServer("http://127.0.0.1:1/fhir", EHR_TOKEN, 10.0, requests.Session())
    with pytest.raises(EhrUnavailable, match="another server"):
        foreign._next({"link": [{"relation": "next", "url": f"{base}/Observation?page=2"}]}, "observations")
