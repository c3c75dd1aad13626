"""The images behind a voxel report's dose map, fetched from the PACS over DICOMweb.

A voxel-dosimetry report names its RT Dose in its Provenance (an entity ``urn:dicom:uid``
``urn:oid:<SOP Instance UID>``) and its study through ``imagingStudy`` (the ImagingStudy's
``urn:dicom:uid`` identifier). The page then reads, from ``DICOMWEB_URL``: the RT Dose, the CT
instance nearest the chosen slice and the SEG of the study that share the dose's frame of
reference. What was fetched is kept for the last few RT Doses (and CT slices) in this process, so
drawing a slice again does not fetch again.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NoReturn

import requests
from pydicom.dataset import Dataset

from netliver import sessions
from netliver.report.dose_map import DoseMapError, DoseVolume, load_dose
from netliver.settings import Settings

__all__ = ["DoseImages", "DoseMapSource", "DoseMapUnavailable"]

_CACHED = 4
#: CT instances kept (one per slice drawn).
_CACHED_SLICES = 64
#: Seconds a PACS that did not answer is not asked again (a page render would wait for it each time).
_PACS_DOWN_S = 30.0
_UID = "urn:dicom:uid"


class DoseMapUnavailable(Exception):
    """No dose map for this report (a sentence the page shows instead)."""


class _PacsDown(Exception):
    """The PACS did not answer (not asked again for a while)."""


@dataclass(frozen=True)
class DoseImages:
    volume: DoseVolume
    ct: list[Dataset]
    seg: Dataset | None


def _oid(identifier: Any) -> str | None:
    if isinstance(identifier, dict) and identifier.get("system") == _UID and str(identifier.get("value", "")).startswith(
            "urn:oid:"):
        return str(identifier["value"]).removeprefix("urn:oid:")
    return None


def _value(header: dict[str, Any], tag: str) -> Any:
    return ((header.get(tag) or {}).get("Value") or [None])[0]


def _series(found: list[dict[str, Any]], modality: str) -> list[str]:
    return [str(s["0020000E"]["Value"][0]) for s in found
            if (s.get("00080060") or {}).get("Value", [None])[0] == modality and s.get("0020000E")]


class DoseMapSource:
    """Finds and fetches the images of a voxel report's dose map (``client`` is a DICOMweb client
    with ``search_for_instances``, ``search_for_series``, ``retrieve_instance``,
    ``retrieve_series`` and ``retrieve_series_metadata``, built from the settings when not given)."""

    def __init__(self, settings: Settings, client: Callable[[], Any] | None = None) -> None:
        self.settings = settings
        self._client = client or self.dicomweb
        self._cache: OrderedDict[str, DoseImages] = OrderedDict()
        self._slices: OrderedDict[str, Dataset] = OrderedDict()
        self._ct_indexes: dict[str, list[tuple[float, str, str]]] = {}
        self._lock = threading.Lock()
        self._down: tuple[float, str] | None = None

    def dicomweb(self) -> Any:
        """A DICOMweb client of ``DICOMWEB_URL`` (with the PACS user, when one is set)."""
        from dicomweb_client.api import DICOMwebClient

        session = sessions.session()
        if self.settings.orthanc_user:
            session.auth = (self.settings.orthanc_user, self.settings.orthanc_password)
        return DICOMwebClient(url=self.settings.dicomweb_url.rstrip("/"), session=session,
                              timeout=self.settings.service_timeout_s)

    def locate(self, store: Any, base_url: str, report: dict[str, Any]) -> tuple[str, str]:
        """(study UID, RT Dose SOP Instance UID) of a stored voxel report."""
        ref = f"DiagnosticReport/{report.get('id')}"
        provenances = store.search("Provenance", [("target", ref), ("_count", "20")], base_url).get("entry") or []
        # the absorbed-dose RT Dose: a derivation the report does not name as another map (the BED map)
        others = {_oid(x.get("valueIdentifier")) for x in report.get("extension") or [] if isinstance(x, dict)}
        sop = next((uid for e in provenances for entity in (e.get("resource") or {}).get("entity") or []
                    if entity.get("role") == "derivation"
                    for uid in [_oid((entity.get("what") or {}).get("identifier"))] if uid and uid not in others), None)
        if sop is None:
            raise DoseMapUnavailable("the report names no RT Dose (the PACS did not take it when the job ran)")
        for study_ref in report.get("imagingStudy") or []:
            rtype, _, rid = str(study_ref.get("reference", "")).partition("/")
            if rtype == "ImagingStudy" and rid:
                study = store.read("ImagingStudy", rid)
                uid = next((u for u in map(_oid, study.get("identifier") or []) if u), None)
                if uid:
                    return uid, sop
        raise DoseMapUnavailable("the report names no ImagingStudy with a DICOM study UID")

    def images(self, study_uid: str, sop_uid: str) -> DoseImages:
        """The RT Dose and the SEG (what the page's table needs); the CT is read slice by slice,
        for the figure only (:meth:`ct_near`)."""
        with self._lock:
            cached = self._cache.get(sop_uid)
            if cached is not None:
                self._cache.move_to_end(sop_uid)
                return cached
            if self._down is not None and time.monotonic() - self._down[0] < _PACS_DOWN_S:
                raise DoseMapUnavailable(self._down[1])
        try:
            fetched = self._fetch(study_uid, sop_uid)
        except _PacsDown as err:
            self._pacs_down(err)
        with self._lock:
            self._cache[sop_uid] = fetched
            while len(self._cache) > _CACHED:
                self._cache.popitem(last=False)
        return fetched

    def ct_near(self, study_uid: str, volume: DoseVolume, z_mm: float) -> list[Dataset]:
        """The one CT instance (of a series on the dose's frame of reference) nearest ``z_mm``,
        or [] when the study has none. The series' headers are read once per frame of reference
        (WADO-RS metadata, no pixels), then only the instance a slice needs: a clinical CT is
        ~150 MB, one slice ~0.5 MB."""
        try:
            index = self._ct_index(study_uid, volume.frame_of_reference_uid)
            if not index:
                return []
            _z, series_uid, sop_uid = min(index, key=lambda item: abs(item[0] - z_mm))
            with self._lock:
                hit = self._slices.get(sop_uid)
            if hit is None:
                hit = self._client().retrieve_instance(study_uid, series_uid, sop_uid)
                with self._lock:
                    self._slices[sop_uid] = hit
                    while len(self._slices) > _CACHED_SLICES:
                        self._slices.popitem(last=False)
            return [hit]
        except (requests.RequestException, OSError) as err:
            self._pacs_down(_PacsDown(f"the PACS ({self.settings.dicomweb_url}) did not answer: {type(err).__name__}"))
        return []

    def _ct_index(self, study_uid: str, frame_of_reference_uid: str) -> list[tuple[float, str, str]]:
        """(z, series UID, SOP Instance UID) of each instance of the study's first CT series on
        ``frame_of_reference_uid``, from the series' metadata."""
        key = f"{study_uid}/{frame_of_reference_uid}"
        with self._lock:
            known = self._ct_indexes.get(key)
        if known is not None:
            return known
        client = self._client()
        found: list[tuple[float, str, str]] = []
        for series_uid in _series(client.search_for_series(study_uid, search_filters={"Modality": "CT"}), "CT"):
            headers = client.retrieve_series_metadata(study_uid, series_uid)
            if headers and _value(headers[0], "00200052") == frame_of_reference_uid:
                found = [(float(h["00200032"]["Value"][2]), series_uid, str(_value(h, "00080018")))
                         for h in headers if (h.get("00200032") or {}).get("Value")]
                break
        with self._lock:
            self._ct_indexes[key] = found
        return found

    def _pacs_down(self, err: _PacsDown) -> NoReturn:
        with self._lock:
            self._down = (time.monotonic(), str(err))
        raise DoseMapUnavailable(str(err)) from err

    def _fetch(self, study_uid: str, sop_uid: str) -> DoseImages:
        try:
            client = self._client()
            # The RT Dose the report names, found by its SOP Instance UID (QIDO-RS at instance
            # level) and retrieved alone: each job adds an RT Dose series to the study (~8 MiB at
            # 128³), and the page read them all until it met the one it wanted.
            hits = client.search_for_instances(study_instance_uid=study_uid, search_filters={"SOPInstanceUID": sop_uid})
            series_uid = next((str(h["0020000E"]["Value"][0]) for h in hits or [] if (h.get("0020000E") or {}).get("Value")),
                              None)
            dose = client.retrieve_instance(study_uid, series_uid, sop_uid) if series_uid else None
            if dose is None or str(dose.get("Modality", "")) != "RTDOSE":
                raise DoseMapUnavailable(f"the PACS holds no RT Dose {sop_uid} in study {study_uid}")
            volume = load_dose(dose)
            segs = client.search_for_series(study_uid, search_filters={"Modality": "SEG"})
            seg = next((ds for uid in _series(segs, "SEG") for ds in client.retrieve_series(study_uid, uid)
                        if str(ds.get("FrameOfReferenceUID", "")) == volume.frame_of_reference_uid), None)
        except DoseMapError as err:
            raise DoseMapUnavailable(str(err)) from err
        except (requests.RequestException, OSError) as err:
            raise _PacsDown(f"the PACS ({self.settings.dicomweb_url}) did not answer: {type(err).__name__}") from err
        return DoseImages(volume, [], seg)
