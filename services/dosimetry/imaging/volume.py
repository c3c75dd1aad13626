"""Activity and CT volumes in patient coordinates, built from pydicom datasets.

Steps (DICOM PS3.3; sections named below):

1. Geometry (:mod:`.slices`, :mod:`.multiframe`). Per-slice series (PT, CT; C.7.6.2): every instance needs
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
   Times (:mod:`.dicom_time`): with TimezoneOffsetFromUTC (0008,0201) every date/time is taken
   in that zone, and a DT's own UTC offset (e.g. an injection time recorded in another zone)
   is honoured; without it, all values are the scanner's local clock.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import numpy as np
from pydicom.dataset import Dataset

from netliver.dosimetry_contract import HALF_LIFE_TOLERANCE, NUCLIDES_BY_CODE, identify_nuclide
from services.dosimetry.imaging.ct import ct_volume
from services.dosimetry.imaging.dicom_time import instance_utc_offset, parse_dicom_datetime
from services.dosimetry.imaging.errors import GeometryError, NoActivitySeriesError
from services.dosimetry.imaging.grid import Grid
from services.dosimetry.imaging.slices import nm_multiframe, pt_units, stack_slices
from services.dosimetry.imaging.vendor_pet import pet_series_start

__all__ = [
    "ActivityVolume",
    "Radiopharmaceutical",
    "ScalarVolume",
    "activity_volume",
    "ct_volume",
    "parse_dicom_datetime",
    "radiopharmaceutical",
]



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
    zone = instance_utc_offset(ds)
    administration = parse_dicom_datetime(item.get("RadiopharmaceuticalStartDateTime"), require_time=True,
                                          utc_offset=zone)
    if administration is None and item.get("RadiopharmaceuticalStartTime"):
        # A time without a date: the day is the series' (same time base as SeriesTime, PS3.3
        # C.8.4.10.1 / C.8.9.2); an injection "later in the day" than the scan was the day before.
        administration = parse_dicom_datetime(ds.get("SeriesDate") or ds.get("AcquisitionDate"),
                                              item.RadiopharmaceuticalStartTime, utc_offset=zone)
        scan = (parse_dicom_datetime(ds.get("SeriesDate"), ds.get("SeriesTime"), utc_offset=zone)
                or parse_dicom_datetime(ds.get("AcquisitionDate"), ds.get("AcquisitionTime"), utc_offset=zone))
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


# -- public builders --------------------------------------------------------------------------

def _modalities(datasets: Sequence[Dataset]) -> set[str]:
    return {str(ds.get("Modality", "") or "missing") for ds in datasets}


def _emission_values(datasets: Sequence[Dataset], warnings: list[str]) -> tuple[np.ndarray, Grid, Dataset, str, str]:
    """(values, grid, first instance, units, modality) of the NM or PT series, refused by name
    when it is neither, mixes modalities or is not in Bq/mL (PT)."""
    if not datasets:
        raise NoActivitySeriesError("the activity series holds no instances", "studyInstanceUid")
    found = _modalities(datasets)
    if len(found) > 1:
        raise NoActivitySeriesError(f"the activity series mixes modalities {', '.join(sorted(found))} (Modality "
                                    "(0008,0060)): one series must hold one reconstructed image", "Modality")
    modality = str(datasets[0].get("Modality", ""))
    if modality == "NM" and len(datasets) == 1:
        values, grid, nm_warnings = nm_multiframe(datasets[0])
        warnings.extend(nm_warnings)
        return values, grid, datasets[0], "CNTS", modality
    if modality == "NM":
        # Some systems export a reconstructed SPECT one slice per instance: each must be a
        # single frame with its own Image Plane attributes (then stacked like PET).
        if {int(ds.get("NumberOfFrames") or 1) for ds in datasets} != {1}:
            raise GeometryError(f"the NM series holds {len(datasets)} multi-frame instances; one reconstructed "
                                "tomogram (or one single-frame instance per slice) is expected", "NumberOfFrames")
        values, grid, sorted_ds = stack_slices(datasets, "NM")
        return values, grid, sorted_ds[0], "CNTS", modality
    if modality != "PT":
        raise NoActivitySeriesError(f"series modality {modality or 'missing'} is neither NM nor PT", "Modality")
    values, grid, sorted_ds = stack_slices(datasets, "PT")
    values, units = pt_units(values, sorted_ds, warnings)
    if units != "BQML":
        raise NoActivitySeriesError(f"PT Units (0054,1001) is {units or 'missing'}; only BQML (Bq/mL) images "
                                    "can be decay corrected and calibrated", "Units")
    return values, grid, sorted_ds[0], units, modality


def _pt_decay_factor(datasets: Sequence[Dataset], grid: Grid, values: np.ndarray, first: Dataset,
                     pharma: Radiopharmaceutical, reference: datetime, acquisition: datetime | None,
                     warnings: list[str]) -> tuple[np.ndarray, float]:
    """The PT values and the factor taking them to ``reference``, by DecayCorrection (0054,1102)."""
    zone = instance_utc_offset(first)
    correction = str(first.get("DecayCorrection", "")).upper()
    if correction == "START":
        # DecayCorrectionDateTime (0018,9701) when given, else the series start: SeriesDate/Time
        # is the reference of all time-related PET attributes (PS3.3 C.8.9.1.1.x), unless
        # re-stamped after the acquisition (vendor rules in :mod:`.vendor_pet`).
        start = pet_series_start(first, datasets, zone, warnings) or acquisition
        if start is None:
            warnings.append("PT SeriesDate/Time missing: no decay correction applied")
            return values, 1.0
        return values, _decay_to(start, reference, pharma.half_life_s)
    if correction == "ADMIN":
        if pharma.administration is not None:
            return values, _decay_to(pharma.administration, reference, pharma.half_life_s)
        warnings.append("PT DecayCorrection ADMIN without a RadiopharmaceuticalStartDateTime (0018,1078): "
                        "values left at the (unknown) administration time")
    elif correction == "NONE" and len(datasets) != grid.shape[0]:
        from services.dosimetry.imaging.enhanced_decay import decay_uncorrected_frames

        return decay_uncorrected_frames(datasets[0], grid, values, reference, pharma.half_life_s)
    elif correction == "NONE":
        return _decay_uncorrected_pt(datasets, grid, values, reference, pharma.half_life_s, warnings)
    else:
        warnings.append(f"PT DecayCorrection (0054,1102) {correction or 'missing'}: no decay correction applied")
    return values, 1.0


def activity_volume(datasets: Sequence[Dataset], reference_time: datetime | None = None) -> ActivityVolume:
    """The NM or PT series as an activity volume decay corrected to ``reference_time``
    (default: the administration time; the acquisition when that is unknown)."""
    warnings: list[str] = []
    values, grid, first, units, modality = _emission_values(datasets, warnings)
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
    zone = instance_utc_offset(first)
    acquisition = (parse_dicom_datetime(first.get("AcquisitionDate"), first.get("AcquisitionTime"), require_time=True,
                                        utc_offset=zone)
                   or parse_dicom_datetime(first.get("SeriesDate"), first.get("SeriesTime"), require_time=True,
                                           utc_offset=zone))
    if pharma is not None and pharma.administration is not None and acquisition is not None and \
            pharma.administration > acquisition + timedelta(minutes=1):
        warnings.append(f"RadiopharmaceuticalStartDateTime (0018,1078) {pharma.administration.isoformat()} is after "
                        f"the acquisition {acquisition.isoformat()}: no decay correction applied")
        pharma = Radiopharmaceutical(pharma.nuclide, pharma.half_life_s, None, pharma.total_activity_bq,
                                     pharma.name)
    reference = reference_time or (pharma.administration if pharma else None) or acquisition
    factor = 1.0
    if pharma is not None and reference is not None and modality == "PT":
        values, factor = _pt_decay_factor(datasets, grid, values, first, pharma, reference, acquisition, warnings)
    elif pharma is not None and reference is not None and acquisition is None:
        warnings.append("NM AcquisitionDate/Time missing: no decay correction applied")
    elif pharma is not None and reference is not None and acquisition is not None:
        duration_s = float(first.get("ActualFrameDuration") or 0) / 1000.0
        factor = _duration_factor(duration_s, pharma.half_life_s) * _decay_to(acquisition, reference,
                                                                              pharma.half_life_s)
    values *= factor  # the series' own volume, made above (each path builds a new one)
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
                                    require_time=True, utc_offset=instance_utc_offset(ds))
        if when is None:
            warnings.append("PT AcquisitionTime missing on a slice with DecayCorrection NONE: slice not corrected")
            continue
        duration_s = float(ds.get("ActualFrameDuration") or 0) / 1000.0
        out[k] *= _duration_factor(duration_s, half_life_s) * _decay_to(when, reference, half_life_s)
    return out, 1.0
