"""Eligibility verdicts → FHIR: Observations, the tumour-board DiagnosticReport, Provenance.

Output (public contract, "Eligibility"): a ``collection`` Bundle with one Observation per
therapy code (status in ``valueCodeableConcept``, reasons as ``note``s naming rule id and
source, missing inputs as coded ``component``s with a ``dataAbsentReason``, ``derivedFrom`` the
deciding inputs) and a tumour-board ``DiagnosticReport`` (narrative, conclusion, imaging
advice); the resources to write add a ``Provenance`` naming the service and rule-set versions.
"""


import html
from collections.abc import Sequence
from datetime import date
from typing import Any

from netliver.fhir.builders import deterministic_id, provenance
from netliver.fhir.codesystems import (
    CANONICAL_BASE,
    OBSERVATION_CODE_SYSTEM,
    STATUS_SYSTEM,
    THERAPY_SYSTEM,
)
from services.eligibility.domain.evaluation import Status, TherapyVerdict
from services.eligibility.domain.facts import (
    FactQuality,
    PatientFacts,
    fact_quality,
)
from services.eligibility.domain.imaging import ImagingAdvice
from services.eligibility.domain.rules import RuleSet
from services.eligibility.fhir_codes import (
    DATA_ABSENT_REASON,
    RULESET_CANONICAL,
    SUPPORTING_INFO_EXTENSION,
    data_requirement_codings,
)
from services.eligibility.fhir_in import ParsedInput

__all__ = ["build_output", "therapy_display"]


_STATUS_DISPLAY = {
    Status.ELIGIBLE: "Eligible",
    Status.CAUTION: "Eligible with caution",
    Status.INELIGIBLE: "Ineligible",
    Status.INSUFFICIENT: "Insufficient data",
}
_THERAPY_DISPLAY = {
    "surgical-resection": "Surgical resection", "liver-transplant": "Liver transplantation",
    "ablation-rfa": "Radiofrequency ablation", "ablation-mwa": "Microwave ablation",
    "ablation-laser": "Laser ablation", "ablation-cryo": "Cryoablation",
    "ablation-ire": "Irreversible electroporation", "tae": "Transarterial embolisation",
    "ctace": "Conventional TACE", "deb-tace": "DEB-TACE", "sirt": "SIRT (Y-90 radioembolisation)",
    "prrt": "PRRT (177Lu-DOTATATE)", "ia-prrt": "Intra-arterial PRRT",
}
_DERIVABLE = ("Observation/", "ImagingStudy/", "DocumentReference/", "QuestionnaireResponse/", "Media/")


def therapy_display(code: str) -> str:
    return _THERAPY_DISPLAY.get(code, code)


def _observation(verdict: TherapyVerdict, obs_id: str, patient_ref: str, when: str,
                 rules: RuleSet, facts: PatientFacts) -> dict[str, Any]:
    notes = [{"text": r.text()} for r in verdict.reasons]
    notes.extend({"text": f"Note: {n}"} for n in facts.notes)
    if verdict.status is Status.INSUFFICIENT:
        names = ", ".join(rules.inputs[m].display if m in rules.inputs else m for m in verdict.missing)
        notes.insert(0, {"text": f"Missing inputs that could change the answer: {names}."})
    components = [
        {
            "code": {"coding": data_requirement_codings(name),
                     "text": rules.inputs[name].display if name in rules.inputs else name},
            "dataAbsentReason": {"coding": [{"system": DATA_ABSENT_REASON, "code": _absent_code(name, facts, rules)}]},
        }
        for name in verdict.missing
    ]
    sources = verdict.deciding_sources
    derived = [{"reference": s} for s in sources if s.startswith(_DERIVABLE)]
    supporting = [{"url": SUPPORTING_INFO_EXTENSION, "valueReference": {"reference": s}}
                  for s in sources if s and not s.startswith(_DERIVABLE)]
    out: dict[str, Any] = {
        "resourceType": "Observation",
        "id": obs_id,
        "status": "final",
        "category": [{"text": "Eligibility for liver-directed therapy"}],
        "code": {"coding": [{"system": THERAPY_SYSTEM, "code": verdict.therapy,
                             "display": therapy_display(verdict.therapy)}],
                 "text": f"Eligibility: {therapy_display(verdict.therapy)}"},
        "subject": {"reference": patient_ref},
        "effectiveDateTime": when,
        "valueCodeableConcept": {"coding": [{"system": STATUS_SYSTEM, "code": verdict.status.value,
                                             "display": _STATUS_DISPLAY[verdict.status]}],
                                 "text": _STATUS_DISPLAY[verdict.status]},
        "note": notes,
    }
    if supporting:
        out["extension"] = supporting
    if derived:
        out["derivedFrom"] = derived
    if components:
        out["component"] = components
    return out


def _absent_code(name: str, facts: PatientFacts, rules: RuleSet) -> str:
    """Why a missing input is asked for (data-absent-reason), as documented in docs/eligibility.md."""
    fact = facts.values.get(name)
    if fact is None:
        return "unknown"
    if fact.conflicting:
        return "error"
    spec = rules.inputs.get(name)
    limits = rules.staleness.get(spec.staleness) if spec else None
    quality = fact_quality(fact, facts.evaluated_on, limits.fresh_days if limits else None,
                           limits.max_days if limits else None)
    if quality is FactQuality.STALE or fact.comparator:
        return "temp-unknown"  # stale, or only a bound: a new (exact) value is needed
    return "error"  # recorded and current, but it disagrees with another input (Ki-67 vs grade)


def _summary_lines(verdicts: Sequence[TherapyVerdict], rules: RuleSet) -> dict[Status, list[str]]:
    groups: dict[Status, list[str]] = {s: [] for s in Status}
    for v in verdicts:
        label = therapy_display(v.therapy)
        decisive = [r.rule.id for r in v.reasons if r.decisive]
        if v.status is Status.INSUFFICIENT:
            needs = ", ".join(rules.inputs[m].display if m in rules.inputs else m for m in v.missing)
            groups[v.status].append(f"{label} (needs: {needs})")
        elif decisive:
            groups[v.status].append(f"{label} ({', '.join(decisive)})")
        else:
            groups[v.status].append(label)
    return groups


def _report(report_id: str, obs_ids: Sequence[str], verdicts: Sequence[TherapyVerdict],
            advice: Sequence[ImagingAdvice], patient_ref: str, when: str, rules: RuleSet) -> dict[str, Any]:
    groups = _summary_lines(verdicts, rules)
    order = (Status.ELIGIBLE, Status.CAUTION, Status.INSUFFICIENT, Status.INELIGIBLE)
    parts = [f"{_STATUS_DISPLAY[s]}: {'; '.join(groups[s])}." for s in order if groups[s]]
    imaging = " ".join(a.text for a in advice)
    conclusion = " ".join(parts) + f" Imaging advice: {imaging} Rule set {rules.name} {rules.version}."
    rows = "".join(
        f"<tr><td>{html.escape(therapy_display(v.therapy))}</td><td>{html.escape(_STATUS_DISPLAY[v.status])}</td>"
        f"<td>{html.escape('; '.join(r.rule.id for r in v.reasons if r.decisive) or '-')}</td>"
        f"<td>{html.escape(', '.join(v.missing) or '-')}</td></tr>"
        for v in verdicts)
    items = "".join(f"<li>{html.escape(a.text)} <i>({html.escape(a.source)})</i></li>" for a in advice)
    div = (
        '<div xmlns="http://www.w3.org/1999/xhtml"><h3>Tumour board: eligibility for liver-directed therapy</h3>'
        "<table><thead><tr><th>Therapy</th><th>Status</th><th>Deciding rules</th><th>Missing inputs</th></tr></thead>"
        f"<tbody>{rows}</tbody></table><h4>Imaging recommendation</h4><ul>{items}</ul>"
        f"<p>Rule set {html.escape(rules.name)} version {html.escape(rules.version)}.</p></div>"
    )
    return {
        "resourceType": "DiagnosticReport",
        "id": report_id,
        "status": "final",
        "code": {"coding": [{"system": OBSERVATION_CODE_SYSTEM, "code": "eligibility-summary",
                             "display": "Eligibility summary"}],
                 "text": "Tumour-board summary: eligibility for liver-directed therapy"},
        "subject": {"reference": patient_ref},
        "effectiveDateTime": when,
        "result": [{"reference": f"Observation/{i}"} for i in obs_ids],
        "conclusion": conclusion,
        "text": {"status": "generated", "div": div},
    }


def build_output(parsed: ParsedInput, verdicts: Sequence[TherapyVerdict], advice: Sequence[ImagingAdvice],
                 rules: RuleSet, *, digest: str, date_given: date | None, version: str,
                 ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The output Bundle and the resources to write (Observations, DiagnosticReport, Provenance)."""
    facts = parsed.facts
    pid = facts.patient_id
    when = facts.evaluated_on.isoformat()
    id_parts: tuple[Any, ...] = (pid, digest) if date_given is None else (pid, digest, date_given.isoformat())
    obs = []
    for v in verdicts:
        obs_id = deterministic_id("eligibility", *id_parts, v.therapy)
        obs.append(_observation(v, obs_id, parsed.patient_ref, when, rules, facts))
    report = _report(deterministic_id("eligibility", *id_parts, "summary"), [o["id"] for o in obs],
                     verdicts, advice, parsed.patient_ref, when, rules)
    results = [*obs, report]
    prov = provenance(
        targets=[{"reference": f"{r['resourceType']}/{r['id']}"} for r in results],
        service="eligibility", version=version,
        inputs=[{"reference": ref} for ref in parsed.input_refs if ref],
        activity="$evaluate-eligibility",
        policy=[f"{RULESET_CANONICAL}|{rules.version}", f"{CANONICAL_BASE}/service/eligibility|{version}"],
    )
    bundle = {
        "resourceType": "Bundle",
        "id": deterministic_id("eligibility", *id_parts, "bundle"),
        "type": "collection",
        "entry": [{"fullUrl": f"urn:uuid:{r['id']}", "resource": r} for r in results],
    }
    return bundle, [*results, prov]

