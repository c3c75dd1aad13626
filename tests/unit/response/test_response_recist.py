"""RECIST 1.1 against the published rules and worked examples (Eisenhauer 2009; EORTC RECIST FAQ)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from services.response.domain.bor import BorSettings
from services.response.domain.criteria import evaluate
from services.response.domain.model import LocalTreatment, Modality, ResponseInputError
from services.response.domain.tables import overall_response
from tests.fixtures.response_cases import day, new, nontgt, tgt, timeline, visit


def overall(assessments, **kw):
    return [v.overall for v in evaluate("recist-1.1", assessments, **kw).result.visits]


# -- worked examples ---------------------------------------------------------------------


def test_eortc_faq_partial_response_continues_until_progression():
    # EORTC RECIST FAQ: 100 → 70 → 70 → 80 mm stays PR (80 is only +14 % over the nadir 70).
    result = evaluate("recist-1.1", timeline("100", "70", "70", "80")).result
    assert [v.overall for v in result.visits] == ["PR", "PR", "PR"]
    last = result.visits[-1]
    assert last.vs_baseline == "SD"  # −20 % against the baseline alone
    assert last.vs_nadir == "SD"  # +14.3 % against the nadir alone
    assert last.percent_vs_baseline == Decimal(-20)


def test_continued_partial_response_does_not_confirm_a_response():
    # EORTC RECIST FAQ: a PR continues "once assigned, and confirmed (if required)". With
    # confirmation required, 100 → 70 → 80 is PR then SD by measurement: Table 3 "PR, SD" gives
    # SD, not a PR confirmed by a scan that no longer meets PR; 100 → 70 → 70 → 80 is confirmed.
    confirm = BorSettings(confirmation_days=28, min_sd_days=42)
    assert evaluate("recist-1.1", timeline("100", "70", "80"), bor=confirm).best == "SD"
    assert evaluate("irecist", timeline("100", "70", "80"), bor=confirm).best == "iSD"
    assert evaluate("recist-1.1", timeline("100", "70", "70", "80"), bor=confirm).best == "PR"
    assert evaluate("recist-1.1", timeline("100", "70", "80")).best == "PR"  # not required


def test_without_a_prior_response_the_same_sum_is_stable_disease():
    # The other direction of the continued-PR rule: 100 → 80 never reached PR.
    assert overall(timeline("100", "80", "80")) == ["SD", "SD"]


def test_continued_partial_response_ends_at_progression():
    # 100 → 70 → 84 (+20 % and +14 mm over the nadir 70) is PD.
    assert overall(timeline("100", "70", "84")) == ["PR", "PD"]


def test_missing_lesion_example_progression_is_already_proven():
    # Eisenhauer 2009 §4.4.2: baseline sum 50 mm over three lesions; at follow-up only two are
    # assessed but sum 80 mm: PD regardless of the missing lesion.
    base = visit(0, tgt("A", "20"), tgt("B", "20"), tgt("C", "10"))
    follow = visit(8, tgt("A", "40"), tgt("B", "40"))
    assert overall([base, follow]) == ["PD"]


def test_missing_lesion_without_proven_progression_is_not_evaluable():
    base = visit(0, tgt("A", "20"), tgt("B", "20"), tgt("C", "10"))
    follow = visit(8, tgt("A", "15"), tgt("B", "15"))
    result = evaluate("recist-1.1", [base, follow]).result.visits[0]
    assert result.overall == "NE"
    assert result.measure is None


def test_not_evaluable_visit_never_sets_the_nadir():
    # Baseline 100 (50 + 50); visit 1 measures only A = 30 (NE); visit 2 sums 70 = −30 %: PR.
    # Had the NE visit set a nadir of 30, 70 would have been PD.
    assessments = [visit(0, tgt("A", "50"), tgt("B", "50")), visit(8, tgt("A", "30")),
                   visit(16, tgt("A", "30"), tgt("B", "40"))]
    result = evaluate("recist-1.1", assessments).result
    assert [v.overall for v in result.visits] == ["NE", "PR"]
    assert result.visits[1].nadir == Decimal(100)


def test_baseline_counts_as_nadir():
    # 50 → 60: +20 % and +10 mm over the baseline, which is the nadir: PD at the first visit.
    assert overall(timeline("50", "60")) == ["PD"]


# -- boundaries ------------------------------------------------------------------------------


def test_exactly_thirty_percent_decrease_is_partial_response():
    # RECIST 1.1 (Eisenhauer 2009) with exact decimals: 14 → 9.8 mm is exactly −30 % with exact decimals.
    assert overall(timeline("14", "9.8")) == ["PR"]
    assert overall(timeline("14", "9.9")) == ["SD"]


@pytest.mark.parametrize(("nadir", "follow", "expected"), [
    ("25", "30", "PD"),      # +20 % and +5.0 mm
    ("24.5", "29.4", "SD"),  # +20 % but only +4.9 mm
    ("50", "59.9", "SD"),    # +9.9 mm but +19.8 %
    ("50", "60", "PD"),      # +20 % exactly and +10 mm
])
def test_progression_needs_twenty_percent_and_five_mm(nadir, follow, expected):
    assert overall(timeline(nadir, follow)) == [expected]


@pytest.mark.parametrize(("short_axis", "expected"), [("9.9", "CR"), ("10.0", "PR"), ("10", "PR")])
def test_target_node_below_ten_mm_short_axis_is_complete_response(short_axis, expected):
    # RECIST 1.1 §4.3.1: CR when every target node is < 10 mm short axis (the sum stays > 0).
    base = visit(0, tgt("N", "30", node=True, short="20"), tgt("A", "20"))
    follow = visit(8, tgt("N", "15", node=True, short=short_axis), tgt("A", "0"))
    result = evaluate("recist-1.1", [base, follow]).result.visits[0]
    assert result.overall == expected
    assert result.measure == Decimal(short_axis)


def test_node_short_axis_fifteen_mm_is_the_target_threshold():
    ok = [visit(0, tgt("N", "20", node=True, short="15")), visit(8, tgt("N", "20", node=True, short="15"))]
    assert overall(ok) == ["SD"]
    too_small = [visit(0, tgt("N", "20", node=True, short="14.9")), visit(8, tgt("N", "20", node=True, short="15"))]
    with pytest.raises(ResponseInputError, match="not measurable"):
        evaluate("recist-1.1", too_small)


def test_non_nodal_target_needs_ten_mm():
    with pytest.raises(ResponseInputError, match="not measurable"):
        evaluate("recist-1.1", timeline("9.9", "9"))
    assert overall(timeline("10", "10")) == ["SD"]


def test_too_small_to_measure_counts_five_mm():
    # RECIST 1.1 §4.3.2: "too small to measure" → 5 mm, so not CR; an absent lesion → 0, CR.
    faint = [visit(0, tgt("A", "20")), visit(8, tgt("A", None, too_small=True))]
    result = evaluate("recist-1.1", faint).result.visits[0]
    assert (result.overall, result.measure) == ("PR", Decimal(5))
    gone = [visit(0, tgt("A", "20")), visit(8, tgt("A", "0"))]
    assert overall(gone) == ["CR"]


# -- non-target and new lesions, Tables 1-2 ---------------------------------------------------


@pytest.mark.parametrize(("target", "non_target", "new_lesion", "expected"), [
    ("CR", "CR", False, "CR"), ("CR", "non-CR/non-PD", False, "PR"), ("CR", "NE", False, "PR"),
    ("PR", "non-CR/non-PD", False, "PR"), ("PR", "NE", False, "PR"), ("SD", "NE", False, "SD"),
    ("SD", "non-CR/non-PD", False, "SD"), ("NE", "non-CR/non-PD", False, "NE"),
    ("PD", "CR", False, "PD"), ("SD", "PD", False, "PD"), ("CR", "CR", True, "PD"),
    (None, "CR", False, "CR"), (None, "non-CR/non-PD", False, "non-CR/non-PD"),
    (None, "NE", False, "NE"), (None, "PD", False, "PD"), (None, "CR", True, "PD"),
    ("CR", None, False, "CR"),
])
def test_recist_tables_1_and_2(target, non_target, new_lesion, expected):
    # Eisenhauer 2009 §4.4.1 Table 1 (target ± non-target) and Table 2 (non-target only).
    assert overall_response(target, non_target, new_lesion) == expected


def test_non_target_statuses_combine_with_targets():
    base = visit(0, tgt("A", "20"), nontgt("B"))
    assert overall([base, visit(8, tgt("A", "0"), nontgt("B", "present"))]) == ["PR"]
    assert overall([base, visit(8, tgt("A", "0"), nontgt("B", "absent"))]) == ["CR"]
    assert overall([base, visit(8, tgt("A", "19"), nontgt("B", "unequivocal-progression"))]) == ["PD"]
    assert overall([base, visit(8, tgt("A", "19"))]) == ["SD"]  # non-target not assessed: NE


def test_non_target_only_disease_uses_table_2():
    base = visit(0, nontgt("B"), nontgt("C"))
    assert overall([base, visit(8, nontgt("B", "absent"), nontgt("C", "absent"))]) == ["CR"]
    assert overall([base, visit(8, nontgt("B", "present"), nontgt("C", "absent"))]) == ["non-CR/non-PD"]


def test_new_lesion_is_progression():
    assert overall([visit(0, tgt("A", "30")), visit(8, tgt("A", "15"), new("X"))]) == ["PD"]


def test_lesion_seen_only_on_a_new_modality_is_a_new_baseline_lesion():
    # Rozenblum et al.: a lesion seen only because a new, more sensitive modality (here PET) was used is a
    # new baseline lesion, not progression; the same lesion on the modality already used is PD.
    base = visit(0, tgt("A", "30"))
    on_pet = [base, visit(8, tgt("A", "15"), new("X", modality=Modality.PET))]
    evaluation = evaluate("recist-1.1", on_pet)
    assert [v.overall for v in evaluation.result.visits] == ["PR"]
    assert any("new baseline lesion" in n for n in evaluation.result.notes)
    on_ct = [base, visit(8, tgt("A", "15"), new("X", modality=Modality.CT))]
    assert overall(on_ct) == ["PD"]


def test_reappearance_after_complete_response_is_progression():
    # EORTC RECIST FAQ "Does a new lesion always result in PD?": after a definite CR, any
    # reappearing lesion is PD; without a prior CR the same lesion is measured (PR).
    after_cr = [visit(0, tgt("A", "30")), visit(8, tgt("A", "0")), visit(16, tgt("A", "4"))]
    assert overall(after_cr) == ["CR", "PD"]
    after_pr = [visit(0, tgt("A", "30")), visit(8, tgt("A", "2")), visit(16, tgt("A", "4"))]
    assert overall(after_pr) == ["PR", "PR"]


def test_non_target_lesion_reappearing_after_complete_response_is_progression():
    # EORTC RECIST FAQ "Does a new lesion always result in PD?": when CR was assigned at the
    # previous assessment, the reappearance of any malignant lesion is PD, non-target included.
    base = visit(0, tgt("A", "20"), nontgt("B"))
    cr = visit(8, tgt("A", "0"), nontgt("B", "absent"))
    back = visit(16, tgt("A", "0"), nontgt("B", "present"))
    assert overall([base, cr, back]) == ["CR", "PD"]
    # without a prior CR the same non-target lesion is simply present: PR (Table 1)
    pr = visit(8, tgt("A", "0"), nontgt("B", "present"))
    assert overall([base, pr, back]) == ["PR", "PR"]
    # non-target disease only (Table 2): CR, then a lesion present again
    only = [visit(0, nontgt("B")), visit(8, nontgt("B", "absent")), visit(16, nontgt("B", "present"))]
    assert overall(only) == ["CR", "PD"]


def test_reappearance_after_complete_response_across_a_not_evaluable_visit():
    # An NE visit assigns no response, so the CR is still the last one assigned: a target
    # lesion back at 4 mm (less than the +5 mm of the sum rule) is PD, not a PR.
    base = visit(0, tgt("A", "20"), nontgt("B"))
    cr = visit(8, tgt("A", "0"), nontgt("B", "absent"))
    missing = visit(16, nontgt("B", "absent"))
    back = visit(24, tgt("A", "4"), nontgt("B", "absent"))
    assert overall([base, cr, missing, back]) == ["CR", "NE", "PD"]
    pr = visit(8, tgt("A", "2"), nontgt("B", "absent"))
    assert overall([base, pr, missing, back]) == ["PR", "NE", "PR"]


@pytest.mark.parametrize(("short_axis", "expected"), [("9.9", "CR"), ("10", "PD")])
def test_target_node_reappears_after_complete_response_at_ten_mm(short_axis, expected):
    # EORTC RECIST FAQ "Abnormal lymph node": after CR a target node has "reappeared" only when
    # its short axis is ≥ 10 mm; then the reappearance is PD (CR assigned at the previous visit).
    base = visit(0, tgt("N", "30", node=True, short="20"))
    cr = visit(8, tgt("N", "12", node=True, short="8"))
    later = visit(16, tgt("N", "14", node=True, short=short_axis))
    assert overall([base, cr, later]) == ["CR", expected]


# -- split, coalesced and treated lesions ----------------------------------------------------


def test_split_lesion_fragments_add_up():
    # RECIST 1.1 §4.3.2: fragments of a split target lesion are summed.
    base = visit(0, tgt("A", "30"))
    follow = visit(8, tgt("A1", "10", fragment_of="A"), tgt("A2", "12", fragment_of="A"))
    result = evaluate("recist-1.1", [base, follow]).result.visits[0]
    assert result.measure == Decimal(22)
    assert result.overall == "SD"  # −26.7 %
    assert not result.new_lesions


def test_coalesced_lesions_count_once():
    # Two targets merge: the coalesced lesion is measured on A, B counts 0.
    base = visit(0, tgt("A", "20", organ="liver"), tgt("B", "20", organ="liver"))
    follow = visit(8, tgt("A", "35", organ="liver"), tgt("B", None, organ="liver", merged_into="A"))
    result = evaluate("recist-1.1", [base, follow]).result.visits[0]
    assert result.measure == Decimal(35)
    assert result.overall == "SD"


def test_lesion_treated_by_a_further_local_therapy_is_flagged_and_measured_by_default():
    # the ablation on day 10 comes after the first follow-up (day 8): a further local therapy
    assessments = [visit(0, tgt("A", "30"), tgt("B", "30")), visit(8, tgt("A", "20"), tgt("B", "20")),
                   visit(16, tgt("A", "20"), tgt("B", "5"))]
    ablation = [LocalTreatment("ablation-mwa", day(10), frozenset({"B"}))]
    default = evaluate("recist-1.1", assessments, ablation).result
    assert [v.overall for v in default.visits] == ["PR", "PR"]
    assert default.visits[1].treated_lesions == ("B",)
    assert default.visits[1].measure == Decimal(25)
    strict = evaluate("recist-1.1", assessments, ablation, exclude_treated=True).result
    assert [v.overall for v in strict.visits] == ["PR", "NE"]
    assert strict.visits[1].treated_lesions == ("B",)


def test_targets_treated_by_the_assessed_therapy_are_measured_even_when_further_ones_are_not():
    # a course like those of Nervo 2021: cTACE of both targets after baseline, 33 → 20 → 19 mm
    assessments = [visit(0, tgt("A", "18"), tgt("B", "15")), visit(8, tgt("A", "11"), tgt("B", "9")),
                   visit(16, tgt("A", "10"), tgt("B", "9"))]
    tace = [LocalTreatment("ctace", day(2), frozenset({"A", "B"}))]
    for exclude in (None, True, False):
        result = evaluate("recist-1.1", assessments, tace, exclude_treated=exclude)
        assert [v.overall for v in result.result.visits] == ["PR", "PR"]
        assert [v.measure for v in result.result.visits] == [Decimal(20), Decimal(19)]
        assert result.result.visits[0].treated_lesions == ("A", "B")
        assert result.best == "PR"


def test_a_treatment_on_the_first_follow_up_day_is_a_further_therapy():
    # boundary: performed on the day of the first follow-up → further therapy (not the assessed one)
    assessments = [visit(0, tgt("A", "30"), tgt("B", "30")), visit(8, tgt("A", "20"), tgt("B", "20")),
                   visit(16, tgt("A", "20"), tgt("B", "5"))]
    on_the_day = [LocalTreatment("ablation-rfa", day(8), frozenset({"B"}))]
    assert overall(assessments, treatments=on_the_day) == ["PR", "PR"]
    strict = evaluate("recist-1.1", assessments, on_the_day, exclude_treated=True).result
    assert [v.overall for v in strict.visits] == ["PR", "NE"]
    the_day_before = [LocalTreatment("ablation-rfa", day(7), frozenset({"B"}))]
    strict = evaluate("recist-1.1", assessments, the_day_before, exclude_treated=True).result
    assert [v.overall for v in strict.visits] == ["PR", "PR"]


def test_treated_lesion_does_not_hide_progression_of_the_others():
    assessments = [visit(0, tgt("A", "30"), tgt("B", "30")), visit(16, tgt("A", "80"), tgt("B", "5"))]
    ablation = [LocalTreatment("ablation-rfa", day(4), frozenset({"B"}))]
    assert overall(assessments, treatments=ablation) == ["PD"]


# -- baseline checks -------------------------------------------------------------------------


def test_more_than_five_targets_is_refused():
    base = visit(0, *(tgt(f"T{i}", "20") for i in range(6)))
    with pytest.raises(ResponseInputError, match="at most 5") as err:
        evaluate("recist-1.1", [base])
    assert err.value.element == "lesion T5"


def test_more_than_two_targets_per_organ_is_refused():
    base = visit(0, *(tgt(f"T{i}", "20", organ="liver") for i in range(3)))
    with pytest.raises(ResponseInputError, match="per organ"):
        evaluate("recist-1.1", [base])
    two = [visit(w, *(tgt(f"T{i}", "20", organ="liver") for i in range(2))) for w in (0, 8)]
    assert evaluate("recist-1.1", two).result.visits[0].overall == "SD"


def test_lymph_nodes_count_as_one_organ():
    # EORTC RECIST 1.1 questions and clarifications ("Two target lesions"): nodes are one organ
    # whatever their chain or region, so a third target node is refused; two are allowed.
    nodes = [tgt(f"N{i}", "30", node=True, short="20", organ=region)
             for i, region in enumerate(("para-aortic", "mesenteric", "iliac"))]
    with pytest.raises(ResponseInputError, match="per organ") as err:
        evaluate("recist-1.1", [visit(0, *nodes)])
    assert err.value.element == "lesion N2"
    two = [visit(w, *nodes[:2], tgt("L", "20", organ="liver")) for w in (0, 8)]
    assert overall(two) == ["SD"]


def test_same_lesion_twice_at_one_visit_and_negative_sizes_are_refused():
    with pytest.raises(ResponseInputError, match="twice"):
        evaluate("recist-1.1", [visit(0, tgt("A", "20"), tgt("A", "21"))])
    with pytest.raises(ResponseInputError, match="negative"):
        evaluate("recist-1.1", [visit(0, tgt("A", "20")), visit(8, tgt("A", "-1"))])


def test_baseline_without_lesions_or_with_an_unknown_criterion_is_refused():
    with pytest.raises(ResponseInputError, match="no lesion"):
        evaluate("recist-1.1", [visit(0), visit(8, tgt("A", "20"))])
    with pytest.raises(ResponseInputError) as err:
        evaluate("recist-2.0", timeline("20", "10"))
    assert err.value.element == "criteria"


def test_further_increase_needs_an_earlier_progression_of_that_lesion():
    # `further-increase` is the iRECIST status of a non-target lesion that grows again after
    # its unequivocal progression (EORTC iRECIST FAQ: the increase need not be unequivocal).
    # Used first, it would be counted as RECIST 1.1 unequivocal progression without being one.
    base = visit(0, tgt("A", "50"), nontgt("B"))
    first = visit(8, tgt("A", "45"), nontgt("B", "further-increase"))
    with pytest.raises(ResponseInputError, match="further-increase") as err:
        evaluate("recist-1.1", [base, first])
    assert err.value.element == "lesion B"
    after = [base, visit(8, tgt("A", "45"), nontgt("B", "unequivocal-progression")),
             visit(16, tgt("A", "45"), nontgt("B", "further-increase"))]
    assert overall(after) == ["PD", "PD"]


def test_a_new_lesion_at_baseline_is_refused():
    # A lesion coded new on the earliest (baseline) date would be neither target nor
    # non-target and silently ignored at every follow-up.
    with pytest.raises(ResponseInputError, match="baseline") as err:
        evaluate("recist-1.1", [visit(0, tgt("A", "20"), new("X")), visit(8, tgt("A", "20"), new("X"))])
    assert err.value.element == "lesion X"


def test_follow_up_lesions_keep_their_baseline_role():
    base = visit(0, tgt("A", "20"), nontgt("B"))
    with pytest.raises(ResponseInputError, match="code it as new"):
        evaluate("recist-1.1", [base, visit(8, tgt("A", "20"), tgt("C", "15"))])
    with pytest.raises(ResponseInputError, match="keeps its role"):
        evaluate("recist-1.1", [base, visit(8, tgt("A", "20"), new("B"))])
    with pytest.raises(ResponseInputError, match="not a baseline target"):
        evaluate("recist-1.1", [base, visit(8, tgt("A", "20"), tgt("B1", "5", fragment_of="B"))])
    assert overall([base, visit(8, tgt("A", "20"), nontgt("B", "present"), new("C"))]) == ["PD"]
