"""UCUM unit conversion for the quantities the services read (pure; no I/O).

Covers the subset of UCUM (https://ucum.org/ucum) that clinical inputs arrive in: mass and
molar concentrations, cell counts, lengths, volumes, masses, activities, absorbed dose, time,
ratios. A quantity whose unit cannot be converted to the unit a rule needs raises
:class:`UnitError`; the caller turns it into a 422 naming the element. Nothing is guessed.

Molar ↔ mass conversions need the analyte's molar mass (``molar_mass_g_per_mol``); the
conventional clinical factors are bilirubin 17.1 µmol/L per mg/dL (584.66 g/mol) and creatinine
88.4 µmol/L per mg/dL (113.12 g/mol).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction

__all__ = ["BILIRUBIN_G_PER_MOL", "CREATININE_G_PER_MOL", "UnitError", "convert", "normalise_unit"]

#: Molar mass (g/mol) for which 1 mg/dL = 17.1 µmol/L exactly (clinical convention). A fraction,
#: because 10000/17.1 has no exact decimal form and a rounded one puts 17.1 µmol/L at 0.99999… mg/dL.
BILIRUBIN_G_PER_MOL = Fraction(100000, 171)
#: Molar mass (g/mol) for which 1 mg/dL = 88.4 µmol/L exactly (clinical convention).
CREATININE_G_PER_MOL = Fraction(100000, 884)


class UnitError(ValueError):
    """A unit is unknown or cannot be converted to the one required."""


@dataclass(frozen=True)
class _Unit:
    dimension: str
    factor: Decimal  # multiply by this to get the dimension's base unit


def _u(dim: str, factor: str) -> _Unit:
    return _Unit(dim, Decimal(factor))


# Base units: mass concentration g/L; substance concentration mol/L; number concentration /L;
# length m; volume L; mass g; activity Bq; dose Gy; time s; ratio 1; rate mL/min.
_UNITS: dict[str, _Unit] = {
    "g/L": _u("mass-conc", "1"), "g/dL": _u("mass-conc", "10"), "mg/dL": _u("mass-conc", "0.01"),
    "mg/L": _u("mass-conc", "0.001"), "ug/L": _u("mass-conc", "0.000001"),
    "ng/mL": _u("mass-conc", "0.000001"), "ug/mL": _u("mass-conc", "0.001"),
    "mg/mL": _u("mass-conc", "1"), "g/mL": _u("mass-conc", "1000"),
    "mol/L": _u("subst-conc", "1"), "mmol/L": _u("subst-conc", "0.001"),
    "umol/L": _u("subst-conc", "0.000001"), "nmol/L": _u("subst-conc", "0.000000001"),
    "/L": _u("num-conc", "1"), "10*9/L": _u("num-conc", "1e9"), "10*12/L": _u("num-conc", "1e12"),
    "10*3/uL": _u("num-conc", "1e9"), "10*6/uL": _u("num-conc", "1e12"), "/uL": _u("num-conc", "1e6"),
    "/mm3": _u("num-conc", "1e6"), "10*3/mm3": _u("num-conc", "1e9"), "/nL": _u("num-conc", "1e9"),
    "10*6/L": _u("num-conc", "1e6"), "10*3/L": _u("num-conc", "1e3"),
    "m": _u("length", "1"), "cm": _u("length", "0.01"), "mm": _u("length", "0.001"),
    "L": _u("volume", "1"), "dL": _u("volume", "0.1"), "mL": _u("volume", "0.001"),
    "cm3": _u("volume", "0.001"), "mm3": _u("volume", "0.000001"),
    "g": _u("mass", "1"), "kg": _u("mass", "1000"), "mg": _u("mass", "0.001"),
    "Bq": _u("activity", "1"), "kBq": _u("activity", "1e3"), "MBq": _u("activity", "1e6"),
    "GBq": _u("activity", "1e9"), "mCi": _u("activity", "3.7e7"), "Ci": _u("activity", "3.7e10"),
    "Gy": _u("dose", "1"), "cGy": _u("dose", "0.01"), "mGy": _u("dose", "0.001"),
    "s": _u("time", "1"), "min": _u("time", "60"), "h": _u("time", "3600"), "d": _u("time", "86400"),
    "wk": _u("time", "604800"),
    "%": _u("ratio", "0.01"), "1": _u("ratio", "1"),
    "mL/min": _u("flow", "1"), "mL/s": _u("flow", "60"), "L/min": _u("flow", "1000"), "mL/min/{1.73_m2}": _u("flow-bsa", "1"), "mL/min/1.73m2": _u("flow-bsa", "1"),
    "[hnsf'U]": _u("hu", "1"), "{HU}": _u("hu", "1"),
    # catalytic concentration (liver enzymes): 1 µkat/L = 60 U/L
    "U/L": _u("catalytic-conc", "1"), "[IU]/L": _u("catalytic-conc", "1"),
    "ukat/L": _u("catalytic-conc", "60"),
    "kg/m2": _u("bmi", "1"), "m2": _u("area", "1"), "cm2": _u("area", "0.0001"), "mm2": _u("area", "0.000001"),
}

# Spellings seen in real feeds that mean exactly one UCUM unit.
_ALIASES = {
    "µmol/l": "umol/L", "μmol/l": "umol/L", "umol/l": "umol/L", "mmol/l": "mmol/L",
    "mg/dl": "mg/dL", "g/dl": "g/dL", "g/l": "g/L", "mg/l": "mg/L", "ng/ml": "ng/mL",
    "µg/l": "ug/L", "μg/l": "ug/L", "ug/l": "ug/L",
    "x10^9/l": "10*9/L", "10^9/l": "10*9/L", "x10e9/l": "10*9/L", "10*9/l": "10*9/L",
    "giga/l": "10*9/L", "g/l(cells)": "10*9/L",
    "x10^3/ul": "10*3/uL", "10^3/ul": "10*3/uL", "10*3/ul": "10*3/uL", "k/ul": "10*3/uL",
    "thou/ul": "10*3/uL", "/ul": "/uL", "/mm3": "/mm3",
    "x10^12/l": "10*12/L", "10^12/l": "10*12/L",
    "ml": "mL", "l": "L", "cc": "mL", "cm^3": "cm3", "ml/min": "mL/min",
    "ml/min/1.73m2": "mL/min/1.73m2", "ml/min/{1.73_m2}": "mL/min/{1.73_m2}",
    "percent": "%", "pct": "%", "hu": "{HU}", "gbq": "GBq", "mbq": "MBq", "mci": "mCi",
    "gy": "Gy", "kg": "kg", "g": "g", "mm": "mm", "cm": "cm",
    "u/l": "U/L", "iu/l": "[IU]/L", "[iu]/l": "[IU]/L", "µkat/l": "ukat/L", "ukat/l": "ukat/L",
}


def normalise_unit(unit: str) -> str:
    """The UCUM code for a unit as written (case-sensitive UCUM first, then known aliases)."""
    text = unit.strip()
    if text in _UNITS:
        return text
    alias = _ALIASES.get(text.lower())
    if alias and alias in _UNITS:
        return alias
    raise UnitError(f"unknown unit {unit!r}")


def convert(value: Decimal | float | int | str, from_unit: str, to_unit: str, *,
            molar_mass_g_per_mol: Decimal | Fraction | None = None) -> Decimal:
    """Convert ``value`` from ``from_unit`` to ``to_unit`` exactly (Decimal arithmetic).

    Mass ↔ substance concentration needs ``molar_mass_g_per_mol``.
    """
    src = _UNITS[normalise_unit(from_unit)]
    dst = _UNITS[normalise_unit(to_unit)]
    amount = value if isinstance(value, Decimal) else Decimal(str(value))
    base = amount * src.factor
    if src.dimension == dst.dimension:
        return base / dst.factor
    dims = {src.dimension, dst.dimension}
    if dims == {"mass-conc", "subst-conc"}:
        if molar_mass_g_per_mol is None:
            raise UnitError(f"{from_unit} → {to_unit} needs the analyte's molar mass")
        molar = Fraction(molar_mass_g_per_mol)
        exact = Fraction(base) * molar if src.dimension == "subst-conc" else Fraction(base) / molar
        exact /= Fraction(dst.factor)
        return Decimal(exact.numerator) / Decimal(exact.denominator)
    raise UnitError(f"cannot convert {from_unit} ({src.dimension}) to {to_unit} ({dst.dimension})")
