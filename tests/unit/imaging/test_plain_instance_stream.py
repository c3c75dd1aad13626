"""A streamed series read without dicomweb-client's and pydicom's readers: the multipart bodies
split here equal the parts that were sent, however the answer is cut into chunks, and an
instance read by read_plain_instance equals what pydicom's dcmread reads, element by element;
anything outside the plain encodings is left to dcmread (None)."""

from __future__ import annotations

import glob
import io
import itertools
import os
import warnings
from typing import Any

import pydicom
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import (
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    generate_uid,
)

from services.dosimetry.imaging.multipart import boundary_of, multipart_bodies
from services.dosimetry.imaging.plain_instance import read_plain_instance

# -- multipart ---------------------------------------------------------------------------------


def _message(parts: list[bytes], boundary: bytes, preamble: bytes = b"", headers: bool = True) -> bytes:
    out = [preamble]
    for i, part in enumerate(parts):
        out.append((b"\r\n" if i or preamble else b"") + b"--" + boundary + b"\r\n")
        if headers:
            out.append(b'Content-Type: application/dicom; transfer-syntax=1.2.840.10008.1.2.1\r\n')
            out.append(f"Content-Length: {len(part)}\r\n".encode())
        out.append(b"\r\n" + part)
    out.append(b"\r\n--" + boundary + b"--\r\n")
    return b"".join(out)


def _chunks(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({0, len(data), *(c % (len(data) + 1) for c in cuts)})
    return [data[a:b] for a, b in itertools.pairwise(points)]


@settings(max_examples=200, deadline=None)
@given(parts=st.lists(st.binary(max_size=300), min_size=1, max_size=6),
       cuts=st.lists(st.integers(0, 10_000), max_size=40),
       preamble=st.sampled_from([b"", b"a preamble line"]),
       headers=st.booleans())
def test_the_bodies_are_the_parts_sent_however_the_answer_is_cut(parts: list[bytes], cuts: list[int],
                                                                  preamble: bytes, headers: bool) -> None:
    boundary = b"netliver-f0e1d2c3b4a5"
    # a part may hold CR, LF and dashes, but not the delimiter (the sender chooses the boundary so)
    parts = [p.replace(b"--" + boundary, b"") for p in parts]
    message = _message(parts, boundary, preamble, headers)
    assert list(multipart_bodies(_chunks(message, cuts), boundary)) == parts


def test_a_body_is_given_as_soon_as_its_delimiter_has_arrived() -> None:
    boundary = b"b0undary"
    message = _message([b"first", b"second"], boundary)
    cut = message.index(b"second") - 2  # the first part's closing delimiter has come, not the second part
    seen: list[bytes] = []

    def chunks() -> Any:
        yield message[:cut]
        assert seen == [b"first"]  # given before the rest is read
        yield message[cut:]

    for body in multipart_bodies(chunks(), boundary):
        seen.append(body)
    assert seen == [b"first", b"second"]


@pytest.mark.parametrize("cut", [10, 40, -30, -3])
def test_an_answer_cut_short_raises_instead_of_losing_parts(cut: int) -> None:
    message = _message([b"x" * 20, b"y" * 20], b"bnd")
    with pytest.raises(ValueError, match="truncated"):
        list(multipart_bodies([message[:cut]], b"bnd"))


@pytest.mark.parametrize(("content_type", "boundary"), [
    ('multipart/related; type="application/dicom"; boundary=abc', b"abc"),
    ('Multipart/Related; boundary="a b:c"; type="application/dicom"', b"a b:c"),
    ("multipart/related; type=application/dicom", None),
    ("application/dicom", None),
])
def test_the_boundary_is_read_from_the_content_type(content_type: str, boundary: bytes | None) -> None:
    assert boundary_of(content_type) == boundary


# -- instances ---------------------------------------------------------------------------------


def _written(ds: Dataset, syntax: str) -> bytes:
    if hasattr(ds, "preamble"):  # a file read from disk: its elements in a new dataset, any encoding then
        copied = Dataset()
        for element in ds:
            copied.add(element)
        ds = copied
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = syntax
    ds.file_meta.MediaStorageSOPClassUID = ds.get("SOPClassUID", "1.2.840.10008.5.1.4.1.1.2")
    ds.file_meta.MediaStorageSOPInstanceUID = ds.get("SOPInstanceUID", "1.2.3")
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True, implicit_vr=syntax == ImplicitVRLittleEndian,
               little_endian=syntax != ExplicitVRBigEndian)
    return buffer.getvalue()


def _same_values(fast: Dataset, slow: Dataset) -> None:
    tags = list(slow.keys())
    assert list(fast.keys()) == tags
    for tag in tags:
        try:
            b = slow[tag]
        except Exception as exc:  # pydicom cannot convert this (damaged) value: nor from the fast read
            with pytest.raises(type(exc)):
                fast[tag]
            continue
        a = fast[tag]
        assert a.VR == b.VR, tag
        if b.VR == "SQ":
            assert len(a.value) == len(b.value), tag
            for x, y in zip(a.value, b.value, strict=True):
                _same_values(x, y)
        else:
            assert a.value == b.value, tag


def _check(blob: bytes) -> Dataset | None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fast = read_plain_instance(blob)
        if fast is not None:
            slow = pydicom.dcmread(io.BytesIO(blob))
            _same_values(fast, slow)
            assert fast.file_meta == slow.file_meta
            assert fast.original_encoding == slow.original_encoding
            assert fast.original_character_set == slow.original_character_set
    return fast


@st.composite
def instances(draw: st.DrawFn) -> tuple[Dataset, str]:
    ds = Dataset()
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    ds.SOPInstanceUID = generate_uid(entropy_srcs=[str(draw(st.integers(0, 10**6)))])
    ds.Modality = "CT"
    if draw(st.booleans()):
        ds.SpecificCharacterSet = draw(st.sampled_from(["ISO_IR 100", "ISO_IR 192", "ISO_IR 6"]))
        ds.PatientName = draw(st.sampled_from(["Müller^Jürgen", "Dupont^Zoë", "Plain^Name"]))
    ds.ImagePositionPatient = draw(st.lists(st.floats(-500, 500, allow_nan=False).map(lambda x: round(x, 3)),
                                            min_size=3, max_size=3))
    ds.RescaleIntercept = draw(st.sampled_from([-1024, -1000.5, 0]))
    ds.InstanceNumber = draw(st.integers(1, 999))
    ds.StudyDescription = draw(st.sampled_from(["", "LIVER SIRT"]))  # an empty value too
    for name in draw(st.lists(st.sampled_from(["ReferencedImageSequence", "SourceImageSequence",
                                               "ProcedureCodeSequence"]), unique=True, max_size=3)):
        item = Dataset()
        item.ReferencedSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
        item.ReferencedSOPInstanceUID = "1.2.3.4"
        if draw(st.booleans()):  # nested
            inner = Dataset()
            inner.CodeValue, inner.CodingSchemeDesignator = "113691", "DCM"
            item.PurposeOfReferenceCodeSequence = Sequence([inner])
            item.PurposeOfReferenceCodeSequence.is_undefined_length = draw(st.booleans())
        setattr(ds, name, Sequence([item] * draw(st.integers(0, 2))))
        ds[name].is_undefined_length = draw(st.booleans())
    if draw(st.booleans()):
        ds.add_new(0x00091010, "LO", "NETLIVER")  # a private creator and element
        ds.add_new(0x00091001, "DS", "1.5")
    ds.Rows = ds.Columns = 2
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.PixelData = draw(st.binary(min_size=8, max_size=8))
    return ds, draw(st.sampled_from([ExplicitVRLittleEndian, ImplicitVRLittleEndian]))


@settings(max_examples=200, deadline=None)
@given(instances())
def test_a_plain_instance_is_read_as_dcmread_reads_it(case: tuple[Dataset, str]) -> None:
    ds, syntax = case
    blob = _written(ds, syntax)
    fast = _check(blob)
    assert fast is not None  # the plain case is read here, not left to pydicom
    assert fast.PixelData == ds.PixelData and fast.file_meta.TransferSyntaxUID == syntax


@settings(max_examples=300, deadline=None)
@given(case=instances(), cut=st.integers(0, 2000), flip=st.integers(0, 2000), other=st.integers(0, 2000))
def test_a_damaged_instance_is_left_to_dcmread_or_read_as_it_reads_it(case: tuple[Dataset, str], cut: int,
                                                                       flip: int, other: int) -> None:
    blob = bytearray(_written(*case))
    blob[flip % len(blob)] ^= 0xFF
    blob[other % len(blob)] ^= 0x55  # e.g. a character set name no codec knows
    _check(bytes(blob[: max(0, len(blob) - cut)]))  # never raises; None, or what dcmread reads


def test_other_encodings_are_left_to_dcmread() -> None:
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    assert _check(_written(ds, ExplicitVRBigEndian)) is None
    assert _check(_written(ds, ExplicitVRLittleEndian)) is not None
    assert read_plain_instance(_written(ds, ExplicitVRLittleEndian)[132:]) is None  # no preamble


def test_pydicoms_own_files_are_read_as_dcmread_reads_them() -> None:
    folder = os.path.dirname(get_testdata_file("CT_small.dcm"))
    read = 0
    for path in sorted(glob.glob(os.path.join(folder, "*.dcm"))):
        with open(path, "rb") as fh:
            blob = fh.read()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                pydicom.dcmread(io.BytesIO(blob))
        except Exception:
            continue  # files pydicom itself refuses without force
        read += _check(blob) is not None
    assert read >= 15  # the little-endian uncompressed ones (22 in pydicom 3.0)


def test_an_instance_cut_inside_its_file_meta_group_is_left_to_dcmread() -> None:
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    blob = _written(ds, ExplicitVRLittleEndian)
    meta_end = 132 + 12 + int.from_bytes(blob[140:144], "little")
    for cut in range(132, meta_end + 8):
        assert read_plain_instance(blob[:cut]) is None, cut  # never raises, whatever the cut


@pytest.mark.parametrize("syntax", [ImplicitVRLittleEndian, ExplicitVRLittleEndian])
def test_a_delimiter_outside_a_sequence_is_left_to_dcmread(syntax: str) -> None:
    """pydicom stops reading a dataset at an item delimitation tag (FFFE,E00D) found at its top
    level; such a file is dcmread's to read, not read further here."""
    ds = Dataset()
    ds.Modality, ds.InstanceNumber = "CT", 1
    blob = _written(ds, syntax)
    at = blob.index(b"\x20\x00\x13\x00")  # InstanceNumber (0020,0013), after Modality
    delimiter = b"\xfe\xff\x0d\xe0" + b"\0\0\0\0"  # an item delimitation item (no VR in either encoding)
    damaged = blob[:at] + delimiter + blob[at:]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert "InstanceNumber" not in pydicom.dcmread(io.BytesIO(damaged))  # pydicom stopped
    assert read_plain_instance(damaged) is None
    assert _check(blob) is not None
