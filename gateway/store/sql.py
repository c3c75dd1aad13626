"""The gateway's embedded FHIR store on SQL (SQLite file or PostgreSQL), SQLAlchemy 2 Core.

Schema (``docs/store.md``), created with ``metadata.create_all`` at start (no migration tool):

- ``fhir_resource``: the current version of each resource (type, id, version, last updated,
  deleted flag, the JSON text as the caller sent it plus ``meta``);
- ``fhir_resource_version``: every version (history, vread);
- ``fhir_search_token``, ``fhir_search_reference``, ``fhir_search_date`` and
  ``fhir_search_string``: the search index of current versions, for every parameter of the
  registry (:mod:`gateway.store.registry`); ``fhir_index_meta``: the registry it was built for.

The tables and the engine are built in :mod:`gateway.store.sql_schema`, search conditions in
:mod:`gateway.store.sql_search`, the index rows in :mod:`gateway.store.sql_index`; connections,
database errors and the retry of lost races are :mod:`gateway.store.sql_tx`.

Writes are idempotent (content equal to the current version, ignoring ``meta.versionId`` and
``meta.lastUpdated``, writes nothing) and safe under concurrency: the current row's primary key
decides who creates a resource (the loser of a race retries inside a SAVEPOINT and becomes an
update), updates lock the row (``SELECT … FOR UPDATE`` on PostgreSQL; SQLite write transactions
start with ``BEGIN IMMEDIATE`` so there is one writer at a time, waiting up to ``busy_timeout``)
and bump the version only if it did not move (``UPDATE … WHERE version_id = :seen``).
"""

from __future__ import annotations

import functools
import json
import re
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, func, insert, select, text, update
from sqlalchemy.exc import IntegrityError

from gateway.store.base import etag, parse_etag, require_resource_type
from gateway.store.bundles import (
    BundleEntry,
    VersionRecord,
    entry_error,
    error_entry,
    history_bundle,
    history_entries,
    history_window,
    instant_text,
    plan_bundle,
    response_entry,
    rewrite_references,
    searchset_bundle,
    shape,
)
from gateway.store.content import dumps, same_content
from gateway.store.search_params import SearchQuery, parse_search
from gateway.store.sql_create import create_all_new, now_us, parse_instant_us, with_meta
from gateway.store.sql_index import reindex_if_stale, write_index
from gateway.store.sql_schema import build_metadata, make_engine
from gateway.store.sql_search import conditions, include_rows, order_by
from gateway.store.sql_tx import (
    ATTEMPTS,
    Retry,
    conflict,
    mapped_errors,
    read_connection,
    run_write,
    write_transaction,
)
from netliver.fhir.outcome import FhirError
from netliver.fhir.validation import check_resource

__all__ = ["SqlStore", "build_metadata"]

#: PostgreSQL advisory lock key serialising ``create_all`` across processes ("netliver" in ASCII).
_SCHEMA_LOCK_KEY = 0x6E65746C69766572


#: Version ids are the ``version_id`` INTEGER column: PostgreSQL's is 32-bit (SQLite's 64-bit),
#: so a larger id is refused alike on both (it could never have been stored).
MAX_VERSION_ID = 2**31 - 1
_VERSION_RE = re.compile(r"[0-9]+")


@dataclass(frozen=True)
class _Current:
    version_id: int
    last_updated_us: int
    deleted: bool
    content: str | None


class SqlStore:
    """The embedded FHIR store (see the module docstring)."""

    def __init__(self, database_url: str, *, echo: bool = False) -> None:
        self.database_url = database_url
        self.engine: Engine = make_engine(database_url, echo=echo)
        self.metadata, tables = build_metadata()
        self._tables = tables
        self._resource = tables["resource"]
        self._version = tables["version"]
        self._token = tables["token"]
        self._reference = tables["reference"]
        self.create_all()

    # -- lifecycle ------------------------------------------------------------------------------
    def create_all(self) -> None:
        """Create missing tables (the store's and any another module added to ``metadata``).

        Several processes (gunicorn workers) may start at once: on PostgreSQL they take turns
        on an advisory lock; on SQLite the ``BEGIN IMMEDIATE`` write lock does the same."""
        try:
            with mapped_errors(), self.engine.begin() as conn:
                if self.engine.dialect.name == "postgresql":
                    conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _SCHEMA_LOCK_KEY})
                self.metadata.create_all(conn)
                reindex_if_stale(conn, self._tables)
        except Retry as exc:
            raise FhirError(503, "transient", "the FHIR store's schema could not be created",
                            headers={"Retry-After": "5"}) from exc

    def close(self) -> None:
        self.engine.dispose()

    @property
    def is_sqlite(self) -> bool:
        return self.engine.dialect.name == "sqlite"

    @contextmanager
    def begin(self) -> Iterator[Connection]:
        """One write transaction (committed at the end of the block, rolled back on error),
        for writing resources (``put(..., conn=conn)``) and another module's rows atomically."""
        try:
            with write_transaction(self.engine) as conn:
                yield conn
        except Retry as exc:
            raise conflict() from exc

    # -- reads ----------------------------------------------------------------------------------
    def read(self, resource_type: str, resource_id: str, *, conn: Connection | None = None) -> dict[str, Any]:
        if conn is not None:
            return self._read(conn, resource_type, resource_id)
        with read_connection(self.engine) as own:
            return self._read(own, resource_type, resource_id)

    def _read(self, conn: Connection, resource_type: str, resource_id: str) -> dict[str, Any]:
        r = self._resource
        row = conn.execute(select(r.c.deleted, r.c.content, r.c.version_id).where(
            r.c.resource_type == resource_type, r.c.resource_id == resource_id)).first()
        if row is None:
            raise FhirError(404, "not-found", f"{resource_type}/{resource_id} is not known")
        if row.deleted or row.content is None:
            raise FhirError(410, "deleted", f"{resource_type}/{resource_id} was deleted",
                            headers={"ETag": etag(str(row.version_id))})
        result: dict[str, Any] = json.loads(row.content)
        return result

    def vread(self, resource_type: str, resource_id: str, version_id: str) -> dict[str, Any]:
        with read_connection(self.engine) as conn:
            return self._vread(conn, resource_type, resource_id, version_id)

    def _vread(self, conn: Connection, resource_type: str, resource_id: str, version_id: str) -> dict[str, Any]:
        v = self._version
        if not _VERSION_RE.fullmatch(version_id):
            raise FhirError(404, "not-found", f"{resource_type}/{resource_id} has no version {version_id!r}")
        if len(version_id) > len(str(MAX_VERSION_ID)) or int(version_id) > MAX_VERSION_ID:
            raise FhirError(400, "value", f"version ids of this server are integers up to {MAX_VERSION_ID}",
                            "versionId")
        row = conn.execute(select(v.c.deleted, v.c.content).where(
            v.c.resource_type == resource_type, v.c.resource_id == resource_id,
            v.c.version_id == int(version_id))).first()
        if row is None:
            raise FhirError(404, "not-found", f"{resource_type}/{resource_id} has no version {version_id}")
        if row.deleted or row.content is None:
            raise FhirError(410, "deleted", f"version {version_id} of {resource_type}/{resource_id} is a deletion")
        result: dict[str, Any] = json.loads(row.content)
        return result

    def history(self, resource_type: str, resource_id: str, *, base_url: str = "") -> dict[str, Any]:
        with read_connection(self.engine) as conn:
            return self._history(conn, resource_type, resource_id, base_url)

    def _history(self, conn: Connection, resource_type: str, resource_id: str, base_url: str) -> dict[str, Any]:
        v = self._version
        rows = conn.execute(select(v.c.version_id, v.c.last_updated_us, v.c.deleted, v.c.content).where(
            v.c.resource_type == resource_type, v.c.resource_id == resource_id)).all()
        if not rows:
            raise FhirError(404, "not-found", f"{resource_type}/{resource_id} is not known")
        versions = [VersionRecord(row.version_id, instant_text(row.last_updated_us), bool(row.deleted),
                                  json.loads(row.content) if row.content else None) for row in rows]
        return history_bundle(resource_type, resource_id, versions, base_url)

    def history_all(self, resource_type: str | None, params: list[tuple[str, str]], base_url: str) -> dict[str, Any]:
        """Type (``resource_type``) or system (None) history, newest first: ``_count`` versions
        at most (default 50, at most 500), none before ``_since``."""
        count, since_us = history_window(params)
        v = self._version
        stmt = select(v.c.resource_type, v.c.resource_id, v.c.version_id, v.c.last_updated_us, v.c.deleted,
                      v.c.content).order_by(v.c.last_updated_us.desc(), v.c.resource_id.desc()).limit(count)
        if resource_type is not None:
            stmt = stmt.where(v.c.resource_type == resource_type)
        if since_us is not None:
            stmt = stmt.where(v.c.last_updated_us >= since_us)
        with read_connection(self.engine) as conn:
            rows = conn.execute(stmt).all()
        return history_entries([(row.resource_type, row.resource_id, VersionRecord(
            row.version_id, instant_text(row.last_updated_us), bool(row.deleted),
            json.loads(row.content) if row.content else None)) for row in rows], base_url)

    def search(self, resource_type: str, params: list[tuple[str, str]], base_url: str, *,
               conn: Connection | None = None) -> dict[str, Any]:
        require_resource_type(resource_type)
        query = parse_search(resource_type, params)
        if conn is not None:
            return self._search(conn, query, base_url)
        with read_connection(self.engine) as own:
            return self._search(own, query, base_url)

    def _search(self, conn: Connection, query: SearchQuery, base_url: str) -> dict[str, Any]:
        r = self._resource
        where = conditions(self._tables, query.resource_type, query.criteria)
        # _total=none: the caller pages until a short page and the count query is saved
        total = (None if query.total == "none"
                 else conn.execute(select(func.count()).select_from(r).where(*where)).scalar_one())
        rows: list[Any] = []
        if query.count:
            rows = list(conn.execute(select(r.c.resource_type, r.c.resource_id, r.c.content).where(*where)
                                     .order_by(*order_by(self._tables, query.sort_keys))
                                     .limit(query.count).offset(query.offset)))
        page = [(row.resource_type, row.resource_id) for row in rows]
        included: dict[tuple[str, str], dict[str, Any]] = {}
        for include, reverse in [*((i, False) for i in query.include), *((i, True) for i in query.revinclude)]:
            stmt = include_rows(self._tables, include, page, reverse)
            for row in conn.execute(stmt) if stmt is not None else []:
                if (row.resource_type, row.resource_id) not in page:
                    included.setdefault((row.resource_type, row.resource_id), json.loads(row.content))
        return searchset_bundle(resource_type=query.resource_type, base_url=base_url,
                                resources=[shape(json.loads(row.content), query) for row in rows], total=total,
                                filters=query.filters, count=query.count, offset=query.offset,
                                sort=query.sort, included=[shape(res, query) for res in included.values()])

    def health(self) -> dict[str, Any]:
        """Pass only when the database answers a read AND takes a write: a write statement that
        changes nothing, rolled back (a read-only file, a full disk's journal, a read-only
        PostgreSQL replica fail it)."""
        backend = self.engine.dialect.name
        r = self._resource
        try:
            with read_connection(self.engine) as conn:
                conn.execute(select(1)).scalar_one()
            with write_transaction(self.engine) as conn:
                conn.execute(update(r).where(r.c.resource_type == "", r.c.resource_id == "")
                             .values(version_id=r.c.version_id))
                conn.rollback()
        except Retry:
            pass  # a concurrent writer held the lock: the database takes writes
        except FhirError as err:
            return {"status": "fail", "detail": f"{backend}: {err.diagnostics}"}
        return {"status": "pass", "detail": f"{backend} store reachable and writable"}

    # -- writes ---------------------------------------------------------------------------------
    def put(self, resource: dict[str, Any], *, if_match: str | None = None,
            conn: Connection | None = None) -> tuple[dict[str, Any], bool]:
        """Create or update ``resource`` by its id (see :meth:`FhirStore.put`)."""
        _validate(resource)
        if not resource.get("id"):
            raise FhirError(400, "required", "an update needs the resource id", f"{resource['resourceType']}.id")
        return run_write(self.engine, lambda c: self._put(c, resource, if_match), conn)

    def create(self, resource: dict[str, Any], *, conn: Connection | None = None) -> dict[str, Any]:
        """Create with a server-assigned UUID (any id in the body is replaced)."""
        body = {**resource, "id": str(uuid.uuid4())}
        _validate(body)
        stored, _ = run_write(self.engine, lambda c: self._put(c, body, None), conn)
        return stored

    def delete(self, resource_type: str, resource_id: str, *, conn: Connection | None = None) -> None:
        """Soft delete: a new version marked deleted; nothing happens if unknown or deleted."""
        require_resource_type(resource_type)
        run_write(self.engine, lambda c: self._delete(c, resource_type, resource_id), conn)

    def _current(self, conn: Connection, resource_type: str, resource_id: str) -> _Current | None:
        r = self._resource
        stmt = select(r.c.version_id, r.c.last_updated_us, r.c.deleted, r.c.content).where(
            r.c.resource_type == resource_type, r.c.resource_id == resource_id)
        if not self.is_sqlite:
            stmt = stmt.with_for_update()
        row = conn.execute(stmt).first()
        if row is None:
            return None
        return _Current(row.version_id, row.last_updated_us, bool(row.deleted), row.content)

    def _put(self, conn: Connection, resource: Mapping[str, Any], if_match: str | None) -> tuple[dict[str, Any], bool]:
        rtype, rid = str(resource["resourceType"]), str(resource["id"])
        wanted = parse_etag(if_match) if if_match else None
        for _ in range(ATTEMPTS):
            current = self._current(conn, rtype, rid)
            if wanted is not None and (current is None or str(current.version_id) != wanted):
                raise FhirError(412, "conflict", f"If-Match {if_match} does not match the current version of "
                                f"{rtype}/{rid}" + ("" if current is None else f" ({current.version_id})"),
                                "If-Match")
            if current is None:
                stored = with_meta(resource, 1, instant_text(now_us()))
                try:
                    with conn.begin_nested():
                        self._insert_version(conn, stored, 1, insert_current=True)
                except IntegrityError:
                    continue  # a concurrent writer created it first: update it instead
                return stored, True
            previous: dict[str, Any] | None = None if current.deleted or current.content is None \
                else json.loads(current.content)
            if previous is not None and same_content(previous, resource):
                return previous, False
            version = current.version_id + 1
            stored = with_meta(resource, version, instant_text(max(now_us(), current.last_updated_us + 1)))
            if self._insert_version(conn, stored, version, seen_version=current.version_id, previous=previous):
                return stored, current.deleted
        raise Retry(f"{rtype}/{rid} kept changing")

    def _insert_version(self, conn: Connection, stored: Mapping[str, Any], version: int, *,
                        insert_current: bool = False, seen_version: int | None = None,
                        previous: Mapping[str, Any] | None = None) -> bool:
        rtype, rid = stored["resourceType"], stored["id"]
        last_updated_us = parse_instant_us(stored["meta"]["lastUpdated"])
        content = dumps(stored)
        values = {"version_id": version, "last_updated_us": last_updated_us, "deleted": False, "content": content}
        r = self._resource
        if insert_current:
            conn.execute(insert(r).values(resource_type=rtype, resource_id=rid, **values))
        else:
            result = conn.execute(update(r).where(r.c.resource_type == rtype, r.c.resource_id == rid,
                                                  r.c.version_id == seen_version).values(**values))
            if result.rowcount != 1:
                return False
        conn.execute(insert(self._version).values(resource_type=rtype, resource_id=rid, **values))
        write_index(conn, self._tables, rtype, rid, stored, created=insert_current, previous=previous)
        return True

    def _delete(self, conn: Connection, rtype: str, rid: str) -> None:
        r = self._resource
        for _ in range(ATTEMPTS):
            current = self._current(conn, rtype, rid)
            if current is None or current.deleted:
                return
            version = current.version_id + 1
            values = {"version_id": version, "last_updated_us": max(now_us(), current.last_updated_us + 1),
                      "deleted": True, "content": None}
            result = conn.execute(update(r).where(r.c.resource_type == rtype, r.c.resource_id == rid,
                                                  r.c.version_id == current.version_id).values(**values))
            if result.rowcount == 1:
                conn.execute(insert(self._version).values(resource_type=rtype, resource_id=rid, **values))
                write_index(conn, self._tables, rtype, rid, None)
                return
        raise Retry(f"{rtype}/{rid} kept changing")

    # -- transaction and batch ------------------------------------------------------------------
    def transaction(self, bundle: dict[str, Any], base_url: str, *,
                    conn: Connection | None = None) -> dict[str, Any]:
        """Process a ``transaction`` Bundle atomically in one database transaction, or a ``batch``
        Bundle entry by entry (FHIR R4 §3.1.0.11)."""
        plan = plan_bundle(bundle)
        if plan.kind == "batch":
            responses: dict[int, dict[str, Any]] = {i: error_entry(err) for i, err in plan.errors.items()}
            for entry in plan.entries:
                try:
                    responses[entry.index] = run_write(self.engine,
                        functools.partial(self._run_entry, entry=entry, base_url=base_url), conn)
                except FhirError as err:
                    responses[entry.index] = error_entry(entry_error(entry.index, err, entry.resource_type))
            return {"resourceType": "Bundle", "type": plan.response_type,
                    "entry": [responses[i] for i in sorted(responses)]}
        for entry in plan.entries:  # validate every resource before touching the database
            if entry.resource is not None:
                try:
                    _validate(entry.resource)
                except FhirError as err:
                    raise entry_error(entry.index, err, entry.resource_type) from None

        def run(c: Connection) -> dict[str, Any]:
            mapping: dict[str, str] = {}
            done: dict[int, dict[str, Any]] = {}
            for entry in plan.entries:
                if entry.full_url and entry.resource_id and entry.method in ("POST", "PUT"):
                    mapping[entry.full_url] = f"{entry.resource_type}/{entry.resource_id}"
            for entry in plan.entries:  # conditional creates resolve before any reference rewrite
                if entry.method == "POST" and entry.if_none_exist is not None:
                    found = self._if_none_exist(c, entry, base_url)
                    if found is not None:
                        if entry.full_url:
                            mapping[entry.full_url] = f"{found['resourceType']}/{found['id']}"
                        done[entry.index] = response_entry("200 OK", found, base_url)
            ordered = plan.in_processing_order()
            for entry in ordered:
                if entry.index not in done and entry.resource is not None:
                    entry.resource = rewrite_references(entry.resource, mapping)
            done.update(self._create_all_new(c, [e for e in ordered if e.index not in done], base_url))
            for entry in ordered:
                if entry.index in done:
                    continue
                try:
                    done[entry.index] = self._run_entry(c, entry=entry, base_url=base_url,
                                                        prechecked=True)
                except FhirError as err:
                    raise entry_error(entry.index, err, entry.resource_type) from None
            return {"resourceType": "Bundle", "type": plan.response_type,
                    "entry": [done[e.index] for e in plan.entries]}

        return run_write(self.engine, run, conn)

    def _create_all_new(self, conn: Connection, entries: list[BundleEntry], base_url: str) -> dict[int, dict[str, Any]]:
        """The creations among ``entries``, made together (:func:`.sql_create.create_all_new`)."""
        return create_all_new(conn, self._tables, entries, base_url)

    def _if_none_exist(self, conn: Connection, entry: BundleEntry, base_url: str) -> dict[str, Any] | None:
        try:
            query = parse_search(entry.resource_type, entry.if_none_exist or [])
        except FhirError as err:
            raise entry_error(entry.index, FhirError(400, err.code, f"ifNoneExist: {err.diagnostics}",
                                                     f"{entry.expression}.request.ifNoneExist")) from None
        found = self._search(conn, query, base_url)
        if found["total"] > 1:
            raise entry_error(entry.index, FhirError(
                412, "duplicate", f"ifNoneExist matches {found['total']} {entry.resource_type} resources",
                f"{entry.expression}.request.ifNoneExist"))
        if found["total"] == 1:
            existing: dict[str, Any] = found["entry"][0]["resource"]
            return existing
        return None

    def _run_entry(self, conn: Connection, *, entry: BundleEntry, base_url: str,
                   prechecked: bool = False) -> dict[str, Any]:
        """One entry; ``prechecked``: its resource was validated and its ``ifNoneExist`` resolved
        by :meth:`transaction` already."""
        if entry.method == "GET":
            if entry.resource_id is None:
                searchset = self._search(conn, parse_search(entry.resource_type, entry.query), base_url)
                return {"resource": searchset, "response": {"status": "200 OK"}}
            if entry.history:
                return {"resource": self._history(conn, entry.resource_type, entry.resource_id, base_url),
                        "response": {"status": "200 OK"}}
            if entry.version_id is not None:
                return response_entry("200 OK", self._vread(conn, entry.resource_type, entry.resource_id,
                                                            entry.version_id), base_url)
            return response_entry("200 OK", self._read(conn, entry.resource_type, entry.resource_id), base_url)
        if entry.method == "DELETE":
            assert entry.resource_id is not None
            self._delete(conn, entry.resource_type, entry.resource_id)
            return {"response": {"status": "204 No Content"}}
        assert entry.resource is not None
        if entry.method == "POST" and entry.if_none_exist is not None and not prechecked:
            found = self._if_none_exist(conn, entry, base_url)
            if found is not None:
                return response_entry("200 OK", found, base_url)
        if not prechecked:
            _validate(entry.resource)
        stored, created = self._put(conn, entry.resource, entry.if_match if entry.method == "PUT" else None)
        return response_entry("201 Created" if created else "200 OK", stored, base_url)


def _validate(resource: Any) -> None:
    """400 unless ``resource`` is a valid R4 resource: structure, required bindings and
    invariants (with expressions naming the elements)."""
    if not isinstance(resource, dict):
        raise FhirError(400, "invalid", "a FHIR resource (JSON object) was expected")
    rtype = resource.get("resourceType")
    if isinstance(rtype, str):
        require_resource_type(rtype)
    check_resource(resource)
