"""Subsets of a resource for ``_summary`` and ``_elements`` (FHIR R4 §3.1.1.5.8 and §3.1.1.5.9).

A subset keeps ``resourceType``, ``id`` and ``meta`` and is marked with the ``SUBSETTED`` tag
(``http://terminology.hl7.org/CodeSystem/v3-ObservationValue``), so that nobody writes it back
as if it were the whole resource.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from functools import cache
from typing import Any

from netliver.fhir.models import model_class
from netliver.fhir.outcome import FhirError

__all__ = ["SUBSETTED", "select_elements", "summarize", "summary_elements"]

SUBSETTED = {"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue", "code": "SUBSETTED"}
_ALWAYS = ("resourceType", "id", "meta")


@cache
def summary_elements(resource_type: str) -> frozenset[str]:
    """The element names of a type that are part of its summary (``isSummary`` in R4)."""
    try:
        cls = model_class(resource_type)
    except FhirError:
        return frozenset()
    names = set()
    for name, field in cls.model_fields.items():
        extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
        if extra.get("summary_element_property"):
            names.add(field.alias or name)
    return frozenset(names)


def _tagged(resource: Mapping[str, Any], keep: Iterable[str]) -> dict[str, Any]:
    wanted = set(keep)
    out = {k: v for k, v in resource.items() if k in wanted or k in _ALWAYS}
    meta = dict(out.get("meta") or {})
    tags = [t for t in meta.get("tag") or [] if t != SUBSETTED]
    meta["tag"] = [*tags, SUBSETTED]
    out["meta"] = meta
    return out


def summarize(resource: Mapping[str, Any], mode: str) -> dict[str, Any]:
    """``_summary=true`` (summary elements only) or ``data`` (everything but the narrative)."""
    if mode == "data":
        return _tagged(resource, (k for k in resource if k != "text"))
    if mode == "true":
        summary = summary_elements(str(resource.get("resourceType", "")))
        return _tagged(resource, (k for k in resource if k in summary))
    return dict(resource)


def _chosen(key: str, names: set[str]) -> bool:
    """``effective`` selects ``effectiveDateTime`` (a choice element by its base name)."""
    return key in names or any(key.startswith(n) and key[len(n):][:1].isupper() for n in names)


def select_elements(resource: Mapping[str, Any], names: Iterable[str]) -> dict[str, Any]:
    """``_elements=a,b``: the named top-level elements (``Type.a`` accepted as ``a``);
    ``_elements=-a,-b``: every element but those."""
    listed = [n.split(".", 1)[1] if "." in n and n[:1].isupper() else n for n in names]
    excluded = {n[1:] for n in listed if n.startswith("-")}
    if excluded:
        return _tagged(resource, (k for k in resource if not _chosen(k, excluded)))
    return _tagged(resource, (k for k in resource if _chosen(k, set(listed))))
