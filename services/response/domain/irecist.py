"""iRECIST (Seymour L et al., Lancet Oncol 2017;18:e143-e152; EORTC RECIST working group FAQ).

Built on RECIST 1.1 time points:

- the first RECIST 1.1 progression is unconfirmed, **iUPD**;
- it is confirmed, **iCPD**, at the next assessment (4-8 weeks later) by: a further increase of
  ≥ 5 mm in the target sum when targets drove iUPD, any further increase of non-target disease
  (coded ``further-increase``) when they drove it, a ≥ 5 mm increase of the new-lesion target sum,
  any increase of a new non-target lesion, another new lesion, or progression newly met in a
  category that had not progressed (Seymour 2017 Table 2; EORTC FAQ);
- the increases are measured from the iUPD time point, so successive small increases add up
  (EORTC FAQ: 4 mm then 2 mm confirms);
- while the RECIST 1.1 criteria of PD remain met without confirmation, iUPD persists; once they
  are no longer met the response resets to iSD, iPR or iCR and a later PD is a new iUPD;
- new lesions are measured: up to 5 measurable ones (≤ 2 per organ; ≥ 10 mm, nodes ≥ 15 mm
  short axis) are new-lesion targets (NLT), the others new-lesion non-targets (NLNT);
- a confirmation scan less than 4 weeks after iUPD confirms only through a new lesion (EORTC FAQ);
- after an iUPD driven by new lesions alone, further shrinkage of the target lesions to PR with
  the new lesions unchanged is iPR (EORTC FAQ "Assigning response after the appearance of new
  lesions", scenario B); PR reached before the new lesion with no change since stays iUPD
  (scenario F).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import date
from decimal import Decimal

from services.response.domain.model import Assessment, NonTargetStatus
from services.response.domain.recist import RECIST_PD_MIN_INCREASE_MM, assess_recist
from services.response.domain.result import CriterionResult, VisitResponse
from services.response.domain.series import (
    MAX_TARGETS,
    MAX_TARGETS_PER_ORGAN,
    MEASURABLE_LESION_MM,
    NODE_TARGET_MM,
    Series,
    organ_of,
    recist_value,
)
from services.response.domain.tables import CR, NE, NON_CR_NON_PD, PD, PR, SD

__all__ = [
    "CONFIRMATION_MIN_DAYS",
    "ICPD",
    "ICR",
    "IPR",
    "ISD",
    "IUPD",
    "NON_ICR_NON_IUPD",
    "assess_irecist",
]

ICR, IPR, ISD, IUPD, ICPD = "iCR", "iPR", "iSD", "iUPD", "iCPD"
NON_ICR_NON_IUPD = "non-iCR/non-iUPD"
#: Seymour 2017: the confirmation assessment comes 4-8 weeks after iUPD.
CONFIRMATION_MIN_DAYS = 28
CONFIRMATION_MAX_DAYS = 56

_MAP = {CR: ICR, PR: IPR, SD: ISD, PD: IUPD, NE: NE, NON_CR_NON_PD: NON_ICR_NON_IUPD}
_INCREASE = {NonTargetStatus.FURTHER_INCREASE, NonTargetStatus.UNEQUIVOCAL_PROGRESSION}


@dataclass
class _Episode:
    """An open iUPD: what progressed and the measures at that time point."""

    opened: date
    target_cause: bool
    non_target_cause: bool
    target_sum: Decimal | None
    new_target_sum: Decimal
    new_ids: set[str] = field(default_factory=set)


def _new_lesion_targets(series: Series) -> set[str]:
    """NLT: the first measurable new lesions, ≤ 5 in all and ≤ 2 per organ (Seymour 2017)."""
    chosen: list[str] = []
    per_organ: dict[str, int] = {}
    for visit in series.follow_ups:
        candidates = sorted(series.new_lesions(visit), key=lambda m: -(recist_value(m) or 0))
        for m in candidates:
            if m.lesion_id in chosen:
                continue
            size = recist_value(m)
            threshold = NODE_TARGET_MM if m.is_node else MEASURABLE_LESION_MM
            if size is None or size < threshold:
                continue
            organ = organ_of(m)
            if len(chosen) < MAX_TARGETS and per_organ.get(organ, 0) < MAX_TARGETS_PER_ORGAN:
                chosen.append(m.lesion_id)
                per_organ[organ] = per_organ.get(organ, 0) + 1
    return set(chosen)


def _new_target_sum(visit: Assessment, nlt: set[str]) -> Decimal:
    return sum((recist_value(m) or Decimal(0) for m in visit.lesions if m.lesion_id in nlt),
               Decimal(0))


def _confirmations(episode: _Episode, v: VisitResponse, visit: Assessment, series: Series,
                   nlt: set[str]) -> tuple[list[str], list[str]]:
    """Reasons that confirm progression: (from existing lesions, from another new lesion)."""
    size_reasons: list[str] = []
    new_reasons: list[str] = []
    if episode.target_cause:
        if (v.measure is not None and episode.target_sum is not None
                and v.measure - episode.target_sum >= RECIST_PD_MIN_INCREASE_MM):
            size_reasons.append(f"target sum up {v.measure - episode.target_sum} mm since iUPD (≥ 5 mm)")
    elif v.target == PD:
        size_reasons.append("target lesions now meet RECIST 1.1 progression")
    lesions = visit.by_id()
    nt_statuses = [lesions[m.lesion_id].status for m in series.non_targets if m.lesion_id in lesions]
    if episode.non_target_cause:
        if NonTargetStatus.FURTHER_INCREASE in nt_statuses:
            size_reasons.append("further increase of non-target disease")
    elif v.non_target == PD:
        size_reasons.append("non-target lesions now unequivocally progress")
    new_now = {m.lesion_id for m in series.new_lesions(visit)}
    if new_now - episode.new_ids:
        new_reasons.append("another new lesion: " + ", ".join(sorted(new_now - episode.new_ids)))
    if episode.new_ids:
        growth = _new_target_sum(visit, nlt) - episode.new_target_sum
        if growth >= RECIST_PD_MIN_INCREASE_MM:
            size_reasons.append(f"new-lesion target sum up {growth} mm since iUPD (≥ 5 mm)")
        if any(m.status in _INCREASE for m in series.new_lesions(visit)
               if m.lesion_id in episode.new_ids and m.lesion_id not in nlt):
            size_reasons.append("a new non-target lesion increased")
    return size_reasons, new_reasons


def _shrunk_after_new_lesion(episode: _Episode, v: VisitResponse) -> bool:
    """EORTC iRECIST FAQ "Assigning response after the appearance of new lesions": an iUPD
    driven by new lesions alone, followed by further shrinkage of the target lesions (below
    the iUPD sum) that meets PR against baseline, is iPR even though the new lesions remain
    (scenario B); PR reached before the new lesion with no change since stays iUPD (scenario F).
    Called only when nothing confirmed progression at this visit."""
    return (not episode.target_cause and not episode.non_target_cause
            and v.target in (PR, CR) and v.non_target != PD
            and v.measure is not None and episode.target_sum is not None
            and v.measure < episode.target_sum)


def assess_irecist(series: Series, *, exclude_treated: bool = False) -> CriterionResult:
    """iRECIST time-point responses (Seymour 2017) over the RECIST 1.1 time points."""
    recist = assess_recist(series, exclude_treated=exclude_treated)
    nlt = _new_lesion_targets(series)
    episode: _Episode | None = None
    confirmed = False
    visits: list[VisitResponse] = []
    for v, visit in zip(recist.visits, series.follow_ups, strict=True):
        notes = list(v.notes)
        new_ids = set(v.new_lesions)
        if confirmed:
            category = ICPD
        elif episode is None:
            category = _MAP[v.overall]
            if v.overall == PD:
                episode = _Episode(
                    opened=visit.date, target_cause=v.target == PD,
                    non_target_cause=v.non_target == PD, target_sum=v.measure,
                    new_target_sum=_new_target_sum(visit, nlt), new_ids=new_ids)
                notes.append("first RECIST 1.1 progression: unconfirmed (iUPD)")
        else:
            days = (visit.date - episode.opened).days
            size_reasons, new_reasons = _confirmations(episode, v, visit, series, nlt)
            if days < CONFIRMATION_MIN_DAYS and size_reasons and not new_reasons:
                notes.append(f"scan {days} days after iUPD (< 4 weeks): size increases do not "
                             "confirm progression (EORTC iRECIST FAQ)")
                size_reasons = []
            if days > CONFIRMATION_MAX_DAYS:
                notes.append(f"confirmation scan {days} days after iUPD (> 8 weeks, Seymour 2017)")
            reasons = size_reasons + new_reasons
            if reasons:
                category, confirmed = ICPD, True
                notes.append("progression confirmed (iCPD): " + "; ".join(reasons))
            elif _shrunk_after_new_lesion(episode, v):
                category = IPR
                notes.append("target lesions shrank further after the new lesion to a partial response, "
                             "new lesions unchanged: iPR (EORTC iRECIST FAQ, scenario B); the new "
                             "lesions are still followed from the iUPD time point")
            elif v.overall in (PD, NE):
                category = IUPD
                episode.new_ids |= new_ids
                notes.append("iUPD persists: not confirmed, RECIST 1.1 progression not resolved"
                             if v.overall == PD else "iUPD persists: assessment not evaluable")
            else:
                episode = None
                category = _MAP[v.overall]
                notes.append("iUPD not confirmed and resolved: response reset")
        visits.append(replace(
            v, overall=category,
            vs_baseline=ICPD if confirmed else _MAP[v.vs_baseline],
            vs_nadir=ICPD if confirmed else _MAP[v.vs_nadir],
            notes=tuple(notes)))
    return CriterionResult("irecist", recist.baseline_date, recist.baseline_measure,
                           recist.measure_code, recist.measure_unit, tuple(visits), recist.notes,
                           final_nadir_date=recist.final_nadir_date)
