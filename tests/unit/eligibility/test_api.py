"""The eligibility service over HTTP (Flask test client): seed patients, output shape, bad
input (422 naming the element, nothing written), determinism, Provenance, CDS cards."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from flask.testing import FlaskClient

from infra.demo_patients import (
    EVALUATION_DATE,
    PatientBundleBuilder,
    cazzato_fig3_mwa_39f,
    cazzato_fig5_sirt_77f,
    elf_sinet_patient,
    nervo_thyroid_patient,
    realistic_patient,
)
from netliver.fhir.codesystems import OBSERVATION_CODE_SYSTEM, STATUS_SYSTEM, THERAPY_SYSTEM, UCUM
from netliver.fhir.models import validate_resource
from netliver.settings import Settings
from services.eligibility.app import create_app
from services.eligibility.domain.evaluation import THERAPIES

URL = f"/operations/evaluate-eligibility?date={EVALUATION_DATE.isoformat()}"
FHIR = "application/fhir+json"


@pytest.fixture(scope="module")
def client() -> FlaskClient:
    app = create_app(Settings.from_env({"AUTH_MODE": "off", "LOG_LEVEL": "WARNING"}))
    return app.test_client()


def evaluate(client: FlaskClient, bundle: dict[str, Any], url: str = URL) -> dict[str, Any]:
    resp = client.post(url, json=bundle, headers={"Content-Type": FHIR})
    assert resp.status_code == 200, resp.get_json()
    body: dict[str, Any] = resp.get_json()
    return body


def statuses(result: dict[str, Any]) -> dict[str, str]:
    out = {}
    for entry in result["output"]["entry"]:
        res = entry["resource"]
        if res["resourceType"] != "Observation":
            continue
        therapy = next(c["code"] for c in res["code"]["coding"] if c["system"] == THERAPY_SYSTEM)
        out[therapy] = next(c["code"] for c in res["valueCodeableConcept"]["coding"] if c["system"] == STATUS_SYSTEM)
    return out


def observation(result: dict[str, Any], therapy: str) -> dict[str, Any]:
    return next(e["resource"] for e in result["output"]["entry"]
                if e["resource"]["resourceType"] == "Observation"
                and e["resource"]["code"]["coding"][0]["code"] == therapy)


def error(client: FlaskClient, bundle: Any, status: int = 422) -> dict[str, Any]:
    resp = client.post(URL, json=bundle, headers={"Content-Type": FHIR})
    assert resp.status_code == status, resp.get_json()
    body: dict[str, Any] = resp.get_json()
    assert body["resourceType"] == "OperationOutcome"
    assert "write" not in body
    return body["issue"][0]


# -- output ----------------------------------------------------------------------------------

def test_realistic_fixture_is_a_valid_bundle_of_about_sixty_resources() -> None:
    bundle = realistic_patient()
    validate_resource(bundle)
    assert 55 <= len(bundle["entry"]) <= 70


def test_output_has_one_observation_per_therapy_and_validates(client: FlaskClient) -> None:
    result = evaluate(client, realistic_patient())
    output = result["output"]
    assert output["type"] == "collection"
    validate_resource(output)
    for res in result["write"]:
        validate_resource(res)
    observations = [e["resource"] for e in output["entry"] if e["resource"]["resourceType"] == "Observation"]
    codes = [o["code"]["coding"][0]["code"] for o in observations]
    assert sorted(codes) == sorted(THERAPIES) and len(codes) == 13
    for obs in observations:
        assert obs["subject"] == {"reference": "Patient/demo-nen-1"}
        assert obs["note"], obs["code"]
        assert all("Source:" in n["text"] for n in obs["note"] if n["text"].startswith("["))
    types = sorted(r["resourceType"] for r in result["write"])
    assert types == sorted(["Observation"] * 13 + ["DiagnosticReport", "Provenance"])


def test_provenance_names_service_and_ruleset_versions(client: FlaskClient) -> None:
    result = evaluate(client, realistic_patient())
    prov = next(r for r in result["write"] if r["resourceType"] == "Provenance")
    assert any(p.startswith("https://netliver.org/fhir/eligibility-rules|") for p in prov["policy"])
    assert any("/service/eligibility|" in p for p in prov["policy"])
    assert len(prov["target"]) == 14
    assert {"reference": "Patient/demo-nen-1"} in [e["what"] for e in prov["entity"]]


def test_tumour_board_report_with_imaging_advice(client: FlaskClient) -> None:
    result = evaluate(client, realistic_patient())
    report = next(e["resource"] for e in result["output"]["entry"]
                  if e["resource"]["resourceType"] == "DiagnosticReport")
    assert report["code"]["coding"][0] == {"system": OBSERVATION_CODE_SYSTEM, "code": "eligibility-summary",
                                           "display": "Eligibility summary"}
    assert "18F-DOPA" in report["conclusion"] and "DWI" in report["conclusion"]
    assert len(report["result"]) == 13
    assert report["text"]["div"].startswith('<div xmlns="http://www.w3.org/1999/xhtml">')


def test_ids_are_deterministic_and_depend_on_input_and_date(client: FlaskClient) -> None:
    first = evaluate(client, realistic_patient())
    again = evaluate(client, realistic_patient())
    ids = [r["id"] for r in first["write"]]
    assert ids == [r["id"] for r in again["write"]]
    other_day = evaluate(client, realistic_patient(), "/operations/evaluate-eligibility?date=2026-11-21")
    assert set(ids).isdisjoint(r["id"] for r in other_day["write"])
    changed = realistic_patient()
    changed["entry"][1]["resource"]["valueQuantity"]["value"] = 0.7
    assert set(ids).isdisjoint(r["id"] for r in evaluate(client, changed)["write"])


def test_insufficient_data_lists_machine_readable_requirements(client: FlaskClient) -> None:
    bundle = cazzato_fig3_mwa_39f()  # no MAA work-up: lung shunt unknown
    result = evaluate(client, bundle)
    for res in result["write"]:
        validate_resource(res)
    obs = observation(result, "sirt")
    assert obs["valueCodeableConcept"]["coding"][0]["code"] == "insufficient-data"
    codes = [c for comp in obs["component"] for c in comp["code"]["coding"]]
    assert {"system": OBSERVATION_CODE_SYSTEM, "code": "lung-shunt-fraction"} in codes
    assert all(comp["dataAbsentReason"]["coding"][0]["code"] for comp in obs["component"])
    assert obs["note"][0]["text"].startswith("Missing inputs that could change the answer: Lung shunt")


def test_derived_from_names_the_deciding_inputs(client: FlaskClient) -> None:
    bundle = cazzato_fig5_sirt_77f()
    lsf = next(e["resource"] for e in bundle["entry"]
               if e["resource"]["resourceType"] == "Observation"
               and e["resource"]["code"]["coding"][0].get("code") == "lung-shunt-fraction")
    lsf["valueQuantity"]["value"] = 24
    obs = observation(evaluate(client, bundle), "sirt")
    assert obs["valueCodeableConcept"]["coding"][0]["code"] == "ineligible"
    assert obs["derivedFrom"] == [{"reference": f"Observation/{lsf['id']}"}]


@pytest.mark.parametrize("bundle_type", ["collection", "searchset", "transaction"])
def test_accepted_bundle_types(client: FlaskClient, bundle_type: str) -> None:
    b = PatientBundleBuilder("bt", "1970-01-01")
    b.normal_labs()
    assert len(statuses(evaluate(client, b.bundle(bundle_type)))) == 13


# -- patients of the papers ------------------------------------------------------------------------

def test_cazzato_2021_fig5_77f_pancreatic_g1_liver_only_relapse_is_sirt_eligible(client: FlaskClient) -> None:
    s = statuses(evaluate(client, cazzato_fig5_sirt_77f()))
    assert s["sirt"] == "eligible"
    assert s["liver-transplant"] == "ineligible"  # 77 years, progressing
    assert s["ablation-mwa"] == "ineligible"  # six metastases
    assert s["tae"] == "eligible-with-caution"  # pancreatic primary: TACE preferred over TAE
    assert s["ctace"] == "eligible"
    assert s["prrt"] == "eligible"


def test_cazzato_2021_fig3_39f_65mm_g2_mwa_with_caution(client: FlaskClient) -> None:
    result = evaluate(client, cazzato_fig3_mwa_39f())
    s = statuses(result)
    assert s["ablation-mwa"] == "eligible-with-caution"
    notes = " ".join(n["text"] for n in observation(result, "ablation-mwa")["note"])
    assert "MWA-REL-ZONE" in notes and "needed zone 75 mm" in notes
    assert s["liver-transplant"] == "ineligible"  # Ki-67 12 % > 10 %, progressing
    assert s["sirt"] == "insufficient-data"


@pytest.mark.parametrize(("number", "tace", "rfa", "prrt"), [
    (1, "eligible", "eligible-with-caution", "insufficient-data"),   # MTC, 18 mm: TACE within guidelines
    (2, "eligible-with-caution", "eligible-with-caution", "insufficient-data"),  # 42 mm; vandetanib
    (3, "eligible-with-caution", "eligible-with-caution", "ineligible"),  # DTC, single 55 mm
    (4, "eligible-with-caution", "eligible-with-caution", "ineligible"),  # DTC, 32 mm; lenvatinib
])
def test_nervo_2021_thyroid_patients(client: FlaskClient, number: int, tace: str, rfa: str, prrt: str) -> None:
    result = evaluate(client, nervo_thyroid_patient(number))
    s = statuses(result)
    assert s["deb-tace"] == tace
    assert s["ablation-rfa"] == rfa
    assert s["prrt"] == prrt
    assert s["liver-transplant"] == "ineligible"  # not a portal-drained primary
    if number in (2, 4):
        assert "RES-WARN-TKI" in " ".join(n["text"] for n in observation(result, "deb-tace")["note"])
    if tace == "eligible-with-caution":
        assert "THY-TACE-REL-SIZE" in " ".join(n["text"] for n in observation(result, "deb-tace")["note"])


@pytest.mark.parametrize(("grade", "ki67"), [(1, 1.5), (2, 12)])
def test_elf_2018_si_net_multiple_bilobar_metastases(client: FlaskClient, grade: int, ki67: float) -> None:
    s = statuses(evaluate(client, elf_sinet_patient(grade=grade, ki67=ki67)))
    assert s["tae"] == "eligible" and s["sirt"] == "eligible"
    for ablation in ("ablation-rfa", "ablation-mwa", "ablation-laser", "ablation-cryo", "ablation-ire"):
        assert s[ablation] == "ineligible"  # > 5 metastases
    assert s["surgical-resection"] == "ineligible"
    assert s["deb-tace"] == "eligible-with-caution"  # intestinal primary
    assert s["prrt"] == ("eligible" if ki67 < 10 else "eligible-with-caution")


def test_elf_2018_patient_with_pacemaker_ire_ineligible_for_arrhythmia(client: FlaskClient) -> None:
    result = evaluate(client, elf_sinet_patient(lesions=3, pacemaker=True))
    notes = " ".join(n["text"] for n in observation(result, "ablation-ire")["note"])
    assert statuses(result)["ablation-ire"] == "ineligible" and "IRE-ABS-ARRHYTHMIA · absolute · met" in notes
    assert statuses(result)["ablation-mwa"] != "ineligible"


# -- inputs: units, newest value -------------------------------------------------------------

def _sirt_patient(bilirubin: float, unit: str = "mg/dL") -> dict[str, Any]:
    b = PatientBundleBuilder("u1", "1960-01-01")
    b.normal_labs()
    b.lab("bilirubin", bilirubin, EVALUATION_DATE, unit=unit)  # newer than the normal value
    b.ecog(0)
    b.percent("lung-shunt-fraction", 5).percent("liver-tumor-burden", 20).extrahepatic("absent")
    b.resources.append({"resourceType": "Observation", "id": "alb", "status": "final", "subject": b.subject,
                        "code": {"coding": [{"system": "http://loinc.org", "code": "1751-7"}]},
                        "effectiveDateTime": EVALUATION_DATE.isoformat(),
                        "valueQuantity": {"value": 40, "unit": "g/L", "system": UCUM, "code": "g/L"}})
    return b.bundle()


@pytest.mark.parametrize(("value", "unit", "expected"), [
    (2.9, "mg/dL", "eligible-with-caution"), (3.0, "mg/dL", "ineligible"),
    (49.6, "umol/L", "eligible-with-caution"), (51.3, "umol/L", "ineligible"),  # ÷ 17.1
    (34.2, "µmol/L", "eligible"),  # 2.0 mg/dL, not above the label limit
    (51.2992, "umol/L", "eligible-with-caution"),  # 2.99995 mg/dL: below 3, however it is rounded for display
    (34.2002, "umol/L", "eligible-with-caution"),  # 2.00001 mg/dL: above the label limit of 2
])
def test_bilirubin_boundary_in_both_units(client: FlaskClient, value: float, unit: str, expected: str) -> None:
    assert statuses(evaluate(client, _sirt_patient(value, unit)))["sirt"] == expected


def test_platelets_in_thousand_per_microlitre(client: FlaskClient) -> None:
    b = PatientBundleBuilder("plt", "1960-01-01")
    b.lab("platelets", 74, EVALUATION_DATE, unit="10*3/uL")
    result = evaluate(client, b.bundle())
    assert "PRRT-ABS-PLATELETS · absolute · met" in " ".join(n["text"] for n in observation(result, "prrt")["note"])


def test_creatinine_micromolar_converted(client: FlaskClient) -> None:
    b = PatientBundleBuilder("cr", "1960-01-01")
    b.lab("creatinine_umol", 186, EVALUATION_DATE)  # 2.104 mg/dL > 2.0
    result = evaluate(client, b.bundle())
    assert "TACE-WARN-RETNET-CREATININE · warning · met" in " ".join(
        n["text"] for n in observation(result, "ctace")["note"])


# -- bad input -------------------------------------------------------------------------------

def test_bundle_without_patient(client: FlaskClient) -> None:
    bundle = realistic_patient()
    bundle["entry"] = bundle["entry"][1:]
    issue = error(client, bundle)
    assert issue["expression"] == ["Bundle.entry"]


def test_bundle_with_two_patients(client: FlaskClient) -> None:
    bundle = realistic_patient()
    second = copy.deepcopy(bundle["entry"][0])
    second["resource"]["id"] = "someone-else"
    second["fullUrl"] = "urn:uuid:00000000-0000-0000-0000-000000000001"
    bundle["entry"].append(second)
    issue = error(client, bundle)
    assert issue["expression"] == [f"Bundle.entry[{len(bundle['entry']) - 1}].resource"]


def test_resource_of_another_patient(client: FlaskClient) -> None:
    bundle = realistic_patient()
    bundle["entry"][3]["resource"]["subject"] = {"reference": "Patient/someone-else"}
    issue = error(client, bundle)
    assert issue["expression"] == ["Bundle.entry[3].resource.subject"]


def _with_value(code_system: str, code: str, value: float, unit: str = "%") -> dict[str, Any]:
    b = PatientBundleBuilder("bad", "1960-01-01")
    b._obs({"system": code_system, "code": code}, None,
           valueQuantity={"value": value, "unit": unit, "system": UCUM, "code": unit})
    return b.bundle()


@pytest.mark.parametrize(("system", "code", "value", "unit"), [
    ("http://loinc.org", "1975-2", -1, "mg/dL"),  # bilirubin −1
    (OBSERVATION_CODE_SYSTEM, "liver-tumor-burden", 140, "%"),  # burden 140 %
    ("http://loinc.org", "29593-1", 250, "%"),  # Ki-67 250 %
    (OBSERVATION_CODE_SYSTEM, "lung-shunt-fraction", 101, "%"),
])
def test_impossible_values(client: FlaskClient, system: str, code: str, value: float, unit: str) -> None:
    issue = error(client, _with_value(system, code, value, unit))
    assert issue["expression"] == ["Bundle.entry[1].resource.valueQuantity.value"]
    assert "impossible" in issue["diagnostics"]


@pytest.mark.parametrize("unit", ["furlongs", "mL", "10*9/L"])
def test_unknown_or_unconvertible_units(client: FlaskClient, unit: str) -> None:
    issue = error(client, _with_value("http://loinc.org", "1975-2", 1.0, unit))  # bilirubin
    assert issue["expression"] == ["Bundle.entry[1].resource.valueQuantity.code"]


def test_wrong_bundle_type(client: FlaskClient) -> None:
    bundle = realistic_patient()
    bundle["type"] = "document"
    assert error(client, bundle)["expression"] == ["Bundle.type"]


def test_not_a_bundle(client: FlaskClient) -> None:
    issue = error(client, {"resourceType": "Patient", "id": "x"})
    assert issue["expression"] == ["resourceType"]


def test_malformed_json_and_date(client: FlaskClient) -> None:
    resp = client.post(URL, data="{not json", headers={"Content-Type": FHIR})
    assert resp.status_code == 400
    resp = client.post("/operations/evaluate-eligibility?date=20-11-2026", json=realistic_patient(),
                       headers={"Content-Type": FHIR})
    assert resp.status_code == 400 and resp.get_json()["issue"][0]["expression"] == ["date"]


def test_invalid_fhir_is_400_naming_the_element(client: FlaskClient) -> None:
    bundle = realistic_patient()
    bundle["entry"][1]["resource"]["status"] = 7
    resp = client.post(URL, json=bundle, headers={"Content-Type": FHIR})
    assert resp.status_code == 400


# -- CDS cards -------------------------------------------------------------------------------

def test_cds_cards(client: FlaskClient) -> None:
    resp = client.post(f"/operations/cds-cards?date={EVALUATION_DATE.isoformat()}", json=cazzato_fig3_mwa_39f(),
                       headers={"Content-Type": FHIR})
    assert resp.status_code == 200
    cards = resp.get_json()["cards"]
    assert len(cards) == 2
    for card in cards:
        assert len(card["summary"]) <= 140
        assert card["indicator"] in {"info", "warning", "critical"}
        assert card["source"]["label"].startswith("netliver eligibility rules")
        assert card["uuid"]
    assert cards[0]["summary"].startswith("Eligible: TAE, cTACE") and "with caution: " in cards[0]["summary"]
    assert "MWA" in cards[0]["summary"].split("with caution: ")[1]
    # The detail names the cautioned therapy under its heading with the rule that decided it.
    caution = cards[0]["detail"].split("**Eligible with caution**")[1].split("**Not eligible**")[0]
    mwa = next(line for line in caution.splitlines() if line.startswith("- **Microwave ablation**"))
    assert "[" in mwa and "no rule decided" not in mwa
    assert "Lung shunt" in cards[1]["summary"]
    # Missing data is a list, each item with the therapies it would decide; no invented suggestions.
    assert cards[1]["detail"].startswith("**Missing data**\n\n- ")
    assert "(decides " in cards[1]["detail"] and "SIRT" in cards[1]["detail"]
    assert all("suggestions" not in card and "selectionBehavior" not in card for card in cards)


def test_cds_cards_bad_input_is_422(client: FlaskClient) -> None:
    bundle = realistic_patient()
    bundle["entry"] = bundle["entry"][1:]
    resp = client.post("/operations/cds-cards", json=bundle, headers={"Content-Type": FHIR})
    assert resp.status_code == 422


# -- records read closed-world, coded answers ------------------------------------------------

def test_ecog_as_loinc_answer_code(client: FlaskClient) -> None:
    b = PatientBundleBuilder("ecog", "1960-01-01")
    b._obs({"system": "http://loinc.org", "code": "89247-1"}, None,
           valueCodeableConcept={"coding": [{"system": "http://loinc.org", "code": "LA9625-0"}]})  # ECOG 3
    notes = " ".join(n["text"] for n in observation(evaluate(client, b.bundle()), "sirt")["note"])
    assert "SIRT-REL-ECOG · relative · met" in notes


def test_contrast_allergy_from_allergy_intolerance(client: FlaskClient) -> None:
    b = PatientBundleBuilder("allergy", "1960-01-01")
    b.add({"resourceType": "AllergyIntolerance", "id": "a1", "patient": b.subject,
           "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical",
                                          "code": "active"}]},
           "code": {"text": "Iodinated contrast media"}})
    result = evaluate(client, b.bundle())
    assert statuses(result)["ctace"] == "ineligible"
    obs = observation(result, "ctace")
    assert "TACE-ABS-CONTRAST-ALLERGY · absolute · met" in " ".join(n["text"] for n in obs["note"])
    assert "matched to contrast-allergy by its text only" in " ".join(n["text"] for n in obs["note"])
    assert {"url": "http://hl7.org/fhir/StructureDefinition/workflow-supportingInfo",
            "valueReference": {"reference": "AllergyIntolerance/a1"}} in obs["extension"]


def test_resolved_condition_is_not_a_contraindication(client: FlaskClient) -> None:
    b = PatientBundleBuilder("resolved", "1960-01-01")
    b.snomed_condition("389026000", "Ascites")
    b.resources[-1]["clinicalStatus"]["coding"][0]["code"] = "resolved"
    notes = " ".join(n["text"] for n in observation(evaluate(client, b.bundle()), "sirt")["note"])
    assert "SIRT-ABS-ASCITES · absolute · not-met" in notes


def test_observation_with_data_absent_reason_leaves_the_input_unknown(client: FlaskClient) -> None:
    b = PatientBundleBuilder("dar", "1960-01-01")
    b._obs({"system": OBSERVATION_CODE_SYSTEM, "code": "lung-shunt-fraction"}, None,
           dataAbsentReason={"coding": [{"system": "http://terminology.hl7.org/CodeSystem/data-absent-reason",
                                         "code": "not-performed"}]})
    obs = observation(evaluate(client, b.bundle()), "sirt")
    assert obs["valueCodeableConcept"]["coding"][0]["code"] == "insufficient-data"
    assert "lung-shunt-fraction" in [c["code"] for comp in obs["component"] for c in comp["code"]["coding"]]


def test_bilirubin_reported_as_a_bound(client: FlaskClient) -> None:
    b = PatientBundleBuilder("bound", "1960-01-01")
    obs = b.lab("bilirubin", 0.3, EVALUATION_DATE)
    obs["valueQuantity"]["comparator"] = "<"
    notes = " ".join(n["text"] for n in observation(evaluate(client, b.bundle()), "sirt")["note"])
    assert "[SIRT-ABS-BILIRUBIN · absolute · not-met]" in notes and "<0.3 mg/dL" in notes


def test_prior_prrt_procedure_gives_a_sirt_warning(client: FlaskClient) -> None:
    from datetime import date

    b = PatientBundleBuilder("prior", "1960-01-01")
    b.procedure("prrt", date(2025, 3, 1))
    notes = " ".join(n["text"] for n in observation(evaluate(client, b.bundle()), "sirt")["note"])
    assert "[SIRT-WARN-PRIOR-PRRT · warning · met]" in notes
    assert "[SIRT-WARN-PRIOR-SIRT · warning · not-met]" in notes


def test_missing_birth_date_is_asked_for_with_a_loinc_code(client: FlaskClient) -> None:
    b = PatientBundleBuilder("nobirth")  # no birthDate
    obs = observation(evaluate(client, b.bundle()), "liver-transplant")
    codes = [c for comp in obs.get("component", []) for c in comp["code"]["coding"]]
    assert {"system": "http://loinc.org", "code": "21112-8", "display": "Birth date (Patient.birthDate)"} in codes


def _absent_reasons(obs: dict[str, Any]) -> dict[str, str]:
    return {c["code"]: comp["dataAbsentReason"]["coding"][0]["code"]
            for comp in obs.get("component", []) for c in comp["code"]["coding"]}


def test_data_absent_reason_says_why_each_input_is_asked_for(client: FlaskClient) -> None:
    """never recorded → unknown; recorded but stale → temp-unknown; recorded and current but
    disagreeing with another input (Ki-67 5 % with grade 3) → error, not "stale"."""
    from datetime import date, timedelta

    b = PatientBundleBuilder("dar2", "1975-01-01")
    b.lab("ki67", 5, date(2024, 1, 1))
    b._obs({"system": "http://loinc.org", "code": "33732-9"}, date(2024, 1, 1), valueCodeableConcept={"text": "G3"})
    b.lab("platelets", 200, EVALUATION_DATE - timedelta(days=120))  # older than 90 days: stale
    reasons = _absent_reasons(observation(evaluate(client, b.bundle()), "liver-transplant"))
    assert reasons["29593-1"] == "error" and reasons["33732-9"] == "error"
    assert "21112-8" not in reasons  # birth date recorded: the age is not missing
    prrt = _absent_reasons(observation(evaluate(client, b.bundle()), "prrt"))
    assert prrt["777-3"] == "temp-unknown"
    assert prrt["krenning-score"] == "unknown"


@pytest.mark.parametrize(("system", "code"), [
    (OBSERVATION_CODE_SYSTEM, "krenning-score"),  # Krenning 0-4 is an ordinal score
    (OBSERVATION_CODE_SYSTEM, "liver-lesion-count"),
    ("http://loinc.org", "89247-1"),  # ECOG 0-5
    ("http://loinc.org", "33732-9"),  # grade 1-3
])
def test_fractional_scores_and_counts_are_refused(client: FlaskClient, system: str, code: str) -> None:
    """Krenning 2.5 would pass ">= 2" and fail "== 2" at once; a score or a count is a whole number."""
    b = PatientBundleBuilder("frac", "1960-01-01")
    b._obs({"system": system, "code": code}, None, valueQuantity={"value": 2.5, "unit": "1", "system": UCUM, "code": "1"})
    issue = error(client, b.bundle())
    assert issue["expression"] == ["Bundle.entry[1].resource.valueQuantity.value"]
    b = PatientBundleBuilder("whole", "1960-01-01")
    b._obs({"system": system, "code": code}, None, valueQuantity={"value": 2.0, "unit": "1", "system": UCUM, "code": "1"})
    assert len(statuses(evaluate(client, b.bundle()))) == 13


def test_later_value_on_the_same_day_wins_by_its_time(client: FlaskClient) -> None:
    """The newest value by effectiveDateTime wins (docs/eligibility.md). An INR of 2.1 at 08:00 corrected to
    1.3 at 15:00 the same day (vitamin K before an ablation) is 1.3, not a conflict."""
    b = PatientBundleBuilder("inr", "1960-01-01")
    day = EVALUATION_DATE.isoformat()
    early = b.lab("inr", 2.1, EVALUATION_DATE)
    early["effectiveDateTime"] = f"{day}T08:00:00+01:00"
    late = b.lab("inr", 1.3, EVALUATION_DATE)
    late["effectiveDateTime"] = f"{day}T15:00:00+01:00"
    notes = " ".join(n["text"] for n in observation(evaluate(client, b.bundle()), "ablation-mwa")["note"])
    assert "[ABL-REL-INR · relative · not-met]" in notes and "INR 1.3" in notes
    # the same instant written in two time zones with two values is a conflict
    late["effectiveDateTime"] = f"{day}T07:00:00Z"
    notes = " ".join(n["text"] for n in observation(evaluate(client, b.bundle()), "ablation-mwa")["note"])
    assert "[ABL-REL-INR · relative · unknown]" in notes and "conflicting" in notes


def test_lesion_assessment_after_the_evaluation_date_is_not_the_latest(client: FlaskClient) -> None:
    from datetime import timedelta

    b = PatientBundleBuilder("later", "1960-01-01")
    b.lesions([20, 15], EVALUATION_DATE - timedelta(days=20))
    b.lesions([25, 18, 12, 11, 10, 9], EVALUATION_DATE + timedelta(days=30))  # a later scan
    notes = " ".join(n["text"] for n in observation(evaluate(client, b.bundle()), "ablation-mwa")["note"])
    assert "[ABL-IND-OLIGO · indication · met]" in notes and "Number of liver lesions 2 " in notes
    assert f"Lesion assessment of {(EVALUATION_DATE + timedelta(days=30)).isoformat()}" in notes


@pytest.mark.parametrize(("value", "unit", "result"), [
    (74, "10*3/uL", "met"), (75, "10*3/uL", "not-met"),  # 10^3/µL = 10^9/L
    (74, "10*9/L", "met"), (75000, "/uL", "not-met"),
])
def test_platelet_units_at_the_netter1_limit(client: FlaskClient, value: float, unit: str, result: str) -> None:
    b = PatientBundleBuilder("plt2", "1960-01-01")
    b.lab("platelets", value, EVALUATION_DATE, unit=unit)
    notes = " ".join(n["text"] for n in observation(evaluate(client, b.bundle()), "prrt")["note"])
    assert f"[PRRT-ABS-PLATELETS · absolute · {result}]" in notes


@pytest.mark.parametrize(("umol_l", "result"), [(176.8, "not-met"), (176.9, "met")])  # 2.0 mg/dL x 88.4
def test_creatinine_micromolar_at_the_retnet_limit(client: FlaskClient, umol_l: float, result: str) -> None:
    b = PatientBundleBuilder("cr2", "1960-01-01")
    b.lab("creatinine_umol", umol_l, EVALUATION_DATE)
    notes = " ".join(n["text"] for n in observation(evaluate(client, b.bundle()), "ctace")["note"])
    assert f"[TACE-WARN-RETNET-CREATININE · warning · {result}]" in notes


@pytest.mark.parametrize(("text", "code"), [
    ("Pancreaticoduodenectomy (Whipple)", "bilioenteric-anastomosis"),
    ("Roux-en-Y hepaticojejunostomy", "bilioenteric-anastomosis"),
    ("ERCP with endoscopic sphincterotomy", "sphincterotomy"),
])
def test_bilioenteric_anastomosis_recorded_as_a_procedure(client: FlaskClient, text: str, code: str) -> None:
    """Cazzato 2021 Table 1: bilio-enteric anastomosis / sphincterotomy contraindicate ablation and TACE. After a
    Whipple for a pancreatic NET it is usually in the procedure history, not on the problem list;
    reading it closed-world from Conditions only would assume it absent."""
    b = PatientBundleBuilder("whipple", "1960-01-01")
    b.add({"resourceType": "Procedure", "id": "whipple-1", "status": "completed", "subject": b.subject,
           "code": {"text": text}, "performedDateTime": "2021-03-02"})
    result = evaluate(client, b.bundle())
    assert statuses(result)["ctace"] == "ineligible"
    assert statuses(result)["ablation-mwa"] == "ineligible"
    notes = " ".join(n["text"] for n in observation(result, "ctace")["note"])
    assert "[TACE-ABS-BILIOENTERIC · absolute · met]" in notes and f"matched to {code} by its text" in notes


def test_birth_year_only_takes_the_oldest_possible_age(client: FlaskClient) -> None:
    """birthDate "1965" evaluated on 2026-11-20: the patient is 60 or 61. The age limits are upper
    limits (Milan-NET <= 60 default), so the oldest possible age (61) is used, and said."""
    b = PatientBundleBuilder("year", "1965")
    notes = " ".join(n["text"] for n in observation(evaluate(client, b.bundle()), "liver-transplant")["note"])
    assert "[LT-IND-AGE · indication · not-met]" in notes and "Age on the evaluation date 61" in notes
    assert "birthDate 1965 gives the year only" in notes


def test_allergy_of_another_patient_is_422_naming_its_patient_element(client: FlaskClient) -> None:
    b = PatientBundleBuilder("own", "1960-01-01")
    b.add({"resourceType": "AllergyIntolerance", "id": "a2", "patient": {"reference": "Patient/someone-else"},
           "code": {"text": "Iodinated contrast media"}})
    issue = error(client, b.bundle())
    assert issue["expression"] == ["Bundle.entry[1].resource.patient"]
