"""Biochemical response (Elf et al.) and CTCAE v5.0 laboratory grades."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from services.response.domain.biochemical import biochemical_responses
from services.response.domain.ctcae import grade_value, worst_grades
from services.response.domain.model import LabValue, MarkerValue

D = Decimal


@pytest.mark.parametrize(("analyte", "value", "grade"), [
    # bilirubin, ULN 1.2 mg/dL: G1 > ULN-1.5×, G2 > 1.5-3×, G3 > 3-10×, G4 > 10× ULN
    ("bilirubin", "1.2", 0), ("bilirubin", "1.21", 1), ("bilirubin", "1.8", 1), ("bilirubin", "1.81", 2),
    ("bilirubin", "3.6", 2), ("bilirubin", "3.61", 3), ("bilirubin", "12", 3), ("bilirubin", "12.1", 4),
    # ALT, ULN 40 U/L: G1 > ULN-3×, G2 > 3-5×, G3 > 5-20×, G4 > 20×
    ("alt", "40", 0), ("alt", "120", 1), ("alt", "121", 2), ("alt", "200", 2), ("alt", "201", 3),
    ("alt", "800", 3), ("alt", "801", 4), ("ast", "41", 1),
    # ALP, ULN 120 U/L: G1 > ULN-2.5×, G2 > 2.5-5×
    ("alp", "300", 1), ("alp", "301", 2), ("alp", "2401", 4),
    # platelets, LLN 150 × 10^9/L: G1 < LLN-75, G2 < 75-50, G3 < 50-25, G4 < 25
    ("platelets", "150", 0), ("platelets", "149", 1), ("platelets", "75", 1), ("platelets", "74.9", 2),
    ("platelets", "50", 2), ("platelets", "49.9", 3), ("platelets", "25", 3), ("platelets", "24.9", 4),
    # haemoglobin, LLN 12 g/dL: G1 < LLN-10, G2 < 10-8, G3 < 8; grade 4 is clinical
    ("hemoglobin", "10.0", 1), ("hemoglobin", "9.9", 2), ("hemoglobin", "8.0", 2), ("hemoglobin", "7.9", 3),
    ("hemoglobin", "4", 3),
    # WBC, LLN 4 × 10^9/L: G1 < LLN-3.0, G2 < 3.0-2.0, G3 < 2.0-1.0, G4 < 1.0
    ("wbc", "3.0", 1), ("wbc", "2.9", 2), ("wbc", "1.0", 3), ("wbc", "0.9", 4),
])
def test_ctcae_v5_grade_boundaries(analyte, value, grade):
    assert grade_value(analyte, D(value))[0] == grade


def test_abnormal_pre_treatment_value_is_the_reference():
    # CTCAE v5.0: with an abnormal baseline, ALT grade 1 starts at 1.5 × baseline.
    assert grade_value("alt", D(119), pre_treatment=D(80))[0] == 0
    assert grade_value("alt", D(120), pre_treatment=D(80))[:2] == (1, D(80))
    assert grade_value("alt", D(120), pre_treatment=D(30))[0] == 1  # normal baseline: × ULN
    assert grade_value("bilirubin", D("2.0"), pre_treatment=D("2.0"))[0] == 0
    assert grade_value("bilirubin", D("3.1"), pre_treatment=D("2.0"))[0] == 2


@pytest.mark.parametrize(("value", "grade"), [("399", 0), ("400", 1), ("500", 1), ("501", 2),
                                             ("1000", 2), ("1001", 3), ("4000", 3), ("4001", 4)])
def test_alkaline_phosphatase_with_an_abnormal_baseline(value, grade):
    # CTCAE v5.0 "Alkaline phosphatase increased", baseline abnormal (200 U/L > ULN 120):
    # G1 2.0-2.5, G2 >2.5-5.0, G3 >5.0-20.0, G4 >20.0 × baseline.
    assert grade_value("alp", D(value), pre_treatment=D(200))[:2] == (grade, D(200))


def test_reference_range_of_the_observation_wins_over_the_default():
    assert grade_value("alt", D(100), upper=D(50))[0] == 1
    assert grade_value("alt", D(100), upper=D(20))[0] == 2  # exactly 5 × ULN
    assert grade_value("alt", D(100), upper=D(19))[0] == 3


def test_worst_grade_after_treatment_only():
    values = [LabValue("platelets", date(2025, 1, 1), D(40)),  # before: not graded
              LabValue("platelets", date(2025, 2, 1), D(140)),
              LabValue("platelets", date(2025, 3, 1), D(70))]
    (grade,) = worst_grades(values, date(2025, 1, 15))
    assert (grade.grade, grade.when, grade.meddra_code) == (2, date(2025, 3, 1), "10035528")
    assert worst_grades(values[:1], date(2025, 1, 15)) == []


def test_biochemical_response_threshold_and_nadir():
    values = [MarkerValue("cga", date(2025, 1, 1), D(400), "ug/L"),
              MarkerValue("cga", date(2025, 4, 1), D(200), "ug/L"),
              MarkerValue("cga", date(2025, 7, 1), D(300), "ug/L"),
              MarkerValue("cga", date(2025, 10, 1), D(600), "ug/L")]
    out = biochemical_responses(values, date(2025, 1, 5))
    assert [r.category for r in out] == ["biochemical-response", "biochemical-stable", "biochemical-progression"]
    assert [r.percent_vs_baseline for r in out] == [D(-50), D(-25), D(50)]
    assert [r.percent_vs_nadir for r in out] == [D(-50), D(50), D(200)]
    strict = biochemical_responses(values, date(2025, 1, 5), D("50.1"))
    assert strict[0].category == "biochemical-stable"


def test_marker_baseline_is_the_last_value_before_imaging_baseline():
    values = [MarkerValue("hiaa", date(2024, 12, 1), D(100), "mg/(24.h)"),
              MarkerValue("hiaa", date(2025, 1, 1), D(80), "mg/(24.h)"),
              MarkerValue("hiaa", date(2025, 4, 1), D(40), "mg/(24.h)")]
    (only,) = biochemical_responses(values, date(2025, 1, 2))
    assert (only.baseline_value, only.percent_vs_baseline) == (D(80), D(-50))
