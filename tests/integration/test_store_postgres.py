"""The embedded FHIR store on a real PostgreSQL server (psycopg 3).

Uses the local cluster (started if needed) and this session's throwaway database
(``tests/support/postgres.py``). Covers what only PostgreSQL does: the schema created by
``metadata.create_all`` in a fresh database, row locks that make concurrent writers of one
resource wait for each other, and several independent engines (one per gunicorn worker)
writing the same resources.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import sqlalchemy as sa

from gateway.store import make_store
from gateway.store.sql import SqlStore
from netliver.settings import Settings
from tests.support import postgres

pytestmark = pytest.mark.integration


@pytest.fixture
def pg_url(request: pytest.FixtureRequest) -> Iterator[str]:
    yield postgres.emptied_session_database(request.config)


def observation(oid: str, value: float) -> dict[str, Any]:
    return {"resourceType": "Observation", "id": oid, "status": "final", "code": {"text": "bilirubin"},
            "subject": {"reference": "Patient/p1"}, "valueQuantity": {"value": value, "unit": "mg/dL"}}


def test_the_session_database_is_a_throwaway_one(pg_url: str) -> None:
    name = sa.engine.make_url(pg_url).database or ""
    assert name.startswith("netliver_test_")
    store = make_store(Settings(database_url=pg_url))
    assert isinstance(store, SqlStore)
    try:
        assert store.engine.dialect.name == "postgresql"
        assert store.engine.dialect.driver == "psycopg"
        tables = set(sa.inspect(store.engine).get_table_names())
        assert {"fhir_resource", "fhir_resource_version", "fhir_search_token", "fhir_search_reference"} <= tables
        index_names = {ix["name"] for ix in sa.inspect(store.engine).get_indexes("fhir_search_token")}
        assert "ix_fhir_search_token_lookup" in index_names
        assert store.health() == {"status": "pass", "detail": "postgresql store reachable and writable"}
    finally:
        store.close()


def test_a_writer_waits_for_the_row_lock_of_another(pg_url: str) -> None:
    store = SqlStore(pg_url)
    try:
        store.put(observation("locked", 1.0))
        holding = threading.Event()
        finished: list[float] = []
        second_version: list[str] = []

        def second_writer() -> None:
            holding.wait(5)
            stored, _ = store.put(observation("locked", 3.0))
            finished.append(time.monotonic())
            second_version.append(stored["meta"]["versionId"])

        thread = threading.Thread(target=second_writer)
        thread.start()
        with store.begin() as conn:
            store.put(observation("locked", 2.0), conn=conn)  # takes the row lock
            holding.set()
            time.sleep(0.5)
            released = time.monotonic()
        thread.join(10)
        assert finished and finished[0] >= released  # it waited for the commit
        assert second_version == ["3"]
        assert store.read("Observation", "locked")["valueQuantity"]["value"] == 3.0
    finally:
        store.close()


def test_independent_engines_race_on_the_same_resources(pg_url: str) -> None:
    workers = [SqlStore(pg_url) for _ in range(3)]
    barrier = threading.Barrier(9)

    def write(n: int) -> None:
        barrier.wait()
        workers[n % 3].put(observation("shared", float(n)))
        workers[n % 3].put(observation(f"same-{n % 2}", 5.0))

    try:
        with ThreadPoolExecutor(9) as pool:
            list(pool.map(write, range(9)))
        history = workers[0].history("Observation", "shared")["entry"]
        assert [e["response"]["etag"] for e in history] == [f'W/"{n}"' for n in range(9, 0, -1)]
        for n in range(2):
            assert len(workers[1].history("Observation", f"same-{n}")["entry"]) == 1
        with workers[2].engine.connect() as conn:
            versions = conn.execute(sa.text(
                "SELECT count(*) FROM fhir_resource_version WHERE resource_id = 'shared'")).scalar_one()
            current = conn.execute(sa.text(
                "SELECT count(*) FROM fhir_resource WHERE resource_id = 'shared'")).scalar_one()
        assert (versions, current) == (9, 1)
    finally:
        for worker in workers:
            worker.close()


def test_workers_starting_at_once_on_an_empty_database_all_start() -> None:
    postgres.ensure_running()
    name = postgres.create_database()
    url = postgres.database_url(name)
    barrier = threading.Barrier(6)

    def start(_: int) -> str:
        barrier.wait()
        store = SqlStore(url)
        try:
            return str(store.health()["status"])
        finally:
            store.close()

    try:
        with ThreadPoolExecutor(6) as pool:
            assert list(pool.map(start, range(6))) == ["pass"] * 6
    finally:
        postgres.drop_database(name)
