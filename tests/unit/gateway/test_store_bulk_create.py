"""A transaction's creations are written together (``SqlStore._create_all_new``): the same
resources, versions, index rows and response as one by one, in a number of statements that does
not grow with the resources created; a lost race falls back to the one-by-one way.

Parametrised over SQLite and PostgreSQL (marked ``integration``), as ``test_store_sql``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

import gateway.store.sql_create as sql_create
from gateway.store.sql import SqlStore
from tests.support import postgres

BASE = "http://gateway.test/fhir"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.integration)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SqlStore]:
    url = f"sqlite:///{tmp_path}/store.db" if request.param == "sqlite" else \
        postgres.emptied_session_database(request.config)
    sql = SqlStore(url)
    yield sql
    sql.close()


def observation(oid: str, value: float = 1.0, patient: str = "p1") -> dict[str, Any]:
    return {"resourceType": "Observation", "id": oid, "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "1975-2"}]},
            "subject": {"reference": f"Patient/{patient}"}, "effectiveDateTime": "2026-11-30",
            "valueQuantity": {"value": value, "unit": "mg/dL"}}


def put_bundle(resources: list[dict[str, Any]]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": f"{r['resourceType']}/{r['id']}", "resource": r,
         "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"}} for r in resources]}


def index_rows(store: SqlStore, rid: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every index row of ``Observation/rid``, table by table (sorted, without the keys)."""
    rows: dict[str, list[tuple[Any, ...]]] = {}
    with store.engine.connect() as conn:
        for name in ("token", "reference", "date", "string"):
            table = store._tables[name]
            found = conn.execute(sa.select(table).where(table.c.resource_id == rid)).all()
            rows[name] = sorted(tuple(v for k, v in row._mapping.items() if k not in ("id", "resource_id"))
                                for row in found)
    return rows


def statements(store: SqlStore, fn: Any) -> int:
    count = [0]

    def seen(*_: Any) -> None:
        count[0] += 1

    sa.event.listen(store.engine, "before_cursor_execute", seen)
    try:
        fn()
    finally:
        sa.event.remove(store.engine, "before_cursor_execute", seen)
    return count[0]


def test_creations_together_store_what_one_by_one_stores(store: SqlStore, tmp_path: Path) -> None:
    together = store.transaction(put_bundle([observation(f"o{i}", i) for i in range(4)]), BASE)
    # the same resources, one transaction each (a single creation goes the one-by-one way)
    alone = SqlStore(f"sqlite:///{tmp_path}/alone.db")
    singles = [alone.transaction(put_bundle([observation(f"o{i}", i)]), BASE)["entry"][0] for i in range(4)]
    for i, (entry, single) in enumerate(zip(together["entry"], singles, strict=True)):
        assert entry["response"]["status"] == single["response"]["status"] == "201 Created"
        assert entry["response"]["location"] == f"Observation/o{i}/_history/1"
        assert entry["response"]["etag"] == 'W/"1"'
        stored = store.read("Observation", f"o{i}")
        assert stored["meta"]["versionId"] == "1" and stored["valueQuantity"]["value"] == i
        assert [e["response"]["etag"] for e in store.history("Observation", f"o{i}")["entry"]] == ['W/"1"']
        assert index_rows(store, f"o{i}") == index_rows(alone, f"o{i}")
        assert index_rows(store, f"o{i}")["reference"]  # the subject is indexed
    found = store.search("Observation", [("subject", "Patient/p1")], BASE)
    assert found["total"] == 4
    alone.close()


def test_the_statements_do_not_grow_with_the_creations(store: SqlStore) -> None:
    three = statements(store, lambda: store.transaction(put_bundle([observation(f"a{i}") for i in range(3)]), BASE))
    nine = statements(store, lambda: store.transaction(put_bundle([observation(f"b{i}") for i in range(9)]), BASE))
    assert nine == three  # one by one, each creation took some nine statements


def test_creations_and_updates_in_one_transaction(store: SqlStore) -> None:
    store.put(observation("kept", 1.0))
    store.put(observation("changed", 1.0))
    store.delete("Observation", "gone")  # nothing to delete: no row
    store.put(observation("revived", 1.0))
    store.delete("Observation", "revived")
    answer = store.transaction(put_bundle([observation("new1", 5.0), observation("kept", 1.0),
                                           observation("changed", 2.0), observation("new2", 6.0),
                                           observation("revived", 3.0)]), BASE)
    statuses = [(e["response"]["status"], e["response"]["location"]) for e in answer["entry"]]
    assert statuses == [("201 Created", "Observation/new1/_history/1"), ("200 OK", "Observation/kept/_history/1"),
                        ("200 OK", "Observation/changed/_history/2"), ("201 Created", "Observation/new2/_history/1"),
                        ("201 Created", "Observation/revived/_history/3")]
    assert store.read("Observation", "changed")["valueQuantity"]["value"] == 2.0
    assert store.read("Observation", "revived")["valueQuantity"]["value"] == 3.0


def test_a_creation_raced_by_another_writer_falls_back_one_by_one(store: SqlStore,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Another writer creates one of the resources between the read and the insert: nothing of
    the joint insert stays (its SAVEPOINT), and each resource is written on its own, the raced
    one as an update of the other writer's version."""
    real = sql_create.write_new_indexes

    def raced(conn: sa.Connection, tables: Any, created: Any) -> None:
        real(conn, tables, created)
        raise IntegrityError("INSERT INTO fhir_resource", {}, Exception("duplicate key (raced)"))

    monkeypatch.setattr(sql_create, "write_new_indexes", raced)
    store.put(observation("r1", 1.0))  # the other writer's version, written before the transaction...
    with store.engine.begin() as conn:
        # ...but after the joint insert's read: hide it from that read only
        real_create = SqlStore._create_all_new

        def unseen(self: SqlStore, c: sa.Connection, entries: Any, base_url: str) -> dict[int, Any]:
            return real_create(self, c, [e for e in entries if e.resource_id != "r1"], base_url)

        monkeypatch.setattr(SqlStore, "_create_all_new", unseen)
        answer = store.transaction(put_bundle([observation("r0", 0.0), observation("r1", 9.0),
                                               observation("r2", 2.0)]), BASE, conn=conn)
    assert [e["response"]["location"] for e in answer["entry"]] == [
        "Observation/r0/_history/1", "Observation/r1/_history/2", "Observation/r2/_history/1"]
    for rid, value in (("r0", 0.0), ("r1", 9.0), ("r2", 2.0)):
        assert store.read("Observation", rid)["valueQuantity"]["value"] == value
        # the joint insert's rows did not stay beside the one-by-one writes' (subject and patient once)
        assert [row[1] for row in index_rows(store, rid)["reference"]] == ["patient", "subject"]
    assert [e["response"]["etag"] for e in store.history("Observation", "r0")["entry"]] == ['W/"1"']


def index_statements(store: SqlStore, fn: Any) -> list[str]:
    """The statements ``fn`` sends to the index tables."""
    sent: list[str] = []

    def seen(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if "fhir_search_" in statement:
            sent.append(statement.split()[0].upper())

    sa.event.listen(store.engine, "before_cursor_execute", seen)
    try:
        fn()
    finally:
        sa.event.remove(store.engine, "before_cursor_execute", seen)
    return sent


def test_an_update_rewrites_only_the_index_rows_that_change(store: SqlStore) -> None:
    store.put(observation("u1", 1.0))
    rows = index_rows(store, "u1")
    quiet = observation("u1", 2.0)  # the value is not a search parameter here
    quiet["note"] = [{"text": "checked twice"}]
    assert index_statements(store, lambda: store.put(quiet)) == []
    assert index_rows(store, "u1") == rows
    moved = observation("u1", 2.0, patient="p2")  # subject and patient change; codes and date stay
    assert index_statements(store, lambda: store.put(moved)) == ["DELETE", "INSERT"]
    assert store.search("Observation", [("subject", "Patient/p2")], BASE)["total"] == 1
    assert store.search("Observation", [("subject", "Patient/p1")], BASE)["total"] == 0
    assert index_rows(store, "u1")["token"] == rows["token"]
    store.delete("Observation", "u1")
    assert all(not found for found in index_rows(store, "u1").values())
    store.put(observation("u1", 3.0))  # back after its deletion: every row written again
    assert index_rows(store, "u1") == rows
    assert store.search("Observation", [("subject", "Patient/p1")], BASE)["total"] == 1


def test_a_transaction_creating_more_resources_than_one_read_names(store: SqlStore,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """The rows are read in parts (a bound on a statement's parameters), the creations still
    written together; one already there among them is updated."""
    monkeypatch.setattr(sql_create, "_KEYS_A_READ", 3)
    store.put(observation("m5", 1.0))
    answer = store.transaction(put_bundle([observation(f"m{i}", float(i)) for i in range(8)]), BASE)
    assert [e["response"]["location"] for e in answer["entry"]] == [
        f"Observation/m{i}/_history/{2 if i == 5 else 1}" for i in range(8)]
    assert store.search("Observation", [("subject", "Patient/p1")], BASE)["total"] == 8
