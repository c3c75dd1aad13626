"""The page's readers: FHIR results → typed rows, each value copied with its unit."""

from __future__ import annotations

from typing import Any

import pytest

from netliver.fhir.codesystems import (
    LESION_ROLE_SYSTEM,
    LOINC,
    OBSERVATION_CODE_SYSTEM,
    RESPONSE_SYSTEM,
    SNOMED,
    STATUS_SYSTEM,
    THERAPY_SYSTEM,
)
from netliver.report.case import build_case, eligibility_row, sirt_plan, visit

PATIENT = {"resourceType": "Patient", "id": "p1", "birthDate": "1968-03-14", "gender": "male",
           "name": [{"given": ["Ada"], "family": "Example"}]}


def _eligibility(therapy: str, status: str, notes: list[str], missing: list[str] = (), when: str = "2026-01-05",
                 obs_id: str | None = None) -> dict[str, Any]:
    return {"resourceType": "Observation", "id": obs_id or f"elig-{therapy}-{when}",
            "code": {"coding": [{"system": THERAPY_SYSTEM, "code": therapy, "display": therapy.upper()}]},
            "valueCodeableConcept": {"coding": [{"system": STATUS_SYSTEM, "code": status}]},
            "effectiveDateTime": when, "note": [{"text": t} for t in notes],
            "component": [{"code": {"text": m}, "dataAbsentReason": {"coding": [{"code": "unknown"}]}} for m in missing]}


def _q(value: float, unit: str) -> dict[str, Any]:
    return {"value": value, "unit": unit}


def test_an_ineligible_row_keeps_the_deciding_rule_its_source_and_not_the_others() -> None:
    row = eligibility_row(_eligibility("sirt", "ineligible", [
        "[SIRT-ABS-BILI · absolute · met] Bilirubin too high (> 2 mg/dL). bilirubin 2.4 mg/dL. Source: EANM 2022 §3",
        "[SIRT-IND-LIVER · indication · met] Liver-dominant disease. Source: ESMO 2020",
        "Note: eGFR read as clearance."]))
    assert row.status == "ineligible" and row.status_label == "Ineligible" and row.icon == "✖"
    assert [(r.rule_id, r.source) for r in row.deciding] == [("SIRT-ABS-BILI", "EANM 2022 §3")]
    assert "bilirubin 2.4 mg/dL" in row.deciding[0].text
    assert len(row.reasons) == 2 and row.notes == ("eGFR read as clearance.",)


def test_an_eligible_row_is_decided_by_its_met_indications() -> None:
    row = eligibility_row(_eligibility("prrt", "eligible", [
        "[PRRT-IND-SSTR · indication · met] Krenning >= 2. Source: NETTER-1",
        "[PRRT-ABS-GFR · absolute · not-met] eGFR < 30. Source: EANM"]))
    assert [r.rule_id for r in row.deciding] == ["PRRT-IND-SSTR"]


def test_insufficient_data_lists_the_missing_inputs() -> None:
    row = eligibility_row(_eligibility("tae", "insufficient-data", ["Missing inputs that could change the answer: x."],
                                       missing=["Total bilirubin", "Platelets"]))
    assert row.missing == ("Total bilirubin", "Platelets") and row.icon == "?"


def test_the_newest_evaluation_of_each_therapy_wins_and_rows_follow_the_contract_order() -> None:
    resources = [_eligibility("sirt", "ineligible", [], when="2026-01-01"),
                 _eligibility("sirt", "eligible", [], when="2026-02-01"),
                 _eligibility("surgical-resection", "eligible", [])]
    case = build_case(PATIENT, resources)
    assert [(r.therapy, r.status) for r in case.eligibility] == [("surgical-resection", "eligible"), ("sirt", "eligible")]
    assert case.patient.name == "Ada Example"


def _component(code: str, **value: Any) -> dict[str, Any]:
    return {"code": {"coding": [{"system": OBSERVATION_CODE_SYSTEM, "code": code}]}, **value}


def test_the_sirt_plan_keeps_doses_with_units_and_shows_limits_only_when_recorded() -> None:
    plan = sirt_plan({"resourceType": "Observation", "id": "plan", "valueQuantity": _q(1.8061, "GBq"),
                      "method": {"text": "partition (resin microspheres)"}, "note": [{"text": "dose constant"}],
                      "component": [_component("tumorDoseGy", valueQuantity=_q(120.0, "Gy")),
                                    _component("lungDoseGy", valueQuantity=_q(6.28, "Gy")),
                                    _component("lungLimitGy", valueQuantity=_q(30.0, "Gy")),
                                    _component("limitingFactor", valueString="tumor-target"),
                                    _component("status", valueString="ok")]})
    doses = {d.what: (d.predicted.text(2), d.limit.text(0) if d.limit else None) for d in plan.doses}
    assert doses == {"Tumour": ("120.00 Gy", None), "Lung": ("6.28 Gy", "30 Gy")}
    assert plan.activity is not None and plan.activity.text(4) == "1.8061 GBq"
    assert (plan.limiting_factor, plan.status, plan.warnings) == ("tumor-target", "ok", ("dose constant",))


def _metric(code: str, value: float, unit: str = "Gy") -> dict[str, Any]:
    return _component(code, valueQuantity=_q(value, unit))


def test_a_dosimetry_report_lists_each_voi_with_its_metrics_and_volume() -> None:
    obs = {"resourceType": "Observation", "id": "v1", "code": {"text": "Absorbed dose in tumour 1"},
           "component": [_metric("dose-mean", 138.9), _metric("dose-d70", 138.6), _metric("dose-v100", 100.0, "%"),
                         _metric("bed-mean", 180.2),
                         {"code": {"text": "VOI volume"}, "valueQuantity": _q(57.9, "mL")}]}
    report = {"resourceType": "DiagnosticReport", "id": "r1", "subject": {"reference": "Patient/p1"},
              "code": {"coding": [{"system": OBSERVATION_CODE_SYSTEM, "code": "voxel-dosimetry-report",
                                   "display": "Voxel dosimetry report"}]},
              "effectiveDateTime": "2026-12-02T10:00:00Z", "result": [{"reference": "Observation/v1"}]}
    case = build_case(PATIENT, [report, obs])
    (dose,) = case.doses
    (voi,) = dose.vois
    assert dose.effective == "2026-12-02" and voi.name == "tumour 1"
    assert {k: v.text(1) for k, v in voi.metrics.items()} == {"Dmean": "138.9 Gy", "D70": "138.6 Gy",
                                                               "V100": "100.0 %", "BED": "180.2 Gy"}
    assert voi.volume is not None and voi.volume.text(1) == "57.9 mL"


def _lesion(obs_id: str, lesion: str, when: str, size: float, role: str = "target",
            axis: str = "33728-7") -> dict[str, Any]:
    return {"resourceType": "Observation", "id": obs_id, "code": {"coding": [{"system": LOINC, "code": "21889-1"}]},
            "focus": [{"reference": f"BodyStructure/{lesion}"}], "effectiveDateTime": when,
            "category": [{"coding": [{"system": LESION_ROLE_SYSTEM, "code": role}]}],
            "component": [{"code": {"coding": [{"system": LOINC if axis == "33728-7" else SNOMED, "code": axis}]},
                           "valueQuantity": _q(size, "mm")}]}


def test_lesion_changes_are_against_each_lesions_first_size_and_nodes_use_the_short_axis() -> None:
    node = {"resourceType": "BodyStructure", "id": "N1",
            "location": {"coding": [{"system": SNOMED, "code": "59441001"}], "text": "Para-aortic node"}}
    resources = [node, _lesion("a", "L1", "2025-01-10", 40), _lesion("b", "L1", "2025-04-10", 30),
                 _lesion("c", "L1", "2025-07-10", 34),
                 _lesion("d", "N1", "2025-01-10", 20, axis="103340004"), _lesion("e", "N1", "2025-04-10", 25, axis="103340004"),
                 _lesion("f", "X1", "2025-04-10", 8, role="new")]
    case = build_case(PATIENT, resources)
    assert case.lesion_changes() == {"L1": [("2025-01-10", 0.0), ("2025-04-10", -25.0), ("2025-07-10", -15.0)],
                                     "N1": [("2025-01-10", 0.0), ("2025-04-10", 25.0)]}
    assert case.best_changes() == [("N1", 25.0), ("L1", -25.0)]  # waterfall order: highest first
    assert any(p.label == "Para-aortic node (short axis)" for p in case.lesions)


def _visit(criterion: str, when: str, overall: str, pct: float | None, obs_id: str) -> dict[str, Any]:
    comps = [{"code": {"coding": [{"system": RESPONSE_SYSTEM, "code": "overall"}]},
              "valueCodeableConcept": {"coding": [{"system": RESPONSE_SYSTEM, "code": overall}]}},
             {"code": {"coding": [{"system": RESPONSE_SYSTEM, "code": "sum-of-diameters"}]}, "valueQuantity": _q(77.0, "mm")},
             {"code": {"coding": [{"system": RESPONSE_SYSTEM, "code": "new-lesions"}]}, "valueBoolean": False}]
    if pct is not None:
        comps.append({"code": {"coding": [{"system": RESPONSE_SYSTEM, "code": "percent-change-baseline"}]},
                      "valueQuantity": _q(pct, "%")})
    return {"resourceType": "Observation", "id": obs_id, "effectiveDateTime": when,
            "code": {"coding": [{"system": RESPONSE_SYSTEM, "code": "tumor-response"}]},
            "method": {"coding": [{"system": RESPONSE_SYSTEM, "code": criterion}]},
            "valueCodeableConcept": {"coding": [{"system": RESPONSE_SYSTEM, "code": overall}]}, "component": comps}


def test_response_visits_are_grouped_per_criterion_in_date_order() -> None:
    best = {"resourceType": "Observation", "id": "bor", "code": {"coding": [{"system": RESPONSE_SYSTEM, "code": "best-overall-response"}]},
            "method": {"coding": [{"system": RESPONSE_SYSTEM, "code": "mrecist"}]},
            "valueCodeableConcept": {"coding": [{"system": RESPONSE_SYSTEM, "code": "PR"}]}}
    case = build_case(PATIENT, [_visit("mrecist", "2025-07-10", "PR", -59.0, "m2"), _visit("mrecist", "2025-04-10", "PR", -41.0, "m1"),
                                _visit("recist-1.1", "2025-04-10", "SD", -14.4, "r1"), best])
    assert [(c.criterion, c.best, [v.date for v in c.visits]) for c in case.courses] == [
        ("recist-1.1", "", ["2025-04-10"]), ("mrecist", "PR", ["2025-04-10", "2025-07-10"])]
    v = visit(_visit("recist-1.1", "2025-04-10", "SD", -14.4, "r1"))
    assert (v.overall, v.new_lesions, v.percent_baseline, v.measure) == ("SD", False, v.percent_baseline, v.measure)
    assert v.percent_baseline is not None and v.percent_baseline.text(1) == "-14.4 %"
    assert v.measure is not None and v.measure.text(1) == "77.0 mm"


def test_ctcae_grades_written_once_per_criterion_appear_once_worst_first() -> None:
    def grade(obs_id: str, term: str, value: int) -> dict[str, Any]:
        return {"resourceType": "Observation", "id": obs_id, "effectiveDateTime": "2025-02-03", "valueInteger": value,
                "code": {"coding": [{"system": RESPONSE_SYSTEM, "code": "ctcae-grade"}]},
                "component": [{"code": {"coding": [{"code": "ctcae-term"}]}, "valueCodeableConcept": {"text": term}},
                              {"code": {"coding": [{"code": "lab-value"}]}, "valueQuantity": _q(2.1, "mg/dL")}]}
    case = build_case(PATIENT, [grade("a", "Anemia", 1), grade("b", "Blood bilirubin increased", 2),
                                grade("c", "Anemia", 1)])
    assert [(g.term, g.grade) for g in case.grades] == [("Blood bilirubin increased", 2), ("Anemia", 1)]


@pytest.mark.parametrize("code, name", [("9811-1", "Chromogranin A"), ("1695-6", "5-HIAA (24 h urine)")])
def test_markers_are_read_with_their_units(code: str, name: str) -> None:
    obs = {"resourceType": "Observation", "id": "m", "effectiveDateTime": "2025-01-08",
           "code": {"coding": [{"system": LOINC, "code": code}]}, "valueQuantity": _q(480.0, "ug/L")}
    other = {**obs, "id": "o", "code": {"coding": [{"system": LOINC, "code": "1975-2"}]}}
    case = build_case(PATIENT, [obs, other])
    assert [(m.marker, m.date, m.value.text(0)) for m in case.markers] == [(name, "2025-01-08", "480 ug/L")]
