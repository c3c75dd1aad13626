"""Resource JSON as stored, and the content comparison behind idempotent writes."""

from __future__ import annotations

import json
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from netliver.fhir.builders import canonical_json

__all__ = ["SERVER_META", "content_key", "dumps", "same_content"]

#: ``meta`` elements the store manages; they never count as a change of content.
SERVER_META = ("versionId", "lastUpdated")


def _json_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() and "." not in str(value) else float(value)
    raise TypeError(f"{type(value).__name__} is not JSON")


def dumps(resource: Mapping[str, Any]) -> str:
    """Compact JSON text of a resource, keys in the caller's order."""
    return json.dumps(resource, ensure_ascii=False, separators=(",", ":"), default=_json_default)


def content_key(resource: Mapping[str, Any]) -> str:
    """Canonical JSON without ``meta.versionId`` and ``meta.lastUpdated`` (other ``meta``
    elements, e.g. tags and profiles, are content): equal keys = unchanged resource."""
    body = {k: v for k, v in resource.items() if k != "meta"}
    meta = {k: v for k, v in (resource.get("meta") or {}).items() if k not in SERVER_META}
    if meta:
        body["meta"] = meta
    return canonical_json(json.loads(dumps(body)))


def same_content(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    """True when ``a`` and ``b`` differ at most in server-managed ``meta``."""
    return content_key(a) == content_key(b)
