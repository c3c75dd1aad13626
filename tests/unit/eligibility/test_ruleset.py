"""The rule-set file: shape checks of the loader, and what a clinician can rely on in it."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import yaml

from services.eligibility.domain.evaluation import THERAPIES
from services.eligibility.domain.rules import Kind
from services.eligibility.ruleset import RULESET_PATH, RuleSetError, default_ruleset, parse_ruleset

DOC: dict[str, Any] = yaml.safe_load(RULESET_PATH.read_text(encoding="utf-8"))


def test_versioned_and_complete() -> None:
    rules = default_ruleset()
    assert rules.version == DOC["version"] and rules.version
    for therapy in THERAPIES:
        assert rules.rules_for(therapy), therapy
    for rule in rules.rules:
        assert rule.source and rule.threshold and rule.title
        assert rule.inputs
        assert rule.id.upper() == rule.id


@pytest.mark.parametrize("therapy", THERAPIES)
def test_every_therapy_has_a_rule_that_can_exclude_it(therapy: str) -> None:
    kinds = {r.kind for r in default_ruleset().rules_for(therapy)}
    assert kinds & {Kind.INDICATION, Kind.ABSOLUTE}


@pytest.mark.parametrize("pair", [
    ("SIRT-ABS-BILIRUBIN", "Braat"), ("SIRT-REL-BURDEN", "50 %"), ("TACE-ABS-BURDEN", "70 %"),
    ("PRRT-IND-SSTR", "Krenning > 2"), ("LT-IND-AGE", "55"), ("LT-IND-KI67", "20 %"),
    ("PRRT-IND-KI67", "10 %"), ("RES-IND-DEBULK", "greater than 90 %"),
    *((rule_id, "10 mm") for rule_id in ("RFA-REL-ZONE", "RFA-WARN-CLUSTER", "MWA-REL-ZONE", "MWA-WARN-CLUSTER",
                                         "LASER-REL-ZONE", "IRE-REL-ZONE", "ABL-WARN-SIZE")),
    ("SIRT-REL-BURDEN-ALBUMIN", "75 %"), ("PRRT-WARN-KRENNING-2", "Krenning > 2"),
    ("SIRT-REL-LIVER-DISEASE", "Table 1"), ("SIRT-REL-CHEMOTHERAPY", "Table 1"),
])
def test_disagreements_of_the_issue_are_named(pair: tuple[str, str]) -> None:
    rule_id, fragment = pair
    rule = next(r for r in default_ruleset().rules if r.id == rule_id)
    assert fragment in rule.disagreement


def _broken(edit: Any) -> dict[str, Any]:
    doc = copy.deepcopy(DOC)
    edit(doc)
    return doc


def test_duplicate_id_refused() -> None:
    doc = _broken(lambda d: d["rules"].append(copy.deepcopy(d["rules"][0])))
    with pytest.raises(RuleSetError, match="duplicate"):
        parse_ruleset(doc)


def test_declared_inputs_must_match_the_test() -> None:
    doc = _broken(lambda d: d["rules"][0].update(inputs=[{"name": "bilirubin", "unit": "mg/dL"}]))
    with pytest.raises(RuleSetError, match="declared inputs"):
        parse_ruleset(doc)


def test_unit_must_match_the_catalogue() -> None:
    def edit(d: dict[str, Any]) -> None:
        rule = next(r for r in d["rules"] if r["id"] == "SIRT-ABS-BILIRUBIN")
        rule["inputs"] = [{"name": "bilirubin", "unit": "umol/L"}]
    with pytest.raises(RuleSetError, match="mg/dL"):
        parse_ruleset(_broken(edit))


def test_unknown_therapy_kind_and_operator_refused() -> None:
    with pytest.raises(RuleSetError, match="therapy"):
        parse_ruleset(_broken(lambda d: d["rules"][0].update(therapy="homeopathy")))
    with pytest.raises(RuleSetError):
        parse_ruleset(_broken(lambda d: d["rules"][0].update(kind="maybe")))
    with pytest.raises(RuleSetError, match="operator"):
        parse_ruleset(_broken(lambda d: d["rules"][0]["test"].update(op="~")))
