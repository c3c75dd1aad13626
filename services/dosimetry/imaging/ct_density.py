"""The CT's mass density on the emission grid, worked out slice by slice as the CT arrives.

A voxel job needs the CT for one thing: the mass density averaged over each emission voxel
(:func:`.resample.density_on_grid`). When the CT's slices are parallel to the emission grid's
planes (the same orientation, any spacing, offset or flip: every SPECT/CT and PET/CT), that exact
box average is separable, and its in-plane half needs only one slice. So each instance, as the
PACS sends it, is turned into density (the stored-value table gather of :func:`.resample.slice_density`,
with that slice's own rescale) and reduced onto the emission grid's rows and columns
(:class:`.resample.PlaneAverage`, from that slice's own ImagePositionPatient); what is kept of it
is one emission-sized plane (64 KiB at 128 × 128) and its Image Plane attributes. Once the
series is in, the slices are put in order along the normal and checked as every per-slice series
is (:func:`.slices.slice_geometry`), and the reduced planes are weighted onto the emission slices
by their overlap along the normal (:func:`.resample.through_plane_average`).

No CT-sized array is made: a 512 × 512 × 256 CT (128 MiB stored) leaves 16 MiB of reduced planes.
The result equals ``density_on_grid(ct_volume(...), grid)`` to float32 rounding. A series whose
slices are shifted in-plane from one another (a gantry-tilted acquisition stored as a sheared
stack) is averaged slice by slice where each slice lies, which is what its slices say; the
stacked path treats such a stack as an oblique grid and samples it instead.

Anything else, an enhanced multi-frame CT or slices oblique to the emission grid, is stacked
(:func:`.ct.ct_volume`) and averaged as before.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
from pydicom.dataset import Dataset

from services.dosimetry.imaging.attributes import plain_get
from services.dosimetry.imaging.ct import (
    ct_slices,
    ct_volume,
    first_instance,
    is_multiframe_ct,
    slice_header,
)
from services.dosimetry.imaging.grid import Grid
from services.dosimetry.imaging.resample import (
    SOFT_TISSUE_DENSITY_G_PER_ML,
    PlaneAverage,
    coverage_axes,
    ct_coverage,
    density_on_grid,
    overlap_weights,
    slice_density,
    through_plane_average,
)
from services.dosimetry.imaging.slices import (
    check_volume_bytes,
    image_plane,
    rescale,
    slice_geometry,
)

__all__ = ["CtOnGrid", "ct_density_on_grid", "outside_ct"]

#: Largest off-axis component (relative) of a target axis for it to count as parallel to a CT
#: axis: as :func:`.resample.density_on_grid` decides between its separable and general paths.
_PARALLEL = 1e-6


@dataclass(frozen=True)
class CtOnGrid:
    """``density`` (g/mL, float64) on the target grid; the CT's own ``grid``; ``header``, the first
    instance's attributes without its Pixel Data (names the study); the CT's series UID."""

    density: np.ndarray
    grid: Grid
    header: Dataset
    series_uid: str


def _axes(orientation: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Unit vectors of a slice's (normal, column direction, row direction): CT index axes k, j, i."""
    row, col = orientation[:3], orientation[3:]
    return np.cross(row, col), col, row


def _parallel(target: Grid, orientation: np.ndarray) -> bool:
    """Whether each of the target's index axes lies along the matching CT axis."""
    axes = _axes(orientation)
    for a in range(3):
        step = target.affine[:3, a]
        off = [abs(float(step @ axes[b])) for b in range(3) if b != a]
        if max(off) > _PARALLEL * float(np.linalg.norm(step)):
            return False
    return True


def _in_plane(target: Grid, position: np.ndarray, orientation: np.ndarray, spacing: tuple[float, float],
              shape: tuple[int, int], cval: float, cache: dict[tuple[float, ...], PlaneAverage]) -> PlaneAverage:
    """The in-plane average of a slice at ``position``: target row t covers the slice's rows
    ((T0 − position)·col + t·(a_j·col)) / spacing_row, and columns alike."""
    # in Python floats (NumPy's per-call cost on 3-vectors was most of this, every slice); no
    # normal: done for every slice, it is not needed
    rx, ry, rz, cx, cy, cz = orientation.tolist()
    px, py, pz = position.tolist()
    (ax, ay, az), (bx, by, bz), (t_x, t_y, t_z) = target.affine[:3, 1:4].T.tolist()
    ox, oy, oz = t_x - px, t_y - py, t_z - pz
    # rounded (to 1e-9 of a CT pixel): the slices of one stack, whose positions differ by
    # floating-point noise in a rotated frame, share one set of weights
    rows = (round((ax * cx + ay * cy + az * cz) / spacing[0], 9), round((ox * cx + oy * cy + oz * cz) / spacing[0], 9))
    columns = (round((bx * rx + by * ry + bz * rz) / spacing[1], 9),
               round((ox * rx + oy * ry + oz * rz) / spacing[1], 9))
    key = (*rows, *columns, *shape)
    average = cache.get(key)
    if average is None:
        average = cache[key] = PlaneAverage.between(shape[0], shape[1], target.shape[1], target.shape[2],
                                                    rows, columns, cval)
    return average


def ct_density_on_grid(datasets: Iterable[Dataset], target: Grid, expected: int = 0,
                       outside_g_per_ml: float = SOFT_TISSUE_DENSITY_G_PER_ML) -> CtOnGrid:
    """The CT series' mass density on ``target`` (as :func:`.resample.density_on_grid`), read as
    its instances arrive; ``expected``, the instance count the PACS lists, sizes what is kept."""
    first, rest, expected = first_instance(datasets, expected)
    if is_multiframe_ct(first, expected) or not _parallel(target, image_plane(first, "CT")[1]):
        ct = ct_volume(itertools.chain([first], rest), expected)
        return CtOnGrid(density_on_grid(ct, target, outside_g_per_ml), ct.grid, ct.header, ct.series_uid)
    planes = np.empty((max(expected, 1), target.shape[1] * target.shape[2]), dtype=np.float32)
    headers: list[Dataset] = []
    cache: dict[tuple[float, ...], PlaneAverage] = {}
    itemsize = 0
    density: np.ndarray | None = None  # one slice's density, reused slice after slice
    # masked=False: a slice's bits above Bits Stored are shifted out by its density table
    for ds, pixels in ct_slices(first, rest, expected, masked=False):
        position, orientation, spacing = image_plane(ds, "CT")
        average = _in_plane(target, position, orientation, spacing, pixels.shape, outside_g_per_ml, cache)
        n = len(headers)
        if n == planes.shape[0]:  # more instances than the PACS listed
            planes = np.concatenate([planes, np.empty((max(1, n // 2), planes.shape[1]), dtype=np.float32)])
        slope, intercept = rescale(ds)
        if density is None or density.shape != pixels.shape:
            density = np.empty(pixels.shape, dtype=np.float32)
        bits = plain_get(ds, "BitsStored")
        slice_density(pixels, slope, intercept, bits=bits if isinstance(bits, int) else 0, out=density)
        average(density, out=planes[n])
        itemsize = pixels.dtype.itemsize
        headers.append(slice_header(ds, whole=not headers))
        del ds, pixels  # the instance (with its Pixel Data) is not held past its slice
    order, grid = slice_geometry(headers, "CT")
    check_volume_bytes("CT", grid.shape, itemsize)  # the bound a stacked CT has
    normal = _axes(grid.orientation)[0]
    step = float(grid.affine[:3, 0] @ normal)  # the slice spacing along the normal
    through = (float(target.affine[:3, 0] @ normal) / step,
               float((target.affine[:3, 3] - grid.affine[:3, 3]) @ normal) / step)
    w_k = overlap_weights(target.shape[0], grid.shape[0], *through)
    density = through_plane_average(planes, order, w_k, target.shape, outside_g_per_ml)
    return CtOnGrid(density, grid, headers[0], str(headers[0].get("SeriesInstanceUID", "")))


def outside_ct(ct: Grid, target: Grid, least: float = 0.5) -> np.ndarray:
    """The ``target`` voxels less than ``least`` inside the CT volume: ``ct_coverage(ct, target) <
    least``, without a float volume of the shares when the axes are parallel (each distinct share
    of a target slice times the slice's in-plane shares, multiplied in :func:`.resample.ct_coverage`'s
    order, so the same voxels): at 128³ 3.6 → 0.8 ms on the job's path after its CT."""
    axes = coverage_axes(ct, target)
    if axes is None:
        return np.asarray(ct_coverage(ct, target) < least)
    k, j, i = axes
    out = np.empty(target.shape, dtype=np.bool_)
    for share in np.unique(k):
        out[k == share] = (share * j)[:, np.newaxis] * i[np.newaxis, :] < least
    return out
