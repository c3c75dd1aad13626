"""DICOM SEG (PS3.3 A.51, C.8.20), each segment as a mask on the activity grid.

The usual SEG (BINARY or LABELMAP, uncompressed, one orientation and pixel spacing for all
frames, shared or repeated in every frame, frames forming one regularly spaced stack) is read
directly by :mod:`.seg_frames`,
each segment assembled over its bounding box only; every other SEG is read by highdicom as
below, which is the reference: the two are tested to give the same masks.

highdicom's reader (:meth:`highdicom.seg.Segmentation.from_dataset`, ``get_volume``) places
the frames in patient coordinates from the Plane Position / Orientation and Pixel Measures
functional groups wherever the standard allows them (Shared or Per-frame, PS3.3 C.7.6.16),
including SEGs whose empty frames are omitted and slice spacings that are not round numbers
(regular within 1 % of the mean step, highdicom's default tolerance). BINARY, FRACTIONAL and
LABELMAP SEGs are read, one segment at a time (a volume per segment, not all at once).

Each segment becomes the fraction (0-1) of each voxel of the SEG's own grid that it covers
(binary: 0 or 1; fractional: the stored value / MaximumFractionalValue), then moves to the
activity grid by :func:`~services.dosimetry.imaging.resample.resample_mask`: an activity voxel
is in the VOI when at least half of it is covered. A segment may overlap others (a whole-liver
segment containing the lesion segments is the usual case).

Refused, by name (:class:`SegmentationError`): another Frame of Reference (0020,0052), frames
that do not form one regularly spaced volume, a segment with no pixel set, a segment that does
not overlap the activity volume.
"""

from __future__ import annotations

import sqlite3
from typing import Any

import numpy as np
from pydicom.dataset import Dataset

from services.dosimetry.imaging.errors import SegmentationError
from services.dosimetry.imaging.grid import Grid
from services.dosimetry.imaging.resample import resample_mask
from services.dosimetry.imaging.seg_frames import SegFrames, mask_on_grid, read_frames, segment_box
from services.dosimetry.imaging.voi_types import Voi, check_nonempty, voi_role

__all__ = ["SEG_STORAGE", "SEG_STORAGE_CLASSES", "seg_vois"]

SEG_STORAGE = "1.2.840.10008.5.1.4.1.1.66.4"
#: Segmentation Storage and Label Map Segmentation Storage (PS3.4 B.5).
SEG_STORAGE_CLASSES = (SEG_STORAGE, "1.2.840.10008.5.1.4.1.1.66.7")

_EXPRESSION = "segmentationSeriesUid"
# What highdicom raises on a SEG it cannot interpret (malformed or missing attributes; its frame
# table is an SQLite table whose columns refuse a per-frame value given empty).
_READ_ERRORS = (ValueError, RuntimeError, AttributeError, KeyError, TypeError, IndexError, sqlite3.Error)


def _read(ds: Dataset, what: str, copy: bool) -> Any:
    import highdicom as hd

    try:
        return hd.seg.Segmentation.from_dataset(ds, copy=copy)
    except _READ_ERRORS as exc:
        raise SegmentationError(f"{what} cannot be read as a DICOM SEG: {exc}", _EXPRESSION) from exc


def _segment_fraction(seg: Any, number: int, what: str) -> tuple[np.ndarray, Grid]:
    """Segment ``number`` on the SEG's own grid: a boolean mask (BINARY, LABELMAP), or the covered
    fraction (float32, 0-1) of a FRACTIONAL SEG. A SEG on a clinical CT grid has the CT's voxel
    count, so a binary segment stays one byte per voxel (a float copy would be four)."""
    try:
        volume = seg.get_volume(segment_numbers=[number], combine_segments=False, rescale_fractional=True,
                                skip_overlap_checks=True)
    except _READ_ERRORS as exc:
        raise SegmentationError(
            f"{what}: its frames do not form one regularly spaced volume (PlanePositionSequence "
            f"ImagePositionPatient (0020,0032), PixelMeasuresSequence): {exc}", _EXPRESSION) from exc
    array = np.asarray(volume.array)
    if array.ndim == 4:
        array = array[..., 0]
    fraction: np.ndarray
    if seg.segmentation_type.value == "FRACTIONAL":
        fraction = np.clip(array.astype(np.float32), 0.0, 1.0)
    elif array.dtype == np.uint8 and int(array.max(initial=0)) <= 1:
        fraction = array.view(np.bool_)  # 0/1 bytes are booleans already: no copy
    else:
        fraction = array > 0
    shape = (int(array.shape[0]), int(array.shape[1]), int(array.shape[2]))
    grid = Grid(shape, np.asarray(volume.affine, dtype=np.float64), str(seg.get("FrameOfReferenceUID", "")))
    return fraction, grid


def _label_and_code(desc: Dataset) -> tuple[str, str, str]:
    """A SegmentSequence item's label (or ``segment N``), segmented property type code and TrackingUID."""
    label = str(desc.get("SegmentLabel", "") or f"segment {desc.get('SegmentNumber')}")
    codes = desc.get("SegmentedPropertyTypeCodeSequence")
    code = str(codes[0].get("CodeValue", "")) if codes else ""
    return label, code, str(desc.get("TrackingUID", "") or "")


def _voi(what: str, number: int, desc: Dataset, mask: np.ndarray | None) -> Voi:
    """The VOI of segment ``number`` whose mask on the activity grid is ``mask`` (None: the segment
    has no pixel set on its own grid)."""
    label, code, tracking_uid = _label_and_code(desc)
    if mask is None:
        raise SegmentationError(f"{what} segment {number} {label!r} has no pixel set", _EXPRESSION)
    check_nonempty(label, mask, "SEG")
    return Voi(label, mask, voi_role(label, code), "segmentation", code, tracking_uid)


def _direct_vois(ds: Dataset, frames: SegFrames, target: Grid, what: str) -> list[Voi] | None:
    """The VOIs of a SEG :func:`~.seg_frames.read_frames` placed, one segment at a time, each
    assembled over its bounding box only; None when a segment description is not one highdicom
    reads (the caller then reads the SEG with highdicom, which names the fault)."""
    import highdicom as hd

    try:
        descriptions = [hd.seg.SegmentDescription.from_dataset(item, copy=True) for item in ds.SegmentSequence]
    except _READ_ERRORS:
        return None
    padding = ds.get("PixelPaddingValue")  # a LABELMAP's background "segment" (as highdicom's segment_numbers)
    vois = []
    for desc in descriptions:
        number = int(desc.SegmentNumber)
        if number == padding:
            continue
        box = segment_box(frames, number)
        vois.append(_voi(what, number, desc, None if box is None else mask_on_grid(box, frames.grid, target)))
    return vois


def _highdicom_vois(ds: Dataset, target: Grid, what: str, copy: bool) -> list[Voi]:
    seg = _read(ds, what, copy)
    vois = []
    for number in seg.segment_numbers:
        desc = seg.get_segment_description(number)
        fraction, grid = _segment_fraction(seg, number, what)
        mask = resample_mask(fraction, grid, target) if fraction.any() else None
        vois.append(_voi(what, number, desc, mask))
    return vois


def seg_vois(ds: Dataset, target: Grid, *, copy: bool = True, direct: bool = True) -> list[Voi]:
    """Every segment of a SEG instance as a VOI on ``target``. ``copy=False``: the caller hands
    ``ds`` over (highdicom turns it into its reader in place instead of copying a thousand
    functional-group items first). The usual SEG (BINARY or LABELMAP, uncompressed, one
    orientation, one regular stack: :mod:`.seg_frames`) is read directly; any other, or
    ``direct=False``, with highdicom. Both give the same VOIs."""
    what = f"SEG {ds.get('SOPInstanceUID', '?')}"
    if target.frame_of_reference_uid and ds.get("FrameOfReferenceUID") and \
            str(ds.FrameOfReferenceUID) != target.frame_of_reference_uid:
        raise SegmentationError(f"{what} is in another Frame of Reference (0020,0052) than the activity volume",
                                _EXPRESSION)
    if not ds.get("SegmentSequence"):
        raise SegmentationError(f"{what} has no segments (SegmentSequence (0062,0002))", _EXPRESSION)
    frames = read_frames(ds) if direct else None
    vois = _direct_vois(ds, frames, target, what) if frames is not None else None
    return vois if vois is not None else _highdicom_vois(ds, target, what, copy)
