"""Dose-response per lesion: four liver lesions (two targets, two measured non-targets), their absorbed doses from the stored voxel
results (focus → the lesion's BodyStructure) and their RECIST courses over three follow-up CTs
give the table a tumour board reads: which lesions got ≥ 100-150 Gy and how each responded."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from gateway.writeback import tag_results, write_results
from infra.demo_follow_up import PATIENT, body_structure, bundle, lesion
from netliver.fhir.codesystems import OBSERVATION_CODE_SYSTEM
from services.response.app import create_app as response_app
from services.response.domain.dose_response import LesionDose, dose_response_table
from services.response.domain.model import Assessment, LesionMeasurement, Role
from tests.support.inprocess import gateway_with_services

BASE = "http://gateway.test/fhir"
DATES = ("2025-01-10", "2025-04-10", "2025-07-10", "2025-10-10")
#: lesion → (longest diameters in mm at baseline and the three follow-ups, dose Gy, BED Gy)
LESIONS: dict[str, tuple[tuple[int, ...], float, float]] = {
    "L1": ((40, 30, 24, 20), 180.0, 260.0),   # −50 %: PR
    "L2": ((30, 28, 27, 27), 90.0, 110.0),    # −10 %: SD
    "L3": ((20, 22, 24, 25), 60.0, 70.0),     # +25 %: PD
    "L4": ((15, 10, 5, 0), 250.0, 400.0),     # gone: CR
}
EXPECTED = {"L1": ("PR", Decimal(-50)), "L2": ("SD", Decimal(-10)), "L3": ("PD", Decimal(25)),
            "L4": ("CR", Decimal(-100))}


def _dose_observation(lesion_id: str, dose: float, bed: float) -> dict[str, Any]:
    """A stored voxel-dosimetry result of one lesion (as the voxel job writes it)."""
    return {"resourceType": "Observation", "id": f"dose-{lesion_id}", "status": "final",
            "code": {"coding": [{"system": OBSERVATION_CODE_SYSTEM, "code": "voxel-dose-metrics"}]},
            "subject": {"reference": f"Patient/{PATIENT}"}, "effectiveDateTime": "2025-01-20T10:00:00Z",
            "focus": [{"reference": f"BodyStructure/{lesion_id}"}],
            "valueQuantity": {"value": dose, "unit": "Gy"},
            "component": [
                {"code": {"coding": [{"system": OBSERVATION_CODE_SYSTEM, "code": "bed-mean"}]},
                 "valueQuantity": {"value": bed, "unit": "Gy"}}]}


def _course() -> dict[str, Any]:
    resources: list[dict[str, Any]] = [body_structure(lid) for lid in LESIONS]
    for lid, (sizes, _, _) in LESIONS.items():
        # RECIST 1.1 §4.2: two targets per organ; L3 and L4 are measured non-targets
        role = "target" if lid in ("L1", "L2") else "non-target"
        for i, (when, size) in enumerate(zip(DATES, sizes, strict=True)):
            status = None if role == "target" or i == 0 else ("absent" if size == 0 else "present")
            resources.append(lesion(f"{lid}-{i}", lid, when, role, longest=size, status=status))
    return bundle(*resources)


def test_four_lesions_give_the_expected_dose_response_table(tmp_path: Path) -> None:
    deps, client = gateway_with_services(tmp_path, {"response": response_app()})
    write_results(deps.store, tag_results([_dose_observation(lid, d, b) for lid, (_, d, b) in LESIONS.items()]),
                  BASE)
    resp = client.post("/fhir/$tumor-response?criteria=recist-1.1", json=_course())
    assert resp.status_code == 200, resp.get_json()
    resources = [e["resource"] for e in resp.get_json()["entry"]]
    report = next(r for r in resources if r["resourceType"] == "DiagnosticReport"
                  and r["code"]["coding"][0]["code"] == "dose-response-report")
    rows = {o["focus"][0]["reference"].split("/")[1]: o for o in resources
            if o["code"]["coding"][0]["code"] == "lesion-dose-response"}
    assert set(rows) == set(LESIONS) and len(report["result"]) == 4
    for lid, (sizes, dose, bed) in LESIONS.items():
        comps = {c["code"]["coding"][0]["code"]: c for c in rows[lid]["component"]}
        assert comps["dose-mean"]["valueQuantity"]["value"] == dose
        assert comps["bed-mean"]["valueQuantity"]["value"] == bed
        assert float(comps["lesion-baseline-size"]["valueQuantity"]["value"]) == sizes[0]
        assert float(comps["lesion-latest-size"]["valueQuantity"]["value"]) == sizes[-1]
        change = Decimal(100) * (sizes[-1] - sizes[0]) / sizes[0]
        assert Decimal(str(comps["lesion-size-change"]["valueQuantity"]["value"])) == change == EXPECTED[lid][1]
        assert comps["lesion-response"]["valueCodeableConcept"]["coding"][0]["code"] == EXPECTED[lid][0]
        assert rows[lid]["derivedFrom"] == [{"reference": f"Observation/dose-{lid}"}]
    # the conclusion reads as the table: L4 (250 Gy) CR, L3 (60 Gy) PD
    assert "250.0 Gy, BED 400.0 Gy; 15 → 0 mm (-100 %); CR" in report["conclusion"]
    assert "60.0 Gy, BED 70.0 Gy; 20 → 25 mm (25 %); PD" in report["conclusion"]
    stored = deps.store.read("DiagnosticReport", report["id"])
    assert stored["result"] == report["result"]


def test_without_dose_records_no_dose_response_is_made(tmp_path: Path) -> None:
    _, client = gateway_with_services(tmp_path, {"response": response_app()})
    resources = [e["resource"] for e in client.post("/fhir/$tumor-response", json=_course()).get_json()["entry"]]
    assert not any(r["code"]["coding"][0]["code"] in ("lesion-dose-response", "dose-response-report")
                   for r in resources if r.get("code", {}).get("coding"))


def _m(lid: str, longest: str, node: bool = False, short: str | None = None) -> LesionMeasurement:
    return LesionMeasurement(lid, Role.TARGET, is_node=node, longest_diameter_mm=Decimal(longest),
                             short_axis_mm=Decimal(short) if short else None)


@pytest.mark.parametrize(("criterion", "latest", "category"), [
    ("recist-1.1", "70", "PR"), ("recist-1.1", "71", "SD"), ("recist-1.1", "120", "PD"), ("recist-1.1", "119", "SD"),
    ("choi", "90", "PR"), ("choi", "91", "SD"), ("choi", "110", "PD"), ("percist", "50", None)])
def test_per_lesion_thresholds_at_their_boundaries(criterion: str, latest: str, category: str | None) -> None:
    import datetime as dt

    rows = dose_response_table(criterion, [Assessment(dt.date(2025, 1, 1), (_m("A", "100"),)),
                                           Assessment(dt.date(2025, 3, 1), (_m("A", latest),))],
                               {"A": LesionDose("A", 120.0, None)})
    assert rows[0].category == category and rows[0].dose is not None


def test_a_post_treatment_dose_is_preferred_to_an_maa_simulation() -> None:
    from services.response.fhir_in import parse_input, parse_settings

    simulated = _dose_observation("L1", 300.0, 500.0)
    simulated["id"] = "maa-L1"
    simulated["category"] = [{"coding": [{"system": OBSERVATION_CODE_SYSTEM, "code": "dose-simulation"}]}]
    simulated["effectiveDateTime"] = "2025-01-25T10:00:00Z"  # later, yet only a prediction
    course = _course()
    for obs in (_dose_observation("L1", 180.0, 260.0), simulated):
        course["entry"].append({"fullUrl": f"{BASE}/Observation/{obs['id']}", "resource": obs})
    parsed = parse_input(course, parse_settings({}))
    assert parsed.lesion_doses["L1"].dose_gy == 180.0
    assert parsed.lesion_doses["L1"].source == "Observation/dose-L1"
