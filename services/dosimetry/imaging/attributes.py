"""Plain attribute values read straight from an instance's bytes, for the per-slice hot path.

pydicom reads an instance into raw elements and converts a value the first time it is asked for
(through its value hooks, into ``DSfloat``, ``IS``, ``MultiValue``, ``UID``...): about 10-20 µs an
attribute, and a CT slice is asked for some twenty. Over the 256-300 slices of a clinical CT
that was a fifth of the main thread's time in a voxel job. :func:`plain_get` gives what
``ds.get(keyword)`` gives for the plain encodings of the attributes a slice is read for, decoded
here in a few microseconds, and asks pydicom for everything else:

- decimal and integer strings (DS, IS, PS3.5 6.2): a number, or a list of numbers for several
  values (``float``/``int`` where pydicom gives ``DSfloat``/``IS``, equal in value);
- 2- and 4-byte binary integers (US, SS, UL, SL) of one value, in the element's byte order;
- ASCII text of one value (CS, UI, SH, LO), without its padding;
- OB/OW bytes (Pixel Data of an uncompressed instance).

Anything else falls to pydicom unchanged: a value already converted, an empty or deferred value,
a VR other than the standard one, several binary or text values, non-ASCII text, a number
pydicom might read differently (e.g. ``"1,5"``). The dataset is not changed: the raw element
stays raw for whoever asks pydicom later.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.tag import BaseTag

__all__ = ["interned_tag", "plain_get"]

_NUMBER_STRINGS = frozenset({"DS", "IS"})
_BINARY_INTS = {"US": (2, False), "SS": (2, True), "UL": (4, False), "SL": (4, True)}
_TEXT = frozenset({"CS", "UI", "SH", "LO"})
_BYTES = frozenset({"OB", "OW", "OB or OW"})
_SUPPORTED = _NUMBER_STRINGS | set(_BINARY_INTS) | _TEXT | _BYTES
#: Characters of a well-formed decimal (DS) or integer (IS) string, value separators included.
_NUMBER_CHARACTERS = {"DS": "0123456789+-.eE \\", "IS": "0123456789+- \\"}
#: What :func:`_decoded` gives for a value it leaves to pydicom.
_FALLBACK = object()
_MISSING = object()
#: Decoded short values by (raw bytes, VR, little endian), at most :data:`_MAX_CACHED` of values
#: up to :data:`_MAX_CACHED_BYTES` (a UID, a position, a spacing): emptied when full.
_DECODED: dict[tuple[bytes, str, bool], Any] = {}
_MAX_CACHED = 4096
_MAX_CACHED_BYTES = 80


#: One BaseTag a tag number (up to :data:`_MAX_TAGS` of them), shared by the instances read here
#: and the look-ups: a dict look-up finds its very key object without calling BaseTag's Python
#: ``==`` (~0.6 us each, some forty a CT slice).
_TAGS: dict[int, BaseTag] = {}
_MAX_TAGS = 4096


def interned_tag(number: int) -> BaseTag:
    """The shared BaseTag of ``number``."""
    tag = _TAGS.get(number)
    if tag is None:
        tag = BaseTag(number)
        if len(_TAGS) < _MAX_TAGS:
            tag = _TAGS.setdefault(number, tag)
    return tag


@lru_cache(maxsize=256)
def _tag_and_vr(keyword: str) -> tuple[BaseTag, str, frozenset[str | None]] | None:
    """The tag and the dictionary VR of ``keyword`` when :func:`plain_get` can decode it, and
    the VRs a raw element of it may carry to be decoded here (None: implicit VR)."""
    tag = tag_for_keyword(keyword)
    if tag is None:
        return None
    vr = str(dictionary_VR(tag))
    if vr not in _SUPPORTED:
        return None
    accepted: frozenset[str | None] = frozenset({None, "OB", "OW"} if vr in _BYTES else {None, vr})
    return interned_tag(int(tag)), vr, accepted  # a BaseTag: pydicom's look-up takes it as it is


def _decoded(raw: RawDataElement, vr: str) -> Any:
    """The value of ``raw`` (of dictionary VR ``vr``) as pydicom would give it, or ``_FALLBACK``."""
    value = raw.value
    if not isinstance(value, bytes) or not value:
        return _FALLBACK
    if vr in _BYTES:
        return value
    if vr in _BINARY_INTS:
        size, signed = _BINARY_INTS[vr]
        if len(value) != size:
            return _FALLBACK
        return int.from_bytes(value, "little" if raw.is_little_endian else "big", signed=signed)
    if not value.isascii():
        return _FALLBACK
    text = value.decode("ascii").rstrip(" \0")  # the padding; a leading space is pydicom's to keep
    if not text:
        return _FALLBACK
    if vr in _TEXT:
        return _FALLBACK if "\\" in text else text
    if text.strip(_NUMBER_CHARACTERS[vr]):
        return _FALLBACK
    # float() and int() read what pydicom's DS and IS do for well-formed values; one they refuse
    # (or that int() would read where IS would not) is pydicom's to judge
    number = float if vr == "DS" else int
    try:
        numbers = [number(part.strip()) for part in text.split("\\")]
    except ValueError:
        return _FALLBACK
    return numbers[0] if len(numbers) == 1 else numbers


def plain_get(ds: Dataset, keyword: str, default: Any = None) -> Any:
    """``ds.get(keyword, default)``, decoded here when the element is still raw and plainly
    encoded (see the module's note); the numbers compare equal to pydicom's."""
    known = _tag_and_vr(keyword)
    if known is not None:
        tag, vr, accepted = known
        raw = ds.get_item(tag, keep_deferred=True)
        if raw is None:
            return default
        if isinstance(raw, RawDataElement) and raw.VR in accepted:
            value = _decoded_once(raw, vr)
            if value is not _FALLBACK:
                return list(value) if isinstance(value, list) else value  # a list of the caller's own
    return ds.get(keyword, default)


def _decoded_once(raw: RawDataElement, vr: str) -> Any:
    """:func:`_decoded`, looked up when the same short value was decoded before: the instances of
    a series repeat most of what a slice is read for (its orientation, spacing, rescale, sizes)."""
    value = raw.value
    if vr in _BYTES or not isinstance(value, bytes) or len(value) > _MAX_CACHED_BYTES:
        return _decoded(raw, vr)
    key = (value, vr, raw.is_little_endian)
    decoded = _DECODED.get(key, _MISSING)
    if decoded is _MISSING:
        decoded = _decoded(raw, vr)
        if len(_DECODED) >= _MAX_CACHED:
            _DECODED.clear()
        _DECODED[key] = decoded
    return decoded
