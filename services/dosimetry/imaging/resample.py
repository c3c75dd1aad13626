"""Resampling CT and VOI masks onto the activity grid, and CT numbers to mass density.

**HU → density.** Piecewise-linear table :data:`HU_TO_DENSITY` (HU, g/mL). Between −70 and
+3000 HU the points are the breakpoints of the four-segment linear fit to the tissue
measurements of Schneider, Pedroni & Lomax, "The calibration of CT Hounsfield units for
radiotherapy treatment planning", Phys. Med. Biol. 41:111-124 (1996), in the form published with
the k-Wave toolbox (``hounsfield2density``: ρ[kg/m³] = 1.0258·(HU+1000) − 5.68 below −70 HU;
0.9083·(HU+1000) + 103.6 up to +98 HU; 0.5108·(HU+1000) + 540.0 up to +260 HU;
0.6625·(HU+1000) + 348.9 above). Below −70 HU the fit would reach −5.7 kg/m³ at −1000 HU, so the
table ends instead at dry air, 0.0012 g/mL at −1000 HU (NIST, air at 20 °C); above +3000 HU
(metal, beyond the fit) the density is held at the fit's 2.999 g/mL. The table is a scanner-independent
default: a site should replace it with its own CT calibration (same format).

**Grids.** :func:`resample_scalar` averages the source over each target voxel, so a fine CT
is averaged onto the coarser emission grid instead of point sampled (mass is conserved). When
the two grids have parallel axes (same ImageOrientationPatient, any spacing, offset or flip:
the usual SPECT/CT and PET/CT case) the average is exact and separable: along each axis the
mean over a target voxel is the difference of the source's running integral at its two edges
(the overlap-weighted mean of the source voxels it covers), taken axis after axis; the CT is
read in blocks of slices (HU → density applied per block), so no full-size float copy of it is
made. For
oblique grids each target voxel is split into m×m×m sub-points (m = ceil(target spacing /
source spacing) per axis), the source is interpolated (trilinear) at each and the sub-samples
are averaged. :func:`resample_mask` computes the same covered fraction of a mask (nearest
sub-samples for oblique grids) and keeps a target voxel when at least half of it is inside.
Outside the CT, :func:`density_on_grid` uses soft tissue (1.04 g/mL) and the pipeline warns with
the share of the counts there; masks are outside.

**Matching.** :func:`check_ct_matches` refuses a CT in another Frame of Reference (0020,0052)
or one that covers less than half of the activity volume (no overlap → error).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import lru_cache
from typing import Any

import numpy as np
from scipy import ndimage, sparse

from services.dosimetry.imaging.ct import CtVolume
from services.dosimetry.imaging.errors import CtMismatchError
from services.dosimetry.imaging.grid import Grid
from services.dosimetry.imaging.pixels import without_unused_bits
from services.dosimetry.imaging.volume import ScalarVolume

__all__ = ["HU_TO_DENSITY", "MIN_CT_OVERLAP", "SOFT_TISSUE_DENSITY_G_PER_ML", "PlaneAverage",
           "check_ct_matches", "coverage_axes", "ct_coverage", "density_on_grid", "hu_to_density_g_per_ml",
           "overlap_weights", "resample_mask", "resample_mask_box", "resample_scalar", "slice_density",
           "through_plane_average"]

#: (HU, g/mL) points of the piecewise-linear calibration (see the module docstring for sources).
HU_TO_DENSITY: tuple[tuple[float, float], ...] = (
    (-1000.0, 0.0012),
    (-70.0, 0.948307),
    (98.0, 1.100897),
    (260.0, 1.183652),
    (3000.0, 2.999004),
)

#: Share of the activity volume the CT must cover.
MIN_CT_OVERLAP = 0.5

#: Density given to the part of the emission volume the CT does not cover: ICRU soft tissue,
#: 1.04 g/mL (as the dose engine's soft-tissue kernel, ``services.dosimetry.domain.voxel``).
SOFT_TISSUE_DENSITY_G_PER_ML = 1.04


def hu_to_density_g_per_ml(hu: np.ndarray, table: tuple[tuple[float, float], ...] = HU_TO_DENSITY) -> np.ndarray:
    """Mass density (g/mL) of CT numbers by linear interpolation in ``table`` (clamped at the
    ends); float32 in, float32 out."""
    xs = np.array([p[0] for p in table])
    ys = np.array([p[1] for p in table])
    arr = np.asarray(hu)
    out = np.interp(arr, xs, ys)
    return np.asarray(out.astype(np.float32) if arr.dtype == np.float32 else out)


def _subsamples(source: Grid, target: Grid) -> tuple[int, int, int]:
    s_sp, t_sp = source.spacing_mm, target.spacing_mm
    m = tuple(max(1, math.ceil(t / s - 1e-6)) for s, t in zip(s_sp, t_sp, strict=True))
    return (m[0], m[1], m[2])


#: Source voxels converted and reduced at a time (whole slices, at least one): the CT is read in
#: blocks of this size, so no full float copy of it is ever made (2 slices of a 512² CT, ~10 MiB
#: of temporaries).
_BLOCK_VOXELS = 2**19


def overlap_weights(n_target: int, n_source: int, scale: float, offset: float) -> np.ndarray:
    """1-D weights (n_target × n_source): the share of target voxel t (source coordinates
    ``scale·t + offset`` ± |scale|/2) covered by source voxel u ([u − ½, u + ½])."""
    centres = scale * np.arange(n_target, dtype=np.float64) + offset
    half = abs(scale) / 2.0
    lo = (centres - half)[:, np.newaxis]
    hi = (centres + half)[:, np.newaxis]
    u = np.arange(n_source, dtype=np.float64)[np.newaxis, :]
    overlap = np.clip(np.minimum(hi, u + 0.5) - np.maximum(lo, u - 0.5), 0.0, None)
    return np.asarray(overlap / (2.0 * half))


def _axis_aligned(matrix: np.ndarray) -> bool:
    off = matrix[:3, :3] - np.diag(np.diag(matrix[:3, :3]))
    return bool(np.abs(off).max() <= 1e-6 * np.abs(np.diag(matrix[:3, :3])).max())


def _density_lut(table: tuple[tuple[float, float], ...]) -> tuple[float, np.ndarray, np.ndarray] | None:
    """(first HU, value, slope) per whole HU over the table's range, when its breakpoints are
    whole numbers: the table is then linear within every unit interval, so value + fraction ×
    slope is its interpolation exactly, at the cost of two gathers instead of a binary search."""
    xs = [p[0] for p in table]
    if not all(float(x).is_integer() for x in xs) or xs[-1] - xs[0] > 20000:
        return None
    hu = np.arange(xs[0], xs[-1] + 1.0)
    values = np.interp(hu, xs, [p[1] for p in table])
    slopes = np.append(np.diff(values), 0.0)
    return xs[0], values.astype(np.float32), slopes.astype(np.float32)


_DEFAULT_LUT = _density_lut(HU_TO_DENSITY)


def _block_density(hu: np.ndarray) -> np.ndarray:
    """:func:`hu_to_density_g_per_ml` of one block of CT slices (float32)."""
    if _DEFAULT_LUT is None:  # pragma: no cover - the bundled table has whole-number breakpoints
        return hu_to_density_g_per_ml(hu)
    first, values, slopes = _DEFAULT_LUT
    h = np.clip(hu, first, first + len(values) - 1, dtype=np.float32)
    index = h.astype(np.int32)  # toward zero: the cell of every whole or positive CT number
    whole = np.array_equal(index, h)  # the usual CT: integer stored values, slope 1, whole intercept
    if not whole:
        cell = np.floor(h)
        h -= cell
        index = cell.astype(np.int32)
    index -= np.int32(first)
    out: np.ndarray = values[index]
    if not whole:
        out += h * slopes[index]
    return out


#: Source columns per block of the in-plane column weights (see :class:`PlaneAverage`).
_COLUMN_BLOCK = 128


def _column_blocks(w_i: np.ndarray) -> list[tuple[slice, slice, np.ndarray]]:
    """The column weights ``w_i`` (target × source columns) cut into blocks of source columns:
    (source columns, the target columns they reach, that dense sub-block transposed, float32)."""
    blocks = []
    for start in range(0, w_i.shape[1], _COLUMN_BLOCK):
        sub = w_i[:, start:start + _COLUMN_BLOCK]
        reached = np.flatnonzero(sub.any(axis=1))
        if reached.size:
            lo, hi = int(reached[0]), int(reached[-1]) + 1
            blocks.append((slice(start, start + sub.shape[1]), slice(lo, hi),
                           np.ascontiguousarray(sub[lo:hi].T, dtype=np.float32)))
    return blocks


class PlaneAverage:
    """The in-plane half of the exact separable average: a source slice (rows × columns) reduced
    onto the target's rows and columns by the overlap weights ``w_j`` (target rows × source rows)
    and ``w_i`` (target columns × source columns), less ``cval`` times the share of each target
    pixel the weights cover (so the through-plane sum plus ``cval`` counts the part outside the
    source as ``cval``).

    Rows first, by the sparse row weights, which multiply the slice as it lies in memory; then
    the columns of that (rows/ratio smaller) result, block by block of 128 source columns against
    the few target columns each block reaches: small dense products on strided views. A sparse
    product on that side would first copy the result transposed (0.18-0.22 ms a 512 × 512 CT
    slice onto 128 × 128, against 0.065 ms in blocks).
    """

    def __init__(self, w_j: np.ndarray, w_i: np.ndarray, cval: float) -> None:
        self.size = w_j.shape[0] * w_i.shape[0]
        self._shape = (w_j.shape[0], w_i.shape[0])
        self._start = (-cval * np.outer(w_j.sum(axis=1), w_i.sum(axis=1))).astype(np.float32)
        self._rows = sparse.csr_matrix(w_j.astype(np.float32))  # (tj, nj)
        self._columns = _column_blocks(w_i)

    @classmethod
    def between(cls, source_rows: int, source_columns: int, target_rows: int, target_columns: int,
                rows: tuple[float, float], columns: tuple[float, float], cval: float) -> PlaneAverage:
        """Target row t covers source rows ``rows[0]·t + rows[1]`` (± half a scale), columns alike."""
        return cls(overlap_weights(target_rows, source_rows, *rows),
                   overlap_weights(target_columns, source_columns, *columns), cval)

    def __call__(self, plane: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """The reduced slice, flat (target rows × columns, float32), written into ``out`` when given."""
        reduced = np.asarray(self._rows @ plane)  # (target rows, source columns)
        if out is None:
            out = np.empty(self.size, dtype=np.float32)
        result = out.reshape(self._shape)
        np.copyto(result, self._start)
        for source, target, weights in self._columns:
            result[:, target] += reduced[:, source] @ weights
        return out


def _add_through_plane(out: np.ndarray, w: np.ndarray, planes: np.ndarray) -> None:
    """``out += w @ planes`` over the target slices ``w`` (target × these source slices) touches."""
    touched = np.flatnonzero(w.any(axis=1))
    if touched.size:
        lo, hi = int(touched[0]), int(touched[-1]) + 1
        out[lo:hi] += w[lo:hi] @ planes


def through_plane_average(planes: np.ndarray, order: np.ndarray, w_k: np.ndarray,
                          target_shape: tuple[int, int, int], cval: float) -> np.ndarray:
    """The separable average's last axis: reduced source slices (each from :class:`PlaneAverage`;
    ``planes[order[k]]`` is source slice k) weighted onto the target slices they overlap, and
    ``cval`` added back (float64, summed in float64 16 slices at a time: no copy of ``planes``)."""
    out = np.zeros((target_shape[0], planes.shape[1]), dtype=np.float64)
    for start in range(0, len(order), 16):
        _add_through_plane(out, w_k[:, start:start + 16], planes[order[start:start + 16]])
    out += cval
    return out.reshape(target_shape)


def _separable_average(values: np.ndarray, matrix: np.ndarray, target_shape: tuple[int, int, int], cval: float,
                       transform: Callable[[np.ndarray, int], np.ndarray] | None = None) -> np.ndarray:
    """Exact volume-weighted average for grids with parallel axes (same orientation, any
    spacing, offset or flip): the overlap weights of each axis applied in turn; the share of a
    target voxel outside the source counts as ``cval``. ``transform(block, first slice)`` (e.g.
    stored value → density) is applied to the source as it is read.

    The source is read in blocks of whole slices (:data:`_BLOCK_VOXELS`) reduced in-plane first
    (sparse weights, ~1 + 1/ratio non-zeros per source voxel), then added to the target slices it
    touches: besides the caller's array only a block's temporaries and the float64 result are held.
    """
    nk, nj, ni = values.shape
    w_k = overlap_weights(target_shape[0], nk, float(matrix[0, 0]), float(matrix[0, 3]))
    in_plane = PlaneAverage.between(nj, ni, target_shape[1], target_shape[2],
                                    (float(matrix[1, 1]), float(matrix[1, 3])),
                                    (float(matrix[2, 2]), float(matrix[2, 3])), cval)
    step = max(1, _BLOCK_VOXELS // (nj * ni))
    out = np.zeros((target_shape[0], in_plane.size), dtype=np.float64)
    for start in range(0, nk, step):
        block = values[start:start + step]
        block = transform(block, start) if transform is not None else block.astype(np.float32, copy=False)
        n = block.shape[0]
        plane = np.empty((n, in_plane.size), dtype=np.float32)
        for s in range(n):
            in_plane(block[s], out=plane[s])
        _add_through_plane(out, w_k[:, start:start + n], plane)
    out += cval
    return out.reshape(target_shape)


def _axis_coverage(n_source: int, scale: float, offset: float, n_target: int) -> np.ndarray:
    """Share of each target voxel inside the source along one axis."""
    return np.asarray(overlap_weights(n_target, n_source, scale, offset).sum(axis=1))


def _index_matrix(source: Grid, target: Grid) -> np.ndarray:
    """Target index → source index: inv(A_src) · A_tgt (4×4 homogeneous)."""
    return np.asarray(np.linalg.inv(source.affine) @ target.affine)


def _sample(values: np.ndarray, source: Grid, target: Grid, order: int, cval: float,
            matrix: np.ndarray | None = None) -> np.ndarray:
    """Mean of ``values`` over each target voxel.

    Grids with parallel axes (the usual SPECT/CT and PET/CT case): exact volume-weighted
    average (:func:`_separable_average`). Oblique grids: mean of m×m×m sub-samples per target
    voxel (order 1 trilinear, 0 nearest). ``matrix``: :func:`_index_matrix` of the two grids
    when the caller has it already.
    """
    if matrix is None:
        matrix = _index_matrix(source, target)
    if _axis_aligned(matrix):
        return _separable_average(values, matrix, target.shape, cval)
    values = values.astype(np.float32, copy=False)
    m = _subsamples(source, target)
    acc = np.zeros(target.shape, dtype=np.float64)
    ones = np.ones(values.shape, dtype=np.float32) if order != 0 else values
    offsets = [[(a + 0.5) / n - 0.5 for a in range(n)] for n in m]
    for dk in offsets[0]:
        for dj in offsets[1]:
            for di in offsets[2]:
                shifted = matrix.copy()
                shifted[:3, 3] = matrix[:3, :3] @ np.array([dk, dj, di]) + matrix[:3, 3]
                if order == 0:
                    # nearest sample; outside the source's voxels ([-½, n-½) per axis) is cval
                    acc += ndimage.affine_transform(values, shifted, output_shape=target.shape, order=0,
                                                    mode="grid-constant", cval=cval)
                    continue
                # trilinear with edge values up to half a voxel beyond the outer centres ("constant"
                # mode would drop a point 1e-15 outside the first centre), then cval further out
                sampled = ndimage.affine_transform(values, shifted, output_shape=target.shape, order=1,
                                                   mode="nearest", prefilter=False)
                inside = ndimage.affine_transform(ones, shifted, output_shape=target.shape, order=0,
                                                  mode="grid-constant", cval=0.0)
                acc += np.where(inside > 0.5, sampled, cval)
    return acc / (m[0] * m[1] * m[2])


def resample_scalar(volume: ScalarVolume, target: Grid, cval: float) -> np.ndarray:
    """``volume`` averaged onto ``target`` (trilinear sub-samples); ``cval`` outside."""
    return np.asarray(_sample(volume.values, volume.grid, target, 1, cval), dtype=np.float64)


def resample_mask(mask: np.ndarray, source: Grid, target: Grid) -> np.ndarray:
    """A boolean mask on ``source`` moved onto ``target``: a target voxel is in when at least
    half of its volume is (parallel grids), or half of its nearest sub-samples are (oblique)."""
    return _mask_on(mask, source, target, _index_matrix(source, target))


def resample_mask_box(box: np.ndarray, start: tuple[int, int, int], source: Grid, target: Grid) -> np.ndarray:
    """:func:`resample_mask` of a mask given as its bounding box ``box``, whose first voxel is
    ``start`` on ``source`` (all else 0): the same voxels, without a source-sized mask on
    parallel grids. Outside its box the mask is 0, the value outside the source: averaging the box
    alone (its index origin moved to the box's corner) gives the same fractions at a fraction of
    the cost. Oblique grids: the whole mask is made and sampled."""
    return _mask_box_on(box, start, source, target, _index_matrix(source, target))


def _mask_on(mask: np.ndarray, source: Grid, target: Grid, matrix: np.ndarray) -> np.ndarray:
    """:func:`resample_mask` with the grids' :func:`_index_matrix` ``matrix`` (worked out once a mask)."""
    if not _axis_aligned(matrix):
        return np.asarray(_sample(mask, source, target, 0, 0.0, matrix) >= 0.5 - 1e-6)
    box = _bounding_box(mask)
    if box is None:
        return np.zeros(target.shape, dtype=bool)
    return _mask_box_on(mask[box], (box[0].start, box[1].start, box[2].start), source, target, matrix)


def _mask_box_on(box: np.ndarray, start: tuple[int, int, int], source: Grid, target: Grid,
                 matrix: np.ndarray) -> np.ndarray:
    """:func:`resample_mask_box` with the grids' :func:`_index_matrix` ``matrix``."""
    if not _axis_aligned(matrix):
        full = np.zeros(source.shape, dtype=np.bool_)
        full[start[0]:start[0] + box.shape[0], start[1]:start[1] + box.shape[1], start[2]:start[2] + box.shape[2]] = box
        return _mask_on(full, source, target, matrix)
    moved = matrix.copy()
    for axis, first in enumerate(start):
        moved[axis, 3] -= first
    # Only the target voxels the box reaches are averaged (a tumour's few of a 128³ grid): the rest
    # are outside the box, whose outside is 0. Their sub-grid starts at ``reach``'s first voxels.
    reach: list[tuple[int, int]] = []
    for axis in range(3):
        weights = overlap_weights(target.shape[axis], box.shape[axis], float(moved[axis, axis]),
                                  float(moved[axis, 3]))
        touched = np.flatnonzero(weights.any(axis=1))
        if touched.size == 0:
            return np.zeros(target.shape, dtype=bool)
        reach.append((int(touched[0]), int(touched[-1]) + 1))
    for axis, (lo, _hi) in enumerate(reach):
        moved[axis, 3] += moved[axis, axis] * lo
    (k0, k1), (j0, j1), (i0, i1) = reach
    frac = _separable_average(box, moved, (k1 - k0, j1 - j0, i1 - i0), 0.0)
    out = np.zeros(target.shape, dtype=bool)
    out[k0:k1, j0:j1, i0:i1] = frac >= 0.5 - 1e-6
    return out


def _bounding_box(mask: np.ndarray) -> tuple[slice, slice, slice] | None:
    """The smallest index box holding every true voxel of a 3-D mask (None when empty)."""
    slices = np.flatnonzero(mask.any(axis=(1, 2)))
    if slices.size == 0:
        return None
    k = slice(int(slices[0]), int(slices[-1]) + 1)
    plane = np.asarray(mask[k].any(axis=0))
    rows = np.flatnonzero(plane.any(axis=1))
    cols = np.flatnonzero(plane.any(axis=0))
    return k, slice(int(rows[0]), int(rows[-1]) + 1), slice(int(cols[0]), int(cols[-1]) + 1)


def check_ct_matches(ct: Grid, activity: Grid) -> float:
    """Refuse a CT that cannot describe the activity volume; returns the overlap fraction."""
    if ct.frame_of_reference_uid and activity.frame_of_reference_uid and \
            ct.frame_of_reference_uid != activity.frame_of_reference_uid:
        raise CtMismatchError(
            f"the CT is in another Frame of Reference ({ct.frame_of_reference_uid}) than the activity series "
            f"({activity.frame_of_reference_uid}) (FrameOfReferenceUID (0020,0052)): not a registered SPECT/CT or "
            "PET/CT", "FrameOfReferenceUID")
    overlap = activity.overlap_fraction(ct)
    if overlap < MIN_CT_OVERLAP:
        lo, hi = ct.bounds_mm()
        alo, ahi = activity.bounds_mm()
        raise CtMismatchError(
            f"the CT covers {overlap:.0%} of the activity volume (CT {np.round(lo, 1).tolist()}–"
            f"{np.round(hi, 1).tolist()} mm, activity {np.round(alo, 1).tolist()}–{np.round(ahi, 1).tolist()} mm); "
            f"at least {MIN_CT_OVERLAP:.0%} is needed (ImagePositionPatient (0020,0032))", "ImagePositionPatient")
    return overlap


def _stored_lut(dtype: np.dtype[Any], slope: float, intercept: float, bits: int = 0) -> np.ndarray:
    """Density (float32) of every stored value of a 1- or 2-byte integer type, in the order a
    signed index wraps to (``lut[-1]`` is the stored value −1): the density of a CT slice is then
    one gather, ``lut[stored]``, exact to float32 at any slope and intercept. ``bits`` (Bits
    Stored, when fewer than the type's): each code's bits above it are shifted out first, as the
    decoder does (PS3.5 8.1.1), so values read with them still set map as the decoded ones."""
    width = 8 * dtype.itemsize
    return _cached_lut(dtype.str, slope, intercept, bits if 0 < bits < width else width)


@lru_cache(maxsize=32)
def _cached_lut(dtype: str, slope: float, intercept: float, bits: int) -> np.ndarray:
    kind = np.dtype(dtype).newbyteorder("=")
    codes = np.arange(1 << (8 * kind.itemsize), dtype=np.int64).astype(kind)  # wraps signed types
    codes = without_unused_bits(codes, bits)  # as the decoder does
    lut = hu_to_density_g_per_ml(codes.astype(np.float64) * slope + intercept).astype(np.float32)
    lut.flags.writeable = False
    return lut


def slice_density(stored: np.ndarray, slope: float, intercept: float, *, bits: int = 0,
                  out: np.ndarray | None = None) -> np.ndarray:
    """Mass density (float32) of stored CT values (one slice or a block of slices sharing one
    rescale): a gather in the stored-value table for 1- and 2-byte integers, else from HU.
    ``bits``: Bits Stored, for values that may still carry the bits above it (``masked=False``
    of :func:`.pixels.decoded_pixels`; already decoded values map the same). ``out``: a float32
    array of the same shape to write into (a caller reducing slice after slice reuses one)."""
    if stored.dtype.kind in "iu" and stored.dtype.itemsize <= 2:
        # np.take with the stored values seen as unsigned (the table is in that wrapped order, so
        # every index is inside it and mode="wrap" skips the bounds checks): 0.17 ms a 512 × 512
        # slice into a reused array, against 0.23 ms into a new one, 0.27-0.31 ms by fancy
        # indexing and 0.9 ms by np.take of signed indices with negative values (numpy 2.4)
        unsigned = stored.view(stored.dtype.str.replace("i", "u"))
        return np.take(_stored_lut(stored.dtype, slope, intercept, bits), unsigned, out=out, mode="wrap")
    hu = without_unused_bits(stored, bits).astype(np.float32) * np.float32(slope) + np.float32(intercept)
    density = _block_density(hu)
    if out is None:
        return density
    np.copyto(out, density)
    return out


def _density_reader(ct: CtVolume) -> Callable[[np.ndarray, int], np.ndarray]:
    """Stored values of slices [start, start + n) → density (float32)."""
    runs = ct.rescale_runs()

    def read(block: np.ndarray, start: int) -> np.ndarray:
        inside = [r for r in runs if r[0] <= start and start + block.shape[0] <= r[1]]
        if inside:  # the usual CT: one rescale for the whole block
            return slice_density(block, inside[0][2], inside[0][3])
        out = np.empty(block.shape, dtype=np.float32)
        for first, end, slope, intercept in runs:
            lo, hi = max(first, start), min(end, start + block.shape[0])
            if lo < hi:
                out[lo - start:hi - start] = slice_density(block[lo - start:hi - start], slope, intercept)
        return out

    return read


def density_on_grid(ct: ScalarVolume | CtVolume, target: Grid,
                    outside_g_per_ml: float = SOFT_TISSUE_DENSITY_G_PER_ML) -> np.ndarray:
    """Mass density (g/mL) on ``target``: HU → density on the CT grid, then box averaged.

    The part of a target voxel outside the CT counts as ``outside_g_per_ml``, soft tissue by
    default: an emission field of view longer than the CT goes on into the patient, and air there
    would multiply the local-deposition dose of its counts by ~900 (1.04 / 0.0012).
    A :class:`CtVolume` is read by stored value, slice block by slice block: no CT-sized array of
    HU or density is made (grids with parallel axes; an oblique one needs the density map).
    """
    matrix = _index_matrix(ct.grid, target)
    if isinstance(ct, CtVolume):
        read = _density_reader(ct)
        if _axis_aligned(matrix):
            return _separable_average(ct.stored, matrix, target.shape, outside_g_per_ml, read)
        density = ScalarVolume(read(ct.stored, 0), ct.grid, "g/mL")
        return resample_scalar(density, target, cval=outside_g_per_ml)
    if _axis_aligned(matrix):
        # HU → density block by block as the CT is reduced: no CT-sized density array
        return _separable_average(ct.values, matrix, target.shape, outside_g_per_ml,
                                  lambda block, _start: _block_density(block))
    density = ScalarVolume(hu_to_density_g_per_ml(ct.values), ct.grid, "g/mL")
    return resample_scalar(density, target, cval=outside_g_per_ml)


def ct_coverage(ct: Grid, target: Grid) -> np.ndarray:
    """Share (0–1) of each ``target`` voxel that lies inside the CT volume."""
    axes = coverage_axes(ct, target)
    if axes is not None:  # the product of the three axes' shares: no CT-sized array of ones
        k, j, i = axes
        return np.asarray(k[:, np.newaxis, np.newaxis] * j[np.newaxis, :, np.newaxis] * i[np.newaxis, np.newaxis, :])
    return _sample(np.ones(ct.shape, dtype=np.float32), ct, target, 0, 0.0)


def coverage_axes(ct: Grid, target: Grid) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """The share of each target slice, row and column inside the CT (their product is
    :func:`ct_coverage`), or None when the grids' axes are not parallel."""
    matrix = _index_matrix(ct, target)
    if not _axis_aligned(matrix):
        return None
    return (_axis_coverage(ct.shape[0], float(matrix[0, 0]), float(matrix[0, 3]), target.shape[0]),
            _axis_coverage(ct.shape[1], float(matrix[1, 1]), float(matrix[1, 3]), target.shape[1]),
            _axis_coverage(ct.shape[2], float(matrix[2, 2]), float(matrix[2, 3]), target.shape[2]))
