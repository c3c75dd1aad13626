"""PET series start and units where vendors depart from the standard.

**Series start** (the reference of DecayCorrection START, PS3.3 C.8.9.1.1): DecayCorrectionDateTime
(0018,9701) when present, else SeriesDate/SeriesTime. Post-processing (a re-export, a
reconstruction saved later) can re-stamp SeriesTime after the acquisition, and the series time
then no longer says when the counts were decay corrected to. Following the QIBA vendor-neutral
SUV pseudo-code: when SeriesDate/Time is later than the earliest AcquisitionDate/Time of the
series, a GE image's private scan start (private creator ``GEMS_PETD_01``, element (0009,xx0D),
a DT) is the series start; without it, the earliest AcquisitionDate/Time is (a warning says
which was used). Frames of an enhanced instance give their Frame Acquisition DateTime.

**Units** (0054,1001) that are not an activity concentration are refused by name: SUV images
(GML, CM2ML: derived with the vendor's weight and decay conventions, the Bq/mL reconstruction is
needed), counts and proportional counts (CNTS, CPS, PROPCNTS, PROPCPS: not calibrated; a
Philips CNTS image with its activity concentration scale factor is converted in :mod:`.slices`),
and NONE.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from pydicom.dataset import Dataset

from services.dosimetry.imaging.dicom_time import parse_dicom_datetime
from services.dosimetry.imaging.errors import NoActivitySeriesError

__all__ = ["GE_PET_PRIVATE_CREATOR", "pet_series_start", "refuse_uncalibrated_units"]

GE_PET_PRIVATE_CREATOR = "GEMS_PETD_01"
_GE_SCAN_DATETIME = 0x0D

_UNCALIBRATED = {
    "GML": "an SUV image (g/mL, body weight), derived with the vendor's weight and decay conventions",
    "CM2ML": "an SUV image (cm²/mL, body surface area), derived with the vendor's conventions",
    "CNTS": "counts, not calibrated to activity",
    "CPS": "counts per second, not calibrated to activity",
    "PROPCNTS": "proportional to counts, not calibrated to activity",
    "PROPCPS": "proportional to counts per second, not calibrated to activity",
    "NONE": "no unit",
}


def refuse_uncalibrated_units(units: str) -> None:
    """Raise naming ``units`` when it is a known unit that is not an activity concentration."""
    reason = _UNCALIBRATED.get(units)
    if reason is not None:
        raise NoActivitySeriesError(
            f"PT Units (0054,1001) is {units}: {reason}; only BQML (Bq/mL) images can be decay corrected and "
            "calibrated (use the scanner's Bq/mL reconstruction)", "Units")


def _ge_scan_start(ds: Dataset, zone: timedelta | None) -> datetime | None:
    if "GE" not in str(ds.get("Manufacturer", "")).upper().split():
        return None
    try:
        block = ds.private_block(0x0009, GE_PET_PRIVATE_CREATOR)
        raw = block[_GE_SCAN_DATETIME].value
    except KeyError:
        return None
    text = raw.decode("ascii", "replace").strip("\x00 ") if isinstance(raw, bytes) else str(raw)
    return parse_dicom_datetime(text, require_time=True, utc_offset=zone)


def _acquisition_times(datasets: Sequence[Dataset], zone: timedelta | None) -> list[datetime]:
    times = []
    for ds in datasets:
        for frame in ds.get("PerFrameFunctionalGroupsSequence") or []:
            content = (frame.get("FrameContentSequence") or [Dataset()])[0]
            when = parse_dicom_datetime(content.get("FrameAcquisitionDateTime"), require_time=True, utc_offset=zone)
            if when is not None:
                times.append(when)
        when = parse_dicom_datetime(ds.get("AcquisitionDate") or ds.get("SeriesDate"), ds.get("AcquisitionTime"),
                                    require_time=True, utc_offset=zone)
        if when is not None:
            times.append(when)
    return times


def pet_series_start(first: Dataset, datasets: Sequence[Dataset], zone: timedelta | None,
                     warnings: list[str]) -> datetime | None:
    """The time a DecayCorrection START series is decay corrected to (see the module docstring)."""
    explicit = parse_dicom_datetime(first.get("DecayCorrectionDateTime"), require_time=True, utc_offset=zone)
    if explicit is not None:
        return explicit
    series = parse_dicom_datetime(first.get("SeriesDate"), first.get("SeriesTime"), require_time=True,
                                  utc_offset=zone)
    times = _acquisition_times(datasets, zone)
    earliest = min(times) if times else None
    if series is None or earliest is None or series <= earliest + timedelta(seconds=1):
        return series or earliest
    ge = _ge_scan_start(first, zone)
    late = f"PT SeriesTime {series.isoformat()} is after the acquisition (re-stamped by post-processing?)"
    if ge is not None:
        warnings.append(f"{late}: decay correction referred to GE's private scan start {ge.isoformat()} "
                        f"({GE_PET_PRIVATE_CREATOR} (0009,xx0D))")
        return ge
    warnings.append(f"{late}: decay correction referred to the earliest AcquisitionTime {earliest.isoformat()}")
    return earliest
