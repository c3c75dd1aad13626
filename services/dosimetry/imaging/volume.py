"""Activity and CT volumes in patient coordinates, built from pydicom datasets.

Steps (DICOM PS3.3; sections named below):

1. Geometry. Per-slice series (PT, CT; Image Plane module C.7.6.2): every instance needs
   ImagePositionPatient (0020,0032), ImageOrientationPatient (0020,0037) and PixelSpacing
   (0028,0030); slices are sorted along the normal (row × column cosines) and must be evenly
   spaced (within 1 %). NM multi-frame RECON TOMO (NM Image module C.8.4.8, NM Detector C.8.4.10):
   position and orientation come from the Detector Information Sequence (0054,0022) when not at
   the top level; frames are slices along the normal, SpacingBetweenSlices (0018,0088) apart
   (SliceThickness (0018,0050) is used, with a warning, when it is missing). An NM series
   exported one single-frame instance per slice is stacked like PET.
2. Values: stored value × RescaleSlope (0028,1053) + RescaleIntercept (0028,1052), per instance.
   Units: PT ``Units`` (0054,1001) must be BQML (Bq/mL); NM pixels are counts ("CNTS").
3. Decay correction to a reference time (default: the administration,
   RadiopharmaceuticalStartDateTime (0018,1078)) with A(t_ref) = A(t)·2^((t − t_ref)/T½)
   (EANM 2022), T½ from RadionuclideHalfLife (0018,1075), else from the nuclide
   (``netliver.dosimetry_contract``: code, else names):
   - PT, DecayCorrection (0054,1102) ``START``: values are at the series start (SeriesDate/Time);
     ``ADMIN``: already at the administration; ``NONE``: at each slice's AcquisitionTime,
     averaged over ActualFrameDuration (0018,1242).
   - NM: counts collected from AcquisitionDate/Time over ActualFrameDuration; the activity at
     the start is proportional to counts·λΔt/(1 − e^(−λΔt)), then decayed as above.
   Times are DICOM local times without zone (TimezoneOffsetFromUTC is not applied): all
   attributes of one study share the scanner's clock.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import numpy as np
from pydicom.dataset import Dataset

from netliver.dosimetry_contract import HALF_LIFE_TOLERANCE, NUCLIDES_BY_CODE, identify_nuclide
from services.dosimetry.imaging.errors import GeometryError, NoActivitySeriesError
from services.dosimetry.imaging.grid import Grid

__all__ = [
    "ActivityVolume",
    "Radiopharmaceutical",
    "ScalarVolume",
    "activity_volume",
    "ct_volume",
    "parse_dicom_datetime",
    "radiopharmaceutical",
]

_SLICE_SPACING_TOLERANCE = 0.01


@dataclass(frozen=True)
class ScalarVolume:
    """Values on a grid: ``values[k, j, i]`` at ``grid.index_to_patient((k, j, i))``."""

    values: np.ndarray
    grid: Grid
    units: str
    series_uid: str = ""


@dataclass(frozen=True)
class Radiopharmaceutical:
    """What RadiopharmaceuticalInformationSequence (0054,0016) says."""

    nuclide: str
    half_life_s: float
    administration: datetime | None
    total_activity_bq: float | None
    name: str = ""


@dataclass(frozen=True)
class ActivityVolume(ScalarVolume):
    """Emission volume decay corrected to ``reference_time``.

    ``units``: ``BQML`` (PT, Bq/mL at the reference time) or ``CNTS`` (NM counts scaled to the
    activity at the reference time). ``decay_factor`` is the factor applied to the stored
    values (1 when none was applied).
    """

    modality: str = ""
    radiopharmaceutical: Radiopharmaceutical | None = None
    acquisition_time: datetime | None = None
    reference_time: datetime | None = None
    decay_factor: float = 1.0
    warnings: tuple[str, ...] = field(default=())


# -- small parsers ----------------------------------------------------------------------------

def _require(ds: Dataset, keyword: str, tag: str, what: str) -> Any:
    value = ds.get(keyword)
    if value is None or value == "" or (isinstance(value, Sequence) and not isinstance(value, str) and len(value) == 0):
        raise GeometryError(f"{what} has no {keyword} {tag}: the volume cannot be placed in patient coordinates",
                            keyword)
    return value


def _floats(value: Any, n: int, keyword: str, what: str) -> np.ndarray:
    try:
        arr = np.array([float(v) for v in value], dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise GeometryError(f"{what}: {keyword} is not numeric ({value!r})", keyword) from exc
    if arr.shape != (n,) or not np.all(np.isfinite(arr)):
        raise GeometryError(f"{what}: {keyword} must hold {n} numbers, got {value!r}", keyword)
    return arr


def _orientation(value: Any, what: str) -> np.ndarray:
    iop = _floats(value, 6, "ImageOrientationPatient", what)
    row, col = iop[:3], iop[3:]
    if abs(np.linalg.norm(row) - 1) > 1e-3 or abs(np.linalg.norm(col) - 1) > 1e-3 or abs(row @ col) > 1e-3:
        raise GeometryError(f"{what}: ImageOrientationPatient (0020,0037) is not two orthonormal "
                            f"direction cosines ({value!r})", "ImageOrientationPatient")
    return iop


def _pixel_spacing(ds: Dataset, what: str) -> tuple[float, float]:
    ps = _floats(_require(ds, "PixelSpacing", "(0028,0030)", what), 2, "PixelSpacing", what)
    if np.any(ps <= 0):
        raise GeometryError(f"{what}: PixelSpacing (0028,0030) must be positive, got {list(ps)}", "PixelSpacing")
    return float(ps[0]), float(ps[1])


def _rescale(ds: Dataset) -> tuple[float, float]:
    """RescaleSlope (0028,1053) and RescaleIntercept (0028,1052); absent → 1 and 0. A zero or
    non-numeric slope would silently give a blank (or unscaled) image, so it is refused."""
    what = f"{ds.get('Modality', '')} instance {ds.get('SOPInstanceUID', '?')}"
    raw_slope = ds.get("RescaleSlope")
    raw_intercept = ds.get("RescaleIntercept")
    try:
        slope = 1.0 if raw_slope in (None, "") else float(raw_slope)
        intercept = 0.0 if raw_intercept in (None, "") else float(raw_intercept)
    except (TypeError, ValueError) as exc:
        raise GeometryError(f"{what}: RescaleSlope/RescaleIntercept (0028,1053)/(0028,1052) are not numbers "
                            f"({raw_slope!r}, {raw_intercept!r})", "RescaleSlope") from exc
    if slope == 0 or not math.isfinite(slope) or not math.isfinite(intercept):
        raise GeometryError(f"{what}: RescaleSlope (0028,1053) {raw_slope!r} cannot scale the stored values",
                            "RescaleSlope")
    return slope, intercept


def parse_dicom_datetime(date: str | None, time: str | None = None, *, require_time: bool = False) -> datetime | None:
    """DICOM DA + TM (or one DT) to a naive datetime; None when absent or malformed.

    A date whose time is missing (``time`` absent with a DA, or a DT of 8 digits) is midnight
    unless ``require_time``; the decay correction asks for the time, since midnight would be a
    silently wrong instant (hours of Tc-99m decay).
    """
    if not date:
        return None
    if require_time and not time and len(str(date).strip().split(".")[0]) < 12:
        return None
    text = str(date).strip()
    if time:
        text = text[:8] + str(time).strip()
    text = text.split("+")[0].split("-")[0] if len(text) > 8 else text
    digits, _, frac = text.partition(".")
    fmt = {8: "%Y%m%d", 10: "%Y%m%d%H", 12: "%Y%m%d%H%M", 14: "%Y%m%d%H%M%S"}.get(len(digits))
    if fmt is None:
        return None
    try:
        value = datetime.strptime(digits, fmt)
    except ValueError:
        return None
    if frac and frac.isdigit():
        value += timedelta(microseconds=int(frac[:6].ljust(6, "0")))
    return value


def radiopharmaceutical(ds: Dataset) -> tuple[Radiopharmaceutical | None, list[str]]:
    """Parse the first RadiopharmaceuticalInformationSequence item (PS3.3 C.8.4.10 / C.8.9.2).

    RadionuclideTotalDose (0018,1074) is in MBq for NM and in Bq for PT.
    """
    warnings: list[str] = []
    seq = ds.get("RadiopharmaceuticalInformationSequence")
    if not seq:
        return None, ["no RadiopharmaceuticalInformationSequence (0054,0016): no decay correction applied"]
    item = seq[0]
    code = ""
    codes = item.get("RadionuclideCodeSequence")
    if codes:
        code = str(codes[0].get("CodeValue", ""))
    known = NUCLIDES_BY_CODE.get(code)
    stated = float(item.RadionuclideHalfLife) if item.get("RadionuclideHalfLife") else None
    meaning = str(codes[0].get("CodeMeaning", "")) if codes else ""
    # The rule the gateway's PACS hook applies to the same item: code, then half-life, then names.
    identified = identify_nuclide(code, stated, f"{item.get('Radiopharmaceutical', '')} {meaning}")
    nuclide = identified.name if identified else (meaning if codes else "unknown")
    half_life_s = stated
    if half_life_s is None and identified is not None:
        half_life_s = identified.half_life_s
        warnings.append(f"RadionuclideHalfLife (0018,1075) missing: {nuclide} half-life "
                        f"{identified.half_life_s / 3600:.4g} h used")
    if half_life_s is None or not half_life_s > 0:
        return None, ["radionuclide half-life unknown (no RadionuclideHalfLife (0018,1075) and an "
                      "unrecognised RadionuclideCodeSequence): no decay correction applied"]
    if known and abs(half_life_s - known.half_life_s) / known.half_life_s > HALF_LIFE_TOLERANCE:
        warnings.append(f"RadionuclideHalfLife {half_life_s:.0f} s differs from the {nuclide} value "
                        f"{known.half_life_s:.0f} s; the DICOM value is used")
    if identified is not None and not known:
        # No (recognised) RadionuclideCodeSequence: a half-life that is Y-90's or Tc-99m's (or,
        # without one, the names) names the nuclide, so a Tc-99m MAA study is still run as a
        # simulation and not as a Y-90 record.
        by_what = f"RadionuclideHalfLife {stated:.0f} s" if stated is not None else "the radiopharmaceutical's name"
        warnings.append(f"RadionuclideCodeSequence (0054,0300) {code or 'missing'} not recognised: "
                        f"{nuclide} identified by {by_what}")
    administration = parse_dicom_datetime(item.get("RadiopharmaceuticalStartDateTime"), require_time=True)
    if administration is None and item.get("RadiopharmaceuticalStartTime"):
        # A time without a date: the day is the series' (same time base as SeriesTime, PS3.3
        # C.8.4.10.1 / C.8.9.2); an injection "later in the day" than the scan was the day before.
        administration = parse_dicom_datetime(ds.get("SeriesDate") or ds.get("AcquisitionDate"),
                                              item.RadiopharmaceuticalStartTime)
        scan = (parse_dicom_datetime(ds.get("SeriesDate"), ds.get("SeriesTime"))
                or parse_dicom_datetime(ds.get("AcquisitionDate"), ds.get("AcquisitionTime")))
        if administration is not None and scan is not None and administration > scan:
            administration -= timedelta(days=1)
            warnings.append("RadiopharmaceuticalStartDateTime (0018,1078) missing and RadiopharmaceuticalStartTime "
                            "(0018,1072) is later in the day than the series: administration taken as the day before")
        elif administration is not None:
            warnings.append("RadiopharmaceuticalStartDateTime (0018,1078) missing: administration taken on the "
                            "series date at RadiopharmaceuticalStartTime (0018,1072)")
    total: float | None = None
    if item.get("RadionuclideTotalDose"):
        total = float(item.RadionuclideTotalDose) * (1e6 if ds.get("Modality") == "NM" else 1.0)
    return Radiopharmaceutical(nuclide, half_life_s, administration, total,
                               str(item.get("Radiopharmaceutical", ""))), warnings


def _decay_to(values_time: datetime, reference: datetime, half_life_s: float) -> float:
    """Factor turning an activity at ``values_time`` into the activity at ``reference``."""
    return float(2.0 ** ((values_time - reference).total_seconds() / half_life_s))


def _duration_factor(duration_s: float, half_life_s: float) -> float:
    """λΔt/(1 − e^(−λΔt)): activity at the frame start over the frame-average activity."""
    lam_dt = math.log(2.0) / half_life_s * duration_s
    return 1.0 if lam_dt < 1e-12 else lam_dt / (1.0 - math.exp(-lam_dt))


# -- stacking ---------------------------------------------------------------------------------

def _stack_slices(datasets: Sequence[Dataset], what: str,
                  dtype: type[np.floating[Any]] = np.float64) -> tuple[np.ndarray, Grid, list[Dataset]]:
    """Sort per-slice instances along the normal and stack their rescaled pixels."""
    if not datasets:
        raise GeometryError(f"{what}: no instances", "ImagePositionPatient")
    positions, orientations = [], []
    for ds in datasets:
        label = f"{what} instance {ds.get('SOPInstanceUID', '?')}"
        positions.append(_floats(_require(ds, "ImagePositionPatient", "(0020,0032)", label), 3,
                                 "ImagePositionPatient", label))
        orientations.append(_orientation(_require(ds, "ImageOrientationPatient", "(0020,0037)", label), label))
    iop = orientations[0]
    if any(np.abs(o - iop).max() > 1e-4 for o in orientations):
        raise GeometryError(f"{what}: slices have different ImageOrientationPatient (0020,0037)",
                            "ImageOrientationPatient")
    spacings = {_pixel_spacing(ds, f"{what} instance {ds.get('SOPInstanceUID', '?')}") for ds in datasets}
    if len(spacings) > 1:
        raise GeometryError(f"{what}: slices have different PixelSpacing (0028,0030) {sorted(spacings)}",
                            "PixelSpacing")
    spacing = spacings.pop()
    normal = np.cross(iop[:3], iop[3:])
    order = np.argsort([p @ normal for p in positions])
    sorted_ds = [datasets[i] for i in order]
    sorted_pos = np.array([positions[i] for i in order])
    if len(sorted_ds) > 1:
        steps = np.diff(sorted_pos @ normal)
        if np.any(steps < 1e-3):
            raise GeometryError(f"{what}: two slices share one ImagePositionPatient (0020,0032)",
                                "ImagePositionPatient")
        if (steps.max() - steps.min()) > _SLICE_SPACING_TOLERANCE * steps.mean():
            raise GeometryError(f"{what}: slices are not evenly spaced along the normal "
                                f"(steps {steps.min():.3f}–{steps.max():.3f} mm, ImagePositionPatient (0020,0032))",
                                "ImagePositionPatient")
        slice_step = (sorted_pos[-1] - sorted_pos[0]) / (len(sorted_ds) - 1)
    else:
        thickness = float(sorted_ds[0].get("SpacingBetweenSlices") or sorted_ds[0].get("SliceThickness") or 0)
        if thickness <= 0:
            raise GeometryError(f"{what}: a single slice needs SliceThickness (0018,0050)", "SliceThickness")
        slice_step = normal * thickness
    rows, cols = int(sorted_ds[0].Rows), int(sorted_ds[0].Columns)
    stack = np.empty((len(sorted_ds), rows, cols), dtype=dtype)
    for k, ds in enumerate(sorted_ds):
        if int(ds.Rows) != rows or int(ds.Columns) != cols:
            raise GeometryError(f"{what}: slices have different Rows/Columns (0028,0010)/(0028,0011)", "Rows")
        if "PixelData" not in ds:
            raise GeometryError(f"{what} instance {ds.get('SOPInstanceUID', '?')} has no PixelData (7FE0,0010)",
                                "PixelData")
        slope, intercept = _rescale(ds)
        stack[k] = ds.pixel_array.astype(dtype) * dtype(slope) + dtype(intercept)
    for_uid = str(sorted_ds[0].get("FrameOfReferenceUID", ""))
    grid = Grid.from_dicom((len(sorted_ds), rows, cols), sorted_pos[0], iop, spacing, slice_step, for_uid)
    return stack, grid, sorted_ds


def _nm_multiframe(ds: Dataset) -> tuple[np.ndarray, Grid, list[str]]:
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
    if "PixelData" not in ds:
        raise GeometryError(f"{what} has no PixelData (7FE0,0010)", "PixelData")
    pixels = ds.pixel_array.astype(np.float64)
    if pixels.ndim == 2:
        pixels = pixels[np.newaxis]
    slope, intercept = _rescale(ds)
    values = pixels * slope + intercept
    normal = np.cross(iop[:3], iop[3:])
    grid = Grid.from_dicom((values.shape[0], values.shape[1], values.shape[2]), ipp, iop, spacing, normal * step_mm,
                           str(ds.get("FrameOfReferenceUID", "")))
    return values, grid, warnings


# -- public builders --------------------------------------------------------------------------

def ct_volume(datasets: Sequence[Dataset]) -> ScalarVolume:
    """The CT series in Hounsfield units (float32)."""
    # float32: CT numbers are integers well inside its exact range, and a CT is the largest array
    values, grid, sorted_ds = _stack_slices(datasets, "CT", np.float32)
    return ScalarVolume(values, grid, "HU", str(sorted_ds[0].get("SeriesInstanceUID", "")))


def activity_volume(datasets: Sequence[Dataset], reference_time: datetime | None = None) -> ActivityVolume:
    """The NM or PT series as an activity volume decay corrected to ``reference_time``
    (default: the administration time; the acquisition when that is unknown)."""
    if not datasets:
        raise NoActivitySeriesError("the activity series holds no instances", "studyInstanceUid")
    modality = str(datasets[0].get("Modality", ""))
    warnings: list[str] = []
    if modality == "NM":
        units = "CNTS"
        if len(datasets) == 1:
            first = datasets[0]
            values, grid, nm_warnings = _nm_multiframe(first)
            warnings.extend(nm_warnings)
        else:
            # Some systems export a reconstructed SPECT one slice per instance: each must be a
            # single frame with its own Image Plane attributes (then stacked like PET).
            frames = {int(ds.get("NumberOfFrames") or 1) for ds in datasets}
            if frames != {1}:
                raise GeometryError(f"the NM series holds {len(datasets)} multi-frame instances; one reconstructed "
                                    "tomogram (or one single-frame instance per slice) is expected", "NumberOfFrames")
            values, grid, sorted_ds = _stack_slices(datasets, "NM")
            first = sorted_ds[0]
    elif modality == "PT":
        values, grid, sorted_ds = _stack_slices(datasets, "PT")
        first = sorted_ds[0]
        units = str(first.get("Units", "")).upper()
        if units != "BQML":
            raise NoActivitySeriesError(f"PT Units (0054,1001) is {units or 'missing'}; only BQML (Bq/mL) images "
                                        "can be decay corrected and calibrated", "Units")
    else:
        raise NoActivitySeriesError(f"series modality {modality or 'missing'} is neither NM nor PT", "Modality")
    corrections = {str(v).upper() for v in (first.get("CorrectedImage") or [])}
    if "ATTN" not in corrections:
        # CorrectedImage (0028,0051), PS3.3 C.8.4.9 / C.8.9.1: without attenuation correction the
        # counts fall with depth, and a dose calibrated on their distribution under-doses deep tissue.
        warnings.append(f"CorrectedImage (0028,0051) {sorted(corrections) or 'missing'} does not include ATTN: the "
                        f"{modality} image is not attenuation corrected, so deep tissue is under-represented "
                        "in the activity distribution and its dose")
    if np.any(values < 0):
        warnings.append("negative voxel values set to 0 (reconstruction undershoot)")
        values = np.clip(values, 0.0, None)
    pharma, pharma_warnings = radiopharmaceutical(first)
    warnings.extend(pharma_warnings)
    acquisition = (parse_dicom_datetime(first.get("AcquisitionDate"), first.get("AcquisitionTime"), require_time=True)
                   or parse_dicom_datetime(first.get("SeriesDate"), first.get("SeriesTime"), require_time=True))
    if pharma is not None and pharma.administration is not None and acquisition is not None and \
            pharma.administration > acquisition + timedelta(minutes=1):
        warnings.append(f"RadiopharmaceuticalStartDateTime (0018,1078) {pharma.administration.isoformat()} is after "
                        f"the acquisition {acquisition.isoformat()}: no decay correction applied")
        pharma = Radiopharmaceutical(pharma.nuclide, pharma.half_life_s, None, pharma.total_activity_bq,
                                     pharma.name)
    reference = reference_time or (pharma.administration if pharma else None) or acquisition
    factor = 1.0
    if pharma is not None and reference is not None:
        duration_s = float(first.get("ActualFrameDuration") or 0) / 1000.0
        if modality == "NM":
            if acquisition is None:
                warnings.append("NM AcquisitionDate/Time missing: no decay correction applied")
            else:
                factor = _duration_factor(duration_s, pharma.half_life_s) * _decay_to(acquisition, reference,
                                                                                      pharma.half_life_s)
        else:
            correction = str(first.get("DecayCorrection", "")).upper()
            if correction == "START":
                # DecayCorrectionDateTime (0018,9701) when given, else the series start: SeriesDate/Time
                # is the reference of all time-related PET attributes (PS3.3 C.8.9.1.1.x).
                start = (parse_dicom_datetime(first.get("DecayCorrectionDateTime"), require_time=True)
                         or parse_dicom_datetime(first.get("SeriesDate"), first.get("SeriesTime"), require_time=True)
                         or acquisition)
                if start is None:
                    warnings.append("PT SeriesDate/Time missing: no decay correction applied")
                else:
                    factor = _decay_to(start, reference, pharma.half_life_s)
            elif correction == "ADMIN":
                if pharma.administration is not None:
                    factor = _decay_to(pharma.administration, reference, pharma.half_life_s)
                else:
                    warnings.append("PT DecayCorrection ADMIN without a RadiopharmaceuticalStartDateTime (0018,1078): "
                                    "values left at the (unknown) administration time")
            elif correction == "NONE":
                values, factor = _decay_uncorrected_pt(datasets, grid, values, reference, pharma.half_life_s, warnings)
            else:
                warnings.append(f"PT DecayCorrection (0054,1102) {correction or 'missing'}: no decay correction applied")
    values = values * factor
    if pharma is not None and pharma.total_activity_bq and units == "BQML":
        image_bq = float(values.sum() * grid.voxel_volume_ml)
        ratio = image_bq / pharma.total_activity_bq
        if not 0.5 <= ratio <= 1.5:
            warnings.append(f"activity in the image ({image_bq / 1e9:.3g} GBq at the reference time) differs from "
                            f"the recorded administered activity ({pharma.total_activity_bq / 1e9:.3g} GBq) by more "
                            "than 50 %")
    return ActivityVolume(values, grid, units, str(first.get("SeriesInstanceUID", "")), modality, pharma,
                          acquisition, reference, factor, tuple(warnings))


def _decay_uncorrected_pt(datasets: Sequence[Dataset], grid: Grid, values: np.ndarray, reference: datetime,
                          half_life_s: float, warnings: list[str]) -> tuple[np.ndarray, float]:
    """PT with DecayCorrection NONE: correct each slice from its own acquisition time."""
    normal = grid.affine[:3, 0] / np.linalg.norm(grid.affine[:3, 0])
    by_position = sorted(datasets, key=lambda d: float(np.array([float(v) for v in d.ImagePositionPatient]) @ normal))
    out = values.copy()
    for k, ds in enumerate(by_position):
        when = parse_dicom_datetime(ds.get("AcquisitionDate") or ds.get("SeriesDate"), ds.get("AcquisitionTime"),
                                    require_time=True)
        if when is None:
            warnings.append("PT AcquisitionTime missing on a slice with DecayCorrection NONE: slice not corrected")
            continue
        duration_s = float(ds.get("ActualFrameDuration") or 0) / 1000.0
        out[k] *= _duration_factor(duration_s, half_life_s) * _decay_to(when, reference, half_life_s)
    return out, 1.0
