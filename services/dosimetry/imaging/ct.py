"""The CT series as its stored values, read instance by instance as the PACS sends them.

A clinical CT (512 × 512 × 256-300 slices) is the largest input of a voxel job. It is kept as
the integers the scanner stored (two bytes a voxel) with each slice's RescaleSlope (0028,1053)
and RescaleIntercept (0028,1052): HU = stored × slope + intercept (PS3.3 C.11.1.1.2). Mass
density is then looked up by stored value (:func:`services.dosimetry.imaging.resample.density_on_grid`),
so no CT-sized array of Hounsfield units or densities is ever made.

Instances are consumed one at a time (an iterator, e.g. a WADO-RS stream): each slice's pixels
go into the volume as it arrives and the instance is then let go, its Pixel Data included; only
its Image Plane attributes are kept to sort the slices. The slices are stacked in arrival order
and put in order along the normal in place. The geometry is checked as for every per-slice
series (:func:`.slices.slice_geometry`). An enhanced multi-frame CT is read by :mod:`.multiframe`
and kept in HU.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sized
from dataclasses import dataclass, field

import numpy as np
from pydicom.dataset import Dataset
from pydicom.tag import Tag

from services.dosimetry.imaging.attributes import plain_get
from services.dosimetry.imaging.errors import CtMismatchError, GeometryError
from services.dosimetry.imaging.grid import Grid
from services.dosimetry.imaging.multiframe import is_enhanced
from services.dosimetry.imaging.pixels import declared_bytes, decoded_pixels
from services.dosimetry.imaging.slices import (
    check_volume_bytes,
    rescale,
    slice_geometry,
    slice_pixels,
    stack_slices,
)

__all__ = ["CtVolume", "ct_slices", "ct_volume", "first_instance", "is_multiframe_ct", "slice_header"]

_PIXEL_DATA = Tag(0x7FE0, 0x0010)


@dataclass(frozen=True)
class CtVolume:
    """``stored[k, j, i]`` at ``grid.index_to_patient((k, j, i))``; slice k is in HU
    ``stored[k] × slope[k] + intercept[k]``. ``header`` is the first slice's attributes without
    its Pixel Data (the study's identity for the RT Dose)."""

    stored: np.ndarray
    slope: np.ndarray
    intercept: np.ndarray
    grid: Grid
    series_uid: str = ""
    header: Dataset = field(default_factory=Dataset)
    units: str = "HU"

    @property
    def values(self) -> np.ndarray:
        """The CT in HU (float32). A CT-sized array: the job's path never asks for it."""
        scale = self.slope.astype(np.float32)[:, np.newaxis, np.newaxis]
        shift = self.intercept.astype(np.float32)[:, np.newaxis, np.newaxis]
        return np.asarray(self.stored.astype(np.float32) * scale + shift)

    def rescale_runs(self) -> list[tuple[int, int, float, float]]:
        """(first slice, end slice, slope, intercept) of each run of slices sharing a rescale."""
        runs: list[tuple[int, int, float, float]] = []
        for k, (slope, intercept) in enumerate(zip(self.slope.tolist(), self.intercept.tolist(), strict=True)):
            if runs and runs[-1][2:] == (slope, intercept):
                runs[-1] = (runs[-1][0], k + 1, slope, intercept)
            else:
                runs.append((k, k + 1, slope, intercept))
        return runs


#: What sorting and placing the slices reads of each instance (the rest of it is let go).
_GEOMETRY = ("SOPInstanceUID", "SeriesInstanceUID", "FrameOfReferenceUID", "ImagePositionPatient",
             "ImageOrientationPatient", "PixelSpacing", "SpacingBetweenSlices", "SliceThickness", "Rows", "Columns")
_GEOMETRY_TAGS = tuple(Tag(keyword) for keyword in _GEOMETRY)


def slice_header(ds: Dataset, whole: bool) -> Dataset:
    """``ds`` without its Pixel Data (``whole``), or only its :data:`_GEOMETRY`; the elements are
    shared, not copied."""
    if whole:
        header = Dataset()
        for element in ds:
            if element.tag != _PIXEL_DATA:
                header.add(element)
        if hasattr(ds, "file_meta"):
            header.file_meta = ds.file_meta
        return header
    # the elements as read (still raw when nobody asked pydicom for their values: not converted
    # here), given to the Dataset as its elements: public, neither sequences nor pixels, they need
    # none of what setting them one by one checks
    elements = {}
    for tag in _GEOMETRY_TAGS:
        element = ds.get_item(tag, keep_deferred=True)
        if element is not None:
            elements[tag] = element
    return Dataset(elements)


def _check_ct(ds: Dataset) -> None:
    modality = str(plain_get(ds, "Modality", "") or "missing")
    if modality != "CT":
        raise CtMismatchError(f"the CT series holds {modality} instances (Modality (0008,0060)); a CT is needed "
                              "for tissue density", "Modality")


def _put(stack: np.ndarray, n: int, pixels: np.ndarray) -> np.ndarray:
    """Slice ``n`` of ``stack`` set to ``pixels``; the stack grows (or widens its integer type
    when a slice's values do not fit) in the rare case it must."""
    if n == stack.shape[0]:
        stack = np.concatenate([stack, np.empty((max(1, n // 2), *stack.shape[1:]), dtype=stack.dtype)])
    if not np.can_cast(pixels.dtype, stack.dtype) and pixels.size and (
            np.issubdtype(pixels.dtype, np.floating) or not np.issubdtype(stack.dtype, np.integer)
            or pixels.min() < np.iinfo(stack.dtype).min or pixels.max() > np.iinfo(stack.dtype).max):
        stack = stack.astype(np.result_type(stack.dtype, pixels.dtype))
    stack[n] = pixels
    return stack


def _permute_slices(stack: np.ndarray, order: np.ndarray) -> None:
    """``stack[:] = stack[order]`` in place, one slice of scratch (cycle by cycle)."""
    done = np.zeros(len(order), dtype=bool)
    for start in range(len(order)):
        if done[start] or order[start] == start:
            done[start] = True
            continue
        scratch = stack[start].copy()
        k = start
        while True:
            done[k] = True
            source = int(order[k])
            if source == start:
                stack[k] = scratch
                break
            stack[k] = stack[source]
            k = source


def first_instance(datasets: Iterable[Dataset], expected: int = 0) -> tuple[Dataset, Iterator[Dataset], int]:
    """The CT series' first instance (checked to be a CT), the rest of the stream, and the
    instance count to size for (``expected``, else the length of a sized ``datasets``)."""
    if not expected and isinstance(datasets, Sized):
        expected = len(datasets)
    stream = iter(datasets)
    first = next(stream, None)
    if first is None:
        raise CtMismatchError("the CT series holds no instances; a CT is needed for tissue density", "Modality")
    _check_ct(first)
    return first, stream, expected


def is_multiframe_ct(first: Dataset, expected: int) -> bool:
    """Whether the series is one enhanced multi-frame CT instance (read whole, kept in HU)."""
    return is_enhanced(first) and expected <= 1


def ct_slices(first: Dataset, rest: Iterator[Dataset], expected: int,
              masked: bool = True) -> Iterator[tuple[Dataset, np.ndarray]]:
    """Each per-slice CT instance, in arrival order, with its stored values (Rows × Columns; after
    the first, possibly a read-only view on the instance's Pixel Data, to be copied or reduced
    before the next; ``masked=False``: possibly with the bits above Bits Stored as stored, see
    :func:`.pixels.decoded_pixels`). The whole volume's size is bounded before a slice is decoded."""
    declared = declared_bytes(first)
    if declared > 0:
        rows, cols = int(first.Rows), int(first.Columns)
        check_volume_bytes("CT", (max(expected, 1), rows, cols), declared // (rows * cols))
    pixels = decoded_pixels(first, f"CT instance {first.get('SOPInstanceUID', '?')}", masked=masked)
    if pixels.ndim != 2:
        raise GeometryError(f"CT instance {first.get('SOPInstanceUID', '?')} holds {pixels.shape} pixels, not "
                            "one frame of Rows × Columns (NumberOfFrames (0028,0008))", "NumberOfFrames")
    check_volume_bytes("CT", (max(expected, 1), pixels.shape[0], pixels.shape[1]), pixels.dtype.itemsize)
    rows, cols = pixels.shape
    yield first, pixels
    for ds in rest:
        _check_ct(ds)
        yield ds, slice_pixels(ds, "CT", rows, cols, copy=False, masked=masked)


def ct_volume(datasets: Iterable[Dataset], expected: int = 0) -> CtVolume:
    """The CT series (per-slice instances, or one enhanced multi-frame instance) as stored
    values. ``expected`` (e.g. the instance count the PACS lists) sizes the volume up front."""
    first, rest, expected = first_instance(datasets, expected)
    if is_multiframe_ct(first, expected):
        return _enhanced_ct(first)
    stack: np.ndarray | None = None
    headers: list[Dataset] = []
    rescales: list[tuple[float, float]] = []
    for ds, pixels in ct_slices(first, rest, expected):
        if stack is None:
            stack = np.empty((max(expected, 1), *pixels.shape), dtype=pixels.dtype)
        stack = _put(stack, len(headers), pixels)
        rescales.append(rescale(ds))
        headers.append(slice_header(ds, whole=not headers))
        del ds, pixels  # the instance (with its Pixel Data) is not held past its slice
    assert stack is not None  # ct_slices yields the first instance at least
    order, grid = slice_geometry(headers, "CT")
    check_volume_bytes("CT", grid.shape, stack.dtype.itemsize)
    stack = stack[:len(headers)]
    _permute_slices(stack, order)
    slope, intercept = (np.array([rescales[i][a] for i in order], dtype=np.float64) for a in (0, 1))
    # the first instance that arrived names the study (patient, study and frame attributes are the series')
    return CtVolume(stack, slope, intercept, grid, str(headers[0].get("SeriesInstanceUID", "")), headers[0])


def _enhanced_ct(ds: Dataset) -> CtVolume:
    """An enhanced multi-frame CT, kept in HU (float32, rescale 1 and 0)."""
    values, grid, headers = stack_slices([ds], "CT", np.float32)
    ones = np.ones(grid.shape[0])
    return CtVolume(values, ones, np.zeros(grid.shape[0]), grid, str(ds.get("SeriesInstanceUID", "")), headers[0])
