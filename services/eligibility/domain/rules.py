"""Rules as data: the test vocabulary of the rule set and its three-valued evaluation.

A :class:`Rule` (one entry of ``rules/eligibility-rules.yaml``) has an id, the therapies it
concerns, a kind (indication, absolute or relative contraindication, warning), the inputs it
reads, a threshold in words, its source and, where sources disagree, the disagreement.
:func:`evaluate_rule` answers met / not met / unknown with the evidence used and the inputs
whose absence left it unknown.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from enum import Enum

from services.eligibility.domain.facts import Fact, FactQuality, PatientFacts, fact_quality
from services.eligibility.domain.geometry import AblationFit, AblationZone, ablation_fit
from services.eligibility.domain.logic import Tri, all_of, any_of, negate

__all__ = [
    "AblationTest",
    "AllOf",
    "AnyOf",
    "Compare",
    "Consensus",
    "InputSpec",
    "Kind",
    "Not",
    "Outcome",
    "Present",
    "Rule",
    "RuleSet",
    "Staleness",
    "Test",
    "evaluate_rule",
    "evaluate_test",
]

Scalar = Decimal | bool | str


class Kind(Enum):
    INDICATION = "indication"
    ABSOLUTE = "absolute"
    RELATIVE = "relative"
    WARNING = "warning"


@dataclass(frozen=True)
class Staleness:
    fresh_days: int | None
    max_days: int | None


@dataclass(frozen=True)
class InputSpec:
    """One measured input of the catalogue: unit, staleness class, plausible range, default."""

    name: str
    display: str
    unit: str
    staleness: str
    low: Decimal | None = None
    high: Decimal | None = None
    default: Scalar | None = None


@dataclass(frozen=True)
class Compare:
    """``input op value``; ``unknown_at``: input values for which the answer is unknown."""

    input: str
    op: str
    value: Scalar | tuple[Scalar, ...]
    unknown_at: tuple[Scalar, ...] = ()


@dataclass(frozen=True)
class Present:
    """A closed-world record: ``kind`` is condition, medication or prior_therapy."""

    kind: str
    code: str


@dataclass(frozen=True)
class AblationTest:
    modality: str
    fit: AblationFit
    margin_mm: Decimal | None = None


@dataclass(frozen=True)
class AllOf:
    items: tuple[Test, ...]


@dataclass(frozen=True)
class AnyOf:
    items: tuple[Test, ...]


@dataclass(frozen=True)
class Not:
    item: Test


@dataclass(frozen=True)
class Consensus:
    """Two ways of knowing one thing (Ki-67 and grade): known answers must agree."""

    items: tuple[Test, ...]


Test = Compare | Present | AblationTest | AllOf | AnyOf | Not | Consensus


@dataclass(frozen=True)
class Rule:
    id: str
    therapies: tuple[str, ...]
    kind: Kind
    title: str
    inputs: tuple[tuple[str, str], ...]  # (name, unit)
    threshold: str
    test: Test
    source: str
    when: Test | None = None
    disagreement: str = ""


@dataclass(frozen=True)
class RuleSet:
    """A versioned rule set (the YAML file, loaded by ``services.eligibility.ruleset``)."""

    version: str
    name: str
    rules: tuple[Rule, ...]
    inputs: Mapping[str, InputSpec]
    staleness: Mapping[str, Staleness]
    zones: Mapping[str, AblationZone]
    margin_mm: Decimal

    def rules_for(self, therapy: str) -> tuple[Rule, ...]:
        return tuple(r for r in self.rules if therapy in r.therapies)


@dataclass(frozen=True)
class Outcome:
    """The answer of a test: truth, evidence lines, unknown inputs, sources read.

    ``undecided``: inputs among ``missing`` that are recorded and usable but whose value does
    not settle the test (``unknown_at``, e.g. ECOG 2 for "Karnofsky < 60"). Asking for them
    again cannot help when another input of a consensus can settle it.
    """

    value: Tri
    evidence: tuple[str, ...] = ()
    missing: frozenset[str] = frozenset()
    sources: frozenset[str] = frozenset()
    remarks: tuple[str, ...] = ()
    undecided: frozenset[str] = frozenset()


@dataclass
class _Context:
    facts: PatientFacts
    rules: RuleSet
    remarks: list[str] = field(default_factory=list)


def _usable(ctx: _Context, name: str) -> tuple[Fact | None, str]:
    """The fact if usable, else None with the reason it is not."""
    fact = ctx.facts.values.get(name)
    spec = ctx.rules.inputs.get(name)
    if fact is None:
        if spec is not None and spec.default is not None:
            return Fact(name, spec.default, spec.unit, None, (), assumed=True), ""
        return None, "not recorded"
    limits = ctx.rules.staleness.get(spec.staleness) if spec else None
    quality = fact_quality(fact, ctx.facts.evaluated_on,
                           limits.fresh_days if limits else None, limits.max_days if limits else None)
    if quality is FactQuality.CONFLICTING:
        return None, fact.describe()
    if quality is FactQuality.STALE:
        return None, f"{fact.describe()} is older than {limits.max_days if limits else '?'} days (stale)"
    return fact, ("old" if quality is FactQuality.OLD else "")


def _display(ctx: _Context, name: str) -> str:
    spec = ctx.rules.inputs.get(name)
    return spec.display if spec else name


def _compare(left: Scalar, op: str, right: Scalar | tuple[Scalar, ...]) -> bool:
    if op == "in":
        return isinstance(right, tuple) and left in right
    if op == "not_in":
        return isinstance(right, tuple) and left not in right
    if op == "==":
        return left == right and type(left) is type(right)
    if op == "!=":
        return not (left == right and type(left) is type(right))
    if not isinstance(left, Decimal) or not isinstance(right, Decimal):
        raise TypeError(f"{op} needs numbers, got {left!r} and {right!r}")
    return {"<": left < right, "<=": left <= right, ">": left > right, ">=": left >= right}[op]


def _eval_compare(test: Compare, ctx: _Context) -> Outcome:
    fact, why = _usable(ctx, test.input)
    label = _display(ctx, test.input)
    if fact is None:
        return Outcome(Tri.UNKNOWN, (f"{label}: {why}",), frozenset({test.input}))
    evidence = f"{label} {fact.describe()}"
    if why == "old":
        evidence += " — older than the fresh limit: lower confidence"
    if fact.value in test.unknown_at and not isinstance(fact.value, bool):
        return Outcome(Tri.UNKNOWN, (f"{evidence}: does not settle the rule",),
                       frozenset({test.input}), frozenset(fact.sources), undecided=frozenset({test.input}))
    if fact.comparator:
        value = _bounded_compare(fact.value, fact.comparator, test.op, test.value)
        if value is Tri.UNKNOWN:
            return Outcome(value, (f"{evidence}: a bound that does not settle the rule",),
                           frozenset({test.input}), frozenset(fact.sources))
        return Outcome(value, (evidence,), frozenset(), frozenset(fact.sources))
    return Outcome(Tri.of(_compare(fact.value, test.op, test.value)), (evidence,), frozenset(),
                   frozenset(fact.sources))


def _bounded_compare(bound: Scalar, comparator: str, op: str, threshold: Scalar | tuple[Scalar, ...]) -> Tri:
    """``x op threshold`` when only ``x comparator bound`` is known (e.g. Ki-67 "<2 %").

    Met when every value the bound allows satisfies it, not met when none does, else unknown.
    """
    if not isinstance(bound, Decimal) or not isinstance(threshold, Decimal) or op not in {"<", "<=", ">", ">="}:
        return Tri.UNKNOWN
    below = comparator in {"<", "<="}  # x lies below the bound
    closed = comparator in {"<=", ">="}  # the bound itself is possible
    small_true = op in {"<", "<="}  # the test holds for small x
    if below == small_true:
        # the interval reaches the side where the test holds: it can only be all-true
        if closed:
            return Tri.MET if _compare(bound, op, threshold) else Tri.UNKNOWN
        ok = bound <= threshold if below else bound >= threshold
        return Tri.MET if ok else Tri.UNKNOWN
    # the interval reaches the side where the test fails: it can only be all-false
    strict_op = op in {"<", ">"}
    if below:  # x < bound (or <=), test x > t (or >=)
        none = bound <= threshold if (not closed or strict_op) else bound < threshold
    else:  # x > bound (or >=), test x < t (or <=)
        none = bound >= threshold if (not closed or strict_op) else bound > threshold
    return Tri.NOT_MET if none else Tri.UNKNOWN


def _eval_present(test: Present, ctx: _Context) -> Outcome:
    table = {"condition": ctx.facts.conditions, "medication": ctx.facts.medications,
             "prior_therapy": ctx.facts.prior_therapies}[test.kind]
    sources = table.get(test.code)
    if sources:
        return Outcome(Tri.MET, (f"{test.kind} {test.code} recorded",), frozenset(), frozenset(sources))
    return Outcome(Tri.NOT_MET, (f"{test.kind} {test.code} not recorded (assumed absent)",))


def _eval_ablation(test: AblationTest, ctx: _Context) -> Outcome:
    zone = ctx.rules.zones[test.modality]
    margin = test.margin_mm if test.margin_mm is not None else ctx.rules.margin_mm
    inner = _eval_compare(Compare("max_lesion_diameter", ">=", Decimal(0)), ctx)
    if inner.value is Tri.UNKNOWN:
        return inner
    fact = ctx.facts.values["max_lesion_diameter"]
    assert isinstance(fact.value, Decimal)
    fit = ablation_fit(zone, fact.value, margin)
    needed = fact.value + 2 * margin
    reach = ", ".join(x for x in (
        f"single {zone.single_mm} mm" if zone.single_mm is not None else "",
        f"cluster {zone.cluster_mm} mm" if zone.cluster_mm is not None else "") if x)
    evidence = (*inner.evidence,
                f"needed zone {needed} mm (lesion + 2 × {margin} mm margin); {test.modality} reaches {reach}: {fit.value}")
    return Outcome(Tri.of(fit is test.fit), evidence, frozenset(), inner.sources)


def _combine(children: Sequence[Outcome], value: Tri) -> Outcome:
    decided = value is not Tri.UNKNOWN
    relevant = [c for c in children if (c.value is value) or not decided]
    return Outcome(
        value,
        tuple(dict.fromkeys(e for c in relevant for e in c.evidence)),  # "2 < x < 3" reads x once
        frozenset() if decided else frozenset(m for c in children for m in c.missing),
        frozenset(s for c in relevant for s in c.sources),
    )


def evaluate_test(test: Test, facts: PatientFacts, rules: RuleSet) -> Outcome:
    """Evaluate one test three-valued."""
    return _eval(test, _Context(facts, rules))


def _eval(test: Test, ctx: _Context) -> Outcome:
    if isinstance(test, Compare):
        return _eval_compare(test, ctx)
    if isinstance(test, Present):
        return _eval_present(test, ctx)
    if isinstance(test, AblationTest):
        return _eval_ablation(test, ctx)
    if isinstance(test, AllOf):
        children = [_eval(t, ctx) for t in test.items]
        return _combine(children, all_of(c.value for c in children))
    if isinstance(test, AnyOf):
        children = [_eval(t, ctx) for t in test.items]
        return _combine(children, any_of(c.value for c in children))
    if isinstance(test, Not):
        inner = _eval(test.item, ctx)
        return Outcome(negate(inner.value), inner.evidence, inner.missing, inner.sources)
    children = [_eval(t, ctx) for t in test.items]
    known = {c.value for c in children if c.value is not Tri.UNKNOWN}
    if len(known) == 1:
        value = known.pop()
        kept = [c for c in children if c.value is value]
        return Outcome(value, tuple(e for c in kept for e in c.evidence), frozenset(),
                       frozenset(s for c in kept for s in c.sources))
    evidence = tuple(e for c in children for e in c.evidence)
    if known:
        # the recorded inputs disagree: every one of them is to be checked again
        evidence = (*evidence, "these inputs disagree")
        missing = frozenset(_inputs_of(test))
    else:
        # ask only for what could settle it: an input recorded with a value that cannot
        # (ECOG 2 for Karnofsky, G2 for Ki-67 < 10 %) is not missing while another one can
        missing = frozenset(m for c in children for m in c.missing - c.undecided)
        if not missing:
            missing = frozenset(m for c in children for m in c.missing)
    return Outcome(Tri.UNKNOWN, evidence, missing, frozenset(s for c in children for s in c.sources))


def _inputs_of(test: Test) -> tuple[str, ...]:
    if isinstance(test, Compare):
        return (test.input,)
    if isinstance(test, AblationTest):
        return ("max_lesion_diameter",)
    if isinstance(test, Present):
        return ()
    if isinstance(test, Not):
        return _inputs_of(test.item)
    return tuple(i for t in test.items for i in _inputs_of(t))


def evaluate_rule(rule: Rule, facts: PatientFacts, rules: RuleSet) -> tuple[Outcome, bool]:
    """Evaluate a rule: (outcome, applies).

    For an indication, *met* means the requirement holds (or the rule does not apply); for
    the other kinds, *met* means the contraindication or warning is present (and applies).
    """
    ctx = _Context(facts, rules)
    test_outcome = _eval(rule.test, ctx)
    if rule.when is None:
        return test_outcome, True
    when = _eval(rule.when, ctx)
    if when.value is Tri.NOT_MET:
        value = Tri.MET if rule.kind is Kind.INDICATION else Tri.NOT_MET
        return Outcome(value, (*when.evidence, "rule does not apply"), frozenset(), when.sources), False
    if rule.kind is Kind.INDICATION:
        combined = any_of([negate(when.value), test_outcome.value])
    else:
        combined = all_of([when.value, test_outcome.value])
    parts = [when, test_outcome]
    merged = _combine(parts, combined)
    if combined is Tri.UNKNOWN:
        merged = Outcome(combined, merged.evidence,
                         frozenset(m for p in parts if p.value is Tri.UNKNOWN for m in p.missing),
                         merged.sources)
    return merged, when.value is not Tri.UNKNOWN
