"""Best overall response across time points.

Eisenhauer 2009 (RECIST 1.1) §4.4.3 and Table 3, §4.6: the best response recorded from the start
of treatment until progression. Confirmation (a CR or PR repeated at least ``confirmation_days``
later) is required only in non-randomised trials with response as primary end point, so it is a
setting (0 = not required, the default); SD needs a minimum interval after baseline
(``min_sd_days``, protocol-defined, 6-8 weeks typical). An unconfirmed CR or PR counts as SD when
that interval is met. iRECIST (Seymour 2017) ranks iCR > iPR > iSD > iUPD > iCPD; PERCIST
(Wahl 2009) CMR > PMR > SMD > PMD.

Progression ends the count: time points after the first PD (PERCIST PMD, iRECIST iCPD) are not
considered (RECIST 1.0, Therasse 2000: "until disease progression/recurrence"; RECIST 1.1
§4.4.3 "until the end of treatment"). Only an *unconfirmed* iRECIST progression (iUPD) may be
followed by a response that counts, and a confirmed one (iCPD) is the best response when nothing
better came before it; iUPD is the best response only when it was never confirmed (Seymour 2017
Table 3, examples 6-8).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

__all__ = ["BorSettings", "best_overall_response"]

_COMPLETE = {"CR", "iCR", "CMR"}
_PARTIAL = {"PR", "iPR", "PMR"}
_STABLE = {"SD", "non-CR/non-PD", "iSD", "non-iCR/non-iUPD", "SMD"}
_PROGRESSION_RANK = {"iCPD": 2, "iUPD": 1, "PD": 1, "PMD": 1}
#: Categories after which no later time point counts.
_TERMINAL = {"PD", "PMD", "iCPD"}
_STABLE_FOR = {"CR": "SD", "PR": "SD", "iCR": "iSD", "iPR": "iSD", "CMR": "SMD", "PMR": "SMD"}


@dataclass(frozen=True)
class BorSettings:
    """``confirmation_days``: 0 = confirmation not required; RECIST 1.1 §4.6 asks ≥ 28 days
    (4 weeks) when it is. ``min_sd_days``: shortest time after baseline for SD to count."""

    confirmation_days: int = 0
    min_sd_days: int = 42


def _confirmed(points: Sequence[tuple[date, str]], i: int, accepted: set[str], days: int) -> bool:
    start = points[i][0]
    for when, category in points[i + 1:]:
        if category == "NE":
            continue
        if category not in accepted:
            return False
        if (when - start).days >= days:
            return True
    return False


def best_overall_response(baseline: date, points: Sequence[tuple[date, str]],
                          settings: BorSettings | None = None) -> tuple[str, tuple[str, ...]]:
    """The best overall response and the reasons, from time-point categories in date order."""
    notes: list[str] = []
    ordered = sorted(points)
    if not ordered:
        return "NE", ("no follow-up assessment",)
    end = next((i for i, (_, c) in enumerate(ordered) if c in _TERMINAL), None)
    if end is not None and end + 1 < len(ordered):
        when, category = ordered[end]
        notes.append(f"{len(ordered) - end - 1} time point(s) after progression ({category} on "
                     f"{when.isoformat()}) not counted")
        ordered = ordered[:end + 1]
    settings = settings or BorSettings()
    need = settings.confirmation_days
    complete_ok = partial_ok = False
    for i, (_, category) in enumerate(ordered):
        if category in _COMPLETE:
            # Table 3: CR then PR is not a confirmed response (disease after a true CR is PD);
            # the CR counts as SD when the minimum SD interval is met.
            if need == 0 or _confirmed(ordered, i, _COMPLETE, need):
                complete_ok = True
        elif category in _PARTIAL and (need == 0 or _confirmed(ordered, i, _COMPLETE | _PARTIAL, need)):
            partial_ok = True
    if complete_ok:
        return next(c for _, c in ordered if c in _COMPLETE), tuple(notes)
    if partial_ok:
        partial = next(c for _, c in ordered if c in _PARTIAL)
        if need:
            notes.append(f"response confirmed at least {need} days later")
        return partial, tuple(notes)
    stable_points = [(w, c) for w, c in ordered if c in _STABLE | _COMPLETE | _PARTIAL]
    for when, category in stable_points:
        if (when - baseline).days >= settings.min_sd_days:
            if category in _COMPLETE | _PARTIAL:
                notes.append(f"{category} on {when.isoformat()} not confirmed: counts as stable disease")
                return _STABLE_FOR[category], tuple(notes)
            return category, tuple(notes)
    if stable_points:
        notes.append(f"stable disease before the minimum of {settings.min_sd_days} days after baseline")
    progression = [c for _, c in ordered if c in _PROGRESSION_RANK]
    if progression:
        return max(progression, key=lambda c: _PROGRESSION_RANK[c]), tuple(notes)
    return "NE", tuple(notes)
