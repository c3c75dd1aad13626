"""A CT (and the SEG drawn on it) in another Frame of Reference than the emission image: used
through the study's rigid DICOM Spatial Registration, refused without one, refused by name when
the registration is deformable or not rigid.

The moved study is the straight one with the CT's coordinate system rotated and translated
(p_B = R · p_A + t): the patient did not move, so with the registration every VOI, its voxel
count and dose must come back to the straight study's. The phantom is an NM study with a
noise-free CT, so the liver's mean dose is also the analytic local-deposition value
D = C·A·f/(N·V·ρ) (as in test_imaging_seg.py; ρ of 60 HU from the Schneider 1996 fit)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from pydicom.dataset import Dataset

from services.dosimetry.imaging.errors import CtMismatchError
from services.dosimetry.imaging.phantom_variants import (
    frame_change,
    moved_to_frame,
    rotation_matrix,
    spatial_registration,
)
from services.dosimetry.imaging.phantoms import (
    PhantomStudy,
    build_study,
    make_seg,
    two_compartment_liver,
)
from services.dosimetry.imaging.pipeline import VoxelDosimetryResult, run_voxel_dosimetry
from services.dosimetry.imaging.rtdose import rtdose_array
from tests.support.memory_dicomweb import MemoryDicomweb

CT_FRAME = "1.2.826.0.1.3680043.8.498.77001"
ACTIVITY_GBQ = 1.5
C_GY_KG_PER_GBQ = 49.67  # EANM 2022 dose constant
LIVER = ("normal liver", "tumour 1", "tumour 2")


def _analytic_liver_dmean(study: PhantomStudy) -> float:
    phantom = study.phantom
    rho_g_per_ml = (0.9082709691264 * (60.0 + 1000.0) + 103.6151457847139) / 1000.0
    mass_kg = int(phantom.mask(*LIVER).sum()) * phantom.voxel_ml * rho_g_per_ml / 1000.0
    return C_GY_KG_PER_GBQ * ACTIVITY_GBQ * phantom.activity_fraction(*LIVER) / mass_kg


@pytest.fixture(scope="module")
def study() -> PhantomStudy:
    return build_study(two_compartment_liver(n=24, voxel_mm=8.84), "NM", seed=131, ct_noise_hu=0.0)


@pytest.fixture(scope="module")
def straight(study: PhantomStudy) -> dict[str, VoxelDosimetryResult]:
    return {method: run_voxel_dosimetry(MemoryDicomweb(study.datasets()), study.study_uid, ACTIVITY_GBQ, method,
                                        study.seg_series_uid, store=False) for method in ("ldm", "dvk")}


def _moved(study: PhantomStudy, a_to_b: np.ndarray) -> tuple[list[Dataset], Dataset]:
    ct = moved_to_frame(study.ct, a_to_b, CT_FRAME, "registration")
    return ct, make_seg(study.phantom, ct, key=("registered", float(a_to_b[0, 3])))


@pytest.mark.parametrize("method", ["ldm", "dvk"])
@pytest.mark.parametrize("degrees, shift_mm", [((0.0, 0.0), (35.0, -20.0, 410.0)),
                                               ((25.0, 12.0), (-60.0, 15.0, 250.0))],
                         ids=["translated", "rotated-and-translated"])
def test_a_registered_ct_in_another_frame_restores_the_doses(study: PhantomStudy,
                                                             straight: dict[str, VoxelDosimetryResult],
                                                             degrees: tuple[float, float],
                                                             shift_mm: tuple[float, float, float], method: str) -> None:
    a_to_b = frame_change(rotation_matrix(*degrees), shift_mm)
    ct, seg = _moved(study, a_to_b)
    reg = spatial_registration(study.ct[0], study.frame_of_reference_uid, CT_FRAME, np.linalg.inv(a_to_b),
                               "reg-ok")
    pacs = MemoryDicomweb([*study.activity, *ct, seg, reg])
    result = run_voxel_dosimetry(pacs, study.study_uid, ACTIVITY_GBQ, method, str(seg.SeriesInstanceUID))
    moved = {v.name: v for v in result.vois}
    for voi in straight[method].vois:
        assert moved[voi.name].voxel_count == voi.voxel_count, voi.name
        # to the density's float32 precision: the registration's decimal strings leave the moved
        # grids parallel to ~1e-8 of a voxel, which shifts the overlap weights by as much
        assert moved[voi.name].mass_g == pytest.approx(voi.mass_g, rel=1e-7), voi.name
        assert moved[voi.name].metrics["Dmean"] == pytest.approx(voi.metrics["Dmean"], rel=1e-7), voi.name
    if method == "ldm":
        assert moved["liver"].metrics["Dmean"] == pytest.approx(_analytic_liver_dmean(study), rel=1e-5)
    assert any("Spatial Registration" in w and "rigid" in w for w in result.warnings)
    # the RT Dose is written in the CT's frame, its grid the emission grid moved there
    [rtdose] = pacs.stored
    assert rtdose.FrameOfReferenceUID == CT_FRAME
    first = np.array([float(v) for v in rtdose.ImagePositionPatient])
    emission_first = (a_to_b @ np.append(straight[method].grid.first_position_mm, 1.0))[:3]
    np.testing.assert_allclose(first, emission_first, atol=1e-3)
    np.testing.assert_allclose(rtdose_array(rtdose), result.dose_gy, atol=float(rtdose.DoseGridScaling))


def test_without_a_registration_a_ct_in_another_frame_is_refused(study: PhantomStudy) -> None:
    ct, seg = _moved(study, frame_change(np.eye(3), (35.0, -20.0, 410.0)))
    with pytest.raises(CtMismatchError, match="no Spatial Registration") as err:
        run_voxel_dosimetry(MemoryDicomweb([*study.activity, *ct, seg]), study.study_uid, ACTIVITY_GBQ, "ldm",
                            str(seg.SeriesInstanceUID), store=False)
    assert err.value.expression == "FrameOfReferenceUID" and CT_FRAME in err.value.message


def test_a_registration_of_other_frames_does_not_count(study: PhantomStudy) -> None:
    a_to_b = frame_change(np.eye(3), (35.0, -20.0, 410.0))
    ct, seg = _moved(study, a_to_b)
    other = spatial_registration(study.ct[0], study.frame_of_reference_uid, "1.2.826.0.1.3680043.8.498.99",
                                 np.linalg.inv(a_to_b), "reg-other")
    with pytest.raises(CtMismatchError, match="no Spatial Registration"):
        run_voxel_dosimetry(MemoryDicomweb([*study.activity, *ct, seg, other]), study.study_uid, ACTIVITY_GBQ,
                            "ldm", str(seg.SeriesInstanceUID), store=False)


@pytest.mark.parametrize("kind, expected", [({"matrix_type": "AFFINE"}, "AFFINE .non-rigid."),
                                            ({"matrix_type": "RIGID_SCALE"}, "RIGID_SCALE .non-rigid."),
                                            ({"deformable": True}, "Deformable Spatial Registration")])
def test_a_deformable_or_non_rigid_registration_is_refused_by_name(study: PhantomStudy, kind: dict[str, Any],
                                                                   expected: str) -> None:
    a_to_b = frame_change(np.eye(3), (35.0, -20.0, 410.0))
    ct, seg = _moved(study, a_to_b)
    reg = spatial_registration(study.ct[0], study.frame_of_reference_uid, CT_FRAME, np.linalg.inv(a_to_b),
                               f"reg-{kind}", **kind)
    with pytest.raises(CtMismatchError, match=expected):
        run_voxel_dosimetry(MemoryDicomweb([*study.activity, *ct, seg, reg]), study.study_uid, ACTIVITY_GBQ,
                            "ldm", str(seg.SeriesInstanceUID), store=False)


def test_a_rigid_labelled_matrix_that_scales_is_refused(study: PhantomStudy) -> None:
    a_to_b = frame_change(np.eye(3), (35.0, -20.0, 410.0))
    ct, seg = _moved(study, a_to_b)
    scaled = np.linalg.inv(a_to_b)
    scaled[:3, :3] *= 1.05
    reg = spatial_registration(study.ct[0], study.frame_of_reference_uid, CT_FRAME, scaled, "reg-scaled")
    with pytest.raises(CtMismatchError, match="not a rotation and translation"):
        run_voxel_dosimetry(MemoryDicomweb([*study.activity, *ct, seg, reg]), study.study_uid, ACTIVITY_GBQ,
                            "ldm", str(seg.SeriesInstanceUID), store=False)


def test_a_named_registration_series_must_be_a_reg(study: PhantomStudy) -> None:
    a_to_b = frame_change(np.eye(3), (35.0, -20.0, 410.0))
    ct, seg = _moved(study, a_to_b)
    with pytest.raises(CtMismatchError, match="not a Spatial Registration") as err:
        run_voxel_dosimetry(MemoryDicomweb([*study.activity, *ct, seg]), study.study_uid, ACTIVITY_GBQ, "ldm",
                            str(seg.SeriesInstanceUID), store=False, registration_series_uid=str(ct[0].SeriesInstanceUID))
    assert err.value.expression == "registrationSeriesUid"


def test_a_registration_whose_registered_frame_is_the_cts_works_the_other_way(
        study: PhantomStudy, straight: dict[str, VoxelDosimetryResult]) -> None:
    """The REG may be written in the CT's frame with an item for the emission frame (M_CT←emission)."""
    a_to_b = frame_change(rotation_matrix(-15.0, 5.0), (20.0, 30.0, -300.0))
    ct, seg = _moved(study, a_to_b)
    reg = spatial_registration(study.ct[0], CT_FRAME, study.frame_of_reference_uid, a_to_b, "reg-reverse")
    result = run_voxel_dosimetry(MemoryDicomweb([*study.activity, *ct, seg, reg]), study.study_uid, ACTIVITY_GBQ,
                                 "ldm", str(seg.SeriesInstanceUID), store=False,
                                 registration_series_uid=str(reg.SeriesInstanceUID))
    moved = {v.name: v for v in result.vois}
    for voi in straight["ldm"].vois:
        assert moved[voi.name].voxel_count == voi.voxel_count, voi.name
        assert moved[voi.name].metrics["Dmean"] == pytest.approx(voi.metrics["Dmean"], rel=1e-7), voi.name
