"""Invariants of the size criteria, checked with hypothesis.

- Scaling every diameter by one factor changes no category. RECIST 1.1 has absolute
  thresholds (10 mm measurable, +5 mm for PD); they are kept out of play by drawing every
  non-zero diameter ≥ 25 mm and factors ≥ 1, so +20 % always means ≥ +5 mm. mRECIST, EASL and
  Choi are purely relative. iRECIST confirmation uses an absolute +5 mm by design and is not
  scale-free, so it is checked only for lesion order.
- The order of lesions within a visit, and of visits in the input, changes nothing.
"""

from __future__ import annotations

import random
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from services.response.domain.criteria import evaluate
from services.response.domain.model import Assessment
from tests.fixtures.response_cases import tgt, visit

SIZES = st.one_of(st.just(0), st.integers(min_value=250, max_value=2000)).map(lambda t: Decimal(t) / 10)
BASELINE_SIZES = st.integers(min_value=250, max_value=2000).map(lambda t: Decimal(t) / 10)
FACTORS = st.integers(min_value=10, max_value=50).map(lambda t: Decimal(t) / 10)


@st.composite
def histories(draw: st.DrawFn) -> list[list[Decimal]]:
    """Per visit, one size per lesion (baseline sizes all measurable)."""
    lesions = draw(st.integers(min_value=1, max_value=5))
    visits = draw(st.integers(min_value=2, max_value=5))
    baseline = [draw(BASELINE_SIZES) for _ in range(lesions)]
    follow = [[draw(SIZES) for _ in range(lesions)] for _ in range(visits - 1)]
    return [baseline, *follow]


def build(history: list[list[Decimal]], factor: Decimal = Decimal(1)) -> list[Assessment]:
    out = []
    for k, sizes in enumerate(history):
        lesions = [tgt(f"L{i}", str(s * factor), viable=str(s * factor), hu="80")
                   for i, s in enumerate(sizes)]
        out.append(visit(8 * k, *lesions))
    return out


def categories(criterion: str, assessments: list[Assessment]) -> tuple[object, ...]:
    evaluation = evaluate(criterion, assessments)
    return (tuple((v.overall, v.vs_baseline, v.vs_nadir) for v in evaluation.result.visits),
            evaluation.best)


@settings(max_examples=50, deadline=None)
@given(history=histories(), factor=FACTORS)
def test_scaling_every_diameter_changes_no_category(history, factor):
    for criterion in ("recist-1.1", "mrecist", "easl", "choi"):
        assert categories(criterion, build(history)) == categories(criterion, build(history, factor)), criterion


@settings(max_examples=50, deadline=None)
@given(history=histories(), seed=st.integers(min_value=0, max_value=10_000))
def test_lesion_and_visit_order_changes_nothing(history, seed):
    shuffler = random.Random(seed)
    ordered = build(history)
    shuffled = []
    for a in ordered:
        lesions = list(a.lesions)
        shuffler.shuffle(lesions)
        shuffled.append(Assessment(a.date, tuple(lesions), a.pet_reference))
    shuffler.shuffle(shuffled)
    for criterion in ("recist-1.1", "mrecist", "easl", "choi", "irecist"):
        assert categories(criterion, ordered) == categories(criterion, shuffled), criterion


@settings(max_examples=50, deadline=None)
@given(history=histories())
def test_percent_changes_are_exact(history):
    result = evaluate("recist-1.1", build(history)).result
    base = sum(history[0], Decimal(0))
    for v, sizes in zip(result.visits, history[1:], strict=True):
        assert v.measure == sum(sizes, Decimal(0))
        assert v.percent_vs_baseline == (v.measure - base) * 100 / base
