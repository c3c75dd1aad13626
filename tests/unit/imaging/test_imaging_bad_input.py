"""Bad input through the whole pipeline: each case fails with a 422 whose message names the
problem (what the worker puts in the failed Task's statusReason), before memory is spent on it.
The same study without the defect runs (so each case fails for its own reason)."""

from __future__ import annotations

import io
from collections.abc import Callable
from copy import deepcopy

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset

from services.dosimetry.imaging.errors import ImagingError
from services.dosimetry.imaging.phantoms import (
    PhantomStudy,
    build_study,
    dataset_bytes,
    two_compartment_liver,
)
from services.dosimetry.imaging.pipeline import run_voxel_dosimetry
from tests.support.memory_dicomweb import MemoryDicomweb
from tests.support.rtstruct_builder import Contour, ellipse, ellipsoid_contours, rtstruct


@pytest.fixture(scope="module")
def study() -> PhantomStudy:
    return build_study(two_compartment_liver(n=16, voxel_mm=13.26), "PT", seed=100)


def _truncated(ds: Dataset, cut: int) -> Dataset:
    """``ds`` as pydicom reads it from a file missing its last ``cut`` bytes."""
    return pydicom.dcmread(io.BytesIO(dataset_bytes(ds)[:-cut]))


def _truncated_pixels(s: PhantomStudy) -> list[Dataset]:
    return [_truncated(ds, 100) if k == 5 else ds for k, ds in enumerate(s.activity)] + s.ct


def _truncated_before_pixels(s: PhantomStudy) -> list[Dataset]:
    # the file ends where its Pixel Data element (12-byte header + value) would start
    return [*s.activity, *[_truncated(ds, len(ds.PixelData) + 12) if k == 9 else ds for k, ds in enumerate(s.ct)]]


def _missing_slice(s: PhantomStudy) -> list[Dataset]:
    return [ds for k, ds in enumerate(s.activity) if k != 7] + s.ct


def _mixed_modalities(s: PhantomStudy) -> list[Dataset]:
    odd = deepcopy(s.activity[4])
    odd.Modality = "CT"
    return [*s.activity[:4], odd, *s.activity[5:], *s.ct]


def _huge_declared(s: PhantomStudy) -> list[Dataset]:
    ct = []
    for ds in s.ct:
        copy = deepcopy(ds)
        copy.Rows = copy.Columns = 32768  # 2 GiB per slice declared, 32 slices
        ct.append(copy)
    return [*s.activity, *ct]


CASES: dict[str, tuple[Callable[[PhantomStudy], list[Dataset]], str]] = {
    "truncated file (pixel data cut short)": (_truncated_pixels, r"PixelData \(7FE0,0010\) cannot be decoded"),
    "truncated file (pixel data cut off)": (_truncated_before_pixels, r"has no PixelData \(7FE0,0010\)"),
    "series with a missing slice": (_missing_slice, r"not evenly spaced.*1 slice\(s\) missing"),
    "mixed modalities in one series": (_mixed_modalities, r"mixes modalities CT, PT"),
    "2 GiB declared per slice": (_huge_declared, r"GiB volume; at most 4 GiB is built"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_fails_naming_the_problem(study: PhantomStudy, case: str) -> None:
    make, message = CASES[case]
    pacs = MemoryDicomweb([*make(study), *([study.seg] if study.seg is not None else [])])
    with pytest.raises(ImagingError, match=message) as err:
        run_voxel_dosimetry(pacs, study.study_uid, 1.5, "ldm", study.seg_series_uid, store=False)
    assert err.value.status == 422 and err.value.expression
    assert pacs.stored == []


def test_the_same_study_without_a_defect_runs(study: PhantomStudy) -> None:
    result = run_voxel_dosimetry(MemoryDicomweb(study.datasets()), study.study_uid, 1.5, "ldm",
                                 study.seg_series_uid, store=False)
    assert {v.name for v in result.vois} >= {"liver", "tumour 1"}


def test_an_open_rtstruct_contour_fails_naming_the_roi(study: PhantomStudy) -> None:
    def open_rim(z: float) -> list[Contour]:
        return [(ellipse((0.0, 0.0), (30.0, 30.0))[:50], "OPEN_PLANAR")] if -140 < z < -100 else []

    closed = rtstruct(study.ct, {"liver": ellipsoid_contours((-10.0, 0.0, -120.0), (75.0, 60.0, 55.0))},
                      study.frame_of_reference_uid, key="closed")
    broken = rtstruct(study.ct, {"liver": ellipsoid_contours((-10.0, 0.0, -120.0), (75.0, 60.0, 55.0)),
                                 "rim": open_rim}, study.frame_of_reference_uid, key="open")
    images = study.datasets(include_seg=False)
    ok = run_voxel_dosimetry(MemoryDicomweb([*images, closed]), study.study_uid, 1.5, "ldm",
                             str(closed.SeriesInstanceUID), store=False)
    assert [v.name for v in ok.vois] == ["liver"]
    with pytest.raises(ImagingError, match=r"ROI 'rim' contour 1 is OPEN_PLANAR") as err:
        run_voxel_dosimetry(MemoryDicomweb([*images, broken]), study.study_uid, 1.5, "ldm",
                            str(broken.SeriesInstanceUID), store=False)
    assert err.value.status == 422 and err.value.reason == err.value.message
    assert np.isfinite(ok.vois[0].metrics["Dmean"])


class _RefusingPacs(MemoryDicomweb):
    """Answers every QIDO with an HTTP error status, as a PACS does to wrong credentials."""

    def __init__(self, status: int) -> None:
        super().__init__([])
        self.status = status

    def search_for_series(self, study_instance_uid: str, fields: object = None,
                          search_filters: object = None) -> list[dict[str, object]]:
        import requests

        response = requests.Response()
        response.status_code = self.status
        raise requests.exceptions.HTTPError(f"{self.status}", response=response)


@pytest.mark.parametrize(("status", "kind", "retry_after"), [
    (401, "PacsConfigurationError", None), (403, "PacsConfigurationError", None),
    (503, "PacsUnavailableError", "30"), (500, "PacsUnavailableError", "30")])
def test_a_refusal_by_the_pacs_is_a_configuration_error_and_an_outage_is_transient(
        status: int, kind: str, retry_after: str | None) -> None:
    with pytest.raises(ImagingError) as err:
        run_voxel_dosimetry(_RefusingPacs(status), "1.2.3", 1.5, "ldm")
    assert type(err.value).__name__ == kind
    assert err.value.to_fhir_error().headers.get("Retry-After") == retry_after
    assert (err.value.status, err.value.code) == ((502, "security") if status in (401, 403) else (503, "transient"))
