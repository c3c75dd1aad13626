"""A DICOM Part 10 instance in a plain encoding read into raw elements, as pydicom would.

A clinical CT arrives as 256-300 instances of ~0.5 MB. ``pydicom.dcmread`` spends ~0.2-0.25 ms
on each before its values are even asked for (its element generator, file-like reads, the file
meta group). :func:`read_plain_instance` walks the elements of the usual instance itself in about
half that, the Pixel Data's copy included, and gives the same :class:`~pydicom.dataset.Dataset`
of raw elements (values converted by pydicom only when asked for):

- the 128-byte preamble and ``DICM``, then the File Meta group in Explicit VR Little Endian
  (PS3.10 7.1);
- a dataset in Implicit or Explicit VR Little Endian (PS3.5 A.1, A.2), whose elements have
  defined lengths; a sequence of undefined length is read by pydicom's own sequence reader, as
  ``dcmread`` does.

Anything else gives ``None`` and the caller reads the instance with ``dcmread``: another transfer
syntax (big endian, deflated, encapsulated Pixel Data), a first element in the other VR encoding
than the transfer syntax says, an item or delimitation tag outside a sequence, an element of
undefined length that is not a sequence, a VR this reader does not know, a length past the end,
no preamble.
"""

from __future__ import annotations

import struct
from functools import lru_cache
from io import BytesIO

from pydicom.charset import convert_encodings, default_encoding
from pydicom.datadict import dictionary_VR
from pydicom.dataelem import (
    DataElement,
    RawDataElement,
    convert_raw_data_element,
    empty_value_for_VR,
)
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filereader import read_sequence
from pydicom.tag import BaseTag

from services.dosimetry.imaging.attributes import interned_tag

__all__ = ["read_plain_instance"]

_IMPLICIT_LE = "1.2.840.10008.1.2"
_EXPLICIT_LE = "1.2.840.10008.1.2.1"
_UNDEFINED = 0xFFFFFFFF
_CHARSET = 0x00080005
#: The group of the Item and delimitation tags (FFFE,E000/E00D/E0DD), PS3.5 7.5.
_DELIMITERS_GROUP = 0xFFFE
_TAG_VR_LENGTH = struct.Struct("<HH2sH")  # explicit VR with a 2-byte length
_TAG_LENGTH = struct.Struct("<HHI")  # implicit VR, or the 4-byte length after the reserved bytes
_LENGTH4 = struct.Struct("<I")
#: Explicit VRs whose length is 4 bytes after 2 reserved ones (PS3.5 7.1.2).
_LONG = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN", "UR", "UT", "UV"})
_SHORT = frozenset({"AE", "AS", "AT", "CS", "DA", "DS", "DT", "FD", "FL", "IS", "LO", "LT", "PN", "SH", "SL",
                    "SS", "ST", "TM", "UI", "UL", "US"})
#: The two bytes of each VR this reader knows, and its name.
_VR_NAMES = {vr.encode("ascii"): vr for vr in _LONG | _SHORT}


def _meta(blob: bytes) -> tuple[FileMetaDataset, str, int] | None:
    """The File Meta group, its TransferSyntaxUID and where the dataset starts."""
    if len(blob) < 132 or blob[128:132] != b"DICM":
        return None
    pos, elements = 132, {}
    while pos + 8 <= len(blob) and blob[pos:pos + 2] == b"\x02\x00":
        try:
            header = _header(blob, pos, implicit=False)
        except struct.error:  # a truncated element header
            return None
        if header is None:
            return None
        tag, vr, length, start = header
        if length == _UNDEFINED or start + length > len(blob):
            return None
        elements[tag] = _raw(blob, tag, vr, length, start, implicit=False)
        pos = start + length
    meta = FileMetaDataset(elements)
    syntax = elements.get(BaseTag(0x00020010))
    if syntax is None or not isinstance(syntax.value, bytes):
        return None
    return meta, syntax.value.rstrip(b"\0 ").decode("ascii", "replace"), pos


def _header(blob: bytes, pos: int, implicit: bool) -> tuple[BaseTag, str | None, int, int] | None:
    """The tag, VR (None in implicit VR), value length and value offset of the element at
    ``pos``, or None for a VR this reader does not know; ``struct.error`` when cut short."""
    if implicit:
        group, element, length = _TAG_LENGTH.unpack_from(blob, pos)
        return interned_tag(group << 16 | element), None, length, pos + 8
    group, element, vr_bytes, length = _TAG_VR_LENGTH.unpack_from(blob, pos)
    vr = _VR_NAMES.get(vr_bytes)  # the VRs the dataset's own walk knows (read_plain_instance)
    if vr is None:
        return None
    if vr in _LONG:
        (length,) = _LENGTH4.unpack_from(blob, pos + 8)
        return interned_tag(group << 16 | element), vr, length, pos + 12
    return interned_tag(group << 16 | element), vr, length, pos + 8


def _raw(blob: bytes, tag: BaseTag, vr: str | None, length: int, start: int, implicit: bool) -> RawDataElement:
    value = blob[start:start + length] if length else empty_value_for_VR(vr, raw=True)
    return RawDataElement(tag, vr, length, value, start, implicit, True)


def read_plain_instance(blob: bytes) -> Dataset | None:
    """``blob`` (a Part 10 instance) as pydicom's ``dcmread`` reads it, or None when it is not in
    one of the plain encodings this reader takes (see the module's note)."""
    meta = _meta(blob)
    if meta is None:
        return None
    file_meta, syntax, pos = meta
    if syntax not in (_IMPLICIT_LE, _EXPLICIT_LE):
        return None
    implicit = syntax == _IMPLICIT_LE
    if pos + 6 > len(blob):
        return None  # no dataset after the File Meta group
    # pydicom reads a dataset whose first element says otherwise in the other VR encoding
    # (filereader._is_implicit_vr): such a file is left to it
    looks_explicit = all(0x40 < byte < 0x5B for byte in blob[pos + 4:pos + 6])
    if looks_explicit == implicit:
        return None
    elements: dict[BaseTag, RawDataElement | DataElement] = {}
    encoding: str | list[str] = default_encoding
    end = len(blob)
    # the element walk inlined (the header and raw element of _header and _raw, without their
    # calls), the VR names and tags looked up rather than made: ~2/3 of the time per element of
    # the two helpers, the first cost per slice of a CT after the pixels' own
    unpack = _TAG_LENGTH.unpack_from if implicit else _TAG_VR_LENGTH.unpack_from
    vr_names, new_raw = _VR_NAMES, tuple.__new__
    try:
        while pos < end:
            if implicit:
                group, element, length = unpack(blob, pos)
                vr = None
                start = pos + 8
            else:
                group, element, vr_bytes, length = unpack(blob, pos)
                vr = vr_names.get(vr_bytes)
                if vr is None:
                    return None  # a VR this reader does not know
                if vr in _LONG:
                    (length,) = _LENGTH4.unpack_from(blob, pos + 8)
                    start = pos + 12
                else:
                    start = pos + 8
            number = group << 16 | element
            tag = interned_tag(number)  # shared with the look-ups (see interned_tag)
            if group == _DELIMITERS_GROUP:
                return None  # an item or delimiter at the top level: pydicom stops reading there
            if length == _UNDEFINED:
                if (vr or _dictionary_vr(tag)) != "SQ":
                    return None
                fp = BytesIO(blob)
                fp.seek(start)
                try:
                    sequence = read_sequence(fp, implicit, True, length, encoding)
                except Exception:  # a sequence pydicom cannot read: dcmread says why
                    return None
                elements[tag] = DataElement(tag, "SQ", sequence, start, is_undefined_length=True)
                pos = fp.tell()
                continue
            pos = start + length
            if pos > end:
                return None
            value = blob[start:pos] if length else empty_value_for_VR(vr, raw=True)
            # RawDataElement(tag, vr, length, value, start, implicit, True), made as its tuple
            elements[tag] = new_raw(RawDataElement, (tag, vr, length, value, start, implicit, True, True, False))
            if number == _CHARSET:
                encoding = list(_encodings(vr, value, implicit))
    except (struct.error, LookupError, ValueError, TypeError):
        # a truncated element header, or a value pydicom's own helpers refuse (a damaged
        # Specific Character Set): dcmread reads such a file, or says why it cannot
        return None
    ds = Dataset(elements)
    ds.file_meta = file_meta
    ds.set_original_encoding(implicit, True, encoding)
    return ds


@lru_cache(maxsize=64)
def _encodings(vr: str | None, value: bytes, implicit: bool) -> tuple[str, ...]:
    """The Python encodings of a raw Specific Character Set, as pydicom converts it: worked out
    once per value (every instance of a series carries the same), a fresh list for each dataset."""
    raw = RawDataElement(BaseTag(_CHARSET), vr, len(value), value, 0, implicit, True)
    return tuple(convert_encodings(convert_raw_data_element(raw).value))


def _dictionary_vr(tag: BaseTag) -> str:
    try:
        return str(dictionary_VR(tag))
    except KeyError:
        return ""
