"""RTSTRUCT (PS3.3 A.19; Structure Set C.8.8.5, ROI Contour C.8.8.6) to VOIs by partial volume.

Each ROI's CLOSED_PLANAR contours (ContourData (3006,0050), patient mm) are grouped by plane.
On one plane the contours combine by the even-odd rule (symmetric difference), so an inner
contour is a hole, as PS3.3 C.8.8.6.3 describes for contours nested in one another. The
region is rasterised on the reference grid (the CT) as the *fraction of each pixel's area*
inside it: pixels the contour boundary crosses are split into 8 × 8 sub-pixels and tested
with GEOS (shapely ``contains_xy``), the others by their centre. A plane belongs to the
reference slice it lies in (within half a slice); contours of one ROI on several planes of a
slice are united. The fraction then moves to the activity grid
(:func:`~services.dosimetry.imaging.resample.resample_mask`): an activity voxel is in the VOI
when at least half of its volume is.

Refused, each naming the ROI (:class:`SegmentationError`, 422):

- an ROI whose ReferencedFrameOfReferenceUID (3006,0024) is not the images' Frame of Reference;
- an OPEN_PLANAR / OPEN_NONPLANAR contour (ContourGeometricType (3006,0042)): it encloses no
  volume, and closing it silently would invent one;
- a CLOSED_PLANAR contour with fewer than 3 points or whose points do not lie in one plane of
  the reference grid (tilted by more than half a slice);
- an ROI that covers no voxel of the activity volume.

POINT contours (markers) are not volumes and are skipped.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import shapely
from pydicom.dataset import Dataset

from services.dosimetry.imaging.errors import SegmentationError
from services.dosimetry.imaging.grid import Grid
from services.dosimetry.imaging.resample import resample_mask
from services.dosimetry.imaging.voi_types import Voi, check_nonempty, voi_role

__all__ = ["RTSTRUCT_STORAGE", "contour_fraction", "rtstruct_vois"]

RTSTRUCT_STORAGE = "1.2.840.10008.5.1.4.1.1.481.3"
_EXPRESSION = "segmentationSeriesUid"
_SUBPIXELS = 8


@dataclass(frozen=True)
class _Plane:
    """The closed contours of one ROI on one plane, in reference (row j, column i) pixels."""

    slice_index: int
    level: float  # position along the slice axis, in slices (contours of one plane share it)
    ring: np.ndarray


def _plane_region(rings: list[np.ndarray]) -> shapely.Geometry:
    """Even-odd combination of the rings (an inner ring is a hole), as one valid geometry."""
    region = shapely.Polygon()
    for ring in rings:
        polygon = shapely.make_valid(shapely.Polygon(ring[:, ::-1]))  # (x = i, y = j)
        region = shapely.symmetric_difference(region, polygon)
    return region


def contour_fraction(rings: list[np.ndarray], shape: tuple[int, int]) -> np.ndarray:
    """Share (0-1) of each pixel (row j, column i) inside the even-odd region of ``rings``
    (each an (n, 2) array of fractional (j, i) pixel coordinates; pixel (j, i) spans ±½)."""
    fraction = np.zeros(shape, dtype=np.float32)
    region = _plane_region(rings)
    if region.is_empty:
        return fraction
    shapely.prepare(region)
    i0, j0, i1, j1 = region.bounds
    jlo, ilo = max(0, int(np.floor(j0 + 0.5))), max(0, int(np.floor(i0 + 0.5)))
    jhi, ihi = min(shape[0] - 1, int(np.ceil(j1 - 0.5))), min(shape[1] - 1, int(np.ceil(i1 - 0.5)))
    if jlo > jhi or ilo > ihi:
        return fraction
    jj, ii = np.mgrid[jlo:jhi + 1, ilo:ihi + 1]
    box = shapely.contains_xy(region, ii.astype(np.float64), jj.astype(np.float64)).astype(np.float32)
    # Pixels the boundary crosses: those within half a diagonal of it get sub-pixel sampling.
    boundary = shapely.distance(region.boundary, shapely.points(ii.ravel(), jj.ravel())).reshape(ii.shape)
    edge = boundary < 0.7072
    if edge.any():
        offsets = (np.arange(_SUBPIXELS) + 0.5) / _SUBPIXELS - 0.5
        dj, di = np.meshgrid(offsets, offsets, indexing="ij")
        ej, ei = jj[edge], ii[edge]
        sub_x = (ei[:, None] + di.ravel()[None, :]).ravel()
        sub_y = (ej[:, None] + dj.ravel()[None, :]).ravel()
        inside = shapely.contains_xy(region, sub_x, sub_y).reshape(len(ej), -1)
        box[edge] = inside.mean(axis=1)
    fraction[jlo:jhi + 1, ilo:ihi + 1] = box
    return fraction


def _check_frames(ds: Dataset, names: dict[int, str], expected: str, what: str) -> None:
    # Contours are in the Frame of Reference their ROI names (ReferencedFrameOfReferenceUID
    # (3006,0024), PS3.3 C.8.8.5); in another one the patient coordinates mean another place.
    if not expected:
        return
    for r in ds.get("StructureSetROISequence") or []:
        ref_for = str(r.get("ReferencedFrameOfReferenceUID", ""))
        if ref_for and ref_for != expected:
            raise SegmentationError(
                f"{what} ROI {names[int(r.ROINumber)]!r} is in another Frame of Reference ({ref_for}, "
                f"ReferencedFrameOfReferenceUID (3006,0024)) than the images ({expected})", _EXPRESSION)


def _roi_planes(roi: Dataset, name: str, reference: Grid, what: str) -> list[_Plane]:
    planes = []
    for n, contour in enumerate(roi.get("ContourSequence") or [], start=1):
        kind = str(contour.get("ContourGeometricType", "")).upper()
        if kind == "POINT":
            continue
        if kind != "CLOSED_PLANAR":
            raise SegmentationError(
                f"{what} ROI {name!r} contour {n} is {kind or 'of no'} ContourGeometricType (3006,0042): "
                "only CLOSED_PLANAR contours enclose a volume", _EXPRESSION)
        try:
            pts = np.array([float(v) for v in contour.ContourData], dtype=np.float64).reshape(-1, 3)
        except (AttributeError, ValueError) as exc:
            raise SegmentationError(f"{what} ROI {name!r} contour {n}: ContourData (3006,0050) is not a list "
                                    "of x, y, z triplets", _EXPRESSION) from exc
        if len(pts) < 3:
            raise SegmentationError(f"{what} ROI {name!r} contour {n} has {len(pts)} point(s); a closed "
                                    "contour needs at least 3 (ContourData (3006,0050))", _EXPRESSION)
        idx = reference.patient_to_index(pts)
        if np.ptp(idx[:, 0]) > 0.5:
            raise SegmentationError(f"{what} ROI {name!r} contour {n} does not lie in one image plane "
                                    f"(spans {np.ptp(idx[:, 0]):.2f} slices, ContourData (3006,0050))",
                                    _EXPRESSION)
        level = float(np.mean(idx[:, 0]))
        k = round(level)
        if 0 <= k < reference.shape[0]:
            planes.append(_Plane(k, round(level, 2), idx[:, 1:]))
    return planes


def _roi_fraction(planes: list[_Plane], reference: Grid) -> np.ndarray:
    """Covered fraction of each reference voxel: even-odd within a plane, union across planes."""
    volume = np.zeros(reference.shape, dtype=np.float32)
    by_plane: dict[tuple[int, float], list[np.ndarray]] = {}
    for plane in planes:
        by_plane.setdefault((plane.slice_index, plane.level), []).append(plane.ring)
    for (k, _), rings in by_plane.items():
        volume[k] = np.maximum(volume[k], contour_fraction(rings, reference.shape[1:]))
    return volume


def rtstruct_vois(ds: Dataset, reference: Grid, target: Grid) -> list[Voi]:
    """Every ROI with closed planar contours, rasterised on ``reference`` then moved to ``target``."""
    what = f"RTSTRUCT {ds.get('SOPInstanceUID', '?')}"
    rois = list(ds.get("StructureSetROISequence") or [])
    names = {int(r.ROINumber): str(r.get("ROIName", f"ROI {r.ROINumber}")) for r in rois}
    _check_frames(ds, names, target.frame_of_reference_uid or reference.frame_of_reference_uid, what)
    vois = []
    for roi in ds.get("ROIContourSequence") or []:
        number = int(roi.ReferencedROINumber)
        name = names.get(number, f"ROI {number}")
        planes = _roi_planes(roi, name, reference, what)
        if not planes:
            continue
        mask = resample_mask(_roi_fraction(planes, reference), reference, target)
        check_nonempty(name, mask, "RTSTRUCT")
        vois.append(Voi(name, mask, voi_role(name), "rtstruct"))
    if not vois:
        raise SegmentationError(f"{what} has no ROI with CLOSED_PLANAR contours in the image volume", _EXPRESSION)
    return vois
