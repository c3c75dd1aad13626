"""Activity planning against published formulas and hand-worked examples (EANM 2022; Ho 1996; SIR-Spheres instructions for use).

Expected numbers are worked by hand in the comments, not copied from the implementation.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.dosimetry.domain.bsa import (
    bsa_activity_gbq,
    dubois_bsa_m2,
    mosteller_bsa_m2,
    tumor_involvement,
)
from services.dosimetry.domain.constants import (
    DOSE_CONSTANTS,
    Y90_HALF_LIFE_EANM_2022_H,
    Y90_HALF_LIFE_H,
)
from services.dosimetry.domain.decay import activity_at_calibration_gbq, decay_factor, elapsed_h
from services.dosimetry.domain.errors import DosimetryInputError
from services.dosimetry.domain.lung import lung_dose_gy, lung_shunt_band
from services.dosimetry.domain.mird import (
    single_compartment_activity_gbq,
    single_compartment_dose_gy,
)
from services.dosimetry.domain.partition import Lesion, partition_doses, solve_partition_activity
from services.dosimetry.domain.planning import PlanInputs, plan_sirt
from services.dosimetry.domain.protocols import PROTOCOLS, protocol_warnings

C_EANM = 49.67


# -- constants -----------------------------------------------------------------------------------

def test_dose_constants_and_half_lives_are_the_named_versions() -> None:
    assert DOSE_CONSTANTS["eanm"].value_gy_kg_per_gbq == 49.67
    assert DOSE_CONSTANTS["therasphere"].value_gy_kg_per_gbq == 50.0
    assert DOSE_CONSTANTS["aapm"].value_gy_kg_per_gbq == 49.38
    assert Y90_HALF_LIFE_H == 64.1
    assert Y90_HALF_LIFE_EANM_2022_H == 64.2


# -- BSA -----------------------------------------------------------------------------------------

def test_mosteller_check_values() -> None:
    # √(180·80/3600) = √4 = 2.000 m²; √(170·70/3600) = √3.3056 = 1.818 m²
    assert mosteller_bsa_m2(180, 80) == pytest.approx(2.0, abs=1e-12)
    assert mosteller_bsa_m2(170, 70) == pytest.approx(1.818, abs=0.001)


def test_dubois_check_values() -> None:
    # DuBois BSA table values (0.01 m²): 170 cm / 70 kg → 1.81 m²; 180 cm / 80 kg → 2.00 m²;
    # 150 cm / 50 kg → 1.43 m²
    assert dubois_bsa_m2(170, 70) == pytest.approx(1.81, abs=0.005)
    assert dubois_bsa_m2(180, 80) == pytest.approx(2.00, abs=0.005)
    assert dubois_bsa_m2(150, 50) == pytest.approx(1.43, abs=0.005)


def test_bsa_method_whole_liver_and_lobar() -> None:
    # A = BSA − 0.2 + TI: 2.0 − 0.2 + 0.2 = 2.0 GBq; right lobe 60 % of the liver: 1.2 GBq
    assert bsa_activity_gbq(2.0, 0.2) == pytest.approx(2.0)
    assert bsa_activity_gbq(2.0, 0.2, 0.6) == pytest.approx(1.2)
    # 1.8 m², TI 25 %: 1.8 − 0.2 + 0.25 = 1.85 GBq
    assert bsa_activity_gbq(1.8, 0.25) == pytest.approx(1.85)


def test_tumor_involvement_and_bad_volumes() -> None:
    assert tumor_involvement(300, 1500) == pytest.approx(0.2)
    with pytest.raises(DosimetryInputError) as err:
        tumor_involvement(1600, 1500)
    assert err.value.field == "tumor_volume_ml"
    with pytest.raises(DosimetryInputError) as err:
        tumor_involvement(10, 0)
    assert err.value.field == "liver_volume_ml"
    with pytest.raises(DosimetryInputError):
        mosteller_bsa_m2(-170, 70)


# -- lung shunt bands: both sides of every edge ---------------------------------------------------

@pytest.mark.parametrize(("lsf", "reduction", "contraindicated"), [
    (0.0, 0.0, False),
    (0.0999, 0.0, False),
    (0.10, 0.20, False),
    (0.1499, 0.20, False),
    (0.15, 0.40, False),
    (0.20, 0.40, False),
    (0.2001, 0.0, True),
    (0.5, 0.0, True),
])
def test_lung_shunt_bands(lsf: float, reduction: float, contraindicated: bool) -> None:
    band = lung_shunt_band(lsf)
    assert band.reduction == reduction
    assert band.contraindicated is contraindicated


@pytest.mark.parametrize("lsf", [-0.01, 1.01, math.nan])
def test_lung_shunt_outside_0_1_is_refused(lsf: float) -> None:
    with pytest.raises(DosimetryInputError) as err:
        lung_shunt_band(lsf)
    assert err.value.field == "lung_shunt_fraction"


def test_lung_dose() -> None:
    # 49.67 · 2 GBq · 0.1 / 1 kg = 9.934 Gy
    assert lung_dose_gy(2.0, 0.1, C_EANM) == pytest.approx(9.934)
    assert lung_dose_gy(2.0, 0.1, C_EANM, lung_mass_kg=0.5) == pytest.approx(19.868)


# -- MIRD single compartment ---------------------------------------------------------------------

def test_therasphere_style_example() -> None:
    # 3 GBq, 1.5 kg, LSF 10 %, C = 50 → 50·3·0.9/1.5 = 90 Gy
    assert single_compartment_dose_gy(3.0, 1.5, 0.10, 0.0, 50.0) == pytest.approx(90.0)
    assert single_compartment_activity_gbq(90.0, 1.5, 0.10, 0.0, 50.0) == pytest.approx(3.0)


def test_vial_residual_reduces_dose() -> None:
    # 5 % residual: 90 · 0.95 = 85.5 Gy; the activity for 90 Gy is 3/0.95 = 3.158 GBq
    assert single_compartment_dose_gy(3.0, 1.5, 0.10, 0.05, 50.0) == pytest.approx(85.5)
    assert single_compartment_activity_gbq(90.0, 1.5, 0.10, 0.05, 50.0) == pytest.approx(3.0 / 0.95)


@settings(max_examples=50, deadline=None)
@given(a=st.floats(0.1, 10), m=st.floats(0.2, 3), lsf=st.floats(0, 0.5), r=st.floats(0, 0.2))
def test_mird_activity_and_dose_are_inverse(a: float, m: float, lsf: float, r: float) -> None:
    dose = single_compartment_dose_gy(a, m, lsf, r, C_EANM)
    assert single_compartment_activity_gbq(dose, m, lsf, r, C_EANM) == pytest.approx(a, rel=1e-9)


# -- partition model -----------------------------------------------------------------------------
# Worked example: liver 1500 mL (tumour included), tumour 300 mL, T/N 4, LSF 5 %, ρ 1.03 g/mL.
# M_T = 0.309 kg, M_N = 1.236 kg, T/N·M_T + M_N = 2.472 kg.
# Tumour target 120 Gy → D_N = 30 Gy → A = 30·2.472/(49.67·0.95) = 74.16/47.1865 = 1.57163 GBq;
# lung dose 49.67·1.57163·0.05 = 3.9031 Gy.

M_T, M_N = 0.309, 1.236


def test_partition_worked_example_tumor_target() -> None:
    sol = solve_partition_activity(lesions=[Lesion(M_T, 4.0)], normal_mass_kg=M_N, lung_shunt_fraction=0.05,
                                   dose_constant_gy_kg_per_gbq=C_EANM, tumor_target_gy=120.0,
                                   normal_liver_limit_gy=40.0, lung_limit_gy=30.0)
    assert sol.limiting_factor == "tumor-target"
    assert sol.doses.activity_gbq == pytest.approx(1.57163, abs=1e-5)
    assert sol.doses.normal_liver_gy == pytest.approx(30.0)
    assert sol.doses.tumor_mean_gy == pytest.approx(120.0)
    assert sol.doses.lung_gy == pytest.approx(3.9031, abs=1e-4)


def test_partition_normal_liver_limit_binds() -> None:
    # target 200 Gy would give D_N = 50 > 40: A = 40·2.472/47.1865 = 2.09551 GBq, D_T = 160 Gy
    sol = solve_partition_activity(lesions=[Lesion(M_T, 4.0)], normal_mass_kg=M_N, lung_shunt_fraction=0.05,
                                   dose_constant_gy_kg_per_gbq=C_EANM, tumor_target_gy=200.0,
                                   normal_liver_limit_gy=40.0, lung_limit_gy=30.0)
    assert sol.limiting_factor == "normal-liver-limit"
    assert sol.doses.activity_gbq == pytest.approx(2.09551, abs=1e-5)
    assert sol.doses.tumor_mean_gy == pytest.approx(160.0)


def test_partition_lung_limit_binds() -> None:
    # liver 2000 mL, tumour 500 mL, T/N 2, LSF 18 %: M_T 0.515, M_N 1.545, denominator 2.575 kg.
    # target 150 Gy → 4.7416 GBq → lung 42.4 Gy > 30; lung limit: A = 30/(49.67·0.18) = 3.35548 GBq
    sol = solve_partition_activity(lesions=[Lesion(0.515, 2.0)], normal_mass_kg=1.545, lung_shunt_fraction=0.18,
                                   dose_constant_gy_kg_per_gbq=C_EANM, tumor_target_gy=150.0,
                                   lung_limit_gy=30.0)
    assert sol.candidates_gbq["tumor-target"] == pytest.approx(4.74163, abs=1e-4)
    assert sol.limiting_factor == "lung-limit"
    assert sol.doses.activity_gbq == pytest.approx(3.35548, abs=1e-5)
    assert sol.doses.lung_gy == pytest.approx(30.0)


def test_multi_lesion_partition() -> None:
    # two lesions 0.1 kg T/N 5 and 0.2 kg T/N 2, normal 1.0 kg: denominator 0.5 + 0.4 + 1.0 = 1.9 kg
    # A = 1 GBq, LSF 0: D_N = 49.67/1.9 = 26.142 Gy; D_1 = 130.71 Gy; D_2 = 52.284 Gy
    doses = partition_doses(1.0, [Lesion(0.1, 5.0), Lesion(0.2, 2.0)], 1.0, 0.0, C_EANM)
    assert doses.normal_liver_gy == pytest.approx(26.142, abs=1e-3)
    assert doses.tumor_gy == pytest.approx((130.71, 52.284), abs=1e-2)
    # a tumour target applies to the least-dosed lesion: 100 Gy for lesion 2 → A = 100/52.284
    sol = solve_partition_activity(lesions=[Lesion(0.1, 5.0), Lesion(0.2, 2.0)], normal_mass_kg=1.0,
                                   lung_shunt_fraction=0.0, dose_constant_gy_kg_per_gbq=C_EANM,
                                   tumor_target_gy=100.0)
    assert min(sol.doses.tumor_gy) == pytest.approx(100.0)


@settings(max_examples=50, deadline=None)
@given(a=st.floats(0.1, 10), tn=st.floats(0.5, 20), mt=st.floats(0.01, 1), mn=st.floats(0.2, 2),
       lsf=st.floats(0, 0.3))
def test_partition_conserves_liver_energy(a: float, tn: float, mt: float, mn: float, lsf: float) -> None:
    # D_T·M_T + D_N·M_N = C·A·(1 − LSF): all activity not shunted is absorbed in the liver
    d = partition_doses(a, [Lesion(mt, tn)], mn, lsf, C_EANM)
    assert d.tumor_mean_gy * mt + d.normal_liver_gy * mn == pytest.approx(C_EANM * a * (1 - lsf), rel=1e-9)
    assert d.tumor_mean_gy == pytest.approx(tn * d.normal_liver_gy)


# -- decay ---------------------------------------------------------------------------------------

def test_decay_one_half_life() -> None:
    assert decay_factor(64.1) == pytest.approx(0.5)
    assert decay_factor(64.2, Y90_HALF_LIFE_EANM_2022_H) == pytest.approx(0.5)
    assert activity_at_calibration_gbq(1.0, 64.1) == pytest.approx(2.0)
    # 24 h: 2^(−24/64.1) = e^(−0.693147·0.374415) = e^(−0.259525) = 0.771418
    assert decay_factor(24.0) == pytest.approx(0.771418, abs=1e-6)


def test_elapsed_time_is_signed() -> None:
    t0 = datetime(2026, 11, 20, 12, tzinfo=UTC)
    assert elapsed_h(t0, t0 + timedelta(hours=6)) == pytest.approx(6.0)
    assert elapsed_h(t0, t0) == 0.0
    # resin vials are routinely implanted before their calibration time (calibrated for the evening of
    # the treatment day): t < 0 is a valid decay interval, not an error
    assert elapsed_h(t0, t0 - timedelta(hours=9)) == pytest.approx(-9.0)
    with pytest.raises(DosimetryInputError) as err:
        elapsed_h(t0.replace(tzinfo=None), t0)
    assert err.value.field == "treatment_time"


def test_treatment_before_calibration_orders_less_than_is_implanted() -> None:
    # calibration 18:00, implant 09:00 the same day: t = −9 h; the vial holds more at implant than at
    # calibration, so A_cal = A·2^(−9/64.1) = 1.8·0.907264 = 1.63308 GBq (BSA 1.8 m², TI 20 % → 1.8 GBq)
    t_cal = datetime(2026, 11, 20, 18, tzinfo=UTC)
    plan = plan_sirt(PlanInputs(method="bsa", device="resin", bsa_m2=1.8, tumor_involvement=0.2,
                                lung_shunt_fraction=0.05, calibration_time=t_cal,
                                treatment_time=t_cal - timedelta(hours=9)))
    assert plan.activity_gbq == pytest.approx(1.8)
    assert plan.activity_at_calibration_gbq == pytest.approx(1.63308, abs=1e-5)
    assert plan.elapsed_h == pytest.approx(-9.0)
    assert any(w.rule_id == "treatment-before-calibration" and w.severity == "info" for w in plan.warnings)
    assert plan.status == "ok"
    # and after calibration no such note
    after = plan_sirt(PlanInputs(method="bsa", device="resin", bsa_m2=1.8, tumor_involvement=0.2,
                                 lung_shunt_fraction=0.05, calibration_time=t_cal,
                                 treatment_time=t_cal + timedelta(hours=9)))
    assert after.activity_at_calibration_gbq == pytest.approx(1.8 / 0.907264, abs=1e-5)
    assert not any(w.rule_id == "treatment-before-calibration" for w in after.warnings)


@pytest.mark.parametrize(("name", "field", "low_ok", "low_bad", "high_ok", "high_bad"), [
    # every published C is 49.38-50 Gy·kg/GBq; 49 670 (mGy) or 0.04967 (kGy) is a unit slip
    ("dose_constant", "dose_constant", 40.0, 39.9, 60.0, 60.1),
    # Y-90 half-life: evaluated 64.1 h, EANM 2022 64.2 h; 2.67 (days) or 230 760 (s) is a unit slip
    ("half_life_h", "half_life_h", 60.0, 59.9, 70.0, 70.1),
    # tissue density in g/mL; 1030 (kg/m³) is a unit slip
    ("tissue_density_g_per_ml", "tissue_density_g_per_ml", 0.5, 0.49, 2.0, 2.01),
    # lung mass in kg; 1000 (g) is a unit slip
    ("lung_mass_kg", "lung_mass_kg", 0.1, 0.099, 5.0, 5.01),
    # whole-liver volume in mL; 1.5 (L) is a unit slip
    ("liver_volume_ml", "liver_volume_ml", 100.0, 99.9, 20000.0, 20001.0),
    # dose target in Gy; 12 000 (cGy) is a unit slip
    ("target_dose_gy", "target_dose_gy", 1e-3, 0.0, 2000.0, 2000.1),
])
def test_physical_constants_outside_their_plausible_range_are_refused(
        name: str, field: str, low_ok: float, low_bad: float, high_ok: float, high_bad: float) -> None:
    base: dict[str, object] = {"method": "mird", "device": "glass", "target_dose_gy": 120, "liver_volume_ml": 1500,
                               "lung_shunt_fraction": 0.05}
    for ok in (low_ok, high_ok):
        plan_sirt(PlanInputs(**{**base, field: ok}))  # type: ignore[arg-type]
    for bad in (low_bad, high_bad):
        with pytest.raises(DosimetryInputError) as err:
            plan_sirt(PlanInputs(**{**base, field: bad}))  # type: ignore[arg-type]
        assert err.value.field == name


@pytest.mark.parametrize(("height_cm", "weight_kg", "named"), [
    (1.8, 80, "height_cm"),      # metres: BSA √(1.8·80/3600) = 0.2 m² would give A = TI GBq, silently
    (49.9, 80, "height_cm"), (250.1, 80, "height_cm"),
    (180, 80000, "weight_kg"),   # grams
    (180, 9.9, "weight_kg"), (180, 350.1, "weight_kg"),
])
def test_height_and_weight_outside_their_plausible_range_are_refused(height_cm: float, weight_kg: float,
                                                                     named: str) -> None:
    with pytest.raises(DosimetryInputError) as err:
        plan_sirt(_bsa(height_cm=height_cm, weight_kg=weight_kg))
    assert err.value.field == named


def test_height_and_weight_at_their_plausible_bounds_are_planned() -> None:
    # √(50·10/3600) = 0.3727 m² → A = 0.3727 − 0.2 + 0.2 = 0.3727 GBq; √(250·350/3600) = 4.930 m²
    assert plan_sirt(_bsa(height_cm=50, weight_kg=10)).activity_gbq == pytest.approx(0.37268, abs=1e-5)
    assert plan_sirt(_bsa(height_cm=250, weight_kg=350)).bsa_m2 == pytest.approx(4.93007, abs=1e-5)


def test_bsa_and_normal_liver_limit_ranges() -> None:
    # both sides of the BSA and normal-liver-limit ranges (0.2-5 m², ≤ 2000 Gy)
    plan_sirt(PlanInputs(method="bsa", bsa_m2=5.0, tumor_involvement=0.2, lung_shunt_fraction=0.05))
    for bsa in (5.01, 40000.0):
        with pytest.raises(DosimetryInputError) as err:
            plan_sirt(PlanInputs(method="bsa", bsa_m2=bsa, tumor_involvement=0.2, lung_shunt_fraction=0.05))
        assert err.value.field == "bsa_m2"
    part = {"method": "partition", "device": "resin", "liver_volume_ml": 1500, "tumor_volume_ml": 300,
            "tumor_to_normal_ratio": 4, "lung_shunt_fraction": 0.05}
    assert plan_sirt(PlanInputs(**part, normal_liver_limit_gy=2000)).limiting_factor == "lung-limit"  # type: ignore[arg-type]
    with pytest.raises(DosimetryInputError) as err:
        plan_sirt(PlanInputs(**part, normal_liver_limit_gy=4000))  # type: ignore[arg-type]
    assert err.value.field == "normal_liver_limit_gy"


@pytest.mark.parametrize(("inputs", "parameter"), [
    # T/N 1e-308 makes the tumour-target activity infinite: a 422, never "Infinity" in the answer
    ({"method": "partition", "device": "resin", "liver_volume_ml": 1500, "tumor_volume_ml": 300,
      "tumor_to_normal_ratio": 1e-308, "lung_shunt_fraction": 0.0, "target_dose_gy": 120}, "target_dose_gy"),
])
def test_results_that_overflow_are_refused(inputs: dict[str, object], parameter: str) -> None:
    with pytest.raises(DosimetryInputError) as err:
        plan_sirt(PlanInputs(**inputs))  # type: ignore[arg-type]
    assert err.value.field == parameter


def test_decay_over_many_half_lives_is_refused_not_divided_by_zero() -> None:
    # 10 years after calibration the decay factor underflows to 0: a 422 naming treatmentTime
    t0 = datetime(2016, 11, 20, 12, tzinfo=UTC)
    with pytest.raises(DosimetryInputError) as err:
        plan_sirt(PlanInputs(method="bsa", bsa_m2=1.8, tumor_involvement=0.2, lung_shunt_fraction=0.05,
                             calibration_time=t0, treatment_time=t0 + timedelta(days=3650)))
    assert err.value.field == "treatment_time"


# -- protocols -----------------------------------------------------------------------------------

def test_protocol_warnings_at_their_bounds() -> None:
    resin = PROTOCOLS["eanm-2022-resin"]
    assert protocol_warnings(resin, tumor_gy=100.0, normal_liver_gy=40.0) == []
    below = protocol_warnings(resin, tumor_gy=99.9, normal_liver_gy=40.1)
    assert {w.rule_id for w in below} == {"eanm-2022-resin/tumor-min", "eanm-2022-resin/normal-liver-max"}
    compromised = protocol_warnings(resin, normal_liver_gy=30.1, compromised_liver=True)
    assert [w.rule_id for w in compromised] == ["eanm-2022-resin/normal-liver-max-compromised"]
    assert protocol_warnings(resin, normal_liver_gy=30.0, compromised_liver=True) == []
    net = PROTOCOLS["net-100-150"]
    assert [w.rule_id for w in protocol_warnings(net, tumor_gy=150.1)] == ["net-100-150/tumor-max"]
    assert protocol_warnings(net, tumor_gy=150.0) == []
    glass = PROTOCOLS["eanm-2022-glass"]
    assert [w.rule_id for w in protocol_warnings(glass, tumor_gy=204.0)] == ["eanm-2022-glass/tumor-min"]


# -- the planning entry point ---------------------------------------------------------------------

def _bsa(**kw: object) -> PlanInputs:
    """A resin BSA plan with Mosteller's BSA, which is exactly 2.0 m² at 180 cm and 80 kg, so the
    expected activities below are round numbers (the default formula is DuBois)."""
    base: dict[str, object] = {"method": "bsa", "device": "resin", "height_cm": 180, "weight_kg": 80,
                               "tumor_volume_ml": 300, "liver_volume_ml": 1500, "lung_shunt_fraction": 0.05,
                               "bsa_formula": "mosteller"}
    base.update(kw)
    return PlanInputs(**base)  # type: ignore[arg-type]


def test_the_resin_bsa_method_uses_dubois_by_default_and_shows_mosteller_as_a_note() -> None:
    # DuBois 0.007184·80^0.425·170^0.725 vs Mosteller √(170·80/3600); TI = 300/1500 = 0.2
    default = plan_sirt(PlanInputs(method="bsa", device="resin", height_cm=170, weight_kg=80,
                                   tumor_volume_ml=300, liver_volume_ml=1500, lung_shunt_fraction=0.05))
    dubois, mosteller = dubois_bsa_m2(170, 80), mosteller_bsa_m2(170, 80)
    assert abs(dubois - mosteller) > 0.01  # the two formulas differ for this patient
    assert default.bsa_m2 == pytest.approx(dubois, rel=1e-12)
    assert default.activity_gbq == pytest.approx(dubois - 0.2 + 0.2, rel=1e-12)
    note = next(w for w in default.warnings if w.rule_id == "bsa-formula-versions")
    assert note.severity == "version" and "DuBois" in note.text and f"{mosteller:.3f} m²" in note.text
    chosen = plan_sirt(PlanInputs(method="bsa", device="resin", height_cm=170, weight_kg=80,
                                  tumor_volume_ml=300, liver_volume_ml=1500, lung_shunt_fraction=0.05,
                                  bsa_formula="mosteller"))
    assert chosen.bsa_m2 == pytest.approx(mosteller, rel=1e-12)
    other = next(w for w in chosen.warnings if w.rule_id == "bsa-formula-versions")
    assert f"DuBois gives {dubois:.3f} m²" in other.text
    # a BSA given directly has no formula, so no note
    given = plan_sirt(PlanInputs(method="bsa", device="resin", bsa_m2=1.9, tumor_involvement=0.2,
                                 lung_shunt_fraction=0.05))
    assert not any(w.rule_id == "bsa-formula-versions" for w in given.warnings)


def test_plan_bsa_no_reduction_below_10_percent() -> None:
    plan = plan_sirt(_bsa())
    assert plan.activity_gbq == pytest.approx(2.0)
    assert plan.lsf_reduction == 0.0
    assert plan.limiting_factor == "bsa"
    assert plan.lung_dose_gy == pytest.approx(49.67 * 2.0 * 0.05)
    assert plan.status == "ok"


@pytest.mark.parametrize(("lsf", "activity", "status"), [
    (0.0999, 2.0, "ok"), (0.10, 1.6, "caution"), (0.1499, 1.6, "caution"), (0.15, 1.2, "caution"),
    (0.20, 1.2, "caution"), (0.2001, 2.0, "contraindicated"),
])
def test_plan_bsa_band_edges(lsf: float, activity: float, status: str) -> None:
    plan = plan_sirt(_bsa(lung_shunt_fraction=lsf))
    assert plan.activity_gbq == pytest.approx(activity)
    assert plan.status == status


def test_plan_contraindicated_by_lung_dose_is_not_capped() -> None:
    # 2.0 GBq · 0.6 (LSF 18 % band) = 1.2 GBq; lung 49.67·1.2·0.18/0.35 = 30.65 Gy > 30
    plan = plan_sirt(_bsa(lung_shunt_fraction=0.18, lung_mass_kg=0.35))
    assert plan.activity_gbq == pytest.approx(1.2)
    assert plan.lung_dose_gy == pytest.approx(30.654, abs=1e-3)
    assert plan.status == "contraindicated"
    # lung mass 0.36 kg: 29.80 Gy, under the limit
    assert plan_sirt(_bsa(lung_shunt_fraction=0.18, lung_mass_kg=0.36)).status == "caution"


def test_plan_cumulative_lung_limit() -> None:
    # lung 49.67·2.0·0.05 = 4.967 Gy; prior 45 → 49.967 ≤ 50 ok; prior 45.1 → 50.067 > 50
    assert plan_sirt(_bsa(prior_lung_dose_gy=45.0)).status == "ok"
    plan = plan_sirt(_bsa(prior_lung_dose_gy=45.1))
    assert plan.status == "contraindicated"
    assert any(w.rule_id == "lung-dose-cumulative" for w in plan.warnings)


def test_plan_mird_therasphere_example_with_decay() -> None:
    t0 = datetime(2026, 11, 20, 12, tzinfo=UTC)
    plan = plan_sirt(PlanInputs(method="mird", device="glass", target_dose_gy=90, liver_volume_ml=1500,
                                tissue_density_g_per_ml=1.0, lung_shunt_fraction=0.10, dose_constant=50.0,
                                calibration_time=t0, treatment_time=t0 + timedelta(hours=64.1)))
    assert plan.activity_gbq == pytest.approx(3.0)
    assert plan.activity_at_calibration_gbq == pytest.approx(6.0)
    assert plan.perfused_liver_dose_gy == pytest.approx(90.0)
    assert plan.lung_dose_gy == pytest.approx(15.0)  # 50·3·0.1/1
    assert plan.limiting_factor == "mird"


def test_plan_partition_reports_all_doses_and_the_binding_limit() -> None:
    plan = plan_sirt(PlanInputs(method="partition", device="resin", liver_volume_ml=1500, tumor_volume_ml=300,
                                tumor_to_normal_ratio=4, lung_shunt_fraction=0.05, target_dose_gy=200,
                                normal_liver_limit_gy=40))
    assert plan.limiting_factor == "normal-liver-limit"
    assert plan.activity_gbq == pytest.approx(2.09551, abs=1e-5)
    assert plan.tumor_dose_gy == pytest.approx(160.0)
    assert plan.normal_liver_dose_gy == pytest.approx(40.0)
    assert plan.lung_dose_gy == pytest.approx(49.67 * 2.09551 * 0.05, abs=1e-4)
    assert plan.status == "caution"
    assert any(w.rule_id == "partition/normal-liver-limit" for w in plan.warnings)


def test_plan_partition_lung_limit_uses_remaining_cumulative_budget() -> None:
    # prior 35 Gy: 15 Gy left; LSF 18 % → A = 15/(49.67·0.18) = 1.67774 GBq
    plan = plan_sirt(PlanInputs(method="partition", device="resin", liver_volume_ml=2000, tumor_volume_ml=500,
                                tumor_to_normal_ratio=2, lung_shunt_fraction=0.18, target_dose_gy=150,
                                prior_lung_dose_gy=35))
    assert plan.limiting_factor == "lung-limit"
    assert plan.activity_gbq == pytest.approx(1.67774, abs=1e-5)
    assert plan.cumulative_lung_dose_gy == pytest.approx(50.0)
    assert plan.status == "caution"


@pytest.mark.parametrize(("inputs", "parameter"), [
    ({"method": "bogus"}, "method"),
    ({"method": "bsa", "device": "glass", "bsa_m2": 2, "tumor_involvement": 0.1, "lung_shunt_fraction": 0.1}, "device"),
    ({"method": "mird", "lung_shunt_fraction": 0.1, "target_dose_gy": 120, "liver_volume_ml": 1500}, "device"),
    ({"method": "bsa", "tumor_involvement": 0.1, "lung_shunt_fraction": 0.1}, "height_cm"),
    ({"method": "bsa", "bsa_m2": 2, "lung_shunt_fraction": 0.1}, "tumor_involvement"),
    ({"method": "bsa", "bsa_m2": 2, "tumor_involvement": 1.2, "lung_shunt_fraction": 0.1}, "tumor_involvement"),
    ({"method": "bsa", "bsa_m2": 2, "tumor_involvement": 0.1}, "lung_shunt_fraction"),
    ({"method": "mird", "device": "glass", "lung_shunt_fraction": 0.1, "liver_volume_ml": 1500}, "target_dose_gy"),
    ({"method": "mird", "device": "glass", "lung_shunt_fraction": 0.1, "target_dose_gy": 120}, "liver_volume_ml"),
    ({"method": "mird", "device": "glass", "lung_shunt_fraction": 0.1, "target_dose_gy": 120,
      "liver_volume_ml": -5}, "liver_volume_ml"),
    ({"method": "mird", "device": "glass", "lung_shunt_fraction": 0.1, "target_dose_gy": 120,
      "liver_volume_ml": 1500, "perfused_fraction": 0}, "perfused_fraction"),
    ({"method": "partition", "device": "resin", "lung_shunt_fraction": 0.1, "target_dose_gy": 120,
      "liver_volume_ml": 1500, "tumor_volume_ml": 300}, "tumor_to_normal_ratio"),
    ({"method": "partition", "device": "resin", "lung_shunt_fraction": 0.1, "liver_volume_ml": 1500,
      "tumor_volume_ml": 300, "tumor_to_normal_ratio": 3}, "target_dose_gy"),
    ({"method": "partition", "device": "resin", "lung_shunt_fraction": 0.1, "target_dose_gy": 120,
      "liver_volume_ml": 1500, "tumor_volume_ml": 1600, "tumor_to_normal_ratio": 3}, "tumor_volume_ml"),
    ({"method": "partition", "device": "resin", "lung_shunt_fraction": 0.1, "target_dose_gy": 120,
      "liver_volume_ml": 1500, "tumor_volume_ml": 0, "tumor_to_normal_ratio": 3}, "tumor_volume_ml"),
    ({"method": "partition", "device": "resin", "lung_shunt_fraction": 0.1, "target_dose_gy": 120,
      "liver_volume_ml": 1500, "tumor_volume_ml": 800, "perfused_fraction": 0.5,
      "tumor_to_normal_ratio": 3}, "tumor_volume_ml"),
    ({"method": "bsa", "bsa_m2": 2, "tumor_involvement": 0.1, "lung_shunt_fraction": 0.1,
      "lung_mass_kg": 0}, "lung_mass_kg"),
    ({"method": "bsa", "bsa_m2": 2, "tumor_involvement": 0.1, "lung_shunt_fraction": 0.1,
      "protocol": "nope"}, "protocol"),
])
def test_plan_bad_inputs_name_the_parameter(inputs: dict[str, object], parameter: str) -> None:
    with pytest.raises(DosimetryInputError) as err:
        plan_sirt(PlanInputs(**inputs))  # type: ignore[arg-type]
    assert err.value.field == parameter


def test_bsa_lobar_plan_with_tumour_outside_the_lobe_skips_the_compartment_prediction() -> None:
    # 800 mL of tumour cannot all sit in 40 % of a 1500 mL liver: no tumour dose, no error
    plan = plan_sirt(_bsa(tumor_volume_ml=800, perfused_fraction=0.4, tumor_to_normal_ratio=3))
    assert plan.tumor_dose_gy is None
    assert any(w.rule_id == "no-partition-prediction" for w in plan.warnings)
    # (2.0 − 0.2 + 800/1500)·0.4 = 0.93333 GBq
    assert plan.activity_gbq == pytest.approx(0.93333, abs=1e-5)
    assert plan.status == "ok"


def test_bsa_plan_predicts_compartment_doses_when_it_can() -> None:
    # 2.0 GBq, LSF 5 %: D_N = 49.67·2·0.95/(4·0.309 + 1.236) = 94.373/2.472 = 38.177 Gy, D_T = 152.71 Gy
    plan = plan_sirt(_bsa(tumor_to_normal_ratio=4))
    assert plan.normal_liver_dose_gy == pytest.approx(38.177, abs=1e-3)
    assert plan.tumor_dose_gy == pytest.approx(152.71, abs=1e-2)


def test_other_dose_constants_and_half_life_are_shown_as_version_notes() -> None:
    t0 = datetime(2026, 11, 20, 12, tzinfo=UTC)
    plan = plan_sirt(PlanInputs(method="mird", device="glass", target_dose_gy=90, liver_volume_ml=1500,
                                tissue_density_g_per_ml=1.0, lung_shunt_fraction=0.10, dose_constant=50.0,
                                calibration_time=t0, treatment_time=t0 + timedelta(hours=64.2)))
    notes = {w.rule_id: w.text for w in plan.warnings if w.severity == "version"}
    # 3 GBq at C = 50; at C = 49.67: 3·50/49.67 = 3.0199 GBq; at 49.38: 3.0377 GBq
    assert "3.0199 GBq" in notes["dose-constant-versions"]
    assert "3.0377 GBq" in notes["dose-constant-versions"]
    # 64.2 h after calibration: 6.0 GBq with T½ 64.2 h (EANM 2022); with 64.1 h: 3·2^(64.2/64.1) = 6.0065
    assert plan.activity_at_calibration_gbq == pytest.approx(3.0 * 2 ** (64.2 / 64.1))
    plan_eanm = plan_sirt(PlanInputs(method="mird", device="glass", target_dose_gy=90, liver_volume_ml=1500,
                                     tissue_density_g_per_ml=1.0, lung_shunt_fraction=0.10, dose_constant=50.0,
                                     calibration_time=t0, treatment_time=t0 + timedelta(hours=64.2),
                                     half_life_h=64.2))
    assert plan_eanm.activity_at_calibration_gbq == pytest.approx(6.0)
    assert "6.0065 GBq" in {w.rule_id: w.text for w in plan_eanm.warnings}["half-life-versions"]
    assert plan.status == "ok"


@pytest.mark.parametrize(("ti", "warns"), [(0.25, False), (0.15, False), (0.2501, True), (0.1499, True)])
def test_tumor_involvement_that_contradicts_the_volumes_warns(ti: float, warns: bool) -> None:
    # volumes give TI = 300/1500 = 0.20; the given tumorInvolvement is used, and a difference of
    # more than 5 percentage points is a caution (one of the two inputs is wrong)
    plan = plan_sirt(_bsa(tumor_involvement=ti))
    assert plan.tumor_involvement == ti
    assert plan.activity_gbq == pytest.approx(2.0 - 0.2 + ti)
    assert any(w.rule_id == "tumor-involvement-mismatch" for w in plan.warnings) is warns
    assert plan.status == ("caution" if warns else "ok")


@pytest.mark.parametrize("device", ["resin", "glass"])
def test_lung_shunt_above_20_percent_names_the_source_per_device(device: str) -> None:
    # Cazzato 2021 Table 1 / SIR-Spheres label: LSF > 20 % contraindicated (resin); the glass label limits
    # the lung dose only, and the 20 % rule is the resin label's: a glass plan says so
    plan = plan_sirt(PlanInputs(method="mird", device=device, target_dose_gy=120, liver_volume_ml=1500,
                                lung_shunt_fraction=0.21, lung_mass_kg=5.0))
    assert plan.status == "contraindicated"
    text = next(w.text for w in plan.warnings if w.rule_id == "lung-shunt-above-20")
    assert ("resin rule applied to glass" in text) is (device == "glass")


def test_vial_residual_in_each_method() -> None:
    # BSA: the empirical activity is the one to administer; a 10 % residual lowers what is delivered:
    # lung 49.67·(2.0·0.9)·0.05 = 4.4703 Gy (4.967 Gy without residual)
    bsa = plan_sirt(_bsa(vial_residual_fraction=0.10))
    assert bsa.activity_gbq == pytest.approx(2.0)
    assert bsa.lung_dose_gy == pytest.approx(4.4703, abs=1e-4)
    # MIRD: the activity is raised so that the delivered activity meets the target:
    # 90 Gy, 1.5 kg, LSF 10 %, C 50, R 10 % → 3/0.9 = 3.3333 GBq, perfused dose still 90 Gy
    mird = plan_sirt(PlanInputs(method="mird", device="glass", target_dose_gy=90, liver_volume_ml=1500,
                                tissue_density_g_per_ml=1.0, lung_shunt_fraction=0.10, dose_constant=50.0,
                                vial_residual_fraction=0.10))
    assert mird.activity_gbq == pytest.approx(3.33333, abs=1e-5)
    assert mird.perfused_liver_dose_gy == pytest.approx(90.0)
    assert mird.lung_dose_gy == pytest.approx(15.0)
    # partition: likewise, 1.57163/0.9 = 1.74626 GBq for the 120 Gy tumour target
    part = plan_sirt(PlanInputs(method="partition", device="resin", liver_volume_ml=1500, tumor_volume_ml=300,
                                tumor_to_normal_ratio=4, lung_shunt_fraction=0.05, target_dose_gy=120,
                                vial_residual_fraction=0.10))
    assert part.activity_gbq == pytest.approx(1.74626, abs=1e-5)
    assert part.tumor_dose_gy == pytest.approx(120.0)
