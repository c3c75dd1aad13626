"""Cumulative lung dose: $sirt-activity with a patient takes the prior doses from the store.

Three earlier treatments are recorded for one patient: a plan only (January), a plan and its
post-treatment Y-90 PET dosimetry (March: the PET is what was delivered, so it is used), and a
plan only (August). A fourth plan must add their lung doses, say which record it took for each
treatment, and apply the 50 Gy cumulative limit.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient

from gateway.deps import GatewayDeps
from gateway.writeback import tag_results, write_results
from services.dosimetry.app import create_app as dosimetry_app
from services.dosimetry.domain.cumulative import DoseRecord, PriorRecordConflict, prior_doses
from services.dosimetry.fhir_in import voxel_job_request
from services.dosimetry.fhir_out import voxel_results
from services.dosimetry.imaging.phantoms import ADMINISTRATION, build_study, lung_shunt
from services.dosimetry.imaging.pipeline import run_voxel_dosimetry
from tests.support.inprocess import gateway_with_services
from tests.support.memory_dicomweb import MemoryDicomweb

BASE = "http://gateway.test/fhir"
#: EANM 2022 dose constant (Gy·kg/GBq) and the default lung mass (kg) of the planner.
C = 49.67
LUNG_KG = 1.0


# -- domain ------------------------------------------------------------------------------------

def _rec(ref: str, kind: str, day: date | None, lung: float | None, liver: float | None = None) -> DoseRecord:
    return DoseRecord(ref, kind, day, lung, liver)


def test_post_treatment_dosimetry_wins_over_the_plan_of_the_same_treatment() -> None:
    d = date(2024, 3, 5)
    prior = prior_doses([_rec("Observation/plan", "plan", d, 12.0, 40.0),
                         _rec("DiagnosticReport/pet", "post-treatment", d, 9.5)])
    assert [t.source for t in prior.treatments] == ["post-treatment"]
    assert prior.lung_gy == 9.5 and prior.records == ("DiagnosticReport/pet",)
    assert prior.treatments[0].normal_liver_gy == 40.0  # the plan's, as the PET gave none


@pytest.mark.parametrize(("second", "conflict"), [(12.5, False), (12.51, True), (11.5, False), (11.49, True)])
def test_records_of_one_treatment_disagreeing_by_more_than_half_a_gray_conflict(second: float, conflict: bool) -> None:
    d = date(2024, 1, 10)
    records = [_rec("Observation/a", "plan", d, 12.0), _rec("Observation/b", "plan", d, second)]
    if conflict:
        with pytest.raises(PriorRecordConflict) as err:
            prior_doses(records)
        assert err.value.records == ("Observation/a", "Observation/b") and err.value.field == "patient"
    else:
        assert prior_doses(records).lung_gy == 12.0


def test_records_on_or_after_the_new_treatment_or_undated_are_not_prior() -> None:
    prior = prior_doses([_rec("Observation/old", "plan", date(2024, 1, 9), 5.0),
                         _rec("Observation/same-day", "plan", date(2024, 1, 10), 7.0),
                         _rec("Observation/undated", "plan", None, 9.0)], before=date(2024, 1, 10))
    assert prior.lung_gy == 5.0
    assert {ref for ref, _ in prior.ignored} == {"Observation/same-day", "Observation/undated"}


# -- through the gateway -----------------------------------------------------------------------

@pytest.fixture
def gateway(tmp_path: Path) -> tuple[GatewayDeps, FlaskClient]:
    return gateway_with_services(tmp_path, {"dosimetry": dosimetry_app()})


def _plan(lsf: float, when: str | None, patient: str = "Patient/p1", **extra: float) -> dict[str, Any]:
    params: list[dict[str, Any]] = [
        {"name": "method", "valueCode": "mird"}, {"name": "device", "valueCode": "glass"},
        {"name": "targetDoseGy", "valueDecimal": 120}, {"name": "liverVolumeMl", "valueDecimal": 1500},
        {"name": "perfusedFraction", "valueDecimal": 0.5}, {"name": "lungShuntFraction", "valueDecimal": lsf},
        {"name": "patient", "valueReference": {"reference": patient}}]
    if when:
        params.append({"name": "treatmentTime", "valueDateTime": when})
    params.extend({"name": k, "valueDecimal": v} for k, v in extra.items())
    return {"resourceType": "Parameters", "parameter": params}


def _out(body: dict[str, Any], name: str) -> list[Any]:
    return [next(v for k, v in p.items() if k.startswith("value") or k == "part")
            for p in body["parameter"] if p["name"] == name]


def _post(client: FlaskClient, body: dict[str, Any]) -> dict[str, Any]:
    resp = client.post("/fhir/$sirt-activity", json=body)
    assert resp.status_code == 200, resp.get_json()
    out: dict[str, Any] = resp.get_json()
    return out


def _stored_pet(deps: GatewayDeps, patient: str) -> tuple[str, float]:
    """A Y-90 PET dosimetry of the March treatment, stored: (report reference, lung Dmean)."""
    study = build_study(lung_shunt(n=24, voxel_mm=8.84, nuclide="Y-90"), "PT", seed=4)
    result = run_voxel_dosimetry(MemoryDicomweb(study.datasets()), study.study_uid, 1.2, "ldm",
                                 study.seg_series_uid, store=False)
    request = voxel_job_request({"studyInstanceUid": study.study_uid, "administeredActivityGBq": 1.2,
                                 "method": "ldm", "segmentationSeriesUid": study.seg_series_uid, "patient": patient})
    done = voxel_results(result, request, "job-pet", "test")
    write_results(deps.store, tag_results(done.resources), BASE)
    report = next(r for r in done.resources if r["resourceType"] == "DiagnosticReport")
    lung = next(v for v in result.vois if v.role == "lung")
    return f"DiagnosticReport/{report['id']}", lung.metrics["Dmean"]


def _hand_lung_dose(lsf: float) -> float:
    # MIRD (glass): A = D·M / (C·(1 − LSF)), perfused mass 1500 mL × 0.5 × 1.03 g/mL; lung dose A·LSF·C/m
    activity = 120 * (1500 * 0.5 * 1.03 / 1000) / (C * (1 - lsf))
    return activity * lsf * C / LUNG_KG


def test_cumulative_lung_dose_over_three_recorded_treatments(gateway: tuple[GatewayDeps, FlaskClient]) -> None:
    deps, client = gateway
    march = ADMINISTRATION.date().isoformat()  # the PET's administration day
    first = _post(client, _plan(0.10, "2024-01-10T09:00:00Z"))
    march_plan = _post(client, _plan(0.12, f"{march}T09:00:00Z"))
    pet, pet_lung_gy = _stored_pet(deps, "Patient/p1")
    third = _post(client, _plan(0.08, "2024-08-01T09:00:00Z"))
    assert _out(first, "lungDoseGy")[0] == pytest.approx(_hand_lung_dose(0.10), abs=0.01)
    # each plan so far saw the treatments before it
    assert _out(march_plan, "priorLungDoseGy")[0] == pytest.approx(_hand_lung_dose(0.10), abs=0.01)

    new = _post(client, _plan(0.15, "2025-01-15T09:00:00Z"))
    prior = _hand_lung_dose(0.10) + pet_lung_gy + _hand_lung_dose(0.08)
    assert _out(new, "priorLungDoseGy")[0] == pytest.approx(prior, abs=0.02)
    this = _hand_lung_dose(0.15)
    assert _out(new, "cumulativeLungDoseGy")[0] == pytest.approx(prior + this, abs=0.03)
    used = {v["reference"] for v in _out(new, "priorRecord")}
    plan_ref = {name: _out(body, "plan")[0]["reference"] for name, body in
                (("first", first), ("march", march_plan), ("third", third))}
    assert used == {plan_ref["first"], pet, plan_ref["third"]}  # the March plan gave way to the PET
    sources = [{p["name"]: next(v for k, v in p.items() if k.startswith("value")) for p in t}
               for t in _out(new, "priorTreatment")]
    assert [s["source"] for s in sources] == ["plan", "post-treatment", "plan"]
    assert [s["date"] for s in sources] == ["2024-01-10", march, "2024-08-01"]
    # the cumulative limit applies to the sum
    cumulative_warned = any("cumulative lung dose" in w for w in _out(new, "warning"))
    assert cumulative_warned is (prior + this > 50)
    assert (_out(new, "status")[0] == "contraindicated") is (prior + this > 50 or this > 30)
    # the stored plan's Provenance names the records it used
    new_plan = _out(new, "plan")[0]["reference"]
    prov = deps.store.search("Provenance", [("target", new_plan)], BASE)
    entities = {e["what"].get("reference") for e in prov["entry"][0]["resource"]["entity"]}
    assert {pet, plan_ref["first"], plan_ref["third"]} <= entities
    again = _post(client, _plan(0.15, "2025-01-15T09:00:00Z"))
    assert _out(again, "priorLungDoseGy") == _out(new, "priorLungDoseGy")


def test_a_plan_without_a_date_does_not_count_itself_when_run_again(gateway: tuple[GatewayDeps, FlaskClient]) -> None:
    _, client = gateway
    _post(client, _plan(0.10, "2024-01-10T09:00:00Z", patient="Patient/p2"))
    once = _post(client, _plan(0.12, None, patient="Patient/p2"))
    twice = _post(client, _plan(0.12, None, patient="Patient/p2"))
    assert _out(once, "priorLungDoseGy")[0] == pytest.approx(_hand_lung_dose(0.10), abs=0.01)
    assert _out(twice, "priorLungDoseGy") == _out(once, "priorLungDoseGy")


def test_conflicting_records_are_422_naming_them(gateway: tuple[GatewayDeps, FlaskClient]) -> None:
    _, client = gateway
    a = _post(client, _plan(0.10, "2024-01-10T09:00:00Z", patient="Patient/p3"))
    b = _post(client, _plan(0.14, "2024-01-10T15:00:00Z", patient="Patient/p3"))
    resp = client.post("/fhir/$sirt-activity", json=_plan(0.1, "2025-01-15T09:00:00Z", patient="Patient/p3"))
    assert resp.status_code == 422
    issue = resp.get_json()["issue"][0]
    for body in (a, b):
        assert _out(body, "plan")[0]["reference"] in issue["diagnostics"]
    assert "patient" in issue["expression"]


def test_a_given_prior_dose_the_records_contradict_is_refused(gateway: tuple[GatewayDeps, FlaskClient]) -> None:
    _, client = gateway
    _post(client, _plan(0.10, "2024-01-10T09:00:00Z", patient="Patient/p4"))
    resp = client.post("/fhir/$sirt-activity", json=_plan(0.1, "2025-01-15T09:00:00Z", patient="Patient/p4",
                                                           priorLungDoseGy=2.0))
    assert resp.status_code == 422 and "priorLungDoseGy" in resp.get_json()["issue"][0]["expression"]
    agreeing = _plan(0.1, "2025-01-15T09:00:00Z", patient="Patient/p4", priorLungDoseGy=_hand_lung_dose(0.10))
    assert client.post("/fhir/$sirt-activity", json=agreeing).status_code == 200


def test_a_caller_cannot_hand_in_records(gateway: tuple[GatewayDeps, FlaskClient]) -> None:
    _, client = gateway
    body = _plan(0.1, None)
    body["parameter"].append({"name": "record", "resource": {"resourceType": "Observation", "id": "x"}})
    resp = client.post("/fhir/$sirt-activity", json=body)
    assert resp.status_code == 422 and resp.get_json()["issue"][0]["expression"] == [
        f"Parameters.parameter[{len(body['parameter']) - 1}]"]


def test_the_prior_records_are_gathered_without_reading_each_observation(
        gateway: tuple[GatewayDeps, FlaskClient], monkeypatch: pytest.MonkeyPatch) -> None:
    """Two stored PET dosimetries of one patient: their result Observations come with the reports'
    search (``_include``), not one store read each, and the plan still takes their lung doses."""
    deps, client = gateway
    pet_a, lung_a = _stored_pet(deps, "Patient/p6")
    reads: list[str] = []
    real_read = deps.store.read

    def counted(rtype: str, rid: str, *args: Any, **kwargs: Any) -> dict[str, Any]:
        reads.append(f"{rtype}/{rid}")
        return real_read(rtype, rid, *args, **kwargs)

    monkeypatch.setattr(deps.store, "read", counted)
    new = _post(client, _plan(0.10, "2025-01-15T09:00:00Z", patient="Patient/p6"))
    assert {v["reference"] for v in _out(new, "priorRecord")} == {pet_a}
    assert _out(new, "priorLungDoseGy")[0] == pytest.approx(lung_a, abs=0.01)
    assert not [r for r in reads if r.startswith("Observation/") and r != _out(new, "plan")[0]["reference"]]


def test_a_report_whose_result_is_gone_is_named(gateway: tuple[GatewayDeps, FlaskClient]) -> None:
    deps, client = gateway
    pet, _lung = _stored_pet(deps, "Patient/p7")
    report = deps.store.read(*pet.split("/"))
    gone = report["result"][0]["reference"]
    deps.store.delete(*gone.split("/"))
    resp = client.post("/fhir/$sirt-activity", json=_plan(0.10, "2025-01-15T09:00:00Z", patient="Patient/p7"))
    assert resp.status_code == 422
    assert f"{gone} is not in the store" in resp.get_json()["issue"][0]["diagnostics"]
