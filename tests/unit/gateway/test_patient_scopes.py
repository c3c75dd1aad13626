"""SMART ``patient/`` scopes: a token with a patient in context reads, searches, writes and runs
operations within that patient's compartment only (HL7 SMART App Launch 2.x, "Scopes and Launch
Context"; FHIR R4 Patient compartment). Everything beyond it is a 403 OperationOutcome naming the
scope. Tokens are real JWTs signed by a local JWKS; the services run in process over the real
SQL store.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient

from gateway.deps import GatewayDeps
from gateway.writeback import tag_results, write_results
from services.dosimetry.app import create_app as dosimetry_app
from services.dosimetry.fhir_in import voxel_job_request
from services.dosimetry.fhir_out import voxel_results
from services.dosimetry.imaging.phantoms import build_study, lung_shunt
from services.dosimetry.imaging.pipeline import run_voxel_dosimetry
from services.eligibility.app import create_app as eligibility_app
from services.response.app import create_app as response_app
from tests.support.inprocess import gateway_with_services
from tests.support.jwks import JwksServer
from tests.support.memory_dicomweb import MemoryDicomweb

pytestmark = pytest.mark.unit

BASE = "http://gateway.test/fhir"
READ_ALL = "patient/*.rs"
SYSTEM = "system/*.cruds"


def _obs(oid: str, patient: str, **extra: Any) -> dict[str, Any]:
    return {"resourceType": "Observation", "id": oid, "status": "final", "code": {"text": "test"},
            "subject": {"reference": f"Patient/{patient}"}, **extra}


@pytest.fixture
def gateway(tmp_path: Path, idp: JwksServer) -> tuple[GatewayDeps, FlaskClient]:
    deps, client = gateway_with_services(
        tmp_path, {"dosimetry": dosimetry_app(), "eligibility": eligibility_app(), "response": response_app()},
        env={"AUTH_MODE": "jwt", "AUTH_JWKS_URL": idp.jwks_url, "AUTH_ISSUER": idp.issuer,
             "AUTH_AUDIENCE": idp.audience, "INTERNAL_TOKEN": "a-long-test-secret-for-the-workers"})
    system = _as(idp, SYSTEM)
    for pid in ("pa", "pb"):
        assert client.put(f"/fhir/Patient/{pid}", json={"resourceType": "Patient", "id": pid}, headers=system).status_code == 201
    for body in (_obs("obs-a", "pa"), _obs("obs-b", "pb"),
                 _obs("obs-a-from-b", "pa", derivedFrom=[{"reference": "Observation/obs-b"}])):
        assert client.put(f"/fhir/Observation/{body['id']}", json=body, headers=system).status_code == 201
    return deps, client


def _as(idp: JwksServer, scopes: str, patient: str | None = None) -> dict[str, str]:
    return {"Authorization": f"Bearer {idp.mint(scopes, patient=patient)}"}


def _refused(resp: Any, *words: str) -> str:
    assert resp.status_code == 403, resp.get_data(as_text=True)
    body = resp.get_json()
    assert body["resourceType"] == "OperationOutcome" and body["issue"][0]["code"] == "forbidden"
    text = " ".join(i["diagnostics"] for i in body["issue"])
    assert "patient/" in text, text  # it names the scope that does not reach
    for word in words:
        assert word in text, text
    assert 'error="insufficient_scope"' in resp.headers["WWW-Authenticate"]
    return text


def _ids(bundle: dict[str, Any]) -> set[str]:
    return {f"{e['resource']['resourceType']}/{e['resource']['id']}" for e in bundle.get("entry", [])}


# -- REST ----------------------------------------------------------------------------------------

def test_reads_reach_the_patients_own_resources_only(gateway: tuple[GatewayDeps, FlaskClient], idp: JwksServer) -> None:
    _, client = gateway
    a = _as(idp, READ_ALL, patient="pa")
    assert client.get("/fhir/Observation/obs-a", headers=a).status_code == 200
    assert client.get("/fhir/Patient/pa", headers=a).status_code == 200
    assert client.get("/fhir/Observation/obs-a/_history/1", headers=a).status_code == 200
    assert client.get("/fhir/Observation/obs-a/_history", headers=a).status_code == 200
    _refused(client.get("/fhir/Observation/obs-b", headers=a), "Observation/obs-b", "Patient/pa")
    _refused(client.get("/fhir/Patient/pb", headers=a))
    _refused(client.get("/fhir/Observation/obs-b/_history/1", headers=a))
    _refused(client.get("/fhir/Observation/obs-b/_history", headers=a))
    # the same reads with user/ scopes reach both patients
    user = _as(idp, "user/*.rs", patient="pa")
    assert client.get("/fhir/Observation/obs-b", headers=user).status_code == 200


def test_searches_are_narrowed_to_the_patient(gateway: tuple[GatewayDeps, FlaskClient], idp: JwksServer) -> None:
    _, client = gateway
    a = _as(idp, READ_ALL, patient="pa")
    assert _ids(client.get("/fhir/Observation", headers=a).get_json()) == {"Observation/obs-a", "Observation/obs-a-from-b"}
    assert _ids(client.get("/fhir/Observation?subject=Patient/pb", headers=a).get_json()) == set()
    assert _ids(client.get("/fhir/Patient", headers=a).get_json()) == {"Patient/pa"}
    posted = client.post("/fhir/Observation/_search", data={"status": "final"}, headers=a)
    assert _ids(posted.get_json()) == {"Observation/obs-a", "Observation/obs-a-from-b"}
    # what _include and _revinclude would add from another patient is left out
    included = client.get("/fhir/Observation?_id=obs-a-from-b&_include=Observation:derived-from", headers=a).get_json()
    assert _ids(included) == {"Observation/obs-a-from-b"}
    unfiltered = client.get("/fhir/Observation?_id=obs-a-from-b&_include=Observation:derived-from",
                            headers=_as(idp, "system/*.rs")).get_json()
    assert _ids(unfiltered) == {"Observation/obs-a-from-b", "Observation/obs-b"}  # the include does work
    rev = client.get("/fhir/Patient?_revinclude=Observation:subject", headers=a).get_json()
    assert _ids(rev) == {"Patient/pa", "Observation/obs-a", "Observation/obs-a-from-b"}


def test_interactions_that_span_patients_are_refused(gateway: tuple[GatewayDeps, FlaskClient], idp: JwksServer) -> None:
    _, client = gateway
    a = _as(idp, "patient/*.cruds", patient="pa")
    _refused(client.get("/fhir/Task", headers=a), "Task")  # outside the compartment
    _refused(client.get("/fhir/Observation/_history", headers=a), "not confined to one patient")
    _refused(client.get("/fhir/_history", headers=a))
    _refused(client.post("/fhir", json={"resourceType": "Bundle", "type": "batch", "entry": [
        {"request": {"method": "GET", "url": "Observation/obs-a"}}]}, headers=a))
    _refused(client.delete("/fhir/Observation?status=final", headers=a))
    _refused(client.post("/fhir/Observation", json=_obs("x", "pa"), headers={**a, "If-None-Exist": "status=final"}))
    _refused(client.get("/fhir/AuditEvent", headers=a))


def test_patient_scopes_without_a_patient_in_context_allow_nothing(gateway: tuple[GatewayDeps, FlaskClient],
                                                                    idp: JwksServer) -> None:
    _, client = gateway
    text = _refused(client.get("/fhir/Observation/obs-a", headers=_as(idp, READ_ALL)))
    assert "without a patient in context" in text
    # a patient claim does not narrow system/ scopes
    assert client.get("/fhir/Observation/obs-b", headers=_as(idp, "system/*.rs", patient="pa")).status_code == 200


def test_the_scope_still_decides_the_type_and_the_action(gateway: tuple[GatewayDeps, FlaskClient],
                                                         idp: JwksServer) -> None:
    _, client = gateway
    only_obs = _as(idp, "patient/Observation.rs", patient="pa")
    assert client.get("/fhir/Observation/obs-a", headers=only_obs).status_code == 200
    forbidden = client.get("/fhir/Patient/pa", headers=only_obs)
    assert forbidden.status_code == 403 and "reading Patient" in forbidden.get_json()["issue"][0]["diagnostics"]
    assert client.put("/fhir/Observation/obs-a", json=_obs("obs-a", "pa"), headers=only_obs).status_code == 403


def test_writes_stay_in_the_compartment(gateway: tuple[GatewayDeps, FlaskClient], idp: JwksServer) -> None:
    deps, client = gateway
    a = _as(idp, "patient/Observation.cruds", patient="pa")
    assert client.put("/fhir/Observation/new-a", json=_obs("new-a", "pa"), headers=a).status_code == 201
    assert client.post("/fhir/Observation", json=_obs("x", "pa"), headers=a).status_code == 201
    _refused(client.put("/fhir/Observation/new-b", json=_obs("new-b", "pb"), headers=a))
    _refused(client.post("/fhir/Observation", json=_obs("y", "pb"), headers=a))
    # taking over another patient's resource by rewriting its subject is refused too
    _refused(client.put("/fhir/Observation/obs-b", json=_obs("obs-b", "pa"), headers=a))
    _refused(client.patch("/fhir/Observation/obs-b", json=[{"op": "replace", "path": "/status", "value": "amended"}],
                          headers={**a, "Content-Type": "application/json-patch+json"}))
    _refused(client.patch("/fhir/Observation/obs-a", json=[{"op": "replace", "path": "/subject/reference",
                                                            "value": "Patient/pb"}],
                          headers={**a, "Content-Type": "application/json-patch+json"}))
    _refused(client.delete("/fhir/Observation/obs-b", headers=a))
    assert deps.store.read("Observation", "obs-b")["status"] == "final"
    assert deps.store.read("Observation", "obs-a")["subject"]["reference"] == "Patient/pa"
    assert client.delete("/fhir/Observation/new-a", headers=a).status_code == 200


# -- operations ----------------------------------------------------------------------------------

ELIGIBILITY = "patient/*.rs patient/Observation.cu patient/DiagnosticReport.cu patient/Provenance.cu"


def test_eligibility_runs_for_the_tokens_patient_only(gateway: tuple[GatewayDeps, FlaskClient], idp: JwksServer) -> None:
    deps, client = gateway
    a = _as(idp, ELIGIBILITY, patient="pa")
    assert client.post("/fhir/Patient/pa/$evaluate-eligibility", headers=a).status_code == 200
    _refused(client.post("/fhir/Patient/pb/$evaluate-eligibility", headers=a), "Patient/pb")
    own = {"resourceType": "Bundle", "type": "collection", "entry": [
        {"fullUrl": "urn:uuid:0c9b7ff2-0000-4000-8000-000000000001", "resource": {"resourceType": "Patient", "id": "pa"}},
        {"resource": _obs("lab-1", "pa")},
        {"resource": {**_obs("lab-2", "pa"), "subject": {"reference": "urn:uuid:0c9b7ff2-0000-4000-8000-000000000001"}}}]}
    assert client.post("/fhir/$evaluate-eligibility", json=own, headers=a).status_code == 200
    written = deps.store.search("Observation", [("subject", "Patient/pb"), ("_count", "100")], BASE)["total"]
    mixed = {**own, "entry": [*own["entry"], {"resource": _obs("lab-3", "pb")}]}
    resp = client.post("/fhir/$evaluate-eligibility", json=mixed, headers=a)
    _refused(resp, "Observation/lab-3")
    assert resp.get_json()["issue"][0]["expression"] == ["Bundle.entry[3].resource"]
    as_b = {**own, "entry": [{"resource": {"resourceType": "Patient", "id": "pb"}}]}
    _refused(client.post("/fhir/$evaluate-eligibility", json=as_b, headers=a))
    # nothing was written about the other patient
    assert deps.store.search("Observation", [("subject", "Patient/pb"), ("_count", "100")], BASE)["total"] == written


def test_tumour_response_input_of_another_patient_is_refused(gateway: tuple[GatewayDeps, FlaskClient],
                                                              idp: JwksServer) -> None:
    _, client = gateway
    a = _as(idp, "patient/*.rs patient/*.cu", patient="pa")
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": _obs("m1", "pb")}]}
    body = {"resourceType": "Parameters", "parameter": [{"name": "input", "resource": bundle},
                                                         {"name": "criteria", "valueCode": "recist-1.1"}]}
    resp = client.post("/fhir/$tumor-response", json=body, headers=a)
    _refused(resp, "Observation/m1")
    assert resp.get_json()["issue"][0]["expression"] == [
        "Parameters.parameter.where(name='input').resource.entry[0].resource"]


SIRT = "patient/Observation.cruds patient/DiagnosticReport.rs patient/Provenance.cu"


def _plan(lsf: float, when: str, patient: str | None) -> dict[str, Any]:
    params: list[dict[str, Any]] = [
        {"name": "method", "valueCode": "mird"}, {"name": "device", "valueCode": "glass"},
        {"name": "targetDoseGy", "valueDecimal": 120}, {"name": "liverVolumeMl", "valueDecimal": 1500},
        {"name": "perfusedFraction", "valueDecimal": 0.5}, {"name": "lungShuntFraction", "valueDecimal": lsf},
        {"name": "treatmentTime", "valueDateTime": when}]
    if patient:
        params.append({"name": "patient", "valueReference": {"reference": patient}})
    return {"resourceType": "Parameters", "parameter": params}


def _values(body: dict[str, Any], name: str) -> list[Any]:
    return [next(v for k, v in p.items() if k.startswith("value")) for p in body["parameter"] if p["name"] == name]


def test_sirt_activity_gathers_and_writes_only_the_tokens_patient(gateway: tuple[GatewayDeps, FlaskClient],
                                                                   idp: JwksServer) -> None:
    deps, client = gateway
    system, a = _as(idp, SYSTEM), _as(idp, SIRT, patient="pa")
    b_plan = client.post("/fhir/$sirt-activity", json=_plan(0.10, "2024-01-10T09:00:00Z", "Patient/pb"), headers=system)
    a_plan = client.post("/fhir/$sirt-activity", json=_plan(0.12, "2024-02-10T09:00:00Z", "Patient/pa"), headers=a)
    assert b_plan.status_code == 200 and a_plan.status_code == 200, a_plan.get_json()
    new = client.post("/fhir/$sirt-activity", json=_plan(0.08, "2025-01-15T09:00:00Z", "Patient/pa"), headers=a)
    assert new.status_code == 200
    prior = {v["reference"] for v in _values(new.get_json(), "priorRecord")}
    assert prior == {_values(a_plan.get_json(), "plan")[0]["reference"]}  # A's plan, never B's

    def b_plans() -> int:
        return int(deps.store.search("Observation", [("subject", "Patient/pb"), ("_count", "100")], BASE)["total"])

    before = b_plans()
    resp = client.post("/fhir/$sirt-activity", json=_plan(0.08, "2025-01-15T09:00:00Z", "Patient/pb"), headers=a)
    _refused(resp, "Patient/pb")
    assert resp.get_json()["issue"][0]["expression"] == ["Parameters.parameter[7].valueReference"]
    _refused(client.post("/fhir/$sirt-activity", json=_plan(0.08, "2025-01-15T09:00:00Z", None), headers=a),
             "patient")
    assert b_plans() == before


def test_dose_comparison_compares_the_tokens_patients_reports_only(gateway: tuple[GatewayDeps, FlaskClient],
                                                                    idp: JwksServer) -> None:
    deps, client = gateway
    phantom = lung_shunt(n=16, voxel_mm=13.26, nuclide="Tc-99m")
    refs = {}
    for seed, (job, patient) in enumerate((("job-a1", "Patient/pa"), ("job-a2", "Patient/pa"), ("job-b", "Patient/pb"))):
        study = build_study(phantom, "NM", seed=seed)  # a report's id follows its study
        result = run_voxel_dosimetry(MemoryDicomweb(study.datasets()), study.study_uid, 2.0, "ldm",
                                     study.seg_series_uid, store=False)
        request = voxel_job_request({"studyInstanceUid": study.study_uid, "administeredActivityGBq": 2.0,
                                     "method": "ldm", "segmentationSeriesUid": study.seg_series_uid, "patient": patient})
        done = voxel_results(result, request, job, "test")
        write_results(deps.store, tag_results(done.resources), BASE)
        refs[job] = "DiagnosticReport/" + next(r["id"] for r in done.resources if r["resourceType"] == "DiagnosticReport")
    assert len(set(refs.values())) == 3

    def params(predicted: str, delivered: str) -> dict[str, Any]:
        return {"resourceType": "Parameters", "parameter": [
            {"name": "predicted", "valueReference": {"reference": predicted}},
            {"name": "delivered", "valueReference": {"reference": delivered}}]}

    a = _as(idp, "patient/DiagnosticReport.cruds patient/Observation.cruds patient/Provenance.cu", patient="pa")
    ok = client.post("/fhir/$dose-comparison", json=params(refs["job-a1"], refs["job-a2"]), headers=a)
    assert ok.status_code == 200, ok.get_json()
    mixed = client.post("/fhir/$dose-comparison", json=params(refs["job-a1"], refs["job-b"]), headers=a)
    _refused(mixed, refs["job-b"])
    assert mixed.get_json()["issue"][0]["expression"] == ["Parameters.parameter[1].valueReference"]
    _refused(client.post("/fhir/$dose-comparison", json=params(refs["job-b"], refs["job-a2"]), headers=a))
    # the same comparison with B's token is B's business: refused for A, allowed for B's own
    b = _as(idp, "patient/DiagnosticReport.cruds patient/Observation.cruds patient/Provenance.cu", patient="pb")
    _refused(client.post("/fhir/$dose-comparison", json=params(refs["job-a1"], refs["job-a2"]), headers=b))


def test_jobs_and_the_audit_trail_need_broad_scopes(gateway: tuple[GatewayDeps, FlaskClient], idp: JwksServer) -> None:
    _, client = gateway
    a = _as(idp, "patient/*.cruds", patient="pa")
    _refused(client.post("/fhir/$voxel-dosimetry", json={"resourceType": "Parameters", "parameter": []}, headers=a),
             "not confined to one patient")


def test_the_smart_configuration_publishes_patient_scopes_and_the_launch_capabilities(tmp_path: Path,
                                                                                        idp: JwksServer) -> None:
    from gateway.app import create_app
    from gateway.scopes import parse_scopes
    from netliver.settings import Settings

    settings = Settings.from_env({
        "AUTH_MODE": "jwt", "AUTH_JWKS_URL": idp.jwks_url, "AUTH_ISSUER": idp.issuer, "AUTH_AUDIENCE": idp.audience,
        "AUTH_TOKEN_URL": "https://idp.hospital.test/token", "AUTH_AUTHORIZE_URL": "https://idp.hospital.test/authorize",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'store.db'}", "ORTHANC_URL": "http://127.0.0.1:9", "ORTHANC_CATCHUP_S": "0",
        "RATE_LIMIT_PER_MINUTE": "0", "JOB_SWEEP_S": "0", "LOG_LEVEL": "WARNING",
        "INTERNAL_TOKEN": "a-long-test-secret-for-the-workers"})
    doc = create_app(settings).test_client().get("/.well-known/smart-configuration").get_json()
    scopes = set(doc["scopes_supported"])
    assert {"patient/*.rs", "patient/Observation.rs", "patient/Patient.rs", "user/Observation.rs"} <= scopes
    assert not any(s.startswith(("patient/Task", "patient/AuditEvent", "patient/Endpoint")) for s in scopes)
    assert all(parse_scopes(s) for s in scopes)
    assert {"launch-ehr", "context-ehr-patient", "permission-patient"} <= set(doc["capabilities"])
