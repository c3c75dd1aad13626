"""`POST /operations/tumor-response` through the Flask test client."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from infra.demo_follow_up import (
    CT,
    PET,
    body_structure,
    bundle,
    lab,
    lesion,
    marker,
    procedure,
    synthetic_follow_up_bundle,
)
from netliver.fhir.codesystems import CODESYSTEMS, RESPONSE_SYSTEM
from netliver.fhir.models import validate_resource
from netliver.settings import Settings
from services.response.app import create_app

URL = "/operations/tumor-response"


@pytest.fixture(scope="module")
def client() -> Any:
    app = create_app(Settings.from_env({"AUTH_MODE": "off", "LOG_LEVEL": "WARNING"}))
    return app.test_client()


def post(client: Any, body: dict[str, Any], query: str = "") -> Any:
    return client.post(f"{URL}{query}", json=body)


def code_of(resource: dict[str, Any]) -> str:
    return resource["code"]["coding"][0]["code"]


def components(obs: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for c in obs.get("component", []):
        key = c["code"]["coding"][0]["code"]
        if "valueCodeableConcept" in c:
            out[key] = c["valueCodeableConcept"]["coding"][0]["code"]
        elif "valueQuantity" in c:
            out[key] = c["valueQuantity"]["value"]
        else:
            out[key] = next(v for k, v in c.items() if k.startswith("value"))
    return out


def simple_case(*follow_sizes: float) -> dict[str, Any]:
    dates = ["2025-01-01", "2025-03-01", "2025-05-01", "2025-07-01", "2025-09-01"]
    res: list[dict[str, Any]] = [body_structure("A")]
    for k, size in enumerate((30.0, *follow_sizes)):
        res.append(lesion(f"a{k}", "A", dates[k], longest=size))
    return bundle(*res)


@pytest.mark.parametrize("criterion", ["recist-1.1", "mrecist", "easl", "choi", "percist", "irecist"])
def test_every_criterion_answers_a_valid_collection(client, criterion):
    resp = post(client, synthetic_follow_up_bundle(), f"?criteria={criterion}")
    assert resp.status_code == 200, resp.get_json()
    data = resp.get_json()
    output, write = data["output"], data["write"]
    assert output["type"] == "collection"
    validate_resource(output)
    for resource in write:
        validate_resource(resource)
    assert write[-1]["resourceType"] == "Provenance"
    assert {e["resource"]["id"] for e in output["entry"]} <= {r["id"] for r in write}
    visits = [e["resource"] for e in output["entry"] if code_of(e["resource"]) == "tumor-response"]
    assert [v["effectiveDateTime"] for v in visits] == ["2025-04-10", "2025-07-10", "2025-10-10"]
    for v in visits:
        comps = components(v)
        assert {"vs-baseline", "vs-nadir", "overall"} <= set(comps)
        assert v["method"]["coding"][0]["code"] == criterion
        # markers and toxicity sit beside the imaging category, never inside it
        assert not {"biochemical-response", "ctcae-grade"} & set(comps)
    (best,) = [e["resource"] for e in output["entry"] if code_of(e["resource"]) == "best-overall-response"]
    assert best["effectiveDateTime"] == "2025-10-10"
    codes = CODESYSTEMS["response"].codes()
    for v in [*visits, best]:
        assert v["valueCodeableConcept"]["coding"][0]["system"] == RESPONSE_SYSTEM
        assert v["valueCodeableConcept"]["coding"][0]["code"] in codes


def test_synthetic_patient_results(client):
    data = post(client, synthetic_follow_up_bundle(), "?criteria=recist-1.1").get_json()
    resources = [e["resource"] for e in data["output"]["entry"]]
    visits = [r for r in resources if code_of(r) == "tumor-response"]
    # sums (node by short axis) 42+30+18 = 90 → 77 → 68 → 69 (L2 ablated during follow-up:
    # flagged and measured by default)
    assert [components(v)["sum-of-diameters"] for v in visits] == [77, 68, 69]
    assert [v["valueCodeableConcept"]["coding"][0]["code"] for v in visits] == ["SD", "SD", "SD"]
    assert components(visits[2])["treated-lesion"] == "L2"
    # the lesion seen only on the new MRI protocol is not progression
    assert components(visits[2])["new-lesions"] is False
    grades = {components(r)["ctcae-term"]: r["valueInteger"] for r in resources if code_of(r) == "ctcae-grade"}
    assert grades["10005364"] == 2  # bilirubin 2.1 mg/dL = 1.75 × ULN 1.2
    assert grades["10001551"] == 1  # ALT 110 U/L = 2.75 × ULN 40
    markers = [r for r in resources if code_of(r) == "biochemical-response"]
    assert len(markers) == 6
    (report,) = [r for r in resources if r["resourceType"] == "DiagnosticReport"]
    rows = [r for r in resources if code_of(r) == "crf-target-lesion"]
    assert len(rows) == 3 and len(report["result"]) == 3 + 6
    assert "Date of baseline: 2025-01-10" in report["conclusion"]
    assert "Liver embolization" in report["conclusion"] and "SIRT" in report["conclusion"]
    assert any(e["url"].endswith("previous-treatment") for e in report["extension"])


def test_not_evaluating_further_treated_lesions_is_a_setting(client):
    data = post(client, synthetic_follow_up_bundle(), "?treatedLesions=not-evaluable").get_json()
    visits = [e["resource"] for e in data["output"]["entry"] if code_of(e["resource"]) == "tumor-response"]
    assert [v["valueCodeableConcept"]["coding"][0]["code"] for v in visits] == ["SD", "SD", "NE"]
    assert components(visits[2]).get("sum-of-diameters") is None
    measured = post(client, synthetic_follow_up_bundle(), "?treatedLesions=measure").get_json()
    visits = [e["resource"] for e in measured["output"]["entry"] if code_of(e["resource"]) == "tumor-response"]
    assert components(visits[2])["sum-of-diameters"] == 69  # 30 + 28 + node short axis 11


def test_same_request_gives_the_same_ids_and_settings_change_them(client):
    first = post(client, synthetic_follow_up_bundle()).get_json()
    second = post(client, synthetic_follow_up_bundle()).get_json()
    assert [r["id"] for r in first["write"]] == [r["id"] for r in second["write"]]
    other = post(client, synthetic_follow_up_bundle(), "?confirmationDays=28").get_json()
    assert {r["id"] for r in first["write"]}.isdisjoint({r["id"] for r in other["write"]})
    mrecist = post(client, synthetic_follow_up_bundle(), "?criteria=mrecist").get_json()
    assert {r["id"] for r in first["write"]}.isdisjoint({r["id"] for r in mrecist["write"]})


def test_best_overall_response_settings(client):
    body = simple_case(20.0, 20.0)  # PR at 8 and 17 weeks
    loose = post(client, body).get_json()["output"]["entry"]
    best = next(e["resource"] for e in loose if code_of(e["resource"]) == "best-overall-response")
    assert best["valueCodeableConcept"]["coding"][0]["code"] == "PR"
    strict = post(client, body, "?confirmationDays=90&minSdDays=30").get_json()["output"]["entry"]
    best = next(e["resource"] for e in strict if code_of(e["resource"]) == "best-overall-response")
    assert best["valueCodeableConcept"]["coding"][0]["code"] == "SD"
    assert components(best)["confirmation-days"] == 90


def test_units_are_converted(client):
    body = simple_case(20.0)
    body["entry"][2]["resource"]["component"][0]["valueQuantity"] = {
        "value": 2.1, "unit": "cm", "system": "http://unitsofmeasure.org", "code": "cm"}
    body["entry"].append({"resource": procedure("p", "sirt", "2025-01-10")})
    for k, (when, value) in enumerate([("2025-01-05", 17.1), ("2025-02-01", 34.2)]):
        body["entry"].append({"resource": lab(f"b{k}", "14631-6", when, value, "umol/L")})
    entries = post(client, body).get_json()["output"]["entry"]
    visit = next(e["resource"] for e in entries if code_of(e["resource"]) == "tumor-response")
    assert components(visit)["sum-of-diameters"] == 21
    grade = next(e["resource"] for e in entries if code_of(e["resource"]) == "ctcae-grade")
    assert components(grade)["lab-value"] == 2  # 34.2 µmol/L = 2 mg/dL
    assert grade["valueInteger"] == 2


def test_new_modality_lesion_through_fhir(client):
    body = simple_case(25.0)
    body["entry"].append({"resource": lesion("x", "X", "2025-03-01", "new", longest=12, method=PET)})
    visit = next(e["resource"] for e in post(client, body).get_json()["output"]["entry"]
                 if code_of(e["resource"]) == "tumor-response")
    assert visit["valueCodeableConcept"]["coding"][0]["code"] == "SD"
    body["entry"][-1]["resource"] = lesion("x", "X", "2025-03-01", "new", longest=12, method=CT)
    visit = next(e["resource"] for e in post(client, body).get_json()["output"]["entry"]
                 if code_of(e["resource"]) == "tumor-response")
    assert visit["valueCodeableConcept"]["coding"][0]["code"] == "PD"


# -- bad input: 422 naming the element, nothing to write --------------------------------------


def expect_422(resp: Any, expression: str) -> dict[str, Any]:
    assert resp.status_code == 422, resp.get_json()
    outcome = resp.get_json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert "write" not in outcome
    issue = outcome["issue"][0]
    assert issue["severity"] == "error" and issue["diagnostics"]
    assert any(expression in e for e in issue.get("expression", [])), issue
    return issue


def test_lesion_without_date(client):
    body = simple_case(20.0)
    del body["entry"][2]["resource"]["effectiveDateTime"]
    expect_422(post(client, body), "Bundle.entry[2].resource.effectiveDateTime")


def test_lesion_without_identity(client):
    body = simple_case(20.0)
    del body["entry"][1]["resource"]["focus"]
    expect_422(post(client, body), "Bundle.entry[1].resource.focus")


def test_baseline_without_measurable_lesion(client):
    expect_422(post(client, bundle(lesion("a0", "A", "2025-01-01", longest=8),
                                   lesion("a1", "A", "2025-03-01", longest=8))),
               "Bundle.entry[0].resource")
    only_follow_up_values = bundle(lesion("a0", "A", "2025-01-01", "target"),
                                   lesion("a1", "A", "2025-03-01", longest=8))
    expect_422(post(client, only_follow_up_values), "Bundle.entry[0].resource")


def test_more_than_five_targets_or_two_per_organ(client):
    many = [lesion(f"t{i}", f"T{i}", "2025-01-01", longest=20) for i in range(6)]
    sites = [body_structure(f"T{i}", f"1000{i}", f"organ {i}") for i in range(6)]
    expect_422(post(client, bundle(*sites, *many)), "Bundle.entry[11].resource")
    liver = [lesion(f"t{i}", f"T{i}", "2025-01-01", longest=20) for i in range(3)]
    expect_422(post(client, bundle(*[body_structure(f"T{i}") for i in range(3)], *liver)),
               "Bundle.entry[5].resource")


def test_same_lesion_twice_at_one_visit(client):
    body = simple_case(20.0)
    body["entry"].append({"resource": lesion("dup", "A", "2025-03-01", longest=21)})
    expect_422(post(client, body), "Bundle.entry[3].resource.focus")


def test_negative_size(client):
    body = simple_case(-2.0)
    expect_422(post(client, body), "Bundle.entry[2].resource.component[0].valueQuantity.value")


def test_unknown_criterion_and_bad_settings(client):
    expect_422(post(client, simple_case(20.0), "?criteria=who"), "criteria")
    expect_422(post(client, simple_case(20.0), "?confirmationDays=-1"), "confirmationDays")
    expect_422(post(client, simple_case(20.0), "?biochemicalThresholdPercent=abc"), "biochemicalThresholdPercent")
    expect_422(post(client, simple_case(20.0), "?treatedLesions=sometimes"), "treatedLesions")


def test_unconvertible_units_are_refused(client):
    body = simple_case(20.0)
    body["entry"][2]["resource"]["component"][0]["valueQuantity"]["code"] = "g"
    expect_422(post(client, body), "Bundle.entry[2].resource.component[0].valueQuantity.code")
    body = simple_case(20.0)
    body["entry"].append({"resource": marker("m0", "9811-1", "2025-01-01", 100, "ug/L")})
    body["entry"].append({"resource": marker("m1", "9811-1", "2025-03-01", 100, "U/L")})
    expect_422(post(client, body), "Bundle.entry[4].resource.valueQuantity.code")


def test_unusable_reference_limits_are_refused(client):
    # An upper limit of 0 would divide by zero when grading × ULN (was a 500); a lower limit of
    # 0 for a count graded below the LLN is not a reference. A lower limit 0 of ALT is usual.
    body = simple_case(20.0)
    body["entry"].append({"resource": procedure("p", "sirt", "2025-01-10")})
    body["entry"].append({"resource": lab("alt", "1742-6", "2025-02-01", 50, "U/L", low=0, high=0)})
    expect_422(post(client, body), "Bundle.entry[4].resource.referenceRange[0].high")
    body["entry"][-1] = {"resource": lab("plt", "777-3", "2025-02-01", 50, "10*9/L", low=0, high=400)}
    expect_422(post(client, body), "Bundle.entry[4].resource.referenceRange[0].low")
    body["entry"][-1] = {"resource": lab("alt", "1742-6", "2025-02-01", 50, "U/L", low=0, high=40)}
    assert post(client, body).status_code == 200


def test_not_a_bundle_and_no_lesions(client):
    resp = client.post(URL, json={"resourceType": "Parameters"})
    expect_422(resp, "resourceType")
    expect_422(post(client, bundle(marker("m0", "9811-1", "2025-01-01", 100, "ug/L"))), "Bundle.entry")
    assert client.post(URL, data="{", content_type="application/fhir+json").status_code == 400


def test_input_is_not_modified(client):
    body = synthetic_follow_up_bundle()
    before = copy.deepcopy(body)
    post(client, body)
    assert body == before


def test_without_body_structures_the_per_organ_rule_is_not_guessed(client):
    three = [lesion(f"t{i}", f"T{i}", d, longest=20) for i in range(3) for d in ("2025-01-01", "2025-03-01")]
    for k, obs in enumerate(three):
        obs["id"] = f"t{k}"
    assert post(client, bundle(*three)).status_code == 200
    with_liver = bundle(*[body_structure(f"T{i}") for i in range(3)], *three)
    assert post(client, with_liver).status_code == 422


def test_baseline_only_gives_not_evaluable_best_response(client):
    resp = post(client, bundle(body_structure("A"), lesion("a0", "A", "2025-01-01", longest=30)))
    assert resp.status_code == 200, resp.get_json()
    entries = [e["resource"] for e in resp.get_json()["output"]["entry"]]
    for r in entries:
        validate_resource(r)
    assert not [r for r in entries if code_of(r) == "tumor-response"]
    best = next(r for r in entries if code_of(r) == "best-overall-response")
    assert best["valueCodeableConcept"]["coding"][0]["code"] == "NE"
