"""RTSTRUCT instances for tests: ROIs drawn as contours on the planes of a CT series."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

__all__ = ["RTSTRUCT_STORAGE", "ellipse", "ellipsoid_contours", "rtstruct"]

RTSTRUCT_STORAGE = "1.2.840.10008.5.1.4.1.1.481.3"

#: One contour: (n, 2) x, y points in mm, and its ContourGeometricType.
Contour = tuple[np.ndarray, str]
#: An ROI's contours on the plane at z (mm): z → contours.
Drawing = Callable[[float], list[Contour]]


def ellipse(centre_xy: tuple[float, float], semi_xy: tuple[float, float], points: int = 96) -> np.ndarray:
    angles = np.linspace(0.0, 2.0 * np.pi, points, endpoint=False)
    return np.stack([centre_xy[0] + semi_xy[0] * np.cos(angles), centre_xy[1] + semi_xy[1] * np.sin(angles)], axis=1)


def ellipsoid_contours(centre_xyz: tuple[float, float, float], semi_axes_mm: tuple[float, float, float]) -> Drawing:
    """The cross-section of an ellipsoid on the plane at z (none where it is thinner than 10 %)."""
    def draw(z: float) -> list[Contour]:
        scale2 = 1.0 - ((z - centre_xyz[2]) / semi_axes_mm[2]) ** 2
        if scale2 <= 0.01:
            return []
        scale = float(np.sqrt(scale2))
        return [(ellipse(centre_xyz[:2], (semi_axes_mm[0] * scale, semi_axes_mm[1] * scale)), "CLOSED_PLANAR")]
    return draw


def _contour_item(points_xy: np.ndarray, kind: str, z: float, image: Dataset) -> Dataset:
    xyz = np.column_stack([points_xy, np.full(len(points_xy), z)])
    item = Dataset()
    item.ContourGeometricType = kind
    item.ContourData = [f"{v:.3f}" for v in xyz.ravel()]
    item.NumberOfContourPoints = len(xyz)
    image_ref = Dataset()
    image_ref.ReferencedSOPClassUID = image.SOPClassUID
    image_ref.ReferencedSOPInstanceUID = image.SOPInstanceUID
    item.ContourImageSequence = DicomSequence([image_ref])
    return item


def rtstruct(ct: Sequence[Dataset], rois: dict[str, Drawing], frame_of_reference_uid: str, key: str = "") -> Dataset:
    """An RTSTRUCT whose ROIs (name → drawing) are contoured on every plane of ``ct``."""
    planes = sorted(ct, key=lambda d: float(d.ImagePositionPatient[2]))
    first = planes[0]
    ds = Dataset()
    ds.SOPClassUID = RTSTRUCT_STORAGE
    ds.SOPInstanceUID = generate_uid(entropy_srcs=["rtstruct", str(first.StudyInstanceUID), key, *rois])
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = RTSTRUCT_STORAGE
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    for keyword in ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyInstanceUID", "StudyDate",
                    "StudyTime", "StudyID", "AccessionNumber", "ReferringPhysicianName"):
        setattr(ds, keyword, first.get(keyword, ""))
    ds.Modality = "RTSTRUCT"
    ds.SeriesInstanceUID = generate_uid(entropy_srcs=["rtstruct-series", str(first.StudyInstanceUID), key, *rois])
    ds.SeriesNumber = 30
    ds.StructureSetLabel = "VOIs"
    ds.FrameOfReferenceUID = frame_of_reference_uid
    frame = Dataset()
    frame.FrameOfReferenceUID = frame_of_reference_uid
    ds.ReferencedFrameOfReferenceSequence = DicomSequence([frame])
    set_items, contour_items, observations = [], [], []
    for number, (name, draw) in enumerate(rois.items(), start=1):
        roi = Dataset()
        roi.ROINumber = number
        roi.ROIName = name
        roi.ReferencedFrameOfReferenceUID = frame_of_reference_uid
        roi.ROIGenerationAlgorithm = "MANUAL"
        set_items.append(roi)
        contours = [_contour_item(points, kind, float(image.ImagePositionPatient[2]), image)
                    for image in planes for points, kind in draw(float(image.ImagePositionPatient[2]))]
        roi_contour = Dataset()
        roi_contour.ReferencedROINumber = number
        roi_contour.ROIDisplayColor = [255, 0, 0]
        roi_contour.ContourSequence = DicomSequence(contours)
        contour_items.append(roi_contour)
        observation = Dataset()
        observation.ObservationNumber = number
        observation.ReferencedROINumber = number
        observation.RTROIInterpretedType = "ORGAN"
        observation.ROIInterpreter = ""
        observations.append(observation)
    ds.StructureSetROISequence = DicomSequence(set_items)
    ds.ROIContourSequence = DicomSequence(contour_items)
    ds.RTROIObservationsSequence = DicomSequence(observations)
    return ds
