"""The kernel convolution of a voxel job runs while its CT still arrives (it needs the counts, not
the CT, whose density divides it at the dose stage), except where the counts wait for the VOIs:
an MAA simulation with a segmentation is normalised over its liver and lungs first."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from pydicom.dataset import Dataset

from services.dosimetry.domain import voxel
from services.dosimetry.imaging.errors import ImagingError, JobCancelledError
from services.dosimetry.imaging.phantoms import (
    PhantomStudy,
    build_study,
    lung_shunt,
    two_compartment_liver,
)
from services.dosimetry.imaging.pipeline import run_voxel_dosimetry
from tests.support.memory_dicomweb import MemoryDicomweb

#: How long the CT's last instance is held back for a convolution that should be under way.
_WAIT_S = 5.0


class _ConvolutionWatch:
    """Wraps the engine's convolution: ``started`` is set as one begins."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.started = threading.Event()
        original = voxel._convolve

        def watched(*args: Any, **kwargs: Any) -> Any:
            self.started.set()
            return original(*args, **kwargs)

        monkeypatch.setattr(voxel, "_convolve", watched)


class _SlowCtPacs(MemoryDicomweb):
    """Holds the CT's last instance back until a convolution has begun (at most :data:`_WAIT_S`)
    and records whether one had."""

    def __init__(self, datasets: list[Dataset], ct_series: str, watch: _ConvolutionWatch) -> None:
        super().__init__(datasets)
        self.ct_series, self.watch = ct_series, watch
        self.convolving_before_last_ct: bool | None = None

    def iter_series(self, study_uid: str, series_uid: str, media_types: Any = None) -> Iterator[Dataset]:
        instances = list(super().iter_series(study_uid, series_uid, media_types))
        for n, ds in enumerate(instances):
            if series_uid == self.ct_series and n == len(instances) - 1:
                self.convolving_before_last_ct = self.watch.started.wait(_WAIT_S)
            yield ds


@pytest.fixture(scope="module")
def liver() -> PhantomStudy:
    return build_study(two_compartment_liver(n=16, voxel_mm=8.84), "NM", seed=121)


def test_the_convolution_runs_while_the_ct_arrives_and_gives_the_same_dose(
        liver: PhantomStudy, monkeypatch: pytest.MonkeyPatch) -> None:
    before = run_voxel_dosimetry(MemoryDicomweb(liver.datasets()), liver.study_uid, 1.5, "dvk",
                                 liver.seg_series_uid, store=False)
    watch = _ConvolutionWatch(monkeypatch)
    pacs = _SlowCtPacs(liver.datasets(), liver.ct_series_uid, watch)
    stages: list[str] = []
    result = run_voxel_dosimetry(pacs, liver.study_uid, 1.5, "dvk", liver.seg_series_uid, store=False,
                                 progress=lambda stage, _fraction: stages.append(stage))
    assert pacs.convolving_before_last_ct is True
    assert stages[:2] == ["fetch", "decode"]  # the convolution did not open the dose stage early
    assert np.array_equal(result.dose_gy, before.dose_gy)
    assert [v.metrics for v in result.vois] == [v.metrics for v in before.vois]


def test_local_deposition_does_not_convolve(liver: PhantomStudy, monkeypatch: pytest.MonkeyPatch) -> None:
    watch = _ConvolutionWatch(monkeypatch)
    pacs = _SlowCtPacs(liver.datasets(), liver.ct_series_uid, watch)
    monkeypatch.setattr(f"{__name__}._WAIT_S", 0.2)
    run_voxel_dosimetry(pacs, liver.study_uid, 1.5, "ldm", liver.seg_series_uid, store=False)
    assert pacs.convolving_before_last_ct is False and not watch.started.is_set()


def test_an_maa_simulation_with_a_segmentation_convolves_its_normalised_counts(monkeypatch: pytest.MonkeyPatch) -> None:
    """MAA counts outside the liver and lungs take none of the planned activity, so they must not
    reach a convolution started before the VOIs are known: with them added, the liver and lung
    doses and the lung shunt are unchanged (as for local deposition)."""
    study = build_study(lung_shunt(n=24, voxel_mm=8.84), "NM", seed=5)
    clean = run_voxel_dosimetry(MemoryDicomweb(study.datasets()), study.study_uid, 2.0, "dvk",
                                study.seg_series_uid, store=False)
    assert clean.simulation
    nm = study.activity[0]
    counts = nm.pixel_array.astype(np.int64)
    inside = np.zeros(counts.shape, dtype=bool)
    for name, *_ in study.phantom.segments:
        inside |= study.phantom.segment_mask(name)
    outside = np.argwhere(~inside)[:200]
    extra = int(counts.sum()) // 4 // len(outside)
    for k, j, i in outside:
        counts[k, j, i] += extra
    nm.PixelData = counts.astype(nm.pixel_array.dtype).tobytes()
    monkeypatch.setattr(f"{__name__}._WAIT_S", 0.2)
    watch = _ConvolutionWatch(monkeypatch)
    pacs = _SlowCtPacs(study.datasets(), study.ct_series_uid, watch)
    hot = run_voxel_dosimetry(pacs, study.study_uid, 2.0, "dvk", study.seg_series_uid, store=False)
    assert pacs.convolving_before_last_ct is False  # it waited for the VOIs
    assert any("outside the liver and lungs" in w for w in hot.warnings)
    for name in ("liver", "lungs"):
        before = next(v for v in clean.vois if v.name == name).metrics["Dmean"]
        after = next(v for v in hot.vois if v.name == name).metrics["Dmean"]
        assert after == pytest.approx(before, rel=1e-5)


def test_a_convolution_the_engine_refuses_fails_the_dose_stage() -> None:
    """An error of the early convolution (no kernel for 13.26 mm voxels, outside the tables) is
    raised where the dose engine's errors are, once the CT is in: the same 422 naming the voxel
    size."""
    coarse = build_study(two_compartment_liver(n=12, voxel_mm=13.26), "NM", seed=122)
    stages: list[str] = []
    with pytest.raises(ImagingError) as err:
        run_voxel_dosimetry(MemoryDicomweb(coarse.datasets()), coarse.study_uid, 1.5, "dvk", coarse.seg_series_uid,
                            store=False, progress=lambda stage, _fraction: stages.append(stage))
    assert err.value.status == 422 and err.value.expression == "voxel_size_mm"
    assert "outside the tabulated range" in err.value.message
    assert stages[-1] == "dose"


def test_a_job_cancelled_while_it_fetches_leaves_no_convolution_running(liver: PhantomStudy) -> None:
    threads = set(threading.enumerate())
    asked: list[int] = []

    def cancelled() -> bool:
        asked.append(1)
        return len(asked) > 1  # after the fetch

    with pytest.raises(JobCancelledError):
        run_voxel_dosimetry(MemoryDicomweb(liver.datasets()), liver.study_uid, 1.5, "dvk", liver.seg_series_uid,
                            store=False, cancelled=cancelled)
    assert set(threading.enumerate()) <= threads
