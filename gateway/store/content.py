"""Resource JSON as stored, and the content comparison behind idempotent writes."""

from __future__ import annotations

import json
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from netliver.fhir.builders import canonical_json

__all__ = ["SERVER_META", "content_key", "dumps", "numeric_form", "same_content"]

#: ``meta`` elements the store manages; they never count as a change of content.
SERVER_META = ("versionId", "lastUpdated")


def _json_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() and "." not in str(value) else float(value)
    raise TypeError(f"{type(value).__name__} is not JSON")


def dumps(resource: Mapping[str, Any]) -> str:
    """Compact JSON text of a resource, keys in the caller's order."""
    return json.dumps(resource, ensure_ascii=False, separators=(",", ":"), default=_json_default)


def numeric_form(value: Any) -> Any:
    """``value`` with every JSON number replaced by its numeric value as text (``120``,
    ``120.0`` and ``1.2E+2`` all become ``["#", "1.2E+2"]``): FHIR decimals are compared by value,
    since a server may store ``120.0`` as ``120`` (JSON numbers in JavaScript keep no trailing
    zeros) without changing the resource."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, (int, float, Decimal)):
        return ["#", str(Decimal(str(value)).normalize())]
    if isinstance(value, Mapping):
        return {k: numeric_form(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [numeric_form(v) for v in value]
    return value


def content_key(resource: Mapping[str, Any]) -> str:
    """Canonical JSON without ``meta.versionId`` and ``meta.lastUpdated`` (other ``meta``
    elements, e.g. tags and profiles, are content), numbers compared by value: equal keys =
    unchanged resource."""
    body = {k: v for k, v in resource.items() if k != "meta"}
    meta = {k: v for k, v in (resource.get("meta") or {}).items() if k not in SERVER_META}
    if meta:
        body["meta"] = meta
    return canonical_json(numeric_form(body))


def same_content(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    """True when ``a`` and ``b`` differ at most in server-managed ``meta``."""
    return content_key(a) == content_key(b)
