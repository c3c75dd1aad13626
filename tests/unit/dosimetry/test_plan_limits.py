"""The SIRT plan Observation keeps the targets and limits it was checked against (value, unit and
where each came from), so the page and any EHR show the predicted doses against them."""

from __future__ import annotations

from typing import Any

import pytest
from flask.testing import FlaskClient

from netliver.fhir.models import validate_resource
from netliver.report.case import sirt_plan
from netliver.settings import Settings
from services.dosimetry.app import create_app

URL = "/operations/sirt-activity"
PARTITION = {"method": "partition", "device": "resin", "liverVolumeMl": 1500, "tumorVolumeMl": 300,
             "tumorToNormalRatio": 4, "lungShuntFraction": 0.05, "targetDoseGy": 120, "normalLiverLimitGy": 40}


@pytest.fixture(scope="module")
def client() -> FlaskClient:
    return create_app(Settings.from_env({"AUTH_MODE": "off", "LOG_LEVEL": "WARNING"})).test_client()


def _plan(client: FlaskClient, **values: Any) -> dict[str, Any]:
    params = [{"name": k, "valueBoolean": v} if isinstance(v, bool) else
              {"name": k, "valueCode": v} if isinstance(v, str) else {"name": k, "valueDecimal": v}
              for k, v in values.items()]
    resp = client.post(URL, json={"resourceType": "Parameters", "parameter": params})
    assert resp.status_code == 200, resp.get_json()
    obs: dict[str, Any] = resp.get_json()["write"][0]
    validate_resource(obs)
    return obs


def _limits(obs: dict[str, Any]) -> dict[str, tuple[float, str, str]]:
    """limit code → (value, UCUM code, where it came from)."""
    return {c["code"]["coding"][0]["code"]: (c["valueQuantity"]["value"], c["valueQuantity"]["code"], c["code"]["text"])
            for c in obs["component"] if c["code"]["coding"][0]["code"].endswith(("LimitGy", "TargetGy"))}


def test_a_partition_plan_keeps_the_targets_and_limits_it_was_given(client: FlaskClient) -> None:
    limits = _limits(_plan(client, **PARTITION))
    assert limits == {
        "tumorTargetGy": (120.0, "Gy", "targetDoseGy of the request"),
        "normalLiverLimitGy": (40.0, "Gy", "normalLiverLimitGy of the request"),
        "lungLimitGy": (30.0, "Gy", "default (EANM 2022)"),
        "cumulativeLungLimitGy": (50.0, "Gy", "default (EANM 2022)"),
    }


def test_given_lung_limits_are_kept_as_given(client: FlaskClient) -> None:
    limits = _limits(_plan(client, **PARTITION, lungLimitGy=25, cumulativeLungLimitGy=45))
    assert limits["lungLimitGy"] == (25.0, "Gy", "lungLimitGy of the request")
    assert limits["cumulativeLungLimitGy"] == (45.0, "Gy", "cumulativeLungLimitGy of the request")


def test_without_a_given_limit_the_protocols_is_kept_where_the_dose_is_predicted(client: FlaskClient) -> None:
    # the partition model without normalLiverLimitGy: the protocol's 40 Gy (EANM 2022, resin) checks the normal liver
    plain = _limits(_plan(client, **{k: v for k, v in PARTITION.items() if k != "normalLiverLimitGy"}))
    assert plain["normalLiverLimitGy"][0] == 40.0 and "eanm-2022-resin" in plain["normalLiverLimitGy"][2]
    compromised = _limits(_plan(client, **{k: v for k, v in PARTITION.items() if k != "normalLiverLimitGy"},
                                compromisedLiver=True))
    assert compromised["normalLiverLimitGy"][0] == 30.0 and "compromised" in compromised["normalLiverLimitGy"][2]
    # MIRD targets the perfused liver; with no tumour compartment it predicts no tumour or normal-liver dose
    mird = _limits(_plan(client, method="mird", device="glass", targetDoseGy=120, liverVolumeMl=1500,
                         lungShuntFraction=0.05))
    assert mird["perfusedTargetGy"] == (120.0, "Gy", "targetDoseGy of the request")
    assert "tumorTargetGy" not in mird and "normalLiverLimitGy" not in mird
    bsa = _limits(_plan(client, method="bsa", bsaM2=1.8, tumorInvolvement=0.2, lungShuntFraction=0.05))
    assert set(bsa) == {"lungLimitGy", "cumulativeLungLimitGy"}


def test_the_page_reads_each_predicted_dose_beside_its_stored_limit(client: FlaskClient) -> None:
    obs = _plan(client, **PARTITION, lungLimitGy=25)
    plan = sirt_plan(obs)
    shown = {d.what: (d.predicted.text(1), d.limit.text(1) if d.limit else None, d.kind, d.source) for d in plan.doses}
    assert shown["Tumour"] == ("120.0 Gy", "120.0 Gy", "minimum", "targetDoseGy of the request")
    assert shown["Normal liver"] == ("30.0 Gy", "40.0 Gy", "maximum", "normalLiverLimitGy of the request")
    assert shown["Lung"][1:] == ("25.0 Gy", "maximum", "lungLimitGy of the request")
    assert shown["Lung, cumulative"][1:] == ("50.0 Gy", "maximum", "default (EANM 2022)")
    assert shown["Perfused liver"][1] is None  # a partition plan has no perfused-liver target
    assert plan.limits_recorded
    old = {**obs, "component": [c for c in obs["component"] if not c["code"]["coding"][0]["code"].endswith(
        ("LimitGy", "TargetGy"))]}
    assert not sirt_plan(old).limits_recorded  # a plan written before the limits were stored
