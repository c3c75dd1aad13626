"""Search index entries of a resource: the tokens and references the SQL store searches.

Pure functions over the resource JSON. Which element feeds which parameter is defined here and
in :mod:`gateway.store.search_params` (``CODE_ELEMENTS``, ``FOCUS_TYPES``).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from gateway.store.search_params import CODE_ELEMENTS, FOCUS_TYPES, parse_reference
from netliver.fhir.outcome import FhirError

__all__ = ["MAX_REF_TYPE_CHARS", "MAX_TOKEN_CHARS", "RefRow", "TokenRow", "check_index_limits", "index_resource"]

#: Longest indexed system, code or identifier value, and longest reference type: the columns'
#: widths. PostgreSQL refuses longer values and SQLite stores them, so the same resource would
#: be valid on one store and not on the other; both refuse them here, before the write.
MAX_TOKEN_CHARS = 1024
MAX_REF_TYPE_CHARS = 64
#: The element each indexed parameter comes from (for the 400's ``expression``).
_PARAM_ELEMENTS = {"code": "code", "status": "status", "identifier": "identifier", "subject": "subject",
                   "patient": "patient", "focus": "focus", "target": "target"}


@dataclass(frozen=True, order=True)
class TokenRow:
    """A token: ``system`` "" when the coding or identifier has none."""

    param: str
    system: str
    code: str


@dataclass(frozen=True, order=True)
class RefRow:
    """A reference: ``target_type`` "" when the reference names no type."""

    param: str
    target_type: str
    target_id: str


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, list) else [value]


def _codings(concept: Any) -> Iterator[tuple[str, str]]:
    if not isinstance(concept, Mapping):
        return
    for item in _as_list(concept.get("coding")):
        if isinstance(item, Mapping) and isinstance(item.get("code"), str):
            yield str(item.get("system") or ""), item["code"]


def _references(value: Any) -> Iterator[tuple[str, str]]:
    for item in _as_list(value):
        if isinstance(item, Mapping) and isinstance(item.get("reference"), str):
            ref = parse_reference(item["reference"])
            if ref is not None:
                yield ref.resource_type or "", ref.resource_id


def index_resource(resource: Mapping[str, Any]) -> tuple[list[TokenRow], list[RefRow]]:
    """The token and reference index entries of ``resource`` (sorted, without duplicates)."""
    rtype = str(resource.get("resourceType", ""))
    tokens: set[TokenRow] = set()
    refs: set[RefRow] = set()
    code_element = CODE_ELEMENTS.get(rtype)
    if code_element:
        tokens.update(TokenRow("code", system, code) for system, code in _codings(resource.get(code_element)))
    status = resource.get("status")
    if isinstance(status, str):
        tokens.add(TokenRow("status", "", status))
    for ident in _as_list(resource.get("identifier")):
        if isinstance(ident, Mapping) and isinstance(ident.get("value"), str):
            tokens.add(TokenRow("identifier", str(ident.get("system") or ""), ident["value"]))
    subject_element = "for" if rtype == "Task" else "subject"
    for target_type, target_id in _references(resource.get(subject_element)):
        refs.add(RefRow("subject", target_type, target_id))
        if target_type == "Patient":
            refs.add(RefRow("patient", target_type, target_id))
    for target_type, target_id in _references(resource.get("patient")):
        if target_type == "Patient":
            refs.add(RefRow("patient", target_type, target_id))
    if rtype in FOCUS_TYPES:
        refs.update(RefRow("focus", t, i) for t, i in _references(resource.get("focus")))
    if rtype == "Provenance":
        refs.update(RefRow("target", t, i) for t, i in _references(resource.get("target")))
    check_index_limits(rtype, tokens, refs)
    return sorted(tokens), sorted(refs)


def check_index_limits(rtype: str, tokens: set[TokenRow], refs: set[RefRow]) -> None:
    """400 naming the element when an indexed value is longer than the index holds."""
    for token in tokens:
        if len(token.system) > MAX_TOKEN_CHARS or len(token.code) > MAX_TOKEN_CHARS:
            raise FhirError(400, "too-long", f"a {token.param} system or value is longer than "
                            f"{MAX_TOKEN_CHARS} characters", f"{rtype}.{_PARAM_ELEMENTS[token.param]}")
    for ref in refs:
        if len(ref.target_type) > MAX_REF_TYPE_CHARS:
            raise FhirError(400, "too-long", f"a reference's resource type is longer than {MAX_REF_TYPE_CHARS} "
                            "characters", f"{rtype}.{_PARAM_ELEMENTS[ref.param]}.reference")
