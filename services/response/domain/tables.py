"""Time-point response from target, non-target and new lesions.

Eisenhauer 2009 (RECIST 1.1) §4.4.1, Table 1 (patients with target ± non-target disease) and
Table 2 (non-target disease only). mRECIST (Lencioni & Llovet 2010), EASL 2001 and Choi 2007
use the same combination of their own target category with non-target and new lesions.
"""

from __future__ import annotations

__all__ = [
    "CR", "NE", "NON_CR_NON_PD", "PD", "PR", "SD",
    "non_target_category",
    "overall_response",
]

CR, PR, SD, PD, NE = "CR", "PR", "SD", "PD", "NE"
#: RECIST 1.1 Table 2: non-target disease only, neither CR nor PD.
NON_CR_NON_PD = "non-CR/non-PD"


def non_target_category(statuses: list[str | None]) -> str | None:
    """RECIST 1.1 §4.3.3: CR when every non-target lesion is absent, PD on unequivocal
    progression, NE when any was not assessed, otherwise non-CR/non-PD. ``None`` when the
    baseline had no non-target lesion."""
    if not statuses:
        return None
    if any(s in ("unequivocal-progression", "further-increase") for s in statuses):
        return PD
    if any(s is None for s in statuses):
        return NE
    if all(s == "absent" for s in statuses):
        return CR
    return NON_CR_NON_PD


def overall_response(target: str | None, non_target: str | None, new_lesion: bool) -> str:
    """RECIST 1.1 Tables 1 and 2. ``target`` ``None``: no target lesions (Table 2);
    ``non_target`` ``None``: no non-target lesions at baseline (counts as CR in Table 1)."""
    if new_lesion or target == PD or non_target == PD:
        return PD
    if target is None:
        if non_target in (None, CR):
            return CR
        return NE if non_target == NE else NON_CR_NON_PD
    if target == NE:
        return NE
    if target == CR:
        return CR if non_target in (None, CR) else PR
    return target  # PR or SD, whatever the non-PD non-target category
