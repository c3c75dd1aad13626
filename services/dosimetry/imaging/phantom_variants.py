"""Phantom studies whose CT is in another Frame of Reference, and the Spatial Registration that
relates the frames (PS3.3 A.39 / C.20.2), for the registration tests.

:func:`moved_to_frame` re-expresses per-slice images in a new frame B whose coordinates are
p_B = R · p_A + t (the patient did not move; the coordinate system did): positions and row and
column directions are mapped, the pixels stay. :func:`spatial_registration` writes the REG
instance whose own Frame of Reference is A and whose Registration Sequence item for B holds
M_A←B = [R | t]⁻¹, so reading it back restores every CT voxel to where it was in A.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from copy import deepcopy

import numpy as np
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence as DicomSequence

from services.dosimetry.imaging.phantoms import _file_meta, _uid

__all__ = [
    "DEFORMABLE_SPATIAL_REGISTRATION_STORAGE",
    "SPATIAL_REGISTRATION_STORAGE",
    "frame_change",
    "moved_to_frame",
    "rotation_matrix",
    "spatial_registration",
]

SPATIAL_REGISTRATION_STORAGE = "1.2.840.10008.5.1.4.1.1.66.1"
DEFORMABLE_SPATIAL_REGISTRATION_STORAGE = "1.2.840.10008.5.1.4.1.1.66.3"


def rotation_matrix(degrees_about_z: float, degrees_about_x: float) -> np.ndarray:
    """R = Rz · Rx (3×3)."""
    a, b = np.radians(degrees_about_z), np.radians(degrees_about_x)
    rz = np.array([[np.cos(a), -np.sin(a), 0.0], [np.sin(a), np.cos(a), 0.0], [0.0, 0.0, 1.0]])
    rx = np.array([[1.0, 0.0, 0.0], [0.0, np.cos(b), -np.sin(b)], [0.0, np.sin(b), np.cos(b)]])
    return np.asarray(rz @ rx)


def frame_change(rotation: np.ndarray, translation_mm: Sequence[float]) -> np.ndarray:
    """The 4×4 matrix taking A coordinates to B coordinates: p_B = R · p_A + t."""
    matrix = np.eye(4)
    matrix[:3, :3] = rotation
    matrix[:3, 3] = np.asarray(translation_mm, dtype=np.float64)
    return matrix


def moved_to_frame(datasets: Iterable[Dataset], a_to_b: np.ndarray, frame_uid: str, key: str) -> list[Dataset]:
    """Copies of per-slice images (CT, PT) expressed in frame ``frame_uid`` (p_B = a_to_b · p_A),
    with new series and instance UIDs."""
    out = []
    rotation, shift = a_to_b[:3, :3], a_to_b[:3, 3]
    for i, ds in enumerate(datasets):
        copy = deepcopy(ds)
        copy.SeriesInstanceUID = _uid("moved-series", key, ds.SeriesInstanceUID)
        copy.SOPInstanceUID = _uid("moved-instance", key, i, ds.SOPInstanceUID)
        copy.file_meta.MediaStorageSOPInstanceUID = copy.SOPInstanceUID
        iop = np.array([float(v) for v in ds.ImageOrientationPatient]).reshape(2, 3)
        copy.ImageOrientationPatient = [f"{v:.10f}" for v in (iop @ rotation.T).ravel()]
        ipp = np.array([float(v) for v in ds.ImagePositionPatient])
        copy.ImagePositionPatient = [f"{v:.6f}" for v in rotation @ ipp + shift]
        copy.FrameOfReferenceUID = frame_uid
        out.append(copy)
    return out


def spatial_registration(study: Dataset, registered_frame: str, moving_frame: str, b_to_a: np.ndarray,
                         key: str, *, matrix_type: str = "RIGID", deformable: bool = False) -> Dataset:
    """A Spatial Registration (REG) instance in the study of ``study`` (any of its instances):
    Frame of Reference ``registered_frame`` (A), one Registration Sequence item for
    ``moving_frame`` (B) with M_A←B = ``b_to_a`` of type ``matrix_type``. ``deformable`` writes
    the Deformable Spatial Registration SOP class instead (for the refusal test)."""
    sop_class = DEFORMABLE_SPATIAL_REGISTRATION_STORAGE if deformable else SPATIAL_REGISTRATION_STORAGE
    sop_uid = _uid("reg-instance", key)
    ds = Dataset()
    ds.file_meta = _file_meta(sop_class, sop_uid)
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = sop_uid
    ds.SpecificCharacterSet = "ISO_IR 100"
    for keyword in ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyInstanceUID",
                    "StudyDate", "StudyTime", "StudyID", "AccessionNumber", "ReferringPhysicianName"):
        setattr(ds, keyword, study.get(keyword, ""))
    ds.Modality = "REG"
    ds.SeriesInstanceUID = _uid("reg-series", key)
    ds.SeriesNumber = 20
    ds.InstanceNumber = 1
    ds.ContentDate = study.get("StudyDate", "")
    ds.ContentTime = study.get("StudyTime", "")
    ds.ContentLabel = "CT_TO_EMISSION"
    ds.FrameOfReferenceUID = registered_frame
    ds.PositionReferenceIndicator = ""
    ds.Manufacturer = "netliver synthetic phantom"
    matrix = Dataset()
    matrix.FrameOfReferenceTransformationMatrixType = matrix_type
    matrix.FrameOfReferenceTransformationMatrix = [f"{v:.10g}" for v in np.asarray(b_to_a).ravel()]
    registration = Dataset()
    registration.MatrixSequence = DicomSequence([matrix])
    item = Dataset()
    item.FrameOfReferenceUID = moving_frame
    item.MatrixRegistrationSequence = DicomSequence([registration])
    if deformable:
        deformation = Dataset()
        deformation.SourceFrameOfReferenceUID = moving_frame
        ds.DeformableRegistrationSequence = DicomSequence([deformation])
    else:
        ds.RegistrationSequence = DicomSequence([item])
    return ds
