"""The embedded store's search index rows: written with each version, rebuilt when the registry
of search parameters changes (:func:`gateway.store.registry.registry_fingerprint`)."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from typing import Any

from sqlalchemy import Connection, Table, delete, insert, select

from gateway.store.indexing import IndexRows, index_resource
from gateway.store.registry import registry_fingerprint

__all__ = ["reindex_if_stale", "write_index", "write_new_indexes"]

_log = logging.getLogger("netliver.gateway.store")
_INDEX_TABLES = ("token", "reference", "date", "string")


def write_index(conn: Connection, tables: Mapping[str, Table], rtype: str, rid: str,
                stored: Mapping[str, Any] | None, *, created: bool = False,
                previous: Mapping[str, Any] | None = None) -> None:
    """Replace the index rows of one resource by those of ``stored`` (None: deleted).

    ``created``: the resource's first version, just inserted; no rows of it can exist (a
    resource's rows go only with a later version: nothing deletes a resource's row), so there
    is nothing to delete first: four statements fewer for each resource a transaction creates.
    ``previous``: the current version being replaced (its rows are the ones stored: they are
    rebuilt whenever the search parameters change, :func:`reindex_if_stale`); only the tables
    whose rows differ are rewritten (a Task's progress, whose searchable elements stay, rewrites
    none: eight statements fewer)."""
    rows = _groups(index_resource(stored)) if stored is not None else {}
    before = _groups(index_resource(previous)) if previous is not None and not created else None
    for name in _INDEX_TABLES:
        entries = rows.get(name, [])
        if before is not None and before[name] == entries:
            continue
        table = tables[name]
        if not created:
            conn.execute(delete(table).where(table.c.resource_type == rtype, table.c.resource_id == rid))
        if entries:
            conn.execute(insert(table), _row_values(rtype, rid, entries))


def _groups(rows: IndexRows) -> dict[str, Sequence[Any]]:
    return {"token": rows.tokens, "reference": rows.refs, "date": rows.dates, "string": rows.strings}


def _row_values(rtype: str, rid: str, entries: Sequence[Any]) -> list[dict[str, Any]]:
    """The insert parameters of one resource's index rows of one table."""
    return [{"resource_type": rtype, "resource_id": rid, **asdict(row)} for row in entries]


def write_new_indexes(conn: Connection, tables: Mapping[str, Table], created: Sequence[Mapping[str, Any]]) -> None:
    """The index rows of resources whose first versions were just inserted (see ``created`` of
    :func:`write_index`), all of them in one insert per table."""
    groups: dict[str, list[dict[str, Any]]] = {name: [] for name in _INDEX_TABLES}
    for stored in created:
        rtype, rid = stored["resourceType"], stored["id"]
        for name, entries in _groups(index_resource(stored)).items():
            groups[name].extend(_row_values(rtype, rid, entries))
    for name, values in groups.items():
        if values:
            conn.execute(insert(tables[name]), values)


def reindex_if_stale(conn: Connection, tables: Mapping[str, Table]) -> None:
    """Rebuild the index of every current resource when the registry of search parameters
    changed since it was built (the stored fingerprint differs), so a database written by an
    older version answers the new parameters too. Run under the schema lock."""
    meta = tables["index_meta"]
    wanted = registry_fingerprint()
    found = conn.execute(select(meta.c.value).where(meta.c.key == "registry")).scalar_one_or_none()
    if found == wanted:
        return
    r = tables["resource"]
    rows = conn.execute(select(r.c.resource_type, r.c.resource_id, r.c.content).where(r.c.deleted.is_(False)))
    for row in rows.all():
        write_index(conn, tables, row.resource_type, row.resource_id, json.loads(row.content))
    conn.execute(delete(meta).where(meta.c.key == "registry"))
    conn.execute(insert(meta).values(key="registry", value=wanted))
    _log.info("search index rebuilt for the current search parameters", extra={"fingerprint": wanted})
