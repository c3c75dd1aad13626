"""Baseline checks and the lesion timeline shared by every criterion.

Eisenhauer 2009 (RECIST 1.1) §3.1 measurability, §4.2 baseline target selection (≤ 5 targets,
≤ 2 per organ, nodes by short axis ≥ 15 mm), §4.3.2 split and coalesced lesions; §3.1.3 lesions
treated locally; Rozenblum et al. (Eur J Radiol): a lesion seen only because a new, more sensitive modality
was used is a new baseline lesion, not progression.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal

from services.response.domain.model import (
    TOO_SMALL_TO_MEASURE_MM,
    Assessment,
    LesionMeasurement,
    LocalTreatment,
    NonTargetStatus,
    ResponseInputError,
    Role,
)

__all__ = [
    "LYMPH_NODE_ORGAN",
    "MAX_TARGETS",
    "MAX_TARGETS_PER_ORGAN",
    "MEASURABLE_LESION_MM",
    "NODE_PATHOLOGICAL_MM",
    "NODE_TARGET_MM",
    "LesionValue",
    "Series",
    "build_series",
    "organ_of",
    "recist_value",
    "target_value",
]

#: RECIST 1.1 §3.1.1: a non-nodal lesion is measurable with a longest diameter ≥ 10 mm (CT).
MEASURABLE_LESION_MM = Decimal(10)
#: RECIST 1.1 §3.1.1: a lymph node is measurable (target) with a short axis ≥ 15 mm.
NODE_TARGET_MM = Decimal(15)
#: RECIST 1.1 §4.3.2: a node with short axis < 10 mm is normal (CR allows target nodes < 10 mm).
NODE_PATHOLOGICAL_MM = Decimal(10)
#: RECIST 1.1 §4.2: at most five target lesions in total and two per organ.
MAX_TARGETS = 5
MAX_TARGETS_PER_ORGAN = 2

LesionValue = Callable[[LesionMeasurement], Decimal | None]

#: EORTC RECIST 1.1 questions and clarifications ("Two target lesions"): lymph nodes of every
#: chain and region are one organ for the "two per organ" rule.
LYMPH_NODE_ORGAN = "lymph node"


def organ_of(m: LesionMeasurement) -> str:
    """The organ a lesion counts for in the "≤ 2 targets per organ" rule (nodes: one organ)."""
    return LYMPH_NODE_ORGAN if m.is_node else m.organ


def recist_value(m: LesionMeasurement) -> Decimal | None:
    """RECIST 1.1 §4.3.2: short axis for nodes, longest diameter otherwise; "too small to
    measure" counts 5 mm."""
    value = m.short_axis_mm if m.is_node else m.longest_diameter_mm
    if value is None and m.too_small:
        return TOO_SMALL_TO_MEASURE_MM
    return value


@dataclass(frozen=True)
class Series:
    """Baseline, follow-ups and what is known about each lesion over time."""

    baseline: Assessment
    follow_ups: tuple[Assessment, ...]
    targets: tuple[LesionMeasurement, ...]
    non_targets: tuple[LesionMeasurement, ...]
    treatments: tuple[LocalTreatment, ...]
    #: lesion id → date of the first local treatment after baseline (flagged at later visits).
    treated_after_baseline: dict[str, date] = field(default_factory=dict)
    #: lesion id → date of the first *further* local treatment: one performed on or after the
    #: first follow-up assessment, once the course being assessed has begun. Only these can be
    #: made not evaluable (``exclude_treated``); the therapy being assessed is what the response
    #: measures.
    further_treated: dict[str, date] = field(default_factory=dict)
    #: lesion ids seen first on a modality not used before (new baseline lesions, Rozenblum et al.).
    new_modality_lesions: frozenset[str] = frozenset()
    notes: tuple[str, ...] = ()

    @property
    def target_ids(self) -> tuple[str, ...]:
        return tuple(t.lesion_id for t in self.targets)

    def treated_at(self, lesion_id: str, when: date) -> bool:
        """True if the lesion was treated locally after baseline and before ``when``."""
        treated = self.treated_after_baseline.get(lesion_id)
        return treated is not None and treated < when

    def further_treated_at(self, lesion_id: str, when: date) -> bool:
        """True if a further local therapy (after the first follow-up) treated the lesion before
        ``when``."""
        treated = self.further_treated.get(lesion_id)
        return treated is not None and treated < when

    def non_target_statuses(self, visit: Assessment) -> list[str | None]:
        """Status code of each baseline non-target lesion at a visit (``None``: not assessed)."""
        lesions = visit.by_id()
        out: list[str | None] = []
        for m in self.non_targets:
            status = lesions[m.lesion_id].status if m.lesion_id in lesions else None
            out.append(status.value if status is not None else None)
        return out

    def new_lesions(self, visit: Assessment) -> tuple[LesionMeasurement, ...]:
        """Unequivocal new lesions at a visit, excluding new baseline lesions of a new modality."""
        baseline_ids = set(self.baseline.by_id())
        return tuple(
            m for m in visit.lesions
            if m.role is Role.NEW and m.fragment_of is None
            and m.lesion_id not in self.new_modality_lesions and m.lesion_id not in baseline_ids
        )


def target_value(series: Series, visit: Assessment, lesion_id: str, value: LesionValue,
                 *, exclude_treated: bool) -> Decimal | None:
    """The value of one target lesion at a visit, or ``None`` when it was not assessed.

    RECIST 1.1 §4.3.2: fragments of a split lesion add up; a lesion that coalesced into another
    counts 0 (its extent is measured on the other). With ``exclude_treated`` a lesion treated by a
    further local therapy during follow-up is not evaluable (as trial protocols that follow
    RECIST 1.1 §3.1.3 require); lesions treated by the therapy being assessed are always measured.
    """
    if exclude_treated and series.further_treated_at(lesion_id, visit.date):
        return None
    lesions = visit.by_id()
    own = lesions.get(lesion_id)
    if own is not None and own.merged_into:
        return Decimal(0)
    parts = [m for m in visit.lesions if m.fragment_of == lesion_id]
    if own is not None:
        parts.insert(0, own)
    if not parts:
        return None
    values = [value(m) for m in parts]
    if any(v is None for v in values):
        return None
    return sum((v for v in values if v is not None), Decimal(0))


def _check_visit(visit: Assessment) -> None:
    seen: dict[str, str] = {}
    for m in visit.lesions:
        if m.lesion_id in seen:
            raise ResponseInputError(
                f"lesion {m.lesion_id!r} is measured twice on {visit.date.isoformat()}",
                m.source or seen[m.lesion_id])
        seen[m.lesion_id] = m.source
        for name in ("longest_diameter_mm", "short_axis_mm", "viable_diameter_mm",
                     "viable_perpendicular_mm", "sul_peak", "suv_max"):
            number = getattr(m, name)
            if number is not None and number < 0:
                raise ResponseInputError(
                    f"lesion {m.lesion_id!r} on {visit.date.isoformat()}: {name} must not be "
                    f"negative ({number})", m.source)


def _check_targets(baseline: Assessment, value: LesionValue) -> tuple[LesionMeasurement, ...]:
    targets = tuple(m for m in baseline.lesions if m.role is Role.TARGET and m.fragment_of is None)
    if len(targets) > MAX_TARGETS:
        raise ResponseInputError(
            f"{len(targets)} target lesions at baseline; RECIST 1.1 §4.2 allows at most {MAX_TARGETS}",
            targets[MAX_TARGETS].source)
    per_organ: dict[str, list[LesionMeasurement]] = {}
    for t in targets:
        per_organ.setdefault(organ_of(t), []).append(t)
    for organ, items in per_organ.items():
        if len(items) > MAX_TARGETS_PER_ORGAN:
            raise ResponseInputError(
                f"{len(items)} target lesions in organ {organ!r} at baseline; RECIST 1.1 §4.2 "
                f"allows at most {MAX_TARGETS_PER_ORGAN} per organ", items[MAX_TARGETS_PER_ORGAN].source)
    for t in targets:
        size = value(t)
        threshold = NODE_TARGET_MM if t.is_node else MEASURABLE_LESION_MM
        what = "short axis" if t.is_node else "longest diameter"
        if size is None:
            raise ResponseInputError(
                f"target lesion {t.lesion_id!r} has no {what} at baseline", t.source)
        if size < threshold:
            raise ResponseInputError(
                f"target lesion {t.lesion_id!r} is not measurable at baseline: {what} {size} mm "
                f"< {threshold} mm (RECIST 1.1 §3.1.1)", t.source)
    return targets


def _check_further_increase(follow_ups: Sequence[Assessment]) -> None:
    """``further-increase`` (iRECIST: growth after an unequivocal progression, which need not
    itself be unequivocal) needs an earlier progression of the same non-target lesion; used
    first it would pass for RECIST 1.1 unequivocal progression."""
    progressed: set[str] = set()
    for visit in follow_ups:
        for m in visit.lesions:
            if m.role is not Role.NON_TARGET or m.status is None:
                continue
            if m.status is NonTargetStatus.FURTHER_INCREASE and m.lesion_id not in progressed:
                raise ResponseInputError(
                    f"non-target lesion {m.lesion_id!r} is coded further-increase on "
                    f"{visit.date.isoformat()} without an earlier unequivocal-progression; code "
                    "unequivocal-progression or present", m.source)
            if m.status in (NonTargetStatus.UNEQUIVOCAL_PROGRESSION, NonTargetStatus.FURTHER_INCREASE):
                progressed.add(m.lesion_id)


def _check_follow_up_roles(baseline: Assessment, follow_ups: Sequence[Assessment]) -> None:
    """A follow-up lesion must keep its baseline role; one not at baseline must be ``new``
    (or a fragment of a baseline lesion). Anything else would be silently ignored."""
    roles = {m.lesion_id: m.role for m in baseline.lesions}
    for visit in follow_ups:
        for m in visit.lesions:
            if m.fragment_of is not None:
                if roles.get(m.fragment_of) is not Role.TARGET:
                    raise ResponseInputError(
                        f"lesion {m.lesion_id!r} is a fragment of {m.fragment_of!r}, which is not a "
                        "baseline target lesion", m.source)
                continue
            known = roles.get(m.lesion_id)
            if known is None and m.role is not Role.NEW:
                raise ResponseInputError(
                    f"lesion {m.lesion_id!r} on {visit.date.isoformat()} is coded {m.role.value} but was "
                    "not assessed at baseline; code it as new", m.source)
            if known is not None and m.role is not known:
                raise ResponseInputError(
                    f"lesion {m.lesion_id!r} was {known.value} at baseline but is coded {m.role.value} on "
                    f"{visit.date.isoformat()}; a lesion keeps its role", m.source)


def build_series(assessments: Sequence[Assessment], treatments: Sequence[LocalTreatment] = (),
                 *, value: LesionValue = recist_value, require_targets: bool = False) -> Series:
    """Order assessments, check the baseline and flag treated and new-modality lesions.

    Raises :class:`ResponseInputError` for a baseline with no measurable lesion, more than five
    targets or more than two per organ, a target below the measurability threshold, a lesion
    measured twice at one visit or a negative size.
    """
    if not assessments:
        raise ResponseInputError("no lesion assessment in the input", "Bundle.entry")
    ordered = sorted(assessments, key=lambda a: a.date)
    dates = [a.date for a in ordered]
    if len(set(dates)) != len(dates):
        raise ResponseInputError("two assessments share one date; merge them", "Observation.effectiveDateTime")
    for visit in ordered:
        _check_visit(visit)
    baseline, follow_ups = ordered[0], tuple(ordered[1:])
    if not baseline.lesions:
        raise ResponseInputError("the baseline assessment holds no lesion", "Observation.focus")
    for m in baseline.lesions:
        if m.role is Role.NEW:
            raise ResponseInputError(
                f"lesion {m.lesion_id!r} is coded new at the baseline assessment "
                f"({baseline.date.isoformat()}); code it target or non-target", m.source)
    targets = _check_targets(baseline, value)
    non_targets = tuple(m for m in baseline.lesions if m.role is Role.NON_TARGET)
    if not targets and (require_targets or not non_targets):
        raise ResponseInputError(
            "the baseline has no measurable (target) lesion (RECIST 1.1 §3.1.1, §4.2)",
            baseline.lesions[0].source or "Observation.category")
    notes: list[str] = []
    treated: dict[str, date] = {}
    further: dict[str, date] = {}
    first_follow_up = follow_ups[0].date if follow_ups else None
    baseline_ids = set(baseline.by_id())
    _check_follow_up_roles(baseline, follow_ups)
    _check_further_increase(follow_ups)
    for tx in sorted(treatments, key=lambda t: t.performed):
        for lesion_id in tx.lesion_ids:
            if tx.performed <= baseline.date and lesion_id in {t.lesion_id for t in targets}:
                notes.append(
                    f"target lesion {lesion_id!r} was treated locally ({tx.therapy}, "
                    f"{tx.performed.isoformat()}) before baseline: RECIST 1.1 §3.1.3 counts such a "
                    "lesion measurable only if it has progressed since")
            elif tx.performed > baseline.date:
                treated.setdefault(lesion_id, tx.performed)
                if first_follow_up is not None and tx.performed >= first_follow_up:
                    further.setdefault(lesion_id, tx.performed)
    for lesion_id, when in sorted(treated.items()):
        if lesion_id in baseline_ids:
            kind = "by a further local therapy" if lesion_id in further else "locally"
            notes.append(f"lesion {lesion_id!r} treated {kind} on {when.isoformat()} (flagged)")
    new_modality: set[str] = set()
    seen_modalities = set(baseline.modalities)
    for visit in follow_ups:
        for m in visit.lesions:
            if (m.role is Role.NEW and m.lesion_id not in baseline_ids and m.modality is not None
                    and m.modality not in seen_modalities):
                new_modality.add(m.lesion_id)
                notes.append(
                    f"lesion {m.lesion_id!r} first seen on {visit.date.isoformat()} with "
                    f"{m.modality.value}, a modality not used before: a new baseline lesion, not "
                    "progression (003_… Rozenblum)")
        seen_modalities |= visit.modalities
    return Series(baseline, follow_ups, targets, non_targets, tuple(treatments), treated, further,
                  frozenset(new_modality), tuple(notes))
