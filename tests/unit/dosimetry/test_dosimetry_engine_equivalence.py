"""The dose engine's fast paths against the straightforward formulas they replace.

The kernel path transforms only the non-zero part of the padded grid, scales the counts while
padding them, and crops, clips and divides by the density in the passes after the inverse
transform; the DVH orders only the ranks it reports. Each is compared here with an independent
oracle: a direct (non-FFT) linear convolution (``scipy.ndimage.convolve``, zero outside the
grid) and a full sort of the VOI's doses.
"""

from __future__ import annotations

import math
import threading

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import ndimage

from services.dosimetry.domain.constants import mean_life_s
from services.dosimetry.domain.dvh import dvh_metrics, sampled_dvh
from services.dosimetry.domain.kernel import VoxelKernel
from services.dosimetry.domain.voxel import convolve_same, kernel_dose_gy, padded_shape
from services.dosimetry.kernel_tables import load_kernel

#: The image voxel of the tabulated Y-90 soft-tissue kernel the engine is usually run with.
VOXEL_MM = (4.42, 4.42, 4.42)
KERNEL = load_kernel(4.42)

#: Tolerance relative to the largest dose: float64 maps agree to round-off, float32 maps to
#: single-precision FFT round-off.
RTOL = {np.float64: 1e-10, np.float32: 2e-6}

shapes = st.tuples(*[st.integers(1, 14)] * 3)
odd = st.sampled_from([1, 3, 5, 7])


def _direct_convolution(values: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Σ_j S[j]·c[i + K//2 − j] with c = 0 outside the grid: the kernel centre on each voxel."""
    return ndimage.convolve(values.astype(np.float64), kernel.astype(np.float64), mode="constant", cval=0.0)


def _dose_oracle(counts: np.ndarray, kernel: VoxelKernel, activity_gbq: float, rho: float | np.ndarray,
                 mask: np.ndarray | None = None) -> np.ndarray:
    """MIRD 17 as the module doc writes it: D = max(0, (A·τ·c/Σc) ⊛ S · 1e-3 · ρ_kernel/ρ) in Gy."""
    c = counts.astype(np.float64)
    if mask is not None:
        c = np.where(mask, c, 0.0)
    cumulated_mbq_s = activity_gbq * 1e3 * mean_life_s() * c / c.sum()
    dose = _direct_convolution(cumulated_mbq_s, kernel.values) * 1e-3 * kernel.density_g_per_ml / rho
    return np.maximum(dose, 0.0)


def _random_kernel(seed: int, shape: tuple[int, int, int], symmetric: bool) -> np.ndarray:
    """Positive. Asymmetric: different in every direction, so that a crop offset or a flipped
    axis changes the result (the engine's complex-spectrum path). Symmetric about the centre on
    every axis, as the tabulated kernels (its real-spectrum path), still different per axis."""
    values = np.random.default_rng(seed).uniform(0.1, 1.0, shape)
    if symmetric:
        for axis in range(3):
            values = values + np.flip(values, axis)
    return values


@settings(max_examples=80, deadline=None)
@given(shape=shapes, kshape=st.tuples(odd, odd, odd), seed=st.integers(0, 2**32 - 1),
       dtype=st.sampled_from([np.float32, np.float64]), symmetric=st.booleans())
def test_convolution_is_the_direct_linear_convolution_cropped_on_the_kernel_centre(
        shape: tuple[int, int, int], kshape: tuple[int, int, int], seed: int, dtype: type[np.floating],
        symmetric: bool) -> None:
    values = np.random.default_rng(seed).uniform(0, 1, shape).astype(dtype)
    values[tuple(n // 2 for n in shape)] += 1.0
    kernel = VoxelKernel(_random_kernel(seed, kshape, symmetric), VOXEL_MM, "soft", 1.04, "test")
    conv = convolve_same(values, kernel)
    expected = _direct_convolution(values, kernel.values)
    assert conv.dtype == dtype and conv.shape == shape
    assert np.allclose(conv, expected, rtol=0, atol=RTOL[dtype] * expected.max())


@settings(max_examples=80, deadline=None)
@given(shape=shapes, kshape=st.tuples(odd, odd, odd), seed=st.integers(0, 2**32 - 1),
       dtype=st.sampled_from([np.float32, np.float64]), activity=st.floats(0.1, 10),
       density=st.sampled_from(["scalar", "map"]), masked=st.booleans(), symmetric=st.booleans())
def test_kernel_dose_is_the_formula(shape: tuple[int, int, int], kshape: tuple[int, int, int], seed: int,
                                   dtype: type[np.floating], activity: float, density: str, masked: bool,
                                   symmetric: bool) -> None:
    rng = np.random.default_rng(seed)
    counts = rng.uniform(0, 100, shape).astype(dtype)
    counts[tuple(n // 2 for n in shape)] += 1.0
    rho: float | np.ndarray = 0.3 + 1.7 * rng.uniform(0, 1, shape) if density == "map" else float(rng.uniform(0.3, 2))
    mask = None
    if masked:
        mask = rng.uniform(0, 1, shape) < 0.5
        mask[tuple(n // 2 for n in shape)] = True
    kernel = VoxelKernel(_random_kernel(seed, kshape, symmetric), VOXEL_MM, "soft", 1.04, "test")
    dose = kernel_dose_gy(counts, VOXEL_MM, activity, kernel, density_g_per_ml=rho, calibration_mask=mask)
    expected = _dose_oracle(counts, kernel, activity, rho, mask)
    assert dose.dtype == dtype and dose.shape == shape
    assert np.allclose(dose, expected, rtol=0, atol=RTOL[dtype] * expected.max())


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("density", ["scalar", "map"])
@pytest.mark.parametrize("symmetric", [False, True])
def test_negative_dose_is_clipped_to_zero_and_the_rest_kept(dtype: type[np.floating], density: str,
                                                            symmetric: bool) -> None:
    # a caller's kernel with negative lobes gives truly negative convolution values
    rng = np.random.default_rng(7)
    values = rng.uniform(-1.0, 1.0, (5, 5, 5))
    if symmetric:
        for axis in range(3):
            values = values + np.flip(values, axis)
    values[2, 2, 2] = 4.0
    kernel = VoxelKernel(values, VOXEL_MM, "soft", 1.04, "test")
    counts = rng.uniform(0, 1, (12, 10, 9)).astype(dtype)
    rho: float | np.ndarray = 1.04 if density == "scalar" else rng.uniform(0.3, 2.0, counts.shape)
    expected = _dose_oracle(counts, kernel, 1.0, rho)
    assert (expected == 0).sum() > 10 and (expected > 0).sum() > 10  # both sides are exercised
    dose = kernel_dose_gy(counts, VOXEL_MM, 1.0, kernel, density_g_per_ml=rho)
    assert np.all(dose >= 0)
    assert np.allclose(dose, expected, rtol=0, atol=RTOL[dtype] * expected.max())


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(20, 22, 24), (9, 13, 17), (1, 5, 2)])
def test_a_symmetric_kernel_has_the_real_spectrum_of_the_kernel_centred_on_the_origin(
        dtype: type[np.floating], shape: tuple[int, int, int]) -> None:
    kernel = load_kernel(4.42)
    padded = padded_shape(shape, kernel)
    counts = np.ones(shape, dtype=dtype)
    kernel_dose_gy(counts, VOXEL_MM, 1.0, kernel)
    cached = kernel.spectra[(padded, np.dtype(np.complex64 if dtype == np.float32 else np.complex128).str)]
    # oracle: the full FFT of the kernel placed with its centre at index 0, negative offsets wrapped
    wrapped = np.zeros(padded)
    wrapped[np.ix_(*[np.arange(-(k // 2), k // 2 + 1) % p for k, p in zip(kernel.values.shape, padded, strict=True)])] = (
        kernel.values)
    expected = np.fft.rfftn(wrapped)
    assert cached.dtype == dtype and not cached.flags.writeable
    assert np.abs(expected.imag).max() < 1e-12 * np.abs(expected).max()
    assert np.allclose(cached, expected.real, rtol=0, atol=RTOL[dtype] * np.abs(expected).max())
    asymmetric = VoxelKernel(_random_kernel(1, (3, 5, 7), symmetric=False), VOXEL_MM, "soft", 1.04, "test")
    kernel_dose_gy(counts, VOXEL_MM, 1.0, asymmetric)
    assert all(np.iscomplexobj(spec) for spec in asymmetric.spectra.values())


def test_round_off_far_from_the_source_is_no_dose() -> None:
    counts = np.zeros((40, 40, 40), dtype=np.float32)
    counts[3, 3, 3] = 1.0
    dose = kernel_dose_gy(counts, VOXEL_MM, 1.0, KERNEL)
    assert dose.min() == 0.0  # FFT round-off leaves no negative dose
    assert np.all(dose[20:, 20:, 20:] < 1e-6 * dose.max())


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_results_are_new_arrays_and_the_cached_spectrum_is_untouched(dtype: type[np.floating]) -> None:
    counts = np.random.default_rng(3).uniform(0, 1, (18, 20, 22)).astype(dtype)
    kernel = load_kernel(4.42)
    first = kernel_dose_gy(counts, VOXEL_MM, 1.0, kernel)
    key = (padded_shape(counts.shape, kernel), np.dtype(np.complex64 if dtype == np.float32 else np.complex128).str)
    spectrum = kernel.spectra[key].copy()
    kept = first.copy()
    second = kernel_dose_gy(counts[::-1].copy(), VOXEL_MM, 2.0, kernel)
    third = kernel_dose_gy(counts, VOXEL_MM, 1.0, kernel)
    assert np.array_equal(first, kept)  # a later call does not write into an earlier result
    assert np.array_equal(kernel.spectra[key], spectrum)
    assert np.array_equal(third, first)
    assert not np.shares_memory(first, third) and not np.shares_memory(first, second)
    assert first.flags.c_contiguous and first.flags.owndata
    conv = convolve_same(counts, kernel)
    assert conv.flags.c_contiguous and not np.shares_memory(conv, counts)


def test_concurrent_calls_give_the_sequential_results() -> None:
    rng = np.random.default_rng(11)
    inputs = [rng.uniform(0, 1, (24, 24, 24)).astype(np.float32) for _ in range(6)]
    kernel = load_kernel(4.42)
    expected = [kernel_dose_gy(c, VOXEL_MM, 1.0, kernel) for c in inputs]
    results: list[np.ndarray | None] = [None] * len(inputs)

    def run(i: int) -> None:
        for _ in range(5):
            results[i] = kernel_dose_gy(inputs[i], VOXEL_MM, 1.0, kernel)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(inputs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for got, want in zip(results, expected, strict=True):
        assert got is not None and np.array_equal(got, want)


def _nearest_rank(ordered: np.ndarray, x: float) -> float:
    n = ordered.size
    k = min(n, max(1, math.ceil(x * n / 100.0 - 1e-9)))
    return float(ordered[n - k])


@settings(max_examples=80, deadline=None)
@given(n=st.integers(1, 400), seed=st.integers(0, 2**32 - 1), ties=st.booleans(),
       xs=st.lists(st.floats(0, 100), min_size=0, max_size=40), dtype=st.sampled_from([np.float32, np.float64]))
def test_dvh_metrics_are_the_sorted_doses(n: int, seed: int, ties: bool, xs: list[float],
                                          dtype: type[np.floating]) -> None:
    rng = np.random.default_rng(seed)
    dose = rng.uniform(0, 300, (n, 1, 3))
    if ties:
        dose = np.round(dose / 50) * 50
    dose = dose.astype(dtype)
    mask = rng.uniform(0, 1, dose.shape) < 0.7
    mask[0, 0, 0] = True
    before = dose.copy()
    m = dvh_metrics(dose, mask, d_percents=xs, v_gy=(0, 100, 150))
    ordered = np.sort(dose[mask])
    assert np.array_equal(dose, before)  # the caller's map is not reordered
    for x in xs:
        assert m[f"D{x:g}"] == _nearest_rank(ordered, x)
    assert (m["Dmin"], m["Dmax"]) == (float(ordered[0]), float(ordered[-1]))
    assert m["Dmean"] == pytest.approx(float(np.mean(ordered, dtype=np.float64)), rel=1e-12)
    for y in (0, 100, 150):
        assert m[f"V{y}"] == 100.0 * np.count_nonzero(ordered >= y) / ordered.size


@settings(max_examples=30, deadline=None)
@given(n=st.integers(1, 3000), seed=st.integers(0, 2**32 - 1))
def test_the_sampled_dvh_is_every_percent_of_the_sorted_doses(n: int, seed: int) -> None:
    dose = np.random.default_rng(seed).gamma(2.0, 40.0, (n, 1, 1)).astype(np.float32)
    mask = np.ones(dose.shape, bool)
    ordered = np.sort(dose.ravel())
    assert sampled_dvh(dose, mask) == tuple((float(x), _nearest_rank(ordered, x)) for x in range(101))


def test_the_kernel_path_holds_under_three_volumes_at_once() -> None:
    # 128³ float32 (a clinical SPECT grid): the padded spectrum, one transform's output and the
    # result are the most it should hold (2.6 volumes); a buffer kept alive by a view shows here
    import tracemalloc

    counts = np.random.default_rng(5).uniform(0, 1, (128, 128, 128)).astype(np.float32)
    kernel = load_kernel(4.42)
    kernel_dose_gy(counts, VOXEL_MM, 1.0, kernel)  # the spectrum is cached outside the measurement
    tracemalloc.start()
    try:
        kernel_dose_gy(counts, VOXEL_MM, 1.0, kernel)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak <= 2.8 * counts.nbytes
