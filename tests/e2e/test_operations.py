"""The contract's operations through the gateway, as an EHR integration calls them: results are
written back with their Provenance, repeated requests create no duplicates, bad input writes
nothing, and the Patient/{id} form reads the same record from the store."""

from __future__ import annotations

import copy
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from infra.demo_follow_up import synthetic_follow_up_bundle
from infra.demo_patients import EVALUATION_DATE, realistic_patient
from infra.stack import Stack
from netliver.fhir.codesystems import STATUS_SYSTEM, THERAPY_SYSTEM
from tests.support.stack import make_stack, running

THERAPIES = {"surgical-resection", "liver-transplant", "ablation-rfa", "ablation-mwa", "ablation-laser",
             "ablation-cryo", "ablation-ire", "tae", "ctace", "deb-tace", "sirt", "prrt", "ia-prrt"}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with running(make_stack(tmp_path_factory.mktemp("operations"), workers=0, env={"ORTHANC_CATCHUP_S": "0"})) as s:
        yield s


@pytest.fixture(scope="module")
def fhir(stack: Stack) -> str:
    return f"{stack.gateway_url}/fhir"


def _total(fhir: str, rtype: str, **params: str) -> int:
    return int(requests.get(f"{fhir}/{rtype}", params={"_count": "0", **params}, timeout=10).json()["total"])


def _therapy_results(bundle: dict[str, Any]) -> dict[str, dict[str, Any]]:
    out = {}
    for entry in bundle["entry"]:
        res = entry["resource"]
        if res["resourceType"] != "Observation":
            continue
        codes = {c["code"] for c in res["code"]["coding"] if c["system"] == THERAPY_SYSTEM}
        if codes:
            out[codes.pop()] = res
    return out


def _status(obs: dict[str, Any]) -> str:
    return next(c["code"] for c in obs["valueCodeableConcept"]["coding"] if c["system"] == STATUS_SYSTEM)


def _provenance_for(fhir: str, ref: str) -> list[dict[str, Any]]:
    bundle = requests.get(f"{fhir}/Provenance", params={"_count": "500"}, timeout=10).json()
    return [e["resource"] for e in bundle.get("entry", [])
            if any(t["reference"] == ref for t in e["resource"]["target"])]


def _as_transaction(bundle: dict[str, Any]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": e["resource"], "request": {"method": "PUT", "url": f"{e['resource']['resourceType']}/{e['resource']['id']}"}}
        for e in bundle["entry"]]}


def test_eligibility_bundle_form_writes_every_result_once_with_provenance(fhir: str) -> None:
    pid = f"elig-{uuid.uuid4().hex[:8]}"
    bundle = realistic_patient(pid)
    url = f"{fhir}/$evaluate-eligibility?date={EVALUATION_DATE.isoformat()}"
    first = requests.post(url, json=bundle, timeout=60)
    assert first.status_code == 200, first.text[:1000]
    results = _therapy_results(first.json())
    assert set(results) == THERAPIES
    for therapy, obs in results.items():
        stored = requests.get(f"{fhir}/Observation/{obs['id']}", timeout=10).json()
        assert stored["subject"]["reference"] == f"Patient/{pid}"
        assert _status(stored) == _status(obs), therapy
        assert stored["meta"]["versionId"] == "1"
    provs = _provenance_for(fhir, f"Observation/{results['sirt']['id']}")
    assert len(provs) == 1
    assert any("eligibility" in (a["who"].get("display", "")) for a in provs[0]["agent"])
    assert provs[0].get("policy"), "the rule-set version is named in the Provenance"
    observations_before = _total(fhir, "Observation", subject=f"Patient/{pid}")
    second = requests.post(url, json=bundle, timeout=60)
    assert second.status_code == 200
    assert {t: o["id"] for t, o in _therapy_results(second.json()).items()} == {t: o["id"] for t, o in results.items()}
    assert _total(fhir, "Observation", subject=f"Patient/{pid}") == observations_before
    assert requests.get(f"{fhir}/Observation/{results['sirt']['id']}", timeout=10).json()["meta"]["versionId"] == "1"
    provs_again = _provenance_for(fhir, f"Observation/{results['sirt']['id']}")
    assert len(provs_again) == 1 and provs_again[0]["meta"]["versionId"] == provs[0]["meta"]["versionId"]


def test_eligibility_patient_form_reads_the_record_from_the_store(fhir: str) -> None:
    pid = f"store-{uuid.uuid4().hex[:8]}"
    bundle = realistic_patient(pid)
    assert requests.post(fhir, json=_as_transaction(bundle), timeout=60).status_code == 200
    date = EVALUATION_DATE.isoformat()
    via_store = requests.post(f"{fhir}/Patient/{pid}/$evaluate-eligibility?date={date}", timeout=60)
    assert via_store.status_code == 200, via_store.text[:1000]
    via_bundle = requests.post(f"{fhir}/$evaluate-eligibility?date={date}", json=bundle, timeout=60)
    a = {t: _status(o) for t, o in _therapy_results(via_store.json()).items()}
    b = {t: _status(o) for t, o in _therapy_results(via_bundle.json()).items()}
    assert a == b and set(a) == THERAPIES
    # The same call with the date as a Parameters body, as many FHIR clients send operations.
    as_parameters = requests.post(f"{fhir}/Patient/{pid}/$evaluate-eligibility", timeout=60, json={
        "resourceType": "Parameters", "parameter": [{"name": "date", "valueDate": date}]})
    assert {t: _status(o) for t, o in _therapy_results(as_parameters.json()).items()} == a
    wrong = requests.post(f"{fhir}/Patient/{pid}/$evaluate-eligibility", timeout=60, json={
        "resourceType": "Parameters", "parameter": [{"name": "input", "resource": bundle}]})
    assert wrong.status_code == 422 and wrong.json()["issue"][0]["expression"] == ["Parameters.parameter[0]"]
    # Results written earlier are not read back as inputs the second time.
    again = requests.post(f"{fhir}/Patient/{pid}/$evaluate-eligibility?date={date}", timeout=60)
    assert {t: _status(o) for t, o in _therapy_results(again.json()).items()} == a


def test_eligibility_for_an_unknown_patient_is_404(fhir: str) -> None:
    resp = requests.post(f"{fhir}/Patient/{uuid.uuid4()}/$evaluate-eligibility", timeout=30)
    assert resp.status_code == 404 and resp.json()["resourceType"] == "OperationOutcome"


@pytest.mark.parametrize("mutate", ["no-patient", "two-patients", "negative-bilirubin", "other-patient"])
def test_eligibility_bad_bundles_are_422_and_write_nothing(fhir: str, mutate: str) -> None:
    pid = f"bad-{uuid.uuid4().hex[:8]}"
    bundle = copy.deepcopy(realistic_patient(pid))
    entries = bundle["entry"]
    if mutate == "no-patient":
        bundle["entry"] = [e for e in entries if e["resource"]["resourceType"] != "Patient"]
    elif mutate == "two-patients":
        entries.append({"resource": {"resourceType": "Patient", "id": f"{pid}-twin"}})
    elif mutate == "negative-bilirubin":
        for e in entries:
            codes = {c.get("code") for c in e["resource"].get("code", {}).get("coding", [])}
            if codes & {"1975-2", "14631-6"}:
                e["resource"]["valueQuantity"]["value"] = -1
    else:
        obs = next(e["resource"] for e in entries if e["resource"]["resourceType"] == "Observation")
        obs["subject"] = {"reference": "Patient/someone-else"}
    before = _total(fhir, "Observation") + _total(fhir, "Provenance")
    resp = requests.post(f"{fhir}/$evaluate-eligibility", json=bundle, timeout=60)
    assert resp.status_code == 422, resp.text[:500]
    body = resp.json()
    assert body["resourceType"] == "OperationOutcome" and body["issue"][0].get("expression")
    assert _total(fhir, "Observation") + _total(fhir, "Provenance") == before


def test_sirt_activity_plan_is_written_with_provenance(fhir: str) -> None:
    pid = f"sirt-{uuid.uuid4().hex[:8]}"
    params = {"resourceType": "Parameters", "parameter": [
        {"name": "method", "valueCode": "partition"}, {"name": "device", "valueCode": "resin"},
        {"name": "liverVolumeMl", "valueDecimal": 1800}, {"name": "tumorVolumeMl", "valueDecimal": 300},
        {"name": "lungShuntFraction", "valueDecimal": 0.07}, {"name": "tumorToNormalRatio", "valueDecimal": 4},
        {"name": "targetDoseGy", "valueDecimal": 120}, {"name": "normalLiverLimitGy", "valueDecimal": 40},
        {"name": "patient", "valueReference": {"reference": f"Patient/{pid}"}}]}
    resp = requests.post(f"{fhir}/$sirt-activity", json=params, timeout=60)
    assert resp.status_code == 200, resp.text[:1000]
    out = {p["name"]: p for p in resp.json()["parameter"]}
    assert out["status"]["valueCode"] == "ok" and float(out["activityGBq"]["valueDecimal"]) > 0
    plans = requests.get(f"{fhir}/Observation", params={"subject": f"Patient/{pid}"}, timeout=10).json()
    assert plans["total"] == 1
    plan_id = plans["entry"][0]["resource"]["id"]
    assert len(_provenance_for(fhir, f"Observation/{plan_id}")) == 1
    requests.post(f"{fhir}/$sirt-activity", json=params, timeout=60)
    assert requests.get(f"{fhir}/Observation", params={"subject": f"Patient/{pid}"}, timeout=10).json()["total"] == 1
    # A shunt above 20 % is contraindicated, never a capped activity.
    shunt = copy.deepcopy(params)
    shunt["parameter"][4]["valueDecimal"] = 0.21
    out = {p["name"]: p for p in requests.post(f"{fhir}/$sirt-activity", json=shunt, timeout=60).json()["parameter"]}
    assert out["status"]["valueCode"] == "contraindicated"


def test_tumor_response_is_written_back_and_repeats_idempotently(fhir: str) -> None:
    bundle = synthetic_follow_up_bundle()
    url = f"{fhir}/$tumor-response?criteria=recist-1.1"
    first = requests.post(url, json=bundle, timeout=60)
    assert first.status_code == 200, first.text[:1000]
    ids = [e["resource"]["id"] for e in first.json()["entry"]]
    for rid in ids[:3]:
        assert requests.get(f"{fhir}/Observation/{rid}", timeout=10).status_code == 200
    second = requests.post(url, json=bundle, timeout=60)
    assert [e["resource"]["id"] for e in second.json()["entry"]] == ids
    assert requests.get(f"{fhir}/Observation/{ids[0]}", timeout=10).json()["meta"]["versionId"] == "1"
    bad = requests.post(f"{fhir}/$tumor-response?criteria=who", json=bundle, timeout=60)
    assert bad.status_code == 422 and "criteria" in str(bad.json()["issue"][0].get("expression"))


def _parameters(bundle: dict[str, Any], **values: dict[str, Any]) -> dict[str, Any]:
    return {"resourceType": "Parameters", "parameter": [
        {"name": "input", "resource": bundle}, *({"name": k, **v} for k, v in values.items())]}


def test_operations_take_the_parameters_form_their_definitions_declare(fhir: str) -> None:
    """``Parameters{input: Bundle, ...}`` gives the same answer as the bare Bundle with the
    other parameters in the query."""
    follow_up = synthetic_follow_up_bundle()
    bare = requests.post(f"{fhir}/$tumor-response?criteria=mrecist", json=follow_up, timeout=60)
    wrapped = requests.post(f"{fhir}/$tumor-response", timeout=60,
                            json=_parameters(follow_up, criteria={"valueCode": "mrecist"}))
    assert bare.status_code == wrapped.status_code == 200, wrapped.text[:1000]
    assert [e["resource"] for e in wrapped.json()["entry"]] == [e["resource"] for e in bare.json()["entry"]]
    patient = realistic_patient(f"par-{uuid.uuid4().hex[:8]}")
    date = EVALUATION_DATE.isoformat()
    bare = requests.post(f"{fhir}/$evaluate-eligibility?date={date}", json=patient, timeout=60)
    wrapped = requests.post(f"{fhir}/$evaluate-eligibility", timeout=60,
                            json=_parameters(patient, date={"valueDate": date}))
    assert bare.status_code == wrapped.status_code == 200, wrapped.text[:1000]
    assert _therapy_results(wrapped.json()) == _therapy_results(bare.json())
    unknown = requests.post(f"{fhir}/$tumor-response", timeout=60,
                            json=_parameters(follow_up, colour={"valueCode": "red"}))
    assert unknown.status_code == 422
    assert unknown.json()["issue"][0]["expression"] == ["Parameters.parameter[1].name"]


def test_cds_hooks_discovery_and_patient_view(stack: Stack, fhir: str) -> None:
    discovery = requests.get(f"{stack.gateway_url}/cds-services", timeout=10).json()
    service = discovery["services"][0]
    assert service["hook"] == "patient-view" and service["id"] == "liver-directed-therapy"
    pid = f"cds-{uuid.uuid4().hex[:8]}"
    bundle = realistic_patient(pid)
    resources = [e["resource"] for e in bundle["entry"]]
    prefetch: dict[str, Any] = {}
    for key, template in service["prefetch"].items():
        rtype = template.split("?")[0].split("/")[0]
        found = [r for r in resources if r["resourceType"] == rtype]
        if rtype == "Patient":
            prefetch[key] = found[0]
        else:  # CDS Hooks 2.0: null when the client has no data for a key
            prefetch[key] = {"resourceType": "Bundle", "type": "searchset",
                             "entry": [{"resource": r} for r in found]} if found else None
    call = {"hook": "patient-view", "hookInstance": str(uuid.uuid4()),
            "context": {"userId": "Practitioner/1", "patientId": pid}, "prefetch": prefetch}
    url = f"{stack.gateway_url}/cds-services/liver-directed-therapy"
    resp = requests.post(url, json=call, timeout=60)
    assert resp.status_code == 200, resp.text[:1000]
    cards = resp.json()["cards"]
    assert cards and all(len(c["summary"]) <= 140 and c["indicator"] in {"info", "warning", "critical"}
                         and c["source"]["label"] for c in cards)
    # Part of the record neither prefetched nor in the store (and no fhirServer): 412, no card.
    partial = {**call, "prefetch": {k: prefetch[k] for k in ("patient", "observations")}}
    assert requests.post(url, json=partial, timeout=60).status_code == 412
    # Without prefetch, the record is read from the store: the same card.
    requests.post(fhir, json=_as_transaction(bundle), timeout=60)
    call.pop("prefetch")
    resp = requests.post(url, json=call, timeout=60)
    assert resp.status_code == 200
    assert [c["summary"] for c in resp.json()["cards"]] == [c["summary"] for c in cards]
    bad = requests.post(url, json={"hook": "patient-view", "hookInstance": "x", "context": {}}, timeout=10)
    assert bad.status_code == 400
