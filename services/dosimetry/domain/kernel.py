"""Voxel S-value kernels (MIRD Pamphlet 17, Bolch et al., J Nucl Med 40:11S, 1999) as data.

A :class:`VoxelKernel` holds a full, odd-sized kernel ``S[i, j, k]`` in mGy/(MBq·s): the mean
absorbed dose rate in the voxel at offset (i, j, k) per MBq uniformly distributed in the centre
voxel, for one tissue. The Y-90 tables of Lanconelli et al. (Phys. Med. Biol. 57:517, 2012) give one
octant (offsets 0..5) for cubic voxels; :func:`kernel_from_octant` mirrors it to 11×11×11.

Tissue densities of those tables (ICRU 44, as used by Lanconelli 2012; checked by energy balance:
Σ S × voxel mass = 0.935 MeV per decay for both tissues): soft tissue 1.04 g/mL, compact bone
1.85 g/mL.

Kernels for voxel sizes that are not tabulated (EANM 2022 asks for the kernel of the image's
voxel size; MIRD Pamphlet 17):

- cubic voxels between two tabulated sizes s1 < v < s2 (:func:`interpolate_kernel`):
  log S(i, j, k) is interpolated linearly in log v between the two tables, offset by offset, then
  scaled so that Σ S·m_voxel keeps the energy per decay of the tables (energy conservation).
  Checked leave-one-out against the tables: centre and face-neighbour values within 3 %.
- non-cubic voxels (vx, vy, vz) (:func:`anisotropic_kernel`): the cubic kernel of the
  volume-equivalent size v_eq = (vx·vy·vz)^(1/3) gives the centre value; every other offset takes
  the cubic kernel's radial profile (S averaged over offsets at equal centre distance,
  interpolated log-linearly in distance) at its distance √((I·vx)² + (J·vy)² + (K·vz)²); the
  kernel is then scaled to conserve energy. An approximation, documented in docs/dosimetry.md.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from services.dosimetry.domain.constants import MEV_TO_J
from services.dosimetry.domain.errors import DosimetryInputError

__all__ = [
    "TISSUE_DENSITY_G_PER_ML",
    "VoxelKernel",
    "anisotropic_kernel",
    "interpolate_kernel",
    "kernel_from_octant",
]

#: Density of the kernels' tissues (g/mL): ICRU 44 soft tissue and compact bone.
TISSUE_DENSITY_G_PER_ML = {"soft": 1.04, "bone": 1.85}


@dataclass(frozen=True, eq=False)
class VoxelKernel:
    """A full voxel S-value kernel (odd sizes, centre at the middle) in mGy/(MBq·s).

    ``spectra`` caches real FFTs of the kernel for padded grid shapes (filled by the engine).
    """

    values: npt.NDArray[np.float64]
    voxel_size_mm: tuple[float, float, float]
    tissue: str
    density_g_per_ml: float
    source: str
    resampled: bool = False
    spectra: dict[tuple[Any, ...], Any] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        # a read-only view: kernels are shared (memoised by the loader); the caller's array is untouched
        view = self.values.view()
        view.flags.writeable = False
        object.__setattr__(self, "values", view)
        if self.values.ndim != 3 or any(n % 2 == 0 for n in self.values.shape):
            raise DosimetryInputError("kernel", f"a kernel must be 3-D with odd sizes, got {self.values.shape}")
        if any(not (v > 0 and math.isfinite(v)) for v in self.voxel_size_mm):
            raise DosimetryInputError("voxel_size_mm", f"voxel sizes must be positive, got {self.voxel_size_mm}")

    @property
    def voxel_volume_ml(self) -> float:
        vx, vy, vz = self.voxel_size_mm
        return vx * vy * vz / 1000.0

    @property
    def voxel_mass_kg(self) -> float:
        return self.density_g_per_ml * self.voxel_volume_ml / 1000.0

    def energy_per_decay_mev(self) -> float:
        """Σ S × voxel mass: mean energy absorbed per decay (MeV). ≈ 0.935 for Y-90."""
        total_gy_per_bq_s = float(self.values.sum()) * 1e-3 * 1e-6
        return total_gy_per_bq_s * self.voxel_mass_kg / MEV_TO_J


def kernel_from_octant(rows: Iterable[tuple[int, int, int, float]], voxel_size_mm: float, tissue: str,
                       source: str) -> VoxelKernel:
    """Mirror one octant of ``(i, j, k, S)`` rows (i, j, k ≥ 0) to the full kernel.

    Raises when the octant is incomplete (every (i, j, k) up to the largest index must be present).
    """
    rows = list(rows)
    if not rows:
        raise DosimetryInputError("kernel", "empty kernel table")
    n = 1 + max(max(i, j, k) for i, j, k, _ in rows)
    octant = np.full((n, n, n), np.nan)
    for i, j, k, s in rows:
        if min(i, j, k) < 0:
            raise DosimetryInputError("kernel", f"negative index in kernel table: {(i, j, k)}")
        octant[i, j, k] = s
    if np.isnan(octant).any():
        raise DosimetryInputError("kernel", f"kernel octant of size {n} is incomplete")
    idx = np.abs(np.arange(-(n - 1), n))
    full = octant[np.ix_(idx, idx, idx)]
    if tissue not in TISSUE_DENSITY_G_PER_ML:
        raise DosimetryInputError("tissue", f"unknown tissue {tissue!r}; expected soft or bone")
    return VoxelKernel(np.ascontiguousarray(full), (voxel_size_mm,) * 3, tissue,
                       TISSUE_DENSITY_G_PER_ML[tissue], source)


def _energy_scale(values: npt.NDArray[np.float64], voxel_size_mm: tuple[float, float, float],
                  reference: VoxelKernel) -> npt.NDArray[np.float64]:
    """Scale ``values`` so that Σ S·V_voxel equals the reference kernel's (same tissue density)."""
    ref = float(reference.values.sum()) * reference.voxel_volume_ml
    vol = voxel_size_mm[0] * voxel_size_mm[1] * voxel_size_mm[2] / 1000.0
    return values * (ref / (float(values.sum()) * vol))


def interpolate_kernel(lower: VoxelKernel, upper: VoxelKernel, voxel_size_mm: float) -> VoxelKernel:
    """Cubic kernel for ``voxel_size_mm`` between two tabulated cubic kernels (log-log, see module doc)."""
    s1, s2, v = lower.voxel_size_mm[0], upper.voxel_size_mm[0], float(voxel_size_mm)
    if lower.tissue != upper.tissue or lower.values.shape != upper.values.shape:
        raise DosimetryInputError("kernel", "interpolation needs two kernels of the same tissue and shape")
    if not s1 <= v <= s2 or s1 >= s2:
        raise DosimetryInputError("voxel_size_mm", f"{v} mm is not between {s1} and {s2} mm")
    if np.any(lower.values <= 0) or np.any(upper.values <= 0):
        raise DosimetryInputError("kernel", "log interpolation needs positive kernel values")
    w = (math.log(v) - math.log(s1)) / (math.log(s2) - math.log(s1))
    log_s = np.log(lower.values) * (1.0 - w) + np.log(upper.values) * w
    values = _energy_scale(np.exp(log_s), (v, v, v), lower)
    return VoxelKernel(values, (v, v, v), lower.tissue, lower.density_g_per_ml,
                       f"{lower.source}; interpolated between {s1:g} and {s2:g} mm", resampled=True)


def _radial_profile(kernel: VoxelKernel) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """(r_mm, log S) of a kernel, S averaged over offsets at equal centre distance."""
    shape = kernel.values.shape
    grids = np.meshgrid(*[(np.arange(n) - n // 2) * kernel.voxel_size_mm[a] for a, n in enumerate(shape)],
                        indexing="ij")
    r = np.round(np.sqrt(grids[0] ** 2 + grids[1] ** 2 + grids[2] ** 2).ravel(), 6)
    s = kernel.values.ravel()
    uniq, inverse = np.unique(r, return_inverse=True)
    mean_s = np.bincount(inverse, weights=s) / np.bincount(inverse)
    return uniq, np.log(mean_s)


def anisotropic_kernel(cubic: VoxelKernel, voxel_size_mm: tuple[float, float, float]) -> VoxelKernel:
    """Kernel for non-cubic voxels from the cubic kernel of the volume-equivalent size (module doc)."""
    vx, vy, vz = (float(x) for x in voxel_size_mm)
    r_tab, log_s = _radial_profile(cubic)
    r_max = float(r_tab[-1])
    half = [max(1, min(12, math.ceil(r_max / v))) for v in (vx, vy, vz)]
    gx, gy, gz = np.meshgrid(*[np.arange(-h, h + 1) * v for h, v in zip(half, (vx, vy, vz), strict=True)],
                             indexing="ij")
    r = np.sqrt(gx**2 + gy**2 + gz**2)
    values = np.exp(np.interp(r, r_tab, log_s))
    values[r > r_max] = 0.0
    values[half[0], half[1], half[2]] = cubic.values[tuple(n // 2 for n in cubic.values.shape)]
    values = _energy_scale(values, (vx, vy, vz), cubic)
    return VoxelKernel(values, (vx, vy, vz), cubic.tissue, cubic.density_g_per_ml,
                       f"{cubic.source}; mapped to {vx:g}x{vy:g}x{vz:g} mm from {cubic.voxel_size_mm[0]:.3g} mm",
                       resampled=True)
