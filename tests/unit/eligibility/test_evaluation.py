"""Status per therapy (docs/eligibility.md), missing inputs, staleness, newest value, conflicts,
and the two invariants of the issue as hypothesis properties."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.eligibility.domain.evaluation import THERAPIES, Status, evaluate_all, evaluate_therapy
from services.eligibility.domain.facts import (
    Fact,
    FactQuality,
    PatientFacts,
    Reading,
    fact_quality,
    newest_fact,
    whole_months_between,
    whole_years_between,
)
from services.eligibility.ruleset import default_ruleset
from tests.unit.eligibility.helpers import CONDITION_CODES, EVAL, make_facts

RULES = default_ruleset()

#: A SIRT candidate with every SIRT input known and unremarkable.
SIRT_OK: dict[str, Any] = {"lung_shunt": 8, "bilirubin": 0.8, "tumor_burden": 20, "albumin": 4.0, "ecog": 0,
                           "extrahepatic_state": "absent"}


def test_sirt_all_known_and_normal_is_eligible() -> None:
    verdict = evaluate_therapy("sirt", make_facts(SIRT_OK), RULES)
    assert verdict.status is Status.ELIGIBLE
    assert verdict.missing == ()


def test_absolute_contraindication_makes_ineligible_even_with_unknowns() -> None:
    facts = make_facts({"lung_shunt": 25})  # every other input unknown
    verdict = evaluate_therapy("sirt", facts, RULES)
    assert verdict.status is Status.INELIGIBLE
    assert [r.rule.id for r in verdict.reasons if r.decisive] == ["SIRT-ABS-LUNG-SHUNT"]
    assert verdict.missing == ()


def test_relative_only_gives_caution() -> None:
    verdict = evaluate_therapy("sirt", make_facts({**SIRT_OK, "ecog": 3}), RULES)
    assert verdict.status is Status.CAUTION
    assert {r.rule.id for r in verdict.reasons if r.decisive} == {"SIRT-REL-ECOG"}


def test_missing_input_that_could_change_the_answer_is_listed_exactly() -> None:
    values = dict(SIRT_OK)
    del values["lung_shunt"]
    verdict = evaluate_therapy("sirt", make_facts(values), RULES)
    assert verdict.status is Status.INSUFFICIENT
    assert verdict.missing == ("lung_shunt",)


def test_an_unknown_input_that_can_at_most_add_a_caution_gives_a_caution_naming_it() -> None:
    values = {k: v for k, v in SIRT_OK.items() if k != "ecog"}  # ECOG unknown (relative rule)
    verdict = evaluate_therapy("sirt", make_facts(values), RULES)
    assert verdict.status is Status.CAUTION and verdict.missing == ("ecog",)
    reason = next(r for r in verdict.reasons if r.rule.id == "SIRT-REL-ECOG")
    assert reason.decisive and "Not recorded: ecog" in reason.text()
    # with the caution input known and unremarkable the therapy is plainly eligible
    assert evaluate_therapy("sirt", make_facts(SIRT_OK), RULES).status is Status.ELIGIBLE
    # a relative rule already met: still a caution, the unknown one still listed
    caution = evaluate_therapy("sirt", make_facts(values, flags=["pre-existing-liver-disease"]), RULES)
    assert caution.status is Status.CAUTION and caution.missing == ("ecog",)


@pytest.mark.parametrize("therapy", ["tae", "ctace"])
def test_missing_creatinine_whose_only_rule_is_a_warning_is_a_caution_not_insufficient_data(therapy: str) -> None:
    values = {k: v for k, v in TACE_OK.items() if k != "creatinine"}
    verdict = evaluate_therapy(therapy, make_facts(values), RULES)
    assert verdict.status is Status.CAUTION
    assert verdict.missing == ("creatinine",)
    reason = next(r for r in verdict.reasons if r.rule.id == "TACE-WARN-RETNET-CREATININE")
    assert reason.decisive and "Not recorded: creatinine" in reason.text()
    # the same record with a normal creatinine is eligible; one above 2.0 mg/dL a caution that is met
    assert evaluate_therapy(therapy, make_facts(TACE_OK), RULES).status is Status.ELIGIBLE
    high = evaluate_therapy(therapy, make_facts({**TACE_OK, "creatinine": 2.1}), RULES)
    assert high.status is Status.CAUTION and high.missing == ()


def test_an_unknown_absolute_input_still_gives_insufficient_data_beside_an_unknown_caution() -> None:
    values = {k: v for k, v in TACE_OK.items() if k not in ("creatinine", "bilirubin")}
    verdict = evaluate_therapy("ctace", make_facts(values), RULES)
    assert verdict.status is Status.INSUFFICIENT
    assert verdict.missing == ("bilirubin", "creatinine")


def test_indication_certainly_not_met_is_ineligible() -> None:
    verdict = evaluate_therapy("ablation-mwa", make_facts({"lesion_count": 8}), RULES)
    assert verdict.status is Status.INELIGIBLE
    assert any(r.rule.id == "ABL-IND-OLIGO" and r.decisive for r in verdict.reasons)


def test_kleene_and_decides_with_one_input_missing() -> None:
    # burden 40 % settles "burden > 50 % and albumin < 3" without albumin
    verdict = evaluate_therapy("sirt", make_facts({k: v for k, v in {**SIRT_OK, "tumor_burden": 40}.items()
                                                    if k != "albumin"}), RULES)
    assert verdict.status is Status.ELIGIBLE


def test_every_therapy_gets_a_verdict() -> None:
    verdicts = evaluate_all(make_facts({}), RULES)
    assert tuple(v.therapy for v in verdicts) == THERAPIES
    assert len(THERAPIES) == 13


# -- newest value, conflicts, staleness ------------------------------------------------------

def _r(value: str, on: date, src: str) -> Reading:
    return Reading("bilirubin", Decimal(value), "mg/dL", on, src)


def test_newest_value_wins() -> None:
    fact = newest_fact([_r("3.5", EVAL - timedelta(days=40), "Observation/a"),
                        _r("1.0", EVAL - timedelta(days=2), "Observation/b")])
    assert fact.value == Decimal("1.0") and fact.sources == ("Observation/b",)


def test_conflicting_values_on_the_same_date_are_reported_not_averaged() -> None:
    day = EVAL - timedelta(days=2)
    fact = newest_fact([_r("1.0", day, "Observation/a"), _r("3.4", day, "Observation/b")])
    assert fact.conflicting and set(fact.conflict) | {fact.value} == {Decimal("1.0"), Decimal("3.4")}
    facts = PatientFacts("p", EVAL, {"bilirubin": fact})
    verdict = evaluate_therapy("sirt", facts, RULES)
    reason = next(r for r in verdict.reasons if r.rule.id == "SIRT-ABS-BILIRUBIN")
    assert reason.result.value == "unknown"
    assert "conflicting" in reason.text() and "1" in reason.text() and "3.4" in reason.text()
    assert "bilirubin" in verdict.missing


def test_equal_values_on_the_same_date_are_no_conflict() -> None:
    day = EVAL - timedelta(days=2)
    fact = newest_fact([_r("1.0", day, "Observation/a"), _r("1.00", day, "Observation/b")])
    assert not fact.conflicting and fact.sources == ("Observation/a", "Observation/b")


def test_staleness_policy_for_labs() -> None:
    lab = RULES.staleness["lab"]
    for days, expected in ((30, FactQuality.FRESH), (31, FactQuality.OLD), (90, FactQuality.OLD),
                           (91, FactQuality.STALE)):
        fact = Fact("bilirubin", Decimal(1), "mg/dL", EVAL - timedelta(days=days), ("Observation/x",))
        assert fact_quality(fact, EVAL, lab.fresh_days, lab.max_days) is expected, days


def test_stale_lab_is_unknown_and_old_lab_lowers_confidence() -> None:
    stale = make_facts({**SIRT_OK}, on=EVAL - timedelta(days=120))
    verdict = evaluate_therapy("sirt", stale, RULES)
    assert verdict.status is Status.INSUFFICIENT
    assert "bilirubin" in verdict.missing
    old = make_facts({**SIRT_OK}, on=EVAL - timedelta(days=60))
    verdict = evaluate_therapy("sirt", old, RULES)
    assert verdict.status is Status.ELIGIBLE
    assert any("lower confidence" in r.text() for r in verdict.reasons)


def test_pathology_never_goes_stale() -> None:
    facts = make_facts({"ki67": 5}, on=EVAL - timedelta(days=3000))
    verdict = evaluate_therapy("liver-transplant", facts, RULES)
    reason = next(r for r in verdict.reasons if r.rule.id == "LT-IND-KI67")
    assert reason.result.value == "met"


def test_age_and_months_helpers() -> None:
    assert whole_years_between(date(1960, 11, 21), EVAL) == 65
    assert whole_years_between(date(1960, 11, 20), EVAL) == 66
    assert whole_months_between(date(2026, 5, 20), EVAL) == 6
    assert whole_months_between(date(2026, 5, 21), EVAL) == 5


def test_stable_months_derived_from_liver_state() -> None:
    readings = [Reading("liver_state", "stable", "{code}", EVAL, "Observation/s", since=date(2026, 5, 20))]
    facts = PatientFacts.from_readings("p", EVAL, readings)
    assert facts.values["liver_stable_months"].value == Decimal(6)
    readings = [Reading("liver_state", "progressing", "{code}", EVAL, "Observation/s", since=date(2020, 1, 1))]
    assert PatientFacts.from_readings("p", EVAL, readings).values["liver_stable_months"].value == 0


# -- properties ------------------------------------------------------------------------------

_RANK = {Status.ELIGIBLE: 0, Status.CAUTION: 1, Status.INELIGIBLE: 3}

numeric = {
    "bilirubin": st.sampled_from([0.5, 1.9, 2.0, 2.1, 2.9, 3.0, 3.6, 3.7, 5.0]),
    "albumin": st.sampled_from([2.5, 2.9, 3.0, 3.1, 4.2]),
    "inr": st.sampled_from([1.0, 1.5, 1.6, 2.2]),
    "platelets": st.sampled_from([40, 50, 74, 75, 200]),
    "creatinine": st.sampled_from([0.8, 2.0, 2.1]),
    "creatinine_clearance": st.sampled_from([40, 50, 90]),
    "hemoglobin": st.sampled_from([7.5, 8, 12]),
    "leukocytes": st.sampled_from([1.5, 2, 6]),
    "ecog": st.sampled_from([0, 1, 2, 3, 4]),
    "karnofsky": st.sampled_from([40, 60, 90]),
    "ki67": st.sampled_from([1, 9.9, 10, 20, 25]),
    "grade": st.sampled_from([1, 2, 3]),
    "lung_shunt": st.sampled_from([5, 20, 21, 30]),
    "tumor_burden": st.sampled_from([10, 30, 49, 50, 70, 71, 76]),
    "lesion_count": st.sampled_from([1, 3, 4, 5, 9]),
    "max_lesion_diameter": st.sampled_from([8, 20, 30, 36, 51, 65]),
    "krenning": st.sampled_from([0, 1, 2, 3, 4]),
    "resectable_fraction": st.sampled_from([50, 70, 90, 100]),
    "age": st.sampled_from([40, 55, 60, 61, 77]),
    "liver_stable_months": st.sampled_from([0, 5, 6, 12]),
    "hilar_lesion": st.booleans(),
    "perivascular_lesion": st.booleans(),
    "primary_resected": st.booleans(),
    "ssa_refractory": st.booleans(),
    "trial_enrolled": st.booleans(),
    "primary_site": st.sampled_from(["small-intestine", "pancreas", "colorectum", "thyroid-medullary",
                                     "thyroid-differentiated", "unknown"]),
    "extrahepatic_state": st.sampled_from(["absent", "stable", "progressing"]),
    "liver_state": st.sampled_from(["stable", "progressing"]),
}

patients = st.fixed_dictionaries({}, optional=numeric).flatmap(
    lambda values: st.tuples(st.just(values), st.sets(st.sampled_from(sorted(CONDITION_CODES)), max_size=3),
                             st.sets(st.sampled_from(["anti-vegf-tki", "chemotherapy"]), max_size=2)))


@settings(max_examples=50, deadline=None)
@given(patient=patients, added=st.sampled_from(sorted(CONDITION_CODES | {"anti-vegf-tki", "chemotherapy"})))
def test_adding_a_contraindication_never_makes_a_therapy_more_eligible(patient: Any, added: str) -> None:
    values, conditions, meds = patient
    before = make_facts(values, flags=[*conditions, *meds])
    after = make_facts(values, flags=[*conditions, *meds, added])
    for b, a in zip(evaluate_all(before, RULES), evaluate_all(after, RULES), strict=True):
        if b.status is Status.INSUFFICIENT:
            assert a.status is not Status.ELIGIBLE, (b.therapy, added)
        elif a.status is Status.INSUFFICIENT:
            raise AssertionError(f"{b.therapy}: a recorded condition created an unknown")
        else:
            assert _RANK[a.status] >= _RANK[b.status], (b.therapy, added, b.status, a.status)


@settings(max_examples=50, deadline=None)
@given(patient=patients, data=st.data())
def test_removing_an_input_never_jumps_between_decided_answers(patient: Any, data: st.DataObject) -> None:
    values, conditions, meds = patient
    if not values:
        return
    removed = data.draw(st.sampled_from(sorted(values)))
    full = make_facts(values, flags=[*conditions, *meds])
    fewer = make_facts({k: v for k, v in values.items() if k != removed}, flags=[*conditions, *meds])
    for b, a in zip(evaluate_all(full, RULES), evaluate_all(fewer, RULES), strict=True):
        if b.status is not Status.INSUFFICIENT and a.status is not Status.INSUFFICIENT:
            assert a.status is b.status, (b.therapy, removed, b.status, a.status)
        if a.status is Status.INSUFFICIENT:
            assert a.missing, a.therapy


# -- missing inputs: exactly those that could change the answer ------------------------------

#: A PRRT candidate with every NETTER-1 input known and normal except the performance status.
PRRT_OK: dict[str, Any] = {"primary_site": "small-intestine", "krenning": 3, "ki67": 5, "ssa_refractory": True,
                           "creatinine_clearance": 80, "hemoglobin": 12, "leukocytes": 5, "platelets": 200,
                           "bilirubin": 0.8, "albumin": 4.0}
#: A Milan-NET transplant candidate with everything but the proliferation index known and favourable.
LT_OK: dict[str, Any] = {"age": 45, "primary_site": "small-intestine", "primary_resected": True, "tumor_burden": 20,
                         "liver_stable_months": 12, "extrahepatic_state": "absent"}


def test_ecog_2_without_karnofsky_asks_for_karnofsky_only() -> None:
    """ECOG 2 is recorded (it maps to Karnofsky 50-60, Oken 1982) and cannot settle "Karnofsky < 60";
    only a Karnofsky score can. Asking for the ECOG again would not change the answer."""
    verdict = evaluate_therapy("prrt", make_facts({**PRRT_OK, "ecog": 2}), RULES)
    assert verdict.status is Status.INSUFFICIENT
    assert verdict.missing == ("karnofsky",)
    assert evaluate_therapy("prrt", make_facts({**PRRT_OK, "ecog": 2, "karnofsky": 60}), RULES).status \
        is Status.ELIGIBLE
    assert evaluate_therapy("prrt", make_facts({**PRRT_OK, "ecog": 2, "karnofsky": 50}), RULES).status \
        is Status.INELIGIBLE


def test_grade_2_without_ki67_asks_for_ki67_only() -> None:
    """G2 (Ki-67 3-20 %, WHO 2019) does not settle Milan-NET "Ki-67 < 10 %" (Cazzato 2021 section 2): the Ki-67
    index is what is missing, not the recorded grade."""
    verdict = evaluate_therapy("liver-transplant", make_facts({**LT_OK, "grade": 2}), RULES)
    assert verdict.status is Status.INSUFFICIENT
    assert verdict.missing == ("ki67",)
    assert evaluate_therapy("liver-transplant", make_facts({**LT_OK, "grade": 2, "ki67": 9.9}), RULES).status \
        is Status.ELIGIBLE


def test_ki67_and_grade_that_disagree_ask_for_both() -> None:
    verdict = evaluate_therapy("liver-transplant", make_facts({**LT_OK, "grade": 3, "ki67": 5}), RULES)
    assert verdict.status is Status.INSUFFICIENT
    assert verdict.missing == ("grade", "ki67")
    reason = next(r for r in verdict.reasons if r.rule.id == "LT-IND-KI67")
    assert "disagree" in reason.text()


# -- where sources disagree: the default decides, the other view is shown ---------------------

TACE_OK: dict[str, Any] = {"primary_site": "small-intestine", "ssa_refractory": True, "ki67": 5,
                           "extrahepatic_state": "absent", "tumor_burden": 20, "bilirubin": 0.8, "albumin": 4.0,
                           "platelets": 200, "inr": 1.0, "creatinine": 0.9, "ecog": 0}
_BASE = {"sirt": SIRT_OK, "ctace": TACE_OK, "prrt": {**PRRT_OK, "ecog": 0},
         "liver-transplant": {**LT_OK, "ki67": 5}}


@pytest.mark.parametrize(("therapy", "change", "status", "rule_id"), [
    # SIRT bilirubin: Cazzato 2021 Table 1 >= 3 mg/dL (absolute, default) vs labels / Braat 2015 > 2 mg/dL
    ("sirt", {"bilirubin": 2.0}, Status.ELIGIBLE, None),
    ("sirt", {"bilirubin": 2.1}, Status.CAUTION, "SIRT-REL-BILIRUBIN-LABEL"),
    ("sirt", {"bilirubin": 3.0}, Status.INELIGIBLE, "SIRT-ABS-BILIRUBIN"),
    # burden: 50 % with albumin < 3 (resin) / 70 % (glass, default for SIRT) / 75 % (TACE, Cazzato 2021)
    ("sirt", {"tumor_burden": 60, "albumin": 3.0}, Status.ELIGIBLE, None),
    ("sirt", {"tumor_burden": 60, "albumin": 2.9}, Status.CAUTION, "SIRT-REL-BURDEN-ALBUMIN"),
    ("sirt", {"tumor_burden": 71}, Status.CAUTION, "SIRT-REL-BURDEN"),
    ("ctace", {"tumor_burden": 70}, Status.ELIGIBLE, None),
    ("ctace", {"tumor_burden": 71}, Status.CAUTION, "TACE-WARN-RETNET-BURDEN"),
    ("ctace", {"tumor_burden": 76}, Status.INELIGIBLE, "TACE-ABS-BURDEN"),
    # Krenning: NETTER-1 uptake >= liver (>= 2, default) vs Rozenblum 2020 > 2
    ("prrt", {"krenning": 3}, Status.ELIGIBLE, None),
    ("prrt", {"krenning": 2}, Status.CAUTION, "PRRT-WARN-KRENNING-2"),
    ("prrt", {"krenning": 1}, Status.INELIGIBLE, "PRRT-IND-SSTR"),
    # transplant age: Milan-NET < 55 vs later <= 60 (default)
    ("liver-transplant", {"age": 54}, Status.ELIGIBLE, None),
    ("liver-transplant", {"age": 55}, Status.CAUTION, "LT-WARN-AGE-55"),
    ("liver-transplant", {"age": 60}, Status.CAUTION, "LT-WARN-AGE-55"),
    ("liver-transplant", {"age": 61}, Status.INELIGIBLE, "LT-IND-AGE"),
    # Ki-67: Milan-NET < 10 % for transplant; <= 20 % for PRRT with a warning from 10 %
    ("liver-transplant", {"ki67": 9.9}, Status.ELIGIBLE, None),
    ("liver-transplant", {"ki67": 10}, Status.INELIGIBLE, "LT-IND-KI67"),
    ("prrt", {"ki67": 9.9}, Status.ELIGIBLE, None),
    ("prrt", {"ki67": 10}, Status.CAUTION, "PRRT-WARN-KI67-10"),
    ("prrt", {"ki67": 20.1}, Status.INELIGIBLE, "PRRT-IND-KI67"),
])
def test_disagreeing_sources_default_and_other_view(therapy: str, change: dict[str, Any], status: Status,
                                                    rule_id: str | None) -> None:
    verdict = evaluate_therapy(therapy, make_facts({**_BASE[therapy], **change}), RULES)
    assert verdict.status is status, [r.text() for r in verdict.reasons if r.decisive]
    decisive = [r for r in verdict.reasons if r.decisive]
    if rule_id is None:
        assert decisive == []
    else:
        assert [r.rule.id for r in decisive] == [rule_id]
        assert "Sources disagree: " in decisive[0].text()


def test_stable_months_are_counted_to_the_assessment_not_assumed_up_to_today() -> None:
    """Milan-NET (Cazzato 2021 section 2) asks for stable disease for at least 6 months. An assessment of
    2026-05-25 that found the liver stable since 2026-04-01 documents under two months of
    stability; it does not show six months by 2026-11-20."""
    readings = [Reading("liver_state", "stable", "{code}", date(2026, 5, 25), "Observation/s", since=date(2026, 4, 1))]
    facts = PatientFacts.from_readings("p", EVAL, readings)
    assert facts.values["liver_stable_months"].value == Decimal(1)
    verdict = evaluate_therapy("liver-transplant", facts, RULES)
    reason = next(r for r in verdict.reasons if r.rule.id == "LT-IND-STABLE")
    assert reason.result.value == "not-met"
    # an assessment seven months after the start documents seven months
    readings = [Reading("liver_state", "stable", "{code}", date(2026, 11, 1), "Observation/s", since=date(2026, 4, 1))]
    assert PatientFacts.from_readings("p", EVAL, readings).values["liver_stable_months"].value == Decimal(7)


def test_same_day_readings_are_ordered_by_their_time_when_all_have_one() -> None:
    from datetime import UTC, datetime

    day = EVAL - timedelta(days=1)
    morning = datetime(day.year, day.month, day.day, 8, tzinfo=UTC)
    evening = datetime(day.year, day.month, day.day, 16, tzinfo=UTC)
    a = Reading("inr", Decimal("2.1"), "1", day, "Observation/a", at=morning)
    b = Reading("inr", Decimal("1.3"), "1", day, "Observation/b", at=evening)
    fact = newest_fact([b, a])
    assert not fact.conflicting and fact.value == Decimal("1.3") and fact.sources == ("Observation/b",)
    untimed = Reading("inr", Decimal("2.1"), "1", day, "Observation/c")
    assert newest_fact([b, untimed]).conflicting  # no time on one of them: cannot be ordered


def test_values_dated_after_the_evaluation_date_are_not_used() -> None:
    """An evaluation "as of" a date (the ``date`` parameter) cannot use a value measured later:
    a bilirubin of 3.4 taken 10 days after the board is not the board's bilirubin. One day of
    tolerance is kept for time zones."""
    later = Reading("bilirubin", Decimal("3.4"), "mg/dL", EVAL + timedelta(days=10), "Observation/later")
    before = Reading("bilirubin", Decimal("0.9"), "mg/dL", EVAL - timedelta(days=3), "Observation/before")
    facts = PatientFacts.from_readings("p", EVAL, [later, before])
    assert facts.values["bilirubin"].value == Decimal("0.9")
    assert any("after the evaluation date" in n for n in facts.notes)
    next_day = Reading("bilirubin", Decimal("1.1"), "mg/dL", EVAL + timedelta(days=1), "Observation/tz")
    assert PatientFacts.from_readings("p", EVAL, [next_day, before]).values["bilirubin"].value == Decimal("1.1")


@pytest.mark.parametrize(("klass", "name", "fresh_until", "stale_after"), [
    # docs/eligibility.md "Staleness policy"
    ("performance", "ecog", 30, 90),
    ("imaging", "lung_shunt", 90, 180),
    ("disease", "extrahepatic_state", 90, 365),
])
def test_staleness_policy_per_class_at_its_edges(klass: str, name: str, fresh_until: int, stale_after: int) -> None:
    limits = RULES.staleness[klass]
    assert RULES.inputs[name].staleness == klass
    for days, expected in ((fresh_until, FactQuality.FRESH), (fresh_until + 1, FactQuality.OLD),
                           (stale_after, FactQuality.OLD), (stale_after + 1, FactQuality.STALE)):
        fact = Fact(name, Decimal(1), "1", EVAL - timedelta(days=days), ("Observation/x",))
        assert fact_quality(fact, EVAL, limits.fresh_days, limits.max_days) is expected, (klass, days)


def test_stale_lung_shunt_is_asked_for_again() -> None:
    values = {**SIRT_OK}
    stale = make_facts(values, on=EVAL - timedelta(days=181))
    verdict = evaluate_therapy("sirt", stale, RULES)
    assert verdict.status is Status.INSUFFICIENT and "lung_shunt" in verdict.missing
    reason = next(r for r in verdict.reasons if r.rule.id == "SIRT-ABS-LUNG-SHUNT")
    assert "stale" in reason.text()
    assert evaluate_therapy("sirt", make_facts(values, on=EVAL - timedelta(days=29)), RULES).status is Status.ELIGIBLE
