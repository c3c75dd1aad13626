"""Upstream mode against an independent FHIR engine (Medplum's router and in-memory repository):
repeated write-backs write nothing, large write-backs go in chunks the engine accepts (Provenance
last), paging reaches every result with and without the engine's next links, searches the
gateway declares work there, and the engine's OperationOutcomes are relayed whole."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest

from gateway.store.upstream import UpstreamStore
from gateway.writeback import write_results
from netliver.fhir.outcome import FhirError
from tests.support.fhir_engine import FhirEngine, fhir_engine_fixture

GATEWAY = "http://gateway.test/fhir"
engine_with_links = fhir_engine_fixture(scope="module")
engine_without_links = fhir_engine_fixture(scope="module", next_links=False)


@pytest.fixture
def engine(engine_with_links: FhirEngine) -> FhirEngine:
    engine_with_links.reset()
    return engine_with_links


def _observation(i: int, value: Any = 120.0) -> dict[str, Any]:
    return {"resourceType": "Observation", "id": f"obs-{i}", "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "1975-2"}]},
            "subject": {"reference": "Patient/p1"}, "valueQuantity": {"value": value, "unit": "Gy"},
            "effectiveDateTime": f"2026-01-{1 + i % 28:02d}"}


def _provenance(targets: list[dict[str, Any]], recorded: str) -> dict[str, Any]:
    return {"resourceType": "Provenance", "id": "prov-1", "recorded": recorded,
            "target": [{"reference": f"{r['resourceType']}/{r['id']}"} for r in targets],
            "agent": [{"who": {"display": "netliver test"}}]}


def _versions(store: UpstreamStore, resources: list[dict[str, Any]]) -> list[str]:
    return [store.read(r["resourceType"], r["id"])["meta"]["versionId"] for r in resources]


def test_a_repeated_write_back_writes_nothing(engine: FhirEngine) -> None:
    """The engine stores 120.0 as 120; the comparison is by value, so the repeat is no change."""
    store = UpstreamStore(engine.base_url)
    results = [_observation(i, value) for i, value in enumerate([120.0, 0.10, 3, 2.50])]
    assert write_results(store, [*results, _provenance(results, "2026-01-01T00:00:00Z")], GATEWAY)
    before = _versions(store, [*results, {"resourceType": "Provenance", "id": "prov-1"}])
    again = write_results(store, [*results, _provenance(results, "2026-01-02T00:00:00Z")], GATEWAY)
    assert again == []
    assert _versions(store, [*results, {"resourceType": "Provenance", "id": "prov-1"}]) == before
    for res in results:
        stored, created = store.put(dict(res))
        assert created is False and stored["meta"]["versionId"] == before[results.index(res)]


def test_a_large_write_back_goes_in_chunks_with_provenance_last(engine: FhirEngine) -> None:
    results = [_observation(i) for i in range(120)]
    provenance = _provenance(results, "2026-01-01T00:00:00Z")
    whole = UpstreamStore(engine.base_url, transaction_size=500)
    with pytest.raises(FhirError) as refused:  # the engine's cap: 50 updates per transaction
        write_results(whole, [*results, provenance], GATEWAY)
    assert refused.value.status == 400
    chunked = UpstreamStore(engine.base_url, transaction_size=50)
    written = write_results(chunked, [*results, provenance], GATEWAY)
    assert len(written) == 121 and written[-1].startswith("Provenance/prov-1")
    assert chunked.search("Observation", [("_summary", "count")], GATEWAY)["total"] == 120


def _follow(store: UpstreamStore, params: list[tuple[str, str]]) -> list[str]:
    seen: list[str] = []
    pages = 0
    while params is not None and pages < 20:
        page = store.search("Patient", params, GATEWAY)
        seen += [e["resource"]["id"] for e in page.get("entry", [])]
        nxt = next((link["url"] for link in page.get("link", []) if link["relation"] == "next"), None)
        assert nxt is None or nxt.startswith(GATEWAY + "/Patient?")
        params = parse_qsl(urlsplit(nxt).query) if nxt else None  # type: ignore[assignment]
        pages += 1
    return seen


@pytest.mark.parametrize("links", [True, False])
def test_paging_reaches_every_result(engine_with_links: FhirEngine, engine_without_links: FhirEngine,
                                     links: bool) -> None:
    eng = engine_with_links if links else engine_without_links
    eng.reset()
    store = UpstreamStore(eng.base_url, transaction_size=50)
    patients = [{"resourceType": "Patient", "id": f"pg-{i:02d}"} for i in range(57)]
    write_results(store, patients, GATEWAY)
    seen = _follow(store, [("_count", "10"), ("_sort", "_id")])
    assert sorted(seen) == sorted(p["id"] for p in patients) and len(seen) == 57


@pytest.fixture
def filled(engine: FhirEngine) -> Iterator[UpstreamStore]:
    store = UpstreamStore(engine.base_url)
    store.put({"resourceType": "Patient", "id": "p1", "identifier": [{"system": "urn:mrn", "value": "M-1"}]})
    store.put({**_observation(1), "category": [{"coding": [{"code": "laboratory"}]}]})
    store.put(_observation(2))
    store.put(_provenance([_observation(1)], "2026-02-01T00:00:00Z"))
    yield store


@pytest.mark.parametrize(("params", "matches", "included"), [
    ([("date", "ge2026-01-04")], 0, 0), ([("date", "ge2026-01-03")], 1, 0), ([("date", "le2026-01-02")], 1, 0),
    ([("date", "lt2026-01-04")], 2, 0), ([("category", "laboratory")], 1, 0),
    ([("category:missing", "true")], 1, 0), ([("subject:Patient.identifier", "urn:mrn|M-1")], 2, 0),
    ([("_include", "Observation:subject")], 2, 1), ([("_revinclude", "Provenance:target")], 2, 1),
    ([("_sort", "-date")], 2, 0), ([("_total", "accurate")], 2, 0),
])
def test_declared_searches_work_on_the_engine(filled: UpstreamStore, params: list[tuple[str, str]],
                                              matches: int, included: int) -> None:
    found = filled.search("Observation", params, GATEWAY)
    modes = [e.get("search", {}).get("mode") for e in found.get("entry", [])]
    assert (modes.count("match"), modes.count("include")) == (matches, included)


def test_summary_and_elements_are_applied_even_when_the_engine_ignores_them(filled: UpstreamStore) -> None:
    assert filled.search("Observation", [("_summary", "count")], GATEWAY)["total"] == 2
    picked = filled.search("Observation", [("_elements", "status")], GATEWAY)["entry"][0]["resource"]
    assert set(picked) == {"resourceType", "id", "meta", "status"}
    assert filled.search("Patient", [("patient", "Patient/p1")], GATEWAY)["total"] == 1


def test_the_engines_operation_outcome_is_relayed_whole(engine: FhirEngine) -> None:
    store = UpstreamStore(engine.base_url)
    with pytest.raises(FhirError) as missing:
        store.read("Patient", "absent")
    outcome = missing.value.to_fhir()
    assert missing.value.status == 404
    assert outcome["issue"][0]["details"]["text"] and missing.value.diagnostics == outcome["issue"][0]["details"]["text"]
