"""Every rule of the shipped rule set in both directions, at its boundary.

Each case gives inputs for which the rule is *met* and inputs for which it is *not met*; for
numeric thresholds the two sit on either side of the limit (bilirubin 2.9 vs 3.0 mg/dL, lung
shunt 20 vs 21 %). A rule added to the YAML without a case here fails
``test_every_rule_has_a_case``.
"""

from __future__ import annotations

from typing import Any

import pytest

from services.eligibility.domain.logic import Tri
from services.eligibility.domain.rules import evaluate_rule
from services.eligibility.ruleset import default_ruleset
from tests.unit.eligibility.helpers import make_facts

NEN = {"primary_site": "small-intestine"}
THY = {"primary_site": "thyroid-medullary"}

#: rule id → (inputs for which the rule is met, inputs for which it is not met).
#: "flags" lists conditions / medication classes present.
CASES: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "RES-IND-DEBULK": ({"resectable_fraction": 90}, {"resectable_fraction": 89.9}),
    "RES-WARN-DEBULK-70": ({"resectable_fraction": 70}, {"resectable_fraction": 69.9}),
    "RES-IND-EXTRAHEPATIC": ({"extrahepatic_state": "stable"}, {"extrahepatic_state": "progressing"}),
    "RES-ABS-ANESTHESIA": ({"flags": ["anesthesia-contraindicated"]}, {}),
    "RES-WARN-HIGH-GRADE": ({**NEN, "ki67": 21}, {**NEN, "ki67": 20}),
    "RES-WARN-TKI": ({"flags": ["anti-vegf-tki"]}, {"flags": ["somatostatin-analogue"]}),
    "LT-IND-AGE": ({"age": 60}, {"age": 61}),
    "LT-WARN-AGE-55": ({"age": 55}, {"age": 54}),
    "LT-IND-PORTAL-PRIMARY": ({"primary_site": "pancreas"}, {"primary_site": "lung"}),
    "LT-WARN-PORTAL-OUTSIDE-001": ({"primary_site": "colorectum"}, {"primary_site": "small-intestine"}),
    "LT-IND-PRIMARY-RESECTED": ({"primary_resected": True}, {"primary_resected": False}),
    "LT-IND-BURDEN": ({"tumor_burden": 49.9}, {"tumor_burden": 50}),
    "LT-IND-STABLE": ({"liver_stable_months": 6}, {"liver_stable_months": 5}),
    "LT-IND-KI67": ({"ki67": 9.9}, {"ki67": 10}),
    "LT-IND-NO-EXTRAHEPATIC": ({"extrahepatic_state": "absent"}, {"extrahepatic_state": "stable"}),
    "ABL-IND-OLIGO": ({"lesion_count": 4}, {"lesion_count": 5}),
    "ABL-WARN-OLIGO-3": ({"lesion_count": 3}, {"lesion_count": 2}),
    "ABL-ABS-COAGULOPATHY": ({"flags": ["irreversible-coagulopathy"]}, {}),
    "ABL-ABS-ANESTHESIA": ({"flags": ["anesthesia-contraindicated"]}, {}),
    "ABL-ABS-BILIOENTERIC": ({"flags": ["sphincterotomy"]}, {"flags": ["ascites"]}),
    "ABL-ABS-BILIARY-DILATATION": ({"flags": ["biliary-dilatation"]}, {}),
    "ABL-REL-INR": ({"inr": 1.6}, {"inr": 1.5}),
    "ABL-REL-PLATELETS": ({"platelets": 49}, {"platelets": 50}),
    "ABL-WARN-SIZE": ({"max_lesion_diameter": 20}, {"max_lesion_diameter": 19}),
    "ABL-ABS-HILAR": ({"hilar_lesion": True}, {"hilar_lesion": False}),
    "ABL-WARN-HILAR-THERMAL": ({"hilar_lesion": True}, {"hilar_lesion": False}),
    "RFA-REL-HEAT-SINK": ({"perivascular_lesion": True}, {"perivascular_lesion": False}),
    "MWA-WARN-HEAT-SINK": ({"perivascular_lesion": True}, {"perivascular_lesion": False}),
    "IRE-ABS-ARRHYTHMIA": ({"flags": ["cardiac-arrhythmia"]}, {}),
    # needed zone = lesion + 2 x 5 mm
    "RFA-REL-ZONE": ({"max_lesion_diameter": 36}, {"max_lesion_diameter": 35}),
    "RFA-WARN-CLUSTER": ({"max_lesion_diameter": 21}, {"max_lesion_diameter": 20}),
    "MWA-REL-ZONE": ({"max_lesion_diameter": 51}, {"max_lesion_diameter": 50}),
    "MWA-WARN-CLUSTER": ({"max_lesion_diameter": 50}, {"max_lesion_diameter": 30}),
    "LASER-REL-ZONE": ({"max_lesion_diameter": 11}, {"max_lesion_diameter": 10}),
    "IRE-REL-ZONE": ({"max_lesion_diameter": 21}, {"max_lesion_diameter": 20}),
    "TACE-IND-SSA-REFRACTORY": ({**NEN, "ssa_refractory": True}, {**NEN, "ssa_refractory": False}),
    "TACE-IND-LOW-GRADE": ({**NEN, "ki67": 20}, {**NEN, "ki67": 20.1}),
    "TACE-IND-HEPATIC-PREDOMINANT": ({"extrahepatic_state": "stable"}, {"extrahepatic_state": "progressing"}),
    "TACE-ABS-PVT": ({"flags": ["portal-vein-thrombosis"]}, {}),
    "TACE-ABS-BILIOENTERIC": ({"flags": ["bilioenteric-anastomosis"]}, {}),
    "TACE-ABS-BURDEN": ({"tumor_burden": 76}, {"tumor_burden": 75}),
    "TACE-ABS-BILIRUBIN": ({"bilirubin": 3.0}, {"bilirubin": 2.9}),
    "TACE-ABS-ASCITES": ({"flags": ["ascites"]}, {}),
    "TACE-ABS-CONTRAST-ALLERGY": ({"flags": ["contrast-allergy"]}, {}),
    "TACE-ABS-COAGULOPATHY": ({"flags": ["irreversible-coagulopathy"]}, {}),
    "TACE-WARN-RETNET-BURDEN": ({"tumor_burden": 71}, {"tumor_burden": 70}),
    "TACE-WARN-RETNET-BILIRUBIN": ({"bilirubin": 2.1}, {"bilirubin": 2.0}),
    "TACE-WARN-RETNET-ALBUMIN": ({"albumin": 2.9}, {"albumin": 3.0}),
    "TACE-WARN-RETNET-PLATELETS": ({"platelets": 49}, {"platelets": 50}),
    "TACE-WARN-RETNET-INR": ({"inr": 1.51}, {"inr": 1.5}),
    "TACE-WARN-RETNET-CREATININE": ({"creatinine": 2.01}, {"creatinine": 2.0}),
    "TACE-WARN-RETNET-ECOG": ({"ecog": 3}, {"ecog": 2}),
    "DEBTACE-REL-INTESTINAL": ({"primary_site": "small-intestine"}, {"primary_site": "pancreas"}),
    "TAE-WARN-PANCREAS": ({"primary_site": "pancreas"}, {"primary_site": "small-intestine"}),
    "THY-TACE-REL-SIZE": ({**THY, "max_lesion_diameter": 30}, {**THY, "max_lesion_diameter": 29}),
    "THY-TACE-REL-BURDEN": ({**THY, "tumor_burden": 30}, {**THY, "tumor_burden": 29}),
    "SIRT-ABS-LUNG-SHUNT": ({"lung_shunt": 21}, {"lung_shunt": 20}),
    "SIRT-ABS-BILIRUBIN": ({"bilirubin": 3.0}, {"bilirubin": 2.9}),
    "SIRT-REL-BILIRUBIN-LABEL": ({"bilirubin": 2.9}, {"bilirubin": 2.0}),
    "SIRT-ABS-ASCITES": ({"flags": ["ascites"]}, {}),
    "SIRT-ABS-GI-REFLUX": ({"flags": ["gi-reflux-on-maa"]}, {}),
    "SIRT-ABS-BILIARY-DILATATION": ({"flags": ["biliary-dilatation"]}, {}),
    "SIRT-ABS-PORTAL-VEIN": ({"flags": ["portal-vein-thrombosis"]}, {}),
    "SIRT-ABS-PRIOR-RADIATION": ({"flags": ["prior-liver-radiation"]}, {}),
    "SIRT-REL-LIVER-DISEASE": ({"flags": ["pre-existing-liver-disease"]}, {}),
    "SIRT-REL-CHEMOTHERAPY": ({"flags": ["chemotherapy"]}, {"flags": ["somatostatin-analogue"]}),
    "SIRT-REL-BURDEN": ({"tumor_burden": 71}, {"tumor_burden": 70}),
    "SIRT-REL-BURDEN-ALBUMIN": ({"tumor_burden": 51, "albumin": 2.9}, {"tumor_burden": 51, "albumin": 3.0}),
    "SIRT-REL-ECOG": ({"ecog": 3}, {"ecog": 2}),
    "SIRT-WARN-PRIOR-PRRT": ({"flags": ["therapy:prrt"]}, {"flags": ["therapy:tae"]}),
    "SIRT-WARN-PRIOR-SIRT": ({"flags": ["therapy:sirt"]}, {"flags": ["therapy:prrt"]}),
    "SIRT-WARN-EXTRAHEPATIC": ({"extrahepatic_state": "progressing"}, {"extrahepatic_state": "stable"}),
    "PRRT-IND-NEN": ({"primary_site": "thyroid-medullary"}, {"primary_site": "thyroid-differentiated"}),
    "PRRT-WARN-MTC": ({"primary_site": "thyroid-medullary"}, {"primary_site": "pancreas"}),
    "PRRT-IND-SSTR": ({"krenning": 2}, {"krenning": 1}),
    "PRRT-WARN-KRENNING-2": ({"krenning": 2}, {"krenning": 3}),
    "PRRT-IND-KI67": ({"ki67": 20}, {"ki67": 21}),
    "PRRT-WARN-KI67-10": ({"ki67": 10}, {"ki67": 9.9}),
    "PRRT-IND-PROGRESSION": ({"ssa_refractory": False, "liver_state": "progressing"},
                             {"ssa_refractory": False, "liver_state": "stable"}),
    "PRRT-ABS-CRCL": ({"creatinine_clearance": 49}, {"creatinine_clearance": 50}),
    "PRRT-ABS-HEMOGLOBIN": ({"hemoglobin": 7.9}, {"hemoglobin": 8}),
    "PRRT-ABS-LEUKOCYTES": ({"leukocytes": 1.9}, {"leukocytes": 2}),
    "PRRT-ABS-PLATELETS": ({"platelets": 74}, {"platelets": 75}),
    "PRRT-ABS-BILIRUBIN": ({"bilirubin": 3.7}, {"bilirubin": 3.6}),
    "PRRT-ABS-ALBUMIN": ({"albumin": 3.0}, {"albumin": 3.1}),
    "PRRT-ABS-KARNOFSKY": ({"karnofsky": 50}, {"karnofsky": 60}),
    "IAPRRT-IND-TRIAL": ({"trial_enrolled": True}, {"trial_enrolled": False}),
    "IAPRRT-ABS-SSTR-NEGATIVE": ({"krenning": 1}, {"krenning": 2}),
}

RULES = {r.id: r for r in default_ruleset().rules}


def _facts(spec: dict[str, Any]):  # type: ignore[no-untyped-def]
    spec = dict(spec)
    flags = spec.pop("flags", [])
    return make_facts(spec, flags=flags)


def test_every_rule_has_a_case() -> None:
    assert set(CASES) == set(RULES)


@pytest.mark.parametrize("rule_id", sorted(CASES))
def test_rule_met_side(rule_id: str) -> None:
    outcome, _ = evaluate_rule(RULES[rule_id], _facts(CASES[rule_id][0]), default_ruleset())
    assert outcome.value is Tri.MET, outcome.evidence


@pytest.mark.parametrize("rule_id", sorted(CASES))
def test_rule_not_met_side(rule_id: str) -> None:
    outcome, _ = evaluate_rule(RULES[rule_id], _facts(CASES[rule_id][1]), default_ruleset())
    assert outcome.value is Tri.NOT_MET, outcome.evidence


@pytest.mark.parametrize("rule_id", sorted(r for r, rule in RULES.items()
                                           if any(u not in {"condition", "medication", "procedure"} for _, u in rule.inputs)
                                           and rule.id != "IAPRRT-IND-TRIAL"))
def test_rule_unknown_without_its_measured_inputs(rule_id: str) -> None:
    """With no measured input recorded, a rule on measured inputs is unknown (open world)
    unless its `when` excludes it; closed-world inputs never make it unknown."""
    rule = RULES[rule_id]
    outcome, _ = evaluate_rule(rule, make_facts({}), default_ruleset())
    assert outcome.value is Tri.UNKNOWN
    measured = {n for n, u in rule.inputs if u not in {"condition", "medication", "procedure"}}
    assert outcome.missing and outcome.missing <= measured


def test_trial_enrolment_is_closed_world() -> None:
    outcome, _ = evaluate_rule(RULES["IAPRRT-IND-TRIAL"], make_facts({}), default_ruleset())
    assert outcome.value is Tri.NOT_MET
    assert "assumed" in " ".join(outcome.evidence)


def test_closed_world_absence_is_said() -> None:
    outcome, _ = evaluate_rule(RULES["SIRT-ABS-ASCITES"], make_facts({}), default_ruleset())
    assert outcome.value is Tri.NOT_MET
    assert "assumed absent" in outcome.evidence[0]


def test_thyroid_rules_do_not_apply_to_nen() -> None:
    outcome, applies = evaluate_rule(RULES["THY-TACE-REL-SIZE"],
                                     make_facts({**NEN, "max_lesion_diameter": 45}), default_ruleset())
    assert outcome.value is Tri.NOT_MET and not applies


def test_ssa_indication_does_not_apply_to_thyroid() -> None:
    outcome, applies = evaluate_rule(RULES["TACE-IND-SSA-REFRACTORY"], make_facts({**THY}), default_ruleset())
    assert outcome.value is Tri.MET and not applies


@pytest.mark.parametrize(("ki67", "grade", "expected"), [
    (None, 1, Tri.MET), (None, 2, Tri.UNKNOWN), (None, 3, Tri.NOT_MET),
    (5, 1, Tri.MET), (15, 3, Tri.NOT_MET), (5, 3, Tri.UNKNOWN),  # disagreeing inputs → unknown
])
def test_transplant_ki67_and_grade_consensus(ki67: float | None, grade: int, expected: Tri) -> None:
    values: dict[str, Any] = {"grade": grade}
    if ki67 is not None:
        values["ki67"] = ki67
    outcome, _ = evaluate_rule(RULES["LT-IND-KI67"], make_facts(values), default_ruleset())
    assert outcome.value is expected


@pytest.mark.parametrize(("ecog", "expected"), [(0, Tri.NOT_MET), (1, Tri.NOT_MET), (2, Tri.UNKNOWN),
                                                (3, Tri.MET), (4, Tri.MET)])
def test_karnofsky_from_ecog_when_missing(ecog: int, expected: Tri) -> None:
    outcome, _ = evaluate_rule(RULES["PRRT-ABS-KARNOFSKY"], make_facts({"ecog": ecog}), default_ruleset())
    assert outcome.value is expected


def test_rules_with_disagreeing_sources_name_it_in_the_reason() -> None:
    from services.eligibility.domain.evaluation import evaluate_therapy

    verdict = evaluate_therapy("sirt", make_facts({"bilirubin": 2.5}), default_ruleset())
    reason = next(r for r in verdict.reasons if r.rule.id == "SIRT-REL-BILIRUBIN-LABEL")
    text = reason.text()
    assert "SIRT-REL-BILIRUBIN-LABEL" in text and "Sources disagree" in text and "Braat" in text


#: The other edge of rules that hold between two limits, and the other branch of rules that
#: hold for one of several findings (CASES tests only one of each).
OTHER_SIDE: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "LT-WARN-AGE-55": ({"age": 60}, {"age": 61}),  # 61 is beyond the 60 default: LT-IND-AGE decides
    "SIRT-REL-BILIRUBIN-LABEL": ({"bilirubin": 2.99}, {"bilirubin": 3.0}),  # 3.0: SIRT-ABS-BILIRUBIN decides
    "TACE-WARN-RETNET-BILIRUBIN": ({"bilirubin": 2.99}, {"bilirubin": 3.0}),
    "TACE-WARN-RETNET-BURDEN": ({"tumor_burden": 75}, {"tumor_burden": 76}),
    "RES-WARN-DEBULK-70": ({"resectable_fraction": 89.9}, {"resectable_fraction": 90}),
    "PRRT-WARN-KI67-10": ({"ki67": 20}, {"ki67": 20.1}),
    "ABL-WARN-OLIGO-3": ({"lesion_count": 4}, {"lesion_count": 5}),
    "RFA-WARN-CLUSTER": ({"max_lesion_diameter": 35}, {"max_lesion_diameter": 36}),  # needed 45 vs 46 mm
    "MWA-WARN-CLUSTER": ({"max_lesion_diameter": 31}, {"max_lesion_diameter": 30}),  # needed 41 vs 40 mm
    "SIRT-REL-BURDEN-ALBUMIN": ({"tumor_burden": 51, "albumin": 2.9}, {"tumor_burden": 50, "albumin": 2.9}),
    "PRRT-IND-PROGRESSION": ({"ssa_refractory": True, "liver_state": "stable"},
                             {"ssa_refractory": False, "liver_state": "stable"}),
    "ABL-ABS-BILIOENTERIC": ({"flags": ["bilioenteric-anastomosis"]}, {}),
    "TACE-ABS-BILIOENTERIC": ({"flags": ["sphincterotomy"]}, {}),
    "RES-IND-EXTRAHEPATIC": ({"extrahepatic_state": "absent"}, {"extrahepatic_state": "progressing"}),
    "TACE-IND-HEPATIC-PREDOMINANT": ({"extrahepatic_state": "absent"}, {"extrahepatic_state": "progressing"}),
    "LT-IND-PORTAL-PRIMARY": ({"primary_site": "small-intestine"}, {"primary_site": "thyroid-medullary"}),
    "LT-WARN-PORTAL-OUTSIDE-001": ({"primary_site": "stomach"}, {"primary_site": "pancreas"}),
    "PRRT-IND-SSTR": ({"krenning": 4}, {"krenning": 0}),
    "IAPRRT-ABS-SSTR-NEGATIVE": ({"krenning": 0}, {"krenning": 4}),
    "TACE-IND-LOW-GRADE": ({**NEN, "grade": 2}, {**NEN, "grade": 3}),
    "PRRT-IND-KI67": ({"grade": 2}, {"grade": 3}),
}


@pytest.mark.parametrize("rule_id", sorted(OTHER_SIDE))
def test_rule_other_side(rule_id: str) -> None:
    met, not_met = OTHER_SIDE[rule_id]
    outcome, _ = evaluate_rule(RULES[rule_id], _facts(met), default_ruleset())
    assert outcome.value is Tri.MET, outcome.evidence
    outcome, _ = evaluate_rule(RULES[rule_id], _facts(not_met), default_ruleset())
    assert outcome.value is Tri.NOT_MET, outcome.evidence
