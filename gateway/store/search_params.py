"""Search parameters of the gateway's FHIR store: which ones exist, and parsing a query.

Semantics follow FHIR R4 §3.1.1 (search): repeated parameters are ANDed, comma-separated values
are ORed (``\\,`` escapes a comma), token values follow §3.1.1.4.9 (``system|code``, ``|code``
= no system, ``system|`` = any code of the system, ``code`` = any system) and date prefixes follow
§3.1.1.4.2 (the search value is a range, from the start of its precision to the end:
``eq`` inside it, ``ge`` from its start, ``gt`` after its end, ``lt`` before its start, ``le``
before its end, ``ne`` outside it). Parsing is pure: the SQL store turns the result into SQL
and the upstream store uses it to reject exactly what the SQL store rejects.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from typing import Any

from gateway.store.registry import (
    RESULT_PARAMETERS,
    declared_params,
    include_targets,
    param_of,
    revinclude_sources,
)
from netliver.fhir.outcome import FhirError

__all__ = [
    "DEFAULT_COUNT",
    "MAX_COUNT",
    "MAX_OFFSET",
    "ChainCriterion",
    "DateCriterion",
    "DateRange",
    "IdCriterion",
    "Include",
    "LastUpdatedCriterion",
    "MissingCriterion",
    "RefValue",
    "ReferenceCriterion",
    "SearchQuery",
    "SortKey",
    "StringCriterion",
    "TokenCriterion",
    "TokenValue",
    "drop_unknown_parameters",
    "known_parameters",
    "parse_date_range",
    "parse_reference",
    "parse_search",
    "split_or",
    "to_epoch_us",
]

DEFAULT_COUNT = 50
MAX_COUNT = 500
#: Largest ``_offset`` of a search page: beyond it a 400 (an SQL OFFSET must stay a 64-bit
#: integer, and paging that far is a scan, not a use).
MAX_OFFSET = 100_000

_DATE_PREFIXES = ("eq", "ne", "gt", "ge", "lt", "le", "sa", "eb")
_SUMMARIES = ("true", "data", "count", "false")
_TOTALS = ("none", "estimate", "accurate")
_TOTAL_METHODS = {"count": "accurate", "estimate": "estimate", "none": "none"}


def known_parameters(resource_type: str) -> frozenset[str]:
    """The search and result parameters (without modifiers) understood for a type."""
    return frozenset({p.name for p in declared_params(resource_type)} | RESULT_PARAMETERS)


def drop_unknown_parameters(resource_type: str, params: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """The parameters the store understands (for ``Prefer: handling=lenient``)."""
    known = known_parameters(resource_type)
    return [(name, value) for name, value in params if name.split(":", 1)[0].split(".", 1)[0] in known]


@dataclass(frozen=True)
class TokenValue:
    """One token alternative: ``system`` None = any system, "" = no system; ``code`` None =
    any code of ``system``."""

    system: str | None
    code: str | None


@dataclass(frozen=True)
class RefValue:
    """One reference alternative: ``resource_type`` None = any type."""

    resource_type: str | None
    resource_id: str


@dataclass(frozen=True)
class DateRange:
    """A search date as a half-open range of microseconds since the epoch (UTC)."""

    prefix: str
    start_us: int
    end_us: int


@dataclass(frozen=True)
class TokenCriterion:
    param: str
    values: tuple[TokenValue, ...]


@dataclass(frozen=True)
class ReferenceCriterion:
    param: str
    values: tuple[RefValue, ...]


@dataclass(frozen=True)
class IdCriterion:
    ids: tuple[str, ...]


@dataclass(frozen=True)
class LastUpdatedCriterion:
    ranges: tuple[DateRange, ...]


@dataclass(frozen=True)
class DateCriterion:
    """A date parameter (``date=ge2026-01``): any of ``ranges`` matches."""

    param: str
    ranges: tuple[DateRange, ...]


@dataclass(frozen=True)
class StringCriterion:
    """A string parameter: ``mode`` is ``start`` (default), ``exact`` or ``contains``."""

    param: str
    values: tuple[str, ...]
    mode: str = "start"


@dataclass(frozen=True)
class MissingCriterion:
    """``param:missing=true|false`` (FHIR R4 §3.1.1.3.3)."""

    param: str
    param_type: str
    missing: bool


@dataclass(frozen=True)
class ChainCriterion:
    """``subject:Patient.identifier=…``: the reference ``param`` points to a ``target_type``
    resource that matches ``inner`` (FHIR R4 §3.1.1.4.13)."""

    param: str
    target_type: str
    inner: Criterion


Criterion = (TokenCriterion | ReferenceCriterion | IdCriterion | LastUpdatedCriterion | DateCriterion
             | StringCriterion | MissingCriterion | ChainCriterion)


@dataclass(frozen=True)
class SortKey:
    """One ``_sort`` key: a declared parameter, ``_id`` or ``_lastUpdated``."""

    param: str
    param_type: str
    descending: bool = False


@dataclass(frozen=True)
class Include:
    """``_include``/``_revinclude=source:param[:target]``."""

    source_type: str
    param: str
    target_type: str | None = None


@dataclass(frozen=True)
class SearchQuery:
    """A parsed search: criteria ANDed, paging, order, includes and the shape of the answer."""

    resource_type: str
    criteria: tuple[Criterion, ...] = ()
    count: int = DEFAULT_COUNT
    offset: int = 0
    descending: bool = False
    #: the parameters that define the result set (no ``_count``/``_offset``), for links
    filters: tuple[tuple[str, str], ...] = field(default=())
    sort: str | None = None
    sort_keys: tuple[SortKey, ...] = ()
    include: tuple[Include, ...] = ()
    revinclude: tuple[Include, ...] = ()
    summary: str | None = None
    elements: tuple[str, ...] = ()
    total: str | None = None


def split_or(value: str) -> list[str]:
    """Split a parameter value on unescaped commas; ``\\,`` ``\\|`` ``\\$`` ``\\\\`` unescape
    later (FHIR R4 §3.1.1.6)."""
    parts: list[str] = []
    current: list[str] = []
    chars = iter(value)
    for ch in chars:
        if ch == "\\":
            nxt = next(chars, "")
            current.append(ch + nxt)
        elif ch == ",":
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
    parts.append("".join(current))
    return parts


def _split_pipe(value: str) -> tuple[str, str] | None:
    """Split a token on its first unescaped ``|``."""
    i = 0
    while i < len(value):
        if value[i] == "\\":
            i += 2
            continue
        if value[i] == "|":
            return value[:i], value[i + 1:]
        i += 1
    return None


def _unescape(value: str) -> str:
    return re.sub(r"\\(.)", r"\1", value)


def _token(value: str, param: str) -> TokenValue:
    if value == "":
        raise FhirError(400, "invalid", f"empty value for search parameter {param!r}", param)
    pipe = _split_pipe(value)
    if pipe is None:
        return TokenValue(None, _unescape(value))
    system, code = pipe
    if system == "" and code == "":
        raise FhirError(400, "invalid", f"{param}: '|' alone is not a token", param)
    return TokenValue(_unescape(system), _unescape(code) if code != "" else None)


_REF_RE = re.compile(r"(?:^|/)([A-Z][A-Za-z]+)/([A-Za-z0-9\-.]{1,64})(?:/_history/[^/]+)?$")


def parse_reference(reference: str) -> RefValue | None:
    """``Patient/1``, ``http://x/fhir/Patient/1``, ``Patient/1/_history/2`` → (Patient, 1);
    a bare id → (None, id); fragments and URNs → None."""
    text = reference.strip()
    if not text or text.startswith(("#", "urn:")):
        return None
    match = _REF_RE.search(text)
    if match:
        return RefValue(match.group(1), match.group(2))
    if "/" not in text:
        return RefValue(None, text)
    return None


_DATE_RE = re.compile(
    r"^(?P<y>\d{4})(?:-(?P<m>\d{2})(?:-(?P<d>\d{2})"
    r"(?:T(?P<H>\d{2}):(?P<M>\d{2})(?::(?P<S>\d{2})(?:\.(?P<f>\d{1,9}))?)?"
    r"(?P<tz>Z|[+-]\d{2}:\d{2})?)?)?)?$"
)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def to_epoch_us(moment: datetime) -> int:
    """Microseconds since the epoch of an aware datetime."""
    delta = moment - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def parse_date_range(value: str, param: str = "_lastUpdated") -> DateRange:
    """A prefixed FHIR date/dateTime/instant search value as a half-open UTC range.

    The range spans the value's precision: ``2026`` is the whole year, ``2026-03-01`` the day,
    ``2026-03-01T10:00`` the minute, ``…:05.250`` the millisecond. A time without zone is UTC.
    """
    prefix = "eq"
    text = value.strip()
    if text[:2] in _DATE_PREFIXES:
        prefix, text = text[:2], text[2:]
    elif text[:2].isalpha():
        raise FhirError(400, "invalid", f"{param}: prefix {text[:2]!r} is not supported "
                        f"(use {', '.join(_DATE_PREFIXES)})", param)
    match = _DATE_RE.match(text)
    if not match:
        raise FhirError(400, "invalid", f"{param}: {value!r} is not a FHIR date or instant", param)
    parts = match.groupdict()
    if parts["H"] is not None and parts["tz"] is None and parts["S"] is None and parts["M"] is None:
        raise FhirError(400, "invalid", f"{param}: {value!r} has an hour without minutes", param)
    try:
        year = int(parts["y"])
        month = int(parts["m"] or 1)
        day = int(parts["d"] or 1)
        hour = int(parts["H"] or 0)
        minute = int(parts["M"] or 0)
        second = int(parts["S"] or 0)
        frac = parts["f"] or ""
        micro = int((frac + "000000")[:6]) if frac else 0
        tz: tzinfo = UTC
        if parts["tz"] and parts["tz"] != "Z":
            sign = 1 if parts["tz"][0] == "+" else -1
            hh, mm = parts["tz"][1:].split(":")
            tz = timezone(sign * timedelta(hours=int(hh), minutes=int(mm)))
        start = datetime(year, month, day, hour, minute, second, micro, tzinfo=tz)
    except ValueError as exc:
        raise FhirError(400, "invalid", f"{param}: {value!r} is not a valid date ({exc})", param) from None
    if parts["m"] is None:
        end = start.replace(year=year + 1)
    elif parts["d"] is None:
        end = start.replace(year=year + 1, month=1) if month == 12 else start.replace(month=month + 1)
    elif parts["H"] is None:
        end = start + timedelta(days=1)
    elif parts["S"] is None:
        end = start + timedelta(minutes=1)
    elif not frac:
        end = start + timedelta(seconds=1)
    else:
        digits = min(len(frac), 6)
        end = start + timedelta(microseconds=10 ** (6 - digits))
    return DateRange(prefix, to_epoch_us(start), to_epoch_us(end))


def _int_param(name: str, value: str, minimum: int) -> int:
    try:
        number = int(value)
    except ValueError:
        raise FhirError(400, "invalid", f"{name} must be an integer, not {value!r}", name) from None
    if number < minimum:
        raise FhirError(400, "invalid", f"{name} must be at least {minimum}", name)
    return number


def _refs(name: str, alternatives: list[str], type_modifier: str, targets: tuple[str, ...]) -> ReferenceCriterion:
    base = name.split(":", 1)[0]
    values = []
    for alt in alternatives:
        ref = parse_reference(_unescape(alt))
        if ref is None:
            raise FhirError(400, "invalid", f"{name}: {alt!r} is not a reference", name)
        target = type_modifier or ref.resource_type
        if type_modifier and ref.resource_type not in (None, type_modifier):
            raise FhirError(400, "invalid", f"{name}: {alt!r} is not a {type_modifier}", name)
        if targets and target is not None and target not in targets:
            raise FhirError(400, "invalid", f"{name}: {alt!r} is not a {' or '.join(targets)}", name)
        if target is None and len(targets) == 1:
            target = targets[0]
        values.append(RefValue(target, ref.resource_id))
    return ReferenceCriterion(base, tuple(values))


def _criterion(resource_type: str, name: str, value: str) -> Criterion:
    """One search criterion; every unknown parameter, modifier or malformed value is a 400."""
    head, _, chain = name.partition(".")
    base, _, modifier = head.partition(":")
    param = param_of(resource_type, base)
    if param is None:
        raise FhirError(400, "not-supported", f"unknown search parameter for {resource_type}: {name}", name)
    if chain:
        return _chain(resource_type, name, value)
    if modifier == "missing":
        if value not in ("true", "false"):
            raise FhirError(400, "invalid", f"{name} must be true or false", name)
        return MissingCriterion(base, param.type, value == "true")
    alternatives = split_or(value)
    if param.type == "reference":
        if modifier and not (modifier[:1].isupper() and (not param.targets or modifier in param.targets)):
            raise FhirError(400, "not-supported", f"modifier :{modifier} of {base} is not supported", name)
        return _refs(name, alternatives, modifier, param.targets)
    if modifier and modifier not in param.modifiers:
        raise FhirError(400, "not-supported", f"modifier :{modifier} of {base} is not supported", name)
    if param.paths == ("id",):
        ids = [parse_reference(_unescape(alt)) for alt in alternatives]
        own = None if base == "_id" else resource_type
        if any(ref is None or ref.resource_type not in (None, own) for ref in ids):
            raise FhirError(400, "invalid", f"{name}: {value!r} is not a list of {resource_type} ids", name)
        return IdCriterion(tuple(ref.resource_id for ref in ids if ref is not None))
    if param.type == "date":
        ranges = tuple(parse_date_range(alt, name) for alt in alternatives)
        return LastUpdatedCriterion(ranges) if base == "_lastUpdated" else DateCriterion(base, ranges)
    if param.type == "string":
        if any(alt == "" for alt in alternatives):
            raise FhirError(400, "invalid", f"empty value for search parameter {name!r}", name)
        return StringCriterion(base, tuple(_unescape(alt) for alt in alternatives), modifier or "start")
    return TokenCriterion(base, tuple(_token(alt, name) for alt in alternatives))


def _chain(resource_type: str, name: str, value: str) -> ChainCriterion:
    """``subject:Patient.identifier=…`` (one level of chaining)."""
    head, _, rest = name.partition(".")
    base, _, target = head.partition(":")
    param = param_of(resource_type, base)
    if param is None or param.type != "reference":
        raise FhirError(400, "not-supported", f"{name}: only reference parameters can be chained", name)
    if not target:
        if len(param.targets) != 1:
            raise FhirError(400, "invalid", f"{name}: name the target type ({base}:Patient.…)", name)
        target = param.targets[0]
    if param.targets and target not in param.targets:
        raise FhirError(400, "invalid", f"{name}: {base} cannot point to a {target}", name)
    if "." in rest:
        raise FhirError(400, "not-supported", f"{name}: only one level of chaining is supported", name)
    try:
        inner = _criterion(target, rest, value)
    except FhirError as err:
        raise FhirError(400, err.code, f"{name}: {err.diagnostics}", name) from None
    return ChainCriterion(base, target, inner)


def _include(name: str, value: str, resource_type: str) -> Include:
    parts = value.split(":")
    if len(parts) not in (2, 3) or not all(parts):
        raise FhirError(400, "invalid", f"{name}={value!r}: expected Type:parameter[:TargetType]", name)
    include = Include(parts[0], parts[1], parts[2] if len(parts) == 3 else None)
    allowed = include_targets(resource_type) if name == "_include" else revinclude_sources(resource_type)
    if f"{include.source_type}:{include.param}" not in allowed:
        raise FhirError(400, "not-supported", f"{name}={value} is not supported for {resource_type} "
                        f"(supported: {', '.join(allowed) or 'none'})", name)
    param = param_of(include.source_type, include.param)
    if include.target_type and param is not None and param.targets and include.target_type not in param.targets:
        raise FhirError(400, "invalid", f"{name}={value}: {include.param} cannot point to a {include.target_type}", name)
    return include


def _sort_keys(resource_type: str, value: str) -> tuple[SortKey, ...]:
    keys = []
    for item in value.split(","):
        descending = item.startswith("-")
        name = item[1:] if descending else item
        param = param_of(resource_type, name)
        if param is None:
            raise FhirError(400, "not-supported", f"_sort={item!r}: {resource_type} has no search parameter "
                            f"{name!r}", "_sort")
        keys.append(SortKey(name, param.type, descending))
    return tuple(keys)


def _choice(name: str, value: str, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise FhirError(400, "invalid", f"{name} must be one of {', '.join(allowed)}, not {value!r}", name)
    return value


def parse_search(resource_type: str, params: Sequence[tuple[str, str]]) -> SearchQuery:
    """Parse and check a search; every unknown parameter, modifier or value is a 400 naming it."""
    criteria: list[Criterion] = []
    filters: list[tuple[str, str]] = []
    shape: dict[str, Any] = {"count": DEFAULT_COUNT, "offset": 0, "include": [], "revinclude": []}
    for name, value in params:
        if name == "_count":
            shape["count"] = min(_int_param(name, value, 0), MAX_COUNT)
        elif name == "_offset":
            shape["offset"] = _int_param(name, value, 0)
            if shape["offset"] > MAX_OFFSET:
                raise FhirError(400, "value", f"_offset must be at most {MAX_OFFSET}", "_offset")
        elif name in ("_format", "_pretty"):
            continue
        elif name == "_sort":
            shape["sort"], shape["sort_keys"] = value, _sort_keys(resource_type, value)
        elif name in ("_include", "_revinclude"):
            shape[name[1:]].append(_include(name, value, resource_type))
            filters.append((name, value))
        elif name == "_summary":
            shape["summary"] = _choice(name, value, _SUMMARIES)
            filters.append((name, value))
        elif name == "_elements":
            shape["elements"] = tuple(e.strip() for e in value.split(",") if e.strip())
            filters.append((name, value))
        elif name == "_total":
            shape["total"] = _choice(name, value, _TOTALS)
        elif name == "_totalMethod":
            shape["total"] = _TOTAL_METHODS[_choice(name, value, tuple(_TOTAL_METHODS))]
        else:
            criteria.append(_criterion(resource_type, name, value))
            filters.append((name, value))
    keys: tuple[SortKey, ...] = shape.get("sort_keys", ())
    if shape.get("summary") == "count":
        shape["count"] = 0
    if shape.get("summary") == "false":
        shape["summary"] = None
    return SearchQuery(
        resource_type, tuple(criteria), shape["count"], shape["offset"],
        descending=bool(keys) and keys[0].param == "_lastUpdated" and keys[0].descending,
        filters=tuple(filters), sort=shape.get("sort"), sort_keys=keys,
        include=tuple(shape["include"]), revinclude=tuple(shape["revinclude"]),
        summary=shape.get("summary"), elements=shape.get("elements", ()), total=shape.get("total"))
