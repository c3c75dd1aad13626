"""CTCAE v5.0 grades of laboratory adverse events after treatment (NCI, 27 Nov 2017,
"Investigations" and "Blood and lymphatic system disorders").

Increases (bilirubin, ALT, AST, ALP) are graded in multiples of the upper limit of normal when
the pre-treatment value was normal, and in multiples of the pre-treatment value when it was
already abnormal (the CTCAE v5.0 convention). Decreases (platelets, haemoglobin, WBC) use
absolute cut-offs below the lower limit of normal. Haemoglobin grade 4 ("life-threatening") is a
clinical judgement and is not assigned from a number. Elf et al. (randomised radioembolisation versus bland embolisation in SI-NET) and the
thyroid-cancer series of J Gastrointest Cancer 52:823 (2021) report these grades
after liver-directed therapy.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from services.response.domain.model import LabValue

__all__ = [
    "ANALYTES",
    "DEFAULT_LIMITS",
    "CtcaeGrade",
    "grade_value",
    "worst_grades",
]

D = Decimal

#: analyte → (CTCAE v5.0 term, MedDRA code, unit the grading uses, direction).
ANALYTES: dict[str, tuple[str, str, str, str]] = {
    "bilirubin": ("Blood bilirubin increased", "10005364", "mg/dL", "up"),
    "alt": ("Alanine aminotransferase increased", "10001551", "U/L", "up"),
    "ast": ("Aspartate aminotransferase increased", "10003481", "U/L", "up"),
    "alp": ("Alkaline phosphatase increased", "10001675", "U/L", "up"),
    "platelets": ("Platelet count decreased", "10035528", "10*9/L", "down"),
    "hemoglobin": ("Anemia", "10002272", "g/dL", "down"),
    "wbc": ("White blood cell decreased", "10049182", "10*9/L", "down"),
}

#: Reference limits used when the Observation carries no referenceRange (adult, documented
#: in docs/response.md): ULN for increases, LLN for decreases.
DEFAULT_LIMITS: dict[str, Decimal] = {
    "bilirubin": D("1.2"), "alt": D(40), "ast": D(40), "alp": D(120),
    "platelets": D(150), "hemoglobin": D(12), "wbc": D(4),
}

#: Upper bounds (× reference) of grades 1-3 for increases; grade 4 above the last.
_UP_BOUNDS: dict[str, tuple[Decimal, Decimal, Decimal]] = {
    "bilirubin": (D("1.5"), D("3.0"), D("10.0")),
    "alt": (D("3.0"), D("5.0"), D("20.0")),
    "ast": (D("3.0"), D("5.0"), D("20.0")),
    "alp": (D("2.5"), D("5.0"), D("20.0")),
}
#: For a baseline already abnormal, grade 1 of ALT/AST starts at 1.5 × baseline and of ALP at
#: 2.0 × baseline (CTCAE v5.0); bilirubin at 1.0 × baseline.
_UP_ABNORMAL_START: dict[str, Decimal] = {
    "bilirubin": D("1.0"), "alt": D("1.5"), "ast": D("1.5"), "alp": D("2.0"),
}
#: Lower bounds of grades 1-3 for decreases (grade g when value < bound of g); absolute units.
_DOWN_BOUNDS: dict[str, tuple[Decimal | None, Decimal | None, Decimal | None]] = {
    "platelets": (D(75), D(50), D(25)),     # G2 < 75, G3 < 50, G4 < 25 × 10^9/L
    "wbc": (D("3.0"), D("2.0"), D("1.0")),  # G2 < 3.0, G3 < 2.0, G4 < 1.0 × 10^9/L
    "hemoglobin": (D("10.0"), D("8.0"), None),  # G2 < 10.0, G3 < 8.0 g/dL; G4 clinical
}


@dataclass(frozen=True)
class CtcaeGrade:
    analyte: str
    term: str
    meddra_code: str
    grade: int
    when: date
    value: Decimal
    unit: str
    reference: Decimal
    reference_kind: str  # "ULN", "baseline", "LLN"
    source: str = ""


def grade_value(analyte: str, value: Decimal, *, lower: Decimal | None = None,
                upper: Decimal | None = None, pre_treatment: Decimal | None = None) -> tuple[int, Decimal, str]:
    """CTCAE v5.0 grade of one value: (grade, reference used, reference kind)."""
    if analyte not in ANALYTES:
        raise KeyError(analyte)
    direction = ANALYTES[analyte][3]
    if direction == "up":
        uln = upper if upper is not None else DEFAULT_LIMITS[analyte]
        if pre_treatment is not None and pre_treatment > uln:
            reference, kind, start = pre_treatment, "baseline", _UP_ABNORMAL_START[analyte]
        else:
            reference, kind, start = uln, "ULN", D(1)
        g1, g2, g3 = _UP_BOUNDS[analyte]
        ratio = value / reference
        if ratio > g3:
            return 4, reference, kind
        if ratio > g2:
            return 3, reference, kind
        if ratio > g1:
            return 2, reference, kind
        if ratio > start or (kind == "baseline" and ratio >= start and start > 1):
            return 1, reference, kind
        return 0, reference, kind
    lln = lower if lower is not None else DEFAULT_LIMITS[analyte]
    b2, b3, b4 = _DOWN_BOUNDS[analyte]
    if b4 is not None and value < b4:
        return 4, lln, "LLN"
    if b3 is not None and value < b3:
        return 3, lln, "LLN"
    if b2 is not None and value < b2:
        return 2, lln, "LLN"
    if value < lln:
        return 1, lln, "LLN"
    return 0, lln, "LLN"


def worst_grades(values: Sequence[LabValue], treatment_start: date) -> list[CtcaeGrade]:
    """The worst CTCAE grade of each analyte measured after ``treatment_start``.

    The pre-treatment value (last one on or before ``treatment_start``) decides whether an
    increase is graded against the ULN or against the pre-treatment value.
    """
    out: list[CtcaeGrade] = []
    by_analyte: dict[str, list[LabValue]] = {}
    for v in values:
        by_analyte.setdefault(v.analyte, []).append(v)
    for analyte, items in sorted(by_analyte.items()):
        items.sort(key=lambda v: v.when)
        before = [v for v in items if v.when <= treatment_start]
        after = [v for v in items if v.when > treatment_start]
        if not after:
            continue
        pre = before[-1].value if before else None
        worst: CtcaeGrade | None = None
        for v in after:
            grade, reference, kind = grade_value(analyte, v.value, lower=v.lower_limit,
                                                 upper=v.upper_limit, pre_treatment=pre)
            term, meddra, unit, _ = ANALYTES[analyte]
            candidate = CtcaeGrade(analyte, term, meddra, grade, v.when, v.value, unit,
                                   reference, kind, v.source)
            if worst is None or grade > worst.grade:
                worst = candidate
        if worst is not None:
            out.append(worst)
    return out
