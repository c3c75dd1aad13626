"""Per-slice and NM multi-frame instances stacked into a volume in patient coordinates.

Per-slice series (PT, CT, NM exported per slice; Image Plane module PS3.3 C.7.6.2): every
instance needs ImagePositionPatient (0020,0032), ImageOrientationPatient (0020,0037) and
PixelSpacing (0028,0030); slices are sorted along the normal (row × column cosines) and must be
evenly spaced (within 1 %; a gap of whole steps is named as missing slices). An enhanced
multi-frame instance is read by :mod:`.multiframe`. NM RECON TOMO multi-frame (NM Image
module C.8.4.8, NM Detector C.8.4.10): position and orientation from the Detector Information
Sequence (0054,0022) when not at the top level; frames are slices SpacingBetweenSlices
(0018,0088) apart (its sign is the stacking direction; SliceThickness (0018,0050) is used, with a
warning, when it is missing). Values are stored value × RescaleSlope + RescaleIntercept, per
instance. The volume built is bounded (:data:`~.pixels.MAX_VOLUME_BYTES`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from pydicom.dataset import Dataset

from services.dosimetry.imaging.attributes import plain_get
from services.dosimetry.imaging.errors import GeometryError, NoActivitySeriesError, PixelDataError
from services.dosimetry.imaging.grid import Grid
from services.dosimetry.imaging.multiframe import enhanced_header, enhanced_volume, is_enhanced
from services.dosimetry.imaging.pixels import MAX_VOLUME_BYTES, decoded_pixels
from services.dosimetry.imaging.vendor_pet import refuse_uncalibrated_units

__all__ = ["check_volume_bytes", "image_plane", "nm_multiframe", "pt_units", "rescale", "slice_geometry", "slice_pixels",
           "stack_slices"]

_SLICE_SPACING_TOLERANCE = 0.01


# -- small parsers ----------------------------------------------------------------------------

def _require(ds: Dataset, keyword: str, tag: str, what: str) -> Any:
    value = plain_get(ds, keyword)
    if value is None or value == "" or (isinstance(value, Sequence) and not isinstance(value, str) and len(value) == 0):
        raise GeometryError(f"{what} has no {keyword} {tag}: the volume cannot be placed in patient coordinates",
                            keyword)
    return value


def _floats(value: Any, n: int, keyword: str, what: str) -> np.ndarray:
    numbers = _numbers(value, n, keyword, what)
    return np.array(numbers, dtype=np.float64)


def _numbers(value: Any, n: int, keyword: str, what: str) -> list[float]:
    """``value``'s ``n`` finite numbers (checked in Python: a CT's 256 slices ask three times each)."""
    try:
        numbers = [float(v) for v in value]
    except (TypeError, ValueError) as exc:
        raise GeometryError(f"{what}: {keyword} is not numeric ({value!r})", keyword) from exc
    if len(numbers) != n or not all(map(math.isfinite, numbers)):
        raise GeometryError(f"{what}: {keyword} must hold {n} numbers, got {value!r}", keyword)
    return numbers


def _orientation(value: Any, what: str) -> np.ndarray:
    rx, ry, rz, cx, cy, cz = _numbers(value, 6, "ImageOrientationPatient", what)
    if (abs(math.sqrt(rx * rx + ry * ry + rz * rz) - 1) > 1e-3 or abs(math.sqrt(cx * cx + cy * cy + cz * cz) - 1) > 1e-3
            or abs(rx * cx + ry * cy + rz * cz) > 1e-3):
        raise GeometryError(f"{what}: ImageOrientationPatient (0020,0037) is not two orthonormal "
                            f"direction cosines ({value!r})", "ImageOrientationPatient")
    return np.array([rx, ry, rz, cx, cy, cz], dtype=np.float64)


def _pixel_spacing(ds: Dataset, what: str) -> tuple[float, float]:
    ps = _numbers(_require(ds, "PixelSpacing", "(0028,0030)", what), 2, "PixelSpacing", what)
    if min(ps) <= 0:
        raise GeometryError(f"{what}: PixelSpacing (0028,0030) must be positive, got {ps}", "PixelSpacing")
    return ps[0], ps[1]


def _instance_label(ds: Dataset) -> str:
    """How an error names one instance (made only when there is an error to name it in)."""
    return f"{plain_get(ds, 'Modality', '')} instance {plain_get(ds, 'SOPInstanceUID', '?')}"


def rescale(ds: Dataset) -> tuple[float, float]:
    """RescaleSlope (0028,1053) and RescaleIntercept (0028,1052); absent → 1 and 0. A zero or
    non-numeric slope would silently give a blank (or unscaled) image, so it is refused."""
    raw_slope = plain_get(ds, "RescaleSlope")
    raw_intercept = plain_get(ds, "RescaleIntercept")
    try:
        slope = 1.0 if raw_slope in (None, "") else float(raw_slope)
        intercept = 0.0 if raw_intercept in (None, "") else float(raw_intercept)
    except (TypeError, ValueError) as exc:
        what = _instance_label(ds)
        raise GeometryError(f"{what}: RescaleSlope/RescaleIntercept (0028,1053)/(0028,1052) are not numbers "
                            f"({raw_slope!r}, {raw_intercept!r})", "RescaleSlope") from exc
    if slope == 0 or not math.isfinite(slope) or not math.isfinite(intercept):
        raise GeometryError(f"{_instance_label(ds)}: RescaleSlope (0028,1053) {raw_slope!r} cannot scale the stored values",
                            "RescaleSlope")
    return slope, intercept



# -- stacking ---------------------------------------------------------------------------------

def image_plane(ds: Dataset, what: str) -> tuple[np.ndarray, np.ndarray, tuple[float, float]]:
    """ImagePositionPatient, ImageOrientationPatient and PixelSpacing of one slice, checked."""
    label = f"{what} instance {plain_get(ds, 'SOPInstanceUID', '?')}"
    position = _floats(_require(ds, "ImagePositionPatient", "(0020,0032)", label), 3, "ImagePositionPatient", label)
    orientation = _orientation(_require(ds, "ImageOrientationPatient", "(0020,0037)", label), label)
    return position, orientation, _pixel_spacing(ds, label)


def slice_geometry(datasets: Sequence[Dataset], what: str) -> tuple[np.ndarray, Grid]:
    """The order of per-slice instances along the normal and the grid they form (Image Plane
    attributes checked: present, one orientation, one pixel spacing, evenly spaced slices)."""
    if not datasets:
        raise GeometryError(f"{what}: no instances", "ImagePositionPatient")
    positions, orientations = [], []
    for ds in datasets:
        label = f"{what} instance {plain_get(ds, 'SOPInstanceUID', '?')}"
        positions.append(_floats(_require(ds, "ImagePositionPatient", "(0020,0032)", label), 3,
                                 "ImagePositionPatient", label))
        orientations.append(_orientation(_require(ds, "ImageOrientationPatient", "(0020,0037)", label), label))
    iop = orientations[0]
    if float(np.abs(np.array(orientations) - iop).max()) > 1e-4:
        raise GeometryError(f"{what}: slices have different ImageOrientationPatient (0020,0037)",
                            "ImageOrientationPatient")
    spacings = {_pixel_spacing(ds, f"{what} instance {plain_get(ds, 'SOPInstanceUID', '?')}") for ds in datasets}
    if len(spacings) > 1:
        raise GeometryError(f"{what}: slices have different PixelSpacing (0028,0030) {sorted(spacings)}",
                            "PixelSpacing")
    normal = np.cross(iop[:3], iop[3:])
    order = np.argsort([p @ normal for p in positions])
    sorted_pos = np.array([positions[i] for i in order])
    first = datasets[int(order[0])]
    if len(datasets) > 1:
        steps = np.diff(sorted_pos @ normal)
        if np.any(steps < 1e-3):
            raise GeometryError(f"{what}: two slices share one ImagePositionPatient (0020,0032)",
                                "ImagePositionPatient")
        if (steps.max() - steps.min()) > _SLICE_SPACING_TOLERANCE * steps.mean():
            gap = int(np.argmax(steps))
            ratio = steps[gap] / steps.min()
            missing = (f"; {round(ratio) - 1} slice(s) missing after the one at {sorted_pos[gap].round(2).tolist()} mm?"
                       if abs(ratio - round(ratio)) < 0.05 and ratio > 1.5 else "")
            raise GeometryError(f"{what}: slices are not evenly spaced along the normal "
                                f"(steps {steps.min():.3f}–{steps.max():.3f} mm, ImagePositionPatient (0020,0032))"
                                f"{missing}", "ImagePositionPatient")
        slice_step = (sorted_pos[-1] - sorted_pos[0]) / (len(datasets) - 1)
    else:
        thickness = float(first.get("SpacingBetweenSlices") or first.get("SliceThickness") or 0)
        if thickness <= 0:
            raise GeometryError(f"{what}: a single slice needs SliceThickness (0018,0050)", "SliceThickness")
        slice_step = normal * thickness
    shape = (len(datasets), int(first.Rows), int(first.Columns))
    grid = Grid.from_dicom(shape, sorted_pos[0], iop, spacings.pop(), slice_step,
                           str(first.get("FrameOfReferenceUID", "")))
    return order, grid


def check_volume_bytes(what: str, shape: tuple[int, int, int], itemsize: int) -> None:
    """Refuse a volume over :data:`~.pixels.MAX_VOLUME_BYTES` before it is allocated."""
    volume_bytes = shape[0] * shape[1] * shape[2] * itemsize
    if volume_bytes > MAX_VOLUME_BYTES:
        raise PixelDataError(f"{what}: {shape[0]} slices of Rows {shape[1]} × Columns {shape[2]} make a "
                             f"{volume_bytes / 2**30:.1f} GiB volume; at most {MAX_VOLUME_BYTES / 2**30:.0f} GiB "
                             "is built", "Rows")


def slice_pixels(ds: Dataset, what: str, rows: int, cols: int, *, copy: bool = True,
                 masked: bool = True) -> np.ndarray:
    """The stored values of one single-frame slice of Rows × Columns (``copy=False``: possibly a
    read-only view on the instance's Pixel Data, for a caller that copies it into a volume;
    ``masked=False``: see :func:`.pixels.decoded_pixels`)."""
    if plain_get(ds, "Rows") != rows or plain_get(ds, "Columns") != cols:
        raise GeometryError(f"{what}: slices have different Rows/Columns (0028,0010)/(0028,0011)", "Rows")
    pixels = decoded_pixels(ds, f"{what} instance {plain_get(ds, 'SOPInstanceUID', '?')}", copy=copy, masked=masked)
    if pixels.shape != (rows, cols):
        raise GeometryError(f"{what} instance {ds.get('SOPInstanceUID', '?')} holds {pixels.shape} pixels, not "
                            "one frame of Rows × Columns (NumberOfFrames (0028,0008))", "NumberOfFrames")
    return pixels


def stack_slices(datasets: Sequence[Dataset], what: str,
                  dtype: type[np.floating[Any]] = np.float64) -> tuple[np.ndarray, Grid, list[Dataset]]:
    """Sort per-slice instances along the normal and stack their rescaled pixels."""
    if len(datasets) == 1 and is_enhanced(datasets[0]):
        label = f"{what} instance {datasets[0].get('SOPInstanceUID', '?')}"
        values, grid = enhanced_volume(datasets[0], label)
        return values.astype(dtype), grid, [enhanced_header(datasets[0])]
    order, grid = slice_geometry(datasets, what)
    sorted_ds = [datasets[i] for i in order]
    check_volume_bytes(what, grid.shape, np.dtype(dtype).itemsize)
    stack = np.empty(grid.shape, dtype=dtype)
    for k, ds in enumerate(sorted_ds):
        pixels = slice_pixels(ds, what, grid.shape[1], grid.shape[2])
        slope, intercept = rescale(ds)
        stack[k] = pixels.astype(dtype) * dtype(slope) + dtype(intercept)
    return stack, grid, sorted_ds


def nm_multiframe(ds: Dataset) -> tuple[np.ndarray, Grid, list[str]]:
    """An NM RECON TOMO multi-frame instance as a volume (frames = slices along the normal)."""
    what = f"NM instance {ds.get('SOPInstanceUID', '?')}"
    warnings: list[str] = []
    image_type = [str(v).upper() for v in (ds.get("ImageType") or [])]
    if len(image_type) > 2 and not image_type[2].startswith("RECON"):
        raise NoActivitySeriesError(f"{what} is not a reconstructed tomogram (ImageType {image_type}); "
                                    "planar or projection data cannot be used for voxel dosimetry", "ImageType")
    frames = int(ds.get("NumberOfFrames") or 1)
    if ds.get("NumberOfSlices") and int(ds.NumberOfSlices) != frames:
        raise GeometryError(f"{what}: NumberOfFrames {frames} ≠ NumberOfSlices (0054,0081) {ds.NumberOfSlices} "
                            "(several energy windows or phases are not supported)", "NumberOfSlices")
    det = (ds.get("DetectorInformationSequence") or [None])[0]
    position = ds.get("ImagePositionPatient") or (det.get("ImagePositionPatient") if det is not None else None)
    orientation = ds.get("ImageOrientationPatient") or (det.get("ImageOrientationPatient") if det is not None else None)
    if not position:
        raise GeometryError(f"{what} has no ImagePositionPatient (0020,0032) at the top level or in the "
                            "DetectorInformationSequence (0054,0022)", "ImagePositionPatient")
    if not orientation:
        raise GeometryError(f"{what} has no ImageOrientationPatient (0020,0037) at the top level or in the "
                            "DetectorInformationSequence (0054,0022)", "ImageOrientationPatient")
    ipp = _floats(position, 3, "ImagePositionPatient", what)
    iop = _orientation(orientation, what)
    spacing = _pixel_spacing(ds, what)
    step = ds.get("SpacingBetweenSlices")
    if step in (None, ""):
        step = ds.get("SliceThickness")
        if step in (None, ""):
            raise GeometryError(f"{what} has neither SpacingBetweenSlices (0018,0088) nor SliceThickness "
                                "(0018,0050)", "SpacingBetweenSlices")
        warnings.append("NM SpacingBetweenSlices (0018,0088) missing: SliceThickness used as slice spacing")
    step_mm = float(step)
    # NM Reconstruction module (PS3.3 C.8.4.15): the sign of SpacingBetweenSlices is the stacking
    # direction along the normal (row × column cosines); negative values occur in practice.
    if step_mm == 0 or not math.isfinite(step_mm):
        raise GeometryError(f"{what}: SpacingBetweenSlices (0018,0088) must be a non-zero number, got {step_mm}",
                            "SpacingBetweenSlices")
    # one float64 volume, rescaled in place (the stored values read as they lie in the instance:
    # at 128³ each further volume cost ~4 ms of the job's path before its CT)
    values = decoded_pixels(ds, what, copy=False).astype(np.float64)
    if values.ndim == 2:
        values = values[np.newaxis]
    slope, intercept = rescale(ds)
    values *= slope
    values += intercept
    normal = np.cross(iop[:3], iop[3:])
    grid = Grid.from_dicom((values.shape[0], values.shape[1], values.shape[2]), ipp, iop, spacing, normal * step_mm,
                           str(ds.get("FrameOfReferenceUID", "")))
    return values, grid, warnings




#: Philips private "activity concentration scale factor" (7053,1009): Bq/mL per rescaled
#: count of a PET image whose Units are CNTS (the vendor's DICOM conformance statement).
_PHILIPS_ACTIVITY_SCALE = 0x70531009


def _philips_activity_scale(ds: Dataset) -> float | None:
    if "PHILIPS" not in str(ds.get("Manufacturer", "")).upper():
        return None
    element = ds.get(_PHILIPS_ACTIVITY_SCALE)
    if element is None:
        return None
    raw = element.value
    try:
        value = float(raw.decode("ascii").strip("\x00 ") if isinstance(raw, bytes) else raw)
    except (TypeError, ValueError, UnicodeDecodeError):
        return None
    return value if math.isfinite(value) and value > 0 else None


def pt_units(values: np.ndarray, sorted_ds: Sequence[Dataset], warnings: list[str]) -> tuple[np.ndarray, str]:
    """PET values in Bq/mL where the vendor's convention allows it, and their Units (0054,1001).

    ``Bq/ml`` spelt out is BQML. A Philips image in CNTS with its activity concentration scale
    factor (7053,1009) on every slice becomes Bq/mL slice by slice (with a warning). SUV, counts
    and NONE are refused by name (:func:`~.vendor_pet.refuse_uncalibrated_units`); any other
    unit is returned as it is, for the caller to refuse.
    """
    units = str(sorted_ds[0].get("Units", "")).strip().upper()
    if units == "BQ/ML":
        return values, "BQML"
    if units == "CNTS":
        factors = [_philips_activity_scale(ds) for ds in sorted_ds]
        if len(factors) == values.shape[0] and all(f is not None for f in factors):
            scale = np.array(factors, dtype=np.float64)[:, np.newaxis, np.newaxis]
            warnings.append("PT Units CNTS converted to Bq/mL with the Philips activity concentration scale "
                            "factor (7053,1009)")
            return values * scale, "BQML"
    refuse_uncalibrated_units(units)
    return values, units
