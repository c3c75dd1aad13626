"""A volume of interest on the activity grid, and how its role is named.

``role`` (liver | tumour | lung | other) comes from the SNOMED CT segmented property type
when there is one (DICOM CID 7151), else from the label text; the readers of DICOM SEG
(:mod:`.seg`) and RTSTRUCT (:mod:`.rtstruct`) and the automatic VOI (:mod:`.voi`) all make
:class:`Voi` values.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from services.dosimetry.imaging.errors import SegmentationError

__all__ = ["Voi", "check_nonempty", "voi_role"]

# SNOMED CT codes of segmented property types → VOI role.
_ROLE_BY_CODE = {"10200004": "liver", "39607008": "lung", "108369006": "tumour", "49755003": "tumour",
                 "44808001": "lung", "3341006": "lung"}


@dataclass(frozen=True)
class Voi:
    """One VOI on the activity grid. ``role``: liver | tumour | lung | normal-liver | other; ``source``:
    ``segmentation`` (SEG), ``rtstruct``, ``automatic`` or ``derived`` (e.g. liver minus
    tumours)."""

    name: str
    mask: np.ndarray
    role: str
    source: str
    code: str = ""
    #: The segment's TrackingUID (0062,0021), which names the lesion across studies, when given.
    tracking_uid: str = ""

    @property
    def voxel_count(self) -> int:
        return int(self.mask.sum())


def voi_role(label: str, code: str = "") -> str:
    """Role of a VOI from its SNOMED property type, else from its label text."""
    if code in _ROLE_BY_CODE:
        return _ROLE_BY_CODE[code]
    text = label.lower()
    if "liver" in text or "hepat" in text:
        return "liver"
    if "lung" in text or "pulm" in text:
        return "lung"
    if any(w in text for w in ("tumour", "tumor", "lesion", "metast", "sphere", "gtv")):
        return "tumour"
    return "other"


def check_nonempty(name: str, mask: np.ndarray, source: str) -> None:
    """Refuse a VOI that does not overlap the activity volume."""
    if not mask.any():
        raise SegmentationError(
            f"{source} VOI {name!r} does not overlap the activity volume (empty after resampling onto it)",
            "segmentationSeriesUid")
