"""A voxel job's DVH metrics (no side effect) are computed while the store's go-ahead is asked and
the RT Dose encoded, and the RT Dose is sent only once they are in: a job whose metrics fail, or
that is cancelled at the store, stores nothing."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from pydicom.dataset import Dataset

from services.dosimetry.domain import dvh
from services.dosimetry.imaging.errors import JobCancelledError
from services.dosimetry.imaging.phantoms import PhantomStudy, build_study, two_compartment_liver
from services.dosimetry.imaging.pipeline import run_voxel_dosimetry
from tests.support.memory_dicomweb import MemoryDicomweb

#: How long a metric waits for the store stage to open.
_WAIT_S = 5.0


@pytest.fixture(scope="module")
def liver() -> PhantomStudy:
    return build_study(two_compartment_liver(n=16, voxel_mm=8.84), "NM", seed=123)


class _Watched(MemoryDicomweb):
    """Notes, as each RT Dose arrives, how many metrics had been computed."""

    def __init__(self, datasets: list[Dataset], computed: list[int]) -> None:
        super().__init__(datasets)
        self.computed = computed
        self.computed_at_store: list[int] = []

    def store_instances(self, datasets: list[Dataset], study_instance_uid: str | None = None) -> None:
        self.computed_at_store.append(len(self.computed))
        super().store_instances(datasets, study_instance_uid)


def test_the_metrics_are_computed_beside_the_store_and_the_rt_dose_waits_for_them(
        liver: PhantomStudy, monkeypatch: pytest.MonkeyPatch) -> None:
    reference = run_voxel_dosimetry(MemoryDicomweb(liver.datasets()), liver.study_uid, 1.5, "ldm",
                                    liver.seg_series_uid, store=False)
    store_opened = threading.Event()
    opened_before_metrics: list[bool] = []
    computed: list[int] = []
    original = dvh.dvh_metrics

    def metric_waiting_for_the_store(*args: Any, **kwargs: Any) -> Any:
        if not opened_before_metrics:
            opened_before_metrics.append(store_opened.wait(_WAIT_S))
        out = original(*args, **kwargs)
        computed.append(1)
        return out

    monkeypatch.setattr(dvh, "dvh_metrics", metric_waiting_for_the_store)

    def progress(stage: str, _fraction: float) -> None:
        if stage == "store":
            store_opened.set()

    pacs = _Watched(liver.datasets(), computed)
    result = run_voxel_dosimetry(pacs, liver.study_uid, 1.5, "ldm", liver.seg_series_uid, progress=progress)
    assert opened_before_metrics == [True]  # the metrics were under way while the store opened
    assert len(computed) >= len(result.vois) and pacs.computed_at_store == [len(computed)]  # all in before the RT Dose
    assert [(v.name, v.metrics, v.dvh) for v in result.vois] == [(v.name, v.metrics, v.dvh) for v in reference.vois]
    assert result.lung_shunt_fraction == reference.lung_shunt_fraction
    assert result.rtdose_sop_instance_uid is not None


def test_a_job_whose_metrics_fail_stores_nothing(liver: PhantomStudy, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*_args: Any, **_kwargs: Any) -> Any:
        raise RuntimeError("metrics failed")

    monkeypatch.setattr(dvh, "dvh_metrics", broken)
    pacs = MemoryDicomweb(liver.datasets())
    with pytest.raises(RuntimeError, match="metrics failed"):
        run_voxel_dosimetry(pacs, liver.study_uid, 1.5, "ldm", liver.seg_series_uid)
    assert pacs.stored == []


def test_a_job_cancelled_at_the_store_stores_nothing_and_leaves_no_thread(liver: PhantomStudy) -> None:
    threads = set(threading.enumerate())
    stages: list[str] = []

    def cancelled() -> bool:
        return bool(stages) and stages[-1] == "dvh"  # asked as the store opens

    pacs = MemoryDicomweb(liver.datasets())
    with pytest.raises(JobCancelledError):
        run_voxel_dosimetry(pacs, liver.study_uid, 1.5, "ldm", liver.seg_series_uid, cancelled=cancelled,
                            progress=lambda stage, _fraction: stages.append(stage))
    assert stages[-1] == "dvh" and pacs.stored == []
    assert set(threading.enumerate()) <= threads
