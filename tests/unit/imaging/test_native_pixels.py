"""Uncompressed little-endian Pixel Data is read straight from its bytes: the same array as
pydicom's decoder (values, dtype, shape, unused bits) for every plain case, and pydicom decides
every other case."""

from __future__ import annotations

import io
import warnings
from collections import Counter
from typing import Any

import numpy as np
import pydicom
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydicom.data import get_testdata_file
from pydicom.datadict import keyword_for_tag, tag_for_keyword
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.pixels import pixel_array
from pydicom.tag import Tag
from pydicom.uid import (
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    RLELossless,
)

from services.dosimetry.imaging.errors import PixelDataError
from services.dosimetry.imaging.pixels import _native_pixels, decoded_pixels


def _dataset(raw: bytes, rows: int, cols: int, frames: int, allocated: int, stored: int, signed: int,
             syntax: str = ExplicitVRLittleEndian, samples: int = 1) -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = syntax
    ds.Rows, ds.Columns, ds.SamplesPerPixel = rows, cols, samples
    ds.PhotometricInterpretation = "MONOCHROME2" if samples == 1 else "RGB"
    if samples > 1:
        ds.PlanarConfiguration = 0
    if frames > 1:
        ds.NumberOfFrames = frames
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = allocated, stored, stored - 1, signed
    ds.PixelData = raw
    return ds


@st.composite
def plain_images(draw: st.DrawFn) -> Dataset:
    allocated = draw(st.sampled_from([8, 16, 32]))
    stored = draw(st.integers(1, allocated))
    rows, cols, frames = draw(st.integers(1, 7)), draw(st.integers(1, 7)), draw(st.integers(1, 3))
    n = rows * cols * frames * allocated // 8
    raw = draw(st.binary(min_size=n, max_size=n))
    if len(raw) % 2:
        raw += b"\0"  # the even-length pad of an odd pixel count
    syntax = draw(st.sampled_from([ExplicitVRLittleEndian, ImplicitVRLittleEndian]))
    return _dataset(raw, rows, cols, frames, allocated, stored, draw(st.integers(0, 1)), syntax)


@settings(max_examples=300, deadline=None)
@given(plain_images())
def test_the_direct_reading_is_pydicoms_array(ds: Dataset) -> None:
    native = _native_pixels(ds)
    assert native is not None, "a plain uncompressed image must take the direct reading"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reference = pixel_array(ds)
    assert native.dtype == reference.dtype and native.shape == reference.shape
    np.testing.assert_array_equal(native, reference)
    assert native.flags.writeable
    native.flat[0] = 0  # the caller's own array: the instance's bytes do not change
    assert pixel_array(ds).flat[0] == reference.flat[0]


def test_a_view_is_given_only_when_asked_and_never_written_through() -> None:
    ds = _dataset(bytes(range(8)), 2, 2, 1, 16, 16, 0)
    view = decoded_pixels(ds, "test", copy=False)
    assert not view.flags.writeable and np.shares_memory(view, np.frombuffer(ds.PixelData, dtype="<u2"))
    own = decoded_pixels(ds, "test")
    assert own.flags.writeable and not np.shares_memory(own, np.frombuffer(ds.PixelData, dtype="<u2"))
    np.testing.assert_array_equal(view, own)
    shifted = decoded_pixels(_dataset(bytes(range(8)), 2, 2, 1, 16, 12, 0), "test", copy=False)
    assert shifted.flags.writeable  # unused bits cleared: a new array in any case


@pytest.mark.parametrize(("signed", "raw", "expected"), [
    (0, (0xF123).to_bytes(2, "little"), 0x123),  # unused high bits set: cleared
    (1, (0x0800).to_bytes(2, "little"), -2048),  # bit 11 set in a 12-bit signed value: negative
    (1, (0x07FF).to_bytes(2, "little"), 2047),
    (1, (0xF7FF).to_bytes(2, "little"), 2047),  # garbage above bit 11 ignored
])
def test_unused_high_bits_are_shifted_out(signed: int, raw: bytes, expected: int) -> None:
    ds = _dataset(raw, 1, 1, 1, 16, 12, signed)
    assert int(decoded_pixels(ds, "test")[0, 0]) == expected


@pytest.mark.parametrize("case", ["big endian", "RLE", "colour", "one bit", "short", "long", "no syntax"])
def test_other_cases_are_left_to_pydicom(case: str) -> None:
    raw = bytes(range(8))
    kwargs: dict[str, object] = {}
    if case == "big endian":
        kwargs["syntax"] = ExplicitVRBigEndian
    elif case == "RLE":
        kwargs["syntax"] = RLELossless
    ds = _dataset(raw, 2, 2, 1, 16, 16, 0, **kwargs)  # type: ignore[arg-type]
    if case == "colour":
        ds = _dataset(bytes(12), 2, 2, 1, 8, 8, 0, samples=3)
    elif case == "one bit":
        ds.BitsAllocated = ds.BitsStored = 1
    elif case == "short":
        ds.PixelData = raw[:6]
    elif case == "long":
        ds.PixelData = raw + bytes(4)
    elif case == "no syntax":
        del ds.file_meta.TransferSyntaxUID
    assert _native_pixels(ds) is None


def test_a_truncated_slice_is_still_named() -> None:
    ds = _dataset(bytes(6), 2, 2, 1, 16, 16, 0)
    with pytest.raises(PixelDataError) as err:
        decoded_pixels(ds, "CT instance 1.2.3")
    assert "CT instance 1.2.3" in err.value.message and err.value.expression == "PixelData"


@pytest.mark.parametrize("name", ["CT_small.dcm", "MR_small.dcm", "MR_small_implicit.dcm",
                                  "rtdose.dcm", "rtdose_1frame.dcm", "liver_1frame.dcm",
                                  "SC_rgb_small_odd.dcm", "SC_ybr_full_422_uncompressed.dcm", "examples_palette.dcm",
                                  "MR_small_bigendian.dcm", "image_dfl.dcm"])
def test_files_nobody_here_wrote_read_as_pydicom_reads_them(name: str) -> None:
    path = get_testdata_file(name)
    if path is None:
        pytest.skip(f"pydicom does not ship {name}")
    ds = pydicom.dcmread(path)
    np.testing.assert_array_equal(decoded_pixels(ds, name), pixel_array(ds))
    assert decoded_pixels(ds, name).dtype == pixel_array(ds).dtype


class _CountingDataset(Dataset):
    """A Dataset that counts the reads of each element by keyword: ``ds.Rows`` and
    ``ds.get("Rows")`` both reach :meth:`Dataset.__getattr__` (pydicom 3), present or not, and
    :func:`~services.dosimetry.imaging.attributes.plain_get` asks :meth:`Dataset.get_item`."""

    def __getattr__(self, name: str) -> object:
        if tag_for_keyword(name) is not None:
            self.__dict__.setdefault("reads", Counter())[name] += 1
        return super().__getattr__(name)

    def get_item(self, key: Any, *, keep_deferred: bool = False) -> Any:
        keyword = keyword_for_tag(Tag(key)) if not isinstance(key, slice) else ""
        if keyword:
            self.__dict__.setdefault("reads", Counter())[keyword] += 1
        return super().get_item(key, keep_deferred=keep_deferred)


#: The Image Pixel attributes (PS3.3 C.7.6.3) that both the size bound and the direct reading need.
_IMAGE_PIXEL_KEYWORDS = ("Rows", "Columns", "NumberOfFrames", "SamplesPerPixel", "BitsAllocated", "BitsStored",
                         "PixelRepresentation")


@pytest.mark.parametrize("frames", [1, 3])
def test_each_image_pixel_attribute_is_read_once_a_slice(frames: int) -> None:
    plain = _dataset(bytes(range(2 * 3 * frames * 2)), 2, 3, frames, 16, 12, 1)
    buffer = io.BytesIO()
    plain.save_as(buffer, implicit_vr=False, little_endian=True)
    read = pydicom.dcmread(io.BytesIO(buffer.getvalue()), force=True)  # raw elements, as from a PACS
    ds = _CountingDataset(read)
    ds.file_meta = plain.file_meta
    pixels = decoded_pixels(ds, "CT instance 1.2.3", copy=False)
    np.testing.assert_array_equal(pixels, decoded_pixels(plain, "CT instance 1.2.3"))
    reads = ds.__dict__["reads"]
    assert {keyword: reads[keyword] for keyword in _IMAGE_PIXEL_KEYWORDS} == dict.fromkeys(_IMAGE_PIXEL_KEYWORDS, 1)
