"""The per-slice CT reduction's pieces against plain references: the in-plane average (sparse rows,
then dense column blocks) against the dense product of its weights, and the density table that
shifts out the bits above Bits Stored against the decoder's shift."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from pydicom import dcmread
from pydicom.filebase import DicomBytesIO

from services.dosimetry.imaging.ct import ct_volume
from services.dosimetry.imaging.ct_density import ct_density_on_grid
from services.dosimetry.imaging.pixels import decoded_pixels
from services.dosimetry.imaging.resample import (
    PlaneAverage,
    density_on_grid,
    overlap_weights,
    slice_density,
)
from tests.support.ct_series import body_hu, ct_series, target_grid


@settings(max_examples=60, deadline=None)
@given(source=st.tuples(st.integers(1, 40), st.integers(1, 400)),
       target=st.tuples(st.integers(1, 30), st.integers(1, 90)),
       scales=st.tuples(st.floats(0.3, 9.0), st.floats(0.3, 9.0)),
       flips=st.tuples(st.booleans(), st.booleans()),
       offsets=st.tuples(st.floats(-50.0, 300.0), st.floats(-50.0, 300.0)),
       cval=st.floats(0.0, 2.0), seed=st.integers(0, 2**16))
# a 512-column CT slice onto a 4.2 × coarser grid (four blocks), and onto a finer one, flipped
@example(source=(16, 512), target=(4, 122), scales=(4.2, 4.2), flips=(False, False), offsets=(1.3, 1.6),
         cval=1.04, seed=1)
@example(source=(8, 300), target=(20, 90), scales=(0.4, 3.3), flips=(True, True), offsets=(7.5, 299.0),
         cval=0.0, seed=2)
def test_plane_average_is_the_dense_product_of_its_weights(
        source: tuple[int, int], target: tuple[int, int], scales: tuple[float, float],
        flips: tuple[bool, bool], offsets: tuple[float, float], cval: float, seed: int) -> None:
    """Any size (up to three column blocks and a partial one), a target coarser or finer than the
    source, flipped, straddling or outside it."""
    rows = (-scales[0] if flips[0] else scales[0], offsets[0])
    columns = (-scales[1] if flips[1] else scales[1], offsets[1])
    plane = np.random.default_rng(seed).uniform(0.0, 2.0, source).astype(np.float32)
    w_j = overlap_weights(target[0], source[0], *rows)
    w_i = overlap_weights(target[1], source[1], *columns)
    expected = w_j @ plane.astype(np.float64) @ w_i.T - cval * np.outer(w_j.sum(axis=1), w_i.sum(axis=1))
    average = PlaneAverage.between(*source, *target, rows, columns, cval)
    out = np.full(target[0] * target[1], np.nan, dtype=np.float32)
    got = average(plane, out=out)
    assert got is out and got.dtype == np.float32
    np.testing.assert_allclose(got.reshape(target), expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(average(plane), got)  # a new array when no out is given


def _shifted(codes: np.ndarray, bits: int) -> np.ndarray:
    shift = 8 * codes.dtype.itemsize - bits
    return np.right_shift(np.left_shift(codes, shift), shift)


@pytest.mark.parametrize("dtype", ["<i2", "<u2", "|i1", "|u1", "<i4", "<u4"])
def test_the_table_shifts_out_the_bits_above_bits_stored(dtype: str) -> None:
    """Every bit count below the type's width: values with their high bits set map as the decoded
    ones, and decoded values map alike (the shift is idempotent)."""
    kind = np.dtype(dtype)
    width = 8 * kind.itemsize
    info = np.iinfo(kind)
    rng = np.random.default_rng(width)
    codes = rng.integers(info.min, info.max, (64, 64), endpoint=True, dtype=np.int64).astype(kind)
    for bits in range(2, width):
        decoded = _shifted(codes, bits)
        if width <= 16:  # the raw codes really carry something above Bits Stored
            assert not np.array_equal(decoded, codes)
        expected = slice_density(decoded, 1.0, -1024.0)
        np.testing.assert_array_equal(slice_density(codes, 1.0, -1024.0, bits=bits), expected)
        np.testing.assert_array_equal(slice_density(decoded, 1.0, -1024.0, bits=bits), expected)
    unmasked = slice_density(codes, 1.0, -1024.0)
    np.testing.assert_array_equal(slice_density(codes, 1.0, -1024.0, bits=width), unmasked)
    np.testing.assert_array_equal(slice_density(codes, 1.0, -1024.0, bits=0), unmasked)


@pytest.mark.parametrize("dtype", ["<i2", "<u2", "<i4"])
def test_slice_density_writes_into_a_given_array(dtype: str) -> None:
    codes = np.arange(-500, 524, dtype=np.int64).astype(dtype).reshape(32, 32)
    out = np.full((32, 32), np.nan, dtype=np.float32)
    got = slice_density(codes, 0.5, -1000.0, out=out)
    assert got is out
    np.testing.assert_array_equal(out, slice_density(codes, 0.5, -1000.0))


def _with_high_bits(datasets: list, bits: int, seed: int = 5) -> list:
    """The instances stored with ``bits`` Bits Stored and noise in the bits above them (which a
    reader must ignore, PS3.5 8.1.1), each through its Part 10 bytes as a PACS sends it."""
    rng = np.random.default_rng(seed)
    out = []
    for ds in datasets:
        kind = np.dtype("<i2" if ds.PixelRepresentation else "<u2")
        values = np.frombuffer(ds.PixelData, dtype=kind)
        noise = rng.integers(0, 1 << (16 - bits), values.shape).astype(np.uint16) << bits
        ds.PixelData = (values.view("<u2") | noise).tobytes()
        ds.BitsStored, ds.HighBit = bits, bits - 1
        buffer = DicomBytesIO()
        ds.save_as(buffer, enforce_file_format=True)
        out.append(dcmread(DicomBytesIO(buffer.getvalue())))
    return out


@pytest.mark.parametrize("signed", [False, True])
def test_a_ct_with_noise_above_bits_stored_streams_to_the_stacked_density(signed: bool) -> None:
    """12 bits stored: the stored values fit (HU + 1024 for unsigned, HU for signed), the streamed
    path reads them unshifted through its table, the stacked one decodes them shifted."""
    hu = np.clip(body_hu((10, 24, 24)), -1024, 2000)
    datasets = _with_high_bits(ct_series(hu, [(1.0, 0.0 if signed else -1024.0)], signed), 12)
    stored = decoded_pixels(datasets[0], "CT")
    assert stored.min() >= (-2048 if signed else 0) and stored.max() < (2048 if signed else 4096)
    raw = decoded_pixels(datasets[0], "CT", masked=False)
    assert not np.array_equal(raw, stored)  # the noise is there to be ignored
    target = target_grid((4, 7, 7), 4.0)
    streamed = ct_density_on_grid(iter(datasets), target, len(datasets))
    np.testing.assert_allclose(streamed.density, density_on_grid(ct_volume(datasets), target), rtol=0, atol=2e-6)
