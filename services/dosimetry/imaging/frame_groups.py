"""What a SEG reader needs of each Per-frame Functional Groups item (PS3.3 C.7.6.16), read cheaply.

A clinical SEG has a few hundred to a few thousand items. pydicom turns each into datasets of
datasets on first access (~0.3 ms an item, most of it the Derivation Image Sequence nobody
reads here). When the sequence is still the encoded bytes pydicom read (explicit VR little
endian), :func:`frame_facts` walks them instead: each item's elements are listed by tag and
length, sequences skipped by their length (or walked to their delimiter, PS3.5 7.5), and only
the first item of Frame Content, Plane Position, Segment Identification and, when a frame has
them, Plane Orientation and Pixel Measures is looked into (a number string repeated in every
frame is parsed once).
Otherwise (the sequence was built in memory or already read, implicit VR, anything the walk does
not recognise) the same facts come from pydicom's datasets: both ways give equal facts.
"""

from __future__ import annotations

import contextlib
import math
import struct
from typing import Any, NamedTuple

from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

__all__ = ["FrameFacts", "frame_facts", "series_references_complete"]

PER_FRAME = 0x52009230  # PerFrameFunctionalGroupsSequence
FRAME_CONTENT = 0x00209111
PLANE_POSITION = 0x00209113
SEGMENT_IDENTIFICATION = 0x0062000A
PLANE_ORIENTATION = 0x00209116
PIXEL_MEASURES = 0x00289110
_DIMENSION_INDEX_VALUES = 0x00209157
_STACK_ID = 0x00209056
_IN_STACK_POSITION = 0x00209057
_IMAGE_POSITION = 0x00200032
_IMAGE_ORIENTATION = 0x00200037
_PIXEL_SPACING = 0x00280030
_SPACING_BETWEEN_SLICES = 0x00180088
_SEGMENT_NUMBER = 0x0062000B
_DERIVATION_IMAGE = 0x00089124
_SOURCE_IMAGE = 0x00082112
_REFERENCED_SOP_INSTANCE = 0x00081155
REFERENCED_SERIES = 0x00081115
_SERIES_INSTANCE = 0x0020000E
_REFERENCED_SOP = 0x00081199  # ReferencedSOPSequence
_REFERENCED_INSTANCE = 0x0008114A  # ReferencedInstanceSequence

_ITEM, _ITEM_END, _SEQUENCE_END = 0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD
_UNDEFINED = 0xFFFFFFFF
#: VRs whose explicit-VR length is 4 bytes after 2 reserved ones (PS3.5 7.1.2).
_LONG_VRS = frozenset({b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"})
_HEAD = struct.Struct("<HH2s")
_TAG_LENGTH = struct.Struct("<HHI")
_SHORT = struct.Struct("<H")
_LONG = struct.Struct("<I")


class FrameFacts(NamedTuple):
    """One frame: the tags of its functional groups; the number of DimensionIndexValues (None
    without a Frame Content item); whether StackID and InStackPositionNumber are there; its
    ImagePositionPatient (None when absent or not three numbers); its one ReferencedSegmentNumber
    (None when absent or several); whether every Source Image item of its Derivation Image items
    names its ReferencedSOPInstanceUID (the reference reader refuses the SEG otherwise); and the
    frame's own ImageOrientationPatient (Plane Orientation), PixelSpacing and SpacingBetweenSlices
    (Pixel Measures), each None when the frame does not give it and an empty tuple when its value
    is not finite numbers."""

    groups: frozenset[int]
    dimension_values: int | None
    stack: tuple[bool, bool]
    position: tuple[float, float, float] | None
    segment: int | None
    sources_named: bool
    orientation: tuple[float, ...] | None = None
    pixel_spacing: tuple[float, ...] | None = None
    between: tuple[float, ...] | None = None


class _Unreadable(Exception):
    """The bytes are not the encoding this walk reads."""


def _position(values: list[str] | None) -> tuple[float, float, float] | None:
    if values is None or len(values) != 3:
        return None
    try:
        x, y, z = (float(v) for v in values)
    except (TypeError, ValueError):
        return None
    return (x, y, z)


def _numbers(values: list[Any]) -> tuple[float, ...]:
    """Decimal strings as floats (as pydicom reads DS); empty when one is not a finite number."""
    try:
        out = tuple(float(v) for v in values)
    except (TypeError, ValueError):
        return ()
    return out if all(math.isfinite(v) for v in out) else ()


# -- from the encoded bytes --------------------------------------------------------------------

def _elements(buf: bytes, pos: int, end: int | None) -> tuple[dict[int, tuple[bytes, int, int | None]], int]:
    """The elements of one dataset (tag → VR, value start, value length or None if undefined)
    from ``pos`` to ``end``, or to its Item Delimitation Item when ``end`` is None."""
    found: dict[int, tuple[bytes, int, int | None]] = {}
    while end is None or pos < end:
        group, element, vr = _HEAD.unpack_from(buf, pos)
        tag = group << 16 | element
        if tag == _ITEM_END:
            if end is not None:
                raise _Unreadable
            return found, pos + 8
        if vr in _LONG_VRS:
            length, start = _LONG.unpack_from(buf, pos + 8)[0], pos + 12
        else:
            length, start = _SHORT.unpack_from(buf, pos + 6)[0], pos + 8
        if length == _UNDEFINED:
            if vr != b"SQ":
                raise _Unreadable
            found[tag] = (vr, start, None)
            pos = _sequence_end(buf, start)
        else:
            found[tag] = (vr, start, length)
            pos = start + length
    if pos != end:
        raise _Unreadable
    return found, pos


def _tag_at(buf: bytes, pos: int) -> tuple[int, int]:
    """The tag (group, element: two little-endian words) and the 4-byte length at ``pos``."""
    group, element, length = _TAG_LENGTH.unpack_from(buf, pos)
    return group << 16 | element, length


def _item(buf: bytes, pos: int) -> tuple[dict[int, tuple[bytes, int, int | None]], int]:
    """The item starting at ``pos``: its elements and the position after it."""
    tag, length = _tag_at(buf, pos)
    if tag != _ITEM:
        raise _Unreadable
    if length == _UNDEFINED:
        return _elements(buf, pos + 8, None)
    return _elements(buf, pos + 8, pos + 8 + length)


def _sequence_end(buf: bytes, pos: int) -> int:
    """The position after the Sequence Delimitation Item of the sequence whose items start at ``pos``."""
    while True:
        tag, length = _tag_at(buf, pos)
        if tag == _SEQUENCE_END:
            return pos + 8
        if tag != _ITEM:
            raise _Unreadable
        pos = _elements(buf, pos + 8, None)[1] if length == _UNDEFINED else pos + 8 + length


def _sequence_items(buf: bytes, element: tuple[bytes, int, int | None]) -> list[dict[int, tuple[bytes, int, int | None]]]:
    """The elements of every item of a sequence element."""
    vr, pos, length = element
    if vr != b"SQ":
        raise _Unreadable
    end = None if length is None else pos + length
    items = []
    while (end is None or pos < end) and _tag_at(buf, pos)[0] != _SEQUENCE_END:
        found, pos = _item(buf, pos)
        items.append(found)
    return items


def _first_item(buf: bytes, found: dict[int, tuple[bytes, int, int | None]], tag: int
                ) -> dict[int, tuple[bytes, int, int | None]] | None:
    """The elements of the first item of sequence ``tag`` (None when absent or empty)."""
    if tag not in found:
        return None
    vr, start, length = found[tag]
    if vr != b"SQ":
        raise _Unreadable
    if length == 0 or (length is None and _tag_at(buf, start)[0] == _SEQUENCE_END):
        return None
    return _item(buf, start)[0]


def _text(buf: bytes, element: tuple[bytes, int, int | None], vr: bytes) -> list[str]:
    found_vr, start, length = element
    if found_vr != vr or length is None:
        raise _Unreadable
    return buf[start:start + length].decode("ascii").strip(" ").split("\\")


def _raw_numbers(buf: bytes, item: dict[int, tuple[bytes, int, int | None]] | None, tag: int,
                 parsed: dict[bytes, tuple[float, ...]]) -> tuple[float, ...] | None:
    """The DS element ``tag`` of ``item`` as numbers (None when absent), each distinct string
    parsed once (``parsed``: its text → its numbers, kept across the frames)."""
    if item is None or tag not in item:
        return None
    vr, start, length = item[tag]
    if vr != b"DS" or length is None:
        raise _Unreadable
    raw = buf[start:start + length]
    numbers = parsed.get(raw)
    if numbers is None:
        numbers = parsed[raw] = _numbers(raw.decode("ascii").strip(" ").split("\\"))
    return numbers


def _raw_frame(buf: bytes, found: dict[int, tuple[bytes, int, int | None]],
               parsed: dict[bytes, tuple[float, ...]]) -> FrameFacts:
    content = _first_item(buf, found, FRAME_CONTENT)
    dimension_values = None
    stack = (False, False)
    if content is not None:
        stack = (_STACK_ID in content, _IN_STACK_POSITION in content)
        if _DIMENSION_INDEX_VALUES in content:
            vr, _start, length = content[_DIMENSION_INDEX_VALUES]
            if vr != b"UL" or length is None or length % 4:
                raise _Unreadable
            dimension_values = length // 4
        else:
            dimension_values = 0
    plane = _first_item(buf, found, PLANE_POSITION)
    position = None
    if plane is not None and _IMAGE_POSITION in plane:
        position = _position(_text(buf, plane[_IMAGE_POSITION], b"DS"))
    ident = _first_item(buf, found, SEGMENT_IDENTIFICATION)
    segment = None
    if ident is not None and _SEGMENT_NUMBER in ident:
        vr, start, length = ident[_SEGMENT_NUMBER]
        if vr != b"US" or length is None:
            raise _Unreadable
        segment = _SHORT.unpack_from(buf, start)[0] if length == 2 else None
    sources_named = all(_REFERENCED_SOP_INSTANCE in source
                        for derivation in (_sequence_items(buf, found[_DERIVATION_IMAGE])
                                           if _DERIVATION_IMAGE in found else [])
                        if _SOURCE_IMAGE in derivation
                        for source in _sequence_items(buf, derivation[_SOURCE_IMAGE]))
    orientation = _raw_numbers(buf, _first_item(buf, found, PLANE_ORIENTATION), _IMAGE_ORIENTATION, parsed)
    measures = _first_item(buf, found, PIXEL_MEASURES)
    return FrameFacts(frozenset(found), dimension_values, stack, position, segment, sources_named, orientation,
                      _raw_numbers(buf, measures, _PIXEL_SPACING, parsed),
                      _raw_numbers(buf, measures, _SPACING_BETWEEN_SLICES, parsed))


def _from_bytes(buf: bytes) -> list[FrameFacts]:
    facts = []
    parsed: dict[bytes, tuple[float, ...]] = {}
    pos = 0
    while pos < len(buf):
        if _tag_at(buf, pos)[0] == _SEQUENCE_END:
            break
        found, pos = _item(buf, pos)
        facts.append(_raw_frame(buf, found, parsed))
    return facts


# -- from pydicom's datasets -------------------------------------------------------------------

def _dataset_numbers(item: Dataset | None, keyword: str) -> tuple[float, ...] | None:
    if item is None or keyword not in item:
        return None
    value = item[keyword].value
    return _numbers(list(value) if isinstance(value, (MultiValue, list)) else [value])


def _dataset_frame(item: Dataset) -> FrameFacts:
    content = item.get("FrameContentSequence")
    dimension_values = None
    stack = (False, False)
    if content:
        stack = ("StackID" in content[0], "InStackPositionNumber" in content[0])
        values = content[0].get("DimensionIndexValues")
        dimension_values = 0 if values is None else len(values) if isinstance(values, (MultiValue, list)) else 1
    plane = item.get("PlanePositionSequence")
    position = None
    if plane and "ImagePositionPatient" in plane[0]:
        value = plane[0].ImagePositionPatient
        position = _position(list(value) if isinstance(value, (MultiValue, list)) else [value])
    ident = item.get("SegmentIdentificationSequence")
    number = ident[0].get("ReferencedSegmentNumber") if ident else None
    segment = number if isinstance(number, int) else None
    sources_named = all("ReferencedSOPInstanceUID" in source for derivation in item.get("DerivationImageSequence", [])
                        for source in derivation.get("SourceImageSequence", []))
    orientation_seq = item.get("PlaneOrientationSequence")
    measures_seq = item.get("PixelMeasuresSequence")
    measures = measures_seq[0] if measures_seq else None
    return FrameFacts(frozenset(map(int, item.keys())), dimension_values, stack, position, segment, sources_named,
                      _dataset_numbers(orientation_seq[0] if orientation_seq else None, "ImageOrientationPatient"),
                      _dataset_numbers(measures, "PixelSpacing"), _dataset_numbers(measures, "SpacingBetweenSlices"))


def _encoded(ds: Dataset, tag: int) -> bytes | None:
    """The encoded value of sequence ``tag`` when pydicom has not read it yet (explicit VR little endian)."""
    element = ds.get_item(tag)
    if isinstance(element, RawDataElement) and element.VR in ("SQ", None) and not element.is_implicit_VR \
            and element.is_little_endian and isinstance(element.value, bytes):
        return element.value
    return None


def _references_named(buf: bytes) -> tuple[bool, bool]:
    """(every ReferencedSeriesSequence item that lists instances names its series and each of
    them, some item lists an instance)."""
    listed = False
    for series in _sequence_items(buf, (b"SQ", 0, len(buf))):
        sequence = series.get(_REFERENCED_SOP) or series.get(_REFERENCED_INSTANCE)
        instances = _sequence_items(buf, sequence) if sequence is not None else []
        listed = listed or bool(instances)
        if instances and (_SERIES_INSTANCE not in series or
                          not all(_REFERENCED_SOP_INSTANCE in instance for instance in instances)):
            return False, listed
    return True, listed


def _dataset_references_named(ds: Dataset) -> tuple[bool, bool]:
    listed = False
    for series in ds.ReferencedSeriesSequence:
        key = "ReferencedSOPSequence" if "ReferencedSOPSequence" in series else "ReferencedInstanceSequence"
        instances = series.get(key, [])
        listed = listed or bool(instances)
        if instances and ("SeriesInstanceUID" not in series or
                          not all("ReferencedSOPInstanceUID" in instance for instance in instances)):
            return False, listed
    return True, listed


def series_references_complete(ds: Dataset) -> bool:
    """The instances the SEG references (ReferencedSeriesSequence) are named as highdicom's reader
    requires: StudyInstanceUID, each series' SeriesInstanceUID and each instance's
    ReferencedSOPInstanceUID; and no other sequence of references that reader also reads."""
    if "StudiesContainingOtherReferencedInstancesSequence" in ds or "SourceImageEvidenceSequence" in ds:
        return False
    if REFERENCED_SERIES not in ds:
        return True
    buf = _encoded(ds, REFERENCED_SERIES)
    outcome = None
    if buf is not None:
        with contextlib.suppress(_Unreadable, struct.error):  # else read as pydicom reads it
            outcome = _references_named(buf)
    named, listed = outcome if outcome is not None else _dataset_references_named(ds)
    return named and ("StudyInstanceUID" in ds or not listed)


def frame_facts(ds: Dataset) -> list[FrameFacts] | None:
    """Each Per-frame Functional Groups item's facts (None when the sequence is absent)."""
    if PER_FRAME not in ds:
        return None
    buf = _encoded(ds, PER_FRAME)
    if buf is not None:
        try:
            return _from_bytes(buf)
        except (_Unreadable, struct.error, UnicodeDecodeError):
            pass  # read as pydicom reads it
    return [_dataset_frame(item) for item in ds.PerFrameFunctionalGroupsSequence]
