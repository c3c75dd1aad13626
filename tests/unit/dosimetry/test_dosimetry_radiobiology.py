"""BED and EQD2 of a Y-90 permanent implant (Dale 1985), checked against hand arithmetic and
against the properties the formula must have."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from services.dosimetry.domain.errors import DosimetryInputError
from services.dosimetry.domain.radiobiology import (
    NORMAL_LIVER,
    TUMOUR,
    TissueRadiobiology,
    bed_gy,
    bed_metrics,
    eqd2_gy,
)

# Hand arithmetic, T½(Y-90) = 64.1 h. With λ = ln 2/T½ and μ = ln 2/T_rep the ln 2 cancels:
#   λ/(μ+λ) = T_rep / (T_rep + T½)
# tumour, α/β 10 Gy, T_rep 1.5 h: λ/(μ+λ) = 1.5/65.6 = 0.0228658537
#   BED(100 Gy) = 100 + 100²/10 · 0.0228658537 = 122.865854 Gy; EQD2 = BED/1.2 = 102.388211 Gy
# normal liver, α/β 2.5 Gy, T_rep 2.5 h: λ/(μ+λ) = 2.5/66.6 = 0.0375375375
#   BED(100 Gy) = 100 + 100²/2.5 · 0.0375375375 = 250.150150 Gy; EQD2 = BED/1.8 = 138.972306 Gy
TUMOUR_BED_100 = 122.865854
TUMOUR_EQD2_100 = 102.388211
LIVER_BED_100 = 250.150150
LIVER_EQD2_100 = 138.972306


def test_uniform_100_gy_tumour_by_hand() -> None:
    dose = np.full((4, 4, 4), 100.0)
    bed = bed_gy(dose, TUMOUR)
    assert np.allclose(bed, TUMOUR_BED_100, rtol=1e-7)
    assert float(eqd2_gy(bed, 10.0)[0, 0, 0]) == pytest.approx(TUMOUR_EQD2_100, rel=1e-7)


def test_uniform_100_gy_normal_liver_by_hand() -> None:
    bed = bed_gy(np.full((3, 3, 3), 100.0), NORMAL_LIVER)
    assert np.allclose(bed, LIVER_BED_100, rtol=1e-7)
    assert float(eqd2_gy(bed, 2.5)[1, 1, 1]) == pytest.approx(LIVER_EQD2_100, rel=1e-7)


def test_voi_metrics_take_the_mean_of_the_voxel_bed_not_the_bed_of_the_mean() -> None:
    # half the VOI at 0 Gy, half at 200 Gy: mean dose 100 Gy
    dose = np.zeros((2, 2, 2))
    dose[0] = 200.0
    mask = np.ones(dose.shape, dtype=bool)
    m = bed_metrics(dose, mask, TUMOUR)
    bed_200 = 200 + 200**2 / 10 * (1.5 / 65.6)
    assert m["BEDmean"] == pytest.approx(bed_200 / 2, rel=1e-7)
    assert m["BEDmean"] > TUMOUR_BED_100  # convexity: mean BED above the BED of the mean dose
    assert m["EQD2mean"] == pytest.approx(m["BEDmean"] / 1.2, rel=1e-12)
    # hottest 70 % of 8 voxels = 6 voxels (nearest rank): the 6th hottest is a 0 Gy voxel
    assert m["BED70"] == 0.0


def test_bed70_is_the_minimum_bed_of_the_hottest_70_percent() -> None:
    dose = np.arange(1.0, 11.0).reshape(10, 1, 1) * 10  # 10, 20, ..., 100 Gy
    m = bed_metrics(dose, np.ones(dose.shape, dtype=bool), NORMAL_LIVER)
    # hottest 7 voxels are 40..100 Gy → BED70 = BED(40 Gy)
    assert m["BED70"] == pytest.approx(40 + 40**2 / 2.5 * (2.5 / 66.6), rel=1e-7)


def test_only_the_voi_voxels_count() -> None:
    dose = np.array([100.0, 1000.0]).reshape(2, 1, 1)
    mask = np.array([True, False]).reshape(2, 1, 1)
    assert bed_metrics(dose, mask, TUMOUR)["BEDmean"] == pytest.approx(TUMOUR_BED_100, rel=1e-7)


def test_fft_residues_below_zero_count_as_zero_but_a_real_negative_dose_is_refused() -> None:
    assert float(bed_gy(np.array([-1e-6]), TUMOUR)[0]) == 0.0
    with pytest.raises(DosimetryInputError) as err:
        bed_gy(np.array([-0.5]), TUMOUR)
    assert err.value.field == "dose_gy"
    with pytest.raises(DosimetryInputError):
        bed_gy(np.array([math.nan]), TUMOUR)


@pytest.mark.parametrize(("alpha_beta", "repair"), [(0.0, 1.5), (-1.0, 1.5), (10.0, 0.0), (10.0, math.inf)])
def test_impossible_tissue_parameters_are_refused(alpha_beta: float, repair: float) -> None:
    with pytest.raises(DosimetryInputError):
        TissueRadiobiology("x", alpha_beta, repair, "test")


def test_an_empty_voi_is_refused() -> None:
    with pytest.raises(DosimetryInputError):
        bed_metrics(np.ones((2, 2, 2)), np.zeros((2, 2, 2), dtype=bool), TUMOUR)


doses = hnp.arrays(np.float64, st.integers(1, 50),
                   elements=st.floats(0.0, 1000.0, allow_nan=False, allow_infinity=False))


@settings(max_examples=200, deadline=None)
@given(doses)
def test_bed_is_at_least_the_dose_and_grows_with_it(dose: np.ndarray) -> None:
    bed = bed_gy(dose, TUMOUR)
    assert np.all(bed >= dose)
    order = np.argsort(dose, kind="stable")
    assert np.all(np.diff(bed[order]) >= 0)


@settings(max_examples=200, deadline=None)
@given(st.floats(0.1, 1000.0), st.floats(0.5, 20.0))
def test_a_lower_alpha_beta_or_slower_repair_means_a_higher_bed(dose: float, alpha_beta: float) -> None:
    base = TissueRadiobiology("a", alpha_beta, 1.5, "test")
    lower = TissueRadiobiology("b", alpha_beta / 2, 1.5, "test")
    slower = TissueRadiobiology("c", alpha_beta, 3.0, "test")
    d = np.array([dose])
    assert bed_gy(d, lower)[0] > bed_gy(d, base)[0]
    assert bed_gy(d, slower)[0] > bed_gy(d, base)[0]


@settings(max_examples=100, deadline=None)
@given(st.floats(0.5, 20.0))
def test_eqd2_of_2_gy_fraction_bed_is_the_dose(alpha_beta: float) -> None:
    # one 2 Gy fraction has BED = 2 (1 + 2/(α/β)): its EQD2 is 2 Gy
    bed = 2.0 * (1 + 2.0 / alpha_beta)
    assert float(eqd2_gy(bed, alpha_beta)) == pytest.approx(2.0, rel=1e-12)
