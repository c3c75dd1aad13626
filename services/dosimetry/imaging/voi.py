"""Volumes of interest: from DICOM SEG, from RTSTRUCT, or an automatic liver VOI.

- **DICOM SEG** (PS3.3 A.51, C.8.20): each frame is one segment on one plane; the segment comes
  from SegmentIdentificationSequence (0062,000A) and the plane from PlanePositionSequence
  (0020,9113) in the per-frame functional groups, orientation and pixel spacing from the shared
  ones. Each segment is rebuilt on the SEG's own grid then moved to the activity grid
  (:func:`~services.dosimetry.imaging.resample.resample_mask`). BINARY and FRACTIONAL
  (≥ 50 % kept) are read.
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
from dataclasses import dataclass

import numpy as np
from pydicom.dataset import Dataset
from scipy import ndimage

from services.dosimetry.imaging.errors import SegmentationError
from services.dosimetry.imaging.grid import Grid
from services.dosimetry.imaging.resample import resample_mask

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

SEG_STORAGE = "1.2.840.10008.5.1.4.1.1.66.4"
RTSTRUCT_STORAGE = "1.2.840.10008.5.1.4.1.1.481.3"
AUTO_THRESHOLD_FRACTION = 0.10
_BODY_DENSITY_G_PER_ML = 0.5

# SNOMED CT codes of segmented property types → VOI role.
_ROLE_BY_CODE = {"10200004": "liver", "39607008": "lung", "108369006": "tumour", "49755003": "tumour",
                 "44808001": "lung", "3341006": "lung"}


@dataclass(frozen=True)
class Voi:
    """One VOI on the activity grid. ``role``: liver | tumour | lung | other; ``source``:
    ``segmentation`` (SEG), ``rtstruct`` or ``automatic``."""

    name: str
    mask: np.ndarray
    role: str
    source: str
    code: str = ""
    #: The segment's TrackingUID (0062,0021), which names the lesion across studies, when given.
    tracking_uid: str = ""

    @property
    def voxel_count(self) -> int:
        return int(self.mask.sum())


def voi_role(label: str, code: str = "") -> str:
    """Role of a VOI from its SNOMED property type, else from its label text."""
    if code in _ROLE_BY_CODE:
        return _ROLE_BY_CODE[code]
    text = label.lower()
    if "liver" in text or "hepat" in text:
        return "liver"
    if "lung" in text or "pulm" in text:
        return "lung"
    if any(w in text for w in ("tumour", "tumor", "lesion", "metast", "sphere", "gtv")):
        return "tumour"
    return "other"


def _check_nonempty(name: str, mask: np.ndarray, source: str) -> None:
    if not mask.any():
        raise SegmentationError(
            f"{source} VOI {name!r} does not overlap the activity volume (empty after resampling onto it)",
            "segmentationSeriesUid")


# -- DICOM SEG --------------------------------------------------------------------------------

def _frame_item(group: Dataset, keyword: str) -> Dataset | None:
    seq = group.get(keyword)
    return seq[0] if seq else None


def seg_vois(ds: Dataset, target: Grid) -> list[Voi]:
    """Every segment of a SEG instance as a VOI on ``target``."""
    what = f"SEG {ds.get('SOPInstanceUID', '?')}"
    if target.frame_of_reference_uid and ds.get("FrameOfReferenceUID") and \
            str(ds.FrameOfReferenceUID) != target.frame_of_reference_uid:
        raise SegmentationError(f"{what} is in another Frame of Reference (0020,0052) than the activity volume",
                                "segmentationSeriesUid")
    shared = (ds.get("SharedFunctionalGroupsSequence") or [Dataset()])[0]
    per_frame = ds.get("PerFrameFunctionalGroupsSequence")
    if not per_frame:
        raise SegmentationError(f"{what} has no PerFrameFunctionalGroupsSequence (5200,9230)", "segmentationSeriesUid")
    orient_item = _frame_item(shared, "PlaneOrientationSequence") or _frame_item(per_frame[0], "PlaneOrientationSequence")
    measures = _frame_item(shared, "PixelMeasuresSequence") or _frame_item(per_frame[0], "PixelMeasuresSequence")
    if orient_item is None or "ImageOrientationPatient" not in orient_item:
        raise SegmentationError(f"{what} has no ImageOrientationPatient (0020,0037) in PlaneOrientationSequence",
                                "segmentationSeriesUid")
    if measures is None or "PixelSpacing" not in measures:
        raise SegmentationError(f"{what} has no PixelSpacing (0028,0030) in PixelMeasuresSequence",
                                "segmentationSeriesUid")
    iop = np.array([float(v) for v in orient_item.ImageOrientationPatient])
    spacing = (float(measures.PixelSpacing[0]), float(measures.PixelSpacing[1]))
    normal = np.cross(iop[:3], iop[3:])
    pixels = ds.pixel_array
    if pixels.ndim == 2:
        pixels = pixels[np.newaxis]
    fractional = str(ds.get("SegmentationType", "BINARY")).upper() == "FRACTIONAL"
    if fractional:
        max_value = float(ds.get("MaximumFractionalValue") or 255)
        frames_binary = pixels.astype(np.float64) / max_value >= 0.5
    else:
        frames_binary = pixels.astype(bool)
    positions = []
    segment_numbers = []
    for n, item in enumerate(per_frame):
        plane = _frame_item(item, "PlanePositionSequence")
        ident = _frame_item(item, "SegmentIdentificationSequence")
        if plane is None or "ImagePositionPatient" not in plane or ident is None:
            raise SegmentationError(f"{what} frame {n + 1} lacks PlanePositionSequence/ImagePositionPatient or "
                                    "SegmentIdentificationSequence", "segmentationSeriesUid")
        positions.append(np.array([float(v) for v in plane.ImagePositionPatient]))
        segment_numbers.append(int(ident.ReferencedSegmentNumber))
    pos = np.array(positions)
    along = pos @ normal
    levels = np.unique(np.round(along, 3))
    if len(levels) > 1:
        step = float(np.min(np.diff(levels)))
        if measures.get("SpacingBetweenSlices"):
            step = min(step, abs(float(measures.SpacingBetweenSlices)))
    else:
        step = abs(float(measures.get("SpacingBetweenSlices") or measures.get("SliceThickness") or 1.0))
    first = pos[int(np.argmin(along))]
    # Every frame must lie on one plane lattice: the same in-plane origin (PS3.3 C.7.6.16.2.3, frames
    # of one SEG share ImageOrientationPatient and their rows/columns), and a whole number of slice
    # steps from the first plane. Otherwise frames would be placed off by a silent shift.
    in_plane = (pos - first) - np.outer(along - along.min(), normal)
    tolerance_mm = max(0.05 * min(spacing), 0.01)  # DS rounding of exported positions, far below a pixel
    if np.abs(in_plane).max() > tolerance_mm:
        n = int(np.argmax(np.abs(in_plane).max(axis=1)))
        raise SegmentationError(f"{what} frame {n + 1}: PlanePositionSequence ImagePositionPatient (0020,0032) is "
                                f"shifted {np.round(in_plane[n], 2).tolist()} mm in its plane from the first frame; "
                                "frames on different in-plane origins are not supported", "segmentationSeriesUid")
    steps = (along - along.min()) / step
    if np.abs(steps - np.round(steps)).max() * step > max(tolerance_mm, 0.01 * step):
        raise SegmentationError(f"{what}: frame positions along the normal are not whole multiples of the "
                                f"{step:.3f} mm slice step (PlanePositionSequence ImagePositionPatient (0020,0032))",
                                "segmentationSeriesUid")
    n_slices = round((levels[-1] - levels[0]) / step) + 1
    seg_grid = Grid.from_dicom((n_slices, int(ds.Rows), int(ds.Columns)), first, iop, spacing, normal * step,
                               str(ds.get("FrameOfReferenceUID", "")))
    descriptions = {int(s.SegmentNumber): s for s in ds.get("SegmentSequence") or []}
    vois = []
    for number, desc in sorted(descriptions.items()):
        volume = np.zeros(seg_grid.shape, dtype=bool)
        for f, seg_no in enumerate(segment_numbers):
            if seg_no != number:
                continue
            # In-plane offset of this frame from the grid origin must be zero (same plane lattice).
            k = round((along[f] - along.min()) / step)
            volume[k] |= frames_binary[f]
        label = str(desc.get("SegmentLabel", f"segment {number}"))
        code_item = _frame_item(desc, "SegmentedPropertyTypeCodeSequence")
        code = str(code_item.get("CodeValue", "")) if code_item is not None else ""
        mask = resample_mask(volume, seg_grid, target)
        _check_nonempty(label, mask, "SEG")
        vois.append(Voi(label, mask, voi_role(label, code), "segmentation", code,
                        str(desc.get("TrackingUID", "") or "")))
    if not vois:
        raise SegmentationError(f"{what} has no segments (SegmentSequence (0062,0002))", "segmentationSeriesUid")
    return vois


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
        _check_nonempty(name, mask, "RTSTRUCT")
        vois.append(Voi(name, mask, voi_role(name), "rtstruct"))
    if not vois:
        raise SegmentationError(f"{what} has no ROI with CLOSED_PLANAR contours", "segmentationSeriesUid")
    return vois


def vois_from_dataset(ds: Dataset, reference: Grid | None, target: Grid) -> list[Voi]:
    """SEG or RTSTRUCT → VOIs; anything else is refused."""
    sop_class = str(ds.get("SOPClassUID", ""))
    modality = str(ds.get("Modality", ""))
    if sop_class == SEG_STORAGE or modality == "SEG":
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
