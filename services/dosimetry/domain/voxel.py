"""Voxel dosimetry engine: absorbed-dose maps from an activity (counts) map. Pure numpy/scipy.

Both methods use patient-relative calibration (EANM 2022): the administered
activity A is distributed over the voxels in proportion to their counts c_i, either inside
``calibration_mask`` (e.g. the liver plus lungs, or the body) or over the whole volume; voxels
outside the mask carry no activity.

- Local deposition (LDM, EANM 2022 standard): all beta energy is absorbed in the voxel where the
  decay happens, D_i = C·A·(c_i/Σc)/m_i with m_i = ρ_i·V_voxel, C the dose constant
  (Gy·kg/GBq). The mean dose over any VOI that holds all counts equals the single-compartment
  dose C·A/M of that VOI.
- Kernel convolution (MIRD Pamphlet 17): D = Ã ⊛ S with Ã_i = A·τ·c_i/Σc the cumulated activity
  (τ = T½/ln 2, complete physical decay: microspheres are permanent implants) and S the Y-90
  voxel S-value kernel of Lanconelli et al. 2012 (:mod:`services.dosimetry.domain.kernel`).
  The linear convolution is computed with real FFTs over a grid padded to at least
  N + K − 1 per axis (scipy.fft.next_fast_len), so there is no circular wrap; the output is
  cropped to the input grid ("same" mode). Density scaling: D_i·ρ_kernel/ρ_i (the kernel is for
  its tissue's density: 1.04 g/mL soft tissue, 1.85 g/mL bone), the first-order correction for
  lung (ρ ≈ 0.3) and bone used in clinical voxel dosimetry.

dtypes: float32 counts give float32 doses (FFT in single precision); any other input gives
float64. Negative counts are not checked for (reconstructions are non-negative); they would
give negative dose.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import fft as sp_fft

from services.dosimetry.domain.constants import DEFAULT_DOSE_CONSTANT, Y90_HALF_LIFE_H, mean_life_s
from services.dosimetry.domain.errors import DosimetryInputError
from services.dosimetry.domain.kernel import TISSUE_DENSITY_G_PER_ML, VoxelKernel

__all__ = ["convolve_same", "dose_from_energy_density", "kernel_dose_gy", "kernel_energy_density", "ldm_dose_gy",
           "padded_shape", "warm_spectrum"]

FloatArray = npt.NDArray[np.floating[Any]]
_SPECTRUM_CACHE_SIZE = 2


def _voxel_volume_ml(voxel_size_mm: Sequence[float]) -> float:
    sizes = tuple(float(v) for v in voxel_size_mm)
    if len(sizes) != 3 or any(not (v > 0 and math.isfinite(v)) for v in sizes):
        raise DosimetryInputError("voxel_size_mm", f"voxel size must be three positive numbers (mm), got {voxel_size_mm}")
    return sizes[0] * sizes[1] * sizes[2] / 1000.0


def _out_dtype(counts: npt.NDArray[Any]) -> type[np.floating[Any]]:
    return np.float32 if counts.dtype in (np.float32, np.float16) else np.float64


def _calibrated(counts: npt.ArrayLike, calibration_mask: npt.ArrayLike | None,
                activity_gbq: float) -> tuple[FloatArray, float]:
    """Counts restricted to the calibration mask (as float) and their sum (float64)."""
    arr = np.asarray(counts)
    if arr.ndim != 3:
        raise DosimetryInputError("counts", f"counts must be a 3-D array, got {arr.ndim}-D")
    if not (activity_gbq > 0 and math.isfinite(activity_gbq)):
        raise DosimetryInputError("activity_gbq", f"must be a positive number, got {activity_gbq}")
    dtype = _out_dtype(arr)
    values: FloatArray = arr if arr.dtype == dtype else arr.astype(dtype)
    if calibration_mask is not None:
        mask = np.asarray(calibration_mask)
        if mask.shape != arr.shape:
            raise DosimetryInputError("calibration_mask", f"mask shape {mask.shape} differs from counts {arr.shape}")
        values = np.where(mask.astype(bool, copy=False), values, dtype(0))
    # float32 maps: numpy's pairwise float32 summation (relative error ~1e-7, within the float32
    # output's precision) at memory speed; other maps: float64
    total = float(values.sum(dtype=values.dtype))
    if not (total > 0 and math.isfinite(total)):
        raise DosimetryInputError("counts", "no positive counts inside the calibration region")
    return values, total


def _density(density_g_per_ml: float | npt.ArrayLike, shape: tuple[int, ...]) -> float | FloatArray:
    if np.ndim(density_g_per_ml) == 0:
        rho = float(density_g_per_ml)  # type: ignore[arg-type]
        if not (rho > 0 and math.isfinite(rho)):
            raise DosimetryInputError("density_g_per_ml", f"must be positive, got {rho}")
        return rho
    arr = np.asarray(density_g_per_ml)
    if arr.shape != shape:
        raise DosimetryInputError("density_g_per_ml", f"density map shape {arr.shape} differs from counts {shape}")
    if not np.all(arr > 0):
        raise DosimetryInputError("density_g_per_ml", "density must be positive in every voxel (air ≈ 0.0012 g/mL)")
    return arr


def ldm_dose_gy(counts: npt.ArrayLike, voxel_size_mm: Sequence[float], activity_gbq: float,
                density_g_per_ml: float | npt.ArrayLike = 1.03,
                dose_constant_gy_kg_per_gbq: float = DEFAULT_DOSE_CONSTANT.value_gy_kg_per_gbq,
                calibration_mask: npt.ArrayLike | None = None, *, out: FloatArray | None = None) -> FloatArray:
    """Local-deposition dose map (Gy): D_i = C·A·(c_i/Σc)/(ρ_i·V_voxel).

    ``counts``: 3-D activity map (any scale); ``voxel_size_mm``: (x, y, z) edges in the array's
    axis order; ``activity_gbq``: administered activity A; ``density_g_per_ml``: scalar or an
    array of the counts' shape; ``calibration_mask``: where the activity is (None = everywhere);
    ``out``: optional preallocated result array (the result dtype, the counts' shape).
    """
    voxel_ml = _voxel_volume_ml(voxel_size_mm)
    c = float(dose_constant_gy_kg_per_gbq)
    if not (c > 0 and math.isfinite(c)):
        raise DosimetryInputError("dose_constant_gy_kg_per_gbq", f"must be positive, got {c}")
    values, total = _calibrated(counts, calibration_mask, activity_gbq)
    rho = _density(density_g_per_ml, values.shape)
    dtype = values.dtype.type
    # Gy per count for density 1 g/mL: C·A / (Σc · V_voxel[mL] · 1 g/mL / 1000 g/kg)
    scale = c * activity_gbq / (total * voxel_ml / 1000.0)
    if out is None:
        out = np.empty(values.shape, dtype=dtype)
    elif out.shape != values.shape or out.dtype != dtype:
        raise DosimetryInputError("out", f"out must be a {np.dtype(dtype).name} array of shape {values.shape}")
    if isinstance(rho, float):
        np.multiply(values, dtype(scale / rho), out=out)
        return out
    np.multiply(values, dtype(scale), out=out)
    np.divide(out, rho, out=out, casting="unsafe")
    return out


def _is_symmetric(values: npt.NDArray[Any]) -> bool:
    """S(i, j, k) = S(−i, j, k) = S(i, −j, k) = S(i, j, −k) about the centre (tabulated kernels,
    their interpolations and anisotropic mappings all are)."""
    return all(bool(np.array_equal(values, np.flip(values, axis))) for axis in range(values.ndim))


def _cosines(p: int, half: int, frequencies: int) -> npt.NDArray[np.float64]:
    """(frequencies, half + 1): the weight of offsets ±j at DFT frequency w on a length-p axis,
    1 for j = 0 and 2·cos(2π·w·j/p) for j > 0 (the argument reduced exactly in integers)."""
    w = np.arange(frequencies)[:, None]
    j = np.arange(half + 1)[None, :]
    c = 2.0 * np.cos(2.0 * np.pi * ((w * j) % p) / p)
    c[:, 0] = 1.0
    return c


def _symmetric_spectrum(values: npt.NDArray[np.float64], padded: tuple[int, ...],
                        real: type[np.floating[Any]]) -> npt.NDArray[Any]:
    """The rfftn of a symmetric kernel centred on the origin of the padded grid (negative offsets
    wrapped to the far end): real, R(w) = Σ_octant S(j)·Π_axes c(w, j) (:func:`_cosines`).
    Three small contractions instead of a transform of the padded grid."""
    h0, h1, h2 = (n // 2 for n in values.shape)
    p0, p1, p2 = padded
    octant = values[h0:, h1:, h2:]
    t = octant @ _cosines(p2, h2, p2 // 2 + 1).T
    t = np.einsum("bj,ajk->abk", _cosines(p1, h1, p1), t)
    # einsum's own loop: BLAS was 8x slower on this (p0 × 6) @ (6 × p1·p2/2) shape
    spec = np.einsum("wj,jx->wx", _cosines(p0, h0, p0).astype(real), t.astype(real).reshape(h0 + 1, -1))
    result: npt.NDArray[Any] = spec.reshape(p0, p1, p2 // 2 + 1)
    return result


def _kernel_spectrum(kernel: VoxelKernel, padded: tuple[int, ...], complex_dtype: type[Any],
                     workers: int) -> npt.NDArray[Any]:
    """The kernel's spectrum on ``padded``, cached on the kernel for the last few grid shapes and
    read-only (every convolution on the grid shares it).

    A symmetric kernel: the real spectrum of the kernel centred on the origin
    (:func:`_symmetric_spectrum`; the convolution then crops at offset 0). Any other: the rfftn
    of the zero-padded kernel with its corner at the origin (complex; crop at the kernel
    centre), computed axis by axis on the small kernel support (pruned transform)."""
    key = (padded, np.dtype(complex_dtype).str)
    cached: npt.NDArray[Any] | None = kernel.spectra.get(key)
    if cached is not None:
        return cached
    real = np.float32 if complex_dtype == np.complex64 else np.float64
    if _is_symmetric(kernel.values):
        spec = _symmetric_spectrum(kernel.values, padded, real)
    else:
        spec = sp_fft.rfft(kernel.values.astype(real), n=padded[2], axis=2, workers=workers)
        spec = sp_fft.fft(spec, n=padded[1], axis=1, workers=workers)
        spec = sp_fft.fft(spec, n=padded[0], axis=0, workers=workers, overwrite_x=True)
        spec = np.asarray(spec).astype(complex_dtype, copy=False)
    spec.flags.writeable = False
    while len(kernel.spectra) >= _SPECTRUM_CACHE_SIZE:
        kernel.spectra.pop(next(iter(kernel.spectra)))
    kernel.spectra[key] = spec
    result: npt.NDArray[Any] = spec
    return result


def padded_shape(shape: Sequence[int], kernel: VoxelKernel) -> tuple[int, ...]:
    """The FFT grid of a linear convolution of ``shape`` with ``kernel``: at least N + K − 1 per
    axis, rounded up to a fast length."""
    return tuple(sp_fft.next_fast_len(n + k - 1, real=True) for n, k in zip(shape, kernel.values.shape, strict=True))


def warm_spectrum(kernel: VoxelKernel, shape: Sequence[int], dtype: type[np.floating[Any]] = np.float32,
                  workers: int = -1) -> None:
    """Prepare, for images of ``shape`` and ``dtype``, what the first convolution would compute:
    the kernel's spectrum on the padded grid (cached on the kernel) and scipy.fft's plans for its
    axis lengths (cached by scipy.fft per process), by one convolution of a volume of the shape."""
    values = np.zeros(tuple(shape), dtype=np.float32 if dtype == np.float32 else np.float64)
    values.flat[0] = 1.0
    _convolve(values, kernel, 1.0, workers)


def _in_place(transform: Any, x: npt.NDArray[Any], axis: int, workers: int) -> None:
    """A complex transform of ``x`` along ``axis`` written back into ``x`` (scipy.fft writes in
    place when it may overwrite a complex input; copied back should it ever not)."""
    y = transform(x, axis=axis, overwrite_x=True, workers=workers)
    if not np.may_share_memory(y, x):
        x[...] = y


def _convolve(values: FloatArray, kernel: VoxelKernel, scale: float, workers: int, *,
              clip: bool = False) -> FloatArray:
    """``scale`` × (``values`` ⊛ kernel) cropped to the input grid (and clipped at 0 if ``clip``),
    as a new C-contiguous array of ``values``' dtype.

    Pruned real FFTs on the padded grid: the padding is zero, so the forward transform along
    the last axis runs over the image's rows only, the second axis over its planes only; the
    inverse transforms only what the crop keeps (at the kernel centre, or at 0 when the kernel's
    spectrum is of the kernel centred on the origin). ``scale`` is applied while the counts are
    copied into the padded rows, the crop and the clip in the one pass that writes the result.
    """
    n0, n1, n2 = values.shape
    p0, p1, p2 = padded_shape(values.shape, kernel)
    real = values.dtype.type
    complex_dtype = np.complex64 if real == np.float32 else np.complex128
    kernel_spec = _kernel_spectrum(kernel, (p0, p1, p2), complex_dtype, workers)
    centred = kernel_spec.dtype.kind == "f"
    o0, o1, o2 = (0, 0, 0) if centred else (k // 2 for k in kernel.values.shape)

    spec = np.empty((p0, p1, p2 // 2 + 1), dtype=complex_dtype)
    # the padded rows live in the spectrum's memory until their transform is copied over them:
    # one volume-sized allocation (mapped and faulted in afresh at this size) fewer
    rows = spec.reshape(-1).view(real)[:n0 * n1 * p2].reshape(n0, n1, p2)
    np.multiply(values, real(scale), out=rows[:, :, :n2])
    rows[:, :, n2:] = 0
    half = sp_fft.rfft(rows, axis=2, workers=workers)
    del rows
    spec[:n0, :n1] = half
    del half
    spec[:n0, n1:] = 0
    spec[n0:] = 0
    _in_place(sp_fft.fft, spec[:n0], 1, workers)
    _in_place(sp_fft.fft, spec, 0, workers)
    if centred:  # a real spectrum scales the real and imaginary parts alike
        pairs = spec.view(real).reshape(p0, p1, p2 // 2 + 1, 2)
        np.multiply(pairs, kernel_spec[..., None], out=pairs)
        del pairs  # a view: would keep the spectrum alive past its del below
    else:
        np.multiply(spec, kernel_spec, out=spec)

    _in_place(sp_fft.ifft, spec, 0, workers)
    planes = spec[o0:o0 + n0]
    _in_place(sp_fft.ifft, planes, 1, workers)
    full_rows = sp_fft.irfft(planes[:, o1:o1 + n1], n=p2, axis=2, workers=workers)
    del spec, planes
    out = np.empty(values.shape, dtype=real)
    if clip:
        np.maximum(full_rows[:, :, o2:o2 + n2], real(0), out=out)
    else:
        out[...] = full_rows[:, :, o2:o2 + n2]
    return out


def convolve_same(values: FloatArray, kernel: VoxelKernel, workers: int = -1) -> FloatArray:
    """Linear (zero-padded, no wrap) convolution of ``values`` with the kernel, cropped to the
    input grid with the kernel centre on each voxel. Returns a new array of ``values``' dtype
    (float32 for float16, float64 for any other non-float32 input)."""
    arr = np.asarray(values)
    return _convolve(arr.astype(_out_dtype(arr), copy=False), kernel, 1.0, workers)


def _kernel_inputs(counts: npt.ArrayLike, voxel_size_mm: Sequence[float], activity_gbq: float,
                   kernel: VoxelKernel | npt.ArrayLike, calibration_mask: npt.ArrayLike | None,
                   half_life_h: float) -> tuple[FloatArray, VoxelKernel, float]:
    """The calibrated counts, the kernel (checked against the voxel size) and the Gy per
    count-kernel product at the kernel's density."""
    _voxel_volume_ml(voxel_size_mm)
    sizes = tuple(float(v) for v in voxel_size_mm)
    if not isinstance(kernel, VoxelKernel):
        kernel = VoxelKernel(np.asarray(kernel, dtype=np.float64), (sizes[0], sizes[1], sizes[2]), "soft",
                             TISSUE_DENSITY_G_PER_ML["soft"], "caller-supplied kernel")
    for have, want in zip(kernel.voxel_size_mm, sizes, strict=True):
        if abs(have - want) > 0.01 * want:
            raise DosimetryInputError("voxel_size_mm", f"kernel voxel size {kernel.voxel_size_mm} mm does not "
                                                       f"match the image voxel size {sizes} mm")
    if not (half_life_h > 0 and math.isfinite(half_life_h)):
        raise DosimetryInputError("half_life_h", f"must be positive, got {half_life_h}")
    values, total = _calibrated(counts, calibration_mask, activity_gbq)
    # cumulated activity per count in MBq·s; S in mGy/(MBq·s) → Gy: × 1e-3
    scale = activity_gbq * 1e3 * mean_life_s(half_life_h) / total * 1e-3
    return values, kernel, scale


def kernel_dose_gy(counts: npt.ArrayLike, voxel_size_mm: Sequence[float], activity_gbq: float,
                   kernel: VoxelKernel | npt.ArrayLike, density_g_per_ml: float | npt.ArrayLike = 1.03,
                   calibration_mask: npt.ArrayLike | None = None, *, half_life_h: float = Y90_HALF_LIFE_H,
                   workers: int = -1) -> FloatArray:
    """Kernel-convolution dose map (Gy): D = (A·τ·c/Σc) ⊛ S · ρ_kernel/ρ.

    ``kernel``: a :class:`VoxelKernel` (from :func:`services.dosimetry.kernel_tables.load_kernel`) whose
    voxel size must match ``voxel_size_mm`` within 1 %, or a plain array of S-values in
    mGy/(MBq·s) for soft tissue (1.04 g/mL) on the image grid. ``density_g_per_ml`` scales the
    dose by ρ_kernel/ρ (scalar or array). Other arguments as :func:`ldm_dose_gy`.
    A density map is applied after the convolution, which does not depend on it: the same map as
    :func:`dose_from_energy_density` of :func:`kernel_energy_density` (a caller whose density map
    comes late can convolve first; a scalar density is folded into the convolution's scale, equal
    to float rounding). FFT round-off leaves tiny negatives where no dose reaches:
    they are clipped to 0 before the density divides (ρ > 0, so the sign is the same).
    """
    values, kernel, scale = _kernel_inputs(counts, voxel_size_mm, activity_gbq, kernel, calibration_mask,
                                           half_life_h)
    rho = _density(density_g_per_ml, values.shape)
    if isinstance(rho, float):
        return _convolve(values, kernel, scale * kernel.density_g_per_ml / rho, workers, clip=True)
    out = _convolve(values, kernel, scale * kernel.density_g_per_ml, workers, clip=True)
    np.divide(out, rho, out=out, casting="unsafe")
    return out


def kernel_energy_density(counts: npt.ArrayLike, voxel_size_mm: Sequence[float], activity_gbq: float,
                          kernel: VoxelKernel | npt.ArrayLike, calibration_mask: npt.ArrayLike | None = None, *,
                          half_life_h: float = Y90_HALF_LIFE_H, workers: int = -1) -> FloatArray:
    """The energy the kernel convolution deposits per volume, in Gy·g/mL: D·ρ = (A·τ·c/Σc) ⊛ S ·
    ρ_kernel, which holds whatever the density (the kernel's first-order density scaling). Divided
    by a density map (:func:`dose_from_energy_density`), it is :func:`kernel_dose_gy`'s map.
    Arguments as :func:`kernel_dose_gy`; the array is new and the caller's to divide in place."""
    values, kernel, scale = _kernel_inputs(counts, voxel_size_mm, activity_gbq, kernel, calibration_mask,
                                           half_life_h)
    return _convolve(values, kernel, scale * kernel.density_g_per_ml, workers, clip=True)


def dose_from_energy_density(energy: FloatArray, density_g_per_ml: float | npt.ArrayLike) -> FloatArray:
    """Absorbed dose (Gy) of :func:`kernel_energy_density`'s ``energy`` in tissue of
    ``density_g_per_ml`` (scalar or an array of its shape, checked as :func:`kernel_dose_gy`
    checks it): ``energy`` divided in place and returned."""
    rho = _density(density_g_per_ml, energy.shape)
    np.divide(energy, rho, out=energy, casting="unsafe")
    return energy
