"""Identifiers that go into PACS URLs: Orthanc ids and DICOM UIDs, checked before any request.

An outside value put unchecked into a REST path can walk the PACS API (``../system``) or break
the request (``#``, ``%00``, a lone surrogate). Orthanc's public ids are the SHA-1 of the DICOM
identifiers written as five groups of eight hexadecimal digits joined by ``-`` (Orthanc Book,
"Orthanc identifiers"); DICOM UIDs are at most 64 characters of numeric components joined by dots
(PS3.5 §9.1; the rule against leading zeros is not enforced, as some modalities break it). :func:`url_segment` percent-encodes one path segment for the
places where a value is not one of these.
"""

from __future__ import annotations

import re
from urllib.parse import quote

__all__ = ["is_dicom_uid", "is_orthanc_id", "url_segment"]

_ORTHANC_ID = re.compile(r"[0-9a-f]{8}(?:-[0-9a-f]{8}){4}")
_UID = re.compile(r"[0-9]+(?:\.[0-9]+)*")
MAX_UID_LENGTH = 64


def is_orthanc_id(value: object) -> bool:
    """True for an Orthanc public id (``8hex-8hex-8hex-8hex-8hex``, lower case as Orthanc writes it)."""
    return isinstance(value, str) and _ORTHANC_ID.fullmatch(value) is not None


def is_dicom_uid(value: object) -> bool:
    """True for a DICOM UID: at most 64 characters, numeric components joined by dots (PS3.5 §9.1)."""
    return isinstance(value, str) and len(value) <= MAX_UID_LENGTH and _UID.fullmatch(value) is not None


def url_segment(value: str) -> str:
    """``value`` as one URL path segment: every reserved character percent-encoded (``/`` too),
    a lone surrogate refused (it has no UTF-8 form)."""
    try:
        return quote(value.encode("utf-8"), safe="")
    except UnicodeEncodeError:
        raise ValueError("the value holds a lone surrogate and cannot be put into a URL") from None
