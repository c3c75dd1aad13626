"""Volumes of interest: from DICOM SEG, from RTSTRUCT, or an automatic liver VOI.

- **DICOM SEG** (PS3.3 A.51, C.8.20): read with highdicom (:mod:`.seg`): BINARY, FRACTIONAL and
  LABELMAP, functional groups shared or per frame, empty frames omitted; a voxel of the
  activity grid is in a segment when at least half of it is covered.
- **RTSTRUCT** (PS3.3 A.19, C.8.8.6): CLOSED_PLANAR contours (ContourData (3006,0050), patient
  mm) are rasterised on a reference grid (the CT) slice by slice, even-odd rule over all
  contours of an ROI on a slice (so holes are holes), then moved to the activity grid.
- **Automatic liver VOI** (when no segmentation is given; labelled ``automatic``): inside the
  body (CT density > 0.5 g/mL, largest connected component, holes filled; without a CT, the
  whole volume), the voxels whose activity is at least :data:`AUTO_THRESHOLD_FRACTION` (10 %)
  of the 99.9th percentile of activity in the body, excluding lung-density voxels
  (< 0.5 g/mL), then the largest 6-connected component with holes filled. It is the perfused
  liver as the activity shows it, not an anatomical liver contour: the report says so.

A segment that ends up empty on the activity grid (no overlap) is an error naming it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from pydicom.dataset import Dataset
from scipy import ndimage

from services.dosimetry.imaging.errors import SegmentationError
from services.dosimetry.imaging.grid import Grid
from services.dosimetry.imaging.resample import resample_mask
from services.dosimetry.imaging.seg import SEG_STORAGE, SEG_STORAGE_CLASSES, seg_vois
from services.dosimetry.imaging.voi_types import Voi, check_nonempty, voi_role

__all__ = [
    "AUTO_THRESHOLD_FRACTION",
    "RTSTRUCT_STORAGE",
    "SEG_STORAGE",
    "Voi",
    "automatic_liver_voi",
    "rtstruct_vois",
    "seg_vois",
    "voi_role",
    "vois_from_dataset",
]

RTSTRUCT_STORAGE = "1.2.840.10008.5.1.4.1.1.481.3"
AUTO_THRESHOLD_FRACTION = 0.10
_BODY_DENSITY_G_PER_ML = 0.5


# -- RTSTRUCT ---------------------------------------------------------------------------------

def _even_odd_fill(polygon_ji: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Pixels (row j, column i) whose centres lie inside ``polygon_ji`` (even-odd rule)."""
    rows, cols = shape
    jj, ii = np.mgrid[0:rows, 0:cols]
    inside = np.zeros(shape, dtype=bool)
    pj, pi = polygon_ji[:, 0], polygon_ji[:, 1]
    n = len(polygon_ji)
    for a in range(n):
        b = (a - 1) % n
        crosses = (pj[a] > jj) != (pj[b] > jj)
        with np.errstate(divide="ignore", invalid="ignore"):
            x_cross = (pi[b] - pi[a]) * (jj - pj[a]) / (pj[b] - pj[a]) + pi[a]
        inside ^= crosses & (ii < x_cross)
    return inside


def rtstruct_vois(ds: Dataset, reference: Grid, target: Grid) -> list[Voi]:
    """Every ROI with closed planar contours, rasterised on ``reference`` then moved to ``target``."""
    what = f"RTSTRUCT {ds.get('SOPInstanceUID', '?')}"
    rois = list(ds.get("StructureSetROISequence") or [])
    names = {int(r.ROINumber): str(r.get("ROIName", f"ROI {r.ROINumber}")) for r in rois}
    # Contours are in the Frame of Reference their ROI names (ReferencedFrameOfReferenceUID
    # (3006,0024), PS3.3 C.8.8.5); in another one the patient coordinates mean another place.
    expected = target.frame_of_reference_uid or reference.frame_of_reference_uid
    if expected:
        for r in rois:
            ref_for = str(r.get("ReferencedFrameOfReferenceUID", ""))
            if ref_for and ref_for != expected:
                raise SegmentationError(
                    f"{what} ROI {names[int(r.ROINumber)]!r} is in another Frame of Reference ({ref_for}, "
                    f"ReferencedFrameOfReferenceUID (3006,0024)) than the images ({expected})",
                    "segmentationSeriesUid")
    vois = []
    for roi in ds.get("ROIContourSequence") or []:
        number = int(roi.ReferencedROINumber)
        name = names.get(number, f"ROI {number}")
        volume = np.zeros(reference.shape, dtype=bool)
        for contour in roi.get("ContourSequence") or []:
            if str(contour.get("ContourGeometricType", "")).upper() != "CLOSED_PLANAR":
                continue
            pts = np.array([float(v) for v in contour.ContourData]).reshape(-1, 3)
            idx = reference.patient_to_index(pts)
            k = round(float(np.mean(idx[:, 0])))
            if not 0 <= k < reference.shape[0] or np.ptp(idx[:, 0]) > 0.5:
                continue  # outside the reference volume, or not in one of its planes
            volume[k] ^= _even_odd_fill(idx[:, 1:], reference.shape[1:])
        mask = resample_mask(volume, reference, target)
        check_nonempty(name, mask, "RTSTRUCT")
        vois.append(Voi(name, mask, voi_role(name), "rtstruct"))
    if not vois:
        raise SegmentationError(f"{what} has no ROI with CLOSED_PLANAR contours", "segmentationSeriesUid")
    return vois


def vois_from_dataset(ds: Dataset, reference: Grid | None, target: Grid) -> list[Voi]:
    """SEG or RTSTRUCT → VOIs; anything else is refused."""
    sop_class = str(ds.get("SOPClassUID", ""))
    modality = str(ds.get("Modality", ""))
    if sop_class in SEG_STORAGE_CLASSES or modality == "SEG":
        return seg_vois(ds, target)
    if sop_class == RTSTRUCT_STORAGE or modality == "RTSTRUCT":
        return rtstruct_vois(ds, reference or target, target)
    raise SegmentationError(f"the segmentation series holds a {modality or sop_class} instance, "
                            "not a DICOM SEG or RTSTRUCT", "segmentationSeriesUid")


# -- automatic --------------------------------------------------------------------------------

def _largest_component(mask: np.ndarray) -> np.ndarray:
    labels, count = ndimage.label(mask)
    if count == 0:
        return mask
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    return np.asarray(labels == int(np.argmax(sizes)))


def automatic_liver_voi(activity: np.ndarray, density_g_per_ml: np.ndarray | None) -> Voi:
    """The documented automatic liver VOI (module docstring), named ``liver (automatic)``."""
    if density_g_per_ml is not None:
        body = ndimage.binary_fill_holes(_largest_component(density_g_per_ml > _BODY_DENSITY_G_PER_ML))
        body = np.asarray(body)
        soft = density_g_per_ml >= _BODY_DENSITY_G_PER_ML
    else:
        body = np.ones(activity.shape, dtype=bool)
        soft = body
    inside = activity[body]
    if inside.size == 0 or float(inside.max()) <= 0:
        raise SegmentationError("no activity inside the body: an automatic liver VOI cannot be drawn",
                                "segmentationSeriesUid")
    level = AUTO_THRESHOLD_FRACTION * float(np.percentile(inside, 99.9))
    candidate = (activity >= level) & body & soft & (activity > 0)
    mask = np.asarray(ndimage.binary_fill_holes(_largest_component(candidate)))
    if not mask.any():
        raise SegmentationError("the automatic liver VOI is empty", "segmentationSeriesUid")
    return Voi("liver (automatic)", mask, "liver", "automatic")


def union(vois: Sequence[Voi]) -> np.ndarray:
    """Union of the masks of ``vois``."""
    out = np.zeros(vois[0].mask.shape, dtype=bool)
    for v in vois:
        out |= v.mask
    return out


__all__ += ["union"]
