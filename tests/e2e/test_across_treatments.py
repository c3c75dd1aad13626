"""The four questions across treatments, answered by the whole stack for one synthetic patient.

A real Orthanc with the stable-study hook, the gateway and services under gunicorn, a Celery
worker on Redis, and the SQL store. The patient has a SIRT plan, a Tc-99m MAA SPECT/CT (the
plan's simulation) and a post-SIRT Y-90 PET/CT of one liver with four lesions under two lungs,
each with a DICOM SEG whose lesion segments carry the lesions' TrackingUIDs, and a CT baseline
with three follow-up CTs. Asked:

1. did the MAA predict what the PET showed (``$dose-comparison``)?
2. how much lung dose has the patient had before a second SIRT (``$sirt-activity`` + ``patient``)?
3. what is the BED and EQD2 per VOI (the voxel reports)?
4. which lesions got which dose, and did they respond (``$tumor-response`` + dose-response)?

The stack stores each job's BED map in the PACS too (``DOSIMETRY_STORE_BED_MAP=1``).

Every expected figure is computed here by hand from the phantom design (voxel counts per
compartment, counts per voxel), the EANM dose constant and the HU-density points, never read
from the implementation. Local deposition: D(VOI) = C · A · (counts in the VOI / all counts) /
m(VOI); the MAA simulation gives the planned activity to liver and lungs; BED of a decaying Y-90
implant (Dale 1985) BED = D + D² · λ / ((μ + λ) · α/β); EQD2 = BED / (1 + 2/(α/β)). CT noise
(σ 10 HU) moves a VOI's mass by < 0.1 %, uint16 storage of the PET by < 0.01 %: 0.5 % tolerance
(1 % for the lungs, whose density is 4× more sensitive to the noise).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from infra.demo import for_patient
from infra.demo_across import (
    MAA_LESION_COUNTS,
    MAA_LUNG_COUNTS,
    PET_LESION_COUNTS,
    PET_LUNG_COUNTS,
    across_studies,
    upload_emission_last,
    wait_for_job,
)
from infra.demo_follow_up import body_structure, bundle, lesion
from infra.orthanc_process import orthanc_available
from infra.stack import Stack
from netliver.fhir.codesystems import OBSERVATION_CODE_SYSTEM
from services.dosimetry.imaging.phantoms import ADMINISTRATION, four_lesion_liver
from tests.support.density import rho_g_per_ml
from tests.support.stack import make_stack, running

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not orthanc_available(), reason="Orthanc is not installed (make system-deps)")]

PATIENT, DICOM_ID = "across-e2e", "ACROSS-E2E-0001"
C = 49.67  # Gy·kg/GBq, EANM 2022
DELIVERED_GBQ = 0.6  # recorded in the PET header
N = 48  # emission grid 48³ of 4.42 mm
LABELS = ("lesion 1", "lesion 2", "lesion 3", "lesion 4")
LESION_IDS = ("ax-L1", "ax-L2", "ax-L3", "ax-L4")
TRACKING = {label: f"1.2.826.0.1.3680043.10.99.15.{i}" for i, label in enumerate(LABELS, start=1)}
DATES = ("2024-02-20", "2024-06-05", "2024-09-05", "2024-12-05")
#: longest diameters (mm) at baseline and the three follow-up CTs; L1, L2 targets (two per organ)
SIZES = {"ax-L1": (40, 30, 24, 20), "ax-L2": (30, 28, 27, 27), "ax-L3": (20, 22, 24, 25), "ax-L4": (15, 15, 16, 17)}
#: the first plan: MIRD, glass, 60 Gy to 1000 mL × 0.5 perfused, LSF 7 %
PLAN = {"targetDoseGy": 60, "liverVolumeMl": 1000, "perfusedFraction": 0.5, "lungShuntFraction": 0.07}
PLAN_GBQ = 60 * (1000 * 0.5 * 1.03 / 1000) / (C * (1 - 0.07))  # A = D·M / (C·(1 − LSF)), 1.03 g/mL
LAMBDA = math.log(2) / 64.1  # Y-90, per hour
TISSUES = {"tumour": (10.0, 1.5), "liver": (2.5, 2.5)}  # α/β (Gy), repair half-time (h)


# ------------------------------------------------------------------------- hand arithmetic --

def _bed(dose: float, tissue: str) -> float:
    alpha_beta, repair_h = TISSUES[tissue]
    mu = math.log(2) / repair_h
    return dose + dose * dose * LAMBDA / ((mu + LAMBDA) * alpha_beta)


def _expected_doses(lesion_counts: tuple[int, ...], lung_counts: int, activity_gbq: float) -> dict[str, float]:
    """Dmean per VOI and the lung shunt fraction from the design."""
    design = four_lesion_liver(n=N)
    voxels = {c.name: int(design.mask(c.name).sum()) for c in design.compartments}
    voxel_ml = (4.42 / 10) ** 3
    liver_kg, lung_kg = voxel_ml * rho_g_per_ml(60.0) / 1000, voxel_ml * rho_g_per_ml(-750.0) / 1000
    per_voxel = {"normal liver": 100, **dict(zip(LABELS, lesion_counts, strict=True)), "lungs": lung_counts}
    counts = {name: per_voxel[name] * voxels[name] for name in per_voxel}
    total = sum(counts.values())
    liver_names = ["normal liver", *LABELS]
    out = {name: C * activity_gbq * per_voxel[name] / total / liver_kg for name in liver_names}
    out["liver"] = (C * activity_gbq * sum(counts[n] for n in liver_names) / total
                    / (sum(voxels[n] for n in liver_names) * liver_kg))
    out["lungs"] = C * activity_gbq * lung_counts / total / lung_kg
    out["lsf"] = counts["lungs"] / (counts["lungs"] + sum(counts[n] for n in liver_names))
    return out


PREDICTED = _expected_doses(MAA_LESION_COUNTS, MAA_LUNG_COUNTS, PLAN_GBQ)
DELIVERED = _expected_doses(PET_LESION_COUNTS, PET_LUNG_COUNTS, DELIVERED_GBQ)


# ------------------------------------------------------------------------------- the stack --

def _get(gw: str, path: str, **params: str) -> Any:
    resp = requests.get(f"{gw}/fhir/{path}", params=params or None, timeout=30)
    assert resp.status_code == 200, resp.text
    return resp.json()


def _post(gw: str, path: str, body: Any) -> Any:
    resp = requests.post(f"{gw}/fhir/{path}", json=body, timeout=120)
    assert resp.status_code == 200, resp.text
    return resp.json()


def _values(parameters: dict[str, Any], name: str) -> list[Any]:
    return [next(v for k, v in p.items() if k.startswith("value") or k == "part")
            for p in parameters["parameter"] if p["name"] == name]


def _plan(gw: str, when: str) -> dict[str, Any]:
    return _post(gw, "$sirt-activity", {"resourceType": "Parameters", "parameter": [
        {"name": "method", "valueCode": "mird"}, {"name": "device", "valueCode": "glass"},
        *({"name": k, "valueDecimal": v} for k, v in PLAN.items()),
        {"name": "patient", "valueReference": {"reference": f"Patient/{PATIENT}"}},
        {"name": "treatmentTime", "valueDateTime": when}]})


def _course() -> dict[str, Any]:
    """The four lesions (TrackingUID in BodyStructure.identifier) and their four CTs."""
    resources: list[dict[str, Any]] = []
    for lid, label in zip(LESION_IDS, LABELS, strict=True):
        bs = body_structure(lid)
        bs["identifier"] = [{"system": "urn:dicom:uid", "value": f"urn:oid:{TRACKING[label]}"}]
        resources.append(bs)
        role = "target" if lid in ("ax-L1", "ax-L2") else "non-target"
        for i, (when, size) in enumerate(zip(DATES, SIZES[lid], strict=True)):
            resources.append(lesion(f"{lid}-{i}", lid, when, role, longest=size,
                                    status=None if role == "target" or i == 0 else "present"))
    return for_patient(bundle(*resources), PATIENT)


@pytest.fixture(scope="module")
def answers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """The stack, the patient's record and both PACS-triggered jobs; what was asked and answered."""
    with running(make_stack(tmp_path_factory.mktemp("across"), workers=1, with_orthanc=True,
                            env={"ORTHANC_CATCHUP_S": "0", "DOSIMETRY_STORE_BED_MAP": "1"})) as stack:
        yield _ask(stack)


def _ask(stack: Stack) -> dict[str, Any]:
    gw, orthanc = stack.gateway_url, f"http://127.0.0.1:{stack.config.orthanc_port}"
    patient = {"resourceType": "Patient", "id": PATIENT, "identifier": [
        {"system": "urn:netliver:dicom-patient-id", "value": DICOM_ID}]}
    assert requests.put(f"{gw}/fhir/Patient/{PATIENT}", json=patient, timeout=30).status_code in (200, 201)
    course = _course()
    for entry in course["entry"]:
        res = entry["resource"]
        assert requests.put(f"{gw}/fhir/{res['resourceType']}/{res['id']}", json=res, timeout=30).status_code in (200, 201)
    day = ADMINISTRATION.date().isoformat()  # the treatment: the PET's administration day
    first_plan = _plan(gw, f"{day}T09:00:00Z")
    maa, pet = across_studies(DICOM_ID, LABELS, TRACKING, n=N, delivered_gbq=DELIVERED_GBQ)
    tasks = {}
    for name, study in (("maa", maa), ("pet", pet)):
        upload_emission_last(orthanc, study)
        tasks[name] = wait_for_job(f"{gw}/fhir", study, timeout_s=300)
        assert tasks[name]["status"] == "completed", tasks[name].get("statusReason")
    reports = {name: next(o["valueReference"]["reference"] for o in task["output"]
                          if o["valueReference"]["reference"].startswith("DiagnosticReport/"))
               for name, task in tasks.items()}
    comparison = _post(gw, "$dose-comparison", {"resourceType": "Parameters", "parameter": [
        {"name": "predicted", "valueReference": {"reference": reports["maa"]}},
        {"name": "delivered", "valueReference": {"reference": reports["pet"]}}]})
    second_plan = _plan(gw, "2024-10-01T09:00:00Z")
    response = _post(gw, "$tumor-response?criteria=recist-1.1", course)
    return {"gw": gw, "orthanc": orthanc, "studies": {"maa": maa, "pet": pet}, "tasks": tasks, "reports": reports, "first_plan": first_plan, "comparison": comparison,
            "second_plan": second_plan, "response": response}


def _vois(gw: str, report_ref: str) -> dict[str, dict[str, Any]]:
    report = _get(gw, report_ref)
    observations = [_get(gw, r["reference"]) for r in report["result"]]
    return {o["bodySite"]["text"].split(" (")[0]: o for o in observations}


def _components(obs: dict[str, Any]) -> dict[str, Any]:
    return {c["code"]["coding"][0]["code"]: c.get("valueQuantity", {}).get("value", c.get("valueBoolean"))
            for c in obs.get("component", []) if c.get("code", {}).get("coding")}


def _provenance_of(gw: str, target: str) -> dict[str, Any]:
    found = _get(gw, "Provenance", target=target)
    assert found.get("total", len(found.get("entry", []))) >= 1, f"no Provenance names {target}"
    prov: dict[str, Any] = found["entry"][0]["resource"]
    return prov


# ------------------------------------------------------------------------------- the tests --

def test_the_maa_job_simulates_the_plan_and_the_pet_job_records_the_delivery(answers: dict[str, Any]) -> None:
    gw, tasks = answers["gw"], answers["tasks"]
    assert _values(answers["first_plan"], "activityGBq")[0] == pytest.approx(PLAN_GBQ, abs=1e-4)
    activity = {name: next(i["valueDecimal"] for i in t["input"] if "valueDecimal" in i) for name, t in tasks.items()}
    assert activity == {"maa": pytest.approx(PLAN_GBQ, abs=1e-4), "pet": pytest.approx(DELIVERED_GBQ)}
    for name, expected in (("maa", PREDICTED), ("pet", DELIVERED)):
        vois = _vois(gw, answers["reports"][name])
        assert set(vois) == {"liver", "normal liver", "lungs", *LABELS}
        # written back with a Provenance naming the PACS study it was computed from
        report = _get(gw, answers["reports"][name])
        prov = _provenance_of(gw, answers["reports"][name])
        assert report["imagingStudy"][0]["reference"] in {e["what"].get("reference") for e in prov["entity"]}
        for voi, obs in vois.items():
            tolerance = 0.01 if voi == "lungs" else 0.005
            assert obs["valueQuantity"]["value"] == pytest.approx(expected[voi], rel=tolerance), (name, voi)


def test_predicted_versus_delivered_per_voi_with_the_lung_shunt_both_ways(answers: dict[str, Any]) -> None:
    gw, entries = answers["gw"], [e["resource"] for e in answers["comparison"]["entry"]]
    report = entries[0]
    assert report["resourceType"] == "DiagnosticReport" and report["subject"] == {"reference": f"Patient/{PATIENT}"}
    rows = {o["bodySite"]["text"].split(" (")[0]: _components(o) for o in entries[1:] if "bodySite" in o}
    assert set(rows) == {"liver", "normal liver", "lungs", *LABELS}
    for voi, comps in rows.items():
        predicted, delivered = PREDICTED[voi], DELIVERED[voi]
        tolerance = 0.01 if voi == "lungs" else 0.005
        assert comps["predicted-dose-mean"] == pytest.approx(predicted, rel=tolerance)
        assert comps["delivered-dose-mean"] == pytest.approx(delivered, rel=tolerance)
        percent = 100 * (delivered - predicted) / predicted
        assert comps["dose-mean-difference-percent"] == pytest.approx(percent, abs=1.0), voi
        if voi in LABELS:  # a tumour's Dmean differing by more than 20 % of the prediction is flagged
            assert comps["dose-discrepancy"] is (abs(percent) > 20), (voi, percent)
    # by design: lesion 1 got less than the MAA promised (flagged), lesion 3 what it promised
    assert rows["lesion 1"]["dose-discrepancy"] is True and rows["lesion 3"]["dose-discrepancy"] is False
    shunt = _components(next(o for o in entries if o["code"]["coding"][0]["code"] == "lung-shunt-comparison"))
    assert shunt["lung-shunt-predicted"] == pytest.approx(100 * PREDICTED["lsf"], abs=0.01)
    assert shunt["lung-shunt-delivered"] == pytest.approx(100 * DELIVERED["lsf"], abs=0.01)
    # written back: derivedFrom both voxel reports, and a Provenance naming both as inputs
    stored = _get(gw, f"DiagnosticReport/{report['id']}")
    assert stored["result"] == report["result"]
    for ref in stored["result"]:
        derived = {d["reference"] for d in _get(gw, ref["reference"])["derivedFrom"]}
        assert {answers["reports"]["maa"], answers["reports"]["pet"]} <= derived
    prov = _provenance_of(gw, f"DiagnosticReport/{report['id']}")
    assert {e["what"]["reference"] for e in prov["entity"] if "reference" in e["what"]} >= set(answers["reports"].values())


def test_bed_and_eqd2_per_voi_over_the_voxel_bed_map(answers: dict[str, Any]) -> None:
    vois = _vois(answers["gw"], answers["reports"]["pet"])
    for voi in (*LABELS, "normal liver", "liver"):
        tissue = "tumour" if voi in LABELS else "liver"
        comps = _components(vois[voi])
        alpha_beta = TISSUES[tissue][0]
        if voi == "liver":  # the whole liver holds the lesions: its mean BED is not the BED of its mean
            assert comps["bed-mean"] > _bed(DELIVERED["liver"], tissue)
            continue
        bed = _bed(DELIVERED[voi], tissue)
        assert comps["bed-mean"] == pytest.approx(bed, rel=0.005), voi
        assert comps["eqd2-mean"] == pytest.approx(bed / (1 + 2 / alpha_beta), rel=0.005), voi
        assert comps["alpha-beta"] == alpha_beta and comps["repair-half-time"] == TISSUES[tissue][1]


def test_the_voxel_bed_map_is_in_the_pacs_and_named_by_the_report(answers: dict[str, Any]) -> None:
    """DOSIMETRY_STORE_BED_MAP=1 on this stack: the worker stores each job's BED map as an RT Dose
    with DoseType EFFECTIVE, and the report names that instance."""
    from netliver.fhir.extensions import extension_url

    report = _get(answers["gw"], answers["reports"]["pet"])
    [named] = [e["valueIdentifier"]["value"] for e in report.get("extension", [])
               if e["url"] == extension_url("voxel-bed-map")]
    sop_uid = named.removeprefix("urn:oid:")
    study_uid = answers["studies"]["pet"].study_uid
    found = requests.get(f"{answers['orthanc']}/dicom-web/studies/{study_uid}/instances",
                         params={"SOPInstanceUID": sop_uid}, timeout=30).json()
    assert len(found) == 1
    series_uid = found[0]["0020000E"]["Value"][0]
    [meta] = requests.get(f"{answers['orthanc']}/dicom-web/studies/{study_uid}/series/{series_uid}/instances/"
                          f"{sop_uid}/metadata", timeout=30).json()
    assert meta["00080060"]["Value"] == ["RTDOSE"] and meta["30040004"]["Value"] == ["EFFECTIVE"]
    assert "delivered" in meta["30040006"]["Value"][0]  # DoseComment: the delivered treatment's, not a prediction


def test_the_second_plan_takes_the_lung_dose_the_pet_recorded(answers: dict[str, Any]) -> None:
    second, pet = answers["second_plan"], answers["reports"]["pet"]
    # the PET of the treatment day replaces that day's plan; the MAA simulation is no treatment
    prior = _values(second, "priorLungDoseGy")[0]
    assert prior == pytest.approx(DELIVERED["lungs"], rel=0.01)
    used = {r["reference"] for r in _values(second, "priorRecord")}
    lung_obs = _vois(answers["gw"], pet)["lungs"]["id"]
    assert used & {pet, f"Observation/{lung_obs}"} and answers["reports"]["maa"] not in used
    # written back: the second plan's Provenance names the records it took the prior dose from
    plans = _get(answers["gw"], "Observation", subject=f"Patient/{PATIENT}",
                 code=f"{OBSERVATION_CODE_SYSTEM}|sirt-activity-plan")["entry"]
    plan = next(e["resource"] for e in plans if str(e["resource"].get("effectiveDateTime", "")).startswith("2024-10-01"))
    prov = _provenance_of(answers["gw"], f"Observation/{plan['id']}")
    assert used <= {e["what"].get("reference") for e in prov["entity"]}
    new = _values(second, "lungDoseGy")[0]
    assert _values(second, "cumulativeLungDoseGy")[0] == pytest.approx(prior + new, abs=0.02)
    assert _values(second, "status")[0] == ("ok" if prior + new <= 50 else "contraindicated")


def test_each_lesion_s_dose_beside_its_response(answers: dict[str, Any]) -> None:
    gw, resources = answers["gw"], [e["resource"] for e in answers["response"]["entry"]]
    visits = [r for r in resources if r["resourceType"] == "Observation" and any(
        c["code"].get("coding", [{}])[0].get("code") == "overall" for c in r.get("component", []))]
    overall = [next(c["valueCodeableConcept"]["coding"][0]["code"] for c in v["component"]
                    if c["code"].get("coding", [{}])[0].get("code") == "overall") for v in visits]
    # targets 40 + 30 = 70 mm → 58 (−17 %), 51 (−27 %), 47 (−33 %): SD, SD, PR
    assert overall == ["SD", "SD", "PR"]
    rows = {o["focus"][0]["reference"].split("/")[1]: o for o in resources
            if o["resourceType"] == "Observation" and o["code"]["coding"][0]["code"] == "lesion-dose-response"}
    assert set(rows) == set(LESION_IDS)
    expected_category = {"ax-L1": "PR", "ax-L2": "SD", "ax-L3": "PD", "ax-L4": "SD"}  # −50, −10, +25, +13.3 %
    pet_vois = _vois(gw, answers["reports"]["pet"])
    for lid, label in zip(LESION_IDS, LABELS, strict=True):
        comps = {c["code"]["coding"][0]["code"]: c for c in rows[lid]["component"]}
        assert comps["dose-mean"]["valueQuantity"]["value"] == pytest.approx(DELIVERED[label], rel=0.005)
        assert comps["bed-mean"]["valueQuantity"]["value"] == pytest.approx(_bed(DELIVERED[label], "tumour"), rel=0.005)
        sizes = SIZES[lid]
        assert comps["lesion-size-change"]["valueQuantity"]["value"] == pytest.approx(
            100 * (sizes[-1] - sizes[0]) / sizes[0], abs=0.01)
        assert comps["lesion-response"]["valueCodeableConcept"]["coding"][0]["code"] == expected_category[lid]
        # the dose is the delivered one (the PET's lesion Observation, linked by TrackingUID), not the MAA's
        pet_obs = pet_vois[label]
        assert pet_obs["focus"] == [{"reference": f"BodyStructure/{lid}"}]
        assert rows[lid]["derivedFrom"] == [{"reference": f"Observation/{pet_obs['id']}"}]
    report = next(r for r in resources if r["resourceType"] == "DiagnosticReport"
                  and r["code"]["coding"][0]["code"] == "dose-response-report")
    stored = _get(gw, f"DiagnosticReport/{report['id']}")
    assert len(stored["result"]) == 4 and "Dose-response per lesion" in stored["conclusion"]
    _provenance_of(gw, f"DiagnosticReport/{report['id']}")
