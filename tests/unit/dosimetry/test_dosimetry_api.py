"""``POST /operations/sirt-activity`` through the Flask test client (internal service protocol)."""

from __future__ import annotations

from typing import Any

import pytest
from flask.testing import FlaskClient

from netliver.fhir.codesystems import OBSERVATION_CODE_SYSTEM
from netliver.fhir.models import validate_resource
from netliver.settings import Settings
from services.dosimetry.app import create_app

URL = "/operations/sirt-activity"


@pytest.fixture(scope="module")
def client() -> FlaskClient:
    app = create_app(Settings.from_env({"AUTH_MODE": "off", "LOG_LEVEL": "WARNING"}))
    return app.test_client()


def _params(**values: Any) -> dict[str, Any]:
    """Parameters from keyword arguments: str → valueCode (or valueDateTime for *Time), bool →
    valueBoolean, numbers → valueDecimal, dict → valueReference."""
    out = []
    for name, value in values.items():
        if isinstance(value, bool):
            out.append({"name": name, "valueBoolean": value})
        elif isinstance(value, dict):
            out.append({"name": name, "valueReference": value})
        elif isinstance(value, str):
            out.append({"name": name, "valueDateTime" if name.endswith("Time") else "valueCode": value})
        else:
            out.append({"name": name, "valueDecimal": value})
    return {"resourceType": "Parameters", "parameter": out}


# partition worked example (see test_dosimetry_planning): 1.57163 GBq, tumour 120 Gy, normal 30 Gy
PARTITION = {"method": "partition", "device": "resin", "liverVolumeMl": 1500, "tumorVolumeMl": 300,
             "tumorToNormalRatio": 4, "lungShuntFraction": 0.05, "targetDoseGy": 120, "normalLiverLimitGy": 40}


def _out(body: dict[str, Any]) -> dict[str, list[Any]]:
    values: dict[str, list[Any]] = {}
    for p in body["output"]["parameter"]:
        value = next(v for k, v in p.items() if k.startswith("value"))
        values.setdefault(p["name"], []).append(value)
    return values


def _post(client: FlaskClient, **values: Any) -> Any:
    return client.post(URL, json=_params(**values))


def test_partition_plan_outputs_and_written_resources(client: FlaskClient) -> None:
    resp = _post(client, **PARTITION, patient={"reference": "Patient/p1"},
                 calibrationTime="2026-11-20T12:00:00Z", treatmentTime="2026-11-22T16:06:00+02:00")
    assert resp.status_code == 200
    body = resp.get_json()
    out = _out(body)
    assert out["activityGBq"][0] == pytest.approx(1.5716, abs=1e-4)
    # 16:06+02:00 is 14:06Z: 2 days 2 h 6 min = 50.1 h; A_cal = 1.57163·2^(50.1/64.1) = 2.7015 GBq
    assert out["activityAtCalibrationGBq"][0] == pytest.approx(1.57163 * 2 ** (50.1 / 64.1), abs=1e-4)
    assert out["tumorDoseGy"] == [120.0]
    assert out["normalLiverDoseGy"] == [30.0]
    assert out["lungDoseGy"][0] == pytest.approx(3.90, abs=0.01)
    assert out["doseConstant"] == [49.67]
    assert out["limitingFactor"] == ["tumor-target"]
    assert out["lsfReduction"] == [0.0]
    assert out["status"] == ["ok"]
    assert "warning" not in out
    # the other named dose constants and half-life, as notes: 1.57163·49.67/50 = 1.5613 GBq
    assert any("C = 50" in n and "1.5613 GBq" in n for n in out["note"])
    assert any("64.2 h" in n for n in out["note"])
    validate_resource(body["output"])
    obs, prov = body["write"]
    validate_resource(obs)
    validate_resource(prov)
    assert obs["resourceType"] == "Observation"
    assert obs["code"]["coding"][0] == {"system": OBSERVATION_CODE_SYSTEM, "code": "sirt-activity-plan",
                                        "display": "SIRT activity plan"}
    assert obs["subject"] == {"reference": "Patient/p1"}
    comps = {c["code"]["coding"][0]["code"]: c for c in obs["component"]}
    assert comps["activityGBq"]["valueQuantity"]["code"] == "GBq"
    assert comps["tumorDoseGy"]["valueQuantity"]["value"] == 120.0
    assert comps["status"]["valueString"] == "ok"
    assert out["plan"] == [{"reference": f"Observation/{obs['id']}"}]
    assert prov["target"] == [{"reference": f"Observation/{obs['id']}"}]
    assert any("dose-constant/eanm" in p and "49.67" in p for p in prov["policy"])
    assert "dosimetry/" in prov["agent"][0]["who"]["identifier"]["value"]


def test_same_request_same_ids_and_different_request_different_ids(client: FlaskClient) -> None:
    first = _post(client, **PARTITION).get_json()
    again = _post(client, **PARTITION).get_json()
    assert [r["id"] for r in first["write"]] == [r["id"] for r in again["write"]]
    other = _post(client, **{**PARTITION, "targetDoseGy": 110}).get_json()
    assert first["write"][0]["id"] != other["write"][0]["id"]


def test_therasphere_example_with_dose_constant_50(client: FlaskClient) -> None:
    resp = _post(client, method="mird", device="glass", targetDoseGy=90, liverVolumeMl=1500,
                 tissueDensityGPerMl=1.0, lungShuntFraction=0.10, doseConstant=50)
    out = _out(resp.get_json())
    assert out["activityGBq"] == [3.0]
    assert out["lungDoseGy"] == [15.0]
    assert out["doseConstant"] == [50]
    assert out["limitingFactor"] == ["mird"]
    prov = resp.get_json()["write"][1]
    assert any("dose-constant/therasphere" in p for p in prov["policy"])


def test_bsa_plan_with_lung_shunt_reduction_warns(client: FlaskClient) -> None:
    out = _out(_post(client, method="bsa", device="resin", heightCm=180, weightKg=80, tumorInvolvement=0.2,
                     lungShuntFraction=0.12, bsaFormula="mosteller").get_json())
    assert out["activityGBq"] == [1.6]  # Mosteller 2.0 m²: (2.0 − 0.2 + 0.2)·0.8
    dubois = _out(_post(client, method="bsa", device="resin", heightCm=180, weightKg=80, tumorInvolvement=0.2,
                        lungShuntFraction=0.12).get_json())
    assert dubois["activityGBq"] == [1.5971]  # DuBois 1.99636 m² (the default): (1.99636)·0.8
    assert out["lsfReduction"] == [0.2]
    assert out["limitingFactor"] == ["bsa"]
    assert out["status"] == ["caution"]
    assert len(out["warning"]) == 1 and "lsf-band" in out["warning"][0]


@pytest.mark.parametrize(("lsf", "status"), [(0.20, "caution"), (0.2001, "contraindicated")])
def test_lung_shunt_above_20_percent_is_contraindicated_not_capped(client: FlaskClient, lsf: float,
                                                                   status: str) -> None:
    resp = _post(client, method="bsa", bsaM2=2.0, tumorInvolvement=0.2, lungShuntFraction=lsf)
    assert resp.status_code == 200
    body = resp.get_json()
    out = _out(body)
    assert out["status"] == [status]
    if status == "contraindicated":
        assert out["activityGBq"] == [2.0]  # the BSA activity, reported unreduced and uncapped
        assert any("lung-shunt-above-20" in w for w in out["warning"])
        notes = [n["text"] for n in body["write"][0]["note"]]
        assert any("lung-shunt-above-20" in n for n in notes)


@pytest.mark.parametrize(("limit", "status"), [(30.0, "ok"), (27.3, "ok"), (27.2, "contraindicated")])
def test_lung_dose_over_the_limit_is_contraindicated(client: FlaskClient, limit: float, status: str) -> None:
    # MIRD, glass: 120 Gy to 1500 mL·1.03 g/mL = 1.545 kg → A = 120·1.545/(49.67·0.85) = 4.3913 GBq;
    # lung (1.2 kg) = 49.67·4.3913·0.15/1.2 = 27.265 Gy
    out = _out(_post(client, method="mird", device="glass", targetDoseGy=120, liverVolumeMl=1500,
                     lungShuntFraction=0.15, lungMassKg=1.2, lungLimitGy=limit).get_json())
    assert out["lungDoseGy"][0] == pytest.approx(27.27, abs=0.01)
    assert out["status"] == [status]
    assert out["activityGBq"][0] == pytest.approx(4.3913, abs=1e-4)  # never capped


def test_protocol_and_prior_prrt_warnings(client: FlaskClient) -> None:
    out = _out(_post(client, **{**PARTITION, "targetDoseGy": 90}, protocol="net-100-150",
                     priorPrrt=True).get_json())
    rules = " ".join(out["warning"])
    assert "net-100-150/tumor-min" in rules
    assert "prior-prrt" in rules
    assert out["protocol"] == ["net-100-150"]


def test_multi_lesion_partition(client: FlaskClient) -> None:
    # lesions 300 mL T/N 4 and 100 mL T/N 2; normal liver 1100 mL. The tumour target applies to the
    # least-dosed lesion: D_N = 60 Gy, lesion 2 = 120 Gy, lesion 1 = 240 Gy (normal liver > 40 Gy warns)
    body = _params(**{k: v for k, v in PARTITION.items() if k != "normalLiverLimitGy"})
    body["parameter"].append({"name": "lesion", "part": [{"name": "volumeMl", "valueDecimal": 100},
                                                         {"name": "tumorToNormalRatio", "valueDecimal": 2}]})
    out = _out(client.post(URL, json=body).get_json())
    assert out["lesionDoseGy"] == [120.0]
    assert out["tumorDoseGy"] == [240.0]
    assert out["normalLiverDoseGy"] == [60.0]
    assert any("normal-liver-max" in w for w in out["warning"])


def _issue(resp: Any) -> dict[str, Any]:
    assert resp.status_code == 422, resp.get_json()
    body = resp.get_json()
    assert body["resourceType"] == "OperationOutcome"
    issue: dict[str, Any] = body["issue"][0]
    return issue


@pytest.mark.parametrize(("values", "named"), [
    ({"method": "partition", "device": "resin", "liverVolumeMl": 1500, "tumorVolumeMl": 300,
      "lungShuntFraction": 0.05, "targetDoseGy": 120}, "tumorToNormalRatio"),
    ({"method": "mird", "device": "glass", "liverVolumeMl": 1500, "lungShuntFraction": 0.05}, "targetDoseGy"),
    ({"method": "bsa", "bsaM2": 2.0, "lungShuntFraction": 0.05}, "tumorInvolvement"),
    ({"method": "bsa", "tumorInvolvement": 0.2, "lungShuntFraction": 0.05}, "heightCm"),
    ({"device": "resin", "bsaM2": 2.0}, "method"),
])
def test_missing_inputs_name_the_parameter(client: FlaskClient, values: dict[str, Any], named: str) -> None:
    issue = _issue(_post(client, **values))
    assert issue["code"] == "required"
    assert named in issue["expression"]


@pytest.mark.parametrize(("override", "named", "index"), [
    ({"lungShuntFraction": 1.2}, "lungShuntFraction", 5),
    ({"lungShuntFraction": -0.1}, "lungShuntFraction", 5),
    ({"tumorVolumeMl": 1600}, "tumorVolumeMl", 3),
    ({"tumorVolumeMl": -1}, "tumorVolumeMl", 3),
    ({"liverVolumeMl": 0}, "liverVolumeMl", 2),
    ({"tumorToNormalRatio": 0}, "tumorToNormalRatio", 4),
    ({"method": "empiric"}, "method", 0),
    ({"device": "ceramic"}, "device", 1),
])
def test_impossible_values_name_the_parameter(client: FlaskClient, override: dict[str, Any], named: str,
                                              index: int) -> None:
    issue = _issue(_post(client, **{**PARTITION, **override}))
    assert named in issue["expression"]
    assert f"Parameters.parameter[{index}].value" in issue["expression"][0]


def test_negative_mass_and_fraction_extras(client: FlaskClient) -> None:
    assert "lungMassKg" in _issue(_post(client, **PARTITION, lungMassKg=-1))["expression"]
    assert "perfusedFraction" in _issue(_post(client, **PARTITION, perfusedFraction=1.5))["expression"]
    assert "tissueDensityGPerMl" in _issue(_post(client, **PARTITION, tissueDensityGPerMl=0))["expression"]


def test_treatment_before_calibration(client: FlaskClient) -> None:
    # implant 1 h before calibration: A_cal = 1.57163·2^(−1/64.1) = 1.55476 GBq (less than implanted)
    resp = _post(client, **PARTITION, calibrationTime="2026-11-20T12:00:00Z", treatmentTime="2026-11-20T11:00:00Z")
    assert resp.status_code == 200
    out = _out(resp.get_json())
    assert out["activityAtCalibrationGBq"][0] == pytest.approx(1.57163 * 2 ** (-1 / 64.1), abs=1e-4)
    assert any("treatment-before-calibration" in w for w in out["warning"])
    assert out["status"] == ["ok"]
    date_only = _issue(_post(client, **PARTITION, calibrationTime="2026-11-20",
                             treatmentTime="2026-11-21T12:00:00Z"))
    assert "calibrationTime" in date_only["expression"]


def test_wrong_types_unknown_and_repeated_parameters(client: FlaskClient) -> None:
    body = _params(**PARTITION)
    body["parameter"][2] = {"name": "liverVolumeMl", "valueString": "1500"}
    assert "liverVolumeMl" in _issue(client.post(URL, json=body))["expression"]
    assert "lungShunt" in _issue(_post(client, **PARTITION, lungShunt=0.1))["expression"]
    body = _params(**PARTITION)
    body["parameter"].append({"name": "targetDoseGy", "valueDecimal": 130})
    assert "targetDoseGy" in _issue(client.post(URL, json=body))["expression"]
    bad_patient = _issue(_post(client, **PARTITION, patient={"reference": "Group/1"}))
    assert "patient" in bad_patient["expression"]


@pytest.mark.parametrize(("override", "named"), [
    ({"doseConstant": 49670}, "doseConstant"),   # mGy·kg/GBq instead of Gy·kg/GBq
    ({"doseConstant": 1e308}, "doseConstant"),   # once gave "Infinity" in the JSON answer
    ({"halfLifeH": 2.67}, "halfLifeH"),          # days instead of hours
    ({"tissueDensityGPerMl": 1030}, "tissueDensityGPerMl"),  # kg/m³ instead of g/mL
    ({"lungMassKg": 1000}, "lungMassKg"),        # grams instead of kg
    ({"targetDoseGy": 12000}, "targetDoseGy"),   # cGy instead of Gy
    ({"liverVolumeMl": 1.5}, "liverVolumeMl"),    # litres instead of mL
    # the tumour-target activity overflows (no other bound: no normal-liver limit, no shunt)
    ({"tumorToNormalRatio": 1e-308, "normalLiverLimitGy": None, "lungShuntFraction": 0}, "targetDoseGy"),
])
def test_implausible_constants_and_overflow_are_422_not_wrong_numbers(
        client: FlaskClient, override: dict[str, Any], named: str) -> None:
    values = {k: v for k, v in {**PARTITION, **override}.items() if v is not None}
    issue = _issue(_post(client, **values))
    assert named in issue["expression"]


def test_decay_underflow_is_422_not_500(client: FlaskClient) -> None:
    issue = _issue(_post(client, **PARTITION, calibrationTime="2016-11-20T12:00:00Z",
                         treatmentTime="2026-11-20T12:00:00Z"))
    assert "treatmentTime" in issue["expression"]


def test_not_parameters_and_not_json(client: FlaskClient) -> None:
    resp = client.post(URL, json={"resourceType": "Patient"})
    assert resp.status_code == 422
    resp = client.post(URL, data="{", content_type="application/fhir+json")
    assert resp.status_code == 400


def test_the_request_is_validated_but_for_the_stored_records_the_gateway_adds(client: FlaskClient) -> None:
    """The record parameters hold the gateway's reads of its own store (validated when stored):
    they are read field by field, not validated again; every other parameter still is."""
    record = {"resourceType": "Observation", "id": "earlier", "status": "final",
              "code": {"coding": [{"system": OBSERVATION_CODE_SYSTEM, "code": "sirt-activity-plan"}]},
              "effectiveDateTime": "2026-01-05", "valueQuantity": {"value": "not a number"}}  # not R4
    body = _params(**PARTITION)
    body["parameter"].append({"name": "record", "resource": record})
    assert client.post(URL, json=body).status_code == 200
    bad = _params(**PARTITION)
    bad["parameter"][2]["valueDecimal"] = "1500 mL"  # liverVolumeMl: the models still refuse it
    resp = client.post(URL, json=bad)
    assert resp.status_code == 400
    assert any("parameter[2]" in e for i in resp.get_json()["issue"] for e in i.get("expression", []))
