"""Pure parsing of search parameters and index extraction (no database)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.store.bundles import instant_text, plan_bundle, rewrite_references
from gateway.store.indexing import RefRow, TokenRow, index_resource
from gateway.store.search_params import (
    IdCriterion,
    ReferenceCriterion,
    RefValue,
    TokenCriterion,
    TokenValue,
    parse_date_range,
    parse_reference,
    parse_search,
    split_or,
    to_epoch_us,
)
from netliver.fhir.outcome import FhirError


def us(text: str) -> int:
    return to_epoch_us(datetime.fromisoformat(text))


@pytest.mark.parametrize(("value", "start", "end"), [
    ("2026", "2026-01-01T00:00:00+00:00", "2027-01-01T00:00:00+00:00"),
    ("2026-02", "2026-02-01T00:00:00+00:00", "2026-03-01T00:00:00+00:00"),
    ("2026-12", "2026-12-01T00:00:00+00:00", "2027-01-01T00:00:00+00:00"),
    ("2024-02-28", "2024-02-28T00:00:00+00:00", "2024-02-29T00:00:00+00:00"),
    ("2026-03-01T10:15", "2026-03-01T10:15:00+00:00", "2026-03-01T10:16:00+00:00"),
    ("2026-03-01T10:15:30Z", "2026-03-01T10:15:30+00:00", "2026-03-01T10:15:31+00:00"),
    ("2026-03-01T10:15:30.25Z", "2026-03-01T10:15:30.250000+00:00", "2026-03-01T10:15:30.260000+00:00"),
    ("2026-03-01T10:15:30.123456Z", "2026-03-01T10:15:30.123456+00:00", "2026-03-01T10:15:30.123457+00:00"),
    ("2026-03-01T12:15:30+02:00", "2026-03-01T10:15:30+00:00", "2026-03-01T10:15:31+00:00"),
])
def test_date_values_span_their_precision(value: str, start: str, end: str) -> None:
    rng = parse_date_range(value)
    assert (rng.prefix, rng.start_us, rng.end_us) == ("eq", us(start), us(end))


@pytest.mark.parametrize("prefix", ["eq", "ne", "gt", "ge", "lt", "le", "sa", "eb"])
def test_date_prefixes_are_read(prefix: str) -> None:
    assert parse_date_range(f"{prefix}2026-01-01").prefix == prefix


@pytest.mark.parametrize("value", ["xx2026", "ap2026-01-01", "2026-02-30", "26-01-01", "2026-01-01T10", "today"])
def test_bad_dates_are_400(value: str) -> None:
    with pytest.raises(FhirError) as info:
        parse_date_range(value)
    assert info.value.status == 400


@settings(max_examples=50, deadline=None)
@given(st.datetimes(min_value=datetime(1971, 1, 1), max_value=datetime(2200, 1, 1)))
def test_instant_text_round_trips_and_its_range_is_one_microsecond(moment: datetime) -> None:
    epoch_us = to_epoch_us(moment.replace(tzinfo=UTC))
    text = instant_text(epoch_us)
    rng = parse_date_range(text)
    assert rng.start_us == epoch_us
    assert rng.end_us == epoch_us + 1


@settings(max_examples=50, deadline=None)
@given(st.dates(min_value=datetime(1900, 1, 1).date(), max_value=datetime(2200, 12, 31).date()))
def test_a_day_contains_exactly_its_own_instants(day: object) -> None:
    rng = parse_date_range(str(day))
    start = datetime.fromisoformat(f"{day}T00:00:00+00:00")
    assert rng.start_us == to_epoch_us(start)
    assert rng.end_us == to_epoch_us(start + timedelta(days=1))


def test_split_or_respects_escapes() -> None:
    assert split_or("a,b\\,c,d") == ["a", "b\\,c", "d"]
    assert split_or("") == [""]


@pytest.mark.parametrize(("text", "expected"), [
    ("Patient/p1", RefValue("Patient", "p1")),
    ("https://ehr.example/fhir/Patient/p1", RefValue("Patient", "p1")),
    ("Patient/p1/_history/3", RefValue("Patient", "p1")),
    ("p1", RefValue(None, "p1")),
    ("urn:uuid:6f1e9a8e-0c39-4f50-9b1c-0f2f1d0c7a11", None),
    ("#contained", None),
])
def test_parse_reference(text: str, expected: RefValue | None) -> None:
    assert parse_reference(text) == expected


def test_parse_search_criteria() -> None:
    query = parse_search("Observation", [
        ("code", "http://loinc.org|1975-2,|x,http://loinc.org|,y"),
        ("patient", "Patient/p1"), ("subject:Patient", "p2"), ("_id", "a,b"), ("_count", "10"),
        ("_offset", "20"), ("_sort", "-_lastUpdated")])
    assert query.criteria[0] == TokenCriterion("code", (
        TokenValue("http://loinc.org", "1975-2"), TokenValue("", "x"), TokenValue("http://loinc.org", None),
        TokenValue(None, "y")))
    assert query.criteria[1] == ReferenceCriterion("patient", (RefValue("Patient", "p1"),))
    assert query.criteria[2] == ReferenceCriterion("subject", (RefValue("Patient", "p2"),))
    assert query.criteria[3] == IdCriterion(("a", "b"))
    assert (query.count, query.offset, query.descending) == (10, 20, True)
    assert ("_count", "10") not in query.filters


def test_patient_on_patient_is_the_id() -> None:
    assert parse_search("Patient", [("patient", "Patient/p1")]).criteria == (IdCriterion(("p1",)),)


@pytest.mark.parametrize(("rtype", "params"), [
    ("Observation", [("patient", "Group/g1")]),
    ("Observation", [("subject:Patient", "Group/g1")]),
    ("Observation", [("_count", "-1")]),
    ("Observation", [("_offset", "x")]),
    ("Observation", [("code", "|")]),
    ("Observation", [("code", "")]),
    ("Observation", [("status:not", "final")]),
    ("Patient", [("subject", "p1")]),
    ("Condition", [("focus", "x")]),
])
def test_parse_search_refusals(rtype: str, params: list[tuple[str, str]]) -> None:
    with pytest.raises(FhirError) as info:
        parse_search(rtype, params)
    assert info.value.status == 400


def test_index_of_an_observation() -> None:
    rows = index_resource({
        "resourceType": "Observation", "status": "final",
        "identifier": [{"system": "urn:lab", "value": "A-1"}, {"value": "B"}],
        "code": {"coding": [{"system": "http://loinc.org", "code": "1975-2"}, {"code": "bili"}]},
        "component": [{"code": {"coding": [{"system": "http://loinc.org", "code": "33728-7"}]}}],
        "subject": {"reference": "Patient/p1"},
        "focus": [{"reference": "BodyStructure/b1"}, {"reference": "#c"}],
    })
    tokens, refs = rows.tokens, rows.refs
    assert tokens == sorted([
        TokenRow("code", "http://loinc.org", "1975-2"), TokenRow("code", "", "bili"),
        TokenRow("identifier", "urn:lab", "A-1"), TokenRow("identifier", "", "B"),
        TokenRow("status", "", "final")])
    assert refs == sorted([RefRow("subject", "Patient", "p1"), RefRow("patient", "Patient", "p1"),
                           RefRow("focus", "BodyStructure", "b1")])


def test_a_non_patient_subject_is_not_a_patient() -> None:
    refs = index_resource({"resourceType": "Observation", "subject": {"reference": "Group/g"}}).refs
    assert refs == [RefRow("subject", "Group", "g")]


def test_rewrite_references_reaches_nested_elements() -> None:
    urn = "urn:uuid:1"
    resource = {"resourceType": "Provenance", "target": [{"reference": urn}],
                "entity": [{"what": {"reference": urn}}, {"what": {"reference": "Patient/x"}}]}
    out = rewrite_references(resource, {urn: "Observation/abc"})
    assert out["target"][0]["reference"] == "Observation/abc"
    assert out["entity"][0]["what"]["reference"] == "Observation/abc"
    assert out["entity"][1]["what"]["reference"] == "Patient/x"
    assert resource["target"][0]["reference"] == urn  # the input is not changed


def test_plan_orders_entries_as_fhir_says() -> None:
    plan = plan_bundle({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"request": {"method": "GET", "url": "Patient/a"}},
        {"resource": {"resourceType": "Patient", "id": "b"}, "request": {"method": "PUT", "url": "Patient/b"}},
        {"resource": {"resourceType": "Patient"}, "request": {"method": "POST", "url": "Patient"}},
        {"request": {"method": "DELETE", "url": "Patient/c"}},
    ]})
    assert [e.method for e in plan.in_processing_order()] == ["DELETE", "POST", "PUT", "GET"]


@pytest.mark.parametrize("entry", [
    {"resource": {"resourceType": "Patient"}},  # no request
    {"resource": {"resourceType": "Patient"}, "request": {"method": "PATCH", "url": "Patient/a"}},
    {"resource": {"resourceType": "Patient", "id": "b"}, "request": {"method": "PUT", "url": "Patient/a"}},
    {"resource": {"resourceType": "Patient"}, "request": {"method": "PUT", "url": "Observation/a"}},
    {"request": {"method": "PUT", "url": "Patient/a"}},  # PUT without a resource
    {"request": {"method": "GET", "url": "Nonsense/a"}},
    {"request": {"method": "DELETE", "url": "Patient?identifier=x"}},
])
def test_plan_refuses_bad_entries_naming_them(entry: dict[str, object]) -> None:
    with pytest.raises(FhirError) as info:
        plan_bundle({"resourceType": "Bundle", "type": "transaction", "entry": [entry]})
    assert info.value.status == 400
    assert all(e.startswith("Bundle.entry[0]") for i in info.value.issues for e in i.expression)


def test_plan_reads_absolute_urls_and_names_the_entry_in_errors() -> None:
    plan = plan_bundle({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"request": {"method": "GET", "url": "https://ehr.example/r4/fhir/Patient/a/_history/2"}}]})
    entry = plan.entries[0]
    assert (entry.resource_type, entry.resource_id, entry.version_id) == ("Patient", "a", "2")
    with pytest.raises(FhirError) as info:
        plan_bundle({"resourceType": "Bundle", "type": "transaction", "entry": [
            {"request": {"method": "GET", "url": "Patient/a"}}, {"request": {"method": "GET"}}]})
    assert info.value.diagnostics == "request.url is required"
    assert info.value.issues[0].expression == ("Bundle.entry[1].request.url",)
