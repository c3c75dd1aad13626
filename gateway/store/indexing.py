"""Search index entries of a resource: the tokens, references, dates and strings the SQL store
searches, for every parameter the registry (:mod:`gateway.store.registry`) declares.

Pure functions over the resource JSON. How an element becomes index values follows FHIR R4
§3.1.1.4: a token is a ``system|code`` of a Coding, CodeableConcept, Identifier, code or
boolean; a date is the range its precision covers (a Period from the start of its start to the
end of its end, open ends unbounded); a string is matched case- and accent-insensitively.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from gateway.store.registry import SearchParam, declared_params
from gateway.store.search_params import parse_date_range, parse_reference
from netliver.fhir.outcome import FhirError

__all__ = ["MAX_REF_TYPE_CHARS", "MAX_TOKEN_CHARS", "DateRow", "IndexRows", "RefRow", "StringRow",
           "TokenRow", "index_resource", "normalise_text", "values_at"]

#: Bounds of an open Period end, in microseconds since the epoch (years 1 and 9999).
MIN_US = -62_135_596_800_000_000
MAX_US = 253_402_300_800_000_000

#: Longest indexed system, code or identifier value, and longest reference type: the columns'
#: widths. PostgreSQL refuses longer values and SQLite stores them, so the same resource would
#: be valid on one store and not on the other; both refuse them here, before the write.
MAX_TOKEN_CHARS = 1024
MAX_REF_TYPE_CHARS = 64


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


@dataclass(frozen=True, order=True)
class DateRow:
    """A date as the half-open range ``[start_us, end_us)`` it covers."""

    param: str
    start_us: int
    end_us: int


@dataclass(frozen=True, order=True)
class StringRow:
    """A string, normalised by :func:`normalise_text`."""

    param: str
    value: str


@dataclass
class IndexRows:
    tokens: list[TokenRow] = field(default_factory=list)
    refs: list[RefRow] = field(default_factory=list)
    dates: list[DateRow] = field(default_factory=list)
    strings: list[StringRow] = field(default_factory=list)


def normalise_text(text: str) -> str:
    """Case- and accent-insensitive form of a string (``Müller`` → ``muller``)."""
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch)).casefold().strip()


def _children(value: Any, name: str) -> Iterator[Any]:
    if not isinstance(value, Mapping):
        return
    if name.endswith("[x]"):
        prefix = name[:-3]
        found = [v for k, v in value.items() if k.startswith(prefix) and k[len(prefix):][:1].isupper()]
    else:
        found = [value[name]] if name in value else []
    for item in found:
        yield from (item if isinstance(item, list) else [item])


def values_at(resource: Mapping[str, Any], path: str) -> list[Any]:
    """The values at a dotted element path (``x[x]`` = any choice type; lists are walked)."""
    current: list[Any] = [resource]
    for name in path.split("."):
        current = [child for value in current for child in _children(value, name)]
    return current


def _tokens(value: Any) -> Iterator[tuple[str, str]]:
    if isinstance(value, bool):
        yield "", "true" if value else "false"
    elif isinstance(value, str):
        yield "", value
    elif isinstance(value, Mapping):
        if "coding" in value:
            for coding in value.get("coding") or []:
                yield from _tokens(coding)
        elif isinstance(value.get("code"), str):
            yield str(value.get("system") or ""), value["code"]
        elif isinstance(value.get("value"), str):  # Identifier
            yield str(value.get("system") or ""), value["value"]


def _date_range(value: Any) -> tuple[int, int] | None:
    try:
        if isinstance(value, str):
            rng = parse_date_range(value)
            return rng.start_us, rng.end_us
        if isinstance(value, Mapping) and ("start" in value or "end" in value):
            start = parse_date_range(value["start"]).start_us if value.get("start") else MIN_US
            end = parse_date_range(value["end"]).end_us if value.get("end") else MAX_US
            return start, end
    except FhirError:
        return None
    return None


_NAME_PARTS = ("text", "family", "given", "prefix", "suffix", "line", "city", "district", "state",
               "postalCode", "country")


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):  # HumanName, Address
        for part in _NAME_PARTS:
            item = value.get(part)
            for text in item if isinstance(item, list) else [item]:
                if isinstance(text, str):
                    yield text


def _index_param(param: SearchParam, resource: Mapping[str, Any], rows: IndexRows) -> None:
    values = [v for path in param.paths for v in values_at(resource, path)]
    element = f"{resource.get('resourceType', '')}.{param.paths[0]}" if param.paths else param.name
    if param.type == "token":
        tokens = [TokenRow(param.name, s, c) for v in values for s, c in _tokens(v)]
        if any(len(t.system) > MAX_TOKEN_CHARS or len(t.code) > MAX_TOKEN_CHARS for t in tokens):
            raise FhirError(400, "too-long", f"a {param.name} system or value is longer than "
                            f"{MAX_TOKEN_CHARS} characters", element)
        rows.tokens += tokens
    elif param.type == "reference":
        for v in values:
            ref = parse_reference(v["reference"]) if isinstance(v, Mapping) and isinstance(
                v.get("reference"), str) else None
            if ref is not None and len(ref.resource_type or "") > MAX_REF_TYPE_CHARS:
                raise FhirError(400, "too-long", "a reference's resource type is longer than "
                                f"{MAX_REF_TYPE_CHARS} characters", f"{element}.reference")
            if ref is None or (param.targets and ref.resource_type not in param.targets):
                continue
            rows.refs.append(RefRow(param.name, ref.resource_type or "", ref.resource_id))
    elif param.type == "date":
        rows.dates += [DateRow(param.name, *rng) for rng in map(_date_range, values) if rng is not None]
    elif param.type == "string":
        rows.strings += [StringRow(param.name, normalise_text(s)[:1024]) for v in values for s in _strings(v)]


#: Parameters answered from the resource row itself, never from the index tables.
_ROW_PARAMS = frozenset({"_id", "_lastUpdated"})


def index_resource(resource: Mapping[str, Any]) -> IndexRows:
    """The index entries of ``resource`` (sorted, without duplicates)."""
    rows = IndexRows()
    for param in declared_params(str(resource.get("resourceType", ""))):
        if param.name not in _ROW_PARAMS:
            _index_param(param, resource, rows)
    return IndexRows(sorted(set(rows.tokens)), sorted(set(rows.refs)), sorted(set(rows.dates)),
                     sorted(set(rows.strings)))
