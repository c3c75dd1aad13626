"""RT Dose writing (pydicom round trip), VOIs from SEG / RTSTRUCT / automatic, the pipeline's
stage control against an in-memory DICOMweb client."""

from __future__ import annotations

import io
from copy import deepcopy
from typing import Any

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence as DicomSequence

from services.dosimetry.imaging.dicomweb import fetch_segmentation
from services.dosimetry.imaging.errors import ImagingError, JobCancelledError, SegmentationError
from services.dosimetry.imaging.grid import Grid
from services.dosimetry.imaging.phantoms import (
    build_study,
    dataset_bytes,
    lung_shunt,
    sphere_in_cylinder,
    two_compartment_liver,
)
from services.dosimetry.imaging.pipeline import run_voxel_dosimetry
from services.dosimetry.imaging.resample import density_on_grid
from services.dosimetry.imaging.rtdose import build_rtdose, rtdose_array
from services.dosimetry.imaging.voi import automatic_liver_voi, rtstruct_vois, seg_vois, voi_role
from services.dosimetry.imaging.volume import activity_volume, ct_volume
from tests.support.memory_dicomweb import MemoryDicomweb


def _roundtrip(ds: Dataset) -> Dataset:
    return pydicom.dcmread(io.BytesIO(dataset_bytes(ds)))


@pytest.fixture(scope="module")
def liver_study():  # type: ignore[no-untyped-def]
    return build_study(two_compartment_liver(n=24, voxel_mm=8.84), "PT", seed=3)


# -- RT Dose ----------------------------------------------------------------------------------

def test_rtdose_roundtrip_keeps_dose_and_geometry(liver_study) -> None:  # type: ignore[no-untyped-def]
    vol = activity_volume(liver_study.activity)
    rng = np.random.default_rng(0)
    dose = rng.gamma(2.0, 20.0, size=vol.grid.shape)
    ds = build_rtdose(dose, vol.grid, study=liver_study.ct[0], frame_of_reference_uid=liver_study.frame_of_reference_uid,
                      delivered=True, series_description="test", deterministic_key="k1")
    back = _roundtrip(ds)
    assert back.Modality == "RTDOSE" and back.SOPClassUID == "1.2.840.10008.5.1.4.1.1.481.2"
    assert back.DoseUnits == "GY" and back.DoseType == "PHYSICAL" and back.DoseSummationType == "PLAN_OVERVIEW"
    assert back.TissueHeterogeneityCorrection == "IMAGE"
    assert back.StudyInstanceUID == liver_study.study_uid
    assert back.FrameOfReferenceUID == liver_study.frame_of_reference_uid
    assert back.PatientID == liver_study.patient_id
    assert int(back.NumberOfFrames) == vol.grid.shape[0]
    assert back.FrameIncrementPointer == 0x3004000C
    offsets = [float(v) for v in back.GridFrameOffsetVector]
    np.testing.assert_allclose(offsets, 8.84 * np.arange(vol.grid.shape[0]), atol=1e-3)
    np.testing.assert_allclose([float(v) for v in back.ImagePositionPatient], vol.grid.first_position_mm, atol=1e-3)
    np.testing.assert_allclose([float(v) for v in back.PixelSpacing], [8.84, 8.84])
    scaling = float(back.DoseGridScaling)
    assert scaling == pytest.approx(dose.max() / (2**16 - 1), rel=1e-6)
    assert back.BitsAllocated == 16 and back.OperatorsName == ""
    np.testing.assert_allclose(rtdose_array(back), dose, atol=scaling)


def test_rtdose_clips_negative_and_non_finite_values(liver_study) -> None:  # type: ignore[no-untyped-def]
    grid = activity_volume(liver_study.activity).grid
    dose = np.full(grid.shape, 5.0)
    dose[0, 0, 0] = -3.0
    dose[1, 1, 1] = np.nan
    back = _roundtrip(build_rtdose(dose, grid, study=liver_study.ct[0], frame_of_reference_uid="1.2",
                                   delivered=False, series_description="x", deterministic_key="k2"))
    arr = rtdose_array(back)
    assert arr[0, 0, 0] == 0.0 and arr[1, 1, 1] == 0.0
    assert arr[2, 2, 2] == pytest.approx(5.0, rel=1e-6)
    assert back.DoseSummationType == "PLAN_OVERVIEW" and "predicted" in back.DoseComment


@pytest.mark.parametrize("bad", [np.inf, -np.inf, np.nan])
def test_every_non_finite_dose_is_stored_as_zero(liver_study, bad: float) -> None:  # type: ignore[no-untyped-def]
    grid = activity_volume(liver_study.activity).grid
    dose = np.full(grid.shape, 5.0)
    dose[3, 2, 1] = bad
    arr = rtdose_array(_roundtrip(build_rtdose(dose, grid, study=liver_study.ct[0], frame_of_reference_uid="1.2",
                                               delivered=True, series_description="x", deterministic_key="k3")))
    assert arr[3, 2, 1] == 0.0
    assert arr.max() == pytest.approx(5.0, rel=1e-6)  # +inf did not become the peak


def test_finite_doses_whose_sum_overflows_are_kept(liver_study) -> None:  # type: ignore[no-untyped-def]
    """The non-finite check is the sum's: finite values it cannot add up are stored as they are."""
    grid = activity_volume(liver_study.activity).grid
    dose = np.zeros(grid.shape)
    dose[0, 0, 0] = dose[1, 0, 0] = 1e308
    dose[2, 0, 0] = 5e307
    back = build_rtdose(dose, grid, study=liver_study.ct[0], frame_of_reference_uid="1.2",
                        delivered=True, series_description="x", deterministic_key="k4")
    arr = rtdose_array(_roundtrip(back))
    np.testing.assert_allclose(arr[:3, 0, 0], [1e308, 1e308, 5e307], rtol=1e-4)


def test_rtdose_uids_are_deterministic(liver_study) -> None:  # type: ignore[no-untyped-def]
    grid = activity_volume(liver_study.activity).grid
    dose = np.ones(grid.shape)
    kw: dict[str, Any] = {"study": liver_study.ct[0], "frame_of_reference_uid": "1.2", "delivered": True,
                          "series_description": "x"}
    a = build_rtdose(dose, grid, deterministic_key="same", **kw)
    b = build_rtdose(dose, grid, deterministic_key="same", **kw)
    c = build_rtdose(dose, grid, deterministic_key="other", **kw)
    assert a.SOPInstanceUID == b.SOPInstanceUID != c.SOPInstanceUID


def test_rtdose_describes_the_treatment_by_a_plan_overview(liver_study) -> None:  # type: ignore[no-untyped-def]
    """No RT Plan or RT Beams Treatment Record exists for a radioembolisation: Dose Summation
    Type PLAN_OVERVIEW, whose Plan Overview Sequence describes the treatment by its parameters,
    and neither Referenced RT Plan nor Referenced Treatment Record Sequence (nothing to point at)."""
    grid = activity_volume(liver_study.activity).grid
    kw: dict[str, Any] = {"study": liver_study.ct[0], "frame_of_reference_uid": "1.2", "series_description": "x",
                          "deterministic_key": "po"}
    for delivered, kind in ((True, "delivered"), (False, "predicted (MAA simulation)")):
        back = _roundtrip(build_rtdose(np.ones(grid.shape), grid, delivered=delivered, **kw))
        assert back.DoseSummationType == "PLAN_OVERVIEW"
        [item] = back.PlanOverviewSequence
        assert item.PlanOverviewIndex == 1 and item.NumberOfFractionsIncluded == 1
        assert item.TreatmentSiteCodeSequence[0].CodeValue == "10200004"
        assert "ReferencedRTPlanSequence" not in back and "ReferencedTreatmentRecordSequence" not in back
        assert back.DoseComment.endswith(kind)


# -- VOIs -------------------------------------------------------------------------------------

def test_seg_segments_land_on_the_design_voxels(liver_study) -> None:  # type: ignore[no-untyped-def]
    grid = activity_volume(liver_study.activity).grid
    vois = {v.name: v for v in seg_vois(_roundtrip(liver_study.seg), grid)}
    phantom = liver_study.phantom
    assert set(vois) == {"liver", "tumour 1", "tumour 2"}
    np.testing.assert_array_equal(vois["liver"].mask, phantom.segment_mask("liver"))
    np.testing.assert_array_equal(vois["tumour 1"].mask, phantom.mask("tumour 1"))
    assert vois["liver"].role == "liver" and vois["tumour 2"].role == "tumour"
    assert all(v.source == "segmentation" for v in vois.values())


def test_seg_outside_the_volume_is_refused(liver_study) -> None:  # type: ignore[no-untyped-def]
    grid = activity_volume(liver_study.activity).grid
    far = Grid(grid.shape, grid.affine.copy(), grid.frame_of_reference_uid)
    far.affine[2, 3] += 2000.0
    with pytest.raises(SegmentationError, match="does not overlap"):
        seg_vois(liver_study.seg, far)


def _circle_rtstruct(centre_xyz: tuple[float, float, float], radius_mm: float, z_values: list[float]) -> Dataset:
    ds = Dataset()
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.481.3"
    ds.Modality = "RTSTRUCT"
    roi = Dataset()
    roi.ROINumber = 1
    roi.ROIName = "Liver"
    ds.StructureSetROISequence = DicomSequence([roi])
    contours = []
    for z in z_values:
        r = np.sqrt(max(radius_mm**2 - (z - centre_xyz[2]) ** 2, 0.0))
        if r <= 0:
            continue
        angles = np.linspace(0, 2 * np.pi, 64, endpoint=False)
        pts = np.stack([centre_xyz[0] + r * np.cos(angles), centre_xyz[1] + r * np.sin(angles),
                        np.full_like(angles, z)], axis=1)
        item = Dataset()
        item.ContourGeometricType = "CLOSED_PLANAR"
        item.NumberOfContourPoints = len(pts)
        item.ContourData = [f"{v:.3f}" for v in pts.ravel()]
        contours.append(item)
    roi_contour = Dataset()
    roi_contour.ReferencedROINumber = 1
    roi_contour.ContourSequence = DicomSequence(contours)
    ds.ROIContourSequence = DicomSequence([roi_contour])
    return ds


def test_rtstruct_rasterises_a_sphere_to_its_volume() -> None:
    study = build_study(sphere_in_cylinder(n=32, voxel_mm=4.42), "PT", seed=4, with_seg=False)
    ct = ct_volume(study.ct)
    grid = activity_volume(study.activity).grid
    z_planes = [float(ct.grid.index_to_patient(np.array([k, 0.0, 0.0]))[2]) for k in range(ct.grid.shape[0])]
    rs = _circle_rtstruct((0.0, 0.0, -120.0), 30.0, z_planes)
    [voi] = rtstruct_vois(rs, ct.grid, grid)
    assert voi.role == "liver" and voi.source == "rtstruct"
    volume_ml = voi.voxel_count * grid.voxel_volume_ml
    assert volume_ml == pytest.approx(4 / 3 * np.pi * 3.0**3, rel=0.08)  # voxelisation of a 30 mm sphere at 4.42 mm
    centre = np.argwhere(voi.mask).mean(axis=0)
    np.testing.assert_allclose(grid.index_to_patient(centre), [0.0, 0.0, -120.0], atol=2.3)


def test_automatic_liver_voi_is_the_perfused_liver() -> None:
    study = build_study(lung_shunt(n=24, voxel_mm=8.84), "NM", seed=5, with_seg=False)
    vol = activity_volume(study.activity)
    density = density_on_grid(ct_volume(study.ct), vol.grid)
    voi = automatic_liver_voi(vol.values, density)
    np.testing.assert_array_equal(voi.mask, study.phantom.segment_mask("liver"))
    assert not (voi.mask & study.phantom.mask("lungs")).any()
    assert voi.source == "automatic" and voi.role == "liver"


def test_automatic_voi_needs_activity() -> None:
    with pytest.raises(SegmentationError, match="no activity"):
        automatic_liver_voi(np.zeros((4, 4, 4)), None)


@pytest.mark.parametrize(("label", "code", "role"), [("Liver", "", "liver"), ("x", "10200004", "liver"),
                                                     ("Lung L", "", "lung"), ("GTV 2", "", "tumour"),
                                                     ("spleen", "", "other"), ("x", "108369006", "tumour")])
def test_voi_roles(label: str, code: str, role: str) -> None:
    assert voi_role(label, code) == role


# -- pipeline control with an in-memory DICOMweb client ---------------------------------------

@pytest.fixture
def memory_pacs(liver_study) -> MemoryDicomweb:  # type: ignore[no-untyped-def]
    return MemoryDicomweb(liver_study.datasets())


def test_cancel_before_store_writes_nothing(memory_pacs: MemoryDicomweb, liver_study) -> None:  # type: ignore[no-untyped-def]
    seen: list[str] = []
    with pytest.raises(JobCancelledError) as err:
        run_voxel_dosimetry(memory_pacs, liver_study.study_uid, 1.5, "ldm", liver_study.seg_series_uid,
                            progress=lambda s, f: seen.append(s), cancelled=lambda: "dvh" in seen)
    assert err.value.stage == "store"
    assert memory_pacs.stored == []


def test_progress_is_monotonic_and_ends_at_one(memory_pacs: MemoryDicomweb, liver_study) -> None:  # type: ignore[no-untyped-def]
    reports: list[tuple[str, float]] = []
    result = run_voxel_dosimetry(memory_pacs, liver_study.study_uid, 1.5, "ldm", liver_study.seg_series_uid,
                                 progress=lambda s, f: reports.append((s, f)))
    fractions = [f for _, f in reports]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    assert len(memory_pacs.stored) == 1
    assert memory_pacs.stored[0].SOPInstanceUID == result.rtdose_sop_instance_uid
    assert {v.name for v in result.vois} == {"liver", "tumour 1", "tumour 2", "normal liver"}
    assert set(result.vois[0].metrics) >= {"Dmean", "D50", "D70", "D90", "V100", "V120"}


@pytest.mark.parametrize(("activity", "method", "expression"), [
    (0.0, "ldm", "administeredActivityGBq"), (-1.0, "ldm", "administeredActivityGBq"),
    (float("nan"), "ldm", "administeredActivityGBq"), (1.0, "monte-carlo", "method")])
def test_invalid_parameters_are_422(memory_pacs: MemoryDicomweb, liver_study, activity: float, method: str,  # type: ignore[no-untyped-def]
                                    expression: str) -> None:
    with pytest.raises(ImagingError) as err:
        run_voxel_dosimetry(memory_pacs, liver_study.study_uid, activity, method)
    assert err.value.status == 422 and err.value.expression == expression


def test_seg_frame_shifted_in_its_plane_is_refused(liver_study) -> None:  # type: ignore[no-untyped-def]
    """A frame whose ImagePositionPatient is off the first frame's in-plane origin would be placed
    on the wrong voxels; it is refused instead (unshifted, the same SEG is accepted above)."""
    grid = activity_volume(liver_study.activity).grid
    seg = _roundtrip(liver_study.seg)
    plane = seg.PerFrameFunctionalGroupsSequence[-1].PlanePositionSequence[0]
    x, y, z = (float(v) for v in plane.ImagePositionPatient)
    plane.ImagePositionPatient = [f"{x + 6.0:.4f}", f"{y:.4f}", f"{z:.4f}"]
    with pytest.raises(SegmentationError, match="ImagePositionPatient") as err:
        seg_vois(seg, grid)
    assert err.value.status == 422


def test_seg_frame_between_slice_planes_is_refused(liver_study) -> None:  # type: ignore[no-untyped-def]
    grid = activity_volume(liver_study.activity).grid
    seg = _roundtrip(liver_study.seg)
    normal = np.cross(*np.array([float(v) for v in seg.SharedFunctionalGroupsSequence[0]
                                 .PlaneOrientationSequence[0].ImageOrientationPatient]).reshape(2, 3))
    along = sorted({round(float(np.array([float(v) for v in f.PlanePositionSequence[0].ImagePositionPatient]) @ normal),
                          3) for f in seg.PerFrameFunctionalGroupsSequence})
    step = along[1] - along[0]
    plane = seg.PerFrameFunctionalGroupsSequence[-1].PlanePositionSequence[0]
    moved = np.array([float(v) for v in plane.ImagePositionPatient]) + normal * 0.4 * step
    plane.ImagePositionPatient = [f"{v:.4f}" for v in moved]
    with pytest.raises(SegmentationError, match="regularly spaced volume"):
        seg_vois(seg, grid)


def test_rtstruct_in_another_frame_of_reference_is_refused() -> None:
    study = build_study(sphere_in_cylinder(n=32, voxel_mm=4.42), "PT", seed=4, with_seg=False)
    ct = ct_volume(study.ct)
    grid = activity_volume(study.activity).grid
    z_planes = [float(ct.grid.index_to_patient(np.array([k, 0.0, 0.0]))[2]) for k in range(ct.grid.shape[0])]
    rs = _circle_rtstruct((0.0, 0.0, -120.0), 30.0, z_planes)
    rs.StructureSetROISequence[0].ReferencedFrameOfReferenceUID = study.frame_of_reference_uid
    assert rtstruct_vois(rs, ct.grid, grid)  # same frame: accepted
    rs.StructureSetROISequence[0].ReferencedFrameOfReferenceUID = "1.2.3.4.5.6.7"
    with pytest.raises(SegmentationError, match=r"ReferencedFrameOfReferenceUID \(3006,0024\)"):
        rtstruct_vois(rs, ct.grid, grid)


def test_emission_volume_beyond_the_ct_is_soft_tissue_with_a_warning(liver_study) -> None:  # type: ignore[no-untyped-def]
    """A CT shorter than the emission field of view: the uncovered voxels are given soft-tissue
    density (not air, which would multiply their dose ~900-fold) and the result says so."""
    ct_sorted = sorted(liver_study.ct, key=lambda d: float(d.ImagePositionPatient[2]))
    kept = ct_sorted[len(ct_sorted) // 3:]  # drop the lowest third of the CT (the liver's lower end)
    others = [d for d in liver_study.datasets() if d.Modality != "CT"]
    pacs = MemoryDicomweb(others + kept)
    result = run_voxel_dosimetry(pacs, liver_study.study_uid, 1.5, "ldm", store=False)
    assert any("does not cover" in w and "soft-tissue" in w for w in result.warnings)
    whole = run_voxel_dosimetry(MemoryDicomweb(liver_study.datasets()), liver_study.study_uid, 1.5, "ldm",
                                store=False)
    assert not any("does not cover" in w for w in whole.warnings)
    # a fully uncovered slice with counts gets the soft-tissue dose of its counts, not ~900 times it
    vol = activity_volume(liver_study.activity)
    z_first_kept = float(kept[0].ImagePositionPatient[2])
    k = int(np.argmax(vol.values.sum(axis=(1, 2)) > 0))  # lowest slice with counts
    assert float(vol.grid.index_to_patient(np.array([k + 0.5, 0.0, 0.0]))[2]) < z_first_kept
    assert float(vol.values[k].sum()) > 0
    ratio = float(result.dose_gy[k].max()) / float(whole.dose_gy[k].max())
    assert 0.5 < ratio < 2.0


def test_maa_counts_outside_the_liver_and_lungs_are_reported_not_given_activity() -> None:
    """An MAA simulation is normalised over the liver plus the lungs: extra MAA counts outside
    them (e.g. free pertechnetate in the stomach) are reported with their share E/(T+E) and take
    none of the planned activity, so the liver dose is unchanged."""
    study = build_study(lung_shunt(n=24, voxel_mm=8.84), "NM", seed=5)
    clean = run_voxel_dosimetry(MemoryDicomweb(study.datasets()), study.study_uid, 2.0, "ldm",
                                study.seg_series_uid, store=False)
    assert clean.simulation
    assert not any("outside the liver and lungs" in w for w in clean.warnings)

    nm = study.activity[0]
    counts = nm.pixel_array.astype(np.int64)
    inside = np.zeros(counts.shape, dtype=bool)
    for name, *_ in study.phantom.segments:
        inside |= study.phantom.segment_mask(name)
    total = int(counts.sum())
    outside = np.argwhere(~inside)[:200]
    extra = total // 4 // len(outside)
    for k, j, i in outside:
        counts[k, j, i] += extra
    added = extra * len(outside)
    nm.PixelData = counts.astype(nm.pixel_array.dtype).tobytes()
    hot = run_voxel_dosimetry(MemoryDicomweb(study.datasets()), study.study_uid, 2.0, "ldm",
                              study.seg_series_uid, store=False)
    share = added / (total + added)
    assert any(f"{100 * share:.1f} % of the MAA counts lie outside the liver and lungs" in w for w in hot.warnings)
    for name in ("liver", "lungs"):
        before = next(v for v in clean.vois if v.name == name).metrics["Dmean"]
        after = next(v for v in hot.vois if v.name == name).metrics["Dmean"]
        assert after == pytest.approx(before, rel=1e-9)
    assert hot.lung_shunt_fraction == pytest.approx(clean.lung_shunt_fraction, rel=1e-9)


def test_activity_without_frame_of_reference_is_accepted_with_a_warning(liver_study) -> None:  # type: ignore[no-untyped-def]
    datasets = [deepcopy(ds) for ds in liver_study.datasets()]
    for ds in datasets:
        if ds.Modality == "PT":
            del ds.FrameOfReferenceUID
    result = run_voxel_dosimetry(MemoryDicomweb(datasets), liver_study.study_uid, 1.5, "ldm",
                                 liver_study.seg_series_uid, store=False)
    assert any("FrameOfReferenceUID (0020,0052) missing on the activity series" in w for w in result.warnings)
    whole = run_voxel_dosimetry(MemoryDicomweb(liver_study.datasets()), liver_study.study_uid, 1.5, "ldm",
                                liver_study.seg_series_uid, store=False)
    assert not any("FrameOfReferenceUID (0020,0052) missing" in w for w in whole.warnings)


def test_rtdose_of_frames_stacked_against_the_normal_is_written_with_rising_offsets(liver_study) -> None:  # type: ignore[no-untyped-def]
    """A grid whose slice step points against the normal (NM negative SpacingBetweenSlices):
    the RT Dose starts at the other end, so GridFrameOffsetVector rises from 0, and each frame
    still sits at the patient position of its dose."""
    up = activity_volume(liver_study.activity).grid
    n = up.shape[0]
    affine = up.affine.copy()
    affine[:3, 3] = up.index_to_patient(np.array([n - 1.0, 0.0, 0.0]))
    affine[:3, 0] = -up.affine[:3, 0]
    down = Grid(up.shape, affine, up.frame_of_reference_uid)
    dose = np.random.default_rng(1).gamma(2.0, 10.0, size=down.shape)
    back = _roundtrip(build_rtdose(dose, down, study=liver_study.ct[0], frame_of_reference_uid="1.2",
                                   delivered=True, series_description="x", deterministic_key="flip"))
    offsets = np.array([float(v) for v in back.GridFrameOffsetVector])
    assert offsets[0] == 0.0 and np.all(np.diff(offsets) > 0)
    ipp = np.array([float(v) for v in back.ImagePositionPatient])
    iop = np.array([float(v) for v in back.ImageOrientationPatient])
    normal = np.cross(iop[:3], iop[3:])
    stored = rtdose_array(back)
    scaling = float(back.DoseGridScaling)
    for f in (0, 3, n - 1):
        position = ipp + offsets[f] * normal
        k = round(float(down.patient_to_index(position)[0]))
        np.testing.assert_allclose(down.index_to_patient(np.array([float(k), 0.0, 0.0])), position, atol=1e-3)
        np.testing.assert_allclose(stored[f], dose[k], atol=scaling)


def test_a_seg_series_of_several_instances_gives_the_segments_of_all(liver_study) -> None:  # type: ignore[no-untyped-def]
    second = deepcopy(liver_study.seg)
    second.SOPInstanceUID = "2.25.1234567890123456789"
    second.file_meta.MediaStorageSOPInstanceUID = second.SOPInstanceUID
    for segment in second.SegmentSequence:
        segment.SegmentLabel = f"{segment.SegmentLabel} (second instance)"
    pacs = MemoryDicomweb([*liver_study.datasets(), second])
    result = run_voxel_dosimetry(pacs, liver_study.study_uid, 1.5, "ldm", liver_study.seg_series_uid, store=False)
    names = {v.name for v in result.vois}
    assert names == {"liver", "tumour 1", "tumour 2", "liver (second instance)", "tumour 1 (second instance)",
                     "tumour 2 (second instance)", "normal liver"}
    by_name = {v.name: v for v in result.vois}
    assert by_name["liver"].metrics["Dmean"] == pytest.approx(by_name["liver (second instance)"].metrics["Dmean"])
    with pytest.raises(SegmentationError, match="2 instances"):
        fetch_segmentation(pacs, liver_study.study_uid, liver_study.seg_series_uid)


def test_a_ct_shorter_only_where_there_are_no_counts_gives_no_warning(liver_study) -> None:  # type: ignore[no-untyped-def]
    ct_sorted = sorted(liver_study.ct, key=lambda d: float(d.ImagePositionPatient[2]))
    kept = ct_sorted[: len(ct_sorted) * 3 // 4]  # the top quarter of this phantom holds no counts
    vol = activity_volume(liver_study.activity)
    top = float(kept[-1].ImagePositionPatient[2])
    empty_above = [k for k in range(vol.grid.shape[0]) if float(vol.grid.index_to_patient(np.array([k, 0.0, 0.0]))[2]) > top]
    assert empty_above and float(vol.values[empty_above].sum()) == 0.0
    others = [d for d in liver_study.datasets() if d.Modality != "CT"]
    result = run_voxel_dosimetry(MemoryDicomweb(others + kept), liver_study.study_uid, 1.5, "ldm", store=False)
    assert not any("does not cover" in w for w in result.warnings)
