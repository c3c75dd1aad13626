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

from netliver.fhir.outcome import FhirError

__all__ = [
    "CODE_ELEMENTS",
    "DEFAULT_COUNT",
    "FOCUS_TYPES",
    "MAX_COUNT",
    "MAX_OFFSET",
    "DateRange",
    "IdCriterion",
    "LastUpdatedCriterion",
    "RefValue",
    "ReferenceCriterion",
    "SearchQuery",
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

#: The element each type's ``code`` search parameter searches (FHIR R4 search parameter
#: registry: ``clinical-code`` and ``Task-code``); only the resource's own code, never
#: ``Observation.component.code``.
CODE_ELEMENTS: dict[str, str] = {
    "Observation": "code",
    "Condition": "code",
    "Procedure": "code",
    "DiagnosticReport": "code",
    "Task": "code",
    "AllergyIntolerance": "code",
    "MedicationStatement": "medicationCodeableConcept",
}

#: Types with a ``focus`` search parameter (Task.focus, Observation.focus).
FOCUS_TYPES = frozenset({"Task", "Observation"})

#: Result parameters (FHIR R4 §3.1.1.5) understood on every type; ``_format`` is accepted and
#: ignored (the answer is always FHIR JSON).
_RESULT_PARAMETERS = frozenset({"_count", "_offset", "_sort", "_format"})
_COMMON_PARAMETERS = frozenset({"_id", "_lastUpdated", "identifier", "status", "subject", "patient"})
_REFERENCE_PARAMETERS = frozenset({"subject", "patient", "focus", "target"})
_TOKEN_PARAMETERS = frozenset({"code", "status", "identifier"})
_SORTS = {"_lastUpdated": False, "-_lastUpdated": True}
_DATE_PREFIXES = ("eq", "ne", "gt", "ge", "lt", "le")


def known_parameters(resource_type: str) -> frozenset[str]:
    """The search parameters (without modifiers) the store understands for a type."""
    names = set(_COMMON_PARAMETERS | _RESULT_PARAMETERS)
    if resource_type == "Patient":
        names -= {"subject", "status"}  # Patient has neither; ``patient`` searches ``_id``
    if resource_type in CODE_ELEMENTS:
        names.add("code")
    if resource_type in FOCUS_TYPES:
        names.add("focus")
    if resource_type == "Provenance":
        names.add("target")
    return frozenset(names)


def drop_unknown_parameters(resource_type: str, params: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """The parameters the store understands (for ``Prefer: handling=lenient``)."""
    known = known_parameters(resource_type)
    return [(name, value) for name, value in params if name.split(":", 1)[0] in known]


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


Criterion = TokenCriterion | ReferenceCriterion | IdCriterion | LastUpdatedCriterion


@dataclass(frozen=True)
class SearchQuery:
    """A parsed search: criteria ANDed, paging and order."""

    resource_type: str
    criteria: tuple[Criterion, ...] = ()
    count: int = DEFAULT_COUNT
    offset: int = 0
    descending: bool = False
    #: the parameters that define the result set (no ``_count``/``_offset``), for links
    filters: tuple[tuple[str, str], ...] = field(default=())
    sort: str | None = None


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


def parse_search(resource_type: str, params: Sequence[tuple[str, str]]) -> SearchQuery:
    """Parse and check a search; every unknown parameter or modifier is a 400 naming it."""
    known = known_parameters(resource_type)
    criteria: list[Criterion] = []
    filters: list[tuple[str, str]] = []
    count, offset, descending, sort = DEFAULT_COUNT, 0, False, None
    unknown = [name for name, _ in params if name.split(":", 1)[0] not in known]
    if unknown:
        raise FhirError(400, "not-supported",
                        f"unknown search parameter(s) for {resource_type}: {', '.join(unknown)}",
                        unknown)
    for name, value in params:
        base, _, modifier = name.partition(":")
        if modifier and not (base in _REFERENCE_PARAMETERS and modifier[:1].isupper()):
            raise FhirError(400, "not-supported", f"modifier :{modifier} of {base} is not supported", name)
        if base == "_count":
            count = min(_int_param(base, value, 0), MAX_COUNT)
            continue
        if base == "_offset":
            offset = _int_param(base, value, 0)
            if offset > MAX_OFFSET:
                raise FhirError(400, "value", f"_offset must be at most {MAX_OFFSET}", "_offset")
            continue
        if base == "_format":
            continue
        if base == "_sort":
            if value not in _SORTS:
                raise FhirError(400, "not-supported",
                                f"_sort={value!r} is not supported (use _lastUpdated or -_lastUpdated)", "_sort")
            descending, sort = _SORTS[value], value
            continue
        filters.append((name, value))
        alternatives = split_or(value)
        if base == "_id" or (base == "patient" and resource_type == "Patient"):
            ids = []
            for alt in alternatives:
                ref = parse_reference(_unescape(alt))
                if ref is None or (ref.resource_type not in (None, "Patient") and base == "patient") or (
                        base == "_id" and ref.resource_type is not None):
                    raise FhirError(400, "invalid", f"{name}: {alt!r} is not a resource id", name)
                ids.append(ref.resource_id)
            criteria.append(IdCriterion(tuple(ids)))
        elif base == "_lastUpdated":
            criteria.append(LastUpdatedCriterion(tuple(parse_date_range(alt, name) for alt in alternatives)))
        elif base in _TOKEN_PARAMETERS:
            criteria.append(TokenCriterion(base, tuple(_token(alt, name) for alt in alternatives)))
        else:
            refs = []
            for alt in alternatives:
                ref = parse_reference(_unescape(alt))
                if ref is None:
                    raise FhirError(400, "invalid", f"{name}: {alt!r} is not a reference", name)
                target = modifier or ref.resource_type
                if modifier and ref.resource_type not in (None, modifier):
                    raise FhirError(400, "invalid", f"{name}: {alt!r} is not a {modifier}", name)
                if base == "patient":
                    if target not in (None, "Patient"):
                        raise FhirError(400, "invalid", f"{name}: {alt!r} is not a Patient", name)
                    target = "Patient"
                refs.append(RefValue(target, ref.resource_id))
            criteria.append(ReferenceCriterion(base, tuple(refs)))
    return SearchQuery(resource_type, tuple(criteria), count, offset, descending, tuple(filters), sort)
