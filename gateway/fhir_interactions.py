"""Pure helpers of the FHIR REST interactions: JSON Patch (RFC 6902, FHIR R4 §3.1.0.7.1),
``Prefer: return=…`` (§3.1.0.7.3) and the formats the gateway serves (§3.1.0.1.6).

No Flask here: the views in :mod:`gateway.fhir_rest` read the request and call these.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from netliver.fhir.outcome import FhirError

__all__ = ["JSON_FORMATS", "apply_json_patch", "format_refusal", "prefer_return", "prefers_async"]

#: ``_format`` values and media types answered with FHIR JSON.
JSON_FORMATS = frozenset({"json", "application/json", "application/fhir+json", "application/json+fhir"})
_ACCEPT_ANY = ("*/*", "application/*")


def _unescape(token: str) -> str:
    return token.replace("~1", "/").replace("~0", "~")


def _pointer(path: Any, where: str) -> list[str]:
    if not isinstance(path, str) or (path and not path.startswith("/")):
        raise FhirError(400, "invalid", f"{where}: {path!r} is not a JSON pointer", where)
    return [_unescape(token) for token in path.split("/")[1:]] if path else []


def _index(container: list[Any], token: str, where: str, *, adding: bool) -> int:
    if adding and token == "-":
        return len(container)
    if not token.isdigit() or (len(token) > 1 and token.startswith("0")):
        raise FhirError(400, "invalid", f"{where}: {token!r} is not an array index", where)
    index = int(token)
    if index > len(container) or (index == len(container) and not adding):
        raise FhirError(422, "processing", f"{where}: index {index} is out of range", where)
    return index


def _parent(doc: Any, tokens: list[str], where: str) -> tuple[Any, str]:
    if not tokens:
        raise FhirError(422, "processing", f"{where}: the whole resource cannot be replaced by a patch", where)
    node = doc
    for token in tokens[:-1]:
        if isinstance(node, dict) and token in node:
            node = node[token]
        elif isinstance(node, list):
            node = node[_index(node, token, where, adding=False)]
        else:
            raise FhirError(422, "processing", f"{where}: the path does not exist", where)
    return node, tokens[-1]


def _get(doc: Any, tokens: list[str], where: str) -> Any:
    parent, last = _parent(doc, tokens, where)
    if isinstance(parent, dict):
        if last not in parent:
            raise FhirError(422, "processing", f"{where}: the path does not exist", where)
        return parent[last]
    if isinstance(parent, list):
        return parent[_index(parent, last, where, adding=False)]
    raise FhirError(422, "processing", f"{where}: the path does not exist", where)


def _remove(doc: Any, tokens: list[str], where: str) -> Any:
    parent, last = _parent(doc, tokens, where)
    value = _get(doc, tokens, where)
    if isinstance(parent, dict):
        del parent[last]
    else:
        del parent[_index(parent, last, where, adding=False)]
    return value


def _add(doc: Any, tokens: list[str], value: Any, where: str) -> None:
    parent, last = _parent(doc, tokens, where)
    if isinstance(parent, dict):
        parent[last] = value
    elif isinstance(parent, list):
        parent.insert(_index(parent, last, where, adding=True), value)
    else:
        raise FhirError(422, "processing", f"{where}: the path does not exist", where)


def _operation(doc: Any, op: Mapping[str, Any], where: str) -> None:
    kind = op.get("op")
    tokens = _pointer(op.get("path"), f"{where}.path")
    if kind in ("add", "replace", "test") and "value" not in op:
        raise FhirError(400, "required", f"{where}: {kind} needs a value", f"{where}.value")
    if kind == "add":
        _add(doc, tokens, copy.deepcopy(op["value"]), where)
    elif kind == "remove":
        _remove(doc, tokens, where)
    elif kind == "replace":
        _get(doc, tokens, where)
        _remove(doc, tokens, where)
        _add(doc, tokens, copy.deepcopy(op["value"]), where)
    elif kind in ("move", "copy"):
        source = _pointer(op.get("from"), f"{where}.from")
        value = _remove(doc, source, where) if kind == "move" else copy.deepcopy(_get(doc, source, where))
        _add(doc, tokens, value, where)
    elif kind == "test":
        if _get(doc, tokens, where) != op["value"]:
            raise FhirError(422, "processing", f"{where}: test failed at {op['path']}", where)
    else:
        raise FhirError(400, "invalid", f"{where}: unknown patch operation {kind!r}", f"{where}.op")


def apply_json_patch(resource: Mapping[str, Any], patch: Any) -> dict[str, Any]:
    """``resource`` with the JSON Patch document ``patch`` applied (atomically: a failing
    operation leaves nothing changed). ``resourceType`` and ``id`` cannot be patched."""
    if not isinstance(patch, list) or not all(isinstance(op, Mapping) for op in patch):
        raise FhirError(400, "invalid", "a JSON Patch is a list of operation objects")
    doc = copy.deepcopy(dict(resource))
    for i, op in enumerate(patch):
        _operation(doc, op, f"patch[{i}]")
    if doc.get("resourceType") != resource.get("resourceType") or doc.get("id") != resource.get("id"):
        raise FhirError(422, "processing", "a patch may not change resourceType or id")
    return doc


def format_refusal(format_param: str | None, accept: str | None) -> FhirError | None:
    """406 when ``_format`` or ``Accept`` asks only for a format the gateway does not serve
    (XML, Turtle...): it answers FHIR JSON and nothing else."""
    if format_param is not None and format_param.split(";")[0].strip().lower() not in JSON_FORMATS:
        return FhirError(406, "not-supported", f"_format={format_param!r} is not served: only FHIR JSON "
                         "(_format=json)", "_format")
    if accept:
        types = [part.split(";")[0].strip().lower() for part in accept.split(",") if part.strip()]
        if types and not any(t in JSON_FORMATS or t in _ACCEPT_ANY for t in types):
            return FhirError(406, "not-supported", f"Accept: {accept} is not served: only application/fhir+json",
                             "Accept")
    return None


def _preferences(prefer: str | None) -> dict[str, str]:
    """A ``Prefer`` header's preferences (RFC 7240 §2): token (lower case) → value (unquoted; ''
    for a bare token), parameters after ``;`` left out; the first of a repeated token wins."""
    found: dict[str, str] = {}
    for part in (prefer or "").split(","):
        key, _, value = part.split(";", 1)[0].strip().partition("=")  # ";" starts its parameters
        found.setdefault(key.strip().lower(), value.strip().strip('"'))
    return found


def prefers_async(prefer: str | None) -> bool:
    """Whether a ``Prefer`` header asks ``respond-async`` (RFC 7240 §4.1)."""
    return "respond-async" in _preferences(prefer)


def prefer_return(prefer: str | None) -> str:
    """``minimal``, ``representation`` (the default) or ``OperationOutcome``."""
    wanted = _preferences(prefer).get("return", "")
    return wanted if wanted in ("minimal", "representation", "OperationOutcome") else "representation"
