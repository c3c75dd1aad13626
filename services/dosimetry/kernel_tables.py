"""Loading the Y-90 voxel S-value tables (file I/O, so outside ``domain/``).

Tables: Lanconelli N. et al., "A free database of radionuclide voxel S values for the dosimetry
of nonuniform activity distributions", Phys. Med. Biol. 57 (2012) 517-533; Y-90 in soft tissue
and compact bone for 13 cubic voxel sizes (2.21-9.28 mm), one octant each (files
``90Y<size>mm<soft|bone>.txt``, two Latin-1 header lines, rows ``i j k S`` in mGy/(MBq·s)).

Where the tables are read from, first match wins:

1. the ``kernel_dir`` argument;
2. the environment variable ``VSV_KERNEL_DIR`` (a relative path is resolved against the
   repository root);
3. the copy bundled with the service, ``services/dosimetry/data/vsv-y90/`` (default).

:func:`load_kernel` picks the table for the image voxel size, or builds one
(:mod:`services.dosimetry.domain.kernel`: log-log interpolation between the two neighbouring
cubic tables; volume-equivalent radial mapping for non-cubic voxels). It raises
:class:`KernelUnavailableError` (a :class:`DosimetryInputError` naming ``voxel_size_mm``) when a
voxel edge lies outside the tabulated range 2.21-9.28 mm (1 % tolerance), when the tissue is
unknown, or when no tables are found.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Sequence
from functools import cache, lru_cache
from pathlib import Path

from services.dosimetry.domain.errors import DosimetryInputError
from services.dosimetry.domain.kernel import (
    VoxelKernel,
    anisotropic_kernel,
    interpolate_kernel,
    kernel_from_octant,
)

__all__ = [
    "BUNDLED_KERNEL_DIR",
    "KERNEL_SOURCE",
    "KernelUnavailableError",
    "available_sizes_mm",
    "kernel_dir",
    "load_kernel",
    "read_table",
]

REPO_ROOT = Path(__file__).resolve().parents[2]
#: Kernel tables shipped with the service.
BUNDLED_KERNEL_DIR = Path(__file__).resolve().parent / "data" / "vsv-y90"
KERNEL_SOURCE = "Lanconelli et al., Phys. Med. Biol. 57:517 (2012), Y-90 voxel S values"
#: Relative tolerance when matching a voxel size to a table.
SIZE_TOLERANCE = 0.01
_NAME = re.compile(r"^90Y(?P<size>\d+(?:\.\d+)?)mm(?P<tissue>soft|bone)\.txt$")


class KernelUnavailableError(DosimetryInputError):
    """No tabulated kernel for the voxel size and no way to build one."""


def kernel_dir(explicit: str | Path | None = None) -> Path:
    """The folder the tables are read from (see the module doc for the order)."""
    if explicit:
        return Path(explicit)
    env = os.environ.get("VSV_KERNEL_DIR", "").strip()
    if env:
        path = Path(env)
        return path if path.is_absolute() else (REPO_ROOT / path).resolve()
    return BUNDLED_KERNEL_DIR


def read_table(path: Path, tissue: str, size_mm: float) -> VoxelKernel:
    """Read one octant table (Latin-1 header) and mirror it to the full kernel."""
    rows: list[tuple[int, int, int, float]] = []
    with path.open(encoding="latin-1") as fh:
        for lineno, line in enumerate(fh):
            if lineno < 2 or not line.strip():
                continue
            parts = line.split()
            if len(parts) != 4:
                raise DosimetryInputError("kernel", f"{path.name} line {lineno + 1}: expected 'i j k S'")
            rows.append((int(parts[0]), int(parts[1]), int(parts[2]), float(parts[3])))
    return kernel_from_octant(rows, size_mm, tissue, f"{KERNEL_SOURCE}, {path.name}")


def _tables(directory: str, tissue: str) -> dict[float, Path]:
    found: dict[float, Path] = {}
    base = Path(directory)
    if base.is_dir():
        for entry in base.iterdir():
            match = _NAME.match(entry.name)
            if match and match["tissue"] == tissue:
                found[float(match["size"])] = entry
    return dict(sorted(found.items()))


@cache
def _read_cached(path: str, modified_ns: int, tissue: str, size_mm: float) -> VoxelKernel:
    return read_table(Path(path), tissue, size_mm)


def _cubic_table(directory: str, tissue: str, size_mm: float) -> VoxelKernel:
    path = _tables(directory, tissue)[size_mm]
    return _read_cached(str(path), path.stat().st_mtime_ns, tissue, size_mm)


def available_sizes_mm(tissue: str = "soft", directory: str | Path | None = None) -> tuple[float, ...]:
    """Tabulated cubic voxel sizes (mm) for a tissue."""
    return tuple(_tables(str(kernel_dir(directory)), tissue))


def _cubic(directory: str, tissue: str, size_mm: float) -> VoxelKernel:
    sizes = list(_tables(directory, tissue))
    for s in sizes:
        if abs(s - size_mm) <= SIZE_TOLERANCE * s:
            return _cubic_table(directory, tissue, s)
    lower = max(s for s in sizes if s < size_mm)
    upper = min(s for s in sizes if s > size_mm)
    return interpolate_kernel(_cubic_table(directory, tissue, lower), _cubic_table(directory, tissue, upper),
                              size_mm)


def load_kernel(voxel_size_mm: float | Sequence[float], tissue: str = "soft",
                directory: str | Path | None = None) -> VoxelKernel:
    """The Y-90 kernel for an image voxel size (mm; one number for cubic voxels or (x, y, z) in
    the image array's axis order) and tissue (``soft`` or ``bone``).

    Tabulated when the voxel is cubic and within 1 % of a table (S scaled by the voxel-volume
    ratio, which keeps the energy per decay); otherwise built as described in the module doc.
    Raises :class:`KernelUnavailableError` when neither is possible.
    """
    if tissue not in ("soft", "bone"):
        raise KernelUnavailableError("tissue", f"unknown tissue {tissue!r}; expected soft or bone")
    sizes = (float(voxel_size_mm),) * 3 if isinstance(voxel_size_mm, (int, float)) else tuple(
        float(v) for v in voxel_size_mm)
    if len(sizes) != 3 or any(not (v > 0 and math.isfinite(v)) for v in sizes):
        raise KernelUnavailableError("voxel_size_mm", f"voxel size must be three positive numbers, got {voxel_size_mm}")
    return _load(sizes, tissue, str(kernel_dir(directory)))


@lru_cache(maxsize=2)
def _load(sizes: tuple[float, ...], tissue: str, directory: str) -> VoxelKernel:
    """Memoised so that a worker process reuses the kernel and its cached FFT spectra across jobs
    on the same grid (two kernels at most, each caching two grid shapes)."""
    tabulated = list(_tables(directory, tissue))
    if not tabulated:
        raise KernelUnavailableError("voxel_size_mm", f"no Y-90 {tissue} kernel tables in {directory}")
    low, high = tabulated[0] * (1 - SIZE_TOLERANCE), tabulated[-1] * (1 + SIZE_TOLERANCE)
    if min(sizes) < low or max(sizes) > high:
        raise KernelUnavailableError(
            "voxel_size_mm", f"voxel size {sizes} mm is outside the tabulated range {tabulated[0]:g}-"
                             f"{tabulated[-1]:g} mm; no kernel can be built (resample the image first)")
    x, y, z = sizes
    if max(sizes) - min(sizes) <= SIZE_TOLERANCE * min(sizes):
        side = x if x == y == z else (x * y * z) ** (1 / 3)
        kernel = _cubic(directory, tissue, min(max(side, tabulated[0]), tabulated[-1]))
        # the kernel answers for the image's own (equal within 1 %) voxel sizes; S scales with
        # 1/voxel mass so that the energy per decay is kept
        k = kernel.voxel_size_mm
        scale = (k[0] * k[1] * k[2]) / (x * y * z)
        values = kernel.values if scale == 1.0 else kernel.values * scale
        return VoxelKernel(values, (x, y, z), kernel.tissue, kernel.density_g_per_ml, kernel.source,
                           resampled=kernel.resampled)
    equivalent = min(max((x * y * z) ** (1 / 3), tabulated[0]), tabulated[-1])
    return anisotropic_kernel(_cubic(directory, tissue, equivalent), (x, y, z))
