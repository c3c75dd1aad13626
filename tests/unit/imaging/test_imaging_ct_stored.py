"""The CT kept as stored values: the density it gives, the order of its slices, and its memory."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from services.dosimetry.imaging.ct import CtVolume, ct_volume
from services.dosimetry.imaging.grid import Grid
from services.dosimetry.imaging.resample import (
    density_on_grid,
    hu_to_density_g_per_ml,
    resample_scalar,
)
from services.dosimetry.imaging.volume import ScalarVolume

AXIAL = np.array([1.0, 0, 0, 0, 1, 0])
FOR_UID = "1.2.826.0.1.3680043.8.498.1"
CT_MM = 1.5


def _ct_series(hu: np.ndarray, rescales: list[tuple[float, float]], signed: bool,
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


def _body_hu(shape: tuple[int, int, int], seed: int = 1) -> np.ndarray:
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


def _target(shape: tuple[int, int, int], spacing: float) -> Grid:
    """A coarser emission-like grid whose voxels straddle the CT's (offset by a third of a voxel)."""
    return Grid.from_dicom(shape, np.array([1.0, -2.0, 0.5]), AXIAL, (spacing, spacing),
                           np.array([0.0, 0.0, spacing]), FOR_UID)


@pytest.mark.parametrize(("rescales", "signed"), [
    ([(1.0, -1024.0)], False),  # the usual unsigned CT
    ([(0.5, -1000.25)], True),  # signed, half-HU steps and a fractional intercept
    ([(1.0, -1024.0), (2.0, -2048.0), (1.0, -1000.0)], True),  # a rescale of its own every slice
])
def test_density_from_stored_values_is_the_table_on_the_hounsfield_units(
        rescales: list[tuple[float, float]], signed: bool) -> None:
    hu = _body_hu((24, 40, 40))
    datasets = _ct_series(hu, rescales, signed)
    ct = ct_volume(datasets)
    assert isinstance(ct, CtVolume) and np.issubdtype(ct.stored.dtype, np.integer)
    # the slices are back in patient order, each with its own rescale
    np.testing.assert_allclose(ct.grid.affine[:3, 3], [0.0, 0.0, 0.0])
    expected_hu = np.stack([
        np.clip(np.round((hu[k] - rescales[k % len(rescales)][1]) / rescales[k % len(rescales)][0]),
                *(lambda info: (info.min, info.max))(np.iinfo(ct.stored.dtype)))
        * rescales[k % len(rescales)][0] + rescales[k % len(rescales)][1] for k in range(hu.shape[0])])
    np.testing.assert_allclose(ct.values, expected_hu, rtol=0, atol=1e-3)
    target = _target((9, 15, 15), 4.0)
    # the reference: the table in float64 on every CT voxel's HU, then the same box average
    reference = resample_scalar(ScalarVolume(hu_to_density_g_per_ml(expected_hu), ct.grid, "g/mL"), target,
                                cval=1.04)
    density = density_on_grid(ct, target)
    np.testing.assert_allclose(density, reference, rtol=0, atol=2e-6)
    # and the same as the density of the CT in HU (the path a float CT takes)
    np.testing.assert_allclose(density, density_on_grid(ScalarVolume(ct.values, ct.grid, "HU"), target),
                               rtol=0, atol=2e-6)


def test_density_of_a_ct_makes_no_ct_sized_float_array() -> None:
    """A 160 × 256 × 256 CT: its stored values are 2 bytes a voxel; decoding it and averaging its
    density onto an emission grid must stay under 4 bytes a voxel in all (a float32 copy of the
    CT alone would be 4, a float64 one 8)."""
    shape = (160, 256, 256)
    hu = np.full(shape, 40.0)
    hu[:, :, :64] = -1000.0
    datasets = _ct_series(hu, [(1.0, -1024.0)], signed=False)
    del hu
    target = _target((58, 94, 94), 4.0)
    tracemalloc.start()
    try:
        ct = ct_volume(datasets)
        density = density_on_grid(ct, target)
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    voxels = shape[0] * shape[1] * shape[2]
    assert peak < 4 * voxels, f"{peak / voxels:.2f} bytes per CT voxel at the peak"
    water = float(hu_to_density_g_per_ml(np.array([40.0]))[0])
    assert density[20, 40, 60] == pytest.approx(water, rel=1e-5)
    assert density[20, 40, 5] == pytest.approx(0.0012, rel=1e-3)
