"""FHIR → response inputs: the posted Bundle becomes assessments, treatments, markers and labs.

Input (public contract, "Tumour response"): TumorSize Observations with their components
(:mod:`services.response.fhir_codes`); ``focus`` → the lesion's BodyStructure (a node when its
location or morphology is SNOMED 59441001); ``category`` from LESION_ROLE_SYSTEM; non-target
status from NON_TARGET_STATUS_SYSTEM; PERCIST reference Observations; Procedures coded from
THERAPY_SYSTEM with ``procedure-targetBodyStructure``; tumour markers and laboratory values
(units converted with :mod:`netliver.units`).

A diameter "too small to measure" is a component with ``dataAbsentReason`` coded
``too-small-to-measure`` (OBSERVATION_CODE_SYSTEM). Split lesions carry the extension
``lesion-fragment-of``, coalesced ones ``lesion-merged-into`` (valueReference → BodyStructure).
Unusable input is a ``FhirError`` 422 naming the element; this module and
:mod:`services.response.operation` are where domain errors become ``FhirError``s.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal, InvalidOperation
from fractions import Fraction
from typing import Any

from netliver.fhir.builders import (
    canonical_json,
    content_digest,
)
from netliver.fhir.codesystems import (
    LESION_ROLE_SYSTEM,
    LOINC,
    NON_TARGET_STATUS_SYSTEM,
    OBSERVATION_CODE_SYSTEM,
    SNOMED,
    THERAPY_SYSTEM,
)
from netliver.fhir.outcome import FhirError
from netliver.units import BILIRUBIN_G_PER_MOL, UnitError, convert
from services.response.domain.biochemical import DEFAULT_THRESHOLD_PERCENT
from services.response.domain.criteria import CRITERIA
from services.response.domain.ctcae import ANALYTES
from services.response.domain.dose_response import LesionDose
from services.response.domain.model import (
    Assessment,
    LabValue,
    LesionMeasurement,
    LocalTreatment,
    MarkerValue,
    Modality,
    NonTargetStatus,
    PetReference,
    ResponseInputError,
    Role,
)
from services.response.fhir_codes import (
    FRAGMENT_OF_URL,
    LABS,
    LONGEST_DIAMETER,
    LYMPH_NODE,
    MARKERS,
    MERGED_INTO_URL,
    MODALITY,
    PET_REFERENCE,
    SHORT_AXIS,
    TARGET_BODY_STRUCTURE_URL,
    TUMOR_SIZE,
)

__all__ = ["ParsedInput", "input_error", "parse_input", "parse_settings"]


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
    #: lesion id → its absorbed dose (voxel-dose-metrics Observations whose focus is the lesion)
    lesion_doses: dict[str, LesionDose] = field(default_factory=dict)


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
        if sys == SNOMED and code in MODALITY:
            modality = MODALITY[code]
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


def _index_entries(entries: Sequence[Mapping[str, Any]]) -> tuple[dict[str, str], dict[str, Mapping[str, Any]]]:
    """fullUrl → resource key, and the BodyStructures (lesion sites) by key."""
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
    return full_urls, sites


def _treatment(res: Mapping[str, Any], path: str, full_urls: Mapping[str, str]) -> LocalTreatment | None:
    """A local treatment Procedure (coded from THERAPY_SYSTEM) with the lesions it targeted."""
    therapy = _has(res.get("code"), THERAPY_SYSTEM)
    if therapy is None:
        return None
    when = res.get("performedDateTime") or (res.get("performedPeriod") or {}).get("start")
    if when is None:
        raise _error("a treatment Procedure needs performedDateTime", f"{path}.performedDateTime")
    targets = frozenset(
        key for ext in res.get("extension") or [] if ext.get("url") == TARGET_BODY_STRUCTURE_URL
        for key in [_ref_key(ext.get("valueReference"), full_urls)] if key)
    return LocalTreatment(therapy, _date(when, f"{path}.performedDateTime"), targets, path)


def _marker(res: Mapping[str, Any], path: str, marker: str, when_text: Any) -> MarkerValue:
    q = res.get("valueQuantity")
    if not isinstance(q, Mapping) or "value" not in q:
        raise _error("a tumour marker needs valueQuantity", f"{path}.valueQuantity")
    value = _decimal(q["value"], f"{path}.valueQuantity.value")
    if value < 0:
        raise _error("a tumour marker must not be negative", f"{path}.valueQuantity.value")
    return MarkerValue(marker, _date(when_text, f"{path}.effectiveDateTime"), value,
                       str(q.get("code") or q.get("unit") or ""), path)


def _lab(res: Mapping[str, Any], path: str, lab: tuple[str, str], when_text: Any) -> LabValue:
    """A laboratory value in the unit CTCAE grades it in, with its normal range."""
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
    return LabValue(analyte, _date(when_text, f"{path}.effectiveDateTime"), value, low, high, path)


def _add_lesion(res: Mapping[str, Any], path: str, full_urls: Mapping[str, str], sites: Mapping[str, Any],
                by_date: dict[date, list[LesionMeasurement]]) -> date:
    """Add a lesion Observation to its date (twice the same day is refused); returns the date."""
    if "effectiveDateTime" not in res:
        raise _error("a lesion Observation needs effectiveDateTime (the assessment date)", f"{path}.effectiveDateTime")
    when = _date(res["effectiveDateTime"], f"{path}.effectiveDateTime")
    lesion = _lesion(res, path, full_urls, sites)
    for other in (o for o in by_date.get(when, []) if o.lesion_id == lesion.lesion_id):
        raise _error(f"lesion {lesion.lesion_id!r} is measured twice on {when.isoformat()} (also {other.source})",
                     f"{path}.focus")
    by_date.setdefault(when, []).append(lesion)
    return when


def parse_input(bundle: Mapping[str, Any], settings_key: Mapping[str, Any]) -> ParsedInput:
    """Read the `$tumor-response` input Bundle; every unusable element is a 422 naming it."""
    entries = bundle.get("entry") or []
    full_urls, sites = _index_entries(entries)
    by_date: dict[date, list[LesionMeasurement]] = {}
    lesion_refs: dict[date, list[str]] = {}
    pet: dict[date, dict[str, Decimal]] = {}
    treatments: list[LocalTreatment] = []
    markers: list[MarkerValue] = []
    labs: list[LabValue] = []
    input_refs: list[str] = []
    subjects: set[str] = set()
    canonical: list[str] = []
    dose_obs: list[Mapping[str, Any]] = []
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
            treatment = _treatment(res, path, full_urls)
            if treatment is not None:
                treatments.append(treatment)
            continue
        if rtype != "Observation":
            continue
        code = res.get("code")
        subject = _ref_key(res.get("subject"), full_urls)
        if _has(code, LOINC, TUMOR_SIZE):
            when = _add_lesion(res, path, full_urls, sites, by_date)
            if subject:
                subjects.add(subject)
            if ref:
                lesion_refs.setdefault(when, []).append(ref)
            continue
        pet_code = _has(code, OBSERVATION_CODE_SYSTEM)
        when_text = res.get("effectiveDateTime")
        if pet_code == "voxel-dose-metrics":
            dose_obs.append(res)
            continue
        if pet_code in PET_REFERENCE:
            when = _date(when_text, f"{path}.effectiveDateTime")
            q = res.get("valueQuantity")
            value = _quantity_in(q, "g/mL", f"{path}.valueQuantity")
            if value < 0:
                raise _error("an SUL reference must not be negative", f"{path}.valueQuantity.value")
            pet.setdefault(when, {})[PET_REFERENCE[pet_code]] = value
            continue
        marker = next((MARKERS[c] for c in _codings(code) if c in MARKERS), None)
        if marker is not None:
            markers.append(_marker(res, path, marker, when_text))
            continue
        lab = next((LABS[c] for c in _codings(code) if c in LABS), None)
        if lab is not None:
            labs.append(_lab(res, path, lab, when_text))
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
                       input_refs, digest, methods, _lesion_doses(dose_obs, full_urls))


def _lesion_doses(observations: list[Mapping[str, Any]], full_urls: Mapping[str, str]) -> dict[str, LesionDose]:
    """Per lesion (the Observation's focus) its post-treatment dose: an MAA simulation
    (``dose-simulation`` true) only when nothing else is known, the latest result first."""
    def comp(obs: Mapping[str, Any], code: str, key: str = "valueQuantity") -> Any:
        return next((c.get(key) for c in obs.get("component") or []
                     if _has(c.get("code"), OBSERVATION_CODE_SYSTEM, code)), None)

    def simulated(obs: Mapping[str, Any]) -> bool:
        return any(_has(cat, OBSERVATION_CODE_SYSTEM, "dose-simulation") for cat in obs.get("category") or [])

    ranked = sorted(observations, key=lambda o: (not simulated(o), str(o.get("effectiveDateTime", ""))))
    out: dict[str, LesionDose] = {}
    for obs in ranked:
        lesion = _ref_key((obs.get("focus") or [None])[0], full_urls)
        dose = (obs.get("valueQuantity") or {}).get("value")
        if lesion is None or not isinstance(dose, (int, float)):
            continue
        bed = (comp(obs, "bed-mean") or {}).get("value")
        out[lesion] = LesionDose(lesion, float(dose), float(bed) if isinstance(bed, (int, float)) else None,
                                 f"Observation/{obs.get('id')}")
    return out


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


def _int_param(args: Mapping[str, Any], name: str, default: int) -> int:
    raw = args.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise FhirError(422, "value", f"{name} must be a whole number of days, not {raw!r}", name) from None
    if value < 0:
        raise FhirError(422, "value", f"{name} must not be negative", name)
    return value


def parse_settings(args: Mapping[str, Any]) -> dict[str, Any]:
    """The operation's query parameters (criterion, confirmation and SD intervals, biochemical
    threshold, treated-lesion handling) with their defaults; 422 naming the parameter."""
    criterion = args.get("criteria") or "recist-1.1"
    if criterion not in CRITERIA:
        raise FhirError(422, "not-supported",
                        f"unknown criterion {criterion!r}; expected one of {', '.join(CRITERIA)}", "criteria")
    raw_threshold = args.get("biochemicalThresholdPercent")
    threshold = DEFAULT_THRESHOLD_PERCENT
    if raw_threshold:
        try:
            threshold = Decimal(raw_threshold)
        except InvalidOperation:
            threshold = Decimal(-1)
        if not threshold.is_finite() or threshold <= 0:
            raise FhirError(422, "value", "biochemicalThresholdPercent must be a positive number",
                            "biochemicalThresholdPercent")
    treated = args.get("treatedLesions")
    if treated not in (None, "", "not-evaluable", "measure"):
        raise FhirError(422, "value", "treatedLesions must be not-evaluable or measure", "treatedLesions")
    return {
        "criterion": criterion,
        "confirmation_days": _int_param(args, "confirmationDays", 0),
        "min_sd_days": _int_param(args, "minSdDays", 42),
        "biochemical_threshold_percent": str(threshold),
        "treated_lesions": treated or "default",
    }


def input_error(exc: ResponseInputError) -> FhirError:
    """A domain refusal as the 422 naming the element the domain points at."""
    return FhirError(422, "value", str(exc), exc.element)
