"""The absorbed-dose map as a DICOM RT Dose instance (PS3.3 A.18, RT Dose module C.8.8.3).

The instance is written into the *same study* as the images (StudyInstanceUID) and the *same
Frame of Reference as the CT* (FrameOfReferenceUID), so a viewer overlays it on the CT. It is
a multi-frame image on the activity grid: ImagePositionPatient of the first frame,
ImageOrientationPatient, PixelSpacing, GridFrameOffsetVector (3004,000C) (frame offsets in mm
along the normal, first = 0) with FrameIncrementPointer → (3004,000C); 16-bit unsigned pixels
× DoseGridScaling (3004,000E) = dose in Gy; DoseUnits GY, DoseType PHYSICAL.

Dose Summation Type (3004,000A) is ``PLAN_OVERVIEW``, for both a post-treatment Y-90 dose and an
MAA simulation. Why: every other Defined Term makes a reference Type 1C. PLAN, MULTI_PLAN,
FRACTION, BEAM, BRACHY, the *_SESSION terms and CONTROL_POINT require the Referenced RT Plan
Sequence (300C,0002); RECORD requires the Referenced Treatment Record Sequence (3008,0030),
"describing RT Beams Treatment Record associated with dose" (PS3.3 Table C.8-39). A
radioembolisation has neither an RT Plan nor an RT Beams Treatment Record instance, so writing
PLAN or RECORD leaves a Type 1C attribute missing (the one error ``dciodvfy`` reported), and a
reference to a made-up instance would be worse. PLAN_OVERVIEW, the later Defined Term for
"dose calculated with respect to plan overview parameters", is the one that needs no such
reference: the treatment is described by a Plan Overview Sequence (300C,0116) item instead
(Plan Overview Index 1, RT Plan Label, Number of Fractions Included 1 = one administration,
Treatment Site and its code SCT 10200004 Liver). Whether the dose was delivered or predicted
is said by DoseComment ("delivered" / "predicted (MAA simulation)") and the series
description. ``dciodvfy`` then reports no error; its dictionary (Debian 2022, dicom3tools source
2025) predates PLAN_OVERVIEW, so it warns that the term is unrecognised and that the Plan
Overview attributes are not in its IOD (``docs/imaging.md``). Everything else it checks is met:
OperatorsName (Type 2, RT Series C.8.8.1), Source Image Sequence (0008,2112) naming the
emission instances, and the Common Instance Reference module (C.12.2) with their Referenced
Instance Sequence. The stored values are 16-bit, as most planning systems write them (the
Debian build of dciodvfy aborts on 32-bit RT Dose).

:func:`store_rtdose` sends it with STOW-RS (dicomweb-client ``store_instances``).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from copy import deepcopy
from datetime import datetime
from typing import Any

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, ExplicitVRLittleEndian, generate_uid

from netliver.pacs_ids import is_dicom_uid
from services.dosimetry import __version__
from services.dosimetry.imaging.errors import ImagingError, PacsUnavailableError
from services.dosimetry.imaging.grid import Grid

__all__ = ["RT_DOSE_STORAGE", "STORE_RETRY_DELAYS_S", "build_rtdose", "rtdose_array", "store_rtdose",
           "store_rtdose_retrying"]

RT_DOSE_STORAGE = "1.2.840.10008.5.1.4.1.1.481.2"
#: 16-bit unsigned stored values, as most planning systems write RT Dose: 1/65535 of the maximum
#: dose is far below any clinical difference, and 32-bit RT Dose crashes common validators.
_MAX_STORED = 2**16 - 1


def build_rtdose(dose_gy: np.ndarray, grid: Grid, *, study: Dataset, frame_of_reference_uid: str,
                 delivered: bool, series_description: str, deterministic_key: str,
                 when: datetime | None = None, referenced_series_uid: str = "",
                 source_images: Sequence[Dataset] = ()) -> Dataset:
    """An RT Dose dataset for ``dose_gy`` on ``grid``.

    ``study`` is any instance of the study (patient and study attributes are copied from it);
    ``delivered`` says whether the dose is the one a treatment delivered (post-treatment Y-90
    image) or a prediction (MAA simulation): both are written with Dose Summation Type
    PLAN_OVERVIEW (see the module docstring) and told apart by the Plan Overview item and
    DoseComment;
    ``source_images`` are the emission instances the dose was computed from (Source Image
    Sequence and Common Instance Reference; ``referenced_series_uid`` alone names no instance
    and is written only with them);
    ``deterministic_key`` seeds the series and instance UIDs, so computing the same job twice
    produces the same instance (a second STOW replaces it instead of adding a copy).
    """
    if dose_gy.shape != grid.shape:
        raise ValueError(f"dose shape {dose_gy.shape} ≠ grid shape {grid.shape}")
    # one float64 copy, worked in place (at 128³ each further copy cost ~5 ms of the job's store)
    dose = np.array(dose_gy, dtype=np.float64)
    np.clip(dose, 0.0, None, out=dose)  # a NaN stays NaN, -inf becomes 0
    with np.errstate(over="ignore", invalid="ignore"):
        total = float(dose.sum())
    if not math.isfinite(total):  # a NaN or +inf somewhere (rare; or a sum past float64): 0 there, as -inf
        # (the sum's one pass instead of nan_to_num's six on every dose: ~5 ms of the store)
        np.nan_to_num(dose, copy=False, nan=0.0, posinf=0.0, neginf=0.0)
    grid, dose = _frames_along_normal(grid, dose)
    peak = float(dose.max())
    scaling = peak / _MAX_STORED if peak > 0 else 1.0
    when = when or datetime.now()
    sop_uid = generate_uid(entropy_srcs=["rtdose-instance", deterministic_key])

    ds = _part10_dataset(sop_uid)
    for keyword in ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyInstanceUID",
                    "StudyDate", "StudyTime", "StudyID", "AccessionNumber", "ReferringPhysicianName",
                    "StudyDescription"):
        ds.__setattr__(keyword, study.get(keyword, ""))
    ds.Modality = "RTDOSE"
    ds.OperatorsName = ""  # Type 2 in the RT Series module (C.8.8.1): present, empty when unknown
    ds.SeriesInstanceUID = generate_uid(entropy_srcs=["rtdose-series", deterministic_key])
    ds.SeriesNumber = 9001
    ds.SeriesDescription = series_description[:64]
    ds.InstanceNumber = 1
    ds.ContentDate = when.strftime("%Y%m%d")
    ds.ContentTime = when.strftime("%H%M%S")
    ds.InstanceCreationDate = ds.ContentDate
    ds.InstanceCreationTime = ds.ContentTime
    ds.Manufacturer = "netliver"
    ds.ManufacturerModelName = "netliver dosimetry"
    ds.SoftwareVersions = __version__
    ds.FrameOfReferenceUID = frame_of_reference_uid
    ds.PositionReferenceIndicator = ""
    _write_geometry(ds, grid)
    # RT Dose
    ds.DoseUnits = "GY"
    ds.DoseType = "PHYSICAL"
    ds.DoseSummationType = "PLAN_OVERVIEW"
    ds.PlanOverviewSequence = DicomSequence([_plan_overview()])
    # (3004,0014) Type 3: the dose used the CT's density map (C.8.8.3)
    ds.TissueHeterogeneityCorrection = "IMAGE"
    ds.DoseGridScaling = f"{scaling:.10g}"
    ds.DoseComment = f"Y-90 absorbed dose, {'delivered' if delivered else 'predicted (MAA simulation)'}"[:64]
    _reference_sources(ds, source_images, referenced_series_uid)
    np.divide(dose, scaling, out=dose)
    ds.PixelData = np.rint(dose, out=dose).astype(np.uint16).tobytes()  # rint: np.round's half-to-even
    return ds


def _frames_along_normal(grid: Grid, dose: np.ndarray) -> tuple[Grid, np.ndarray]:
    """Frames stacked against the normal (e.g. an NM negative SpacingBetweenSlices) are written
    from the other end so GridFrameOffsetVector increases; some viewers mishandle negative offsets."""
    normal = np.cross(grid.orientation[:3], grid.orientation[3:])
    if float(grid.affine[:3, 0] @ normal) >= 0:
        return grid, dose
    flipped = grid.affine.copy()
    flipped[:3, 3] = grid.index_to_patient(np.array([grid.shape[0] - 1.0, 0.0, 0.0]))
    flipped[:3, 0] = -grid.affine[:3, 0]
    return Grid(grid.shape, flipped, grid.frame_of_reference_uid), dose[::-1]


def _part10_dataset(sop_uid: str) -> Dataset:
    ds = Dataset()
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = RT_DOSE_STORAGE
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds.file_meta = meta
    # A Part-10 preamble: dicomweb-client writes the dataset as it is for STOW-RS, and without
    # one the PACS stores (and later serves) bytes that strict readers refuse.
    ds.preamble = b"\x00" * 128
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.SOPClassUID = RT_DOSE_STORAGE
    ds.SOPInstanceUID = sop_uid
    return ds


def _write_geometry(ds: Dataset, grid: Grid) -> None:
    """Image Plane, Multi-frame and Image Pixel attributes of the dose grid (16-bit unsigned)."""
    ds.ImagePositionPatient = [f"{v:.6g}" for v in grid.first_position_mm]
    ds.ImageOrientationPatient = [f"{v:.8g}" for v in grid.orientation]
    dz, dy, dx = grid.spacing_mm
    ds.PixelSpacing = [f"{dy:.6g}", f"{dx:.6g}"]
    ds.SliceThickness = f"{dz:.6g}"
    ds.GridFrameOffsetVector = [f"{k * dz:.6g}" for k in range(grid.shape[0])]
    ds.NumberOfFrames = grid.shape[0]
    ds.FrameIncrementPointer = 0x3004000C
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = grid.shape[1]
    ds.Columns = grid.shape[2]
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0


def _plan_overview() -> Dataset:
    """The one Plan Overview Sequence (300C,0116) item: the radioembolisation the dose belongs
    to, described by its parameters because there is no RT Plan instance to reference."""
    item = Dataset()
    item.PlanOverviewIndex = 1
    item.RTPlanLabel = "Y-90 SIRT"
    item.NumberOfFractionsIncluded = 1  # one administration
    item.TreatmentSite = "Liver"
    site = Dataset()
    site.CodeValue = "10200004"
    site.CodingSchemeDesignator = "SCT"
    site.CodeMeaning = "Liver"
    item.TreatmentSiteCodeSequence = DicomSequence([site])
    return item


def _reference_sources(ds: Dataset, source_images: Sequence[Dataset], series_uid: str) -> None:
    """Source Image Sequence (0008,2112) of the General Image module: the images the dose was
    derived from; and, as every instance referenced in the same study must be, the Common
    Instance Reference module's Referenced Series Sequence (0008,1115) with each series'
    Referenced Instance Sequence (0008,114A) (PS3.3 C.12.2)."""
    if not source_images:
        return
    items = []
    by_series: dict[str, list[Dataset]] = {}
    for image in source_images:
        item = Dataset()
        item.ReferencedSOPClassUID = image.SOPClassUID
        item.ReferencedSOPInstanceUID = image.SOPInstanceUID
        items.append(item)
        by_series.setdefault(str(image.get("SeriesInstanceUID", series_uid)), []).append(item)
    ds.SourceImageSequence = DicomSequence(items)
    series_items = []
    for uid, instances in by_series.items():
        ref = Dataset()
        ref.SeriesInstanceUID = uid
        ref.ReferencedInstanceSequence = DicomSequence([deepcopy(i) for i in instances])
        series_items.append(ref)
    ds.ReferencedSeriesSequence = DicomSequence(series_items)


def rtdose_array(ds: Dataset) -> np.ndarray:
    """Dose in Gy of an RT Dose instance (stored value × DoseGridScaling), shape (frames, rows, cols)."""
    pixels = ds.pixel_array.astype(np.float64)
    if pixels.ndim == 2:
        pixels = pixels[np.newaxis]
    return np.asarray(pixels * float(ds.DoseGridScaling))


def store_rtdose(client: Any, ds: Dataset) -> None:
    """STOW-RS the instance into its study; a PACS failure is a 503, a refusal a 422."""
    import requests

    if not is_dicom_uid(str(ds.StudyInstanceUID)):
        raise ImagingError("the RT Dose's StudyInstanceUID is not a DICOM UID", "StudyInstanceUID")
    try:
        client.store_instances(datasets=[ds], study_instance_uid=str(ds.StudyInstanceUID))
    except requests.exceptions.HTTPError as exc:
        status = exc.response.status_code if exc.response is not None else 0
        if status >= 500 or status == 0:
            raise PacsUnavailableError(f"the PACS failed to store the RT Dose (STOW-RS HTTP {status})") from exc
        raise ImagingError(f"the PACS refused the RT Dose instance (STOW-RS HTTP {status})") from exc
    except requests.exceptions.RequestException as exc:
        raise PacsUnavailableError(f"the PACS could not be reached to store the RT Dose ({type(exc).__name__})") from exc


#: Waits between STOW-RS attempts while the PACS does not answer (seconds), about 40 s in all:
#: a PACS restart is ridden out; a longer outage leaves the dose results without the RT Dose.
STORE_RETRY_DELAYS_S = (2.0, 8.0, 30.0)


def store_rtdose_retrying(client: Any, ds: Dataset, delays_s: Sequence[float] = STORE_RETRY_DELAYS_S,
                          sleep: Callable[[float], None] = time.sleep) -> str | None:
    """Store ``ds``, retrying with backoff while the PACS is unavailable. None once stored, else
    why it was not (the PACS stayed away, or refused the instance: retrying would not help)."""
    for attempt, delay in enumerate((*delays_s, None), start=1):
        try:
            store_rtdose(client, ds)
            return None
        except PacsUnavailableError as err:
            if delay is None:
                return f"{err.message}, {attempt} attempts"
            sleep(delay)
        except ImagingError as err:
            return err.message
    return None  # pragma: no cover - the loop returns
