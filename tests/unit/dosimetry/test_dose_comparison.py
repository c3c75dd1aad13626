"""$dose-comparison: an MAA simulation against the post-treatment Y-90 image, VOI by VOI.

A liver with one tumour under two lungs is imaged as a Tc-99m MAA SPECT and, after treatment,
as a Y-90 PET in which the tumour took half the concentration the MAA showed and the lungs
two thirds: the comparison must find the tumour's dose fall, flag it, and give both lung
shunts, all through the gateway and the stored results.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient

from gateway.deps import GatewayDeps
from gateway.writeback import tag_results, write_results
from services.dosimetry.app import create_app as dosimetry_app
from services.dosimetry.domain.comparison import StudyDoses, VoiMetrics, compare_doses
from services.dosimetry.domain.errors import DosimetryInputError
from services.dosimetry.fhir_in import voxel_job_request
from services.dosimetry.fhir_out import voxel_results
from services.dosimetry.imaging.phantoms import (
    Phantom,
    PhantomStudy,
    build_study,
    lung_shunt,
)
from services.dosimetry.imaging.pipeline import run_voxel_dosimetry
from tests.support.inprocess import gateway_with_services
from tests.support.memory_dicomweb import MemoryDicomweb

ACTIVITY_GBQ = 2.0
#: Delivered / MAA concentration in the tumour and in the lungs (the redistribution).
TUMOUR_FACTOR = 0.5
LUNG_FACTOR = 2 / 3


def _delivered(maa: Phantom) -> Phantom:
    comps = [replace(c, counts_per_voxel=round(c.counts_per_voxel * {"tumour 1": TUMOUR_FACTOR,
                                                                     "lungs": LUNG_FACTOR}.get(c.name, 1.0)))
             for c in maa.compartments]
    return replace(maa, name="lung-shunt-y90", compartments=comps, nuclide="Y-90",
                   radiopharmaceutical="Y-90 microspheres")


def _voi(name: str, role: str, dmean: float, share: float | None = None) -> VoiMetrics:
    return VoiMetrics(name, role, dmean, dmean * 0.8, 50.0, share)


# -- domain ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("delivered", "flagged"), [(120.0, False), (120.01, True), (80.0, False),
                                                    (79.99, True), (100.0, False)])
def test_tumour_flag_is_above_20_percent_of_the_predicted_dose_either_way(delivered: float, flagged: bool) -> None:
    result = compare_doses(StudyDoses("DiagnosticReport/p", (_voi("tumour 1", "tumour", 100.0),)),
                           StudyDoses("DiagnosticReport/d", (_voi("tumour 1", "tumour", delivered),)))
    row = result.vois[0]
    assert row.flagged is flagged
    assert row.dmean.absolute == pytest.approx(delivered - 100.0)
    assert row.dmean.percent == pytest.approx(delivered - 100.0)


def test_normal_liver_differences_are_reported_but_not_flagged() -> None:
    result = compare_doses(StudyDoses("DiagnosticReport/p", (_voi("Liver", "liver", 40.0),)),
                           StudyDoses("DiagnosticReport/d", (_voi(" liver ", "liver", 60.0),)))
    assert result.vois[0].dmean.percent == pytest.approx(50.0) and not result.flagged


def test_unmatched_vois_are_named_and_nothing_shared_is_refused() -> None:
    result = compare_doses(
        StudyDoses("DiagnosticReport/p", (_voi("liver", "liver", 40.0), _voi("lungs", "lung", 5.0))),
        StudyDoses("DiagnosticReport/d", (_voi("liver", "liver", 42.0), _voi("tumour 9", "tumour", 90.0))))
    assert [v.name for v in result.vois] == ["liver"] and result.unmatched == ("lungs", "tumour 9")
    with pytest.raises(DosimetryInputError) as err:
        compare_doses(StudyDoses("DiagnosticReport/p", (_voi("a", "liver", 1.0),)),
                      StudyDoses("DiagnosticReport/d", (_voi("b", "liver", 1.0),)))
    assert err.value.field == "delivered"


def test_lung_shunt_both_ways_from_the_count_shares() -> None:
    p = StudyDoses("DiagnosticReport/p", (_voi("liver", "liver", 40.0, 0.90), _voi("lungs", "lung", 5.0, 0.10)))
    d = StudyDoses("DiagnosticReport/d", (_voi("liver", "liver", 40.0, 0.95), _voi("lungs", "lung", 5.0, 0.05)))
    result = compare_doses(p, d)
    assert result.lung_shunt_predicted == pytest.approx(0.10) and result.lung_shunt_delivered == pytest.approx(0.05)


# -- through the gateway, on two simulated studies ---------------------------------------------


def _stored_results(deps: GatewayDeps, study: PhantomStudy, patient: str) -> tuple[str, dict[str, Any]]:
    result = run_voxel_dosimetry(MemoryDicomweb(study.datasets()), study.study_uid, ACTIVITY_GBQ, "ldm",
                                 study.seg_series_uid, store=False)
    request = voxel_job_request({"studyInstanceUid": study.study_uid, "administeredActivityGBq": ACTIVITY_GBQ,
                                 "method": "ldm", "segmentationSeriesUid": study.seg_series_uid,
                                 "patient": patient})
    done = voxel_results(result, request, f"job-{study.modality}", "test")
    write_results(deps.store, tag_results(done.resources), "http://gateway.test/fhir")
    report = next(r for r in done.resources if r["resourceType"] == "DiagnosticReport")
    return f"DiagnosticReport/{report['id']}", {v.name: v for v in result.vois}


@pytest.fixture(scope="module")
def maa_phantom() -> Phantom:
    return lung_shunt(n=24, voxel_mm=8.84, nuclide="Tc-99m")


@pytest.fixture
def gateway(tmp_path: Path) -> tuple[GatewayDeps, FlaskClient]:
    return gateway_with_services(tmp_path, {"dosimetry": dosimetry_app()})


def _params(predicted: str, delivered: str) -> dict[str, Any]:
    return {"resourceType": "Parameters", "parameter": [
        {"name": "predicted", "valueReference": {"reference": predicted}},
        {"name": "delivered", "valueReference": {"reference": delivered}}]}


def _components(obs: dict[str, Any]) -> dict[str, Any]:
    return {c["code"]["coding"][0]["code"]: c.get("valueQuantity", {}).get("value", c.get("valueBoolean"))
            for c in obs["component"]}


def test_the_comparison_finds_the_redistribution(gateway: tuple[GatewayDeps, FlaskClient],
                                                 maa_phantom: Phantom) -> None:
    deps, client = gateway
    y90_phantom = _delivered(maa_phantom)
    predicted, maa_vois = _stored_results(deps, build_study(maa_phantom, "NM", seed=1), "Patient/p1")
    delivered, y90_vois = _stored_results(deps, build_study(y90_phantom, "PT", seed=1), "Patient/p1")

    resp = client.post("/fhir/$dose-comparison", json=_params(predicted, delivered))
    assert resp.status_code == 200, resp.get_json()
    entries = [e["resource"] for e in resp.get_json()["entry"]]
    report, observations = entries[0], {o["bodySite"]["text"].split(" (")[0]: o for o in entries[1:]
                                        if "bodySite" in o}
    assert report["resourceType"] == "DiagnosticReport"
    # the tumour dose falls as its share of the counts fell (LDM: dose ∝ share / mass; same CT design)
    share_ratio = (y90_phantom.activity_fraction("tumour 1") / maa_phantom.activity_fraction("tumour 1"))
    tumour = _components(observations["tumour 1"])
    assert tumour["delivered-dose-mean"] / tumour["predicted-dose-mean"] == pytest.approx(share_ratio, rel=0.03)
    assert tumour["dose-mean-difference-percent"] == pytest.approx(100 * (share_ratio - 1), abs=3)
    assert tumour["dose-discrepancy"] is True
    assert tumour["predicted-dose-mean"] == pytest.approx(maa_vois["tumour 1"].metrics["Dmean"], abs=1e-3)
    assert tumour["delivered-dose-mean"] == pytest.approx(y90_vois["tumour 1"].metrics["Dmean"], abs=1e-3)
    assert {"dose-d70-difference", "dose-v100-difference"} <= set(tumour)
    # the lung shunt both ways, from the design's count shares
    lsf = next(o for o in entries[1:] if o["code"]["coding"][0]["code"] == "lung-shunt-comparison")
    lung = _components(lsf)

    def design_lsf(ph: Phantom) -> float:
        lungs = ph.activity_fraction("lungs")
        return 100 * lungs / (lungs + ph.activity_fraction("normal liver", "tumour 1"))

    assert lung["lung-shunt-predicted"] == pytest.approx(design_lsf(maa_phantom), rel=0.02)
    assert lung["lung-shunt-delivered"] == pytest.approx(design_lsf(y90_phantom), rel=0.02)
    # written back, linked to both results, with Provenance
    stored = deps.store.read("DiagnosticReport", report["id"])
    assert len(stored["result"]) == len(entries) - 1
    derived = {d["reference"] for d in observations["tumour 1"]["derivedFrom"]}
    assert {predicted, delivered} <= derived and len(derived) == 4
    prov = deps.store.search("Provenance", [("target", f"DiagnosticReport/{report['id']}")], "http://gateway.test/fhir")
    assert prov["total"] == 1
    # the same request twice gives the same report
    again = client.post("/fhir/$dose-comparison", json=_params(predicted, delivered)).get_json()
    assert again["entry"][0]["resource"]["id"] == report["id"]


def test_unknown_or_wrong_references_are_422_naming_the_parameter(gateway: tuple[GatewayDeps, FlaskClient]) -> None:
    _, client = gateway
    resp = client.post("/fhir/$dose-comparison", json=_params("DiagnosticReport/nope", "DiagnosticReport/nope2"))
    assert resp.status_code == 422
    assert resp.get_json()["issue"][0]["expression"] == ["Parameters.parameter[0].valueReference"]
    resp = client.post("/fhir/$dose-comparison", json=_params("Observation/x", "DiagnosticReport/y"))
    assert resp.status_code == 422
    body = _params("DiagnosticReport/a", "DiagnosticReport/b")
    body["parameter"].append({"name": "resource", "resource": {"resourceType": "Observation", "id": "fake"}})
    resp = client.post("/fhir/$dose-comparison", json=body)
    assert resp.status_code == 422 and resp.get_json()["issue"][0]["expression"] == ["Parameters.parameter[2]"]


def test_a_missing_input_is_422_naming_it(gateway: tuple[GatewayDeps, FlaskClient], maa_phantom: Phantom) -> None:
    deps, client = gateway
    predicted, _ = _stored_results(deps, build_study(maa_phantom, "NM", seed=2), "Patient/p1")
    resp = client.post("/fhir/$dose-comparison", json={"resourceType": "Parameters", "parameter": [
        {"name": "predicted", "valueReference": {"reference": predicted}}]})
    assert resp.status_code == 422 and resp.get_json()["issue"][0]["expression"] == ["delivered"]
    resp = client.post("/fhir/$dose-comparison", json=_params(predicted, predicted))
    assert resp.status_code == 422 and resp.get_json()["issue"][0]["expression"] == ["delivered"]
