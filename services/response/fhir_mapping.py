"""FHIR boundary of the response service: the input Bundle to domain objects, results to FHIR.

Input (public contract, "Tumour response"): TumorSize Observations (LOINC 21889-1) with
components LOINC 33728-7 (longest diameter), SNOMED 103340004 (short axis) and the project codes
``viable-diameter``, ``viable-perpendicular-diameter``, ``attenuation``, ``sul-peak``, ``suv-max``;
``focus`` → the lesion's BodyStructure (a node when its location or morphology is SNOMED
59441001); ``category`` from LESION_ROLE_SYSTEM; non-target status from NON_TARGET_STATUS_SYSTEM;
``method`` SNOMED 77477000 CT / 113091000 MRI / 82918005 PET; PERCIST reference Observations;
Procedures coded from THERAPY_SYSTEM with ``procedure-targetBodyStructure``; tumour markers and
laboratory values (units converted with :mod:`netliver.units`).

A diameter "too small to measure" is a component with ``dataAbsentReason`` coded
``too-small-to-measure`` (OBSERVATION_CODE_SYSTEM). Split lesions carry the extension
``lesion-fragment-of``, coalesced ones ``lesion-merged-into`` (valueReference → BodyStructure).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal, InvalidOperation
from fractions import Fraction
from typing import Any

from netliver.fhir.builders import (
    canonical_json,
    codeable,
    coding,
    content_digest,
    deterministic_id,
    provenance,
    quantity,
    reference,
)
from netliver.fhir.codesystems import (
    CANONICAL_BASE,
    LESION_ROLE_SYSTEM,
    LOINC,
    NCIT,
    NON_TARGET_STATUS_SYSTEM,
    OBSERVATION_CODE_SYSTEM,
    RESPONSE_SYSTEM,
    SNOMED,
    THERAPY_SYSTEM,
)
from netliver.fhir.outcome import FhirError
from netliver.units import BILIRUBIN_G_PER_MOL, UnitError, convert
from services.response.domain.biochemical import MarkerResponse
from services.response.domain.criteria import Evaluation
from services.response.domain.ctcae import ANALYTES, CtcaeGrade
from services.response.domain.model import (
    Assessment,
    LabValue,
    LesionMeasurement,
    LocalTreatment,
    MarkerValue,
    Modality,
    NonTargetStatus,
    PetReference,
    Role,
)
from services.response.domain.result import VisitResponse

__all__ = [
    "FRAGMENT_OF_URL",
    "MERGED_INTO_URL",
    "TARGET_BODY_STRUCTURE_URL",
    "CaseReportForm",
    "ParsedInput",
    "build_outputs",
    "parse_input",
]

TARGET_BODY_STRUCTURE_URL = "http://hl7.org/fhir/StructureDefinition/procedure-targetBodyStructure"
FRAGMENT_OF_URL = f"{CANONICAL_BASE}/StructureDefinition/lesion-fragment-of"
MERGED_INTO_URL = f"{CANONICAL_BASE}/StructureDefinition/lesion-merged-into"
PREVIOUS_TREATMENT_URL = f"{CANONICAL_BASE}/StructureDefinition/previous-treatment"
IMAGING_PROCEDURE_URL = f"{CANONICAL_BASE}/StructureDefinition/imaging-procedure"
MEDDRA = "http://terminology.hl7.org/CodeSystem/mdr"

TUMOR_SIZE = "21889-1"
LONGEST_DIAMETER = (LOINC, "33728-7")
SHORT_AXIS = (SNOMED, "103340004")
LYMPH_NODE = "59441001"
_MODALITY = {"77477000": Modality.CT, "113091000": Modality.MRI, "82918005": Modality.PET}
_MODALITY_CODE = {m: (code, {"CT": "Computerized axial tomography", "MRI": "Magnetic resonance imaging",
                             "PET": "Positron emission tomography"}[m.value]) for code, m in _MODALITY.items()}
_PET_REFERENCE = {"liver-sul-mean": "liver_mean", "liver-sul-sd": "liver_sd",
                  "bloodpool-sul-mean": "bloodpool_mean", "bloodpool-sul-sd": "bloodpool_sd"}

#: Tumour markers: (system, code) → marker key. Chromogranin A LOINC 9811-1; 5-HIAA in urine
#: LOINC 1695-6 (mass/24 h), 31203-3 (mass/volume, 24 h urine), 1694-9 (mass/volume, urine),
#: 14573-0 (moles/24 h), and the project code ``hiaa-5``. Each code is its own series.
MARKERS: dict[tuple[str, str], str] = {
    (LOINC, "9811-1"): "chromogranin-a",
    (LOINC, "1695-6"): "5-hiaa-urine-24h-mass",
    (LOINC, "31203-3"): "5-hiaa-urine-24h-concentration",
    (LOINC, "1694-9"): "5-hiaa-urine-concentration",
    (LOINC, "14573-0"): "5-hiaa-urine-24h-moles",
    (OBSERVATION_CODE_SYSTEM, "hiaa-5"): "5-hiaa",
}

#: CTCAE laboratory inputs: (system, code) → (analyte, unit the grading uses). LOINC codes of
#: DOMAIN.md §1 plus ALT 1742-6, AST 1920-8, ALP 6768-6.
LABS: dict[tuple[str, str], tuple[str, str]] = {
    (LOINC, "1975-2"): ("bilirubin", "mg/dL"), (LOINC, "14631-6"): ("bilirubin", "mg/dL"),
    (LOINC, "1742-6"): ("alt", "U/L"), (LOINC, "1920-8"): ("ast", "U/L"),
    (LOINC, "6768-6"): ("alp", "U/L"),
    (LOINC, "777-3"): ("platelets", "10*9/L"), (LOINC, "26515-7"): ("platelets", "10*9/L"),
    (LOINC, "718-7"): ("hemoglobin", "g/dL"), (LOINC, "6690-2"): ("wbc", "10*9/L"),
}

#: `003_…` Table 1 "Previous treatment" boxes by therapy code.
CRF_TREATMENT = {
    "surgical-resection": "Surgery", "liver-transplant": "Surgery",
    "ablation-rfa": "Thermal ablation", "ablation-mwa": "Thermal ablation",
    "ablation-laser": "Thermal ablation", "ablation-cryo": "Thermal ablation",
    "ablation-ire": "Ablation (IRE, non-thermal)",
    "tae": "Liver embolization", "ctace": "Liver embolization", "deb-tace": "Liver embolization",
    "sirt": "SIRT", "prrt": "PRRT", "ia-prrt": "PRRT",
}
_NCIT = {"CR": ("C4870", "Complete Remission"), "PR": ("C18058", "Partial Remission"),
         "SD": ("C18213", "Stable Disease"), "PD": ("C35571", "Progressive Disease")}
_DISPLAY = {
    "CR": "Complete response", "PR": "Partial response", "SD": "Stable disease",
    "PD": "Progressive disease", "NE": "Not evaluable",
    "non-CR/non-PD": "Non-CR/non-PD", "iCR": "iRECIST complete response",
    "iPR": "iRECIST partial response", "iSD": "iRECIST stable disease",
    "iUPD": "iRECIST unconfirmed progression", "iCPD": "iRECIST confirmed progression",
    "non-iCR/non-iUPD": "Non-iCR/non-iUPD", "CMR": "Complete metabolic response",
    "PMR": "Partial metabolic response", "SMD": "Stable metabolic disease",
    "PMD": "Progressive metabolic disease",
}
#: mCODE CancerDiseaseStatus (LOINC 97509-4) coarse status (DOMAIN.md §4).
_DISEASE_STATUS = {
    "improved": ("268910001", "Patient's condition improved"),
    "stable": ("359746009", "Patient's condition stable"),
    "worsened": ("271299001", "Patient's condition worsened"),
    "undetermined": ("709137006", "Patient condition undetermined"),
}
_COARSE = {"CR": "improved", "PR": "improved", "iCR": "improved", "iPR": "improved",
           "CMR": "improved", "PMR": "improved", "SD": "stable", "iSD": "stable", "SMD": "stable",
           "non-CR/non-PD": "stable", "non-iCR/non-iUPD": "stable", "PD": "worsened",
           "iCPD": "worsened", "iUPD": "worsened", "PMD": "worsened"}
_CRITERION_DISPLAY = {"recist-1.1": "RECIST 1.1", "mrecist": "mRECIST", "easl": "EASL",
                      "choi": "Choi", "percist": "PERCIST 1.0", "irecist": "iRECIST"}
_MEASURE_UNIT = {"mm": ("mm", "mm"), "mm2": ("mm2", "mm2"), "g/mL": ("g/mL", "g/mL")}
_PERCENT_STEP = Decimal("0.01")


# --------------------------------------------------------------------------- input ----------


@dataclass
class ParsedInput:
    """Everything the domain needs, plus what the outputs must reference."""

    patient: str | None
    assessments: list[Assessment]
    treatments: list[LocalTreatment]
    markers: list[MarkerValue]
    labs: list[LabValue]
    body_sites: dict[str, str]
    lesion_refs: dict[date, list[str]]
    input_refs: list[str]
    digest: str
    methods: set[Modality] = field(default_factory=set)


def _error(message: str, expression: str) -> FhirError:
    return FhirError(422, "value", message, expression)


def _codings(concept: Any) -> list[tuple[str, str]]:
    if not isinstance(concept, Mapping):
        return []
    out = []
    for c in concept.get("coding") or []:
        if isinstance(c, Mapping) and c.get("code"):
            out.append((str(c.get("system", "")), str(c["code"])))
    return out


def _has(concept: Any, system: str, code: str | None = None) -> str | None:
    for sys, c in _codings(concept):
        if sys == system and (code is None or c == code):
            return c
    return None


def _date(value: Any, expression: str) -> date:
    if not isinstance(value, str) or len(value) < 10:
        raise _error("a full date (YYYY-MM-DD) is required", expression)
    try:
        return date.fromisoformat(value[:10])
    except ValueError:
        raise _error(f"not a date: {value!r}", expression) from None


def _decimal(value: Any, expression: str) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, int | float | str | Decimal):
        raise _error("a number is required", expression)
    try:
        return Decimal(str(value))
    except InvalidOperation:
        raise _error(f"not a number: {value!r}", expression) from None


def _quantity_in(q: Any, unit: str, expression: str, *, molar_mass: Decimal | Fraction | None = None) -> Decimal:
    if not isinstance(q, Mapping) or "value" not in q:
        raise _error("a valueQuantity is required", expression)
    value = _decimal(q["value"], f"{expression}.value")
    given = q.get("code") or q.get("unit")
    if not given or given == unit:
        return value
    try:
        return convert(value, str(given), unit, molar_mass_g_per_mol=molar_mass)
    except (UnitError, KeyError) as exc:
        raise _error(f"unit {given!r} cannot be converted to {unit}: {exc}", f"{expression}.code") from None


def _ref_key(ref: Any, full_urls: Mapping[str, str]) -> str | None:
    if not isinstance(ref, Mapping):
        return None
    text = ref.get("reference")
    if not isinstance(text, str) or not text:
        ident = ref.get("identifier")
        if isinstance(ident, Mapping) and ident.get("value"):
            return f"{ident.get('system', '')}|{ident['value']}"
        return None
    if text in full_urls:
        return full_urls[text]
    return text.split("/_history/")[0].split("/")[-1] if "/" in text else text


def _size(component: Mapping[str, Any], expression: str) -> tuple[Decimal | None, bool]:
    """(size in mm, too small to measure)."""
    if "valueQuantity" in component:
        value = _quantity_in(component["valueQuantity"], "mm", f"{expression}.valueQuantity")
        if value < 0:
            raise _error(f"a size must not be negative ({value} mm)", f"{expression}.valueQuantity.value")
        return value, False
    if _has(component.get("dataAbsentReason"), OBSERVATION_CODE_SYSTEM, "too-small-to-measure"):
        return None, True
    return None, False


def _lesion(obs: Mapping[str, Any], path: str, full_urls: Mapping[str, str],
            sites: Mapping[str, Mapping[str, Any]]) -> LesionMeasurement:
    focus = obs.get("focus") or []
    lesion_id = _ref_key(focus[0], full_urls) if focus else None
    if not lesion_id:
        raise _error("a lesion Observation needs focus → the lesion's BodyStructure", f"{path}.focus")
    role_code = None
    for cat in obs.get("category") or []:
        role_code = role_code or _has(cat, LESION_ROLE_SYSTEM)
    if role_code not in {r.value for r in Role}:
        raise _error(f"category needs a code from {LESION_ROLE_SYSTEM} (target, non-target, new)",
                     f"{path}.category")
    site = sites.get(lesion_id, {})
    is_node = any(_has(site.get(k), SNOMED, LYMPH_NODE) for k in ("location", "morphology"))
    organ_codes = _codings(site.get("location"))
    # Without a BodyStructure location the organ is unknown: each lesion counts as its own
    # organ, so the "2 per organ" rule is never applied on a guess.
    organ = organ_codes[0][1] if organ_codes else ((site.get("location") or {}).get("text")
                                                   or f"unspecified:{lesion_id}")
    location = ((site.get("location") or {}).get("text") or
                next((c.get("display") for c in (site.get("location") or {}).get("coding", [])
                      if isinstance(c, Mapping) and c.get("display")), "")) or str(site.get("description", ""))
    values: dict[str, Decimal | None] = {}
    too_small = False
    for j, comp in enumerate(obs.get("component") or []):
        cpath = f"{path}.component[{j}]"
        code = comp.get("code")
        if _has(code, *LONGEST_DIAMETER):
            values["longest"], small = _size(comp, cpath)
            too_small = too_small or small
        elif _has(code, *SHORT_AXIS):
            values["short"], small = _size(comp, cpath)
            too_small = too_small or small
        elif _has(code, OBSERVATION_CODE_SYSTEM, "viable-diameter"):
            values["viable"], small = _size(comp, cpath)
            too_small = too_small or small
        elif _has(code, OBSERVATION_CODE_SYSTEM, "viable-perpendicular-diameter"):
            values["viable_perp"], _ = _size(comp, cpath)
        elif _has(code, OBSERVATION_CODE_SYSTEM, "attenuation") and "valueQuantity" in comp:
            values["hu"] = _decimal(comp["valueQuantity"].get("value"), f"{cpath}.valueQuantity.value")
        elif _has(code, OBSERVATION_CODE_SYSTEM, "sul-peak") and "valueQuantity" in comp:
            values["sul"] = _quantity_in(comp["valueQuantity"], "g/mL", f"{cpath}.valueQuantity")
            if values["sul"] is not None and values["sul"] < 0:
                raise _error("SULpeak must not be negative", f"{cpath}.valueQuantity.value")
        elif _has(code, OBSERVATION_CODE_SYSTEM, "suv-max") and "valueQuantity" in comp:
            values["suv"] = _decimal(comp["valueQuantity"].get("value"), f"{cpath}.valueQuantity.value")
            if values["suv"] is not None and values["suv"] < 0:
                raise _error("SUVmax must not be negative", f"{cpath}.valueQuantity.value")
    status_code = _has(obs.get("valueCodeableConcept"), NON_TARGET_STATUS_SYSTEM)
    status = None
    if status_code is not None:
        try:
            status = NonTargetStatus(status_code)
        except ValueError:
            raise _error(f"unknown non-target status {status_code!r}", f"{path}.valueCodeableConcept") from None
    modality = None
    for sys, code in _codings(obs.get("method")):
        if sys == SNOMED and code in _MODALITY:
            modality = _MODALITY[code]
    fragment_of = merged_into = None
    for ext in obs.get("extension") or []:
        if ext.get("url") == FRAGMENT_OF_URL:
            fragment_of = _ref_key(ext.get("valueReference"), full_urls)
        elif ext.get("url") == MERGED_INTO_URL:
            merged_into = _ref_key(ext.get("valueReference"), full_urls)
    return LesionMeasurement(
        lesion_id=lesion_id, role=Role(role_code), organ=str(organ), location=str(location),
        is_node=is_node, longest_diameter_mm=values.get("longest"), short_axis_mm=values.get("short"),
        viable_diameter_mm=values.get("viable"), viable_perpendicular_mm=values.get("viable_perp"),
        attenuation_hu=values.get("hu"), sul_peak=values.get("sul"), suv_max=values.get("suv"),
        too_small=too_small, status=status, modality=modality, fragment_of=fragment_of,
        merged_into=merged_into, source=path)


def _resource_ref(res: Mapping[str, Any]) -> str | None:
    return f"{res['resourceType']}/{res['id']}" if res.get("id") else None


def parse_input(bundle: Mapping[str, Any], settings_key: Mapping[str, Any]) -> ParsedInput:
    """Read the `$tumor-response` input Bundle; every unusable element is a 422 naming it."""
    entries = bundle.get("entry") or []
    full_urls: dict[str, str] = {}
    sites: dict[str, Mapping[str, Any]] = {}
    for entry in entries:
        res = entry.get("resource") or {}
        if res.get("resourceType") == "BodyStructure":
            key = str(res.get("id") or entry.get("fullUrl") or "")
            if entry.get("fullUrl"):
                full_urls[str(entry["fullUrl"])] = key
            sites[key] = res
        elif entry.get("fullUrl") and res.get("id"):
            full_urls[str(entry["fullUrl"])] = str(res["id"])
    by_date: dict[date, list[LesionMeasurement]] = {}
    lesion_refs: dict[date, list[str]] = {}
    pet: dict[date, dict[str, Decimal]] = {}
    treatments: list[LocalTreatment] = []
    markers: list[MarkerValue] = []
    labs: list[LabValue] = []
    input_refs: list[str] = []
    subjects: set[str] = set()
    canonical: list[str] = []
    for i, entry in enumerate(entries):
        res = entry.get("resource") or {}
        path = f"Bundle.entry[{i}].resource"
        rtype = res.get("resourceType")
        if rtype not in ("Observation", "Procedure", "BodyStructure"):
            continue
        if res.get("status") in ("entered-in-error", "cancelled", "not-done"):
            continue
        canonical.append(canonical_json({k: v for k, v in res.items() if k not in ("meta", "text")}))
        ref = _resource_ref(res)
        if ref and rtype != "BodyStructure":
            input_refs.append(ref)
        if rtype == "Procedure":
            therapy = _has(res.get("code"), THERAPY_SYSTEM)
            if therapy is None:
                continue
            when = res.get("performedDateTime") or (res.get("performedPeriod") or {}).get("start")
            if when is None:
                raise _error("a treatment Procedure needs performedDateTime", f"{path}.performedDateTime")
            targets = frozenset(
                key for ext in res.get("extension") or [] if ext.get("url") == TARGET_BODY_STRUCTURE_URL
                for key in [_ref_key(ext.get("valueReference"), full_urls)] if key)
            treatments.append(LocalTreatment(therapy, _date(when, f"{path}.performedDateTime"), targets, path))
            continue
        if rtype != "Observation":
            continue
        code = res.get("code")
        subject = _ref_key(res.get("subject"), full_urls)
        if _has(code, LOINC, TUMOR_SIZE):
            if "effectiveDateTime" not in res:
                raise _error("a lesion Observation needs effectiveDateTime (the assessment date)",
                             f"{path}.effectiveDateTime")
            when = _date(res["effectiveDateTime"], f"{path}.effectiveDateTime")
            if subject:
                subjects.add(subject)
            lesion = _lesion(res, path, full_urls, sites)
            for other in by_date.get(when, []):
                if other.lesion_id == lesion.lesion_id:
                    raise _error(f"lesion {lesion.lesion_id!r} is measured twice on {when.isoformat()} "
                                 f"(also {other.source})", f"{path}.focus")
            by_date.setdefault(when, []).append(lesion)
            if ref:
                lesion_refs.setdefault(when, []).append(ref)
            continue
        pet_code = _has(code, OBSERVATION_CODE_SYSTEM)
        when_text = res.get("effectiveDateTime")
        if pet_code in _PET_REFERENCE:
            when = _date(when_text, f"{path}.effectiveDateTime")
            q = res.get("valueQuantity")
            value = _quantity_in(q, "g/mL", f"{path}.valueQuantity")
            if value < 0:
                raise _error("an SUL reference must not be negative", f"{path}.valueQuantity.value")
            pet.setdefault(when, {})[_PET_REFERENCE[pet_code]] = value
            continue
        marker = next((MARKERS[c] for c in _codings(code) if c in MARKERS), None)
        if marker is not None:
            q = res.get("valueQuantity")
            if not isinstance(q, Mapping) or "value" not in q:
                raise _error("a tumour marker needs valueQuantity", f"{path}.valueQuantity")
            value = _decimal(q["value"], f"{path}.valueQuantity.value")
            if value < 0:
                raise _error("a tumour marker must not be negative", f"{path}.valueQuantity.value")
            markers.append(MarkerValue(marker, _date(when_text, f"{path}.effectiveDateTime"), value,
                                       str(q.get("code") or q.get("unit") or ""), path))
            continue
        lab = next((LABS[c] for c in _codings(code) if c in LABS), None)
        if lab is not None:
            analyte, unit = lab
            molar = BILIRUBIN_G_PER_MOL if analyte == "bilirubin" else None
            value = _quantity_in(res.get("valueQuantity"), unit, f"{path}.valueQuantity", molar_mass=molar)
            if value < 0:
                raise _error("a laboratory value must not be negative", f"{path}.valueQuantity.value")
            low = high = None
            for rr in res.get("referenceRange") or []:
                rpath = f"{path}.referenceRange[0]"
                if "low" in rr:
                    low = _quantity_in(rr["low"], unit, f"{rpath}.low", molar_mass=molar)
                    # CTCAE grades decreases from the LLN: a limit of 0 grades nothing.
                    if ANALYTES[analyte][3] == "down" and low <= 0:
                        raise _error(f"the lower limit of normal must be positive ({low} {unit})",
                                     f"{rpath}.low.value")
                if "high" in rr:
                    high = _quantity_in(rr["high"], unit, f"{rpath}.high", molar_mass=molar)
                    if high <= 0:  # CTCAE grades increases in multiples of the ULN
                        raise _error(f"the upper limit of normal must be positive ({high} {unit})",
                                     f"{rpath}.high.value")
                break
            labs.append(LabValue(analyte, _date(when_text, f"{path}.effectiveDateTime"), value, low, high, path))
    if not by_date:
        raise _error("the Bundle holds no lesion Observation (LOINC 21889-1)", "Bundle.entry")
    if len(subjects) > 1:
        raise _error(f"lesion Observations of several patients: {', '.join(sorted(subjects))}",
                     "Observation.subject")
    markers = _harmonise_markers(markers)
    assessments = [
        Assessment(when, tuple(lesions), PetReference(**pet.get(when, {})))
        for when, lesions in sorted(by_date.items())
    ]
    site_names = {key: _site_name(res) for key, res in sites.items()}
    patient = next(iter(subjects), None)
    digest = content_digest({"input": sorted(canonical), "settings": dict(settings_key)})
    methods = {m.modality for a in assessments for m in a.lesions if m.modality is not None}
    return ParsedInput(patient, assessments, treatments, markers, labs, site_names, lesion_refs,
                       input_refs, digest, methods)


def _site_name(res: Mapping[str, Any]) -> str:
    loc = res.get("location") or {}
    for c in loc.get("coding") or []:
        if c.get("display"):
            return str(c["display"])
    return str(loc.get("text") or res.get("description") or res.get("id") or "")


def _harmonise_markers(values: list[MarkerValue]) -> list[MarkerValue]:
    """Express every value of one marker in the unit of its first value (UCUM), or 422."""
    first_unit: dict[str, str] = {}
    out = []
    for v in sorted(values, key=lambda m: m.when):
        unit = first_unit.setdefault(v.marker, v.unit)
        if v.unit == unit:
            out.append(v)
            continue
        try:
            converted = convert(v.value, v.unit, unit)
        except (UnitError, KeyError):
            raise _error(f"{v.marker}: unit {v.unit!r} cannot be converted to {unit!r}",
                         f"{v.source}.valueQuantity.code") from None
        out.append(MarkerValue(v.marker, v.when, converted, unit, v.source))
    return out


# -------------------------------------------------------------------------- output ----------


def _category(code: str) -> dict[str, Any]:
    concept: dict[str, Any] = {"coding": [coding(RESPONSE_SYSTEM, code, _DISPLAY.get(code))]}
    ncit = _NCIT.get(code)
    if ncit:
        concept["coding"].append(coding(NCIT, *ncit))
    concept["text"] = _DISPLAY.get(code, code)
    return concept


def _number(value: Decimal) -> str:
    text = format(value.normalize(), "f")
    return text if text not in ("-0",) else "0"


def _percent(value: Decimal) -> str:
    return _number(value.quantize(_PERCENT_STEP))


def _component(code: str, **value: Any) -> dict[str, Any]:
    return {"code": codeable(RESPONSE_SYSTEM, code), **value}


def _visit_components(v: VisitResponse) -> list[dict[str, Any]]:
    comps = [
        _component("vs-baseline", valueCodeableConcept=_category(v.vs_baseline)),
        _component("vs-nadir", valueCodeableConcept=_category(v.vs_nadir)),
        _component("overall", valueCodeableConcept=_category(v.overall)),
    ]
    unit = _MEASURE_UNIT.get(v.measure_unit, (v.measure_unit, v.measure_unit))
    if v.measure is not None:
        comps.append(_component(v.measure_code, valueQuantity=quantity(_number(v.measure), *unit)))
    if v.percent_vs_baseline is not None:
        comps.append(_component("percent-change-baseline", valueQuantity=quantity(_percent(v.percent_vs_baseline), "%")))
    if v.percent_vs_nadir is not None:
        comps.append(_component("percent-change-nadir", valueQuantity=quantity(_percent(v.percent_vs_nadir), "%")))
    if v.nadir is not None:
        comps.append(_component("nadir", valueQuantity=quantity(_number(v.nadir), *unit)))
    if v.nadir_date is not None:
        comps.append(_component("nadir-date", valueDateTime=v.nadir_date.isoformat()))
    if v.target is not None:
        comps.append(_component("target-response", valueCodeableConcept=_category(v.target)))
    if v.non_target is not None:
        comps.append(_component("non-target-response", valueCodeableConcept=_category(v.non_target)))
    comps.append(_component("new-lesions", valueBoolean=bool(v.new_lesions)))
    for lesion in v.treated_lesions:
        comps.append(_component("treated-lesion", valueString=lesion))
    for name, number in v.extra:
        if number is None:
            continue
        if name == "mean-attenuation":
            comps.append(_component(name, valueQuantity=quantity(_percent(number), "HU", "[hnsf'U]")))
        else:
            comps.append(_component(name, valueQuantity=quantity(_percent(number), "%")))
    coarse = _COARSE.get(v.overall, "undetermined")
    comps.append({"code": codeable(LOINC, "97509-4", "Cancer disease status"),
                  "valueCodeableConcept": codeable(SNOMED, *_DISEASE_STATUS[coarse])})
    return comps


@dataclass(frozen=True)
class CaseReportForm:
    """Inputs of the `003_…` Table 1 form beyond the requested criterion."""

    evaluations: Mapping[str, Evaluation | str]  # criterion → evaluation or reason not assessable


def _notes(texts: Iterable[str]) -> list[dict[str, str]]:
    return [{"text": t} for t in dict.fromkeys(texts)]


def build_outputs(parsed: ParsedInput, criterion: str, evaluation: Evaluation,
                  markers: Sequence[MarkerResponse], grades: Sequence[CtcaeGrade],
                  crf: CaseReportForm, *, settings: Mapping[str, Any], version: str,
                  ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The collection Bundle answered to the caller and the resources to write (Provenance last)."""
    subject = reference("Patient", parsed.patient) if parsed.patient else None

    def new_id(item: str) -> str:
        return deterministic_id("response", parsed.patient, criterion, parsed.digest, item)

    def base(resource_id: str, code: dict[str, Any], when: date) -> dict[str, Any]:
        out: dict[str, Any] = {"resourceType": "Observation", "id": resource_id, "status": "final",
                               "category": [codeable("http://terminology.hl7.org/CodeSystem/observation-category",
                                                     "imaging", "Imaging")],
                               "code": code}
        if subject:
            out["subject"] = subject
        out["effectiveDateTime"] = when.isoformat()
        return out

    method = codeable(RESPONSE_SYSTEM, criterion, _CRITERION_DISPLAY[criterion])
    result = evaluation.result
    baseline_refs = parsed.lesion_refs.get(result.baseline_date, [])
    visit_obs: list[dict[str, Any]] = []
    for v in result.visits:
        obs = base(new_id(v.date.isoformat()),
                   codeable(RESPONSE_SYSTEM, "tumor-response", "Tumour response at one assessment"), v.date)
        obs["method"] = method
        obs["valueCodeableConcept"] = _category(v.overall)
        obs["component"] = _visit_components(v)
        refs = baseline_refs + parsed.lesion_refs.get(v.date, [])
        if refs:
            obs["derivedFrom"] = [{"reference": r} for r in refs]
        notes = list(v.notes)
        if notes:
            obs["note"] = _notes(notes)
        visit_obs.append(obs)
    last = result.visits[-1].date if result.visits else result.baseline_date
    bor = base(new_id("best-overall-response"),
               codeable(RESPONSE_SYSTEM, "best-overall-response", "Best overall response"), last)
    bor["method"] = method
    bor["valueCodeableConcept"] = _category(evaluation.best)
    bor["component"] = [
        _component("confirmation-days", valueQuantity=quantity(int(settings["confirmation_days"]), "d")),
        _component("min-sd-days", valueQuantity=quantity(int(settings["min_sd_days"]), "d")),
    ]
    if result.baseline_measure is not None:
        unit = _MEASURE_UNIT.get(result.measure_unit, (result.measure_unit, result.measure_unit))
        bor["component"].append(_component("baseline-measure",
                                           valueQuantity=quantity(_number(result.baseline_measure), *unit)))
    if visit_obs:
        bor["hasMember"] = [reference("Observation", o["id"]) for o in visit_obs]
    bor_notes = [*result.notes, *evaluation.best_notes]
    if bor_notes:
        bor["note"] = _notes(bor_notes)
    marker_obs = [_marker_observation(m, base, new_id, settings) for m in markers]
    grade_obs = [_grade_observation(g, base, new_id) for g in grades]
    report, crf_obs = _case_report(parsed, criterion, evaluation, crf, base, new_id, last, subject)
    outputs: list[dict[str, Any]] = [*visit_obs, bor, *marker_obs, *grade_obs, *crf_obs, report]
    targets = [reference(r["resourceType"], r["id"]) for r in outputs]
    prov = provenance(
        targets=targets, service="response", version=version,
        inputs=[{"reference": r} for r in dict.fromkeys(parsed.input_refs)],
        activity="$tumor-response",
        policy=[f"{CANONICAL_BASE}/policy/tumor-response/{criterion}?{canonical_json(dict(settings))}"],
    )
    bundle = {
        "resourceType": "Bundle",
        "id": new_id("bundle"),
        "type": "collection",
        "entry": [{"fullUrl": f"urn:uuid:{r['id']}", "resource": r} for r in outputs],
    }
    return bundle, [*outputs, prov]


def _marker_observation(m: MarkerResponse, base: Any, new_id: Any, settings: Mapping[str, Any]) -> dict[str, Any]:
    obs: dict[str, Any] = base(new_id(f"marker:{m.marker}:{m.when.isoformat()}"),
                               codeable(RESPONSE_SYSTEM, "biochemical-response", "Biochemical (tumour-marker) response"),
                               m.when)
    obs["category"] = [codeable("http://terminology.hl7.org/CodeSystem/observation-category", "laboratory", "Laboratory")]
    obs["valueCodeableConcept"] = codeable(RESPONSE_SYSTEM, m.category)
    comps = [
        _component("tumor-marker", valueString=m.marker),
        _component("lab-value", valueQuantity={"value": float(m.value), "unit": m.unit}),
        _component("threshold-percent", valueQuantity=quantity(_number(Decimal(str(settings["biochemical_threshold_percent"]))), "%")),
    ]
    if m.percent_vs_baseline is not None:
        comps.append(_component("percent-change-baseline", valueQuantity=quantity(_percent(m.percent_vs_baseline), "%")))
    if m.percent_vs_nadir is not None:
        comps.append(_component("percent-change-nadir", valueQuantity=quantity(_percent(m.percent_vs_nadir), "%")))
    obs["component"] = comps
    obs["note"] = [{"text": f"{m.marker} {_number(m.value)} {m.unit} vs baseline {_number(m.baseline_value)} "
                            f"({m.baseline_date.isoformat()}); reported beside, never inside, the imaging category"}]
    return obs


def _grade_observation(g: CtcaeGrade, base: Any, new_id: Any) -> dict[str, Any]:
    obs: dict[str, Any] = base(new_id(f"ctcae:{g.analyte}"),
                               codeable(RESPONSE_SYSTEM, "ctcae-grade", "CTCAE v5.0 grade of a laboratory adverse event"),
                               g.when)
    obs["category"] = [codeable("http://terminology.hl7.org/CodeSystem/observation-category", "laboratory", "Laboratory")]
    obs["valueInteger"] = g.grade
    obs["component"] = [
        _component("ctcae-term", valueCodeableConcept=codeable(MEDDRA, g.meddra_code, g.term, text=g.term)),
        _component("lab-value", valueQuantity=quantity(_number(g.value), g.unit)),
        _component("reference-limit", valueQuantity=quantity(_number(g.reference), g.unit)),
    ]
    obs["note"] = [{"text": f"worst grade after treatment; graded against {g.reference_kind} "
                            "(CTCAE v5.0)"}]
    return obs


def _case_report(parsed: ParsedInput, criterion: str, evaluation: Evaluation, crf: CaseReportForm,
                 base: Any, new_id: Any, last: date, subject: dict[str, Any] | None,
                 ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """`003_…` Table 1 as a DiagnosticReport with one Observation per target lesion and per criterion."""
    result = evaluation.result
    baseline = parsed.assessments[0]
    latest = parsed.assessments[-1]
    rows: list[dict[str, Any]] = []
    for target in [m for m in baseline.lesions if m.role is Role.TARGET and m.fragment_of is None][:5]:
        now = latest.by_id().get(target.lesion_id, target)
        obs = base(new_id(f"crf-lesion:{target.lesion_id}"),
                   codeable(RESPONSE_SYSTEM, "crf-target-lesion", "Target lesion row of the imaging case-report form"),
                   latest.date)
        obs["focus"] = [{"reference": f"BodyStructure/{target.lesion_id}"}]
        comps = [_component("lesion-location", valueString=parsed.body_sites.get(target.lesion_id)
                            or target.location or target.lesion_id)]
        size = now.short_axis_mm if now.is_node else now.longest_diameter_mm
        if size is not None:
            comps.append(_component("lesion-size", valueQuantity=quantity(_number(size), "mm")))
        if now.attenuation_hu is not None:
            comps.append(_component("lesion-attenuation", valueQuantity=quantity(_number(now.attenuation_hu), "HU", "[hnsf'U]")))
        uptake = now.suv_max if now.suv_max is not None else now.sul_peak
        if uptake is not None:
            comps.append(_component("lesion-suv-max", valueQuantity=quantity(_number(uptake), "g/mL")))
            if now.suv_max is None:
                obs["note"] = [{"text": "SUVmax not given: SULpeak shown"}]
        obs["component"] = comps
        rows.append(obs)
    criterion_rows: list[dict[str, Any]] = []
    summary: list[str] = []
    for name, outcome in crf.evaluations.items():
        obs = base(new_id(f"crf-criterion:{name}"),
                   codeable(RESPONSE_SYSTEM, "crf-criterion", "Response of one criterion on the imaging case-report form"),
                   last)
        obs["method"] = codeable(RESPONSE_SYSTEM, name, _CRITERION_DISPLAY[name])
        if isinstance(outcome, str):
            obs["dataAbsentReason"] = codeable("http://terminology.hl7.org/CodeSystem/data-absent-reason",
                                               "not-applicable", "Not Applicable")
            obs["note"] = [{"text": outcome}]
            summary.append(f"{_CRITERION_DISPLAY[name]}: not assessable ({outcome})")
        elif outcome.result.visits:
            v = outcome.result.visits[-1]
            obs["valueCodeableConcept"] = _category(v.overall)
            obs["component"] = [
                _component("vs-baseline", valueCodeableConcept=_category(v.vs_baseline)),
                _component("vs-nadir", valueCodeableConcept=_category(v.vs_nadir)),
                _component("nadir-date", valueDateTime=outcome.result.nadir_date.isoformat()),
                _component("best-overall-response", valueCodeableConcept=_category(outcome.best)),
            ]
            summary.append(f"{_CRITERION_DISPLAY[name]}: vs baseline {v.vs_baseline}, vs nadir {v.vs_nadir}")
        else:
            obs["dataAbsentReason"] = codeable("http://terminology.hl7.org/CodeSystem/data-absent-reason",
                                               "not-applicable", "Not Applicable")
            obs["note"] = [{"text": "no follow-up assessment"}]
        criterion_rows.append(obs)
    report: dict[str, Any] = {
        "resourceType": "DiagnosticReport",
        "id": new_id("case-report-form"),
        "status": "final",
        "category": [codeable("http://terminology.hl7.org/CodeSystem/v2-0074", "RAD", "Radiology")],
        "code": codeable(RESPONSE_SYSTEM, "case-report-form", "Imaging case-report form (003_… Table 1)"),
        "effectivePeriod": {"start": result.baseline_date.isoformat(), "end": last.isoformat()},
        "issued": f"{last.isoformat()}T00:00:00Z",
    }
    if subject:
        report["subject"] = subject
    extensions: list[dict[str, Any]] = []
    for modality in sorted(parsed.methods, key=lambda m: m.value):
        code, display = _MODALITY_CODE[modality]
        extensions.append({"url": IMAGING_PROCEDURE_URL, "valueCodeableConcept": codeable(SNOMED, code, display)})
    previous = [t for t in parsed.treatments if t.performed <= last]
    for t in previous:
        extensions.append({"url": PREVIOUS_TREATMENT_URL,
                           "valueCodeableConcept": codeable(THERAPY_SYSTEM, t.therapy,
                                                            text=CRF_TREATMENT.get(t.therapy, t.therapy))})
    if extensions:
        report["extension"] = extensions
    report["result"] = [reference("Observation", o["id"]) for o in rows + criterion_rows]
    lines = [
        "Imaging procedure: " + (", ".join(m.value for m in sorted(parsed.methods, key=lambda m: m.value)) or "not stated"),
        f"Date of baseline: {result.baseline_date.isoformat()}",
        f"Date of nadir ({_CRITERION_DISPLAY[criterion]}): {result.nadir_date.isoformat()}",
        "Previous treatment: " + (", ".join(sorted({CRF_TREATMENT.get(t.therapy, t.therapy) for t in previous})) or "none recorded"),
        *summary,
    ]
    report["conclusion"] = "; ".join(lines)
    report["conclusionCode"] = [_category(result.visits[-1].overall)] if result.visits else []
    if not report["conclusionCode"]:
        del report["conclusionCode"]
    return report, [*rows, *criterion_rows]
