"""Per-slice CT series for the imaging tests: a body of known CT numbers stored with any rescale,
sent in a shuffled order as a PACS may send them, and a coarser emission-like grid over it."""

from __future__ import annotations

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from services.dosimetry.imaging.grid import Grid

AXIAL = np.array([1.0, 0, 0, 0, 1, 0])
FOR_UID = "1.2.826.0.1.3680043.8.498.1"
CT_MM = 1.5


def ct_series(hu: np.ndarray, rescales: list[tuple[float, float]], signed: bool,
               seed: int = 3) -> list[Dataset]:
    """Per-slice CT instances of ``hu`` (slices, rows, columns) stored as (HU − intercept) / slope,
    slice k with ``rescales[k % len(rescales)]``, in a shuffled order (as a PACS may send them)."""
    series = generate_uid()
    kind = np.int16 if signed else np.uint16
    out = []
    for k in range(hu.shape[0]):
        slope, intercept = rescales[k % len(rescales)]
        info = np.iinfo(kind)
        stored = np.clip(np.round((hu[k] - intercept) / slope), info.min, info.max).astype(kind)
        ds = Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
        ds.SOPInstanceUID = generate_uid()
        ds.SeriesInstanceUID = series
        ds.FrameOfReferenceUID = FOR_UID
        ds.Modality = "CT"
        ds.ImagePositionPatient = [0.0, 0.0, k * CT_MM]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.PixelSpacing = [CT_MM, CT_MM]
        ds.SliceThickness = CT_MM
        ds.Rows, ds.Columns = hu.shape[1], hu.shape[2]
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 16, 15
        ds.PixelRepresentation = int(signed)
        ds.RescaleSlope, ds.RescaleIntercept = f"{slope:g}", f"{intercept:g}"
        ds.PixelData = stored.tobytes()
        out.append(ds)
    order = np.random.default_rng(seed).permutation(len(out))
    return [out[i] for i in order]


def body_hu(shape: tuple[int, int, int], seed: int = 1) -> np.ndarray:
    """Air around a body of soft tissue with lung, fat, bone and metal, plus noise: CT numbers from
    below −1000 to above +3000, so the table's ends and every segment are read."""
    k, j, i = np.meshgrid(*(np.linspace(-1, 1, n) for n in shape), indexing="ij")
    hu = np.full(shape, -1000.0)
    body = j**2 + i**2 < 0.8
    hu[body] = 40.0
    hu[body & (np.abs(i + 0.4) < 0.2)] = -800.0  # lung
    hu[body & (np.abs(j - 0.6) < 0.1)] = -100.0  # fat
    hu[body & (j**2 + (i - 0.4) ** 2 < 0.02)] = 1200.0  # bone
    hu[body & (np.abs(k) < 0.1) & (np.abs(i) < 0.05)] = 3500.0  # metal
    hu += np.random.default_rng(seed).normal(0.0, 30.0, shape)
    hu[0, 0, 0] = -1030.0  # below the table's first point
    return hu


def target_grid(shape: tuple[int, int, int], spacing: float) -> Grid:
    """A coarser emission-like grid whose voxels straddle the CT's (offset by a third of a voxel)."""
    return Grid.from_dicom(shape, np.array([1.0, -2.0, 0.5]), AXIAL, (spacing, spacing),
                           np.array([0.0, 0.0, spacing]), FOR_UID)
