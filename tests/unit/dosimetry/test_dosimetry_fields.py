"""Domain errors name the domain's fields; the FHIR boundary alone names the contract's parameters."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import pytest

from services.dosimetry.domain.errors import DosimetryInputError
from services.dosimetry.domain.lung import lung_shunt_band
from services.dosimetry.domain.mird import single_compartment_activity_gbq
from services.dosimetry.domain.partition import Lesion, solve_partition_activity
from services.dosimetry.domain.planning import PlanInputs, plan_sirt
from services.dosimetry.fhir_in import ACCEPTED_PARAMETERS, PARAMETER_OF_FIELD, input_error

pytestmark = pytest.mark.unit

PLAN_FIELDS = {f.name for f in dataclasses.fields(PlanInputs)}


def test_every_domain_field_maps_to_one_published_parameter() -> None:
    for domain_field, parameter in PARAMETER_OF_FIELD.items():
        assert domain_field.split(".")[0] in PLAN_FIELDS, domain_field
        assert parameter.split(".")[0] in ACCEPTED_PARAMETERS, parameter
    assert len(set(PARAMETER_OF_FIELD.values())) == len(PARAMETER_OF_FIELD)


_LSF_ENTRY_POINTS: dict[str, Callable[[float], Any]] = {
    "plan": lambda lsf: plan_sirt(PlanInputs(method="mird", device="glass", target_dose_gy=120,
                                             liver_volume_ml=1500, lung_shunt_fraction=lsf)),
    "mird": lambda lsf: single_compartment_activity_gbq(120, 1.5, lsf),
    "partition": lambda lsf: solve_partition_activity(lesions=[Lesion(0.3, 4)], normal_mass_kg=1.2,
                                                      lung_shunt_fraction=lsf, dose_constant_gy_kg_per_gbq=49.67,
                                                      tumor_target_gy=120),
}


@pytest.mark.parametrize("entry", sorted(_LSF_ENTRY_POINTS))
@pytest.mark.parametrize("lsf", [-0.01, 1.0, 1.01, float("nan"), float("inf")])
def test_one_lung_shunt_check_names_the_domain_field_everywhere(entry: str, lsf: float) -> None:
    with pytest.raises(DosimetryInputError) as err:
        _LSF_ENTRY_POINTS[entry](lsf)
    assert err.value.field == "lung_shunt_fraction"
    assert err.value.message.startswith("must be a fraction between 0 and 1 (below 1)")


@pytest.mark.parametrize("entry", sorted(_LSF_ENTRY_POINTS))
@pytest.mark.parametrize("lsf", [0.0, 0.5, 0.999])
def test_the_same_check_accepts_the_boundaries_inside(entry: str, lsf: float) -> None:
    _LSF_ENTRY_POINTS[entry](lsf)


def test_the_lung_shunt_band_accepts_a_whole_shunt_and_refuses_more() -> None:
    assert lung_shunt_band(1.0).contraindicated
    with pytest.raises(DosimetryInputError) as err:
        lung_shunt_band(1.01)
    assert err.value.field == "lung_shunt_fraction"


def test_the_boundary_names_the_contract_parameter() -> None:
    error = input_error(DosimetryInputError("lung_shunt_fraction", "must be a fraction"), None)
    assert error.status == 422 and error.expression == ["lungShuntFraction"]
    assert error.diagnostics == "lungShuntFraction: must be a fraction"
    engine = input_error(DosimetryInputError("voxel_size_mm", "no kernel"), None)
    assert engine.expression == ["voxel_size_mm"]
