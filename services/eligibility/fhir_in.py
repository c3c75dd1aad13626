"""FHIR → eligibility inputs: a posted Bundle becomes :class:`PatientFacts`.

Input (public contract, "Eligibility"): a ``Bundle`` (collection, searchset or transaction)
holding one ``Patient`` and that patient's Observations, Conditions, Procedures,
MedicationStatements, AllergyIntolerances, ImagingStudies and BodyStructures. Codes are LOINC,
SNOMED CT and the project's CodeSystems (:mod:`services.eligibility.fhir_codes`);
quantities are converted with UCUM (:func:`netliver.units.convert`). Every unusable input is a
``FhirError`` 422 naming the element (``Bundle.entry[3].resource.valueQuantity.code``): no
Patient, two Patients, a resource of another patient, a unit that cannot be converted, an
impossible value. This is the one place the service's input errors become ``FhirError``s.
"""


from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal, InvalidOperation
from typing import Any

from netliver.fhir.builders import content_digest
from netliver.fhir.codesystems import (
    CONDITION_CODE_SYSTEM,
    LOINC,
    OBSERVATION_CODE_SYSTEM,
    SNOMED,
    THERAPY_SYSTEM,
    UCUM,
    codes_of,
)
from netliver.fhir.models import parse_resource
from netliver.fhir.outcome import FhirError
from netliver.units import (
    UnitError,
    convert,
    normalise_unit,
)
from services.eligibility.domain.facts import (
    FUTURE_TOLERANCE_DAYS,
    PatientFacts,
    Reading,
)
from services.eligibility.domain.rules import RuleSet
from services.eligibility.fhir_codes import (
    ATC,
    BUNDLE_TYPES,
    CODE_INDEX,
    CODED_INPUTS,
    CONDITION_SNOMED,
    CONDITION_TEXT,
    COUNT_UNITS,
    ECOG_ANSWERS,
    LIVER_SNOMED,
    LONGEST_DIAMETER_LOINC,
    MOLAR_MASS,
    PROCEDURE_TEXT,
    SKIP_STATUS,
    TUMOR_SIZE_LOINC,
)
from services.eligibility.fhir_dates import date_of, effective, effective_instant
from services.eligibility.ruleset import input_catalogue, medication_classes

__all__ = ["ParsedInput", "bundle_to_facts", "evaluation_date", "input_digest"]


@dataclass
class ParsedInput:
    """What was read from the Bundle: facts, the patient's reference and the input references."""

    facts: PatientFacts
    patient_ref: str
    input_refs: list[str] = field(default_factory=list)


# ------------------------------------------------------------------------------------------ input


def input_digest(bundle: Mapping[str, Any], evaluation_date: date | None) -> str:
    """Canonical digest of the request: the Bundle, plus the date when the caller gave one."""
    if evaluation_date is None:
        return content_digest(bundle)
    return content_digest({"bundle": bundle, "date": evaluation_date.isoformat()})


def _ref_of(resource: Mapping[str, Any], full_url: str | None) -> str:
    if resource.get("id"):
        return f"{resource['resourceType']}/{resource['id']}"
    return full_url or ""


def _codings(concept: Any) -> list[Mapping[str, Any]]:
    if not isinstance(concept, Mapping):
        return []
    return [c for c in concept.get("coding", ()) if isinstance(c, Mapping)]


def _texts(concept: Any) -> list[str]:
    if not isinstance(concept, Mapping):
        return []
    out = [str(concept.get("text", ""))]
    out.extend(str(c.get("display", "")) for c in _codings(concept))
    return [t.lower() for t in out if t]


class _Reader:
    """Reads one Bundle; collects readings, records and the inputs' references."""

    def __init__(self, bundle: Mapping[str, Any], rules: RuleSet, evaluated_on: date) -> None:
        self.bundle = bundle
        self.rules = rules
        self.evaluated_on = evaluated_on
        self.readings: list[Reading] = []
        self.conditions: dict[str, list[str]] = {}
        self.medications: dict[str, list[str]] = {}
        self.therapies: dict[str, list[str]] = {}
        self.notes: list[str] = []
        self.refs: list[str] = []

    # -- entry-level ---------------------------------------------------------------------------
    def entries(self) -> list[tuple[int, Mapping[str, Any], str | None]]:
        out = []
        for i, entry in enumerate(self.bundle.get("entry") or []):
            if not isinstance(entry, Mapping):
                continue
            resource = entry.get("resource")
            if isinstance(resource, Mapping) and resource.get("resourceType"):
                out.append((i, resource, entry.get("fullUrl")))
        return out

    def find_patient(self) -> tuple[int, Mapping[str, Any], str | None]:
        patients = [(i, r, u) for i, r, u in self.entries() if r["resourceType"] == "Patient"]
        if not patients:
            raise FhirError(422, "required", "the Bundle holds no Patient", "Bundle.entry")
        if len(patients) > 1:
            i = patients[1][0]
            raise FhirError(422, "invalid", "the Bundle holds more than one Patient; send one patient's record",
                            f"Bundle.entry[{i}].resource")
        return patients[0]

    # -- values --------------------------------------------------------------------------------
    def number(self, where: str, raw: Any) -> Decimal:
        try:
            return Decimal(str(raw))
        except (InvalidOperation, ValueError):
            raise FhirError(422, "value", f"not a number: {raw!r}", where) from None

    def check_range(self, name: str, value: Decimal, where: str) -> None:
        spec = self.rules.inputs.get(name)
        if spec is None:
            return
        if (spec.low is not None and value < spec.low) or (spec.high is not None and value > spec.high):
            raise FhirError(422, "value",
                            f"impossible value for {spec.display}: {value} {spec.unit} "
                            f"(plausible range {spec.low}-{spec.high} {spec.unit})", where)

    def quantity_value(self, name: str, resource: Mapping[str, Any], where: str) -> Decimal:
        spec = self.rules.inputs[name]
        catalogue = input_catalogue()[name]
        if "valueInteger" in resource:
            value = self.number(f"{where}.valueInteger", resource["valueInteger"])
            self.check_range(name, value, f"{where}.valueInteger")
            return value
        if "valueCodeableConcept" in resource and name in {"grade", "ecog"}:
            return self.score_from_concept(name, resource["valueCodeableConcept"], f"{where}.valueCodeableConcept")
        qty = resource.get("valueQuantity")
        if not isinstance(qty, Mapping) or "value" not in qty:
            raise FhirError(422, "required", f"{spec.display} needs a valueQuantity with a value",
                            f"{where}.valueQuantity")
        value = self.number(f"{where}.valueQuantity.value", qty["value"])
        system = qty.get("system")
        unit_text = str(qty.get("code") or qty.get("unit") or "").strip()
        element = f"{where}.valueQuantity.{'code' if qty.get('code') else 'unit'}"
        if system not in (None, UCUM):
            raise FhirError(422, "value", f"unit system {system!r} is not UCUM", f"{where}.valueQuantity.system")
        if spec.unit in COUNT_UNITS or spec.unit.startswith("{"):
            if unit_text not in COUNT_UNITS and not unit_text.startswith("{"):
                raise FhirError(422, "value", f"{spec.display} is unitless; got unit {unit_text!r}", element)
        elif spec.unit == "mL/min" and unit_text:
            value = self.flow_value(value, unit_text, element)
        else:
            if not unit_text:
                raise FhirError(422, "required", f"{spec.display} has no unit", f"{where}.valueQuantity")
            molar = MOLAR_MASS.get(str(catalogue.get("molar_mass", "")))
            try:
                value = convert(value, unit_text, spec.unit, molar_mass_g_per_mol=molar)
            except UnitError as exc:
                raise FhirError(422, "value",
                                f"{spec.display}: unit {unit_text!r} cannot be converted to {spec.unit} ({exc})",
                                element) from None
            # kept exact: rounding here could move a value onto a threshold (2.99995 -> 3.0000)
        self.check_range(name, value, f"{where}.valueQuantity.value")
        if catalogue.get("integer") and value != value.to_integral_value():
            raise FhirError(422, "value", f"{spec.display} is a whole number; got {value}",
                            f"{where}.valueQuantity.value")
        return value

    def flow_value(self, value: Decimal, unit_text: str, element: str) -> Decimal:
        try:
            unit = normalise_unit(unit_text)
        except UnitError:
            raise FhirError(422, "value", f"unknown unit {unit_text!r} for creatinine clearance", element) from None
        if unit not in {"mL/min", "mL/min/1.73m2", "mL/min/{1.73_m2}"}:
            raise FhirError(422, "value", f"unit {unit_text!r} is not a clearance (mL/min)", element)
        if unit != "mL/min":
            self.notes.append("eGFR (mL/min/1.73 m²) read as creatinine clearance (NETTER-1 used clearance).")
        return value

    def score_from_concept(self, name: str, concept: Any, where: str) -> Decimal:
        for c in _codings(concept):
            answer = ECOG_ANSWERS.get(str(c.get("code", ""))) if c.get("system") == LOINC else None
            if answer is not None and name == "ecog":
                return Decimal(answer)
        candidates = [str(c.get("code", "")) for c in _codings(concept)] + _texts(concept)
        for text in candidates:
            digits = [ch for ch in text if ch.isdigit()]
            if len(digits) == 1 and not text.upper().startswith("LA"):
                value = Decimal(digits[0])
                self.check_range(name, value, where)
                return value
        raise FhirError(422, "value", f"cannot read a {name} score from the coded value", where)

    # -- resources -----------------------------------------------------------------------------
    def observation(self, i: int, obs: Mapping[str, Any], ref: str,
                    body_structures: Mapping[str, Mapping[str, Any]],
                    lesions: dict[date, list[tuple[str, str, Decimal | None]]]) -> None:
        if obs.get("status") in SKIP_STATUS:
            return
        where = f"Bundle.entry[{i}].resource"
        on = effective(obs)
        at = effective_instant(obs)
        codings = _codings(obs.get("code"))
        if any(c.get("system") == LOINC and c.get("code") == TUMOR_SIZE_LOINC for c in codings):
            self.tumor_size(i, obs, ref, on, body_structures, lesions)
            return
        name = next((self.code_name(c) for c in codings if self.code_name(c)), None)
        if name is None:
            return
        if "dataAbsentReason" in obs and not any(key.startswith("value") for key in obs):
            return  # recorded as absent: the input stays unknown
        self.refs.append(ref)
        if name == "lesion_count_summary":
            value = self.quantity_value("lesion_count", obs, where)
            self.readings.append(Reading("lesion_count", value, "{lesions}", on, ref, at=at))
            return
        spec = self.rules.inputs[name]
        if name in CODED_INPUTS:
            system = CODED_INPUTS[name]
            code = next((str(c.get("code")) for c in _codings(obs.get("valueCodeableConcept"))
                         if c.get("system") == system), None)
            if code is None or code not in codes_of(system):
                raise FhirError(422, "value", f"{spec.display} needs a valueCodeableConcept from {system}",
                                f"{where}.valueCodeableConcept")
            since = date_of((obs.get("effectivePeriod") or {}).get("start"))
            self.readings.append(Reading(name, code, spec.unit, on, ref, since, at=at))
            return
        if spec.unit == "{boolean}":
            if not isinstance(obs.get("valueBoolean"), bool):
                raise FhirError(422, "value", f"{spec.display} needs a valueBoolean", f"{where}.valueBoolean")
            self.readings.append(Reading(name, bool(obs["valueBoolean"]), spec.unit, on, ref, at=at))
            return
        value = self.quantity_value(name, obs, where)
        comparator = str((obs.get("valueQuantity") or {}).get("comparator") or "")
        if comparator not in {"", "<", "<=", ">", ">="}:
            raise FhirError(422, "value", f"unknown comparator {comparator!r}", f"{where}.valueQuantity.comparator")
        self.readings.append(Reading(name, value, spec.unit, on, ref, comparator=comparator, at=at))

    def code_name(self, coding: Mapping[str, Any]) -> str | None:
        key = (str(coding.get("system")), str(coding.get("code")))
        if key == (OBSERVATION_CODE_SYSTEM, "liver-lesion-count"):
            return "lesion_count_summary"
        return CODE_INDEX.get(key)

    def tumor_size(self, i: int, obs: Mapping[str, Any], ref: str, on: date | None,
                   body_structures: Mapping[str, Mapping[str, Any]],
                   lesions: dict[date, list[tuple[str, str, Decimal | None]]]) -> None:
        where = f"Bundle.entry[{i}].resource"
        focus = obs.get("focus") or []
        focus_ref = str(focus[0].get("reference", "")) if focus and isinstance(focus[0], Mapping) else ""
        structure = body_structures.get(focus_ref)
        if structure is None:
            self.notes.append(f"{ref}: lesion size without a BodyStructure in the Bundle; not counted as a liver lesion.")
            return
        location = _codings(structure.get("location"))
        if not any(c.get("system") == SNOMED and c.get("code") == LIVER_SNOMED for c in location):
            return
        if on is None:
            raise FhirError(422, "required", "a lesion measurement needs effectiveDateTime (the assessment date)",
                            f"{where}.effectiveDateTime")
        diameter: Decimal | None = None
        for j, comp in enumerate(obs.get("component") or []):
            if any(c.get("system") == LOINC and c.get("code") == LONGEST_DIAMETER_LOINC
                   for c in _codings(comp.get("code"))):
                cwhere = f"{where}.component[{j}]"
                diameter = self.quantity_value("max_lesion_diameter", comp, cwhere)
        self.refs.append(ref)
        lesions.setdefault(on, []).append((focus_ref, ref, diameter))

    def condition(self, i: int, res: Mapping[str, Any], ref: str) -> None:
        status_codes = {str(c.get("code")) for c in _codings(res.get("clinicalStatus"))}
        if status_codes and not status_codes & {"active", "recurrence", "relapse"}:
            return
        verification = {str(c.get("code")) for c in _codings(res.get("verificationStatus"))}
        if verification & {"refuted", "entered-in-error"}:
            return
        concept = res.get("code")
        found: str | None = None
        for c in _codings(concept):
            if c.get("system") == CONDITION_CODE_SYSTEM and str(c.get("code")) in codes_of(CONDITION_CODE_SYSTEM):
                found = str(c["code"])
            elif c.get("system") == SNOMED and str(c.get("code")) in CONDITION_SNOMED:
                found = CONDITION_SNOMED[str(c["code"])]
            if found:
                break
        if found is None:
            for text in _texts(concept):
                match = next((code for frag, code in CONDITION_TEXT.items() if frag in text), None)
                if match:
                    found = match
                    self.notes.append(f"{ref}: '{text}' matched to {match} by its text only (not coded); please code it.")
                    break
        if found:
            self.conditions.setdefault(found, []).append(ref)
            self.refs.append(ref)

    def medication(self, res: Mapping[str, Any], ref: str) -> None:
        status = res.get("status")
        if status in {"entered-in-error", "not-taken"}:
            return
        concept = res.get("medicationCodeableConcept")
        atc = [str(c.get("code", "")) for c in _codings(concept) if c.get("system") == ATC]
        texts = _texts(concept)
        for klass, spec in medication_classes().items():
            by_code = any(code.startswith(tuple(spec.get("atc", []))) for code in atc)
            by_name = any(name in text for text in texts for name in spec.get("names", []))
            if not (by_code or by_name):
                continue
            if klass == "anti-vegf-tki" and status not in {"active", "intended", "on-hold", None}:
                continue
            self.medications.setdefault(klass, []).append(ref)
            self.refs.append(ref)

    def procedure(self, res: Mapping[str, Any], ref: str) -> None:
        if res.get("status") not in {"completed", None}:
            return
        for c in _codings(res.get("code")):
            if c.get("system") == THERAPY_SYSTEM and str(c.get("code")) in codes_of(THERAPY_SYSTEM):
                self.therapies.setdefault(str(c["code"]), []).append(ref)
                self.refs.append(ref)
        # an operation that leaves a bilio-enteric anastomosis or a sphincterotomy (001 Table 1)
        for text in _texts(res.get("code")):
            match = next((code for frag, code in PROCEDURE_TEXT.items() if frag in text), None)
            if match:
                self.conditions.setdefault(match, []).append(ref)
                self.refs.append(ref)
                self.notes.append(f"{ref}: procedure '{text}' matched to {match} by its text; "
                                  "please record it as a Condition coded from the condition CodeSystem.")
                break


def _subject_of(resource: Mapping[str, Any]) -> tuple[str, Any]:
    for key in ("subject", "patient"):
        if key in resource:
            return key, resource[key]
    return "subject", None


def bundle_to_facts(bundle: Mapping[str, Any], rules: RuleSet, evaluated_on: date, *,
                    validated: bool = False) -> ParsedInput:
    """Read a posted Bundle into patient facts (raises ``FhirError`` for unusable input).

    The Bundle is validated with the R4B models unless the caller already did
    (``validated=True``, e.g. :func:`netliver.web.read_fhir_body`).
    """
    if not validated:
        parse_resource(bundle, "Bundle")
    if bundle.get("type") not in BUNDLE_TYPES:
        raise FhirError(422, "value", f"Bundle.type must be one of {sorted(BUNDLE_TYPES)}, not {bundle.get('type')!r}",
                        "Bundle.type")
    reader = _Reader(bundle, rules, evaluated_on)
    p_index, patient, p_url = reader.find_patient()
    patient_id = str(patient.get("id") or (p_url or "").rsplit(":", 1)[-1] or "")
    if not patient_id:
        raise FhirError(422, "required", "the Patient has neither an id nor a fullUrl", f"Bundle.entry[{p_index}].resource.id")
    patient_ref = _ref_of(patient, p_url)
    own = {patient_ref, f"Patient/{patient_id}"} | ({p_url} if p_url else set())

    entries = reader.entries()
    body_structures: dict[str, Mapping[str, Any]] = {}
    for _, res, url in entries:
        if res["resourceType"] == "BodyStructure":
            body_structures[_ref_of(res, url)] = res
            if url:
                body_structures[url] = res
    checked = {"Observation", "Condition", "Procedure", "MedicationStatement", "AllergyIntolerance",
               "ImagingStudy", "BodyStructure", "DiagnosticReport"}
    lesions: dict[date, list[tuple[str, str, Decimal | None]]] = {}
    for i, res, url in entries:
        rtype = res["resourceType"]
        if rtype not in checked:
            continue
        key, subject = _subject_of(res)
        target = subject.get("reference") if isinstance(subject, Mapping) else None
        if not isinstance(target, str) or not (target in own or target.endswith(f"/Patient/{patient_id}")):
            raise FhirError(422, "invalid",
                            f"{rtype} refers to {target or 'no patient'}, not to the Bundle's Patient/{patient_id}",
                            f"Bundle.entry[{i}].resource.{key}")
        ref = _ref_of(res, url)
        if rtype == "Observation":
            reader.observation(i, res, ref, body_structures, lesions)
        elif rtype == "Condition" or rtype == "AllergyIntolerance":
            reader.condition(i, res, ref)
        elif rtype == "MedicationStatement":
            reader.medication(res, ref)
        elif rtype == "Procedure":
            reader.procedure(res, ref)

    _lesion_readings(reader, lesions, evaluated_on)
    birth = _birth_date(reader, patient, p_index, evaluated_on)
    facts = PatientFacts.from_readings(
        patient_id, evaluated_on, reader.readings,
        birth_date=birth, birth_source=patient_ref,
        conditions={k: tuple(v) for k, v in reader.conditions.items()},
        medications={k: tuple(v) for k, v in reader.medications.items()},
        prior_therapies={k: tuple(v) for k, v in reader.therapies.items()},
        notes=reader.notes,
    )
    return ParsedInput(facts, patient_ref, list(dict.fromkeys([patient_ref, *reader.refs])))


def _lesion_readings(reader: _Reader, lesions: Mapping[date, list[tuple[str, str, Decimal | None]]],
                     evaluated_on: date) -> None:
    """Lesion count and largest diameter from the latest lesion assessment the date can see."""
    usable_dates = [d for d in lesions if (d - evaluated_on).days <= FUTURE_TOLERANCE_DAYS]
    for later in sorted(set(lesions) - set(usable_dates)):
        reader.notes.append(f"Lesion assessment of {later.isoformat()}, after the evaluation date "
                            f"{evaluated_on.isoformat()}, was not used.")
    if not usable_dates:
        return
    latest = max(usable_dates)
    assessment = lesions[latest]
    refs = tuple(dict.fromkeys(r for _, r, _ in assessment))
    distinct = {f for f, _, _ in assessment}
    for ref in refs:
        reader.readings.append(Reading("lesion_count", Decimal(len(distinct)), "{lesions}", latest, ref))
    diameters = [(d, r) for _, r, d in assessment if d is not None]
    if diameters:
        largest, largest_ref = max(diameters, key=lambda x: x[0])
        reader.readings.append(Reading("max_lesion_diameter", largest, "mm", latest, largest_ref))


def _birth_date(reader: _Reader, patient: Mapping[str, Any], p_index: int, evaluated_on: date) -> date | None:
    """The Patient's birthDate; a partial date is taken as its earliest day (the oldest possible
    age: every age limit of the rule set is an upper limit, so this errs on the side of caution)."""
    raw_birth = patient.get("birthDate")
    birth = date_of(raw_birth)
    if isinstance(raw_birth, str) and len(raw_birth) in (4, 7) and birth is not None:
        birth = birth.replace(month=1 if len(raw_birth) == 4 else birth.month, day=1)
        reader.notes.append(f"birthDate {raw_birth} gives the {'year' if len(raw_birth) == 4 else 'month'} only: "
                            f"the age is taken as the oldest possible (born {birth.isoformat()}).")
    if raw_birth and birth is None:
        raise FhirError(422, "value", "birthDate is not a date", f"Bundle.entry[{p_index}].resource.birthDate")
    if birth is not None and birth > evaluated_on:
        raise FhirError(422, "value", "birthDate is after the evaluation date", f"Bundle.entry[{p_index}].resource.birthDate")
    return birth


def evaluation_date(args: Mapping[str, Any]) -> date | None:
    """The operation's ``date`` parameter (YYYY-MM-DD), or None when not given; 400 naming it."""
    raw = args.get("date")
    if raw is None or raw == "":
        return None
    try:
        if len(raw) != 10:
            raise ValueError(raw)
        return date.fromisoformat(raw)
    except ValueError:
        raise FhirError(400, "invalid", f"date must be YYYY-MM-DD, got {raw!r}", "date") from None
