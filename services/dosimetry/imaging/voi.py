"""Volumes of interest: from DICOM SEG, from RTSTRUCT, or an automatic liver VOI.

- **DICOM SEG** (PS3.3 A.51, C.8.20): read with highdicom (:mod:`.seg`): BINARY, FRACTIONAL and
  LABELMAP, functional groups shared or per frame, empty frames omitted; a voxel of the
  activity grid is in a segment when at least half of it is covered.
- **RTSTRUCT** (PS3.3 A.19, C.8.8.6): CLOSED_PLANAR contours rasterised on the CT by the share
  of each pixel inside them, inner contours as holes (:mod:`.rtstruct`), then moved to the
  activity grid at ≥ 50 % of each voxel; open contours and other Frames of Reference refused.
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
from services.dosimetry.imaging.rtstruct import RTSTRUCT_STORAGE, rtstruct_vois
from services.dosimetry.imaging.seg import SEG_STORAGE, SEG_STORAGE_CLASSES, seg_vois
from services.dosimetry.imaging.voi_types import Voi, voi_role

__all__ = [
    "AUTO_THRESHOLD_FRACTION",
    "RTSTRUCT_STORAGE",
    "SEG_STORAGE",
    "Voi",
    "automatic_liver_voi",
    "is_seg",
    "normal_liver_voi",
    "rtstruct_vois",
    "seg_vois",
    "voi_role",
    "vois_from_dataset",
]

AUTO_THRESHOLD_FRACTION = 0.10
_BODY_DENSITY_G_PER_ML = 0.5


def segmentation_kind(ds: Dataset) -> str | None:
    """``"SEG"`` or ``"RTSTRUCT"`` for a segmentation instance (by SOP Class, else Modality),
    None for any other."""
    sop_class, modality = str(ds.get("SOPClassUID", "")), str(ds.get("Modality", ""))
    if sop_class in SEG_STORAGE_CLASSES or modality == "SEG":
        return "SEG"
    if sop_class == RTSTRUCT_STORAGE or modality == "RTSTRUCT":
        return "RTSTRUCT"
    return None


def is_seg(ds: Dataset) -> bool:
    """A DICOM SEG instance (by SOP Class, else Modality): placed by its own geometry."""
    return segmentation_kind(ds) == "SEG"


def vois_from_dataset(ds: Dataset, reference: Grid | None, target: Grid, *, copy: bool = True) -> list[Voi]:
    """SEG or RTSTRUCT → VOIs; anything else is refused. ``copy=False``: a SEG is read in place
    (the caller does not use ``ds`` again). ``reference``: the grid an RTSTRUCT's contours are
    drawn on (the CT's; ``target`` when None); a SEG does not need it."""
    kind = segmentation_kind(ds)
    if kind == "SEG":
        return seg_vois(ds, target, copy=copy)
    if kind == "RTSTRUCT":
        return rtstruct_vois(ds, reference or target, target)
    what = str(ds.get("Modality", "")) or str(ds.get("SOPClassUID", ""))
    raise SegmentationError(f"the segmentation series holds a {what} instance, "
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


def normal_liver_voi(vois: Sequence[Voi]) -> Voi | None:
    """The liver minus its tumours, when tumour VOIs overlap the liver VOI(s).

    Most contouring tools draw the whole liver and the lesions inside it, so the liver VOI
    includes its tumours; the normal (non-tumoural) liver that limits the treatment (EANM 2022)
    is then derived. Without overlap (a liver drawn around the lesions) there is nothing to
    derive and None is returned.
    """
    liver = [v for v in vois if v.role == "liver"]
    tumours = [v for v in vois if v.role == "tumour"]
    if not liver or not tumours:
        return None
    liver_mask = union(liver)
    tumour_mask = union(tumours)
    if not (liver_mask & tumour_mask).any():
        return None
    normal = liver_mask & ~tumour_mask
    if not normal.any():
        return None
    name = "normal liver" if all(v.name != "normal liver" for v in vois) else "normal liver (derived)"
    return Voi(name, normal, "normal-liver", "derived")


def union(vois: Sequence[Voi]) -> np.ndarray:
    """Union of the masks of ``vois``."""
    out = np.zeros(vois[0].mask.shape, dtype=bool)
    for v in vois:
        out |= v.mask
    return out


__all__ += ["union"]
