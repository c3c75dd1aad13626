"""Load the versioned rule set (``rules/eligibility-rules.yaml``) into domain objects.

The YAML file is the single place where thresholds, sources and disagreements live; this
module only checks its shape (unique ids, known therapies, kinds, operators and inputs, and
that every rule's declared ``inputs`` are exactly the inputs its tests read) and converts it.
Kept outside ``domain/`` because the domain must not import ``yaml``.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from services.eligibility.domain.evaluation import THERAPIES
from services.eligibility.domain.geometry import AblationFit, AblationZone
from services.eligibility.domain.rules import (
    AblationTest,
    AllOf,
    AnyOf,
    Compare,
    Consensus,
    InputSpec,
    Kind,
    Not,
    Present,
    Rule,
    RuleSet,
    Staleness,
    Test,
)

__all__ = ["RULESET_PATH", "RuleSetError", "default_ruleset", "input_catalogue", "load_ruleset",
           "medication_classes", "parse_ruleset"]

RULESET_PATH = Path(__file__).parent / "rules" / "eligibility-rules.yaml"
_OPS = {"<", "<=", ">", ">=", "==", "!=", "in", "not_in"}
_PRESENT_KINDS = {"condition": "condition", "medication": "medication", "prior_therapy": "prior_therapy"}


class RuleSetError(ValueError):
    """The rule-set file is malformed."""


def _scalar(value: Any) -> Decimal | bool | str:
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return Decimal(str(value))
    if isinstance(value, str):
        return value
    raise RuleSetError(f"unsupported value {value!r}")


def _test(data: Any, where: str) -> Test:
    if not isinstance(data, Mapping):
        raise RuleSetError(f"{where}: a test must be a mapping")
    if "input" in data:
        op = data.get("op")
        if op not in _OPS:
            raise RuleSetError(f"{where}: unknown operator {op!r}")
        raw = data.get("value")
        value: Decimal | bool | str | tuple[Decimal | bool | str, ...]
        value = tuple(_scalar(v) for v in raw) if isinstance(raw, list) else _scalar(raw)
        if op in {"in", "not_in"} and not isinstance(value, tuple):
            raise RuleSetError(f"{where}: {op} needs a list")
        return Compare(str(data["input"]), op, value,
                       tuple(_scalar(v) for v in data.get("unknown_at", ())))
    for key, kind in _PRESENT_KINDS.items():
        if key in data:
            return Present(kind, str(data[key]))
    if "ablation_fit" in data:
        margin = data.get("margin_mm")
        return AblationTest(str(data["ablation_fit"]), AblationFit(data["is"]),
                            Decimal(str(margin)) if margin is not None else None)
    if "all" in data:
        return AllOf(tuple(_test(t, where) for t in data["all"]))
    if "any" in data:
        return AnyOf(tuple(_test(t, where) for t in data["any"]))
    if "not" in data:
        return Not(_test(data["not"], where))
    if "consensus" in data:
        return Consensus(tuple(_test(t, where) for t in data["consensus"]))
    raise RuleSetError(f"{where}: unknown test {dict(data)!r}")


def _reads(test: Test) -> set[str]:
    if isinstance(test, Compare):
        return {test.input}
    if isinstance(test, Present):
        return {test.code}
    if isinstance(test, AblationTest):
        return {"max_lesion_diameter"}
    if isinstance(test, Not):
        return _reads(test.item)
    return {name for t in test.items for name in _reads(t)}


def _dec(value: Any) -> Decimal | None:
    return None if value is None else Decimal(str(value))


def parse_ruleset(data: Mapping[str, Any]) -> RuleSet:
    """Check and convert the parsed YAML document."""
    try:
        staleness = {k: Staleness(v.get("fresh_days"), v.get("max_days"))
                     for k, v in data["staleness"].items()}
        inputs: dict[str, InputSpec] = {}
        for name, spec in data["inputs"].items():
            if spec.get("staleness") not in staleness:
                raise RuleSetError(f"input {name}: unknown staleness class {spec.get('staleness')!r}")
            low, high = (spec.get("range") or [None, None])
            default = spec.get("default")
            inputs[name] = InputSpec(name, spec["display"], str(spec["unit"]), spec["staleness"],
                                     _dec(low), _dec(high),
                                     _scalar(default) if default is not None else None)
        zones = {k: AblationZone(k, _dec(v.get("single_mm")), _dec(v.get("cluster_mm")),
                                 str(v.get("cluster", "")))
                 for k, v in data["ablation_zones"].items()}
        rules: list[Rule] = []
        seen: set[str] = set()
        for item in data["rules"]:
            rid = str(item["id"])
            if rid in seen:
                raise RuleSetError(f"duplicate rule id {rid}")
            seen.add(rid)
            therapies = item["therapy"]
            therapies = tuple(therapies) if isinstance(therapies, list) else (therapies,)
            unknown = [t for t in therapies if t not in THERAPIES]
            if unknown:
                raise RuleSetError(f"{rid}: unknown therapy {unknown}")
            test = _test(item["test"], rid)
            when = _test(item["when"], rid) if "when" in item else None
            declared = tuple((str(i["name"]), str(i["unit"])) for i in item["inputs"])
            read = _reads(test) | (_reads(when) if when else set())
            if {n for n, _ in declared} != read:
                raise RuleSetError(f"{rid}: declared inputs {sorted(n for n, _ in declared)} "
                                   f"differ from the inputs its tests read {sorted(read)}")
            for name, unit in declared:
                if name in inputs and inputs[name].unit != unit:
                    raise RuleSetError(f"{rid}: input {name} is in {inputs[name].unit}, not {unit}")
                if name not in inputs and unit not in {"condition", "medication", "procedure"}:
                    raise RuleSetError(f"{rid}: unknown input {name}")
            for node in _walk(test):
                if isinstance(node, AblationTest) and node.modality not in zones:
                    raise RuleSetError(f"{rid}: no ablation zone for {node.modality}")
            rules.append(Rule(rid, therapies, Kind(item["kind"]), str(item["title"]), declared,
                              str(item["threshold"]), test, str(item["source"]), when,
                              str(item.get("disagreement", ""))))
        return RuleSet(str(data["version"]), str(data["name"]), tuple(rules), inputs, staleness,
                       zones, Decimal(str(data["ablation_margin_mm"])))
    except (KeyError, TypeError, AttributeError, ValueError) as exc:
        if isinstance(exc, RuleSetError):
            raise
        raise RuleSetError(f"malformed rule set: {exc!r}") from exc


def _walk(test: Test) -> list[Test]:
    if isinstance(test, AllOf | AnyOf | Consensus):
        return [test, *(n for t in test.items for n in _walk(t))]
    if isinstance(test, Not):
        return [test, *_walk(test.item)]
    return [test]


def _document(path: Path) -> dict[str, Any]:
    with path.open(encoding="utf-8") as fh:
        doc = yaml.safe_load(fh)
    if not isinstance(doc, dict):
        raise RuleSetError(f"{path}: not a mapping")
    return doc


def load_ruleset(path: Path = RULESET_PATH) -> RuleSet:
    return parse_ruleset(_document(path))


@cache
def default_ruleset() -> RuleSet:
    """The shipped rule set (parsed once per process)."""
    return load_ruleset()


@cache
def input_catalogue() -> dict[str, dict[str, Any]]:
    """The raw ``inputs`` section (codes, molar masses) for the FHIR boundary."""
    inputs: dict[str, dict[str, Any]] = _document(RULESET_PATH)["inputs"]
    return inputs


@cache
def medication_classes() -> dict[str, dict[str, list[str]]]:
    """Medication classes (ATC prefixes and names) read closed-world from MedicationStatements."""
    classes: dict[str, dict[str, list[str]]] = _document(RULESET_PATH)["medication_classes"]
    return classes
