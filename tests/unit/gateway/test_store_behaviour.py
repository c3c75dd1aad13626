"""Behaviour of the FHIR store, the same tests against every implementation.

The ``store`` fixture is parametrised over the embedded store on SQLite (a file in a temporary
folder), the embedded store on PostgreSQL (the local server, one throwaway database per session,
marked ``integration``) and the upstream store talking over HTTP to a second Flask app that
serves the REST blueprint over its own SQLite store. Reads and searches must behave the same
whichever store the gateway is configured with (public contract, "Written back").
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from werkzeug.serving import make_server

from gateway.auth import init_auth
from gateway.fhir_rest import create_fhir_rest_blueprint
from gateway.store.base import FhirStore
from gateway.store.sql import SqlStore
from gateway.store.upstream import UpstreamStore
from netliver.fhir.outcome import FhirError
from netliver.settings import Settings
from netliver.web import create_base_app, fhir_response
from tests.support import postgres

#: The FHIR base the gateway's callers see (links and fullUrls must use it).
GATEWAY_BASE = "http://gateway.test/fhir"
LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
#: LOINC 1975-2 total bilirubin, 1742-6 ALT: two lab codes the eligibility rules read.
BILIRUBIN = "1975-2"
ALT = "1742-6"


class ServedStore:
    """A Flask app with the REST blueprint over ``backing``, on a free loopback port."""

    def __init__(self, backing: SqlStore) -> None:
        settings = Settings(auth_mode="off")
        app = create_base_app("store-upstream-test", "0", settings)
        init_auth(app, settings)
        self.server = make_server("127.0.0.1", 0, app, threaded=True)
        self.base_url = f"http://127.0.0.1:{self.server.server_port}/fhir"
        app.register_blueprint(create_fhir_rest_blueprint(lambda: backing, lambda: self.base_url))
        # Every FHIR server answers /metadata; the upstream store's health check reads it.
        app.add_url_rule("/fhir/metadata", "metadata", lambda: fhir_response(
            {"resourceType": "CapabilityStatement", "status": "active", "kind": "instance",
             "fhirVersion": "4.0.1", "format": ["json"], "date": "2026-01-01"}))
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02},
                                       daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.thread.join(5)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.integration), "upstream"])
def store(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[FhirStore]:
    if request.param == "sqlite":
        sql = SqlStore(f"sqlite:///{tmp_path}/store.db")
        yield sql
        sql.close()
    elif request.param == "postgres":
        sql = SqlStore(postgres.emptied_session_database(request.config))
        yield sql
        sql.close()
    else:
        backing = SqlStore(f"sqlite:///{tmp_path}/upstream.db")
        served = ServedStore(backing)
        yield UpstreamStore(served.base_url, timeout_s=10)
        served.stop()
        backing.close()


def observation(oid: str, *, patient: str = "p1", code: str = BILIRUBIN, system: str | None = LOINC,
                status: str = "final", value: float = 1.2, **extra: Any) -> dict[str, Any]:
    coding: dict[str, Any] = {"code": code}
    if system is not None:
        coding = {"system": system, "code": code}
    return {"resourceType": "Observation", "id": oid, "status": status, "code": {"coding": [coding]},
            "subject": {"reference": f"Patient/{patient}"},
            "valueQuantity": {"value": value, "unit": "mg/dL"}, **extra}


def ids(bundle: dict[str, Any]) -> list[str]:
    return [e["resource"]["id"] for e in bundle.get("entry", [])]


def search_ids(store: FhirStore, rtype: str, *params: tuple[str, str]) -> set[str]:
    return set(ids(store.search(rtype, list(params), GATEWAY_BASE)))


def fhir_error(fn: Any, *args: Any, **kwargs: Any) -> FhirError:
    with pytest.raises(FhirError) as info:
        fn(*args, **kwargs)
    return info.value


def expressions(err: FhirError) -> list[str]:
    return [e for issue in err.issues for e in issue.expression]


# -- read, write, versions -------------------------------------------------------------------------

def test_put_creates_then_reads_back_the_callers_content(store: FhirStore) -> None:
    original = observation("o1", value=0.1)
    stored, created = store.put(dict(original))
    assert created is True
    assert stored["meta"]["versionId"] == "1"
    assert stored["meta"]["lastUpdated"].endswith("Z")
    read = store.read("Observation", "o1")
    assert {k: v for k, v in read.items() if k != "meta"} == original
    assert read["meta"]["versionId"] == "1"


def test_same_put_twice_creates_no_new_version(store: FhirStore) -> None:
    first, created_first = store.put(observation("o1"))
    second, created_second = store.put(observation("o1"))
    again, _ = store.put(second)  # the stored form, meta included, is the same content too
    assert (created_first, created_second) == (True, False)
    assert second["meta"] == first["meta"] == again["meta"]
    assert len(store.history("Observation", "o1")["entry"]) == 1


def test_changed_content_or_tag_makes_a_new_version(store: FhirStore) -> None:
    store.put(observation("o1"))
    changed, created = store.put(observation("o1", value=2.5))
    assert created is False
    assert changed["meta"]["versionId"] == "2"
    tagged = observation("o1", value=2.5, meta={"tag": [{"system": "urn:t", "code": "result"}]})
    retagged, _ = store.put(tagged)
    assert retagged["meta"]["versionId"] == "3"
    assert retagged["meta"]["tag"] == [{"system": "urn:t", "code": "result"}]
    assert store.read("Observation", "o1")["valueQuantity"]["value"] == 2.5


def test_unknown_resource_is_404_and_deleted_is_410(store: FhirStore) -> None:
    assert fhir_error(store.read, "Observation", "nope").status == 404
    store.put(observation("o1"))
    store.delete("Observation", "o1")
    assert fhir_error(store.read, "Observation", "o1").status == 410


def test_delete_is_soft_and_idempotent(store: FhirStore) -> None:
    store.put(observation("o1"))
    store.delete("Observation", "o1")
    store.delete("Observation", "o1")
    store.delete("Observation", "never-existed")
    history = store.history("Observation", "o1")["entry"]
    assert [e["request"]["method"] for e in history] == ["DELETE", "POST"]
    assert store.vread("Observation", "o1", "1")["id"] == "o1"
    recreated, created = store.put(observation("o1"))
    assert created is True
    assert recreated["meta"]["versionId"] == "3"


def test_vread_and_history_newest_first(store: FhirStore) -> None:
    store.put(observation("o1", value=1.0))
    store.put(observation("o1", value=2.0))
    store.delete("Observation", "o1")
    assert store.vread("Observation", "o1", "1")["valueQuantity"]["value"] == 1.0
    assert store.vread("Observation", "o1", "2")["valueQuantity"]["value"] == 2.0
    assert fhir_error(store.vread, "Observation", "o1", "3").status == 410
    assert fhir_error(store.vread, "Observation", "o1", "9").status == 404
    history = store.history("Observation", "o1")
    assert history["type"] == "history"
    entries = history["entry"]
    assert [e["response"]["etag"] for e in entries] == ['W/"3"', 'W/"2"', 'W/"1"']
    assert "resource" not in entries[0]
    assert entries[1]["resource"]["valueQuantity"]["value"] == 2.0
    assert fhir_error(store.history, "Observation", "nope").status == 404


def test_create_assigns_a_uuid(store: FhirStore) -> None:
    created = store.create({"resourceType": "Patient", "id": "chosen-by-caller", "gender": "female"})
    assert created["id"] != "chosen-by-caller"
    assert str(uuid.UUID(created["id"])) == created["id"]
    assert store.read("Patient", created["id"])["gender"] == "female"


def test_invalid_resource_is_400_naming_the_element(store: FhirStore) -> None:
    bad = observation("o1")
    bad["status"] = {"not": "a code"}
    err = fhir_error(store.put, bad)
    assert err.status == 400
    assert any("status" in e for e in expressions(err))
    assert fhir_error(store.read, "Observation", "o1").status == 404


def test_if_match(store: FhirStore) -> None:
    store.put(observation("o1"))
    assert fhir_error(store.put, observation("o1", value=3.0), if_match='W/"7"').status == 412
    updated, _ = store.put(observation("o1", value=3.0), if_match='W/"1"')
    assert updated["meta"]["versionId"] == "2"


def test_health(store: FhirStore) -> None:
    assert store.health()["status"] == "pass"


# -- search ----------------------------------------------------------------------------------------

def test_search_bundle_shape(store: FhirStore) -> None:
    store.put(observation("o1"))
    bundle = store.search("Observation", [("patient", "p1")], GATEWAY_BASE)
    assert bundle["resourceType"] == "Bundle" and bundle["type"] == "searchset"
    assert bundle["total"] == 1
    entry = bundle["entry"][0]
    assert entry["fullUrl"] == f"{GATEWAY_BASE}/Observation/o1"
    assert entry["search"]["mode"] == "match"
    self_link = next(link["url"] for link in bundle["link"] if link["relation"] == "self")
    assert self_link.startswith(f"{GATEWAY_BASE}/Observation?")
    assert parse_qs(urlsplit(self_link).query)["patient"] == ["p1"]


def test_subject_and_patient_with_or_without_prefix(store: FhirStore) -> None:
    store.put(observation("o1", patient="p1"))
    store.put(observation("o2", patient="p2"))
    store.put({"resourceType": "Observation", "id": "o3", "status": "final", "code": {"text": "x"},
               "subject": {"reference": "Group/p1"}})
    assert search_ids(store, "Observation", ("subject", "Patient/p1")) == {"o1"}
    assert search_ids(store, "Observation", ("subject", "p1")) == {"o1", "o3"}  # any type
    assert search_ids(store, "Observation", ("patient", "p1")) == {"o1"}
    assert search_ids(store, "Observation", ("patient", "Patient/p2")) == {"o2"}
    assert search_ids(store, "Observation", ("subject:Patient", "p1")) == {"o1"}
    assert search_ids(store, "Observation", ("patient", "p1,p2")) == {"o1", "o2"}
    assert search_ids(store, "Observation", ("patient", "p3")) == set()


def test_patient_search_on_other_types_and_on_patient(store: FhirStore) -> None:
    store.put({"resourceType": "Patient", "id": "p1"})
    store.put({"resourceType": "Patient", "id": "p2"})
    store.put({"resourceType": "AllergyIntolerance", "id": "a1", "patient": {"reference": "Patient/p1"}})
    store.put({"resourceType": "Task", "id": "t1", "status": "requested", "intent": "order",
               "for": {"reference": "Patient/p1"}, "focus": {"reference": "ImagingStudy/s1"}})
    assert search_ids(store, "Patient", ("patient", "p1")) == {"p1"}
    assert search_ids(store, "Patient", ("_id", "p2")) == {"p2"}
    assert search_ids(store, "AllergyIntolerance", ("patient", "Patient/p1")) == {"a1"}
    assert search_ids(store, "Task", ("subject", "Patient/p1")) == {"t1"}
    assert search_ids(store, "Task", ("patient", "p1")) == {"t1"}
    assert search_ids(store, "Task", ("focus", "ImagingStudy/s1")) == {"t1"}
    assert search_ids(store, "Task", ("focus", "ImagingStudy/s2")) == set()


def test_code_token_rules(store: FhirStore) -> None:
    store.put(observation("o1", code=BILIRUBIN, system=LOINC))
    store.put(observation("o2", code=BILIRUBIN, system=None))  # a code with no system
    store.put(observation("o3", code=ALT, system=LOINC))
    comp = observation("o4", code="85354-9", system=LOINC)
    comp["component"] = [{"code": {"coding": [{"system": LOINC, "code": BILIRUBIN}]}, "valueString": "x"}]
    store.put(comp)
    assert search_ids(store, "Observation", ("code", f"{LOINC}|{BILIRUBIN}")) == {"o1"}
    assert search_ids(store, "Observation", ("code", f"|{BILIRUBIN}")) == {"o2"}
    assert search_ids(store, "Observation", ("code", BILIRUBIN)) == {"o1", "o2"}  # component not searched
    assert search_ids(store, "Observation", ("code", f"{LOINC}|")) == {"o1", "o3", "o4"}
    assert search_ids(store, "Observation", ("code", f"{LOINC}|{BILIRUBIN},{LOINC}|{ALT}")) == {"o1", "o3"}
    assert search_ids(store, "Observation", ("code", f"{SNOMED}|{BILIRUBIN}")) == set()
    # repeated parameters are ANDed
    assert search_ids(store, "Observation", ("code", BILIRUBIN), ("code", f"{LOINC}|")) == {"o1"}


def test_code_on_other_resource_types(store: FhirStore) -> None:
    store.put({"resourceType": "Condition", "id": "c1", "subject": {"reference": "Patient/p1"},
               "code": {"coding": [{"system": SNOMED, "code": "389026000"}]}})
    store.put({"resourceType": "Procedure", "id": "pr1", "status": "completed",
               "subject": {"reference": "Patient/p1"},
               "code": {"coding": [{"system": "https://netliver.org/fhir/CodeSystem/therapy", "code": "sirt"}]}})
    assert search_ids(store, "Condition", ("code", f"{SNOMED}|389026000")) == {"c1"}
    assert search_ids(store, "Procedure", ("code", "sirt"), ("patient", "p1")) == {"pr1"}


def test_id_status_identifier(store: FhirStore) -> None:
    store.put(observation("o1", status="final", identifier=[{"system": "urn:lab", "value": "A-1"}]))
    store.put(observation("o2", status="preliminary", identifier=[{"value": "A-1"}]))
    store.put(observation("o3", status="amended"))
    assert search_ids(store, "Observation", ("_id", "o1,o3")) == {"o1", "o3"}
    assert search_ids(store, "Observation", ("status", "final,amended")) == {"o1", "o3"}
    assert search_ids(store, "Observation", ("identifier", "urn:lab|A-1")) == {"o1"}
    assert search_ids(store, "Observation", ("identifier", "A-1")) == {"o1", "o2"}
    assert search_ids(store, "Observation", ("identifier", "|A-1")) == {"o2"}


def test_deleted_resources_are_not_found(store: FhirStore) -> None:
    store.put(observation("o1"))
    store.put(observation("o2"))
    store.delete("Observation", "o1")
    assert search_ids(store, "Observation", ("patient", "p1")) == {"o2"}


def test_last_updated_prefixes_at_their_boundaries(store: FhirStore) -> None:
    stamps = {}
    for oid in ("a", "b", "c"):
        stored, _ = store.put(observation(oid))
        stamps[oid] = stored["meta"]["lastUpdated"]
    assert stamps["a"] < stamps["b"] < stamps["c"]

    def found(*values: str) -> set[str]:
        return search_ids(store, "Observation", *[("_lastUpdated", v) for v in values])

    b = stamps["b"]
    assert found(b) == {"b"}
    assert found(f"eq{b}") == {"b"}
    assert found(f"ne{b}") == {"a", "c"}
    assert found(f"ge{b}") == {"b", "c"}
    assert found(f"gt{b}") == {"c"}
    assert found(f"le{b}") == {"a", "b"}
    assert found(f"lt{b}") == {"a"}
    assert found(f"ge{stamps['a']}", f"lt{stamps['c']}") == {"a", "b"}  # a range: repeated = AND
    assert found(f"eq{stamps['a']},eq{stamps['c']}") == {"a", "c"}  # comma = OR
    day = b[:10]
    assert found(day) == {"a", "b", "c"}  # the whole day
    assert found(f"gt{day}") == set()  # after the end of the day
    assert found(f"lt{day}") == set()  # before its start
    assert found(f"le{day}") == {"a", "b", "c"}
    assert found(f"ge{day[:4]}") == {"a", "b", "c"}


def test_paging_and_sort(store: FhirStore) -> None:
    for n in range(5):
        store.put(observation(f"o{n}"))
    page = store.search("Observation", [("patient", "p1"), ("_count", "2")], GATEWAY_BASE)
    assert page["total"] == 5 and ids(page) == ["o0", "o1"]
    seen = ids(page)
    while True:
        nxt = [link["url"] for link in page["link"] if link["relation"] == "next"]
        if not nxt:
            break
        assert nxt[0].startswith(GATEWAY_BASE + "/Observation?")
        query = [(k, v) for k, vs in parse_qs(urlsplit(nxt[0]).query).items() for v in vs]
        page = store.search("Observation", query, GATEWAY_BASE)
        seen += ids(page)
    assert seen == [f"o{n}" for n in range(5)]
    newest_first = store.search("Observation", [("_sort", "-_lastUpdated"), ("_count", "3")], GATEWAY_BASE)
    assert ids(newest_first) == ["o4", "o3", "o2"]
    beyond = store.search("Observation", [("_offset", "5")], GATEWAY_BASE)
    assert beyond["total"] == 5 and ids(beyond) == []
    only_total = store.search("Observation", [("_count", "0")], GATEWAY_BASE)
    assert only_total["total"] == 5 and ids(only_total) == []


def test_count_is_capped_at_500(store: FhirStore) -> None:
    bundle = store.search("Observation", [("_count", "100000")], GATEWAY_BASE)
    self_link = next(link["url"] for link in bundle["link"] if link["relation"] == "self")
    assert parse_qs(urlsplit(self_link).query)["_count"] == ["500"]


@pytest.mark.parametrize(("rtype", "params", "expression"), [
    ("Observation", [("color", "red")], "color"),
    ("Patient", [("code", "x")], "code"),
    ("Observation", [("code:text", "bilirubin")], "code:text"),
    ("Observation", [("_lastUpdated", "sa2026-01-01")], "_lastUpdated"),
    ("Observation", [("_lastUpdated", "2026-13-01")], "_lastUpdated"),
    ("Observation", [("_count", "many")], "_count"),
    ("Observation", [("_sort", "status")], "_sort"),
])
def test_bad_search_is_400_naming_the_parameter(store: FhirStore, rtype: str, params: list[tuple[str, str]],
                                                expression: str) -> None:
    err = fhir_error(store.search, rtype, params, GATEWAY_BASE)
    assert err.status == 400
    assert expression in expressions(err)


# -- transaction and batch -------------------------------------------------------------------------

PATIENT_URN = "urn:uuid:6f1e9a8e-0c39-4f50-9b1c-0f2f1d0c7a11"


def test_transaction_assigns_ids_and_rewrites_urn_references(store: FhirStore) -> None:
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": PATIENT_URN, "resource": {"resourceType": "Patient", "gender": "male"},
         "request": {"method": "POST", "url": "Patient"}},
        {"resource": observation("o1", patient="placeholder") | {"subject": {"reference": PATIENT_URN}},
         "request": {"method": "PUT", "url": "Observation/o1"}},
    ]}
    answer = store.transaction(bundle, GATEWAY_BASE)
    assert answer["type"] == "transaction-response"
    statuses = [e["response"]["status"] for e in answer["entry"]]
    assert [s.split()[0] for s in statuses] == ["201", "201"]
    patient_id = answer["entry"][0]["response"]["location"].split("/")[1]
    assert store.read("Patient", patient_id)["gender"] == "male"
    assert store.read("Observation", "o1")["subject"]["reference"] == f"Patient/{patient_id}"
    assert search_ids(store, "Observation", ("patient", patient_id)) == {"o1"}


def test_transaction_is_all_or_nothing_on_an_invalid_entry(store: FhirStore) -> None:
    bad = observation("o2")
    bad["valueQuantity"] = {"value": "not a number"}
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": observation("o1"), "request": {"method": "PUT", "url": "Observation/o1"}},
        {"resource": bad, "request": {"method": "PUT", "url": "Observation/o2"}},
    ]}
    err = fhir_error(store.transaction, bundle, GATEWAY_BASE)
    assert err.status == 400
    assert any(e.startswith("Bundle.entry[1]") for e in expressions(err))
    assert fhir_error(store.read, "Observation", "o1").status == 404


def test_transaction_is_all_or_nothing_on_a_failed_precondition(store: FhirStore) -> None:
    store.put(observation("o2"))
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": observation("o1"), "request": {"method": "PUT", "url": "Observation/o1"}},
        {"resource": observation("o2", value=9.9), "request": {"method": "PUT", "url": "Observation/o2",
                                                                "ifMatch": 'W/"5"'}},
        {"resource": observation("o3"), "request": {"method": "PUT", "url": "Observation/o3"}},
    ]}
    assert fhir_error(store.transaction, bundle, GATEWAY_BASE).status == 412
    assert fhir_error(store.read, "Observation", "o1").status == 404
    assert fhir_error(store.read, "Observation", "o3").status == 404
    assert store.read("Observation", "o2")["meta"]["versionId"] == "1"


def test_transaction_repeated_writes_nothing_new(store: FhirStore) -> None:
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": observation(f"o{n}"), "request": {"method": "PUT", "url": f"Observation/o{n}"}}
        for n in range(3)]}
    first = store.transaction(bundle, GATEWAY_BASE)
    second = store.transaction(bundle, GATEWAY_BASE)
    assert [e["response"]["etag"] for e in first["entry"]] == [e["response"]["etag"] for e in second["entry"]]
    assert [e["response"]["status"].split()[0] for e in second["entry"]] == ["200"] * 3


def test_transaction_if_none_exist(store: FhirStore) -> None:
    patient = {"resourceType": "Patient", "identifier": [{"system": "urn:mrn", "value": "42"}]}
    entry = {"fullUrl": PATIENT_URN, "resource": patient,
             "request": {"method": "POST", "url": "Patient", "ifNoneExist": "identifier=urn:mrn|42"}}
    link = {"resource": observation("o1") | {"subject": {"reference": PATIENT_URN}},
            "request": {"method": "PUT", "url": "Observation/o1"}}
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [entry, link]}
    first = store.transaction(bundle, GATEWAY_BASE)
    second = store.transaction(bundle, GATEWAY_BASE)
    assert first["entry"][0]["response"]["status"].startswith("201")
    assert second["entry"][0]["response"]["status"].startswith("200")
    assert search_ids(store, "Patient", ("identifier", "urn:mrn|42")) == {
        first["entry"][0]["response"]["location"].split("/")[1]}
    assert store.read("Observation", "o1")["meta"]["versionId"] == "1"  # same reference both times


def test_transaction_with_reads_and_deletes(store: FhirStore) -> None:
    store.put(observation("old"))
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"request": {"method": "GET", "url": "Observation?patient=p1"}},
        {"request": {"method": "DELETE", "url": "Observation/old"}},
        {"resource": observation("new"), "request": {"method": "PUT", "url": "Observation/new"}},
    ]}
    answer = store.transaction(bundle, GATEWAY_BASE)
    # GETs are processed last (FHIR R4 §3.1.0.11.2): the search sees the new state
    assert ids(answer["entry"][0]["resource"]) == ["new"]
    assert fhir_error(store.read, "Observation", "old").status == 410


def test_batch_entries_fail_independently(store: FhirStore) -> None:
    bad = observation("o2")
    bad["status"] = 17
    bundle = {"resourceType": "Bundle", "type": "batch", "entry": [
        {"resource": observation("o1"), "request": {"method": "PUT", "url": "Observation/o1"}},
        {"resource": bad, "request": {"method": "PUT", "url": "Observation/o2"}},
        {"request": {"method": "GET", "url": "Observation/missing"}},
    ]}
    answer = store.transaction(bundle, GATEWAY_BASE)
    assert answer["type"] == "batch-response"
    assert [e["response"]["status"].split()[0] for e in answer["entry"]] == ["201", "400", "404"]
    assert answer["entry"][1]["response"]["outcome"]["resourceType"] == "OperationOutcome"
    assert store.read("Observation", "o1")["id"] == "o1"


def test_other_bundle_types_are_refused(store: FhirStore) -> None:
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": observation("o1")}]}
    assert fhir_error(store.transaction, bundle, GATEWAY_BASE).status == 422


def test_the_same_resource_twice_in_a_transaction_is_refused(store: FhirStore) -> None:
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": observation("o1"), "request": {"method": "PUT", "url": "Observation/o1"}},
        {"resource": observation("o1", value=5.0), "request": {"method": "PUT", "url": "Observation/o1"}},
    ]}
    assert fhir_error(store.transaction, bundle, GATEWAY_BASE).status == 400
    assert fhir_error(store.read, "Observation", "o1").status == 404
