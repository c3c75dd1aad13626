"""DVH metrics: nearest-rank Dx (minimum dose of the hottest x %) and inclusive Vy, checked by hand
and against their definitions with hypothesis."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from services.dosimetry.domain.dvh import cumulative_dvh, dvh_by_label, dvh_metrics
from services.dosimetry.domain.errors import DosimetryInputError


def test_hundred_voxels_by_hand() -> None:
    dose = np.arange(1.0, 101.0).reshape(4, 5, 5)  # 1, 2, ..., 100 Gy
    m = dvh_metrics(dose, np.ones(dose.shape, dtype=bool))
    assert m["Dmean"] == pytest.approx(50.5)
    # hottest 50 voxels are 51..100 → D50 = 51; hottest 70: 31..100 → 31; hottest 90: 11..100 → 11
    assert (m["D50"], m["D70"], m["D90"]) == (51.0, 31.0, 11.0)
    assert m["V100"] == 1.0  # only the 100 Gy voxel (inclusive)
    assert m["V120"] == 0.0
    assert (m["Dmin"], m["Dmax"]) == (1.0, 100.0)


def test_nearest_rank_rounds_the_hottest_volume_up() -> None:
    dose = np.array([10.0, 20, 30, 40, 50, 60, 70]).reshape(7, 1, 1)
    m = dvh_metrics(dose, np.ones(dose.shape, bool), d_percents=(10, 50, 95, 100, 0), v_gy=(40, 40.5, 0))
    # 10 % of 7 = 0.7 → 1 voxel: 70; 50 % = 3.5 → 4 voxels: 40; 95 % → 7: 10; D100 = min; D0 = max
    assert (m["D10"], m["D50"], m["D95"], m["D100"], m["D0"]) == (70.0, 40.0, 10.0, 10.0, 70.0)
    assert m["V40"] == pytest.approx(400 / 7)
    assert m["V40.5"] == pytest.approx(300 / 7)
    assert m["V0"] == 100.0


def test_mask_selects_the_voi() -> None:
    dose = np.zeros((4, 4, 4))
    dose[0] = 200.0
    mask = np.zeros(dose.shape, bool)
    mask[0] = True
    mask[1, 0, 0] = True  # one cold voxel in a 17-voxel VOI
    m = dvh_metrics(dose, mask)
    assert m["Dmean"] == pytest.approx(200 * 16 / 17)
    assert m["V100"] == pytest.approx(1600 / 17)
    labels = np.zeros(dose.shape, dtype=np.uint8)
    labels[0] = 1
    labels[2:] = 2
    by = dvh_by_label(dose, labels, {1: "tumour", 2: "normal liver"})
    assert by["tumour"]["D90"] == 200.0
    assert by["normal liver"]["Dmean"] == 0.0


@settings(max_examples=50, deadline=None)
@given(dose=hnp.arrays(np.float64, st.integers(1, 300), elements=st.floats(0, 300)),
       x=st.floats(0, 100), y=st.floats(0, 300))
def test_metrics_meet_their_definitions(dose: np.ndarray, x: float, y: float) -> None:
    m = dvh_metrics(dose, np.ones(dose.shape, bool), d_percents=(x,), v_gy=(y,))
    n = dose.size
    dx = m[f"D{x:g}"]
    # at least x % of the volume receives ≥ Dx ...
    assert np.count_nonzero(dose >= dx) >= x * n / 100 - 1e-9
    # ... and Dx is the largest such dose: any higher received dose covers less than x %
    higher = dose[dose > dx]
    if higher.size:
        assert np.count_nonzero(dose >= higher.min()) < max(x * n / 100, 1)
    assert m[f"V{y:g}"] == pytest.approx(100 * np.count_nonzero(dose >= y) / n)
    assert m["Dmean"] == pytest.approx(dose.mean())


@settings(max_examples=50, deadline=None)
@given(dose=hnp.arrays(np.float32, 200, elements=st.floats(0, 300, width=32)))
def test_dx_decreases_and_vy_decreases(dose: np.ndarray) -> None:
    xs = (10, 30, 50, 70, 90, 98)
    ys = (0, 50, 100, 120, 200)
    m = dvh_metrics(dose, np.ones(dose.shape, bool), d_percents=xs, v_gy=ys)
    d = [m[f"D{x}"] for x in xs]
    v = [m[f"V{y}"] for y in ys]
    assert d == sorted(d, reverse=True)
    assert v == sorted(v, reverse=True)


def test_cumulative_dvh() -> None:
    dose = np.array([0.5, 1.5, 2.5, 3.0]).reshape(4, 1, 1)
    grid, volume = cumulative_dvh(dose, np.ones(dose.shape, bool), bin_width_gy=1.0)
    assert list(grid) == [0.0, 1.0, 2.0, 3.0]
    assert list(volume) == [1.0, 0.75, 0.5, 0.25]


@pytest.mark.parametrize(("kwargs", "parameter"), [
    ({"mask": np.zeros((3, 3, 3), bool)}, "mask"),
    ({"mask": np.ones((2, 2, 2), bool)}, "mask"),
    ({"d_percents": (101,)}, "d_percents"),
    ({"d_percents": (-1,)}, "d_percents"),
    ({"v_gy": (math.nan,)}, "v_gy"),
])
def test_bad_requests(kwargs: dict[str, object], parameter: str) -> None:
    args: dict[str, object] = {"dose_gy": np.ones((3, 3, 3)), "mask": np.ones((3, 3, 3), bool)}
    args.update(kwargs)
    with pytest.raises(DosimetryInputError) as err:
        dvh_metrics(**args)  # type: ignore[arg-type]
    assert err.value.field == parameter
