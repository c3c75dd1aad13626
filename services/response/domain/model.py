"""Lesion measurements over time, as plain dataclasses (no I/O, no FHIR).

Sizes are exact ``Decimal`` millimetres (exact where the rules are exact): RECIST 1.1
thresholds such as 14 mm → 9.8 mm (exactly −30 %) must not depend on binary floating point.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from enum import Enum

__all__ = [
    "TOO_SMALL_TO_MEASURE_MM",
    "Assessment",
    "LabValue",
    "LesionMeasurement",
    "LocalTreatment",
    "MarkerValue",
    "Modality",
    "NonTargetStatus",
    "PetReference",
    "ResponseInputError",
    "Role",
]

#: Eisenhauer 2009 (RECIST 1.1) §4.3.2: a target lesion present but "too small to measure"
#: is recorded as 5 mm.
TOO_SMALL_TO_MEASURE_MM = Decimal(5)


class ResponseInputError(ValueError):
    """Input that is well-formed but unusable; ``element`` names it (mapped to a 422)."""

    def __init__(self, message: str, element: str) -> None:
        super().__init__(message)
        self.element = element


class Role(Enum):
    TARGET = "target"
    NON_TARGET = "non-target"
    NEW = "new"


class NonTargetStatus(Enum):
    PRESENT = "present"
    ABSENT = "absent"
    UNEQUIVOCAL_PROGRESSION = "unequivocal-progression"
    #: iRECIST (Seymour 2017): any further increase since the last assessment, which confirms
    #: progression after an iUPD driven by non-target or new non-target lesions.
    FURTHER_INCREASE = "further-increase"


class Modality(Enum):
    CT = "CT"
    MRI = "MRI"
    PET = "PET"


@dataclass(frozen=True)
class LesionMeasurement:
    """One lesion at one assessment.

    ``lesion_id`` is the identity across assessments (the BodyStructure). Diameters in mm;
    ``attenuation_hu`` in Hounsfield units (Choi); ``sul_peak`` in g/mL (PERCIST).
    ``too_small`` means "present but too small to measure" (RECIST 1.1 §4.3.2 → 5 mm).
    ``fragment_of`` names the lesion this one split from; ``merged_into`` the lesion whose
    measurement now includes this one (RECIST 1.1 §4.3.2, lesions that split or coalesce).
    """

    lesion_id: str
    role: Role
    organ: str = "unknown"
    location: str = ""
    is_node: bool = False
    longest_diameter_mm: Decimal | None = None
    short_axis_mm: Decimal | None = None
    viable_diameter_mm: Decimal | None = None
    viable_perpendicular_mm: Decimal | None = None
    attenuation_hu: Decimal | None = None
    sul_peak: Decimal | None = None
    suv_max: Decimal | None = None
    too_small: bool = False
    status: NonTargetStatus | None = None
    modality: Modality | None = None
    fragment_of: str | None = None
    merged_into: str | None = None
    source: str = ""


@dataclass(frozen=True)
class PetReference:
    """PERCIST reference regions of one scan (Wahl 2009 §PERCIST 1.0): liver 3 cm ROI or,
    in a diseased liver, the descending-aorta blood pool."""

    liver_mean: Decimal | None = None
    liver_sd: Decimal | None = None
    bloodpool_mean: Decimal | None = None
    bloodpool_sd: Decimal | None = None


@dataclass(frozen=True)
class Assessment:
    """All lesions measured at one imaging assessment (one date)."""

    date: date
    lesions: tuple[LesionMeasurement, ...]
    pet_reference: PetReference = field(default_factory=PetReference)

    def by_id(self) -> dict[str, LesionMeasurement]:
        return {m.lesion_id: m for m in self.lesions}

    @property
    def modalities(self) -> frozenset[Modality]:
        return frozenset(m.modality for m in self.lesions if m.modality is not None)


@dataclass(frozen=True)
class LocalTreatment:
    """A liver-directed or other treatment (Procedure) with the lesions it targeted."""

    therapy: str
    performed: date
    lesion_ids: frozenset[str] = frozenset()
    source: str = ""


@dataclass(frozen=True)
class MarkerValue:
    """A tumour-marker result (chromogranin A, 5-HIAA) in a unit of its own."""

    marker: str
    when: date
    value: Decimal
    unit: str
    source: str = ""


@dataclass(frozen=True)
class LabValue:
    """A laboratory result already converted to the unit CTCAE grading needs.

    ``lower_limit`` / ``upper_limit`` are the reference range in the same unit, when known.
    """

    analyte: str
    when: date
    value: Decimal
    lower_limit: Decimal | None = None
    upper_limit: Decimal | None = None
    source: str = ""
