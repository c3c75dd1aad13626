"""Bundles the store answers and accepts: searchset, history, transaction and batch.

Pure helpers shared by the SQL store and the REST layer: building ``searchset`` and ``history``
Bundles (FHIR R4 §3.1.1, §3.1.0.9), and planning a ``transaction`` / ``batch`` Bundle
(FHIR R4 §3.1.0.11): checking every entry, the processing order (DELETE, POST, PUT, GET),
server-assigned ids for POSTed resources and the rewriting of ``urn:uuid:`` references to them.
"""

from __future__ import annotations

import copy
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, urlencode

from gateway.store.base import etag, is_resource_type
from gateway.store.search_params import MAX_COUNT, SearchQuery, parse_date_range
from netliver.fhir.outcome import FhirError, Issue
from netliver.fhir.subsetting import select_elements, summarize

__all__ = [
    "BundleEntry",
    "BundlePlan",
    "VersionRecord",
    "entry_error",
    "error_entry",
    "history_bundle",
    "instant_text",
    "plan_bundle",
    "response_entry",
    "rewrite_references",
    "searchset_bundle",
]

_METHOD_ORDER = {"DELETE": 0, "POST": 1, "PUT": 2, "GET": 3}
_TYPES = {"transaction": "transaction-response", "batch": "batch-response"}


def instant_text(epoch_us: int) -> str:
    """An R4 ``instant`` with microseconds in UTC (``2026-11-22T10:00:00.123456Z``)."""
    moment = datetime.fromtimestamp(epoch_us // 1_000_000, UTC).replace(microsecond=epoch_us % 1_000_000)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def shape(resource: dict[str, Any], query: SearchQuery) -> dict[str, Any]:
    """A search result as ``_summary`` / ``_elements`` ask (the whole resource otherwise)."""
    if query.summary in ("true", "data"):
        return summarize(resource, query.summary)
    if query.elements:
        return select_elements(resource, query.elements)
    return resource


def searchset_bundle(*, resource_type: str, base_url: str, resources: Sequence[Mapping[str, Any]],
                     total: int | None, filters: Sequence[tuple[str, str]], count: int, offset: int,
                     sort: str | None, included: Sequence[Mapping[str, Any]] = ()) -> dict[str, Any]:
    """A ``searchset`` Bundle with ``self``, ``next`` and ``previous`` links (``_offset`` paging);
    ``included`` resources (``_include``/``_revinclude``) follow the matches in ``include`` mode.
    ``total`` None: the search asked ``_total=none`` (R4 3.1.1.5.7): no Bundle.total, and a
    ``next`` link whenever the page is full (the links keep ``_total=none``)."""
    base = base_url.rstrip("/")

    def link(page_offset: int) -> str:
        query = list(filters)
        if sort:
            query.append(("_sort", sort))
        query += [("_count", str(count)), ("_offset", str(page_offset))]
        if total is None:
            query.append(("_total", "none"))
        return f"{base}/{resource_type}?{urlencode(query)}"

    links = [{"relation": "self", "url": link(offset)}]
    more = len(resources) == count if total is None else offset + count < total
    if count and more:
        links.append({"relation": "next", "url": link(offset + count)})
    if count and offset > 0:
        links.append({"relation": "previous", "url": link(max(0, offset - count))})
    entries = [{"fullUrl": f"{base}/{res['resourceType']}/{res['id']}", "resource": dict(res),
                "search": {"mode": mode}}
               for mode, group in (("match", resources), ("include", included)) for res in group]
    bundle: dict[str, Any] = {"resourceType": "Bundle", "type": "searchset"}
    if total is not None:
        bundle["total"] = total
    return {**bundle, "link": links, "entry": entries}


@dataclass(frozen=True)
class VersionRecord:
    """One stored version, for history Bundles."""

    version_id: int
    last_updated: str
    deleted: bool
    resource: Mapping[str, Any] | None


def history_bundle(resource_type: str, resource_id: str, versions: Sequence[VersionRecord],
                   base_url: str = "") -> dict[str, Any]:
    """A ``history`` Bundle, newest version first (FHIR R4 §3.1.0.9)."""
    ordered = sorted(versions, key=lambda v: v.version_id)
    entries = []
    previous_deleted = True
    for version in ordered:
        entries.append(_history_entry(resource_type, resource_id, version, base_url, previous_deleted))
        previous_deleted = version.deleted
    entries.reverse()
    return {"resourceType": "Bundle", "type": "history", "total": len(entries), "entry": entries}


def _history_entry(resource_type: str, resource_id: str, version: VersionRecord, base_url: str,
                   previous_deleted: bool) -> dict[str, Any]:
    url = f"{resource_type}/{resource_id}"
    if version.deleted:
        method, status = "DELETE", "204 No Content"
    elif previous_deleted:
        method, status = ("POST" if version.version_id == 1 else "PUT"), "201 Created"
    else:
        method, status = "PUT", "200 OK"
    entry: dict[str, Any] = {}
    if base_url:
        entry["fullUrl"] = f"{base_url.rstrip('/')}/{url}"
    if version.resource is not None and not version.deleted:
        entry["resource"] = dict(version.resource)
    entry["request"] = {"method": method, "url": url}
    entry["response"] = {"status": status, "etag": etag(str(version.version_id)),
                         "lastModified": version.last_updated}
    return entry


def history_entries(versions: Sequence[tuple[str, str, VersionRecord]], base_url: str) -> dict[str, Any]:
    """A ``history`` Bundle of versions of several resources (type or system history), in the
    given order; a version after a deletion is taken as a re-creation only for version 1."""
    entries = [_history_entry(rtype, rid, version, base_url, version.version_id == 1)
               for rtype, rid, version in versions]
    return {"resourceType": "Bundle", "type": "history", "total": len(entries), "entry": entries}


def history_window(params: Sequence[tuple[str, str]]) -> tuple[int, int | None]:
    """(``_count``, ``_since`` in µs) of a type or system history."""
    count, since = 50, None
    for name, value in params:
        if name == "_count":
            if not value.isdigit():
                raise FhirError(400, "invalid", f"_count must be an integer, not {value!r}", "_count")
            count = min(int(value), MAX_COUNT)
        elif name == "_since":
            since = parse_date_range(value, "_since").start_us
    return count, since


@dataclass
class BundleEntry:
    """One checked request entry of a transaction or batch."""

    index: int
    method: str
    resource_type: str
    resource_id: str | None = None
    version_id: str | None = None
    query: list[tuple[str, str]] = field(default_factory=list)
    resource: dict[str, Any] | None = None
    full_url: str | None = None
    if_match: str | None = None
    if_none_exist: list[tuple[str, str]] | None = None
    history: bool = False

    @property
    def expression(self) -> str:
        return f"Bundle.entry[{self.index}]"


@dataclass
class BundlePlan:
    kind: str  # "transaction" | "batch"
    entries: list[BundleEntry]
    errors: dict[int, FhirError] = field(default_factory=dict)  # batch entries refused up front

    @property
    def response_type(self) -> str:
        return _TYPES[self.kind]

    def in_processing_order(self) -> list[BundleEntry]:
        return sorted(self.entries, key=lambda e: (_METHOD_ORDER[e.method], e.index))


def _parse_url(url: str, expression: str) -> tuple[str, str | None, str | None, list[tuple[str, str]], bool]:
    """``Type``, ``Type/id``, ``Type/id/_history``, ``Type/id/_history/vid`` or ``Type?query``."""
    path, _, query = url.partition("?")
    parts = [p for p in path.strip("/").split("/") if p]
    if path.startswith(("http://", "https://")):  # an absolute URL: from its first resource type on
        typed = [i for i, part in enumerate(parts) if i > 1 and is_resource_type(part)]
        parts = parts[typed[0]:] if typed else []
    params = parse_qsl(query, keep_blank_values=True)
    if not parts or not is_resource_type(parts[0]):
        raise FhirError(400, "invalid", f"request.url {url!r} does not name a resource type", expression)
    if len(parts) == 1:
        return parts[0], None, None, params, False
    if len(parts) == 2:
        return parts[0], parts[1], None, params, False
    if len(parts) == 3 and parts[2] == "_history":
        return parts[0], parts[1], None, params, True
    if len(parts) == 4 and parts[2] == "_history":
        return parts[0], parts[1], parts[3], params, False
    raise FhirError(400, "invalid", f"request.url {url!r} is not a supported interaction", expression)


def _check_entry(index: int, raw: Any) -> BundleEntry:
    expr = f"Bundle.entry[{index}]"
    if not isinstance(raw, Mapping):
        raise FhirError(400, "invalid", "a Bundle entry must be an object", expr)
    request = raw.get("request")
    if not isinstance(request, Mapping):
        raise FhirError(400, "required", "every transaction/batch entry needs a request", f"{expr}.request")
    method = str(request.get("method", "")).upper()
    if method not in _METHOD_ORDER:
        raise FhirError(400, "not-supported", f"request.method {request.get('method')!r} is not supported "
                        "(GET, POST, PUT, DELETE)", f"{expr}.request.method")
    url = request.get("url")
    if not isinstance(url, str) or not url:
        raise FhirError(400, "required", "request.url is required", f"{expr}.request.url")
    rtype, rid, vid, params, history = _parse_url(url, f"{expr}.request.url")
    entry = BundleEntry(index, method, rtype, rid, vid, params, full_url=raw.get("fullUrl"),
                        if_match=request.get("ifMatch"), history=history)
    resource = raw.get("resource")
    if method in ("POST", "PUT"):
        if not isinstance(resource, Mapping):
            raise FhirError(400, "required", f"a {method} entry needs a resource", f"{expr}.resource")
        if resource.get("resourceType") != rtype:
            raise FhirError(400, "invalid", f"request.url names {rtype} but the resource is "
                            f"{resource.get('resourceType')!r}", f"{expr}.resource.resourceType")
        entry.resource = copy.deepcopy(dict(resource))
        if method == "POST":
            if rid is not None or params:
                raise FhirError(400, "invalid", "a POST url is the resource type alone", f"{expr}.request.url")
            if request.get("ifNoneExist"):
                entry.if_none_exist = parse_qsl(str(request["ifNoneExist"]).lstrip("?"), keep_blank_values=True)
        else:
            if rid is None or vid is not None or history or params:
                raise FhirError(400, "not-supported", "a PUT url must be Type/id (conditional update is "
                                "not supported)", f"{expr}.request.url")
            body_id = entry.resource.get("id")
            if body_id is None:
                entry.resource["id"] = rid
            elif body_id != rid:
                raise FhirError(400, "invalid", f"resource id {body_id!r} differs from the url id {rid!r}",
                                f"{expr}.resource.id")
    elif method == "DELETE" and (rid is None or vid is not None or history or params):
        raise FhirError(400, "not-supported", "a DELETE url must be Type/id (conditional delete is not "
                        "supported)", f"{expr}.request.url")
    return entry


def plan_bundle(bundle: Mapping[str, Any]) -> BundlePlan:
    """Check a transaction or batch Bundle and assign ids to POSTed resources.

    A transaction fails as a whole on the first bad entry (400 naming it); a batch keeps the bad
    entries' errors in ``errors`` and processes the rest. A Bundle of another type is a 422.
    Ids for POST entries are assigned here (UUID v4); references to a POST or PUT entry's
    ``fullUrl`` are rewritten by :func:`rewrite_references`.
    """
    if not isinstance(bundle, Mapping) or bundle.get("resourceType") != "Bundle":
        raise FhirError(400, "invalid", "a transaction or batch Bundle was expected", "resourceType")
    kind = bundle.get("type")
    if kind not in _TYPES:
        raise FhirError(422, "not-supported", f"Bundle.type must be transaction or batch, not {kind!r}",
                        "Bundle.type")
    raw_entries = bundle.get("entry") or []
    if not isinstance(raw_entries, list):
        raise FhirError(400, "invalid", "Bundle.entry must be a list", "Bundle.entry")
    plan = BundlePlan(str(kind), [])
    for index, raw in enumerate(raw_entries):
        try:
            entry = _check_entry(index, raw)
        except FhirError as err:
            if kind == "transaction":
                raise
            plan.errors[index] = err
            continue
        if entry.method == "POST":
            entry.resource_id = str(uuid.uuid4())
            assert entry.resource is not None
            entry.resource["id"] = entry.resource_id
        plan.entries.append(entry)
    if kind == "transaction":
        seen: dict[tuple[str, str], int] = {}
        for entry in plan.entries:
            if entry.method in ("PUT", "DELETE") and entry.resource_id:
                key = (entry.resource_type, entry.resource_id)
                if key in seen:
                    raise FhirError(400, "invalid", f"{key[0]}/{key[1]} appears in entries {seen[key]} "
                                    f"and {entry.index} of one transaction", f"{entry.expression}.request.url")
                seen[key] = entry.index
    return plan


def rewrite_references(resource: Any, mapping: Mapping[str, str]) -> Any:
    """``resource`` with every ``reference`` (and ``Attachment.url``-free) value found in
    ``mapping`` replaced (``urn:uuid:…`` → ``Type/id``). Returns a new structure."""
    if isinstance(resource, Mapping):
        out = {}
        for key, value in resource.items():
            if key == "reference" and isinstance(value, str) and value in mapping:
                out[key] = mapping[value]
            else:
                out[key] = rewrite_references(value, mapping)
        return out
    if isinstance(resource, list):
        return [rewrite_references(item, mapping) for item in resource]
    return resource


def response_entry(status: str, resource: Mapping[str, Any] | None, base_url: str,
                   *, include_resource: bool = True) -> dict[str, Any]:
    """A transaction-response entry for a stored resource."""
    entry: dict[str, Any] = {}
    response: dict[str, Any] = {"status": status}
    if resource is not None and resource.get("id"):
        rtype, rid = resource["resourceType"], resource["id"]
        meta = resource.get("meta") or {}
        entry["fullUrl"] = f"{base_url.rstrip('/')}/{rtype}/{rid}"
        if include_resource:
            entry["resource"] = dict(resource)
        if meta.get("versionId"):
            response["location"] = f"{rtype}/{rid}/_history/{meta['versionId']}"
            response["etag"] = etag(str(meta["versionId"]))
        if meta.get("lastUpdated"):
            response["lastModified"] = meta["lastUpdated"]
    elif resource is not None and include_resource:
        entry["resource"] = dict(resource)
    entry["response"] = response
    return entry


def entry_error(entry_index: int, err: FhirError, resource_type: str | None = None) -> FhirError:
    """``err`` with expressions pointing into ``Bundle.entry[i]`` (``Observation.code`` →
    ``Bundle.entry[3].resource.code``) and the entry named in the diagnostics."""
    prefix = f"Bundle.entry[{entry_index}]"

    def move(expr: str) -> str:
        if expr.startswith("Bundle.entry["):
            return expr
        if resource_type and (expr == resource_type or expr.startswith(resource_type + ".")
                              or expr.startswith(resource_type + "[")):
            return f"{prefix}.resource{expr[len(resource_type):]}"
        if expr in ("resourceType", "id"):
            return f"{prefix}.resource.{expr}"
        return f"{prefix}.{expr}" if expr.startswith(("request", "resource", "response")) else f"{prefix} ({expr})"

    issues = [Issue(i.code, f"entry {entry_index}: {i.diagnostics}" if n == 0 else i.diagnostics,
                    tuple(move(e) for e in i.expression) or (prefix,), i.severity)
              for n, i in enumerate(err.issues)]
    return FhirError.from_issues(err.status, issues, err.headers)


def error_entry(err: FhirError) -> dict[str, Any]:
    """A batch-response entry for a failed entry."""
    return {"response": {"status": str(err.status), "outcome": err.to_fhir()}}

