"""The RT Dose the pipeline writes, checked with other people's tools: dciodvfy (dicom3tools)
validates it against the DICOM IODs, dicompyler-core reads it back to the same grid and values,
and dicompyler-core's DVH from it and the input RTSTRUCT agrees with ours (Dmean within 1 %,
D90 within 2 %)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence as DicomSequence

from services.dosimetry.imaging.pipeline import run_voxel_dosimetry
from services.dosimetry.imaging.volume import ct_volume
from tests.fixtures.dicom_phantoms import (
    PhantomStudy,
    build_study,
    dataset_bytes,
    lung_shunt,
    sphere_in_cylinder,
)
from tests.support.dicompyler import dicompyler_dose, dicompyler_dvhcalc
from tests.support.memory_dicomweb import MemoryDicomweb

RTSTRUCT_STORAGE = "1.2.840.10008.5.1.4.1.1.481.3"

# Radioembolisation has neither an RT Plan nor an RT Beams Treatment Record: the Type 1C
# references that PLAN / RECORD summation would ask for cannot point at anything real.
_NO_PLAN_OR_RECORD = {
    "RECORD": "Error - Missing attribute Type 1C Conditional Element=<ReferencedTreatmentRecordSequence> "
              "Module=<RTDose>",
    "PLAN": "Error - Missing attribute Type 1C Conditional Element=<ReferencedRTPlanSequence> Module=<RTDose>",
}


def _circle(centre: tuple[float, float], radius: float, z: float, points: int = 72) -> list[str]:
    angles = np.linspace(0.0, 2.0 * np.pi, points, endpoint=False)
    xyz = np.stack([centre[0] + radius * np.cos(angles), centre[1] + radius * np.sin(angles),
                    np.full(points, z)], axis=1)
    return [f"{v:.3f}" for v in xyz.ravel()]


def sphere_rtstruct(study: PhantomStudy, name: str, centre_xyz: tuple[float, float, float],
                    radius_mm: float) -> Dataset:
    """An RTSTRUCT with one spherical ROI drawn as a circle on every CT plane it crosses."""
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    ct = sorted(study.ct, key=lambda d: float(d.ImagePositionPatient[2]))
    ds = Dataset()
    ds.SOPClassUID = RTSTRUCT_STORAGE
    ds.SOPInstanceUID = generate_uid(entropy_srcs=["rtstruct", study.study_uid, name])
    ds.file_meta = Dataset()
    ds.file_meta.MediaStorageSOPClassUID = RTSTRUCT_STORAGE
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    for keyword in ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyInstanceUID", "StudyDate",
                    "StudyTime", "StudyID", "AccessionNumber", "ReferringPhysicianName"):
        setattr(ds, keyword, ct[0].get(keyword, ""))
    ds.Modality = "RTSTRUCT"
    ds.SeriesInstanceUID = generate_uid(entropy_srcs=["rtstruct-series", study.study_uid, name])
    ds.SeriesNumber = 30
    ds.StructureSetLabel = "VOIs"
    ds.FrameOfReferenceUID = study.frame_of_reference_uid
    frame = Dataset()
    frame.FrameOfReferenceUID = study.frame_of_reference_uid
    ds.ReferencedFrameOfReferenceSequence = DicomSequence([frame])
    roi = Dataset()
    roi.ROINumber = 1
    roi.ROIName = name
    roi.ReferencedFrameOfReferenceUID = study.frame_of_reference_uid
    roi.ROIGenerationAlgorithm = "MANUAL"
    ds.StructureSetROISequence = DicomSequence([roi])
    contours = []
    for image in ct:
        z = float(image.ImagePositionPatient[2])
        r2 = radius_mm**2 - (z - centre_xyz[2]) ** 2
        if r2 <= 1.0:
            continue
        item = Dataset()
        item.ContourGeometricType = "CLOSED_PLANAR"
        item.ContourData = _circle(centre_xyz[:2], float(np.sqrt(r2)), z)
        item.NumberOfContourPoints = len(item.ContourData) // 3
        image_ref = Dataset()
        image_ref.ReferencedSOPClassUID = image.SOPClassUID
        image_ref.ReferencedSOPInstanceUID = image.SOPInstanceUID
        item.ContourImageSequence = DicomSequence([image_ref])
        contours.append(item)
    roi_contour = Dataset()
    roi_contour.ReferencedROINumber = 1
    roi_contour.ROIDisplayColor = [255, 0, 0]
    roi_contour.ContourSequence = DicomSequence(contours)
    ds.ROIContourSequence = DicomSequence([roi_contour])
    observation = Dataset()
    observation.ObservationNumber = 1
    observation.ReferencedROINumber = 1
    observation.RTROIInterpretedType = "ORGAN"
    observation.ROIInterpreter = ""
    ds.RTROIObservationsSequence = DicomSequence([observation])
    return ds


@pytest.fixture(scope="module")
def sphere_run() -> dict[str, Any]:
    """A PET/CT of a hot sphere, contoured by an RTSTRUCT, computed with the Y-90 kernel."""
    study = build_study(sphere_in_cylinder(n=32, voxel_mm=4.42), "PT", seed=21, with_seg=False)
    rtstruct = sphere_rtstruct(study, "sphere", (0.0, 0.0, -120.0), 30.0)
    pacs = MemoryDicomweb([*study.datasets(), rtstruct])
    result = run_voxel_dosimetry(pacs, study.study_uid, 2.0, "dvk", str(rtstruct.SeriesInstanceUID))
    [rtdose] = pacs.stored
    return {"study": study, "rtstruct": rtstruct, "result": result, "rtdose": rtdose}


def _dciodvfy(ds: Dataset, tmp_path: Path) -> list[str]:
    if shutil.which("dciodvfy") is None:
        pytest.skip("dciodvfy (Debian dicom3tools) is not installed: run make system-deps")
    path = tmp_path / "rtdose.dcm"
    path.write_bytes(dataset_bytes(ds))
    run = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, timeout=120, check=False)
    # 0 valid, 1 errors reported; the Debian build aborts (SIGABRT) on what it cannot parse (32-bit RT Dose)
    assert run.returncode in (0, 1), run.stderr
    return [line.strip() for line in (run.stdout + run.stderr).splitlines()
            if line.startswith(("Error", "Warning"))]


def test_the_rtdose_of_a_y90_record_passes_dciodvfy(sphere_run: dict[str, Any], tmp_path: Path) -> None:
    rtdose = sphere_run["rtdose"]
    assert rtdose.DoseSummationType == "RECORD" and rtdose.BitsAllocated == 16
    assert _dciodvfy(rtdose, tmp_path) == [_NO_PLAN_OR_RECORD["RECORD"]]


def test_the_rtdose_of_an_maa_simulation_passes_dciodvfy(tmp_path: Path) -> None:
    study = build_study(lung_shunt(n=24, voxel_mm=8.84), "NM", seed=22)
    pacs = MemoryDicomweb(study.datasets())
    run_voxel_dosimetry(pacs, study.study_uid, 2.0, "ldm", study.seg_series_uid)
    [rtdose] = pacs.stored
    assert rtdose.DoseSummationType == "PLAN"
    assert _dciodvfy(rtdose, tmp_path) == [_NO_PLAN_OR_RECORD["PLAN"]]


def test_dicompyler_reads_the_rtdose_to_the_same_grid_and_values(sphere_run: dict[str, Any]) -> None:
    result = sphere_run["result"]
    grid = dicompyler_dose().DoseGrid(sphere_run["rtdose"])
    k, j, i = (np.arange(n, dtype=np.float64) for n in result.grid.shape)
    np.testing.assert_allclose(grid.x_axis, [result.grid.index_to_patient(np.array([0.0, 0.0, c]))[0] for c in i],
                               atol=1e-3)
    np.testing.assert_allclose(grid.y_axis, [result.grid.index_to_patient(np.array([0.0, r, 0.0]))[1] for r in j],
                               atol=1e-3)
    np.testing.assert_allclose(grid.z_axis, [result.grid.index_to_patient(np.array([s, 0.0, 0.0]))[2] for s in k],
                               atol=1e-3)
    back = np.swapaxes(grid.dose_grid, 0, 2)  # dicompyler-core holds (x, y, z)
    step = float(sphere_run["rtdose"].DoseGridScaling)
    assert step == pytest.approx(float(result.dose_gy.max()) / 65535, rel=1e-6)
    np.testing.assert_allclose(back, result.dose_gy, atol=step / 2 + 1e-9)


def test_dicompyler_dvh_from_our_rtdose_and_the_rtstruct_agrees_with_ours(sphere_run: dict[str, Any]) -> None:
    dvhcalc = dicompyler_dvhcalc()
    result = sphere_run["result"]
    ours = next(v for v in result.vois if v.name == "sphere")
    theirs = dvhcalc.get_dvh(sphere_run["rtstruct"], sphere_run["rtdose"], 1)
    d90 = float(theirs.statistic("D90").value)
    dmean = float(theirs.mean)
    print(f"DVH agreement: Dmean ours {ours.metrics['Dmean']:.3f} Gy, dicompyler-core {dmean:.3f} Gy; "
          f"D90 ours {ours.metrics['D90']:.3f} Gy, dicompyler-core {d90:.3f} Gy")
    assert dmean == pytest.approx(ours.metrics["Dmean"], rel=0.01)
    assert d90 == pytest.approx(ours.metrics["D90"], rel=0.02)
    # and our RTSTRUCT VOI has the sphere's volume (30 mm radius, 4.42 mm voxels)
    ct = ct_volume(sphere_run["study"].ct)
    assert ours.volume_ml == pytest.approx(4 / 3 * np.pi * 3.0**3, rel=0.08)
    assert ct.grid.frame_of_reference_uid == result.grid.frame_of_reference_uid
