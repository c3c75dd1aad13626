"""CT and emission image in different Frames of Reference, related by a DICOM Spatial Registration.

A SPECT or PET and a CT acquired on one hybrid scanner share a Frame of Reference (0020,0052);
a CT from another scanner or day does not, and its patient coordinates mean another place. Then
the study must hold a **Spatial Registration** instance (SOP class 1.2.840.10008.5.1.4.1.1.66.1,
Modality REG; PS3.3 A.39, Spatial Registration module C.20.2) relating the two frames, else the
CT is refused (:class:`~.errors.CtMismatchError` naming FrameOfReferenceUID).

Reading (PS3.3 C.20.2 and C.20.2.1.1): the instance's own FrameOfReferenceUID is the
*registered* coordinate system A. Each Registration Sequence (0070,0308) item names a frame B
(its FrameOfReferenceUID) and, in Matrix Registration Sequence (0070,0309) → Matrix Sequence
(0070,030A), the 4×4 Frame of Reference Transformation Matrix (3006,00C6) (row-major) that takes
a point of B into A: (Ax, Ay, Az, 1)ᵀ = M · (Bx, By, Bz, 1)ᵀ; several Matrix Sequence items are
applied in turn. A frame equal to A needs no item (identity). With M_A←emission and M_A←CT, a
point of the emission grid is in the CT frame at M_A←CT⁻¹ · M_A←emission · p.

Only **rigid** registrations are used: every matrix's Frame of Reference Transformation Matrix
Type (0070,030C) must be RIGID and its upper 3×3 a rotation (orthonormal, determinant +1,
within 10⁻³) with bottom row (0, 0, 0, 1). RIGID_SCALE and AFFINE matrices, and Deformable
Spatial Registration instances (1.2.840.10008.5.1.4.1.1.66.3), are refused by name: the dose
engine's density and VOIs would need a deformation field, which this pipeline does not apply.

How it is applied: instead of moving the CT (and the segmentation drawn on it), the emission
grid is expressed in the CT's frame (:func:`emission_grid_in_ct_frame`): same shape and voxel
size (a rigid map keeps them), affine T · A_emission, the CT's FrameOfReferenceUID. The
resampling of CT densities and segmentations then works as for a hybrid scanner (an oblique
result is resampled like any oblique grid), the VOI masks and the dose share the emission
grid's indices, and the RT Dose is written on that grid in the CT's frame, so viewers overlay it
on the CT.

The Spatial Registration is found in the study (every REG series), or named by its series UID.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydicom.dataset import Dataset

from services.dosimetry.imaging.dicomweb import _retrieve, list_series
from services.dosimetry.imaging.errors import CtMismatchError
from services.dosimetry.imaging.grid import Grid

__all__ = [
    "DEFORMABLE_SPATIAL_REGISTRATION_STORAGE",
    "SPATIAL_REGISTRATION_STORAGE",
    "Registration",
    "emission_grid_in_ct_frame",
    "fetch_registrations",
    "parse_registration",
    "segmentation_frame",
]

SPATIAL_REGISTRATION_STORAGE = "1.2.840.10008.5.1.4.1.1.66.1"
DEFORMABLE_SPATIAL_REGISTRATION_STORAGE = "1.2.840.10008.5.1.4.1.1.66.3"
_EXPRESSION = "FrameOfReferenceUID"
_RIGID_TOLERANCE = 1e-3


@dataclass(frozen=True)
class Registration:
    """One Spatial Registration: ``to_registered[B]`` is the matrix M_A←B of frame B."""

    sop_instance_uid: str
    registered_frame: str
    to_registered: dict[str, np.ndarray]

    def transform(self, source_frame: str, target_frame: str) -> np.ndarray | None:
        """The 4×4 matrix taking points of ``source_frame`` to ``target_frame``, None when this
        registration does not relate both."""
        if source_frame not in self.to_registered or target_frame not in self.to_registered:
            return None
        return np.asarray(np.linalg.inv(self.to_registered[target_frame]) @ self.to_registered[source_frame])


def _matrix(item: Dataset, what: str) -> np.ndarray:
    kind = str(item.get("FrameOfReferenceTransformationMatrixType", "")).upper()
    if kind != "RIGID":
        raise CtMismatchError(
            f"{what} is a {kind or 'untyped'} (non-rigid) registration (FrameOfReferenceTransformationMatrixType "
            "(0070,030C)): only RIGID registrations of the CT to the emission image are supported", _EXPRESSION)
    try:
        matrix = np.array([float(v) for v in item.FrameOfReferenceTransformationMatrix], dtype=np.float64)
        matrix = matrix.reshape(4, 4)
    except (AttributeError, ValueError) as exc:
        raise CtMismatchError(f"{what}: FrameOfReferenceTransformationMatrix (3006,00C6) is not 16 numbers",
                              _EXPRESSION) from exc
    rotation = matrix[:3, :3]
    if not (np.allclose(rotation @ rotation.T, np.eye(3), atol=_RIGID_TOLERANCE)
            and abs(float(np.linalg.det(rotation)) - 1.0) < _RIGID_TOLERANCE
            and np.allclose(matrix[3], [0.0, 0.0, 0.0, 1.0], atol=1e-9)):
        raise CtMismatchError(
            f"{what}: the RIGID FrameOfReferenceTransformationMatrix (3006,00C6) is not a rotation and translation "
            "(its 3×3 part is not orthonormal with determinant +1, or its last row is not 0 0 0 1)", _EXPRESSION)
    return matrix


def parse_registration(ds: Dataset) -> Registration:
    """A Spatial Registration instance as frame → matrix into its registered frame; a deformable
    or non-rigid one is refused by name."""
    uid = str(ds.get("SOPInstanceUID", "?"))
    sop_class = str(ds.get("SOPClassUID", ""))
    if sop_class == DEFORMABLE_SPATIAL_REGISTRATION_STORAGE or "DeformableRegistrationSequence" in ds:
        raise CtMismatchError(
            f"Deformable Spatial Registration {uid} relates the CT and the emission image: deformable registration "
            "is not supported, only a rigid Spatial Registration (1.2.840.10008.5.1.4.1.1.66.1)", _EXPRESSION)
    registered = str(ds.get("FrameOfReferenceUID", ""))
    to_registered: dict[str, np.ndarray] = {registered: np.eye(4)} if registered else {}
    for n, reg in enumerate(ds.get("RegistrationSequence") or [], start=1):
        frame = str(reg.get("FrameOfReferenceUID", ""))
        if not frame:
            continue  # an item registering single images, not a frame of reference
        matrix = np.eye(4)
        for m in (reg.get("MatrixRegistrationSequence") or [Dataset()])[0].get("MatrixSequence") or []:
            matrix = _matrix(m, f"Spatial Registration {uid} item {n}") @ matrix
        to_registered[frame] = matrix
    return Registration(uid, registered, to_registered)


def fetch_registrations(client: Any, study_uid: str, series_uid: str | None = None) -> list[Dataset]:
    """Every instance of the REG series of the study, or of the one series ``series_uid``."""
    series = list_series(client, study_uid, ("REG",))
    if series_uid:
        named = [s for s in series if s.series_uid == series_uid] or \
            [s for s in list_series(client, study_uid) if s.series_uid == series_uid]  # to name what it is
        if not named:
            raise CtMismatchError(f"registration series {series_uid} is not in study {study_uid}",
                                  "registrationSeriesUid")
        if named[0].modality != "REG":
            raise CtMismatchError(f"series {series_uid} is {named[0].modality}, not a Spatial Registration (REG)",
                                  "registrationSeriesUid")
        return _retrieve(client, study_uid, series_uid)
    return [ds for s in series if s.modality == "REG" for ds in _retrieve(client, study_uid, s.series_uid)]


def _angle_deg(matrix: np.ndarray) -> float:
    return float(np.degrees(np.arccos(np.clip((np.trace(matrix[:3, :3]) - 1.0) / 2.0, -1.0, 1.0))))


def emission_grid_in_ct_frame(client: Any, study_uid: str, emission: Grid, ct_frame_of_reference_uid: str,
                              registration_series_uid: str | None = None) -> tuple[Grid, list[str]]:
    """The emission grid in the CT's Frame of Reference, and the warnings to report.

    Same frame (or one of them unnamed): the emission grid itself. Different frames: through the
    rigid Spatial Registration of the study (or of ``registration_series_uid``) that relates
    them; none, or only a deformable or non-rigid one, is a :class:`CtMismatchError`. Only the
    CT's frame is needed, so the grid is known once the CT's first instance has arrived.
    """
    source, target = emission.frame_of_reference_uid, ct_frame_of_reference_uid
    if not source or not target or source == target:
        if registration_series_uid:
            return emission, [f"registration series {registration_series_uid} not used: the CT and the emission "
                              "image share a Frame of Reference (0020,0052)"]
        return emission, []
    datasets = fetch_registrations(client, study_uid, registration_series_uid)
    refusal: CtMismatchError | None = None
    for ds in datasets:
        try:
            registration = parse_registration(ds)
        except CtMismatchError as exc:
            refusal = refusal or exc
            continue
        transform = registration.transform(source, target)
        if transform is not None:
            mapped = Grid(emission.shape, transform @ emission.affine, target)
            shift = np.round(transform[:3, 3], 1).tolist()
            return mapped, [f"the CT (Frame of Reference {target}) is registered to the emission image ({source}) by "
                            f"Spatial Registration {registration.sop_instance_uid}: rigid, rotation "
                            f"{_angle_deg(transform):.1f}°, translation {shift} mm"]
    if refusal is not None:
        raise refusal
    raise CtMismatchError(
        f"the CT is in another Frame of Reference ({target}) than the activity series ({source}) "
        "(FrameOfReferenceUID (0020,0052)) and the study holds no Spatial Registration (REG) relating them: "
        "not a registered SPECT/CT or PET/CT; store the rigid registration of the CT to the emission image "
        "in the study", _EXPRESSION)


def segmentation_frame(ds: Dataset) -> str:
    """The Frame of Reference a SEG (its own) or RTSTRUCT (its ROIs') is drawn in, '' when unnamed."""
    if ds.get("FrameOfReferenceUID"):
        return str(ds.FrameOfReferenceUID)
    frames: Sequence[Dataset] = ds.get("StructureSetROISequence") or []
    return next((str(r.ReferencedFrameOfReferenceUID) for r in frames if r.get("ReferencedFrameOfReferenceUID")), "")
