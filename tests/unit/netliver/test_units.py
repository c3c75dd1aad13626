"""UCUM conversions of the shared library: published clinical factors, round trips, refusals."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from netliver.units import (
    BILIRUBIN_G_PER_MOL,
    CREATININE_G_PER_MOL,
    UnitError,
    convert,
    normalise_unit,
)

# Clinical conversion factors (e.g. SI unit tables of laboratory medicine): bilirubin
# 1 mg/dL = 17.1 µmol/L; creatinine 1 mg/dL = 88.4 µmol/L.


@pytest.mark.parametrize(("value", "unit", "expected"), [
    ("17.1", "umol/L", "1"), ("51.3", "µmol/L", "3"), ("34.2", "umol/L", "2"),
])
def test_bilirubin_micromolar_to_mg_per_dl(value: str, unit: str, expected: str) -> None:
    got = convert(Decimal(value), unit, "mg/dL", molar_mass_g_per_mol=BILIRUBIN_G_PER_MOL)
    assert got == Decimal(expected)


def test_creatinine_micromolar_to_mg_per_dl() -> None:
    assert convert(Decimal("176.8"), "umol/L", "mg/dL", molar_mass_g_per_mol=CREATININE_G_PER_MOL) == Decimal(2)
    assert convert(Decimal("1"), "mg/dL", "umol/L", molar_mass_g_per_mol=CREATININE_G_PER_MOL) == Decimal("88.4")


def test_counts_per_microlitre_equal_giga_per_litre() -> None:
    assert convert(150, "10*3/uL", "10*9/L") == 150
    assert convert(150, "/nL", "10*9/L") == 150
    assert convert(1, "mL/s", "mL/min") == 60
    assert convert(150, "x10^9/L", "/uL") == 150_000
    # 150 × 10⁹/L of platelets written per litre in thousands and in millions
    assert convert(150_000_000, "10*3/L", "10*9/L") == 150
    assert convert(150_000, "10*6/L", "10*9/L") == 150
    assert convert(Decimal("0.15"), "L/min", "mL/min") == 150


def test_lengths_volumes_activities_doses() -> None:
    assert convert("3.5", "cm", "mm") == 35
    assert convert(1500, "mL", "L") == Decimal("1.5")
    assert convert(1, "mCi", "MBq") == Decimal(37)
    assert convert(250, "cGy", "Gy") == Decimal("2.5")
    assert convert(3, "g/dL", "g/L") == 30


@pytest.mark.parametrize(("src", "dst"), [("mg/dL", "mm"), ("%", "Gy"), ("10*9/L", "g/L")])
def test_incompatible_dimensions_are_refused(src: str, dst: str) -> None:
    with pytest.raises(UnitError, match="cannot convert"):
        convert(1, src, dst)


def test_molar_to_mass_needs_a_molar_mass() -> None:
    with pytest.raises(UnitError, match="molar mass"):
        convert(10, "umol/L", "mg/dL")


@pytest.mark.parametrize("unit", ["furlong", "mg/dl/h", "", "MG/DL/"])
def test_unknown_units_are_refused_not_guessed(unit: str) -> None:
    with pytest.raises(UnitError, match="unknown unit"):
        normalise_unit(unit)


def test_ucum_codes_are_case_sensitive_before_aliases() -> None:
    assert normalise_unit("mg/dL") == "mg/dL"
    assert normalise_unit("MG/DL") == "mg/dL"  # a known alias, folded
    assert normalise_unit("Gy") == "Gy"


_UNITS_BY_DIMENSION = [
    ["g/L", "g/dL", "mg/dL", "mg/L"],
    ["mol/L", "mmol/L", "umol/L"],
    ["/L", "10*9/L", "10*3/uL", "/uL"],
    ["m", "cm", "mm"],
    ["L", "mL", "cm3"],
    ["Bq", "MBq", "GBq", "mCi"],
]


@settings(max_examples=60, deadline=None)
@given(dim=st.sampled_from(_UNITS_BY_DIMENSION), data=st.data(),
       value=st.decimals(min_value=Decimal("0.001"), max_value=Decimal("100000"), places=3))
def test_round_trip_is_exact(dim: list[str], data: st.DataObject, value: Decimal) -> None:
    a = data.draw(st.sampled_from(dim))
    b = data.draw(st.sampled_from(dim))
    back = convert(convert(value, a, b), b, a)
    assert abs(back - value) <= Decimal("1e-20") * max(Decimal(1), value)


@settings(max_examples=60, deadline=None)
@given(value=st.decimals(min_value=Decimal("0.01"), max_value=Decimal("50"), places=2))
def test_bilirubin_round_trip_and_monotonic(value: Decimal) -> None:
    micromolar = convert(value, "mg/dL", "umol/L", molar_mass_g_per_mol=BILIRUBIN_G_PER_MOL)
    assert micromolar > value  # 17.1 times larger
    back = convert(micromolar, "umol/L", "mg/dL", molar_mass_g_per_mol=BILIRUBIN_G_PER_MOL)
    assert abs(back - value) < Decimal("1e-20")
