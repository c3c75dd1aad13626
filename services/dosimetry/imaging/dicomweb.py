"""Fetching a dosimetry study from a DICOMweb PACS (dicomweb-client).

QIDO-RS ``GET {root}/studies/{study}/series`` lists the study's series; the activity series is
the PT series when there is one (Y-90 PET), else the NM series (SPECT); among several, the one
whose instances say it is reconstructed/attenuation corrected and, then, the one with the most
instances. The CT is the CT series in the activity series' Frame of Reference (the one with most
instances). WADO-RS ``GET …/series/{series}`` retrieves the instances as pydicom datasets.

Errors: connection refused / timeout / HTTP 5xx → :class:`PacsUnavailableError` (503); unknown
study → :class:`SeriesNotFoundError`; no NM/PT series → :class:`NoActivitySeriesError`; no CT →
:class:`CtMismatchError` (422).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import requests
from pydicom.dataset import Dataset

from services.dosimetry.imaging.errors import (
    CtMismatchError,
    ImagingError,
    NoActivitySeriesError,
    PacsUnavailableError,
    SegmentationError,
    SeriesNotFoundError,
)

__all__ = ["StudyImages", "fetch_segmentation", "fetch_study", "list_series", "make_client"]

_T = TypeVar("_T")

# DICOM JSON attribute tags (PS3.18 F.2)
_MODALITY = "00080060"
_SERIES_UID = "0020000E"
_N_INSTANCES = "00201209"
_DESCRIPTION = "0008103E"
_FOR_UID = "00200052"


@dataclass(frozen=True)
class SeriesInfo:
    """One QIDO-RS series result."""

    series_uid: str
    modality: str
    instances: int
    description: str = ""


@dataclass
class StudyImages:
    """The instances of one study that voxel dosimetry needs."""

    study_uid: str
    activity: list[Dataset]
    ct: list[Dataset]
    warnings: list[str] = field(default_factory=list)


def make_client(dicomweb_url: str, timeout_s: float = 30.0, user: str = "", password: str = "") -> Any:
    """A :class:`dicomweb_client.api.DICOMwebClient` for ``dicomweb_url``."""
    from dicomweb_client.api import DICOMwebClient

    session = requests.Session()
    if user:
        session.auth = (user, password)
    return DICOMwebClient(url=dicomweb_url.rstrip("/"), session=session, timeout=timeout_s)


def _call(what: str, fn: Callable[[], _T], not_found: str | None = None) -> _T:
    """Run one DICOMweb request, mapping transport errors to typed imaging errors."""
    try:
        return fn()
    except requests.exceptions.HTTPError as exc:
        status = exc.response.status_code if exc.response is not None else 0
        if status == 404 and not_found:
            raise SeriesNotFoundError(not_found, "studyInstanceUid") from exc
        if status >= 500 or status in (0, 401, 403, 429):
            raise PacsUnavailableError(f"the PACS answered HTTP {status} to {what}") from exc
        raise ImagingError(f"the PACS answered HTTP {status} to {what}") from exc
    except (requests.exceptions.ConnectionError, requests.exceptions.Timeout) as exc:
        raise PacsUnavailableError(f"the PACS could not be reached for {what}: {type(exc).__name__}") from exc
    except requests.exceptions.RequestException as exc:
        raise PacsUnavailableError(f"the PACS request for {what} failed: {exc}") from exc


def _value(item: dict[str, Any], tag: str, default: Any = "") -> Any:
    values = item.get(tag, {}).get("Value")
    return values[0] if values else default


def list_series(client: Any, study_uid: str) -> list[SeriesInfo]:
    """QIDO-RS: the series of ``study_uid`` (an unknown study is an error)."""
    found = _call(f"QIDO-RS series of study {study_uid}",
                  lambda: client.search_for_series(study_instance_uid=study_uid,
                                                   fields=[_N_INSTANCES, _DESCRIPTION]),
                  not_found=f"study {study_uid} is not in the PACS")
    series = [SeriesInfo(str(_value(s, _SERIES_UID)), str(_value(s, _MODALITY)),
                         int(_value(s, _N_INSTANCES, 0) or 0), str(_value(s, _DESCRIPTION)))
              for s in found or []]
    if not series:
        raise SeriesNotFoundError(f"study {study_uid} is not in the PACS (no series found)", "studyInstanceUid")
    return series


def _retrieve(client: Any, study_uid: str, series_uid: str) -> list[Dataset]:
    datasets: list[Dataset] = _call(
        f"WADO-RS series {series_uid}", lambda: client.retrieve_series(study_uid, series_uid),
        not_found=f"series {series_uid} is not in study {study_uid}")
    if not datasets:
        raise SeriesNotFoundError(f"series {series_uid} of study {study_uid} holds no instances", "studyInstanceUid")
    return datasets


def _activity_score(datasets: Sequence[Dataset]) -> tuple[int, int]:
    first = datasets[0]
    image_type = [str(v).upper() for v in (first.get("ImageType") or [])]
    corrected = [str(v).upper() for v in (first.get("CorrectedImage") or [])]
    recon = first.get("Modality") == "PT" or (len(image_type) > 2 and image_type[2].startswith("RECON"))
    return (int(recon) * 2 + int("ATTN" in corrected), len(datasets))


def fetch_study(client: Any, study_uid: str) -> StudyImages:
    """QIDO + WADO: the activity (PT, else NM) series and its CT."""
    series = list_series(client, study_uid)
    warnings: list[str] = []
    pt = [s for s in series if s.modality == "PT"]
    nm = [s for s in series if s.modality == "NM"]
    candidates = pt or nm
    if not candidates:
        found = sorted({s.modality for s in series})
        raise NoActivitySeriesError(
            f"study {study_uid} has no NM (SPECT) or PT (PET) series (it holds {', '.join(found) or 'nothing'}); "
            "voxel dosimetry needs an emission image", "studyInstanceUid")
    if pt and nm:
        warnings.append("the study holds both PT and NM series: the PT series is used")
    retrieved = [_retrieve(client, study_uid, s.series_uid) for s in candidates]
    activity = max(retrieved, key=_activity_score)
    if len(candidates) > 1:
        warnings.append(f"{len(candidates)} {activity[0].Modality} series in the study: series "
                        f"{activity[0].SeriesInstanceUID} used")
    for_uid = str(activity[0].get("FrameOfReferenceUID", ""))
    cts = [s for s in series if s.modality == "CT"]
    if not cts:
        raise CtMismatchError(f"study {study_uid} has no CT series to give tissue density and anatomy",
                              "studyInstanceUid")
    ct_sets = [_retrieve(client, study_uid, s.series_uid) for s in sorted(cts, key=lambda s: -s.instances)]
    same_frame = [c for c in ct_sets if str(c[0].get("FrameOfReferenceUID", "")) == for_uid]
    ct = (same_frame or ct_sets)[0]
    return StudyImages(study_uid, activity, ct, warnings)


def fetch_segmentation(client: Any, study_uid: str, series_uid: str) -> Dataset:
    """WADO-RS the SEG or RTSTRUCT series ``series_uid`` (its first instance)."""
    series = list_series(client, study_uid)
    match = [s for s in series if s.series_uid == series_uid]
    if not match:
        raise SegmentationError(f"segmentation series {series_uid} is not in study {study_uid}",
                                "segmentationSeriesUid")
    if match[0].modality not in {"SEG", "RTSTRUCT"}:
        raise SegmentationError(f"series {series_uid} is {match[0].modality}, not a DICOM SEG or RTSTRUCT",
                                "segmentationSeriesUid")
    return _retrieve(client, study_uid, series_uid)[0]
