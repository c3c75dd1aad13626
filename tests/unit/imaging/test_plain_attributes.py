"""plain_get gives what pydicom's ``ds.get`` gives, decoding plainly encoded raw elements itself
(without converting them) and leaving every other case to pydicom; the CT's stored-value table
gather equals the Hounsfield-unit table for every stored value."""

from __future__ import annotations

import io
import struct
import warnings
from typing import Any

import numpy as np
import pydicom
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.tag import Tag
from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

from services.dosimetry.imaging.attributes import plain_get
from services.dosimetry.imaging.ct import slice_header
from services.dosimetry.imaging.resample import hu_to_density_g_per_ml, slice_density

_SYNTAXES = [ExplicitVRLittleEndian, ImplicitVRLittleEndian, ExplicitVRBigEndian]

#: Decimal strings as scanners write them, and some pydicom must judge (no more than 16 characters).
_DS_FORMS = st.one_of(
    st.floats(-1e6, 1e6, allow_nan=False).map(lambda x: f"{x:.6g}"),
    st.floats(-1e6, 1e6, allow_nan=False).map(lambda x: f"{x:.4E}"),
    st.integers(-9999, 9999).map(lambda n: f" {n:+d}"),
    st.sampled_from(["1,5", "abc", "1.5.2", "--1", "1_0", "0x10", " ", "1.", ".5", "-0"]),
)
_IS_FORMS = st.one_of(st.integers(-99999, 99999).map(str), st.sampled_from(["12.0", "1e3", "+7", " 42 ", "x"]))


def _roundtrip(ds: Dataset, syntax: str) -> bytes:
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = syntax
    ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    ds.file_meta.MediaStorageSOPInstanceUID = "1.2.3.4"
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds.save_as(buffer, enforce_file_format=True,
                   implicit_vr=syntax == ImplicitVRLittleEndian, little_endian=syntax != ExplicitVRBigEndian)
    return buffer.getvalue()


def _same(fast: Any, slow: Any) -> bool:
    if isinstance(slow, (list, pydicom.multival.MultiValue)):
        return isinstance(fast, (list, pydicom.multival.MultiValue)) and len(fast) == len(slow) and all(_same(a, b) for a, b in zip(fast, slow, strict=True))
    if isinstance(slow, (int, float)) and not isinstance(slow, bool):
        return isinstance(fast, (int, float)) and not isinstance(fast, bool) and fast == slow
    if isinstance(slow, bytes):
        return fast == slow
    return fast == slow and (slow is None or str(fast) == str(slow))


_LONG_VRS = {"OB", "OW", "OF", "SQ", "UT", "UN", "UC", "UR", "OD", "OL", "OV"}


def _element(tag: int, vr: str, value: bytes, syntax: str) -> bytes:
    """One element as the syntax writes it (the test's own writer: pydicom refuses to set the
    ill-formed values this test needs)."""
    if len(value) % 2:
        value += b"\0" if vr in {"UI", "OB"} else b" "
    order = ">" if syntax == ExplicitVRBigEndian else "<"
    head = struct.pack(f"{order}HH", tag >> 16, tag & 0xFFFF)
    if syntax == ImplicitVRLittleEndian:
        return head + struct.pack("<I", len(value)) + value
    if vr in _LONG_VRS:
        return head + vr.encode() + b"\0\0" + struct.pack(f"{order}I", len(value)) + value
    return head + vr.encode() + struct.pack(f"{order}H", len(value)) + value


def _file(elements: list[tuple[int, str, bytes]], syntax: str) -> bytes:
    meta = b"".join(_element(t, vr, v, ExplicitVRLittleEndian) for t, vr, v in [
        (0x00020001, "OB", b"\0\1"), (0x00020002, "UI", b"1.2.840.10008.5.1.4.1.1.2"),
        (0x00020003, "UI", b"1.2.3.4"), (0x00020010, "UI", syntax.encode())])
    group_length = _element(0x00020000, "UL", struct.pack("<I", len(meta)), ExplicitVRLittleEndian)
    body = b"".join(_element(t, vr, v, syntax) for t, vr, v in sorted(elements))
    return b"\0" * 128 + b"DICM" + group_length + meta + body


@st.composite
def datasets(draw: st.DrawFn) -> tuple[bytes, list[str]]:
    syntax = draw(st.sampled_from(_SYNTAXES))
    order = ">" if syntax == ExplicitVRBigEndian else "<"
    elements = [
        (0x00200032, "DS", "\\".join(draw(st.lists(_DS_FORMS, min_size=1, max_size=3))).encode()),
        (0x00281053, "DS", draw(_DS_FORMS).encode()),
        (0x00200013, "IS", draw(_IS_FORMS).encode()),
        (0x00280010, "US", struct.pack(f"{order}H", draw(st.integers(0, 65535)))),
        (0x00280106, "US", struct.pack(f"{order}H", draw(st.integers(0, 65535)))),  # "US or SS": pydicom's
        (0x00189219, "SS", struct.pack(f"{order}h", draw(st.integers(-32768, 32767)))),
        (0x00080060, "CS", draw(st.sampled_from(["CT", "NM", "PT", "", "CT\\NM", " CT"])).encode()),
        (0x00080018, "UI", draw(st.sampled_from(["1.2.3", "1.2.840.10008.5.1.4.1.1.2", ""])).encode()),
        (0x00081030, "LO", draw(st.sampled_from(["LIVER SIRT", "L\u00e8ber", "A\\B", "x" * 64])).encode("latin-1")),
        (0x7FE00010, "OW", draw(st.binary(min_size=0, max_size=16))),
    ]
    if draw(st.booleans()):
        elements.append((0x00080005, "CS", b"ISO_IR 100"))
    keywords = ["ImagePositionPatient", "RescaleSlope", "InstanceNumber", "Rows", "SmallestImagePixelValue",
                "TagAngleSecondAxis", "Modality", "SOPInstanceUID", "StudyDescription", "PixelData",
                "RescaleIntercept", "Columns"]  # the last two absent
    return _file(elements, syntax), keywords


@settings(max_examples=300, deadline=None)
@given(datasets())
def test_plain_get_gives_what_pydicom_gives(case: tuple[bytes, list[str]]) -> None:
    blob, keywords = case
    fast_ds, slow_ds = pydicom.dcmread(io.BytesIO(blob)), pydicom.dcmread(io.BytesIO(blob))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for keyword in keywords:
            try:
                slow = slow_ds.get(keyword, "absent")
            except Exception as exc:  # pydicom refuses the value: so must plain_get
                with pytest.raises(type(exc)):
                    plain_get(fast_ds, keyword, "absent")
                continue
            fast = plain_get(fast_ds, keyword, "absent")
            assert _same(fast, slow), (keyword, fast, slow)


def _ct_slice(syntax: str = ExplicitVRLittleEndian) -> Dataset:
    ds = Dataset()
    ds.Modality = "CT"
    ds.SOPInstanceUID = "1.2.3.4.5"
    ds.ImagePositionPatient = [-249.5, -249.5, -365.25]
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.PixelSpacing = [0.9766, 0.9766]
    ds.RescaleSlope, ds.RescaleIntercept = 1, -1024
    ds.Rows = ds.Columns = 2
    ds.BitsAllocated, ds.BitsStored, ds.PixelRepresentation = 16, 12, 0
    ds.PixelData = b"\0" * 8
    return pydicom.dcmread(io.BytesIO(_roundtrip(ds, syntax)))


@pytest.mark.parametrize("syntax", _SYNTAXES)
def test_plain_values_are_read_without_converting_the_element(syntax: str) -> None:
    ds = _ct_slice(syntax)
    assert plain_get(ds, "ImagePositionPatient") == [-249.5, -249.5, -365.25]
    assert plain_get(ds, "RescaleIntercept") == -1024.0
    assert plain_get(ds, "Rows") == 2 and plain_get(ds, "BitsStored") == 12
    assert plain_get(ds, "Modality") == "CT"
    assert plain_get(ds, "PixelData") == b"\0" * 8
    for keyword in ("ImagePositionPatient", "RescaleIntercept", "Rows", "Modality", "PixelData"):
        assert isinstance(ds.get_item(Tag(keyword)), RawDataElement), keyword  # pydicom never asked


def test_what_plain_get_cannot_read_goes_to_pydicom() -> None:
    ds = pydicom.dcmread(io.BytesIO(_file([(0x00281053, "DS", b"1,5"), (0x00281052, "DS", b"-1024"),
                                          (0x00080060, "CS", b"CT\\NM")], ExplicitVRLittleEndian)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        slow = pydicom.dcmread(io.BytesIO(_file([(0x00281053, "DS", b"1,5")], ExplicitVRLittleEndian)))
        assert plain_get(ds, "RescaleSlope") == slow.get("RescaleSlope")
    assert not isinstance(ds.get_item(Tag("RescaleSlope")), RawDataElement)  # pydicom read it
    assert list(plain_get(ds, "Modality")) == ["CT", "NM"]  # two values of text: pydicom's
    ds.RescaleIntercept = -1000  # a value set here, not read from bytes
    assert plain_get(ds, "RescaleIntercept") == -1000
    assert plain_get(ds, "NoSuchKeyword", "default") == "default"
    assert plain_get(ds, "PatientName", "absent") == "absent"  # PN: not read here, and absent


def test_slice_header_keeps_the_geometry_raw() -> None:
    ds = _ct_slice()
    header = slice_header(ds, whole=False)
    tags = {Tag(k) for k in ("SOPInstanceUID", "ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing", "Rows",
                             "Columns")}
    assert set(header.keys()) == tags
    assert all(isinstance(header.get_item(tag), RawDataElement) for tag in tags)
    assert [float(v) for v in header.ImagePositionPatient] == [-249.5, -249.5, -365.25]
    assert "PixelData" not in header and "RescaleSlope" not in header


@pytest.mark.parametrize("dtype", ["<i2", "<u2", "|i1", "|u1", ">i2", ">u2"])
@pytest.mark.parametrize(("slope", "intercept"), [(1.0, -1024.0), (0.5, -1000.5), (2.0, 0.0)])
def test_stored_value_gather_equals_the_hounsfield_table(dtype: str, slope: float, intercept: float) -> None:
    kind = np.dtype(dtype)
    info = np.iinfo(kind)
    stored = np.arange(info.min, info.max + 1, dtype=np.int64).astype(kind).reshape(-1, 256)
    expected = hu_to_density_g_per_ml(stored.astype(np.float64) * slope + intercept).astype(np.float32)
    got = slice_density(stored, slope, intercept)
    assert got.dtype == np.float32 and got.shape == stored.shape
    np.testing.assert_array_equal(got, expected)


def test_values_read_again_are_the_same_and_the_callers_own() -> None:
    """A value met before (every slice of a series repeats its orientation) is looked up, not
    decoded again; a list handed out is the caller's, so changing it changes no later read."""
    from services.dosimetry.imaging import attributes

    first, second = _ct_slice(), _ct_slice(ExplicitVRBigEndian)
    orientation = plain_get(first, "ImageOrientationPatient")
    orientation[0] = 99.0  # the caller's own list
    assert plain_get(_ct_slice(), "ImageOrientationPatient") == [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    assert plain_get(second, "Rows") == plain_get(first, "Rows") == 2
    # the same two bytes in either byte order: two values, not the first one read
    for little, expected in ((True, 0x0201), (False, 0x0102), (True, 0x0201)):
        raw = RawDataElement(Tag("Columns"), "US", 2, b"\x01\x02", 0, False, little)
        assert plain_get(Dataset({raw.tag: raw}), "Columns") == expected
    for n in range(attributes._MAX_CACHED + 10):  # the look-up table stays bounded
        raw = RawDataElement(Tag("InstanceNumber"), "IS", 0, str(n).encode(), 0, False, True)
        ds = Dataset({raw.tag: raw})
        assert plain_get(ds, "InstanceNumber") == n
    assert len(attributes._DECODED) <= attributes._MAX_CACHED


def test_the_tags_of_read_instances_are_the_ones_looked_up() -> None:
    """One BaseTag a tag number, shared by the instances read and plain_get's look-ups (a dict
    finds its very key without BaseTag's Python ``==``); the table stays bounded."""
    from services.dosimetry.imaging import attributes
    from services.dosimetry.imaging.attributes import interned_tag
    from services.dosimetry.imaging.plain_instance import read_plain_instance

    blob = _roundtrip(_ct_slice(), ExplicitVRLittleEndian)
    first, second = read_plain_instance(blob), read_plain_instance(blob)
    assert first is not None and second is not None
    for a, b in zip(first.keys(), second.keys(), strict=True):
        assert a is b is interned_tag(int(a))
    assert interned_tag(0x00280010) == Tag("Rows") and plain_get(first, "Rows") == 2
    for n in range(attributes._MAX_TAGS + 10):
        assert interned_tag(0x00090000 + n) == 0x00090000 + n
    assert len(attributes._TAGS) <= attributes._MAX_TAGS
