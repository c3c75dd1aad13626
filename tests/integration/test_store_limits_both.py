"""The same records are accepted and refused by the SQLite and the PostgreSQL store: the index
limits are checked before either writes (PostgreSQL refuses over-wide values, SQLite stores
them), and an out-of-range version id is the same 400 on both."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from gateway.store.indexing import MAX_REF_TYPE_CHARS, MAX_TOKEN_CHARS
from gateway.store.sql import MAX_VERSION_ID, SqlStore
from netliver.fhir.outcome import FhirError
from tests.support import postgres

pytestmark = pytest.mark.integration


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SqlStore]:
    url = (f"sqlite:///{tmp_path / 'limits.db'}" if request.param == "sqlite"
           else postgres.emptied_session_database(request.config))
    sql = SqlStore(url)
    sql.create_all()
    try:
        yield sql
    finally:
        sql.close()


def _patient(value: str) -> dict[str, Any]:
    return {"resourceType": "Patient", "id": "p1", "identifier": [{"system": "urn:mrn", "value": value}]}


def _observation(subject_type: str) -> dict[str, Any]:
    return {"resourceType": "Observation", "id": "o1", "status": "final", "code": {"text": "x"},
            "subject": {"reference": f"{subject_type}/1"}}


@pytest.mark.parametrize(("ok", "refused"), [
    (_patient("x" * MAX_TOKEN_CHARS), _patient("x" * (MAX_TOKEN_CHARS + 1))),
    (_observation("P" + "a" * (MAX_REF_TYPE_CHARS - 1)), _observation("P" + "a" * MAX_REF_TYPE_CHARS)),
])
def test_both_stores_accept_and_refuse_the_same_records(store: SqlStore, ok: dict[str, Any],
                                                        refused: dict[str, Any]) -> None:
    store.put(ok)
    with pytest.raises(FhirError) as err:
        store.put(refused)
    assert err.value.status == 400
    assert store.read(ok["resourceType"], ok["id"])["meta"]["versionId"] == "1"


def test_version_ids_beyond_the_column_are_the_same_400(store: SqlStore) -> None:
    store.put(_patient("1"))
    for version in (str(MAX_VERSION_ID + 1), str(2**63)):
        with pytest.raises(FhirError) as err:
            store.vread("Patient", "p1", version)
        assert err.value.status == 400


def test_health_fails_when_the_database_takes_reads_but_no_writes(tmp_path: Path,
                                                                  request: pytest.FixtureRequest) -> None:
    path = tmp_path / "health.db"
    writable = SqlStore(f"sqlite:///{path}")
    writable.create_all()
    writable.put(_patient("1"))
    assert writable.health()["status"] == "pass"
    writable.close()
    # The same file opened read-only: reads work, writes do not, so the store is not healthy.
    read_only = SqlStore(f"sqlite:///file:{path}?mode=ro&uri=true")
    try:
        assert read_only.read("Patient", "p1")["id"] == "p1"
        assert read_only.health()["status"] == "fail"
    finally:
        read_only.close()
    # PostgreSQL switched to read-only (a failover onto a replica, a full disk's read-only mode).
    url = postgres.emptied_session_database(request.config)
    pg = SqlStore(url)
    pg.create_all()
    name = sa.engine.make_url(url).database
    try:
        with pg.engine.connect() as conn:
            conn.execute(sa.text(f'ALTER DATABASE "{name}" SET default_transaction_read_only = on'))
            conn.commit()
        pg.engine.dispose()
        assert pg.health()["status"] == "fail"
        # Writes are an outage (503), not a 500.
        with pytest.raises(FhirError) as err:
            pg.put(_patient("2"))
        assert err.value.status == 503
    finally:
        with pg.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(sa.text("SET default_transaction_read_only = off"))
            conn.execute(sa.text(f'ALTER DATABASE "{name}" SET default_transaction_read_only = off'))
        pg.engine.dispose()
        assert pg.health()["status"] == "pass"
        pg.close()
