"""The usual DICOM SEG read directly: each segment's mask on the activity grid without highdicom.

highdicom (:mod:`.seg`) reads any SEG the standard allows, at the cost of a frame database
built from every per-frame functional-group item (~0.3 s for a clinical-size SEG). Most SEGs
are one shape, and :func:`read_frames` reads that shape directly (PS3.3 C.8.20, C.7.6.16):

- Segmentation Storage, SegmentationType BINARY, one bit per pixel (BitsAllocated 1), frames
  packed one after another (PS3.5 8.1.1 and 8.2: a frame need not start on a byte boundary;
  the first pixel is the lowest bit); or Label Map Segmentation Storage, SegmentationType
  LABELMAP, 8 or 16 unsigned bits whose value is the segment number (0 the background:
  PixelPaddingValue absent or 0);
  in an uncompressed little-endian transfer syntax;
- orientation (PlaneOrientationSequence) and pixel spacing (PixelMeasuresSequence) each either
  in the Shared Functional Groups, or in every frame's Per-frame Functional Groups instead with
  the same ImageOrientationPatient, PixelSpacing and SpacingBetweenSlices (given in every frame
  or in none) in each, compared as numbers: highdicom keeps each frame's value and stacks the
  frames only when they are all one (``Image._get_shared_frame_value``: one distinct value;
  no tolerance; SliceThickness neither reader uses); ImagePositionPatient
  (PlanePositionSequence) in every frame;
  ReferencedSegmentNumber (SegmentIdentificationSequence) per frame, or shared by all;
- a Dimension Index Sequence over ReferencedSegmentNumber and ImagePositionPatient only
  (LABELMAP: ImagePositionPatient alone);
- frames that stack into one regularly spaced volume by highdicom's own rule
  (:func:`highdicom.spatial.get_volume_positions`: missing positions allowed, 1 % of the step,
  the SpacingBetweenSlices as the step when given), each (slice, segment) once.

The volume's grid is highdicom's (:class:`highdicom.VolumeGeometry`), so both readers place the
frames on the same voxels. Anything else (FRACTIONAL, compressed, a per-frame orientation or
pixel spacing that differs between frames or is also shared, irregular or duplicated positions,
missing or inconsistent attributes) gives None,
and the caller reads the SEG with highdicom, which stays the reference and names what is wrong.

A segment is assembled only over its bounding box (slices, rows and columns holding a set pixel),
one segment at a time: a CT-sized boolean volume (64 MiB at 512 × 512 × 256) is never made.
:func:`mask_on_grid` moves that box to the activity grid exactly as
:func:`~services.dosimetry.imaging.resample.resample_mask` moves the full mask (which averages
the same bounding box), so the two give the same voxels.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from pydicom.dataset import Dataset

from services.dosimetry.imaging.frame_groups import (
    PIXEL_MEASURES,
    PLANE_ORIENTATION,
    FrameFacts,
    frame_facts,
    series_references_complete,
)
from services.dosimetry.imaging.grid import Grid
from services.dosimetry.imaging.resample import resample_mask_box

__all__ = ["SegFrames", "SegmentBox", "mask_on_grid", "read_frames", "segment_box"]

_SEG_STORAGE = "1.2.840.10008.5.1.4.1.1.66.4"
_LABELMAP_STORAGE = "1.2.840.10008.5.1.4.1.1.66.7"
#: Implicit and explicit VR little endian: Pixel Data stored as is (PS3.5 A.1, A.2).
_UNCOMPRESSED = ("1.2.840.10008.1.2", "1.2.840.10008.1.2.1")
_SEGMENT_NUMBER = 0x0062000B  # ReferencedSegmentNumber, in SegmentIdentificationSequence
_SEGMENT_GROUP = 0x0062000A
_POSITION = 0x00200032  # ImagePositionPatient, in PlanePositionSequence
_POSITION_GROUP = 0x00209113
_DIMENSIONS = {(_SEGMENT_NUMBER, _SEGMENT_GROUP), (_POSITION, _POSITION_GROUP)}
#: Per-frame groups whose values the reference reader would take from each frame instead of the
#: shared item, and this reader does not: RealWorldValueMappingSequence,
#: ConversionSourceAttributesSequence (Plane Orientation and Pixel Measures: :func:`_geometry`).
_PER_FRAME_ONLY_IN_REFERENCE = frozenset({0x00409096, 0x00209172})


@dataclass(frozen=True)
class SegFrames:
    """A SEG's frames placed on its own grid: ``slices[f]`` is frame f's slice index and
    ``segments[f]`` its ReferencedSegmentNumber (BINARY; 0 for a LABELMAP, whose frames hold every
    segment); ``pixels`` the Pixel Data, one bit a pixel (BINARY) or ``bits_allocated``
    (LABELMAP: the segment number, PS3.3 C.8.20.2.1)."""

    grid: Grid
    slices: np.ndarray
    segments: np.ndarray
    pixels: bytes
    bits_allocated: int = 1

    @property
    def labelmap(self) -> bool:
        return self.bits_allocated != 1

    def frames_of(self, number: int) -> np.ndarray:
        """The (0-based) frames that may hold segment ``number``."""
        return np.arange(len(self.slices)) if self.labelmap else np.flatnonzero(self.segments == number)

    def segment_in_frame(self, index: int, number: int) -> np.ndarray | None:
        """Segment ``number`` in frame ``index`` as a boolean (rows, columns) array, None when no
        pixel of it is set there."""
        if not self.labelmap:
            return self.frame(index)
        n = self.grid.shape[1] * self.grid.shape[2]
        dtype = np.dtype("<u1" if self.bits_allocated == 8 else "<u2")
        inside = np.frombuffer(self.pixels, dtype=dtype, count=n, offset=index * n * dtype.itemsize) == number
        return inside.reshape(self.grid.shape[1], self.grid.shape[2]) if inside.any() else None

    def frame(self, index: int) -> np.ndarray | None:
        """BINARY frame ``index`` (0-based) as a boolean (rows, columns) array, None when no pixel is set."""
        rows, columns = self.grid.shape[1], self.grid.shape[2]
        n = rows * columns
        first_bit = index * n
        lo, hi = first_bit // 8, -(-(first_bit + n) // 8)
        packed = np.frombuffer(self.pixels, dtype=np.uint8, count=hi - lo, offset=lo)
        offset = first_bit % 8
        if offset == 0 and n % 8 == 0:
            if not packed.any():
                return None
            bits = np.unpackbits(packed, bitorder="little")
        else:
            bits = np.unpackbits(packed, bitorder="little")[offset:offset + n]
            if not bits.any():
                return None
        return bits.view(np.bool_).reshape(rows, columns)


@dataclass(frozen=True)
class SegmentBox:
    """A segment's pixels within its bounding box, whose first voxel is ``start`` on the SEG grid."""

    mask: np.ndarray
    start: tuple[int, int, int]


def _segment_number(item: Dataset | None) -> int | None:
    """The one ReferencedSegmentNumber of a SegmentIdentificationSequence item (None when absent or
    several: the reference reader keeps one number per frame)."""
    value = item.get("ReferencedSegmentNumber") if item is not None else None
    return value if isinstance(value, int) else None


def _floats(value: Any, count: int) -> list[float] | None:
    try:
        out = [float(v) for v in value]
    except (TypeError, ValueError):
        return None
    return out if len(out) == count else None


def _bits_allocated(ds: Dataset) -> int | None:
    """1 for a BINARY SEG, 8 or 16 for a LABELMAP one, of the shape this reader takes (module
    docstring); None for any other."""
    meta = getattr(ds, "file_meta", None)
    syntax = str(meta.get("TransferSyntaxUID", "")) if meta is not None else ""
    usual = (syntax in _UNCOMPRESSED and ds.get("SamplesPerPixel") == 1 and bool(ds.get("FrameOfReferenceUID"))
             and ds.get("PixelPaddingValue", 0) == 0 and "ImageOrientationSlide" not in ds
             and "ImageCenterPointCoordinatesSequence" not in ds and "PixelData" in ds
             and ds.get("DimensionOrganizationType") != "TILED_FULL"
             and isinstance(ds.get("Rows"), int) and isinstance(ds.get("Columns"), int)
             and int(ds.Rows) > 0 and int(ds.Columns) > 0)
    if not usual:
        return None
    bits, stored = ds.get("BitsAllocated"), ds.get("BitsStored")
    kind = (str(ds.get("SOPClassUID", "")), ds.get("SegmentationType"))
    if kind == (_SEG_STORAGE, "BINARY") and bits == 1 and stored == 1:
        return 1
    if kind == (_LABELMAP_STORAGE, "LABELMAP") and bits in (8, 16) and stored == bits and \
            ds.get("PixelRepresentation") == 0:
        return int(bits)
    return None


def _dimensions(ds: Dataset, labelmap: bool) -> list[int] | None:
    """The dimension index pointers, when they are this reader's: segment number and position
    (BINARY), position alone (LABELMAP)."""
    pointers = []
    for item in ds.get("DimensionIndexSequence", []):
        pair = (int(item.get("DimensionIndexPointer", 0)), int(item.get("FunctionalGroupPointer", 0)))
        if pair not in _DIMENSIONS:
            return None
        pointers.append(pair[0])
    if len(set(pointers)) != len(pointers) or (_SEGMENT_NUMBER in pointers) == labelmap:
        return None
    return pointers


def _one_value(values: list[tuple[float, ...] | None], count: int) -> list[float] | None:
    """The one value ``count`` numbers long that every frame gives (None when a frame lacks it or
    gives other numbers: the reference reader keeps each frame's value and reads the volume only
    when they are all one, compared as numbers)."""
    first = values[0]
    if first is None or len(first) != count or any(value != first for value in values):
        return None
    return list(first)


def _shared_hint(measures: Dataset) -> tuple[bool, float | None]:
    """(readable, the shared SpacingBetweenSlices or None when absent). Present without a value, the
    reference reader looks for it in every frame instead: not read here."""
    if "SpacingBetweenSlices" not in measures:
        return True, None
    between = measures.SpacingBetweenSlices
    hint = _floats([between], 1) if between is not None and not isinstance(between, (list, tuple)) else None
    return (True, hint[0]) if hint and hint[0] != 0.0 else (False, None)


def _orientation(shared: Dataset, frames: list[FrameFacts]) -> list[float] | None:
    """ImageOrientationPatient: the shared item's, or, when it has no Plane Orientation, the one
    every frame gives."""
    if "PlaneOrientationSequence" not in shared:
        return _one_value([frame.orientation for frame in frames], 6)
    sequence = shared.PlaneOrientationSequence
    if not sequence or PLANE_ORIENTATION in frames[0].groups:
        return None  # shared and per frame: left to the reference
    return _floats(sequence[0].get("ImageOrientationPatient", []), 6)


def _measures(shared: Dataset, frames: list[FrameFacts]) -> tuple[list[float], float | None] | None:
    """(PixelSpacing, SpacingBetweenSlices or None): the shared item's, or, when it has no Pixel
    Measures, those every frame gives (SpacingBetweenSlices in every frame or in none)."""
    if "PixelMeasuresSequence" not in shared:
        spacing = _one_value([frame.pixel_spacing for frame in frames], 2)
        betweens = [frame.between for frame in frames]
        if spacing is None or all(between is None for between in betweens):
            return None if spacing is None else (spacing, None)
        between = _one_value(betweens, 1)
        return (spacing, between[0]) if between is not None and between[0] != 0.0 else None
    sequence = shared.PixelMeasuresSequence
    if not sequence or PIXEL_MEASURES in frames[0].groups:
        return None  # shared and per frame: left to the reference
    spacing = _floats(sequence[0].get("PixelSpacing", []), 2)
    readable, hint = _shared_hint(sequence[0])
    return (spacing, hint) if spacing is not None and readable else None


def _geometry(shared: Dataset, frames: list[FrameFacts]) -> tuple[list[float], list[float], float | None] | None:
    """(ImageOrientationPatient, PixelSpacing, SpacingBetweenSlices or None) as the reference reads
    them: each functional group from the shared item, or from every frame when the shared item
    lacks it (a group in both places is left to the reference)."""
    if "PlanePositionSequence" in shared:
        return None
    orientation = _orientation(shared, frames)
    measures = _measures(shared, frames)
    if orientation is None or measures is None:
        return None
    return orientation, measures[0], measures[1]


def _per_frame(frames: list[FrameFacts], dimensions: int, shared_segment: int | None
               ) -> tuple[list[tuple[float, float, float]], list[int]] | None:
    """Each frame's ImagePositionPatient and segment number, checked as the reference reads them:
    Frame Content with one value per dimension in every frame, StackID and InStackPositionNumber
    in every frame or none, a position in every frame, a segment number in every frame unless
    shared, every source image named, no group the reference would read per frame instead of
    from the shared item."""
    positions: list[tuple[float, float, float]] = []
    segments: list[int] = []
    if frames[0].groups & _PER_FRAME_ONLY_IN_REFERENCE:
        return None
    stack = frames[0].stack
    for frame in frames:
        if frame.dimension_values != dimensions or frame.position is None or not frame.sources_named or \
                (stack[0] and not frame.stack[0]) or (stack[1] and not frame.stack[1]):
            return None
        number = shared_segment if shared_segment is not None else frame.segment
        if number is None:
            return None
        positions.append(frame.position)
        segments.append(number)
    return positions, segments


def _grid(ds: Dataset, positions: list[tuple[float, float, float]], orientation: list[float],
          spacing: list[float], hint: float | None) -> tuple[Grid, list[int]] | None:
    """The SEG's volume as highdicom stacks it (its functions, its tolerances), and each frame's slice."""
    from highdicom import VolumeGeometry
    from highdicom.spatial import get_volume_positions

    step, slices = get_volume_positions(image_positions=positions, image_orientation=orientation,
                                        allow_missing_positions=True, allow_duplicate_positions=True,
                                        spacing_hint=hint)
    if step is None or slices is None:
        return None
    count = max(slices) + 1
    rows, columns = int(ds.Rows), int(ds.Columns)
    geometry = VolumeGeometry.from_attributes(
        image_position=positions[slices.index(0)], image_orientation=orientation, rows=rows, columns=columns,
        pixel_spacing=spacing, number_of_frames=count, spacing_between_slices=step, coordinate_system="PATIENT")
    geometry = geometry[0:count][:, 0:rows, 0:columns]
    grid = Grid((count, rows, columns), np.asarray(geometry.affine, dtype=np.float64), str(ds.FrameOfReferenceUID))
    return grid, slices


def _segments_ok(ds: Dataset, segments: list[int], labelmap: bool) -> bool:
    """Segment numbers distinct integers, each frame's among them (BINARY)."""
    numbers = [item.get("SegmentNumber") for item in ds.SegmentSequence]
    if not all(isinstance(n, int) for n in numbers) or len(set(numbers)) != len(numbers):
        return False
    return labelmap or set(segments) <= set(numbers)


def _pixels(ds: Dataset, frames: int, grid: Grid, bits: int) -> bytes | None:
    """The Pixel Data, when it holds every frame; a LABELMAP's values must be at most one above the
    highest segment number (the reference reader cannot index a larger one)."""
    pixels = ds.PixelData
    padding = ds.get("PixelPaddingValue")
    needed = frames * grid.shape[1] * grid.shape[2]
    if not isinstance(pixels, bytes) or len(pixels) * 8 < needed * bits:
        return None
    if bits != 1:
        values = np.frombuffer(pixels, dtype=np.dtype("<u1" if bits == 8 else "<u2"), count=needed)
        numbers = [int(item.SegmentNumber) for item in ds.SegmentSequence if item.SegmentNumber != padding]
        if not numbers or int(values.max(initial=0)) > max(numbers) + 1:
            return None
    return pixels


def read_frames(ds: Dataset) -> SegFrames | None:
    """The SEG's frames on its grid when it has the usual shape (module docstring), else None."""
    bits = _bits_allocated(ds)
    if bits is None:
        return None
    labelmap = bits != 1
    if not series_references_complete(ds):
        return None
    frames = frame_facts(ds)
    shared_seq = ds.get("SharedFunctionalGroupsSequence")
    count = ds.get("NumberOfFrames")
    if not frames or not shared_seq or len(shared_seq) != 1 or count is None or int(count) != len(frames):
        return None
    shared = shared_seq[0]
    geometry = _geometry(shared, frames)
    dimensions = _dimensions(ds, labelmap)
    if geometry is None or dimensions is None:
        return None
    shared_segment = 0 if labelmap else None  # a LABELMAP frame holds every segment
    if not labelmap and "SegmentIdentificationSequence" in shared:
        shared_segment = _segment_number(shared.SegmentIdentificationSequence[0])
        if shared_segment is None:
            return None
    table = _per_frame(frames, len(dimensions), shared_segment)
    if table is None:
        return None
    positions, segments = table
    if not _segments_ok(ds, segments, labelmap):
        return None
    if len(set(zip(positions, segments, strict=True))) != len(positions):
        return None  # two frames of one segment at one position: the reference refuses them
    placed = _grid(ds, positions, *geometry)
    if placed is None:
        return None
    grid, slices = placed
    if len(set(zip(slices, segments, strict=True))) != len(slices):
        return None  # two frames of one segment on one slice
    pixels = _pixels(ds, len(frames), grid, bits)
    if pixels is None:
        return None
    return SegFrames(grid, np.asarray(slices, dtype=np.int64), np.asarray(segments, dtype=np.int64), pixels, bits)


def segment_box(frames: SegFrames, number: int) -> SegmentBox | None:
    """Segment ``number`` within its bounding box (None when no pixel of it is set)."""
    indices = frames.frames_of(number)
    if not frames.labelmap and frames.grid.shape[2] % 8 == 0:
        return _binary_box(frames, number, indices)
    return _box_by_frame(frames, number, indices)


def _binary_box(frames: SegFrames, number: int, indices: np.ndarray) -> SegmentBox | None:
    """:func:`segment_box` of BINARY frames whose rows are whole bytes (512 columns, say), all
    frames at once: the box is found on the packed bytes and only its window is unpacked (the
    frame-by-frame walk took ~4-5 ms a segment of a clinical CT's 256 slices in Python calls)."""
    if indices.size == 0:
        return None
    rows, columns = frames.grid.shape[1], frames.grid.shape[2]
    per_row = columns // 8
    packed = np.frombuffer(frames.pixels, dtype=np.uint8, count=len(frames.slices) * rows * per_row)
    packed = packed.reshape(len(frames.slices), rows, per_row)
    # which of the segment's frames hold a pixel: their bytes read 8 at a time where they can be
    words = packed.reshape(len(frames.slices), -1)
    if words.shape[1] % 8 == 0:
        words = words.view(np.uint64)
    # the segment's frames as one view when they follow one another (as a SEG usually stores
    # them), else gathered; read as they are, no copy or comparison array of them made
    lit = indices[(words[indices[0]:indices[-1] + 1] if _in_a_row(indices) else words[indices]).any(axis=1)]
    if lit.size == 0:
        return None
    slices = frames.slices[lit]
    if np.unique(slices).size != slices.size:  # two frames of the segment on one slice: as read
        return _box_by_frame(frames, number, lit)
    stack = packed[lit[0]:lit[-1] + 1] if _in_a_row(lit) else packed[lit]
    union = np.bitwise_or.reduce(stack, axis=0)  # (rows, bytes): every frame's pixels at once
    hit_rows = np.flatnonzero(union.any(axis=1))
    r0, r1 = int(hit_rows[0]), int(hit_rows[-1]) + 1
    hit_columns = np.flatnonzero(np.unpackbits(np.bitwise_or.reduce(union[r0:r1], axis=0), bitorder="little"))
    c0, c1 = int(hit_columns[0]), int(hit_columns[-1]) + 1
    b0, b1 = c0 // 8, -(-c1 // 8)
    window = np.unpackbits(stack[:, r0:r1, b0:b1], axis=2, bitorder="little")[:, :, c0 - 8 * b0:c1 - 8 * b0]
    k0, k1 = int(slices.min()), int(slices.max()) + 1
    if _in_a_row(slices):
        mask = np.ascontiguousarray(window.view(np.bool_))  # a frame for every slice, in order
    else:
        mask = np.zeros((k1 - k0, r1 - r0, c1 - c0), dtype=np.bool_)
        mask[slices - k0] = window.view(np.bool_)
    return SegmentBox(mask, (k0, r0, c0))


def _in_a_row(numbers: np.ndarray) -> bool:
    """Whether ``numbers`` (integers, not empty) are n, n + 1, n + 2, … in that order."""
    return int(numbers[-1]) - int(numbers[0]) + 1 == numbers.size and bool(np.all(np.diff(numbers) == 1))


def _box_by_frame(frames: SegFrames, number: int, indices: np.ndarray) -> SegmentBox | None:
    """:func:`segment_box` over the frames ``indices`` one by one (a later frame's pixels
    overwrite an earlier one's within its own bounding box)."""
    crops: list[tuple[int, int, int, np.ndarray]] = []
    for index in indices:
        bits = frames.segment_in_frame(int(index), number)
        if bits is None:
            continue
        rows = np.flatnonzero(bits.any(axis=1))
        r0, r1 = int(rows[0]), int(rows[-1]) + 1
        cols = np.flatnonzero(bits[r0:r1].any(axis=0))
        c0, c1 = int(cols[0]), int(cols[-1]) + 1
        crops.append((int(frames.slices[index]), r0, c0, bits[r0:r1, c0:c1].copy()))
    if not crops:
        return None
    k0 = min(c[0] for c in crops)
    r0 = min(c[1] for c in crops)
    c0 = min(c[2] for c in crops)
    k1 = max(c[0] for c in crops) + 1
    r1 = max(c[1] + c[3].shape[0] for c in crops)
    c1 = max(c[2] + c[3].shape[1] for c in crops)
    mask = np.zeros((k1 - k0, r1 - r0, c1 - c0), dtype=np.bool_)
    for k, r, c, crop in crops:
        mask[k - k0, r - r0:r - r0 + crop.shape[0], c - c0:c - c0 + crop.shape[1]] = crop
    return SegmentBox(mask, (k0, r0, c0))


def mask_on_grid(box: SegmentBox, source: Grid, target: Grid) -> np.ndarray:
    """``box`` (on ``source``) on ``target``: the same voxels as
    :func:`~services.dosimetry.imaging.resample.resample_mask` of the full mask."""
    start = (int(box.start[0]), int(box.start[1]), int(box.start[2]))
    return resample_mask_box(box.mask, start, source, target)
