"""Search as FHIR R4 §3.1.1 describes it, on every store (SQLite, PostgreSQL, upstream): date
prefixes, category, :missing, chaining, _include/_revinclude, _summary, _elements, _sort and
_total, each both ways."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.store.base import FhirStore
from tests.unit.gateway import test_store_behaviour as behaviour
from tests.unit.gateway.test_store_behaviour import (
    GATEWAY_BASE,
    expressions,
    fhir_error,
    observation,
)

store = behaviour.store  # SQLite, PostgreSQL and upstream
LAB = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "laboratory"}]}
IMAGING = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "imaging"}]}


def _ids(bundle: dict[str, Any], mode: str = "match") -> list[str]:
    return [e["resource"]["id"] for e in bundle.get("entry", []) if e["search"]["mode"] == mode]


def _find(store: FhirStore, rtype: str, *params: tuple[str, str]) -> dict[str, Any]:
    return store.search(rtype, list(params), GATEWAY_BASE)


@pytest.fixture
def filled(store: FhirStore) -> FhirStore:
    store.put({"resourceType": "Patient", "id": "p1", "identifier": [{"system": "urn:mrn", "value": "M-1"}],
               "name": [{"family": "Müller", "given": ["Anna"]}], "birthDate": "1960-05-01", "gender": "female"})
    store.put({"resourceType": "Patient", "id": "p2", "identifier": [{"system": "urn:mrn", "value": "M-2"}],
               "name": [{"family": "Martin"}], "birthDate": "1971", "gender": "male"})
    store.put(observation("o1", patient="p1", value=1.0, effectiveDateTime="2026-01-10", category=[LAB],
                          note=[{"text": "fasting"}]))
    store.put(observation("o2", patient="p1", value=3.0, effectiveDateTime="2026-02-10T08:30:00Z", category=[IMAGING]))
    store.put(observation("o3", patient="p2", value=2.0,
                          effectivePeriod={"start": "2026-03-01", "end": "2026-03-05"}))
    store.put({"resourceType": "Provenance", "id": "prov1", "recorded": "2026-02-11T00:00:00Z",
               "target": [{"reference": "Observation/o2"}], "agent": [{"who": {"display": "test"}}]})
    return store


@pytest.mark.parametrize(("value", "expected"), [
    ("2026-01-10", {"o1"}), ("2026-01", {"o1"}), ("2026", {"o1", "o2", "o3"}),
    ("ge2026-02-10", {"o2", "o3"}), ("gt2026-02-10", {"o3"}), ("lt2026-02-01", {"o1"}),
    ("le2026-02-10", {"o1", "o2"}), ("ne2026-01-10", {"o2", "o3"}), ("sa2026-02-28", {"o3"}),
    ("eb2026-02-01", {"o1"}), ("2026-03-02", set()), ("ge2026-03-02", {"o3"}),
])
def test_date_prefixes_on_effective_instants_and_periods(filled: FhirStore, value: str, expected: set[str]) -> None:
    assert set(_ids(_find(filled, "Observation", ("date", value)))) == expected


def test_category_token_and_missing(filled: FhirStore) -> None:
    assert _ids(_find(filled, "Observation", ("category", "laboratory"))) == ["o1"]
    assert _ids(_find(filled, "Observation", ("category", f"{IMAGING['coding'][0]['system']}|imaging"))) == ["o2"]
    assert _ids(_find(filled, "Observation", ("category:missing", "true"))) == ["o3"]
    assert set(_ids(_find(filled, "Observation", ("category:missing", "false")))) == {"o1", "o2"}


def test_chained_subject_identifier(filled: FhirStore) -> None:
    found = _find(filled, "Observation", ("subject:Patient.identifier", "urn:mrn|M-1"))
    assert set(_ids(found)) == {"o1", "o2"}
    assert _ids(_find(filled, "Observation", ("patient.identifier", "urn:mrn|M-2"))) == ["o3"]
    assert _ids(_find(filled, "Observation", ("subject:Patient.identifier", "urn:mrn|M-9"))) == []
    err = fhir_error(filled.search, "Observation", [("subject:Patient.colour", "x")], GATEWAY_BASE)
    assert err.status == 400 and expressions(err) == ["subject:Patient.colour"]


def test_include_and_revinclude(filled: FhirStore) -> None:
    found = _find(filled, "Observation", ("_id", "o2"), ("_include", "Observation:subject"),
                  ("_revinclude", "Provenance:target"))
    assert _ids(found) == ["o2"]
    assert sorted(_ids(found, "include")) == ["p1", "prov1"]
    plain = _find(filled, "Observation", ("_id", "o2"))
    assert _ids(plain, "include") == []
    err = fhir_error(filled.search, "Observation", [("_include", "Observation:colour")], GATEWAY_BASE)
    assert err.status == 400 and expressions(err) == ["_include"]


def test_summary_count_true_and_data_and_elements(filled: FhirStore) -> None:
    counted = _find(filled, "Observation", ("_summary", "count"))
    assert counted["total"] == 3 and not counted.get("entry")
    summary = _find(filled, "Observation", ("_id", "o1"), ("_summary", "true"))["entry"][0]["resource"]
    assert "note" not in summary and summary["status"] == "final"
    assert any(t["code"] == "SUBSETTED" for t in summary["meta"]["tag"])
    data = _find(filled, "Observation", ("_id", "o1"), ("_summary", "data"))["entry"][0]["resource"]
    assert data["note"] == [{"text": "fasting"}]
    picked = _find(filled, "Observation", ("_id", "o1"), ("_elements", "status,effective"))["entry"][0]["resource"]
    assert set(picked) == {"resourceType", "id", "meta", "status", "effectiveDateTime"}
    whole = _find(filled, "Observation", ("_id", "o1"))["entry"][0]["resource"]
    assert "note" in whole and not whole["meta"].get("tag")


def test_sort_on_declared_parameters(filled: FhirStore) -> None:
    assert _ids(_find(filled, "Observation", ("_sort", "date"))) == ["o1", "o2", "o3"]
    assert _ids(_find(filled, "Observation", ("_sort", "-date"))) == ["o3", "o2", "o1"]
    assert _ids(_find(filled, "Patient", ("_sort", "birthdate"))) == ["p1", "p2"]
    assert _ids(_find(filled, "Patient", ("_sort", "-family"))) == ["p1", "p2"]
    assert _ids(_find(filled, "Observation", ("_sort", "category"), ("_count", "3")))[-1] == "o3"


def test_total_values(filled: FhirStore) -> None:
    assert _find(filled, "Observation", ("_total", "accurate"))["total"] == 3
    err = fhir_error(filled.search, "Observation", [("_total", "lots")], GATEWAY_BASE)
    assert err.status == 400 and expressions(err) == ["_total"]


def test_total_none_leaves_the_count_out_and_pages_by_next_links(filled: FhirStore) -> None:
    first = _find(filled, "Observation", ("_total", "none"), ("_count", "2"), ("_sort", "date"))
    second = _find(filled, "Observation", ("_total", "none"), ("_count", "2"), ("_offset", "2"), ("_sort", "date"))
    assert _ids(first) == ["o1", "o2"] and _ids(second) == ["o3"]
    after_first = [link["url"] for link in first["link"] if link["relation"] == "next"]
    assert after_first  # a full page: there may be more
    assert not [link for link in second["link"] if link["relation"] == "next"]  # a short page ends it
    if type(filled).__name__ != "UpstreamStore":  # an upstream server may count anyway
        assert "total" not in first and "total" not in second
        assert "_total=none" in after_first[0]
    assert _find(filled, "Observation", ("_count", "2"))["total"] == 3  # counted unless told otherwise


def test_strings_match_from_the_start_ignoring_case_and_accents(filled: FhirStore) -> None:
    assert _ids(_find(filled, "Patient", ("name", "mul"))) == ["p1"]
    assert set(_ids(_find(filled, "Patient", ("family", "M")))) == {"p1", "p2"}
    assert _ids(_find(filled, "Patient", ("name:exact", "muller"))) == ["p1"]
    assert _ids(_find(filled, "Patient", ("name:exact", "mull"))) == []
    assert _ids(_find(filled, "Patient", ("given:contains", "nn"))) == ["p1"]
    assert _ids(_find(filled, "Patient", ("gender", "male"))) == ["p2"]
    assert _ids(_find(filled, "Patient", ("birthdate", "lt1970"))) == ["p1"]
