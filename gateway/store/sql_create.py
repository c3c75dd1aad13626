"""A transaction's creations written together, and the stored form of a version.

A job's write-back is a transaction of new resources (a report, its observations, a
Provenance) and its Task: written one by one, each creation cost a read, a SAVEPOINT, two
inserts, up to four index inserts and its release (~9 statements, 72 for a voxel job's results).
:func:`create_all_new` reads the rows of all of them at once and inserts the new ones together,
one insert per table (with the Task's update, whose unchanged index rows are left alone: 13
statements for the same write-back, 36 → 23 ms on PostgreSQL).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Table, insert, select, tuple_
from sqlalchemy.exc import IntegrityError

from gateway.store.bundles import BundleEntry, instant_text, response_entry
from gateway.store.content import SERVER_META, dumps
from gateway.store.search_params import to_epoch_us
from gateway.store.sql_index import write_new_indexes

__all__ = ["create_all_new", "now_us", "parse_instant_us", "with_meta"]

#: Resources whose rows one statement reads (two parameters each: far below SQLite's 32,766, and a
#: 10 MiB transaction may name tens of thousands).
_KEYS_A_READ = 500


def now_us() -> int:
    return to_epoch_us(datetime.now(UTC))


def with_meta(resource: Mapping[str, Any], version_id: int, last_updated: str) -> dict[str, Any]:
    """``resource`` as stored: ``meta.versionId`` and ``meta.lastUpdated`` first, the caller's
    other ``meta`` kept (the server's own elements replaced)."""
    meta = {k: v for k, v in (resource.get("meta") or {}).items() if k not in SERVER_META}
    meta = {"versionId": str(version_id), "lastUpdated": last_updated, **meta}
    out: dict[str, Any] = {"resourceType": resource["resourceType"], "id": resource["id"], "meta": meta}
    out.update((k, v) for k, v in resource.items() if k not in out)
    return out


def parse_instant_us(text: str) -> int:
    moment = datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    return to_epoch_us(moment)


def create_all_new(conn: Connection, tables: Mapping[str, Table], entries: list[BundleEntry],
                   base_url: str) -> dict[int, dict[str, Any]]:
    """The response entries (by entry index) of the writes among ``entries`` that create a
    resource, made together: a POST, or a PUT without If-Match, of an id with no row (a deleted
    resource has one, and is left to the one-by-one way). Fewer than two such: nothing is done
    here. Should another writer create one of them between the read and the insert (its primary
    key), the SAVEPOINT drops all of them and nothing is returned: each then goes the one-by-one
    way, which turns a lost race into an update."""
    writes = [e for e in entries if e.resource is not None and e.method in ("POST", "PUT")
              and (e.method == "POST" or e.if_match is None)]
    if len(writes) < 2:
        return {}
    resource, version = tables["resource"], tables["version"]
    keys = [(str(e.resource["resourceType"]), str(e.resource["id"])) for e in writes if e.resource is not None]
    existing: set[tuple[str, str]] = set()
    for start in range(0, len(keys), _KEYS_A_READ):  # a bound on the statement's parameters
        found = conn.execute(select(resource.c.resource_type, resource.c.resource_id).where(
            tuple_(resource.c.resource_type, resource.c.resource_id).in_(keys[start:start + _KEYS_A_READ])))
        existing.update((row.resource_type, row.resource_id) for row in found)
    new = [(e, key) for e, key in zip(writes, keys, strict=True) if key not in existing]
    if len(new) < 2:
        return {}
    last_updated = instant_text(now_us())
    last_updated_us = parse_instant_us(last_updated)  # as the one-by-one way stores it: read back from the text
    stored = [with_meta(e.resource or {}, 1, last_updated) for e, _ in new]
    rows = [{"resource_type": rtype, "resource_id": rid, "version_id": 1, "deleted": False,
             "last_updated_us": last_updated_us, "content": dumps(res)}
            for (_, (rtype, rid)), res in zip(new, stored, strict=True)]
    try:
        with conn.begin_nested():
            conn.execute(insert(resource), rows)
            conn.execute(insert(version), rows)
            write_new_indexes(conn, tables, stored)
    except IntegrityError:
        return {}
    return {e.index: response_entry("201 Created", res, base_url) for (e, _), res in zip(new, stored, strict=True)}
