"""Voxel engine invariants (hypothesis) and uniform-sphere phantoms against analytic values.

Analytic references:
- LDM: the mean dose over a VOI holding all counts is the single-compartment dose C·A/M.
- Kernel convolution, centre of a uniform sphere much larger than the Y-90 range (11 mm):
  charged-particle equilibrium, D = (A/M)·τ·Ē with Ē the kernel's energy per decay (0.935 MeV).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from services.dosimetry.domain.constants import MEV_TO_J, mean_life_s
from services.dosimetry.domain.errors import DosimetryInputError
from services.dosimetry.domain.voxel import convolve_same, kernel_dose_gy, ldm_dose_gy
from services.dosimetry.kernel_tables import load_kernel

VOXEL_MM = (4.42, 4.42, 4.42)
VOXEL_ML = 4.42**3 / 1000
KERNEL = load_kernel(4.42)
C = 49.67

counts_16 = hnp.arrays(np.float64, (16, 16, 16), elements=st.floats(0, 1000, allow_subnormal=False))
activity = st.floats(0.1, 10)


def _sphere(n: int, radius_mm: float, voxel_mm: float = 4.42) -> np.ndarray:
    g = (np.indices((n, n, n)) - (n - 1) / 2) * voxel_mm
    return np.sqrt((g**2).sum(axis=0)) <= radius_mm


@settings(max_examples=50, deadline=None)
@given(counts=counts_16, a=activity, rho=st.floats(0.3, 2.0), box=st.tuples(*[st.integers(1, 8)] * 3))
def test_ldm_mean_over_voi_holding_all_counts_is_single_compartment_dose(
        counts: np.ndarray, a: float, rho: float, box: tuple[int, int, int]) -> None:
    voi = np.zeros(counts.shape, dtype=bool)
    voi[2:2 + box[0], 3:3 + box[1], 4:4 + box[2]] = True
    counts = np.where(voi, counts, 0.0)
    counts[2, 3, 4] += 1.0  # at least one count
    dose = ldm_dose_gy(counts, VOXEL_MM, a, density_g_per_ml=rho)
    mass_kg = voi.sum() * VOXEL_ML * rho / 1000
    assert dose[voi].mean() == pytest.approx(C * a / mass_kg, rel=1e-9)


@settings(max_examples=50, deadline=None)
@given(counts=counts_16, a=activity)
def test_ldm_puts_no_dose_outside_the_body(counts: np.ndarray, a: float) -> None:
    body = _sphere(16, 30.0)
    counts = counts + 1.0  # counts everywhere, also outside the body (scatter, noise)
    dose = ldm_dose_gy(counts, VOXEL_MM, a, calibration_mask=body)
    assert np.all(dose[~body] == 0)
    assert np.all(dose[body] > 0)
    # all activity is inside the body: Σ D·m = C·A
    assert (dose[body].sum() * VOXEL_ML * 1.03 / 1000) == pytest.approx(C * a, rel=1e-9)


@settings(max_examples=50, deadline=None)
@given(counts=counts_16, a=activity, factor=st.floats(0.1, 10))
def test_dose_is_linear_in_activity(counts: np.ndarray, a: float, factor: float) -> None:
    counts[8, 8, 8] += 1.0
    assert np.allclose(ldm_dose_gy(counts, VOXEL_MM, a * factor), factor * ldm_dose_gy(counts, VOXEL_MM, a),
                       rtol=1e-9, atol=0)
    k1 = kernel_dose_gy(counts, VOXEL_MM, a, KERNEL)
    k2 = kernel_dose_gy(counts, VOXEL_MM, a * factor, KERNEL)
    assert np.allclose(k2, factor * k1, rtol=1e-9, atol=1e-12 * k1.max())
    # and independent of the counts' scale (patient-relative calibration)
    assert np.allclose(kernel_dose_gy(counts * 7.0, VOXEL_MM, a, KERNEL), k1, rtol=1e-9, atol=1e-12 * k1.max())


@settings(max_examples=50, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), shift=st.tuples(*[st.integers(-4, 4)] * 3))
def test_translating_the_activity_translates_the_dose(seed: int, shift: tuple[int, int, int]) -> None:
    rng = np.random.default_rng(seed)
    counts = np.zeros((24, 24, 24))
    counts[10:14, 9:15, 10:13] = rng.uniform(0, 1, (4, 6, 3))
    counts[11, 11, 11] += 1.0
    moved = np.roll(counts, shift, axis=(0, 1, 2))  # activity stays far from the edges: no wrap
    d0 = kernel_dose_gy(counts, VOXEL_MM, 1.0, KERNEL)
    d1 = kernel_dose_gy(moved, VOXEL_MM, 1.0, KERNEL)
    assert np.allclose(np.roll(d0, shift, axis=(0, 1, 2)), d1, rtol=1e-9, atol=1e-9 * d0.max())
    l0 = ldm_dose_gy(counts, VOXEL_MM, 1.0)
    assert np.allclose(np.roll(l0, shift, axis=(0, 1, 2)), ldm_dose_gy(moved, VOXEL_MM, 1.0))


def test_point_source_gives_the_kernel_and_no_circular_wrap() -> None:
    counts = np.zeros((20, 20, 20))
    counts[0, 10, 10] = 1.0  # at the edge of the grid
    conv = convolve_same(counts, KERNEL)
    # the kernel's half that fits inside the grid, nothing wrapped to the far side
    assert conv[0, 10, 10] == pytest.approx(0.689, rel=1e-9)
    assert conv[1, 10, 10] == pytest.approx(0.0973, rel=1e-9)
    assert np.abs(conv[14:, :, :]).max() < 1e-12


def test_kernel_dose_of_a_point_source_in_gy() -> None:
    # 1 GBq in one voxel: D_centre = 1e3 MBq · τ[s] · 0.689 mGy/(MBq·s) · 1e-3 Gy/mGy
    counts = np.zeros((15, 15, 15))
    counts[7, 7, 7] = 5.0
    dose = kernel_dose_gy(counts, VOXEL_MM, 1.0, KERNEL, density_g_per_ml=KERNEL.density_g_per_ml)
    tau_s = 64.1 * 3600 / math.log(2)
    assert dose[7, 7, 7] == pytest.approx(1e3 * tau_s * 0.689 * 1e-3, rel=1e-6)
    assert dose[7, 7, 8] == pytest.approx(1e3 * tau_s * 0.0973 * 1e-3, rel=1e-6)


def test_kernel_dose_conserves_energy_away_from_edges() -> None:
    counts = np.zeros((32, 32, 32))
    counts[12:20, 12:20, 12:20] = 1.0
    a = 2.0
    dose = kernel_dose_gy(counts, VOXEL_MM, a, KERNEL, density_g_per_ml=1.04)
    energy_j = dose.sum() * VOXEL_ML * 1.04 / 1000
    expected_j = a * 1e9 * mean_life_s() * KERNEL.energy_per_decay_mev() * MEV_TO_J
    assert energy_j == pytest.approx(expected_j, rel=1e-4)


def test_uniform_sphere_ldm_matches_single_compartment() -> None:
    sphere = _sphere(48, 80.0)
    a = 2.0
    dose = ldm_dose_gy(sphere.astype(np.float32), VOXEL_MM, a)
    mass_kg = sphere.sum() * VOXEL_ML * 1.03 / 1000
    assert dose.dtype == np.float32
    assert dose[sphere] == pytest.approx(np.full(sphere.sum(), C * a / mass_kg), rel=1e-5)
    assert np.all(dose[~sphere] == 0)


def test_uniform_sphere_kernel_centre_matches_charged_particle_equilibrium() -> None:
    sphere = _sphere(48, 80.0)
    a = 2.0
    dose = kernel_dose_gy(sphere.astype(np.float32), VOXEL_MM, a, KERNEL, density_g_per_ml=1.04)
    mass_kg = sphere.sum() * VOXEL_ML * 1.04 / 1000
    cpe_gy = a * 1e9 * mean_life_s() * 0.935 * MEV_TO_J / mass_kg
    centre = dose[23:25, 23:25, 23:25]
    assert centre == pytest.approx(np.full(centre.shape, cpe_gy), rel=0.005)
    # and it agrees with the EANM dose constant within 1 % (C·A/M with M at 1.04 g/mL)
    assert centre.mean() == pytest.approx(C * a / mass_kg, rel=0.01)
    # far outside the sphere (> 11 mm) there is no dose
    assert dose[0, 0, 0] == pytest.approx(0.0, abs=1e-6 * cpe_gy)


def test_density_scaling_for_lung_and_bone() -> None:
    counts = np.zeros((16, 16, 16))
    counts[6:10, 6:10, 6:10] = 1.0
    soft = kernel_dose_gy(counts, VOXEL_MM, 1.0, KERNEL, density_g_per_ml=1.04)
    rho = np.full(counts.shape, 1.04)
    rho[:, :, :8] = 0.30  # lung
    scaled = kernel_dose_gy(counts, VOXEL_MM, 1.0, KERNEL, density_g_per_ml=rho)
    assert np.allclose(scaled[:, :, 8:], soft[:, :, 8:], rtol=1e-6)
    assert np.allclose(scaled[:, :, :8], soft[:, :, :8] * 1.04 / 0.30, rtol=1e-6)
    ldm = ldm_dose_gy(counts, VOXEL_MM, 1.0, density_g_per_ml=rho)
    assert ldm[7, 7, 7] == pytest.approx(ldm[7, 7, 9] * 1.04 / 0.30)
    bone = load_kernel(4.42, "bone")
    assert bone.density_g_per_ml == pytest.approx(1.85)
    dose_bone = kernel_dose_gy(counts, VOXEL_MM, 1.0, bone, density_g_per_ml=1.85)
    # compact-bone kernel in bone: same energy per decay, so the centre dose ≈ soft · 1.04/1.85
    assert dose_bone[8, 8, 8] == pytest.approx(soft[8, 8, 8] * 1.04 / 1.85, rel=0.03)


def test_float32_in_float32_out_and_float64_otherwise() -> None:
    counts = np.ones((8, 8, 8), dtype=np.float32)
    assert kernel_dose_gy(counts, VOXEL_MM, 1.0, KERNEL).dtype == np.float32
    assert kernel_dose_gy(counts.astype(np.int32), VOXEL_MM, 1.0, KERNEL).dtype == np.float64
    assert ldm_dose_gy(counts.astype(np.uint16), VOXEL_MM, 1.0).dtype == np.float64


def test_plain_array_kernel_and_voxel_mismatch() -> None:
    counts = np.zeros((12, 12, 12))
    counts[6, 6, 6] = 1.0
    from_array = kernel_dose_gy(counts, VOXEL_MM, 1.0, KERNEL.values, density_g_per_ml=1.04)
    assert np.allclose(from_array, kernel_dose_gy(counts, VOXEL_MM, 1.0, KERNEL, density_g_per_ml=1.04))
    with pytest.raises(DosimetryInputError) as err:
        kernel_dose_gy(counts, (4.8, 4.8, 4.8), 1.0, KERNEL)
    assert err.value.field == "voxel_size_mm"


@pytest.mark.parametrize(("kwargs", "parameter"), [
    ({"activity_gbq": 0.0}, "activity_gbq"),
    ({"activity_gbq": -1.0}, "activity_gbq"),
    ({"voxel_size_mm": (4.42, 0.0, 4.42)}, "voxel_size_mm"),
    ({"density_g_per_ml": 0.0}, "density_g_per_ml"),
    ({"density_g_per_ml": np.ones((4, 4, 4))}, "density_g_per_ml"),
    ({"calibration_mask": np.zeros((8, 8, 8), dtype=bool)}, "counts"),
    ({"calibration_mask": np.ones((4, 4, 4), dtype=bool)}, "calibration_mask"),
    ({"counts": np.zeros((8, 8, 8))}, "counts"),
    ({"counts": np.ones((8, 8))}, "counts"),
])
def test_engine_refuses_unusable_input(kwargs: dict[str, object], parameter: str) -> None:
    args: dict[str, object] = {"counts": np.ones((8, 8, 8)), "voxel_size_mm": VOXEL_MM, "activity_gbq": 1.0}
    args.update(kwargs)
    for fn in (ldm_dose_gy, kernel_dose_gy):
        extra = {"kernel": KERNEL} if fn is kernel_dose_gy else {}
        with pytest.raises(DosimetryInputError) as err:
            fn(**args, **extra)  # type: ignore[operator]
        assert err.value.field == parameter


@settings(max_examples=25, deadline=None)
@given(counts=counts_16, a=activity, seed=st.integers(0, 2**16), dtype=st.sampled_from([np.float32, np.float64]))
def test_convolving_first_and_dividing_by_the_density_later_is_the_same_dose(
        counts: np.ndarray, a: float, seed: int, dtype: type) -> None:
    """A job convolves while its CT still arrives and divides by the CT's density afterwards:
    bit for bit the map :func:`kernel_dose_gy` gives a density map, and the scalar-density map to
    float rounding."""
    from services.dosimetry.domain.voxel import dose_from_energy_density, kernel_energy_density

    values = counts.astype(dtype)
    if not values.sum() > 0:
        values[3, 4, 5] = 1
    rho = np.random.default_rng(seed).uniform(0.001, 2.0, values.shape)
    energy = kernel_energy_density(values, VOXEL_MM, a, KERNEL)
    assert energy.dtype == dtype and energy.min() >= 0
    whole = kernel_dose_gy(values, VOXEL_MM, a, KERNEL, density_g_per_ml=rho)
    assert np.array_equal(dose_from_energy_density(energy.copy(), rho), whole)
    uniform = kernel_dose_gy(values, VOXEL_MM, a, KERNEL, density_g_per_ml=0.7)
    assert np.allclose(dose_from_energy_density(energy, 0.7), uniform, rtol=2e-6 if dtype == np.float32 else 1e-12,
                       atol=float(uniform.max()) * 1e-6)


def test_the_energy_density_is_the_dose_times_the_density_whatever_the_tissue() -> None:
    """D·ρ does not depend on ρ (the kernel's first-order density scaling): lung and soft tissue
    around one source hold the same energy per volume, with ~3.5 times the dose in lung."""
    from services.dosimetry.domain.voxel import dose_from_energy_density, kernel_energy_density

    counts = np.zeros((16, 16, 16))
    counts[6:10, 6:10, 6:10] = 1.0
    energy = kernel_energy_density(counts, VOXEL_MM, 1.0, KERNEL)
    soft = kernel_dose_gy(counts, VOXEL_MM, 1.0, KERNEL, density_g_per_ml=1.04)
    assert np.allclose(energy, soft * 1.04, rtol=1e-9, atol=1e-12)
    lung = dose_from_energy_density(energy.copy(), 0.30)
    assert lung[8, 8, 8] == pytest.approx(soft[8, 8, 8] * 1.04 / 0.30)


@pytest.mark.parametrize(("density", "why"), [
    (0.0, "positive"), (-1.0, "positive"), (np.ones((4, 4, 4)), "shape"),
    (np.where(np.arange(512).reshape(8, 8, 8) == 7, 0.0, 1.0), "every voxel"),
])
def test_the_density_that_divides_a_convolution_is_checked_as_the_engine_checks_it(density: object, why: str) -> None:
    from services.dosimetry.domain.voxel import dose_from_energy_density, kernel_energy_density

    energy = kernel_energy_density(np.ones((8, 8, 8)), VOXEL_MM, 1.0, KERNEL)
    with pytest.raises(DosimetryInputError) as err:
        dose_from_energy_density(energy, density)  # type: ignore[arg-type]
    assert err.value.field == "density_g_per_ml" and why in err.value.message
