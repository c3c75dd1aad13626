"""An in-memory stand-in for the dicomweb-client calls the imaging pipeline makes."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from pydicom.dataset import Dataset

__all__ = ["MemoryDicomweb"]


def _plain(ds: Dataset) -> Dataset:
    copy = Dataset()
    for element in ds:
        copy.add(element)
    if hasattr(ds, "file_meta"):
        copy.file_meta = ds.file_meta
    for name in ("preamble", "is_little_endian", "is_implicit_VR"):
        if hasattr(ds, name):
            setattr(copy, name, getattr(ds, name))
    return copy


class MemoryDicomweb:
    """QIDO series search, WADO series, instance and metadata retrieval (series whole or streamed)
    and STOW over a list of datasets."""

    def __init__(self, datasets: list[Dataset]) -> None:
        self.datasets = datasets
        self.stored: list[Dataset] = []
        #: The ``search_filters`` of each series search, in order.
        self.searches: list[dict[str, str]] = []

    def search_for_series(self, study_instance_uid: str, fields: Any = None,
                          search_filters: dict[str, str] | None = None) -> list[dict[str, Any]]:
        """The study's series, those matching every ``search_filters`` keyword exactly (as
        QIDO-RS single-value matching of Modality or SeriesInstanceUID does)."""
        self.searches.append(dict(search_filters or {}))
        series: dict[str, dict[str, Any]] = {}
        for ds in self.datasets:
            if ds.StudyInstanceUID != study_instance_uid or \
                    any(str(ds.get(keyword, "")) != value for keyword, value in (search_filters or {}).items()):
                continue
            entry = series.setdefault(ds.SeriesInstanceUID, {
                "0020000E": {"vr": "UI", "Value": [ds.SeriesInstanceUID]},
                "00080060": {"vr": "CS", "Value": [ds.Modality]},
                "00201209": {"vr": "IS", "Value": [0]}})
            entry["00201209"]["Value"][0] += 1
        return list(series.values())

    def search_for_instances(self, study_instance_uid: str, fields: Any = None,
                             search_filters: dict[str, str] | None = None) -> list[dict[str, Any]]:
        """The study's instances matching every ``search_filters`` keyword exactly (their SOP
        Instance, Series Instance UIDs and Modality)."""
        self.searches.append(dict(search_filters or {}))
        return [{"00080018": {"vr": "UI", "Value": [ds.SOPInstanceUID]},
                 "0020000E": {"vr": "UI", "Value": [ds.SeriesInstanceUID]},
                 "00080060": {"vr": "CS", "Value": [ds.Modality]}}
                for ds in self.datasets if ds.StudyInstanceUID == study_instance_uid and
                all(str(ds.get(keyword, "")) == value for keyword, value in (search_filters or {}).items())]

    def retrieve_series(self, study_uid: str, series_uid: str, media_types: Any = None) -> list[Dataset]:
        """New plain datasets (sharing the elements), as a PACS sends new instances each time: a
        reader may take one over in place (highdicom turns a SEG into its reader object, in any
        thread) without changing the study for the next job."""
        return [_plain(ds) for ds in self.datasets if ds.SeriesInstanceUID == series_uid]

    def retrieve_series_metadata(self, study_uid: str, series_uid: str) -> list[dict[str, Any]]:
        """Each instance's header as DICOM JSON, without its pixel data (WADO-RS metadata)."""
        out = []
        for ds in self.retrieve_series(study_uid, series_uid):
            header = Dataset()
            for element in ds:
                if element.tag != 0x7FE00010:
                    header.add(element)
            out.append(header.to_json_dict())
        return out

    def retrieve_instance(self, study_uid: str, series_uid: str, sop_uid: str, media_types: Any = None) -> Dataset:
        return next(ds for ds in self.retrieve_series(study_uid, series_uid) if ds.SOPInstanceUID == sop_uid)

    def iter_series(self, study_uid: str, series_uid: str, media_types: Any = None) -> Iterator[Dataset]:
        return iter(self.retrieve_series(study_uid, series_uid, media_types))

    def store_instances(self, datasets: list[Dataset], study_instance_uid: str | None = None) -> None:
        self.stored.extend(datasets)
