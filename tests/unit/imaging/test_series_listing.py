"""What a voxel job asks the PACS: its emission and CT series by Modality (not every series of the
study, which a PACS may answer by reading an instance of each), a segmentation series checked by
its own instances (a wrong UID costs one instance, not a series), and the CT's stream closed
when a job fails inside it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from pydicom.dataset import Dataset

from services.dosimetry.imaging.dicomweb import (
    JOB_MODALITIES,
    fetch_segmentations,
    fetch_study,
    list_series,
)
from services.dosimetry.imaging.errors import (
    CtMismatchError,
    NoActivitySeriesError,
    SegmentationError,
    SeriesNotFoundError,
)
from services.dosimetry.imaging.phantoms import PhantomStudy, build_study, two_compartment_liver
from services.dosimetry.imaging.pipeline import run_voxel_dosimetry
from tests.support.memory_dicomweb import MemoryDicomweb


@pytest.fixture(scope="module")
def study() -> PhantomStudy:
    return build_study(two_compartment_liver(n=16, voxel_mm=13.26), "NM", seed=120)


class _CountingPacs(MemoryDicomweb):
    """Counts the instances each streamed series has handed out."""

    def __init__(self, datasets: list[Dataset]) -> None:
        super().__init__(datasets)
        self.handed: dict[str, int] = {}

    def iter_series(self, study_uid: str, series_uid: str, media_types: Any = None) -> Iterator[Dataset]:
        for ds in super().iter_series(study_uid, series_uid, media_types):
            self.handed[series_uid] = self.handed.get(series_uid, 0) + 1
            yield ds


def test_a_job_lists_only_the_modalities_it_reads(study: PhantomStudy) -> None:
    pacs = MemoryDicomweb(study.datasets())
    result = run_voxel_dosimetry(pacs, study.study_uid, 1.5, "ldm", study.seg_series_uid, store=False)
    assert pacs.searches == [{"Modality": m} for m in JOB_MODALITIES]
    assert {v.name for v in result.vois} >= {"liver"}  # the SEG was read without being listed


def test_listing_by_modality_returns_those_series_alone(study: PhantomStudy) -> None:
    pacs = MemoryDicomweb(study.datasets())
    listed = list_series(pacs, study.study_uid, ("CT",))
    assert [s.modality for s in listed] == ["CT"] and listed[0].instances == len(study.ct)
    assert {s.modality for s in list_series(pacs, study.study_uid)} == {"NM", "CT", "SEG"}
    # a modality the study lacks is an empty answer, not an unknown study
    assert list_series(pacs, study.study_uid, ("PT",)) == []


def test_a_study_without_emission_or_ct_still_names_what_it_holds(study: PhantomStudy) -> None:
    without_nm = MemoryDicomweb([ds for ds in study.datasets() if ds.Modality != "NM"])
    with pytest.raises(NoActivitySeriesError, match=r"it holds CT, SEG\)"):
        fetch_study(without_nm, study.study_uid)
    without_ct = MemoryDicomweb([ds for ds in study.datasets() if ds.Modality != "CT"])
    with pytest.raises(CtMismatchError, match="has no CT series"):
        fetch_study(without_ct, study.study_uid)
    assert without_ct.searches[-1] == {}  # the whole study was listed for the message


def test_a_listed_series_that_is_no_segmentation_is_refused_before_any_retrieval(study: PhantomStudy) -> None:
    pacs = _CountingPacs(study.datasets())
    listed = list_series(pacs, study.study_uid, JOB_MODALITIES)
    with pytest.raises(SegmentationError, match=r"is CT, not a DICOM SEG or RTSTRUCT") as err:
        fetch_segmentations(pacs, study.study_uid, study.ct_series_uid, listed)
    assert err.value.expression == "segmentationSeriesUid" and pacs.handed == {}


def test_an_unlisted_series_that_is_no_segmentation_costs_one_instance(study: PhantomStudy) -> None:
    pacs = _CountingPacs(study.datasets())
    with pytest.raises(SegmentationError, match=r"is CT, not a DICOM SEG or RTSTRUCT"):
        fetch_segmentations(pacs, study.study_uid, study.ct_series_uid)
    assert pacs.handed == {study.ct_series_uid: 1} and len(study.ct) > 1
    # the same call on the SEG reads it whole
    assert [ds.Modality for ds in fetch_segmentations(pacs, study.study_uid, study.seg_series_uid)] == ["SEG"]


def test_a_segmentation_series_the_study_does_not_hold_is_named(study: PhantomStudy) -> None:
    pacs = MemoryDicomweb(study.datasets())
    with pytest.raises(SegmentationError, match=r"segmentation series 1\.2\.3\.999 is not in study") as err:
        fetch_segmentations(pacs, study.study_uid, "1.2.3.999")
    assert err.value.expression == "segmentationSeriesUid" and err.value.status == 422


def test_a_ct_that_cannot_be_read_fails_where_the_ct_is_read(study: PhantomStudy) -> None:
    """Opened early, the CT still raises its error when it is iterated (after the activity's own
    checks), as a stream opened then would."""
    class NoCtPixels(MemoryDicomweb):
        def iter_series(self, study_uid: str, series_uid: str, media_types: Any = None) -> Iterator[Dataset]:
            return iter([]) if series_uid == study.ct_series_uid else super().iter_series(study_uid, series_uid)

    images = fetch_study(NoCtPixels(study.datasets()), study.study_uid)
    assert images.activity  # the activity series was read
    with pytest.raises(SeriesNotFoundError, match="holds no instances"):
        next(iter(images.ct))


class _Closing(MemoryDicomweb):
    """Notes how many of the CT's instances were handed out and whether its stream was closed."""

    def __init__(self, datasets: list[Dataset], ct_series: str) -> None:
        super().__init__(datasets)
        self.ct_series = ct_series
        self.ct_handed = 0
        self.ct_closed = False

    def iter_series(self, study_uid: str, series_uid: str, media_types: Any = None) -> Iterator[Dataset]:
        try:
            for ds in super().iter_series(study_uid, series_uid, media_types):
                self.ct_handed += series_uid == self.ct_series
                yield ds
        finally:
            if series_uid == self.ct_series:
                self.ct_closed = True


def test_a_job_that_fails_inside_its_ct_closes_the_ct_stream(study: PhantomStudy) -> None:
    """A CT refused part-way (a slice of other dimensions) has its stream closed when the job
    fails, not left open to the collector while the error (and its traceback) is held."""
    from copy import deepcopy

    from services.dosimetry.imaging.errors import ImagingError

    odd = deepcopy(study.ct[3])
    odd.Columns = int(odd.Columns) // 2
    pacs = _Closing([*[ds if ds is not study.ct[3] else odd for ds in study.datasets()]], study.ct_series_uid)
    with pytest.raises(ImagingError) as err:
        run_voxel_dosimetry(pacs, study.study_uid, 1.5, "ldm", store=False)
    assert err.value.status == 422 and "Columns" in str(err.value)
    assert pacs.ct_handed < len(study.ct) and pacs.ct_closed  # stopped inside the CT, and closed


def test_a_segmentation_is_known_by_the_rule_the_voi_reader_applies(study: PhantomStudy) -> None:
    """By SOP Class, else Modality, as :func:`.voi.segmentation_kind`: a SEG whose Modality says
    otherwise is read (the VOI reader would read it), a CT is not (also by SOP Class)."""
    from copy import deepcopy

    from services.dosimetry.imaging.voi import segmentation_kind

    assert study.seg is not None
    seg = deepcopy(study.seg)
    seg.Modality = "OT"
    assert segmentation_kind(seg) == "SEG"
    pacs = MemoryDicomweb([*(ds for ds in study.datasets() if ds is not study.seg), seg])
    assert [str(ds.SOPInstanceUID) for ds in fetch_segmentations(pacs, study.study_uid, study.seg_series_uid)] == [
        str(seg.SOPInstanceUID)]
    ct = deepcopy(study.ct[0])
    ct.Modality = ""  # no Modality: its SOP Class still says CT Image
    assert segmentation_kind(ct) is None
