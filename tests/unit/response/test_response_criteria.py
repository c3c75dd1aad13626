"""mRECIST, EASL, Choi, PERCIST, iRECIST and best overall response against their published rules."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest

from services.response.domain.bor import BorSettings, best_overall_response
from services.response.domain.criteria import evaluate
from services.response.domain.model import PetReference, ResponseInputError
from tests.fixtures.response_cases import day, new, nontgt, tgt, visit


def overall(criterion, assessments, **kw):
    return [v.overall for v in evaluate(criterion, assessments, **kw).result.visits]


# -- mRECIST (Lencioni & Llovet 2010) -----------------------------------------------------------


def test_mrecist_measures_viable_tumour_only():
    # Overall size unchanged (RECIST SD) while the enhancing part shrinks 40 → 28 mm (−30 %): PR.
    assessments = [visit(0, tgt("A", "50", viable="40")), visit(8, tgt("A", "50", viable="28"))]
    assert overall("mrecist", assessments) == ["PR"]
    assert overall("recist-1.1", assessments) == ["SD"]
    assert overall("mrecist", [visit(0, tgt("A", "50", viable="40")), visit(8, tgt("A", "50", viable="28.1"))]) == ["SD"]


def test_mrecist_complete_response_when_enhancement_is_gone():
    assessments = [visit(0, tgt("A", "50", viable="40")), visit(8, tgt("A", "45", viable="0"))]
    assert overall("mrecist", assessments) == ["CR"]


def test_mrecist_progression_has_no_five_mm_minimum():
    # Lencioni 2010: PD is +20 % over the nadir; RECIST 1.1 would also need +5 mm.
    assessments = [visit(0, tgt("A", "50", viable="40")), visit(8, tgt("A", "40", viable="10")),
                   visit(16, tgt("A", "40", viable="12"))]
    assert overall("mrecist", assessments) == ["PR", "PD"]
    below = [*assessments[:2], visit(16, tgt("A", "40", viable="11.9"))]
    assert overall("mrecist", below) == ["PR", "PR"]


def test_mrecist_needs_an_enhancing_target_at_baseline():
    with pytest.raises(ResponseInputError, match="viable"):
        evaluate("mrecist", [visit(0, tgt("A", "50")), visit(8, tgt("A", "50", viable="10"))])


# -- EASL (Bruix 2001) ----------------------------------------------------------------------------


def test_easl_partial_response_is_half_the_viable_area():
    # 40 × 20 = 800 mm² → 40 × 10 = 400 mm² is exactly −50 %: PR; 40 × 10.1 is not.
    base = visit(0, tgt("A", "50", viable="40", perpendicular="20"))
    assert overall("easl", [base, visit(8, tgt("A", "50", viable="40", perpendicular="10"))]) == ["PR"]
    assert overall("easl", [base, visit(8, tgt("A", "50", viable="40", perpendicular="10.1"))]) == ["SD"]


def test_easl_progression_is_twenty_five_percent_over_the_nadir():
    base = visit(0, tgt("A", "50", viable="40", perpendicular="20"))
    nadir = visit(8, tgt("A", "50", viable="20", perpendicular="20"))  # 400 mm²
    grown = visit(16, tgt("A", "50", viable="25", perpendicular="20"))  # 500 mm² = +25 %
    assert overall("easl", [base, nadir, grown]) == ["PR", "PD"]
    almost = visit(16, tgt("A", "50", viable="24.9", perpendicular="20"))  # +24.5 %
    assert overall("easl", [base, nadir, almost]) == ["PR", "SD"]


def test_easl_without_perpendicular_diameter_notes_the_assumption():
    evaluation = evaluate("easl", [visit(0, tgt("A", "50", viable="40")), visit(8, tgt("A", "50", viable="28"))])
    assert evaluation.result.visits[0].measure == Decimal(784)  # 28 × 28
    assert evaluation.result.visits[0].overall == "PR"  # 784 / 1600 = −51 %
    assert any("perpendicular" in n for n in evaluation.result.notes)


# -- Choi (Choi 2007) -----------------------------------------------------------------------------


@pytest.mark.parametrize(("size", "hu", "expected"), [
    ("90", "100", "PR"),     # size −10 % exactly
    ("90.1", "100", "SD"),   # size −9.9 %
    ("100", "85", "PR"),     # density −15 % exactly
    ("100", "85.1", "SD"),   # density −14.9 %
    ("110", "100", "PD"),    # size +10 % and no density response
    ("110", "85", "PR"),     # size +10 % but PR by density: not PD
    ("109.9", "100", "SD"),
])
def test_choi_size_and_density_thresholds(size, hu, expected):
    assessments = [visit(0, tgt("A", "100", hu="100")), visit(8, tgt("A", size, hu=hu))]
    assert overall("choi", assessments) == [expected]


def test_choi_new_lesion_is_progression_despite_density_response():
    assessments = [visit(0, tgt("A", "100", hu="100")), visit(8, tgt("A", "100", hu="50"), new("X"))]
    assert overall("choi", assessments) == ["PD"]


def test_choi_density_compares_the_same_lesions():
    # Baseline mean attenuation (100 + 40) / 2 = 70 HU. At follow-up lesion A has no HU: the
    # mean of B alone (40 HU, "−43 %") is not a density change and must not make a PR.
    base = visit(0, tgt("A", "100", hu="100"), tgt("B", "50", hu="40"))
    missing = visit(8, tgt("A", "100"), tgt("B", "50", hu="40"))
    result = evaluate("choi", [base, missing]).result.visits[0]
    assert result.overall == "SD"
    assert dict(result.extra)["mean-attenuation"] is None
    assert any("attenuation" in n for n in result.notes)
    # Both lesions measured: (60 + 40) / 2 = 50 HU is −28.6 %: PR by density.
    both = visit(8, tgt("A", "100", hu="60"), tgt("B", "50", hu="40"))
    assert overall("choi", [base, both]) == ["PR"]


# -- PERCIST 1.0 (Wahl 2009) ---------------------------------------------------------------------

LIVER = PetReference(liver_mean=Decimal("2.0"), liver_sd=Decimal("0.3"))  # threshold 3.6
LOW_LIVER = PetReference(liver_mean=Decimal("1.2"), liver_sd=Decimal("0.2"))  # threshold 2.2


def pet(base_sul, follow_sul, ref=LIVER, follow_ref=None):
    return [visit(0, tgt("A", "30", sul=base_sul), pet=ref),
            visit(8, tgt("A", "30", sul=follow_sul), pet=follow_ref or ref)]


@pytest.mark.parametrize(("base", "follow", "ref", "expected"), [
    ("4.0", "2.8", LIVER, "PMR"),       # −30 % and −1.2 units
    ("4.0", "2.81", LIVER, "SMD"),      # −29.75 %
    ("2.6", "1.82", LOW_LIVER, "SMD"),  # −30 % but only −0.78 units
    ("2.7", "1.89", LOW_LIVER, "PMR"),  # −30 % and −0.81 units
    ("2.6", "1.8", LOW_LIVER, "PMR"),   # −30.8 % and −0.8 units exactly (Wahl: "at least 0.8")
    ("4.0", "5.2", LIVER, "SMD"),       # +30 % exactly: PMD needs more than 30 %
    ("4.0", "5.21", LIVER, "PMD"),
    ("2.6", "3.4", LOW_LIVER, "SMD"),   # +30.8 % but +0.8 units exactly
    ("2.6", "3.41", LOW_LIVER, "PMD"),
    ("4.0", "1.9", LIVER, "CMR"),       # below the liver mean
    ("4.0", "2.0", LIVER, "CMR"),       # at the liver mean
    ("4.0", "2.01", LIVER, "PMR"),      # above it: −49.75 %, −1.99 units
])
def test_percist_thresholds(base, follow, ref, expected):
    assert overall("percist", pet(base, follow, ref)) == [expected]


def test_percist_measurability_uses_liver_or_blood_pool():
    with pytest.raises(ResponseInputError, match="no measurable lesion") as err:
        evaluate("percist", pet("3.59", "2.0"))
    assert err.value.element == "lesion A"  # the hottest baseline lesion is named
    assert overall("percist", pet("3.6", "2.4")) == ["PMR"]
    blood = PetReference(bloodpool_mean=Decimal("1.5"), bloodpool_sd=Decimal("0.2"))  # 2.0 × 1.5 + 0.4
    with pytest.raises(ResponseInputError):
        evaluate("percist", pet("3.39", "2.0", blood))
    assert overall("percist", pet("3.4", "2.4", blood)) == ["SMD"]


def test_percist_scans_with_a_drifting_liver_reference_are_not_comparable():
    drift = PetReference(liver_mean=Decimal("2.5"), liver_sd=Decimal("0.3"))  # +25 %, +0.5
    assert overall("percist", pet("4.0", "2.0", follow_ref=drift)) == ["NE"]
    close = PetReference(liver_mean=Decimal("2.3"), liver_sd=Decimal("0.3"))  # +15 %
    assert overall("percist", pet("4.0", "2.6", follow_ref=close)) == ["PMR"]


def test_percist_nadir_date_ignores_scans_that_are_not_comparable():
    # The case-report form's "date of nadir": a scan that is NE because its liver reference
    # drifted (Wahl 2009) never sets the nadir, even with a lower SULpeak.
    drift = PetReference(liver_mean=Decimal("2.5"), liver_sd=Decimal("0.3"))
    assessments = [visit(0, tgt("A", "30", sul="4.0"), pet=LIVER),
                   visit(8, tgt("A", "30", sul="2.5"), pet=drift),
                   visit(16, tgt("A", "30", sul="4.2"), pet=LIVER)]
    result = evaluate("percist", assessments).result
    assert [v.overall for v in result.visits] == ["NE", "SMD"]
    assert result.nadir_date == day(0)
    comparable = [assessments[0], visit(8, tgt("A", "30", sul="2.5"), pet=LIVER), assessments[2]]
    assert evaluate("percist", comparable).result.nadir_date == day(8)


def test_percist_new_lesion_is_progression():
    assessments = [visit(0, tgt("A", "30", sul="4.0"), pet=LIVER),
                   visit(8, tgt("A", "30", sul="2.0"), new("X"), pet=LIVER)]
    assert overall("percist", assessments) == ["PMD"]


# -- iRECIST (Seymour 2017; EORTC FAQ) ----------------------------------------------------------


def test_irecist_first_progression_is_unconfirmed_then_confirmed_by_five_mm():
    sums = ["100", "60", "72", "78"]  # iUPD at 72 (+20 %, +12 mm); +6 mm more confirms
    assert overall("irecist", [visit(8 * k, tgt("A", s)) for k, s in enumerate(sums)]) == ["iPR", "iUPD", "iCPD"]


def test_irecist_increases_add_up():
    # EORTC FAQ: a 4 mm increase then a further 2 mm confirms progression.
    sums = ["100", "60", "72", "76", "78"]
    assert overall("irecist", [visit(6 * k, tgt("A", s)) for k, s in enumerate(sums)]) == [
        "iPR", "iUPD", "iUPD", "iCPD"]


def test_irecist_resets_when_progression_is_not_confirmed():
    # 72 is iUPD; at 65 the RECIST 1.1 PD criteria are no longer met (+8 % over the nadir 60):
    # reset to iPR (−35 % from baseline); a later +20 % is a new iUPD, not iCPD.
    sums = ["100", "60", "72", "65", "78"]
    result = overall("irecist", [visit(8 * k, tgt("A", s)) for k, s in enumerate(sums)])
    assert result == ["iPR", "iUPD", "iPR", "iUPD"]


def test_irecist_new_lesions():
    base = visit(0, tgt("A", "50"))
    iupd = visit(8, tgt("A", "40"), new("X", "12"))
    # another new lesion confirms
    assert overall("irecist", [base, iupd, visit(16, tgt("A", "40"), new("X", "12"), new("Y", "6"))])[-1] == "iCPD"
    # the new-lesion target grows by 5 mm: confirms; by 4 mm: remains iUPD
    assert overall("irecist", [base, iupd, visit(16, tgt("A", "40"), new("X", "17"))])[-1] == "iCPD"
    assert overall("irecist", [base, iupd, visit(16, tgt("A", "40"), new("X", "16"))])[-1] == "iUPD"


def test_irecist_shrinkage_after_a_new_lesion_is_partial_response():
    # EORTC iRECIST FAQ "Assigning response after the appearance of new lesions" (Seymour 2017
    # figure): scenario B, a new lesion (iUPD) followed by further shrinkage of the target
    # lesions to PR while the new lesion is unchanged, is iPR; scenario F, PR reached before the
    # new lesion and no change afterwards, stays iUPD.
    scenario_b = [visit(0, tgt("A", "100")), visit(8, tgt("A", "80"), new("X", "12")),
                  visit(16, tgt("A", "60"), new("X", "12"))]
    assert overall("irecist", scenario_b) == ["iUPD", "iPR"]
    scenario_f = [visit(0, tgt("A", "100")), visit(8, tgt("A", "60")),
                  visit(16, tgt("A", "60"), new("X", "12")), visit(24, tgt("A", "60"), new("X", "12"))]
    assert overall("irecist", scenario_f) == ["iPR", "iUPD", "iUPD"]
    # the new lesion grows by 5 mm while the targets shrink: confirmed all the same
    grown = [*scenario_b[:2], visit(16, tgt("A", "60"), new("X", "17"))]
    assert overall("irecist", grown) == ["iUPD", "iCPD"]
    # shrinkage that stays short of PR (−25 % from baseline) leaves iUPD
    short = [*scenario_b[:2], visit(16, tgt("A", "75"), new("X", "12"))]
    assert overall("irecist", short) == ["iUPD", "iUPD"]


def test_irecist_non_target_progression_needs_a_further_increase():
    base = visit(0, tgt("A", "50"), nontgt("B"))
    iupd = visit(8, tgt("A", "45"), nontgt("B", "unequivocal-progression"))
    same = visit(16, tgt("A", "45"), nontgt("B", "unequivocal-progression"))
    more = visit(16, tgt("A", "45"), nontgt("B", "further-increase"))
    assert overall("irecist", [base, iupd, same]) == ["iUPD", "iUPD"]
    assert overall("irecist", [base, iupd, more]) == ["iUPD", "iCPD"]


def test_irecist_progression_in_another_category_confirms():
    # iUPD from target lesions; a new lesion at the next assessment confirms (EORTC FAQ).
    assessments = [visit(0, tgt("A", "50")), visit(8, tgt("A", "60")), visit(16, tgt("A", "60"), new("X"))]
    assert overall("irecist", assessments) == ["iUPD", "iCPD"]


def test_irecist_confirmation_scan_before_four_weeks_confirms_only_by_new_lesion():
    early = [visit(0, tgt("A", "50")), visit(8, tgt("A", "60")), visit(10, tgt("A", "66"))]
    evaluation = evaluate("irecist", early).result
    assert [v.overall for v in evaluation.visits] == ["iUPD", "iUPD"]
    with_new = [*early[:2], visit(10, tgt("A", "60"), new("X"))]
    assert overall("irecist", with_new) == ["iUPD", "iCPD"]


# -- best overall response (Eisenhauer 2009 §4.4.3, Table 3) -------------------------------------

CONFIRM = BorSettings(confirmation_days=28, min_sd_days=42)


@pytest.mark.parametrize(("first", "second", "expected"), [
    ("CR", "CR", "CR"), ("CR", "PR", "SD"), ("PR", "CR", "PR"), ("PR", "PR", "PR"),
    ("PR", "SD", "SD"), ("PR", "PD", "SD"), ("PR", "NE", "SD"), ("NE", "NE", "NE"),
    ("CR", "NE", "SD"),
])
def test_best_overall_response_with_confirmation_table_3(first, second, expected):
    points = [(day(8), first), (day(16), second)]
    assert best_overall_response(day(0), points, CONFIRM)[0] == expected


def test_best_overall_response_minimum_stable_disease_duration():
    # PR, PD and PR, NE when the first assessment is before the minimum SD interval.
    early = BorSettings(confirmation_days=28, min_sd_days=84)
    assert best_overall_response(day(0), [(day(8), "PR"), (day(16), "PD")], early)[0] == "PD"
    assert best_overall_response(day(0), [(day(8), "PR"), (day(16), "NE")], early)[0] == "NE"
    assert best_overall_response(day(0), [(day(4), "SD"), (day(8), "PD")])[0] == "PD"
    assert best_overall_response(day(0), [(day(8), "SD"), (day(16), "PD")])[0] == "SD"


def test_confirmation_needs_the_interval():
    points = [(day(8), "PR"), (day(11), "PR")]  # 3 weeks apart
    assert best_overall_response(day(0), points, CONFIRM)[0] == "SD"
    assert best_overall_response(day(0), [(day(8), "PR"), (day(12), "PR")], CONFIRM)[0] == "PR"
    assert best_overall_response(day(0), points)[0] == "PR"  # confirmation not required


def test_best_overall_response_of_irecist_and_percist():
    assert best_overall_response(day(0), [(day(8), "iUPD"), (day(16), "iPR")])[0] == "iPR"
    assert best_overall_response(day(0), [(day(8), "SMD"), (day(16), "PMR")])[0] == "PMR"


@pytest.mark.parametrize(("points", "expected"), [
    (["iCR", "iCR", "iPR", "iUPD", "iCPD"], "iCR"),   # Example 1
    (["iUPD", "iPR", "iCR", "iUPD", "iCPD"], "iCR"),  # Example 2
    (["iUPD", "iPR", "iSD", "iUPD", "iCPD"], "iPR"),  # Example 3
    (["iUPD", "NE", "iPR", "iUPD", "iCPD"], "iPR"),   # Example 4
    (["iUPD", "iSD", "iUPD", "iCPD"], "iSD"),         # Example 5
    (["iUPD", "iCPD", "iPR"], "iCPD"),                # Example 6: "any" after iCPD
    (["iUPD", "iUPD", "iCPD"], "iCPD"),               # Example 7
    (["iUPD", "NE", "NE", "NE", "NE"], "iUPD"),       # Example 8
])
def test_irecist_best_overall_response_seymour_2017_table_3(points, expected):
    # Seymour 2017 (Lancet Oncol 18:e143) Table 3, confirmation of response not required:
    # a confirmed progression is the best response when nothing better came before it, and an
    # unconfirmed one only when it was never confirmed.
    dated = [(day(8 * (k + 1)), c) for k, c in enumerate(points)]
    assert best_overall_response(day(0), dated)[0] == expected


@pytest.mark.parametrize(("points", "expected"), [
    (["SD", "PD", "PR"], "SD"),
    (["PD", "CR"], "PD"),
    (["PR", "PD", "CR"], "PR"),
    (["SMD", "PMD", "PMR"], "SMD"),
    (["SD", "PR", "PD"], "PR"),
])
def test_responses_after_progression_do_not_count(points, expected):
    # RECIST 1.1 §4.4.3 (best response recorded until progression / end of treatment; Therasse
    # 2000 §"Best overall response": "until disease progression/recurrence"). Only iRECIST lets
    # a response after an unconfirmed progression count (Seymour 2017 Table 3).
    dated = [(day(8 * (k + 1)), c) for k, c in enumerate(points)]
    best, notes = best_overall_response(day(0), dated)
    assert best == expected
    if any(c in ("PD", "PMD") for c in points[:-1]):
        assert any("after progression" in n for n in notes)
    else:
        assert not any("after progression" in n for n in notes)


def test_minimum_stable_disease_interval_boundary():
    # RECIST 1.1 §4.4.3: SD must be met at least once at the protocol's minimum interval:
    # 42 days counts, 41 days does not (then the later PD is the best response).
    at = [(day(0) + timedelta(days=42), "SD"), (day(12), "PD")]
    before = [(day(0) + timedelta(days=41), "SD"), (day(12), "PD")]
    assert best_overall_response(day(0), at, BorSettings(min_sd_days=42))[0] == "SD"
    assert best_overall_response(day(0), before, BorSettings(min_sd_days=42))[0] == "PD"


def test_percist_scan_with_a_further_treated_lesion_is_not_evaluable_by_setting_unless_progression():
    from services.response.domain.model import LocalTreatment

    base = visit(0, tgt("A", "30", sul="6.0"), tgt("B", "30", sul="4.0"), pet=LIVER)
    first = visit(4, tgt("A", "30", sul="5.0"), tgt("B", "30", sul="4.0"), pet=LIVER)
    ablation = [LocalTreatment("ablation-mwa", day(5), frozenset({"A"}))]  # after the first follow-up
    follow = visit(8, tgt("A", "30", sul="1.0"), tgt("B", "30", sul="3.9"), pet=LIVER)
    strict = evaluate("percist", [base, first, follow], ablation, exclude_treated=True).result.visits[1]
    assert (strict.measure, strict.overall) == (Decimal("3.9"), "NE")
    assert evaluate("percist", [base, first, follow], ablation).result.visits[1].overall == "PMR"
    assert evaluate("percist", [base, first, follow]).result.visits[1].overall == "PMR"  # no treatment
    rising = visit(8, tgt("A", "30", sul="1.0"), tgt("B", "30", sul="8.0"), pet=LIVER)
    assert evaluate("percist", [base, first, rising], ablation,
                    exclude_treated=True).result.visits[1].overall == "PMD"
