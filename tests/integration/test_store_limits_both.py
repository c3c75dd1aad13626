"""The same records are accepted and refused by the SQLite and the PostgreSQL store: the index
limits are checked before either writes (PostgreSQL refuses over-wide values, SQLite stores
them), and an out-of-range version id is the same 400 on both."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

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
