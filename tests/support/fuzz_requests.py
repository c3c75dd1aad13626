"""Hypothesis strategies of hostile and careless requests to every gateway endpoint.

Bodies come from four sources: JSON Schemas generated from the R4 models' top-level elements
(hypothesis-jsonschema), arbitrary JSON, mutations of valid seed resources (a node replaced by
a hostile value), and the defect classes the edge must refuse as raw text (NaN/Infinity/1e400,
numbers of thousands of digits, nesting of thousands of levels, NUL and lone-surrogate escapes,
non-UTF-8 bytes, truncated JSON). Paths and queries carry traversal, injection and overflow
strings.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from hypothesis import strategies as st

__all__ = ["FuzzRequest", "fuzz_requests"]

RESOURCE_TYPES = ["Patient", "Observation", "Condition", "Procedure", "Task", "Bundle", "Parameters",
                  "ImagingStudy", "DiagnosticReport", "AuditEvent"]
HOSTILE_TEXT = ["../system", "..%2f..%2fsystem", "%00", "\x00", "' OR 1=1 --", "\"; DROP TABLE fhir_resource; --",
                "<script>alert(1)</script>", "${jndi:ldap://x}", "{{7*7}}", "9223372036854775808",
                "18446744073709551616", "-1", "1e400", "NaN", "\u202e", "\ud800", "a" * 5000, "Patient/../../x",
                "http://169.254.169.254/latest", "*", "", " ", "\t", "ｐａｔｉｅｎｔ", "²", "١"]
RAW_NUMBERS = ["NaN", "Infinity", "-Infinity", "1e400", "-1e309", "9" * 5000, "0." + "1" * 5000]
OPERATIONS = ["$evaluate-eligibility", "$tumor-response", "$sirt-activity", "$voxel-dosimetry"]
PLACEHOLDER = "\u0001RAW\u0001"


@dataclass
class FuzzRequest:
    method: str
    path: str
    params: list[tuple[str, str]] = field(default_factory=list)
    body: bytes | None = None
    content_type: str = "application/fhir+json"
    headers: dict[str, str] = field(default_factory=dict)

    def describe(self) -> str:
        body = (self.body or b"")[:200]
        return f"{self.method} {self.path} {self.params[:4]} {body!r}"


def _seed_resources() -> list[dict[str, Any]]:
    patient = {"resourceType": "Patient", "id": "fz1", "name": [{"family": "Fuzz", "given": ["Test"]}],
               "identifier": [{"system": "urn:mrn", "value": "FZ-1"}], "birthDate": "1970-01-01"}
    obs = {"resourceType": "Observation", "id": "fz-obs", "status": "final",
           "code": {"coding": [{"system": "http://loinc.org", "code": "1975-2"}]},
           "subject": {"reference": "Patient/fz1"}, "valueQuantity": {"value": 1.2, "unit": "mg/dL",
                                                                       "system": "http://unitsofmeasure.org",
                                                                       "code": "mg/dL"}}
    params = {"resourceType": "Parameters", "parameter": [
        {"name": "patient", "resource": patient}, {"name": "observation", "resource": obs},
        {"name": "liverVolumeMl", "valueDecimal": 1500}, {"name": "lungShuntFraction", "valueDecimal": 0.05}]}
    transaction = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": "urn:uuid:8d4c8f42-8b39-4c8a-9d55-000000000001", "resource": patient,
         "request": {"method": "PUT", "url": "Patient/fz1"}},
        {"resource": obs, "request": {"method": "POST", "url": "Observation"}}]}
    cds = {"hook": "patient-view", "hookInstance": "d1577c69-dfbe-44ad-ba6d-3e05e953b2ea",
           "context": {"userId": "Practitioner/1", "patientId": "fz1"},
           "prefetch": {"patient": patient, "observations": {"resourceType": "Bundle", "type": "searchset",
                                                             "entry": [{"resource": obs}]}}}
    return [patient, obs, params, transaction, cds, {"ID": "27f7126f-4f66a63e-2fa1c4ca-73e1bd2c-3f6ec8d1"}]


@cache
def element_schemas(rtype: str) -> dict[str, dict[str, Any]]:
    """JSON Schemas of the R4 resource's top-level elements, generated from the R4B models
    (nested datatypes are left open: any JSON)."""
    from netliver.fhir.models import model_class

    schema: dict[str, Any] = model_class(rtype).model_json_schema()
    keep = {"anyOf", "type", "items", "enum", "format", "pattern", "minimum", "maximum"}
    return {name: {k: v for k, v in prop.items() if k in keep}
            for name, prop in schema.get("properties", {}).items() if name != "resource_type"}


def _schema_body(rtype: str) -> st.SearchStrategy[dict[str, Any]]:
    """A resource whose elements each follow their schema (hypothesis-jsonschema draws each
    element; the object is assembled here, as the library's object strategy does not run on
    current Hypothesis)."""
    from hypothesis_jsonschema import from_schema

    optional = {name: from_schema(schema) for name, schema in element_schemas(rtype).items()}
    return st.fixed_dictionaries({"resourceType": st.just(rtype)}, optional=optional)


@cache
def _schema_bodies() -> st.SearchStrategy[Any]:
    return st.one_of([_schema_body(t) for t in RESOURCE_TYPES if t != "AuditEvent"])


_json = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
                     | st.text(max_size=20) | st.sampled_from(HOSTILE_TEXT),
                     lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
                         st.sampled_from(["resourceType", "id", "name", "parameter", "entry", "resource", "type",
                                          "fullUrl", "request", "url", "method", "subject", "reference", "value",
                                          "valueDecimal", "valueString", "ID", "context", "prefetch"])
                         | st.text(max_size=8), inner, max_size=5),
                     max_leaves=25)


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(value, dict):
        for k, v in value.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out += _paths(v, (*prefix, i))
    return out


def _replace(value: Any, path: tuple[Any, ...], new: Any) -> Any:
    if not path:
        return new
    copy = dict(value) if isinstance(value, dict) else list(value)
    copy[path[0]] = _replace(copy[path[0]], path[1:], new)  # type: ignore[index]
    return copy


@st.composite
def _mutated(draw: st.DrawFn) -> bytes:
    seed = draw(st.sampled_from(_seed_resources()))
    paths = _paths(seed)
    for _ in range(draw(st.integers(1, 3))):
        where = draw(st.sampled_from(paths[1:] or paths))
        hostile = draw(st.one_of(_json, st.just(PLACEHOLDER)))
        try:
            seed = _replace(seed, where, hostile)
        except (KeyError, IndexError, TypeError):
            continue
        paths = _paths(seed)
    text = json.dumps(seed)
    while f'"{PLACEHOLDER}"'.replace("\u0001", "\\u0001") in text:
        text = text.replace(f'"{PLACEHOLDER}"'.replace("\u0001", "\\u0001"), draw(st.sampled_from(RAW_NUMBERS)), 1)
    return text.encode()


@st.composite
def _raw_defects(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["deep", "number", "escape", "bytes", "truncated", "nested-type"]))
    if kind == "deep":
        n = draw(st.sampled_from([65, 1000, 5000, 100_000]))
        return (b"[" * n + b"]" * n) if draw(st.booleans()) else (b'{"a":' * n + b"1" + b"}" * n)
    if kind == "number":
        number = draw(st.sampled_from(RAW_NUMBERS))
        return ('{"resourceType": "Parameters", "parameter": [{"name": "x", "valueDecimal": ' + number + "}]}").encode()
    if kind == "escape":
        escape = draw(st.sampled_from(["\\u0000", "\\ud800", "\\udfff", "\\u001b"]))
        return ('{"resourceType": "Patient", "name": [{"family": "a' + escape + 'b"}]}').encode()
    if kind == "bytes":
        return draw(st.binary(max_size=64))
    if kind == "truncated":
        whole = json.dumps(draw(st.sampled_from(_seed_resources()))).encode()
        return whole[: draw(st.integers(0, len(whole) - 1))]
    bad = draw(st.sampled_from(['7', '{"a": 1}', '["Patient"]', '"NoSuchType"', "null", '"Quantity"']))
    return ('{"resourceType": "Bundle", "type": "collection", "entry": [{"resource": {"resourceType": '
            + bad + "}}]}").encode()


@cache
def _bodies(with_schema: bool) -> st.SearchStrategy[bytes]:
    sources = [_mutated(), _raw_defects(), _raw_defects(), _json.map(lambda v: json.dumps(v).encode())]
    if with_schema:
        sources.append(_schema_bodies().map(lambda v: json.dumps(v).encode()))
    return st.one_of(sources)


_ids = st.one_of(st.sampled_from(["fz1", "fz-obs", "p1", "1"]), st.sampled_from(["fz1", "fz-obs", "p1", "1"]),
                 st.sampled_from(HOSTILE_TEXT), st.text(max_size=12))
_query_names = st.sampled_from(["_id", "identifier", "name", "subject", "patient", "code", "status", "_count",
                                "_offset", "_sort", "_lastUpdated", "date", "entity", "agent", "_format",
                                "subject:Patient", "code:text", "_elements"]) | st.text(max_size=6)
_query_values = st.sampled_from(HOSTILE_TEXT) | st.text(max_size=16) | st.integers().map(str)


@st.composite
def fuzz_requests(draw: st.DrawFn, with_schema: bool = True) -> FuzzRequest:
    """One request to one of the gateway's endpoints."""
    # Mostly real types and ids, so bodies reach the code behind the routes.
    rtype = draw(st.sampled_from(RESOURCE_TYPES) if draw(st.integers(0, 9)) else st.sampled_from(HOSTILE_TEXT[:6]))
    rid = draw(_ids)
    op = draw(st.sampled_from(OPERATIONS))
    choices = [
        ("GET", f"/fhir/{rtype}"), ("GET", f"/fhir/{rtype}/{rid}"), ("GET", f"/fhir/{rtype}/{rid}/_history"),
        ("GET", f"/fhir/{rtype}/{rid}/_history/{draw(_ids)}"), ("POST", f"/fhir/{rtype}/_search"),
        ("PUT", f"/fhir/{rtype}/{rid}"), ("POST", f"/fhir/{rtype}"), ("DELETE", f"/fhir/{rtype}/{rid}"),
        ("POST", "/fhir"), ("POST", f"/fhir/{op}"), ("POST", f"/fhir/Patient/{rid}/$evaluate-eligibility"),
        ("DELETE", f"/fhir/Task/{rid}"), ("GET", "/fhir/metadata"), ("GET", f"/fhir/CodeSystem/{rid}"),
        ("GET", f"/fhir/OperationDefinition/{rid}"), ("GET", "/cds-services"),
        ("POST", "/cds-services/liver-directed-therapy"), ("POST", "/hooks/orthanc/stable-study"),
        ("POST", f"/internal/jobs/{rid}/complete"), ("GET", "/fhir/AuditEvent"), ("GET", "/fhir/$audit-trail"), ("GET", "/health"),
    ]
    method, path = draw(st.sampled_from(choices))
    params = draw(st.lists(st.tuples(_query_names, _query_values), max_size=3))
    body = draw(_bodies(with_schema)) if method in {"POST", "PUT"} and draw(st.integers(0, 9)) else None
    ctype = draw(st.sampled_from(["application/fhir+json"] * 12 + ["application/json", "text/plain",
                                                                 "application/xml", ""]))
    headers: dict[str, str] = {}
    if path.startswith("/internal/") and draw(st.booleans()):
        headers["X-Internal-Token"] = draw(st.sampled_from(["wrong", "netliver-dev-internal"]))
    if method == "PUT" and draw(st.integers(0, 4)) == 0:
        headers["If-Match"] = draw(st.sampled_from(['W/"1"', 'W/"99999999999999999999999"', "garbage", '""']))
    return FuzzRequest(method, path, params, body, ctype, headers)
