"""Values reported as bounds (FHIR ``Quantity.comparator``: Ki-67 "<2 %", bilirubin "<0.3")."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from services.eligibility.domain.facts import PatientFacts, Reading
from services.eligibility.domain.logic import Tri
from services.eligibility.domain.rules import Compare, _bounded_compare, evaluate_test
from services.eligibility.ruleset import default_ruleset
from tests.unit.eligibility.helpers import EVAL, RECENT

OPS = {"<": lambda a, b: a < b, "<=": lambda a, b: a <= b, ">": lambda a, b: a > b, ">=": lambda a, b: a >= b}


def _possible(bound: Decimal, comparator: str) -> list[Decimal]:
    """Values the bound allows, sampled finely around everything that matters."""
    steps = [Decimal(k) / 4 for k in range(-40, 41)]
    return [bound + s for s in steps if OPS[comparator](bound + s, bound)]


@settings(max_examples=50, deadline=None)
@given(bound=st.integers(0, 6), threshold=st.integers(0, 6),
       comparator=st.sampled_from(sorted(OPS)), op=st.sampled_from(sorted(OPS)))
def test_bounded_compare_agrees_with_the_values_the_bound_allows(bound: int, threshold: int, comparator: str,
                                                                 op: str) -> None:
    b, t = Decimal(bound), Decimal(threshold)
    answers = {OPS[op](x, t) for x in _possible(b, comparator)}
    result = _bounded_compare(b, comparator, op, t)
    expected = Tri.MET if answers == {True} else Tri.NOT_MET if answers == {False} else Tri.UNKNOWN
    assert result is expected


def _facts(value: str, comparator: str) -> PatientFacts:
    reading = Reading("ki67", Decimal(value), "%", RECENT, "Observation/k", comparator=comparator)
    return PatientFacts.from_readings("p", EVAL, [reading])


def test_ki67_below_two_percent_settles_the_transplant_limit() -> None:
    outcome = evaluate_test(Compare("ki67", "<", Decimal(10)), _facts("2", "<"), default_ruleset())
    assert outcome.value is Tri.MET and "<2 %" in outcome.evidence[0]


def test_ki67_below_fifteen_does_not_settle_it() -> None:
    outcome = evaluate_test(Compare("ki67", "<", Decimal(10)), _facts("15", "<"), default_ruleset())
    assert outcome.value is Tri.UNKNOWN and outcome.missing == frozenset({"ki67"})
