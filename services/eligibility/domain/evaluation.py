"""Status per therapy from the rule results (docs/eligibility.md).

- ``ineligible``: an absolute contraindication is met, or an indication is certainly not met;
- ``insufficient-data``: otherwise, when an unknown input could still change the answer;
- ``eligible-with-caution``: only relative contraindications or warnings are met;
- ``eligible``: otherwise.

Statuses are ordered by what the unknowns could still do: with every unknown rule resolved
favourably the answer is the *best case*, resolved unfavourably the *worst case*; when the two
differ the answer is ``insufficient-data`` and :attr:`TherapyVerdict.missing` names exactly the
inputs of the unknown rules that could move it (absolute and indication rules always can;
relative and warning rules only while no other relative or warning is met).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum

from services.eligibility.domain.facts import PatientFacts
from services.eligibility.domain.logic import Tri
from services.eligibility.domain.rules import Kind, Outcome, Rule, RuleSet, evaluate_rule

__all__ = ["THERAPIES", "Reason", "Status", "TherapyVerdict", "evaluate_all", "evaluate_therapy"]

#: The 13 therapy codes of the public contract, in the order results are given.
THERAPIES: tuple[str, ...] = (
    "surgical-resection", "liver-transplant", "ablation-rfa", "ablation-mwa", "ablation-laser",
    "ablation-cryo", "ablation-ire", "tae", "ctace", "deb-tace", "sirt", "prrt", "ia-prrt",
)


class Status(Enum):
    ELIGIBLE = "eligible"
    CAUTION = "eligible-with-caution"
    INELIGIBLE = "ineligible"
    INSUFFICIENT = "insufficient-data"


@dataclass(frozen=True)
class Reason:
    """One rule's answer for one therapy, ready to be shown (rule id, kind, source, evidence)."""

    rule: Rule
    outcome: Outcome
    applies: bool
    decisive: bool

    @property
    def result(self) -> Tri:
        return self.outcome.value

    def text(self) -> str:
        """``[SIRT-ABS-BILIRUBIN · absolute · met] Impaired hepatic function ...``."""
        parts = [f"[{self.rule.id} · {self.rule.kind.value} · {self.result.value}] {self.rule.title}"
                 f" ({self.rule.threshold})"]
        if self.outcome.evidence:
            parts.append("; ".join(self.outcome.evidence))
        parts.append(f"Source: {self.rule.source}")
        if self.rule.disagreement:
            parts.append(f"Sources disagree: {self.rule.disagreement}")
        return ". ".join(parts)


@dataclass(frozen=True)
class TherapyVerdict:
    therapy: str
    status: Status
    reasons: tuple[Reason, ...]
    missing: tuple[str, ...]

    @property
    def deciding_sources(self) -> tuple[str, ...]:
        """Sources of the inputs that decided the status (decisive reasons first)."""
        chosen = [r for r in self.reasons if r.decisive] or list(self.reasons)
        return tuple(sorted({s for r in chosen for s in r.outcome.sources}))


def _is_bad(kind: Kind, value: Tri) -> bool:
    """The rule counts against the therapy."""
    if kind is Kind.INDICATION:
        return value is Tri.NOT_MET
    return value is Tri.MET


def evaluate_therapy(therapy: str, facts: PatientFacts, rules: RuleSet) -> TherapyVerdict:
    evaluated = [(rule, *evaluate_rule(rule, facts, rules)) for rule in rules.rules_for(therapy)]
    hard = (Kind.INDICATION, Kind.ABSOLUTE)
    hard_bad = [r.id for r, o, _ in evaluated if r.kind in hard and _is_bad(r.kind, o.value)]
    soft_met = [r.id for r, o, _ in evaluated if r.kind not in hard and o.value is Tri.MET]
    hard_unknown = [(r, o) for r, o, _ in evaluated if r.kind in hard and o.value is Tri.UNKNOWN]
    soft_unknown = [(r, o) for r, o, _ in evaluated if r.kind not in hard and o.value is Tri.UNKNOWN]

    missing: set[str] = set()
    if hard_bad:
        status = Status.INELIGIBLE
        decisive = set(hard_bad)
    else:
        decisive = set(soft_met)
        movers = list(hard_unknown)
        if not soft_met:
            movers.extend(soft_unknown)
        for _, outcome in movers:
            missing.update(outcome.missing)
        if movers:
            status = Status.INSUFFICIENT
            decisive = {r.id for r, _ in movers}
        elif soft_met:
            status = Status.CAUTION
        else:
            status = Status.ELIGIBLE
    reasons = tuple(Reason(r, o, applies, r.id in decisive) for r, o, applies in evaluated)
    order = {Tri.MET: 0, Tri.UNKNOWN: 1, Tri.NOT_MET: 2}
    reasons = tuple(sorted(reasons, key=lambda x: (not x.decisive, order[x.result] if x.rule.kind is not Kind.INDICATION else 1)))
    return TherapyVerdict(therapy, status, reasons, tuple(sorted(missing)))


def evaluate_all(facts: PatientFacts, rules: RuleSet,
                 therapies: Iterable[str] = THERAPIES) -> tuple[TherapyVerdict, ...]:
    """One verdict per therapy code, in contract order."""
    return tuple(evaluate_therapy(t, facts, rules) for t in therapies)
