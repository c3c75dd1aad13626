"""Status per therapy from the rule results (docs/eligibility.md).

- ``ineligible``: an absolute contraindication is met, or an indication is certainly not met;
- ``insufficient-data``: otherwise, when an unknown input could make the therapy ineligible (an
  unknown indication or absolute contraindication);
- ``eligible-with-caution``: relative contraindications or warnings are met, or are unknown: an
  input that can at most add a caution does not make the answer unknown, the caution names what
  to check ("not recorded: ... check it");
- ``eligible``: otherwise.

:attr:`TherapyVerdict.missing` lists the inputs of every unknown rule, whatever the status they
lead to (docs/eligibility.md: the missing inputs are listed either way).
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
        if self.result is Tri.UNKNOWN and self.outcome.missing:
            parts.append(f"Not recorded: {', '.join(self.outcome.missing)}; check it before treating")
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
        for _, outcome in (*hard_unknown, *soft_unknown):
            missing.update(outcome.missing)
        if hard_unknown:
            status = Status.INSUFFICIENT
            decisive = {r.id for r, _ in hard_unknown}
        elif soft_met or soft_unknown:
            status = Status.CAUTION
            decisive = set(soft_met) | {r.id for r, _ in soft_unknown}
        else:
            status = Status.ELIGIBLE
            decisive = set()
    reasons = tuple(Reason(r, o, applies, r.id in decisive) for r, o, applies in evaluated)
    order = {Tri.MET: 0, Tri.UNKNOWN: 1, Tri.NOT_MET: 2}
    reasons = tuple(sorted(reasons, key=lambda x: (not x.decisive, order[x.result] if x.rule.kind is not Kind.INDICATION else 1)))
    return TherapyVerdict(therapy, status, reasons, tuple(sorted(missing)))


def evaluate_all(facts: PatientFacts, rules: RuleSet,
                 therapies: Iterable[str] = THERAPIES) -> tuple[TherapyVerdict, ...]:
    """One verdict per therapy code, in contract order."""
    return tuple(evaluate_therapy(t, facts, rules) for t in therapies)
