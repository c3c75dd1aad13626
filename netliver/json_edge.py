"""The edge check of every JSON body, before any code walks it.

:func:`parse_json` reads bytes under :class:`JsonLimits` — nesting depth, characters per number,
no ``NaN``/``Infinity`` and no number that overflows a double (FHIR JSON has none: R4 §2.6.2
"JSON representation", decimals are JSON numbers), no control character other than tab, CR and
LF in a string and no lone surrogate (R4 string datatype: ``[ \\r\\n\\t\\S]+``) — and
:func:`check_structure` refuses the shapes the gateway would otherwise trip over: a nested
``resourceType`` that is not a string or not an R4 resource type, a ``Parameters.parameter``
whose ``name`` is not a string, a ``Bundle`` whose ``type``, ``entry``, ``fullUrl``,
``resource`` or ``request`` has the wrong JSON type. Every refusal is a 400 ``FhirError``
naming the limit or the element (FHIRPath-like ``expression``).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from netliver.fhir.outcome import FhirError

__all__ = ["JsonLimits", "check_structure", "parse_json"]

#: A JSON string token, or a bracket: strings are skipped when the nesting depth is measured.
_TOKEN = re.compile(rb'"(?:[^"\\]|\\.)*"|[\[\]{}]')
#: ``\\u`` escapes of C0 controls and of surrogates: only bodies holding one are walked for them.
_SUSPECT_ESCAPE = re.compile(rb"\\u(?:00[01][0-9a-fA-F]|[dD][89a-fA-F][0-9a-fA-F]{2})")
_BAD_CHAR = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff]")


@dataclass(frozen=True)
class JsonLimits:
    max_depth: int = 64
    max_number_chars: int = 64


def _refuse(diagnostics: str, expression: str | None = None) -> FhirError:
    return FhirError(400, "invalid", diagnostics, expression)


def _depth_ok(raw: bytes, max_depth: int) -> None:
    depth = 0
    for match in _TOKEN.finditer(raw):
        token = match.group()
        if token in (b"[", b"{"):
            depth += 1
            if depth > max_depth:
                raise _refuse(f"the body nests deeper than {max_depth} levels (limit MAX_JSON_DEPTH)")
        elif token in (b"]", b"}"):
            depth -= 1


def _number_parsers(limits: JsonLimits) -> tuple[Callable[[str], Any], Callable[[str], Any], Callable[[str], Any]]:
    def check_length(text: str) -> None:
        if len(text) > limits.max_number_chars:
            raise _refuse(f"a number in the body has more than {limits.max_number_chars} characters "
                          "(limit MAX_JSON_NUMBER_CHARS)")

    def parse_int(text: str) -> int:
        check_length(text)
        return int(text)

    def parse_float(text: str) -> float:
        check_length(text)
        value = float(text)
        if not math.isfinite(value):
            raise _refuse(f"the number {text} is out of range (FHIR decimals are finite)")
        return value

    def parse_constant(text: str) -> Any:
        raise _refuse(f"{text} is not a JSON number (FHIR JSON has no NaN or Infinity)")

    return parse_int, parse_float, parse_constant


def parse_json(raw: bytes, limits: JsonLimits) -> Any:
    """Parse a request body, or raise a 400 ``FhirError`` naming what is wrong."""
    _depth_ok(raw, limits.max_depth)
    parse_int, parse_float, parse_constant = _number_parsers(limits)
    try:
        data = json.loads(raw, parse_int=parse_int, parse_float=parse_float, parse_constant=parse_constant)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _refuse(f"the body is not valid JSON: {exc}") from None
    except RecursionError:
        raise _refuse(f"the body nests deeper than {limits.max_depth} levels (limit MAX_JSON_DEPTH)") from None
    if _SUSPECT_ESCAPE.search(raw):
        _check_strings(data, "")
    return data


def _check_strings(node: Any, path: str) -> None:
    stack: list[tuple[Any, str]] = [(node, path)]
    while stack:
        value, where = stack.pop()
        if isinstance(value, str):
            if _BAD_CHAR.search(value):
                raise _refuse("a string holds a control character or a lone surrogate (not allowed in FHIR strings)",
                              where or None)
        elif isinstance(value, dict):
            for key, item in value.items():
                if _BAD_CHAR.search(key):
                    raise _refuse("a property name holds a control character or a lone surrogate", where or None)
                stack.append((item, f"{where}.{key}" if where else key))
        elif isinstance(value, list):
            stack.extend((item, f"{where}[{i}]") for i, item in enumerate(value))


# -- structure ----------------------------------------------------------------------------------

_TYPE_NAMES = {dict: "an object", list: "an array", str: "a string", bool: "a boolean",
               int: "a number", float: "a number", type(None): "null"}

#: Bundle.entry properties and the JSON type each must have (R4 Bundle, §2.36).
_ENTRY_TYPES: dict[str, type] = {"fullUrl": str, "resource": dict, "request": dict, "response": dict,
                                 "search": dict, "link": list}
_REQUEST_TYPES: dict[str, type] = {"method": str, "url": str, "ifNoneMatch": str, "ifMatch": str,
                                   "ifNoneExist": str, "ifModifiedSince": str}


def _kind(value: Any) -> str:
    return _TYPE_NAMES.get(type(value), type(value).__name__)


def _expect(value: Any, wanted: type, where: str) -> None:
    if not isinstance(value, wanted) or (wanted is int and isinstance(value, bool)):
        raise _refuse(f"{where} must be {_TYPE_NAMES[wanted]}, not {_kind(value)}", where)


def _check_bundle(res: dict[str, Any], where: str) -> None:
    for key in ("type", "id"):
        if key in res:
            _expect(res[key], str, f"{where}.{key}")
    if "entry" not in res:
        return
    _expect(res["entry"], list, f"{where}.entry")
    for i, entry in enumerate(res["entry"]):
        at = f"{where}.entry[{i}]"
        _expect(entry, dict, at)
        for key, wanted in _ENTRY_TYPES.items():
            if key in entry:
                _expect(entry[key], wanted, f"{at}.{key}")
        for key, wanted in _REQUEST_TYPES.items():
            if key in entry.get("request", {}):
                _expect(entry["request"][key], wanted, f"{at}.request.{key}")


def _check_parameters(parameters: Any, where: str) -> None:
    _expect(parameters, list, where)
    for i, param in enumerate(parameters):
        at = f"{where}[{i}]"
        _expect(param, dict, at)
        if "name" not in param:
            raise _refuse(f"{at}.name is required", f"{at}.name")
        _expect(param["name"], str, f"{at}.name")
        if "resource" in param:
            _expect(param["resource"], dict, f"{at}.resource")
        if "part" in param:
            _check_parameters(param["part"], f"{at}.part")


def check_structure(data: Any, is_resource_type: Callable[[str], bool]) -> None:
    """Refuse, with the element's path, the JSON shapes listed in the module docstring (every
    object holding ``resourceType`` is taken as a resource, wherever it is nested)."""
    stack: list[tuple[Any, str]] = [(data, "")]
    while stack:
        value, where = stack.pop()
        if isinstance(value, list):
            stack.extend((item, f"{where}[{i}]") for i, item in enumerate(value))
            continue
        if not isinstance(value, dict):
            continue
        if "resourceType" in value:
            at = f"{where}.resourceType" if where else "resourceType"
            rtype = value["resourceType"]
            _expect(rtype, str, at)
            if not is_resource_type(rtype):
                raise _refuse(f"{rtype[:64]!r} is not an R4 resource type", at)
            where = where or rtype
            if rtype == "Bundle":
                _check_bundle(value, where)
            elif rtype == "Parameters" and "parameter" in value:
                _check_parameters(value["parameter"], f"{where}.parameter")
        for key, item in value.items():
            if isinstance(item, dict | list):
                stack.append((item, f"{where}.{key}" if where else key))
