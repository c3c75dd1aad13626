"""The CT kept as stored values: the density it gives, the order of its slices, and its memory."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from services.dosimetry.imaging.ct import CtVolume, ct_volume
from services.dosimetry.imaging.resample import (
    density_on_grid,
    hu_to_density_g_per_ml,
    resample_scalar,
)
from services.dosimetry.imaging.volume import ScalarVolume
from tests.support.ct_series import body_hu, ct_series, target_grid


@pytest.mark.parametrize(("rescales", "signed"), [
    ([(1.0, -1024.0)], False),  # the usual unsigned CT
    ([(0.5, -1000.25)], True),  # signed, half-HU steps and a fractional intercept
    ([(1.0, -1024.0), (2.0, -2048.0), (1.0, -1000.0)], True),  # a rescale of its own every slice
])
def test_density_from_stored_values_is_the_table_on_the_hounsfield_units(
        rescales: list[tuple[float, float]], signed: bool) -> None:
    hu = body_hu((24, 40, 40))
    datasets = ct_series(hu, rescales, signed)
    ct = ct_volume(datasets)
    assert isinstance(ct, CtVolume) and np.issubdtype(ct.stored.dtype, np.integer)
    # the slices are back in patient order, each with its own rescale
    np.testing.assert_allclose(ct.grid.affine[:3, 3], [0.0, 0.0, 0.0])
    expected_hu = np.stack([
        np.clip(np.round((hu[k] - rescales[k % len(rescales)][1]) / rescales[k % len(rescales)][0]),
                *(lambda info: (info.min, info.max))(np.iinfo(ct.stored.dtype)))
        * rescales[k % len(rescales)][0] + rescales[k % len(rescales)][1] for k in range(hu.shape[0])])
    np.testing.assert_allclose(ct.values, expected_hu, rtol=0, atol=1e-3)
    target = target_grid((9, 15, 15), 4.0)
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
    datasets = ct_series(hu, [(1.0, -1024.0)], signed=False)
    del hu
    target = target_grid((58, 94, 94), 4.0)
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
