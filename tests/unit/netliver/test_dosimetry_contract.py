"""The dosimetry rules the gateway and the dosimetry service share (netliver.dosimetry_contract)."""

from __future__ import annotations

import pytest

from netliver.dosimetry_contract import (
    HALF_LIFE_TOLERANCE,
    NUCLIDES_BY_CODE,
    TC99M,
    Y90,
    identify_nuclide,
    parse_voxel_parameters,
)
from netliver.fhir.outcome import FhirError
from services.dosimetry.domain.constants import Y90_HALF_LIFE_H


def test_the_y90_half_life_is_the_one_the_plans_use() -> None:
    assert Y90.half_life_s == pytest.approx(Y90_HALF_LIFE_H * 3600, rel=1e-12)


@pytest.mark.parametrize("nuclide", [Y90, TC99M])
def test_a_half_life_names_its_nuclide_up_to_the_tolerance_and_not_beyond(nuclide) -> None:  # type: ignore[no-untyped-def]
    edge = HALF_LIFE_TOLERANCE * nuclide.half_life_s
    assert identify_nuclide(half_life_s=nuclide.half_life_s + 0.99 * edge) is nuclide
    assert identify_nuclide(half_life_s=nuclide.half_life_s - 0.99 * edge) is nuclide
    assert identify_nuclide(half_life_s=nuclide.half_life_s + 1.01 * edge) is None
    assert identify_nuclide(half_life_s=nuclide.half_life_s - 1.01 * edge) is None


def test_the_code_decides_then_the_half_life_then_only_without_either_the_names() -> None:
    assert identify_nuclide("72454006", Y90.half_life_s, "yttrium") is TC99M
    assert identify_nuclide("C-162A7") is Y90
    assert identify_nuclide("", 1.1 * TC99M.half_life_s, "Tc99m MAA") is None
    assert identify_nuclide("", None, "Tc99m MAA") is TC99M
    assert identify_nuclide("", float("nan"), "90Y resin microspheres") is Y90
    assert identify_nuclide("", None, "F-18 FDG") is None
    assert {n.name for n in NUCLIDES_BY_CODE.values()} == {"Y-90", "Tc-99m", "F-18", "Ga-68"}


def _voxel(*params: dict[str, object]) -> dict[str, object]:
    return {"resourceType": "Parameters", "parameter": list(params)}


def test_voxel_parameters_accept_a_complete_request_and_default_the_method() -> None:
    out = parse_voxel_parameters(_voxel({"name": "studyInstanceUid", "valueString": " 1.2.3 "},
                                        {"name": "administeredActivityGBq", "valueDecimal": 50},
                                        {"name": "patient", "valueReference": {"reference": "Patient/p1"}}))
    assert out == {"studyInstanceUid": "1.2.3", "administeredActivityGBq": 50.0, "patient": "Patient/p1",
                   "method": "ldm"}


def test_voxel_parameters_take_a_registration_series() -> None:
    """A CT in another Frame of Reference is used through a DICOM Spatial Registration; the
    request may name the REG series (else the study's REG series are searched)."""
    out = parse_voxel_parameters(_voxel({"name": "studyInstanceUid", "valueString": "1.2.3"},
                                        {"name": "administeredActivityGBq", "valueDecimal": 2},
                                        {"name": "registrationSeriesUid", "valueString": "1.2.3.9"}))
    assert out["registrationSeriesUid"] == "1.2.3.9"


@pytest.mark.parametrize(("params", "expression"), [
    ([{"name": "administeredActivityGBq", "valueDecimal": 2}], "Parameters.parameter.where(name='studyInstanceUid')"),
    ([{"name": "studyInstanceUid", "valueString": "1.2"}, {"name": "administeredActivityGBq", "valueDecimal": 50.01}],
     "Parameters.parameter[1].valueDecimal"),
    ([{"name": "studyInstanceUid", "valueString": "1.2"}, {"name": "administeredActivityGBq", "valueDecimal": 0}],
     "Parameters.parameter[1].valueDecimal"),
    ([{"name": "studyInstanceUid", "valueString": "1.2.x"}, {"name": "administeredActivityGBq", "valueDecimal": 1}],
     "Parameters.parameter.where(name='studyInstanceUid')"),
    ([{"name": "dose", "valueDecimal": 1}], "Parameters.parameter[0].name"),
    ([{"name": "studyInstanceUid", "valueString": "1.2"}, {"name": "administeredActivityGBq", "valueDecimal": 1},
      {"name": "method", "valueCode": "mc"}], "Parameters.parameter.where(name='method')"),
    ([{"name": "studyInstanceUid", "valueString": "1.2"}, {"name": "administeredActivityGBq", "valueDecimal": 1},
      {"name": "registrationSeriesUid", "valueString": "reg-1"}],
     "Parameters.parameter.where(name='registrationSeriesUid')"),
])
def test_voxel_parameters_refuse_naming_the_element(params: list[dict[str, object]], expression: str) -> None:
    with pytest.raises(FhirError) as err:
        parse_voxel_parameters(_voxel(*params))
    assert err.value.status == 422
    assert err.value.to_fhir()["issue"][0]["expression"] == [expression]
