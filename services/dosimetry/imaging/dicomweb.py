"""Fetching a dosimetry study from a DICOMweb PACS (dicomweb-client).

QIDO-RS ``GET {root}/studies/{study}/series?Modality=…`` lists the study's PT, NM and CT series
(:data:`JOB_MODALITIES`, one query each: Modality is a matching attribute every QIDO-RS origin
server supports at series level, PS3.18 Table 10.6.1-5), not every series of the study: a PACS
may read an instance of each series it lists, and a study collects SEGs and RT Doses. The
activity series is the PT series when there is one (Y-90 PET), else the NM series (SPECT);
among several, the one whose instances say it is reconstructed/attenuation corrected and, then,
the one with the most instances. The CT is the CT series in the activity series' Frame of
Reference (the one with most instances). WADO-RS ``GET …/series/{series}`` retrieves the instances as pydicom datasets; the
CT's are streamed (:func:`stream_series`), each parsed as it arrives: with the client
:func:`make_client` gives (:class:`PacsClient`), the multipart answer is split here
(:mod:`.multipart`) and each instance read by :func:`.plain_instance.read_plain_instance` (pydicom's
``dcmread`` for anything but the plain encodings): for a 256-slice CT from a local Orthanc,
0.10 s of CPU (median of six) where dicomweb-client and ``dcmread`` took 0.145 s.

Instances are asked for in their stored transfer syntax (:data:`AS_STORED`) and decoded here.

Errors: connection refused / timeout / HTTP 5xx → :class:`PacsUnavailableError` (503); HTTP
401/403 → :class:`PacsConfigurationError` (credentials or access rules, not retried); unknown
study → :class:`SeriesNotFoundError`; no NM/PT series → :class:`NoActivitySeriesError`; no CT →
:class:`CtMismatchError` (422).
"""

from __future__ import annotations

import http.client
import io
import struct
from collections.abc import Callable, Generator, Iterable, Iterator
from dataclasses import dataclass, field
from io import BytesIO
from typing import Any, TypeVar

import pydicom
import requests
import urllib3
from dicomweb_client.api import DICOMwebClient
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from netliver import sessions
from netliver.pacs_ids import is_dicom_uid
from services.dosimetry.imaging.errors import (
    CtMismatchError,
    ImagingError,
    NoActivitySeriesError,
    PacsConfigurationError,
    PacsUnavailableError,
    SegmentationError,
    SeriesNotFoundError,
)
from services.dosimetry.imaging.multipart import (
    ByteStream,
    boundary_of,
    multipart_bodies,
    multipart_parts,
)
from services.dosimetry.imaging.plain_instance import read_plain_instance
from services.dosimetry.imaging.voi import segmentation_kind

__all__ = ["AS_STORED", "IDENTITY", "JOB_MODALITIES", "PacsClient", "StudyImages", "fetch_segmentation", "fetch_segmentations", "fetch_study", "list_series", "make_client",
           "stream_series"]

_T = TypeVar("_T")

#: The Accept header of :data:`AS_STORED` (PS3.18 8.7.3.5.2).
_AS_STORED_ACCEPT = 'multipart/related; type="application/dicom"; transfer-syntax=*'
#: Bytes read from the socket at a time while a series streams.
_CHUNK_BYTES = 1 << 20
#: The buffer of a reader over urllib3's response (:func:`_body_stream`), from which headers and
#: delimiters are read (a part's body past it is read whole).
_LINE_BUFFER_BYTES = 1 << 16
#: The standard library's HTTP response, read directly when urllib3's response holds one.
_STDLIB_RESPONSE: type[http.client.HTTPResponse] = http.client.HTTPResponse

#: The modalities of the series a voxel job reads by choice (:func:`fetch_study`): emission
#: (Y-90 PET, else SPECT) and CT. Listing only these spares the PACS the study's other series:
#: Orthanc 1.10 with its DICOMweb plugin 1.7 reads one instance of every series it lists, and
#: listing a study with a 32 MiB SEG of 1,024 frames took it 24-42 ms against 2 ms a modality.
JOB_MODALITIES = ("PT", "NM", "CT")

#: Modalities of a segmentation series as QIDO-RS lists it (:func:`fetch_segmentations`).
_SEGMENTATION_MODALITIES = frozenset({"SEG", "RTSTRUCT"})

#: Accept-Encoding of the DICOMweb session: answers uncompressed (RFC 9110 12.5.3).
IDENTITY = "identity"

#: WADO-RS Accept for instances in the transfer syntax the PACS stored them in (PS3.18 8.7.3.5.2,
#: ``transfer-syntax=*``): decoded here by pydicom's pixel handlers. Asked for uncompressed
#: data, a PACS transcodes (and Orthanc answers 500 for JPEG 2000, which it cannot decode).
AS_STORED = (("application/dicom", "*"),)

# DICOM JSON attribute tags (PS3.18 F.2)
_MODALITY = "00080060"
_SERIES_UID = "0020000E"
_N_INSTANCES = "00201209"
_DESCRIPTION = "0008103E"
_FOR_UID = "00200052"
_IMAGE_TYPE = "00080008"
_CORRECTED_IMAGE = "00280051"


@dataclass(frozen=True)
class SeriesInfo:
    """One QIDO-RS series result."""

    series_uid: str
    modality: str
    instances: int
    description: str = ""


@dataclass
class StudyImages:
    """The instances of one study that voxel dosimetry needs. ``ct`` is a stream (the request is
    made, its instances are read one by one as they arrive) of ``ct_instances`` instances (the
    count the PACS lists; 0 when it gives none); ``series`` is what QIDO-RS listed of the
    :data:`JOB_MODALITIES`."""

    study_uid: str
    activity: list[Dataset]
    ct: Iterable[Dataset]
    warnings: list[str] = field(default_factory=list)
    ct_instances: int = 0
    series: list[SeriesInfo] = field(default_factory=list)

    def close(self) -> None:
        """Close the CT's stream where it stopped (read to its end, this does nothing): a job
        that fails on the way lets the PACS's answer go now, not when the collector finds it."""
        close = getattr(self.ct, "close", None)
        if close is not None:
            close()


class PacsClient(DICOMwebClient):  # type: ignore[misc]
    """dicomweb-client's DICOMweb client, which can also give a series' instances as the bytes
    the PACS sends (:meth:`iter_series_parts`), for the CT's stream."""

    def __init__(self, url: str, session: requests.Session, timeout_s: float) -> None:
        super().__init__(url=url, session=session, timeout=timeout_s)
        self.http_session = session
        self.timeout_s = timeout_s

    def iter_series_parts(self, study_uid: str, series_uid: str) -> Iterator[bytes]:
        """WADO-RS the instances of a series (:data:`AS_STORED`), each as its Part 10 bytes once
        its part of the multipart answer has arrived."""
        prefix = f"/{self.wado_url_prefix}" if self.wado_url_prefix else ""
        url = f"{self.base_url}{prefix}/studies/{study_uid}/series/{series_uid}"
        with self.http_session.get(url, headers={"Accept": _AS_STORED_ACCEPT}, stream=True,
                                   timeout=self.timeout_s) as response:
            response.raise_for_status()
            content_type = response.headers.get("Content-Type", "")
            boundary = boundary_of(content_type)
            if boundary is not None:
                stream = _body_stream(response)
                if stream is not None:
                    yield from _parts_of(stream, boundary)
                    _release(response, stream)
                else:
                    yield from multipart_bodies(response.iter_content(_CHUNK_BYTES), boundary)
            elif content_type.lower().startswith("application/dicom"):
                yield response.content  # one instance not wrapped in multipart, as some PACS send
            else:
                raise ValueError(f"the PACS answered Content-Type {content_type!r}, not multipart/related")


def _parts_of(stream: ByteStream, boundary: bytes) -> Iterator[bytes]:
    """:func:`.multipart.multipart_parts` of the answer's stream, its connection's failures given
    as ``requests``' (as ``iter_content`` gives them: a PACS failure, retried): a read timeout, a
    reset, or an answer whose connection ended short of the length the PACS declared for it
    (urllib3 says so itself; the standard library's response has bytes still due and nothing more
    to give). Anything else the reader refuses stays a malformed or truncated answer
    (``ValueError``): a wrong part length in an answer that came whole, an answer of no declared
    length cut short."""
    try:
        yield from multipart_parts(stream, boundary)
    except (OSError, http.client.HTTPException, urllib3.exceptions.HTTPError) as exc:
        raise requests.exceptions.ConnectionError(f"the PACS's answer broke off ({type(exc).__name__})") from exc
    except ValueError as exc:
        short = _bytes_never_sent(stream)
        if short:
            raise requests.exceptions.ConnectionError(
                f"the PACS's answer ended {short} bytes short of the length it declared") from exc
        raise


def _release(response: requests.Response, stream: ByteStream) -> None:
    """Read what follows the close delimiter (the answer's end: an epilogue, the last chunk, at
    most :data:`_LINE_BUFFER_BYTES`) and let urllib3 see its response ended, so the connection goes
    back to the pool for the job's next series instead of being closed with the response (read
    past urllib3, the answer looked unfinished to it: three series, three connections)."""
    try:
        stream.read(_LINE_BUFFER_BYTES)
        if isinstance(stream, _STDLIB_RESPONSE) and stream.isclosed():
            response.raw.read()  # nothing is left: urllib3 puts the connection back
    except (OSError, http.client.HTTPException, urllib3.exceptions.HTTPError):
        pass  # every part has been read; the connection is closed with the response, not reused


def _bytes_never_sent(stream: ByteStream) -> int:
    """Bytes the standard library's response still had due when its connection gave no more (0
    when the answer's length was not declared, all of it came, or the response is urllib3's)."""
    if not isinstance(stream, _STDLIB_RESPONSE) or not stream.length:
        return 0
    due = stream.length
    try:
        return due if not stream.read(1) else 0  # the reader stopped early: is anything left to read?
    except (OSError, http.client.HTTPException):
        return due


def _body_stream(response: requests.Response) -> ByteStream | None:
    """The answer's body as a binary stream, or None when it is content-coded (``iter_content``
    then decodes it). The stream is the standard library's HTTP response under urllib3's when
    there is one: its reads go from the socket straight into each part's bytes (urllib3's own
    ``readinto`` reads into new bytes and copies them: the CT's 128 MiB once more, 49-58 against
    31-37 ms of CPU); else urllib3's response behind a buffered reader."""
    if response.headers.get("Content-Encoding", "identity").strip().lower() not in ("", "identity"):
        return None
    underlying = getattr(response.raw, "_fp", None)
    if isinstance(underlying, _STDLIB_RESPONSE):
        return underlying
    return io.BufferedReader(_RawBody(response.raw), _LINE_BUFFER_BYTES)


class _RawBody(io.RawIOBase):
    """urllib3's response as a raw stream that ends with an empty read (urllib3's response says
    it is closed once its body is read, which a buffered reader takes for an error)."""

    def __init__(self, raw: Any) -> None:
        self._raw = raw

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self._raw.read(len(buffer))
        buffer[:len(data)] = data
        return len(data)


def make_client(dicomweb_url: str, timeout_s: float = 30.0, user: str = "", password: str = "") -> PacsClient:
    """A :class:`PacsClient` for ``dicomweb_url``."""
    session = sessions.session()
    # DICOM on a hospital network: Orthanc would gzip every answer but the streamed CT (an NM or
    # SEG series of a few MiB took twice as long to come gzipped as plain: 33 against 16 ms)
    session.headers["Accept-Encoding"] = IDENTITY
    if user:
        session.auth = (user, password)
    return PacsClient(dicomweb_url.rstrip("/"), session, timeout_s)


def _call(what: str, fn: Callable[[], _T], not_found: str | None = None) -> _T:
    """Run one DICOMweb request, mapping transport errors to typed imaging errors."""
    try:
        return fn()
    except requests.exceptions.HTTPError as exc:
        status = exc.response.status_code if exc.response is not None else 0
        if status == 404 and not_found:
            raise SeriesNotFoundError(not_found, "studyInstanceUid") from exc
        if status in (401, 403):
            raise PacsConfigurationError(
                f"the PACS refused netliver's credentials (HTTP {status}) for {what}: a configuration error "
                "(DICOMweb URL, user/password or the PACS's access rules), not retried", "DICOMWEB_URL") from exc
        if status >= 500 or status in (0, 429):
            raise PacsUnavailableError(f"the PACS answered HTTP {status} to {what}") from exc
        raise ImagingError(f"the PACS answered HTTP {status} to {what}") from exc
    except (requests.exceptions.ConnectionError, requests.exceptions.Timeout) as exc:
        raise PacsUnavailableError(f"the PACS could not be reached for {what}: {type(exc).__name__}") from exc
    except requests.exceptions.RequestException as exc:
        raise PacsUnavailableError(f"the PACS request for {what} failed ({type(exc).__name__})") from exc
    except (InvalidDicomError, EOFError, ValueError, struct.error) as exc:
        # dicomweb-client parses each part with pydicom: a truncated or malformed instance
        raise ImagingError(f"the PACS answered {what} with an instance that is not readable DICOM "
                           f"(truncated or malformed): {type(exc).__name__}: {exc}", "studyInstanceUid") from exc


def _checked_uids(study_uid: str, series_uid: str | None = None) -> None:
    """Refuse a UID that is not digits and dots before it becomes part of a DICOMweb URL
    (dicomweb-client puts UIDs into paths as given: ``../`` would walk the PACS API)."""
    if not is_dicom_uid(study_uid):
        raise ImagingError("studyInstanceUid is not a DICOM UID (digits and dots, at most 64)", "studyInstanceUid")
    if series_uid is not None and not is_dicom_uid(series_uid):
        raise ImagingError("a series UID is not a DICOM UID (digits and dots, at most 64)", "SeriesInstanceUID")


def _value(item: dict[str, Any], tag: str, default: Any = "") -> Any:
    values = item.get(tag, {}).get("Value")
    return values[0] if values else default


def list_series(client: Any, study_uid: str, modalities: Iterable[str] | None = None) -> list[SeriesInfo]:
    """QIDO-RS: the series of ``study_uid`` (an unknown study is an error), or only those of
    ``modalities`` (one query each, ``Modality`` matching; none found is an empty list, since
    the study may hold others)."""
    _checked_uids(study_uid)
    queries: list[dict[str, str] | None] = [None] if modalities is None else [{"Modality": m} for m in modalities]
    series = [SeriesInfo(str(_value(s, _SERIES_UID)), str(_value(s, _MODALITY)),
                         int(_value(s, _N_INSTANCES, 0) or 0), str(_value(s, _DESCRIPTION)))
              for filters in queries for s in _search_series(client, study_uid, filters)]
    if not series and modalities is None:
        raise SeriesNotFoundError(f"study {study_uid} is not in the PACS (no series found)", "studyInstanceUid")
    return series


def _search_series(client: Any, study_uid: str, filters: dict[str, str] | None) -> list[dict[str, Any]]:
    fields = [_N_INSTANCES, _DESCRIPTION]
    query = {"search_filters": filters} if filters else {}
    found: list[dict[str, Any]] = _call(
        f"QIDO-RS series of study {study_uid}",
        lambda: client.search_for_series(study_instance_uid=study_uid, fields=fields, **query),
        not_found=f"study {study_uid} is not in the PACS")
    return found or []


def _retrieve(client: Any, study_uid: str, series_uid: str) -> list[Dataset]:
    """Every instance of a series, read whole. From a :class:`PacsClient` by the streamed reader
    (:func:`stream_series`), which takes a third of the CPU of dicomweb-client's multipart reader
    and ``dcmread`` (measured on a local Orthanc: an NM of 4 MiB 15 → 5 ms, a SEG of 32 MiB
    20 → 8 ms); the NM's read is on the path before the CT starts."""
    if isinstance(client, PacsClient):
        return list(stream_series(client, study_uid, series_uid))
    _checked_uids(study_uid, series_uid)
    datasets: list[Dataset] = _call(
        f"WADO-RS series {series_uid}",
        lambda: client.retrieve_series(study_uid, series_uid, media_types=AS_STORED),
        not_found=f"series {series_uid} is not in study {study_uid}")
    if not datasets:
        raise SeriesNotFoundError(f"series {series_uid} of study {study_uid} holds no instances", "studyInstanceUid")
    return datasets


def _read_instance(blob: bytes) -> Dataset:
    """One instance of a streamed series: read here in the plain encodings, else by pydicom."""
    ds = read_plain_instance(blob)
    return ds if ds is not None else pydicom.dcmread(BytesIO(blob))


def stream_series(client: Any, study_uid: str, series_uid: str) -> Generator[Dataset, None, None]:
    """WADO-RS the instances of a series, each parsed as its part of the multipart answer arrives
    (:meth:`PacsClient.iter_series_parts`; dicomweb-client ``iter_series`` from another client):
    no instance is held once the caller lets it go, and the caller works on one while the next
    is on its way."""
    _checked_uids(study_uid, series_uid)
    what = f"WADO-RS series {series_uid}"
    not_found = f"series {series_uid} is not in study {study_uid}"
    count = 0
    if isinstance(client, PacsClient):
        blobs: Iterator[bytes] = client.iter_series_parts(study_uid, series_uid)
        while (blob := _call(what, lambda: next(blobs, None), not_found=not_found)) is not None:
            count += 1
            yield _call(what, lambda: _read_instance(blob))
    else:
        parts: Iterator[Dataset] = _call(what, lambda: iter(client.iter_series(study_uid, series_uid,
                                                                             media_types=AS_STORED)),
                                         not_found=not_found)
        while (ds := _call(what, lambda: next(parts, None), not_found=not_found)) is not None:
            count += 1
            yield ds
    if not count:
        raise SeriesNotFoundError(f"series {series_uid} of study {study_uid} holds no instances", "studyInstanceUid")


def _first_metadata(client: Any, study_uid: str, series_uid: str) -> dict[str, Any]:
    """WADO-RS metadata of one instance of a series (to choose between series cheaply)."""
    _checked_uids(study_uid, series_uid)
    found: list[dict[str, Any]] = _call(
        f"WADO-RS metadata of series {series_uid}",
        lambda: client.retrieve_series_metadata(study_uid, series_uid),
        not_found=f"series {series_uid} is not in study {study_uid}")
    return found[0] if found else {}


def _values(item: dict[str, Any], tag: str) -> list[str]:
    return [str(v).upper() for v in item.get(tag, {}).get("Value", [])]


def _activity_score(meta: dict[str, Any], info: SeriesInfo) -> tuple[int, int]:
    """Prefer reconstructed tomograms, then attenuation corrected, then the largest series."""
    image_type = _values(meta, _IMAGE_TYPE)
    recon = info.modality == "PT" or (len(image_type) > 2 and image_type[2].startswith("RECON"))
    corrected = "ATTN" in _values(meta, _CORRECTED_IMAGE)
    return (int(recon) * 2 + int(corrected), info.instances)


def fetch_study(client: Any, study_uid: str) -> StudyImages:
    """QIDO + WADO: the activity (PT, else NM) series and its CT. With several candidates the
    choice is made on WADO-RS metadata, so only the chosen series' pixels are retrieved."""
    series = list_series(client, study_uid, JOB_MODALITIES)
    warnings: list[str] = []
    pt = [s for s in series if s.modality == "PT"]
    nm = [s for s in series if s.modality == "NM"]
    candidates = pt or nm
    if not candidates or not any(s.modality == "CT" for s in series):
        series = list_series(client, study_uid)  # every series: an unknown study, or what it holds, is named
    if not candidates:
        found = sorted({s.modality for s in series})
        raise NoActivitySeriesError(
            f"study {study_uid} has no NM (SPECT) or PT (PET) series (it holds {', '.join(found) or 'nothing'}); "
            "voxel dosimetry needs an emission image", "studyInstanceUid")
    if pt and nm:
        warnings.append("the study holds both PT and NM series: the PT series is used")
    cts = sorted((s for s in series if s.modality == "CT"), key=lambda s: -s.instances)
    if not cts:
        raise CtMismatchError(f"study {study_uid} has no CT series to give tissue density and anatomy",
                              "studyInstanceUid")
    chosen = candidates[0]
    for_uid = ""
    if len(candidates) > 1:
        metas = {s.series_uid: _first_metadata(client, study_uid, s.series_uid) for s in candidates}
        chosen = max(candidates, key=lambda s: _activity_score(metas[s.series_uid], s))
        for_uid = next(iter(_values(metas[chosen.series_uid], _FOR_UID)), "")
        warnings.append(f"{len(candidates)} {chosen.modality} series in the study: series {chosen.series_uid} used")
    activity = _retrieve(client, study_uid, chosen.series_uid)
    for_uid = for_uid or str(activity[0].get("FrameOfReferenceUID", "")).upper()
    ct_choice = cts[0]
    if len(cts) > 1:
        same_frame = [s for s in cts
                      if next(iter(_values(_first_metadata(client, study_uid, s.series_uid), _FOR_UID)), "") == for_uid]
        ct_choice = (same_frame or cts)[0]
    ct = stream_series(client, study_uid, ct_choice.series_uid)
    return StudyImages(study_uid, activity, ct, warnings, ct_choice.instances, series)


def fetch_segmentation(client: Any, study_uid: str, series_uid: str) -> Dataset:
    """WADO-RS the SEG or RTSTRUCT series ``series_uid`` when it holds one instance; a series of
    several instances (e.g. one SEG per segment) is read with :func:`fetch_segmentations`."""
    datasets = fetch_segmentations(client, study_uid, series_uid)
    if len(datasets) > 1:
        raise SegmentationError(f"segmentation series {series_uid} holds {len(datasets)} instances; "
                                "read it with fetch_segmentations", "segmentationSeriesUid")
    return datasets[0]


def fetch_segmentations(client: Any, study_uid: str, series_uid: str,
                        series: list[SeriesInfo] | None = None) -> list[Dataset]:
    """WADO-RS every instance of the SEG or RTSTRUCT series ``series_uid``. ``series``: series
    of the study already listed (e.g. the job's emission and CT series): one of them named here
    is refused before anything is retrieved. Any other series is checked by its instances'
    SOP Class, else Modality (:func:`.voi.segmentation_kind`), as they arrive, so a wrong UID
    costs one instance, not a series."""
    listed = next((s for s in series or [] if s.series_uid == series_uid), None)
    if listed is not None and listed.modality not in _SEGMENTATION_MODALITIES:
        raise _not_a_segmentation(series_uid, listed.modality)
    datasets: list[Dataset] = []
    instances = stream_series(client, study_uid, series_uid)
    try:
        for ds in instances:
            if segmentation_kind(ds) is None:  # the rule the VOI reader applies
                raise _not_a_segmentation(series_uid, str(ds.get("Modality", "") or ""))
            datasets.append(ds)
    except SeriesNotFoundError as exc:
        raise SegmentationError(f"segmentation series {series_uid} is not in study {study_uid}",
                                "segmentationSeriesUid") from exc
    finally:
        instances.close()  # a refused series is not read to its end
    return datasets


def _not_a_segmentation(series_uid: str, modality: str) -> SegmentationError:
    return SegmentationError(f"series {series_uid} is {modality or 'of no Modality (0008,0060)'}, not a DICOM SEG "
                             "or RTSTRUCT", "segmentationSeriesUid")


