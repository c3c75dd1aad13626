"""The embedded SQL store: durability, concurrency, shared transactions, SQLite settings.

Parametrised over SQLite (a file in a temporary folder) and PostgreSQL (the local server, one
throwaway database per session, marked ``integration``).
"""

from __future__ import annotations

import json
import multiprocessing
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from gateway.store import make_store
from gateway.store.sql import SqlStore
from gateway.store.upstream import UpstreamStore
from netliver.fhir.outcome import FhirError
from netliver.settings import Settings
from tests.support import postgres

GATEWAY_BASE = "http://gateway.test/fhir"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.integration)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/store.db"
        return
    yield postgres.emptied_session_database(request.config)


@pytest.fixture
def store(database_url: str) -> Iterator[SqlStore]:
    sql = SqlStore(database_url)
    yield sql
    sql.close()


def observation(oid: str, value: float = 1.0) -> dict[str, Any]:
    return {"resourceType": "Observation", "id": oid, "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "1975-2"}]},
            "subject": {"reference": "Patient/p1"}, "valueQuantity": {"value": value, "unit": "mg/dL"}}


def status_of(fn: Any, *args: Any) -> int:
    """The HTTP status of the FhirError ``fn(*args)`` raises."""
    with pytest.raises(FhirError) as info:
        fn(*args)
    return info.value.status


def versions(store: SqlStore, rtype: str, rid: str) -> list[str]:
    return [e["response"]["etag"] for e in store.history(rtype, rid)["entry"]]


def test_survives_close_and_reopen(database_url: str) -> None:
    first = SqlStore(database_url)
    stored, _ = first.put(observation("o1", 2.0))
    first.put(observation("o2"))
    first.delete("Observation", "o2")
    first.close()
    reopened = SqlStore(database_url)
    try:
        assert reopened.read("Observation", "o1") == stored
        assert status_of(reopened.read, "Observation", "o2") == 410
        again, created = reopened.put(observation("o1", 2.0))
        assert created is False and again["meta"]["versionId"] == "1"
        assert reopened.search("Observation", [("patient", "p1")], GATEWAY_BASE)["total"] == 1
    finally:
        reopened.close()


def test_stores_the_callers_json_not_a_model_round_trip(store: SqlStore) -> None:
    # Key order, an extension with a decimal, and an empty-looking but valid text are kept as sent.
    text = ('{"resourceType":"Observation","id":"o1","status":"final","valueQuantity":'
            '{"value":0.30000000000000004,"unit":"%"},"code":{"text":"lung shunt"},'
            '"extension":[{"url":"urn:x","valueDecimal":1e-07}]}')
    sent = json.loads(text)
    store.put(json.loads(text))
    read = store.read("Observation", "o1")
    body = {k: v for k, v in read.items() if k != "meta"}
    assert list(body) == list(sent)
    assert json.dumps(body) == json.dumps(sent)


def test_concurrent_identical_puts_make_one_version(store: SqlStore) -> None:
    barrier = threading.Barrier(8)

    def write(_: int) -> tuple[str, bool]:
        barrier.wait()
        stored, created = store.put(observation("same"))
        return stored["meta"]["versionId"], created

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(write, range(8)))
    assert {version for version, _ in results} == {"1"}
    assert sum(created for _, created in results) == 1
    assert versions(store, "Observation", "same") == ['W/"1"']


def test_concurrent_different_puts_make_contiguous_versions(store: SqlStore) -> None:
    barrier = threading.Barrier(6)

    def write(n: int) -> str:
        barrier.wait()
        stored, _ = store.put(observation("race", float(n)))
        return str(stored["meta"]["versionId"])

    with ThreadPoolExecutor(6) as pool:
        got = sorted(pool.map(write, range(6)), key=int)
    assert got == [str(n) for n in range(1, 7)]
    assert versions(store, "Observation", "race") == [f'W/"{n}"' for n in range(6, 0, -1)]
    final = store.read("Observation", "race")
    # the current row is the newest version
    assert final == store.vread("Observation", "race", "6")


def _worker(database_url: str, rounds: int) -> None:
    store = SqlStore(database_url)
    for _ in range(rounds):
        for n in range(4):
            store.put(observation(f"shared-{n}"))
    store.close()


def test_concurrent_processes_like_gunicorn_workers(database_url: str) -> None:
    SqlStore(database_url).close()  # tables exist before the workers race
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_worker, args=(database_url, 5)) for _ in range(3)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(120)
    assert [proc.exitcode for proc in procs] == [0, 0, 0]
    store = SqlStore(database_url)
    try:
        for n in range(4):
            assert versions(store, "Observation", f"shared-{n}") == ['W/"1"']
    finally:
        store.close()


def test_begin_shares_one_transaction_with_another_modules_rows(store: SqlStore) -> None:
    jobs = sa.Table("test_store_job", store.metadata, sa.Column("id", sa.String(64), primary_key=True))
    store.create_all()
    with store.begin() as conn:
        store.put(observation("with-job"), conn=conn)
        conn.execute(sa.insert(jobs).values(id="j1"))
    assert store.read("Observation", "with-job")["id"] == "with-job"

    with pytest.raises(RuntimeError), store.begin() as conn:
        store.put(observation("rolled-back"), conn=conn)
        store.transaction({"resourceType": "Bundle", "type": "transaction", "entry": [
            {"resource": observation("rolled-back-too"),
             "request": {"method": "PUT", "url": "Observation/rolled-back-too"}}]}, GATEWAY_BASE, conn=conn)
        conn.execute(sa.insert(jobs).values(id="j2"))
        raise RuntimeError("the job record could not be finished")
    for rid in ("rolled-back", "rolled-back-too"):
        assert status_of(store.read, "Observation", rid) == 404
    with store.engine.connect() as conn:
        assert conn.execute(sa.select(jobs.c.id)).scalars().all() == ["j1"]


def test_a_failed_transaction_inside_begin_leaves_nothing(store: SqlStore) -> None:
    bad = observation("bad")
    bad["status"] = ["final"]
    with pytest.raises(FhirError), store.begin() as conn:
        store.put(observation("first"), conn=conn)
        store.transaction({"resourceType": "Bundle", "type": "transaction", "entry": [
            {"resource": bad, "request": {"method": "PUT", "url": "Observation/bad"}}]}, GATEWAY_BASE, conn=conn)
    assert status_of(store.read, "Observation", "first") == 404


def test_health_names_the_backend(store: SqlStore) -> None:
    health = store.health()
    assert health["status"] == "pass"
    assert store.engine.dialect.name in health["detail"]


def test_sqlite_runs_in_wal_mode_with_a_busy_timeout(tmp_path: Path) -> None:
    store = SqlStore(f"sqlite:///{tmp_path}/nested/dir/store.db")  # folders are created
    try:
        with store.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30000
    finally:
        store.close()


def test_unreachable_database_is_503_with_retry_after() -> None:
    url = "postgresql+psycopg://postgres@127.0.0.1:1/none"
    with pytest.raises(FhirError) as info:
        SqlStore(url)
    assert info.value.status == 503
    assert info.value.headers.get("Retry-After")


def test_health_fails_when_the_database_goes_away(tmp_path: Path) -> None:
    store = SqlStore(f"sqlite:///{tmp_path}/store.db")
    store.engine.dispose()
    store.engine = sa.create_engine("postgresql+psycopg://postgres@127.0.0.1:1/none")
    health = store.health()
    assert health["status"] == "fail"
    with pytest.raises(FhirError) as info:
        store.read("Observation", "o1")
    assert info.value.status == 503 and info.value.headers.get("Retry-After")


def test_make_store_follows_the_settings(tmp_path: Path) -> None:
    embedded = make_store(Settings(database_url=f"sqlite:///{tmp_path}/s.db"))
    assert isinstance(embedded, SqlStore)
    embedded.close()  # type: ignore[attr-defined]
    upstream = make_store(Settings(fhir_upstream_url="http://127.0.0.1:1/fhir"))
    assert isinstance(upstream, UpstreamStore)
    assert upstream.health()["status"] == "fail"
    with pytest.raises(FhirError) as info:
        upstream.read("Patient", "p1")
    assert info.value.status == 503 and info.value.headers.get("Retry-After")


def test_a_failed_write_in_a_shared_transaction_leaves_nothing_even_if_caught(store: SqlStore) -> None:
    bad_second = observation("second")
    bad_second["status"] = 5
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": observation("first"), "request": {"method": "PUT", "url": "Observation/first"}},
        {"resource": observation("third"), "request": {"method": "PUT", "url": "Observation/third",
                                                        "ifMatch": 'W/"4"'}}]}
    with store.engine.begin() as conn:  # a plain engine transaction, as another module opens it
        store.put(observation("kept"), conn=conn)
        with pytest.raises(FhirError) as info:
            store.transaction(bundle, GATEWAY_BASE, conn=conn)
        assert info.value.status == 412
        with pytest.raises(FhirError):
            store.put(bad_second, conn=conn)
    assert store.read("Observation", "kept")["id"] == "kept"
    assert status_of(store.read, "Observation", "first") == 404
    assert status_of(store.read, "Observation", "third") == 404


def test_workers_starting_at_once_on_a_new_sqlite_file(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/fresh.db"
    barrier = threading.Barrier(6)

    def start(n: int) -> str:
        barrier.wait()
        store = SqlStore(url)
        try:
            store.put(observation(f"o{n}"))
            return str(store.health()["status"])
        finally:
            store.close()

    with ThreadPoolExecutor(6) as pool:
        assert list(pool.map(start, range(6))) == ["pass"] * 6


def test_an_index_built_for_other_search_parameters_is_rebuilt_at_start(tmp_path: Path) -> None:
    """A database written before a parameter existed answers it after the next start; an index
    whose fingerprint is current is not rebuilt."""
    from sqlalchemy import delete as sql_delete

    url = f"sqlite:///{tmp_path}/old.db"
    store = SqlStore(url)
    store.put({"resourceType": "Observation", "id": "o1", "status": "final", "code": {"text": "x"},
               "category": [{"coding": [{"code": "laboratory"}]}]})
    token = store._tables["token"]

    def forget_category() -> None:
        with store.engine.begin() as conn:
            conn.execute(sql_delete(token).where(token.c.param == "category"))

    forget_category()
    store.close()
    current = SqlStore(url)  # fingerprint unchanged: nothing rebuilt
    assert current.search("Observation", [("category", "laboratory")], "http://x/fhir")["total"] == 0
    with current.engine.begin() as conn:
        conn.execute(sql_delete(current._tables["index_meta"]))
    current.close()
    rebuilt = SqlStore(url)
    assert rebuilt.search("Observation", [("category", "laboratory")], "http://x/fhir")["total"] == 1
    rebuilt.close()


def _index_deletes(store: SqlStore, write: Any) -> int:
    """The DELETE statements on the search index tables that ``write()`` runs."""
    seen: list[str] = []

    def note(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if statement.lstrip().upper().startswith("DELETE") and "fhir_search_" in statement:
            seen.append(statement)

    sa.event.listen(store.engine, "before_cursor_execute", note)
    try:
        write()
    finally:
        sa.event.remove(store.engine, "before_cursor_execute", note)
    return len(seen)


def test_a_created_resource_writes_its_index_without_deleting_first_and_an_update_replaces_it(
        store: SqlStore) -> None:
    """A resource's first version has no index rows to replace (four statements fewer each);
    a later version replaces those that change (here the references only), a delete all of
    them, so searches find the current version only."""
    first = {"resourceType": "Observation", "id": "ix-1", "status": "final", "code": {"text": "a"},
             "subject": {"reference": "Patient/p1"}}
    assert _index_deletes(store, lambda: store.put(first)) == 0
    assert _index_deletes(store, lambda: store.put({**first, "subject": {"reference": "Patient/p2"}})) == 1
    for patient, found in (("Patient/p1", 0), ("Patient/p2", 1)):
        assert store.search("Observation", [("subject", patient)], GATEWAY_BASE)["total"] == found
    assert _index_deletes(store, lambda: store.delete("Observation", "ix-1")) == 4
    assert store.search("Observation", [("subject", "Patient/p2")], GATEWAY_BASE)["total"] == 0
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": f"urn:uuid:{n}", "resource": {**first, "id": f"ix-t{n}"},
         "request": {"method": "PUT", "url": f"Observation/ix-t{n}"}} for n in range(3)]}
    assert _index_deletes(store, lambda: store.transaction(bundle, GATEWAY_BASE)) == 0
    assert store.search("Observation", [("subject", "Patient/p1")], GATEWAY_BASE)["total"] == 3
