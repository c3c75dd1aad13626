"""Validation of a resource beyond its structure: required bindings and invariants.

:func:`parse_resource` checks structure and data types. A resource can pass that and still be
invalid R4: a code outside a *required* binding (FHIR R4 §4.1.5, e.g. ``Observation.status`` =
``bogus``) or a broken invariant (``obs-6``: no ``dataAbsentReason`` beside a value). This
module checks both on the parsed model and answers issues naming each element.

Required bindings come from the R4B models' code lists (``enum_values``). Where a model's list is
incomplete (it ends in ``+``: a hierarchical value set) the full R4 value set is listed here; an
incomplete list that is not completed here is not checked (it would refuse valid codes).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel

from netliver.fhir.models import parse_resource
from netliver.fhir.outcome import FhirError, Issue

__all__ = ["binding_issues", "check_resource", "invariant_issues", "resource_issues"]

#: Required value sets whose R4B model list is incomplete or absent, by (model class, field).
_FULL_CODES: dict[tuple[str, str], frozenset[str]] = {
    # http://hl7.org/fhir/R4/valueset-observation-status.html
    ("Observation", "status"): frozenset({
        "registered", "preliminary", "final", "amended", "corrected", "cancelled",
        "entered-in-error", "unknown"}),
    # http://hl7.org/fhir/R4/valueset-diagnostic-report-status.html
    ("DiagnosticReport", "status"): frozenset({
        "registered", "partial", "preliminary", "final", "amended", "corrected", "appended",
        "cancelled", "entered-in-error", "unknown"}),
    # http://hl7.org/fhir/R4/valueset-task-status.html
    ("Task", "status"): frozenset({
        "draft", "requested", "received", "accepted", "rejected", "ready", "cancelled",
        "in-progress", "on-hold", "failed", "completed", "entered-in-error"}),
    # http://hl7.org/fhir/R4/valueset-encounter-status.html
    ("Encounter", "status"): frozenset({
        "planned", "arrived", "triaged", "in-progress", "onleave", "finished", "cancelled",
        "entered-in-error", "unknown"}),
    # http://hl7.org/fhir/R4/valueset-quantity-comparator.html (Quantity and its profiles)
    ("Quantity", "comparator"): frozenset({"<", "<=", ">=", ">"}),
}


#: Elements whose model list is not their value set (the R4 binding is to all MIME types, or
#: the list is an example ending in "etc."): not checked here.
_UNCHECKED = frozenset({("CapabilityStatement", "format"), ("CapabilityStatement", "patchFormat"),
                        ("Expression", "language")})


def _codes_of(cls: type, name: str, field: Any) -> frozenset[str] | None:
    if (cls.__name__, name) in _UNCHECKED:
        return None
    for klass in cls.__mro__:
        full = _FULL_CODES.get((klass.__name__, name))
        if full is not None:
            return full
    extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
    listed = extra.get("enum_values")
    if not listed or "+" in listed or "etc." in listed:
        return None
    return frozenset(str(code) for code in listed)


def _walk(model: BaseModel, path: str, issues: list[Issue]) -> None:
    cls = type(model)
    for name, field in cls.model_fields.items():
        value = getattr(model, name, None)
        if value is None:
            continue
        where = f"{path}.{field.alias or name}"
        codes = _codes_of(cls, name, field)
        items = value if isinstance(value, list) else [value]
        for i, item in enumerate(items):
            here = f"{where}[{i}]" if isinstance(value, list) else where
            if codes is not None and isinstance(item, str):
                if item not in codes:
                    issues.append(Issue("code-invalid", f"{item!r} is not in the required value set of "
                                        f"{where} ({', '.join(sorted(codes))})", (here,)))
            elif isinstance(item, BaseModel):
                _walk(item, here, issues)


def binding_issues(model: BaseModel, resource_type: str) -> list[Issue]:
    """One issue per code outside its required binding, anywhere in the resource."""
    issues: list[Issue] = []
    _walk(model, resource_type, issues)
    return issues


def _value_keys(element: Mapping[str, Any]) -> list[str]:
    return [k for k in element if k.startswith("value") and k[5:6].isupper()]


def _codings(concept: Any) -> set[tuple[str, str]]:
    if not isinstance(concept, Mapping):
        return set()
    return {(str(c.get("system", "")), str(c.get("code", ""))) for c in concept.get("coding") or []
            if isinstance(c, Mapping) and c.get("code")}


def invariant_issues(resource: Mapping[str, Any]) -> list[Issue]:
    """The R4 invariants checked here (``obs-6``, ``obs-7``), as issues naming the element."""
    issues: list[Issue] = []
    if resource.get("resourceType") != "Observation":
        return issues
    if "dataAbsentReason" in resource and _value_keys(resource):
        issues.append(Issue("invariant", "obs-6: dataAbsentReason SHALL only be present if "
                            "Observation.value[x] is not present", ("Observation.dataAbsentReason",)))
    own = _codings(resource.get("code"))
    for i, comp in enumerate(resource.get("component") or []):
        if not isinstance(comp, Mapping):
            continue
        if "dataAbsentReason" in comp and _value_keys(comp):
            issues.append(Issue("invariant", "obs-6: a component's dataAbsentReason SHALL only be present "
                                "without its value[x]", (f"Observation.component[{i}].dataAbsentReason",)))
        if own & _codings(comp.get("code")) and _value_keys(resource):
            issues.append(Issue("invariant", "obs-7: a component with the Observation's own code SHALL NOT "
                                "sit beside Observation.value[x]", (f"Observation.component[{i}].code",)))
    return issues


def resource_issues(resource: Mapping[str, Any]) -> list[Issue]:
    """Every issue of a structurally valid resource (raises 400 when the structure is invalid)."""
    model = parse_resource(resource)
    return [*binding_issues(model, str(resource["resourceType"])), *invariant_issues(resource)]


def check_resource(resource: Any) -> None:
    """400 naming every offending element unless ``resource`` is a valid R4 resource: structure,
    required bindings and the invariants of :func:`invariant_issues`."""
    issues = resource_issues(resource)
    if issues:
        raise FhirError.from_issues(400, issues)
