"""An oblique acquisition (image planes tilted against the patient axes) is resampled, not
refused: the same study with every image rotated in patient space gives the same doses."""

from __future__ import annotations

from copy import deepcopy

import numpy as np
import pytest
from pydicom.dataset import Dataset

from services.dosimetry.imaging.phantoms import (
    PhantomStudy,
    build_study,
    make_seg,
    two_compartment_liver,
)
from services.dosimetry.imaging.pipeline import run_voxel_dosimetry
from tests.support.memory_dicomweb import MemoryDicomweb


def _rotation(degrees_about_z: float, degrees_about_x: float) -> np.ndarray:
    a, b = np.radians(degrees_about_z), np.radians(degrees_about_x)
    rz = np.array([[np.cos(a), -np.sin(a), 0.0], [np.sin(a), np.cos(a), 0.0], [0.0, 0.0, 1.0]])
    rx = np.array([[1.0, 0.0, 0.0], [0.0, np.cos(b), -np.sin(b)], [0.0, np.sin(b), np.cos(b)]])
    return np.asarray(rz @ rx)


def _rotated(datasets: list[Dataset], rotation: np.ndarray) -> list[Dataset]:
    """Copies whose image planes are turned by ``rotation`` about the patient origin."""
    out = []
    for ds in datasets:
        copy = deepcopy(ds)
        iop = np.array([float(v) for v in ds.ImageOrientationPatient]).reshape(2, 3)
        copy.ImageOrientationPatient = [f"{v:.10f}" for v in (iop @ rotation.T).ravel()]
        ipp = np.array([float(v) for v in ds.ImagePositionPatient])
        copy.ImagePositionPatient = [f"{v:.6f}" for v in rotation @ ipp]
        out.append(copy)
    return out


@pytest.fixture(scope="module")
def study() -> PhantomStudy:
    return build_study(two_compartment_liver(n=24, voxel_mm=8.84), "PT", seed=110)


def test_a_rotated_study_gives_the_same_doses(study: PhantomStudy) -> None:
    rotation = _rotation(20.0, 10.0)
    pt = _rotated(study.activity, rotation)
    ct = _rotated(study.ct, rotation)
    seg = make_seg(study.phantom, ct, key=("oblique",))
    straight = run_voxel_dosimetry(MemoryDicomweb(study.datasets()), study.study_uid, 1.5, "ldm",
                                   study.seg_series_uid, store=False)
    oblique = run_voxel_dosimetry(MemoryDicomweb([*pt, *ct, seg]), study.study_uid, 1.5, "ldm",
                                  str(seg.SeriesInstanceUID), store=False)
    by_name = {v.name: v for v in oblique.vois}
    for voi in straight.vois:
        assert by_name[voi.name].voxel_count == voi.voxel_count, voi.name
        assert by_name[voi.name].metrics["Dmean"] == pytest.approx(voi.metrics["Dmean"], rel=1e-6), voi.name
    normal = np.cross(*np.array([float(v) for v in pt[0].ImageOrientationPatient]).reshape(2, 3))
    assert abs(normal[2]) < 0.99  # the planes are really oblique
