"""The CT's density on the emission grid read slice by slice as the CT arrives
(:func:`ct_density_on_grid`) against the stacked CT averaged whole (``density_on_grid(ct_volume)``)."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydicom.dataset import Dataset

from services.dosimetry.imaging.ct import ct_volume
from services.dosimetry.imaging.ct_density import ct_density_on_grid
from services.dosimetry.imaging.errors import CtMismatchError, GeometryError
from services.dosimetry.imaging.grid import Grid
from services.dosimetry.imaging.resample import density_on_grid, hu_to_density_g_per_ml
from tests.support.ct_series import AXIAL, CT_MM, FOR_UID, body_hu, ct_series, target_grid


def _stacked(datasets: list[Dataset], target: Grid) -> np.ndarray:
    return density_on_grid(ct_volume(datasets), target)


@pytest.mark.parametrize(("rescales", "signed"), [
    ([(1.0, -1024.0)], False),
    ([(0.5, -1000.25)], True),
    ([(1.0, -1024.0), (2.0, -2048.0), (1.0, -1000.0)], True),  # a rescale of its own every slice
])
def test_the_streamed_density_is_the_stacked_one(rescales: list[tuple[float, float]], signed: bool) -> None:
    datasets = ct_series(body_hu((24, 40, 40)), rescales, signed)
    target = target_grid((9, 15, 15), 4.0)
    streamed = ct_density_on_grid(iter(datasets), target, len(datasets))
    stacked = ct_volume(datasets)
    np.testing.assert_allclose(streamed.density, density_on_grid(stacked, target), rtol=0, atol=2e-6)
    np.testing.assert_allclose(streamed.grid.affine, stacked.grid.affine)
    assert streamed.grid.shape == stacked.grid.shape
    assert streamed.header.SOPInstanceUID == datasets[0].SOPInstanceUID  # the first to arrive names the study
    assert "PixelData" not in streamed.header
    assert streamed.series_uid == datasets[0].SeriesInstanceUID


@settings(max_examples=40, deadline=None)
@given(origin=st.tuples(*(st.floats(-20.0, 20.0) for _ in range(3))),
       spacing=st.tuples(st.floats(1.6, 7.0), st.floats(1.6, 7.0), st.floats(1.6, 7.0)),
       flips=st.tuples(st.booleans(), st.booleans(), st.booleans()),
       shape=st.tuples(st.integers(1, 12), st.integers(1, 14), st.integers(1, 14)),
       expected=st.sampled_from([0, 5, 24]))
def test_any_parallel_target_gets_the_stacked_density(origin: tuple[float, float, float],
                                                      spacing: tuple[float, float, float],
                                                      flips: tuple[bool, bool, bool],
                                                      shape: tuple[int, int, int], expected: int) -> None:
    """Any offset (inside, straddling, outside the CT), spacing and flip of each axis, and an
    instance count listed too low, exact or not at all."""
    datasets = ct_series(body_hu((24, 20, 20)), [(1.0, -1024.0)], signed=False)
    signs = [-1.0 if f else 1.0 for f in flips]
    affine = np.eye(4)
    affine[:3, 0] = [0.0, 0.0, signs[0] * spacing[0]]
    affine[:3, 1] = [0.0, signs[1] * spacing[1], 0.0]
    affine[:3, 2] = [signs[2] * spacing[2], 0.0, 0.0]
    affine[:3, 3] = origin
    target = Grid(shape, affine, FOR_UID)
    streamed = ct_density_on_grid(iter(datasets), target, expected)
    np.testing.assert_allclose(streamed.density, _stacked(datasets, target), rtol=0, atol=2e-6)


def test_a_ct_oblique_to_the_target_is_stacked_and_sampled() -> None:
    datasets = ct_series(body_hu((16, 24, 24)), [(1.0, -1024.0)], signed=False)
    c, s = np.cos(0.3), np.sin(0.3)
    target = Grid.from_dicom((5, 6, 6), np.array([2.0, 3.0, 4.0]), np.array([c, s, 0, -s, c, 0]), (4.0, 4.0),
                             np.array([0.0, 0.0, 4.0]), FOR_UID)
    streamed = ct_density_on_grid(datasets, target)
    np.testing.assert_array_equal(streamed.density, _stacked(datasets, target))


def test_streaming_keeps_no_ct_sized_array() -> None:
    """A 160 × 256 × 256 CT of 1.5 mm (2 bytes a voxel stored) onto a 6 mm grid: read and averaged
    with less than one byte per CT voxel at the peak, half of what the stacked CT alone holds."""
    shape = (160, 256, 256)
    hu = np.full(shape, 40.0)
    hu[:, :, :64] = -1000.0
    datasets = ct_series(hu, [(1.0, -1024.0)], signed=False)
    del hu
    target = target_grid((40, 64, 64), 6.0)
    tracemalloc.start()
    try:
        result = ct_density_on_grid(iter(datasets), target, len(datasets))
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    voxels = shape[0] * shape[1] * shape[2]
    assert peak < 1.0 * voxels, f"{peak / voxels:.2f} bytes per CT voxel at the peak"
    water = float(hu_to_density_g_per_ml(np.array([40.0]))[0])
    assert result.density[20, 30, 40] == pytest.approx(water, rel=1e-5)
    assert result.density[20, 30, 5] == pytest.approx(0.0012, rel=1e-3)


def _shift(datasets: list[Dataset], mm_per_slice: float) -> list[Dataset]:
    for ds in datasets:
        x, y, z = (float(v) for v in ds.ImagePositionPatient)
        ds.ImagePositionPatient = [x + mm_per_slice * round(z / CT_MM), y, z]
    return datasets


def test_a_sheared_stack_is_averaged_where_each_slice_lies() -> None:
    """Slices shifted 1.5 mm along x each (a gantry-tilted series stored as a sheared stack): a
    bright column of the image follows its slice's ImagePositionPatient, and the mass of the CT
    inside the target is kept."""
    hu = np.full((12, 16, 16), -1000.0)
    hu[:, :, 2] = 1000.0  # column 2 of every slice
    datasets = _shift(ct_series(hu, [(1.0, -1024.0)], signed=False), 1.5)
    # one target voxel per CT voxel (1.5 mm), wide enough in x to hold every shifted slice
    target = Grid.from_dicom((12, 16, 30), np.zeros(3), AXIAL, (CT_MM, CT_MM), np.array([0.0, 0.0, CT_MM]),
                             FOR_UID)
    density = ct_density_on_grid(iter(datasets), target).density
    bone = float(hu_to_density_g_per_ml(np.array([1000.0]))[0])
    for k in range(12):
        np.testing.assert_allclose(density[k, :, 2 + k], bone, rtol=1e-6)  # slice k lies k voxels along x
    ct_mass = ((hu_to_density_g_per_ml(hu).sum()) * CT_MM**3)
    inside = density.sum() * CT_MM**3 - 1.04 * CT_MM**3 * (density.size - hu.size)
    assert inside == pytest.approx(ct_mass, rel=1e-6)


def test_the_streamed_path_refuses_what_the_stacked_one_refuses() -> None:
    datasets = ct_series(body_hu((8, 10, 10)), [(1.0, -1024.0)], signed=False)
    target = target_grid((3, 4, 4), 4.0)
    uneven = [ds for ds in datasets if round(float(ds.ImagePositionPatient[2]) / CT_MM) != 4]
    with pytest.raises(GeometryError, match="missing") as streamed:
        ct_density_on_grid(iter(uneven), target)
    with pytest.raises(GeometryError) as stacked:
        ct_volume(uneven)
    assert str(streamed.value) == str(stacked.value)
    datasets[3].Modality = "MR"
    with pytest.raises(CtMismatchError, match="MR"):
        ct_density_on_grid(iter(datasets), target)
    with pytest.raises(CtMismatchError, match="no instances"):
        ct_density_on_grid(iter([]), target)
    datasets[3].Modality = "CT"
    datasets[5].Rows = 12
    with pytest.raises(GeometryError, match="Rows"):
        ct_density_on_grid(iter(datasets), target)
