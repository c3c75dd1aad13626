"""CDS Hooks 2.0 cards summarising eligibility (``patient-view``; served through the gateway).

Card format: https://cds-hooks.hl7.org/2.0/#card-attributes — ``summary`` (≤ 140 characters),
``indicator`` (info | warning | critical), ``source.label``, ``detail`` (GitHub-flavoured
markdown), ``uuid``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from netliver.fhir.builders import deterministic_id
from services.eligibility.domain.evaluation import Status, TherapyVerdict
from services.eligibility.domain.rules import Kind
from services.eligibility.fhir_out import therapy_display
from services.eligibility.operation import Evaluation

__all__ = ["MAX_SUMMARY", "eligibility_cards"]

MAX_SUMMARY = 140
#: Short therapy labels so that a summary of all 13 therapies fits in 140 characters.
_SHORT = {
    "surgical-resection": "resection", "liver-transplant": "transplant", "ablation-rfa": "RFA",
    "ablation-mwa": "MWA", "ablation-laser": "laser", "ablation-cryo": "cryo", "ablation-ire": "IRE",
    "tae": "TAE", "ctace": "cTACE", "deb-tace": "DEB-TACE", "sirt": "SIRT", "prrt": "PRRT",
    "ia-prrt": "IA-PRRT",
}


def _clip(text: str) -> str:
    return text if len(text) <= MAX_SUMMARY else text[: MAX_SUMMARY - 1] + "…"


def _names(verdicts: Sequence[TherapyVerdict], status: Status) -> list[str]:
    return [_SHORT.get(v.therapy, v.therapy) for v in verdicts if v.status is status]


def _why(verdict: TherapyVerdict) -> str:
    """The deciding reasons of one verdict in one line: rule title, evidence, rule id."""
    chosen = [r for r in verdict.reasons if r.decisive]
    if not chosen and verdict.status is Status.ELIGIBLE:
        chosen = [r for r in verdict.reasons if r.rule.kind is Kind.INDICATION and r.applies]
    parts = []
    for r in chosen:
        evidence = "; ".join(r.outcome.evidence)
        parts.append(f"{r.rule.title}" + (f" ({evidence})" if evidence else "") + f" [{r.rule.id}]")
    return "; ".join(parts) or "no rule decided against it"


_SECTIONS = ((Status.ELIGIBLE, "Eligible"), (Status.CAUTION, "Eligible with caution"),
             (Status.INELIGIBLE, "Not eligible"))


def _detail(evaluation: Evaluation) -> str:
    lines: list[str] = []
    for status, heading in _SECTIONS:
        chosen = [v for v in evaluation.verdicts if v.status is status]
        if chosen:
            lines += [f"**{heading}**", ""]
            lines += [f"- **{therapy_display(v.therapy)}**: {_why(v)}" for v in chosen]
            lines.append("")
    undecided = [v for v in evaluation.verdicts if v.status is Status.INSUFFICIENT]
    if undecided:
        lines += ["**Undecided (data missing)**: " + ", ".join(therapy_display(v.therapy) for v in undecided), ""]
    if evaluation.advice:
        lines += ["**Imaging advice**", ""]
        lines += [f"- {a.text} ({a.source})" for a in evaluation.advice]
    return "\n".join(lines).rstrip()


def _missing_card(evaluation: Evaluation, source: dict[str, str], uuid: str) -> dict[str, Any] | None:
    """The inputs still needed, each with the therapies it would decide."""
    insufficient = [v for v in evaluation.verdicts if v.status is Status.INSUFFICIENT]
    if not insufficient:
        return None
    rules = evaluation.rules
    needed: dict[str, list[str]] = {}
    for v in insufficient:
        for m in v.missing:
            needed.setdefault(m, []).append(_SHORT.get(v.therapy, v.therapy))
    label = {m: rules.inputs[m].display if m in rules.inputs else m for m in needed}
    order = sorted(needed, key=lambda m: label[m])
    detail = "**Missing data**\n\n" + "\n".join(f"- {label[m]} (decides {', '.join(needed[m])})" for m in order)
    return {
        "uuid": uuid,
        "summary": _clip(f"Eligibility undecided for {len(insufficient)} therapies: needs "
                         + ", ".join(label[m] for m in order)),
        "indicator": "warning",
        "source": source,
        "detail": detail,
    }


def eligibility_cards(evaluation: Evaluation, digest: str) -> list[dict[str, Any]]:
    """One summary card (eligible and cautioned therapies with their deciding reasons), plus one
    warning card listing the inputs the evaluation still needs. No suggestions: nothing here is
    an order the EHR could place."""
    verdicts = evaluation.verdicts
    source = {"label": f"netliver eligibility rules {evaluation.rules.version}",
              "url": "https://netliver.org/fhir/eligibility-rules"}
    eligible = _names(verdicts, Status.ELIGIBLE)
    caution = _names(verdicts, Status.CAUTION)
    if eligible or caution:
        parts = []
        if eligible:
            parts.append("Eligible: " + ", ".join(eligible))
        if caution:
            parts.append("with caution: " + ", ".join(caution))
        summary = "; ".join(parts)
        indicator = "info" if eligible else "warning"
    else:
        summary = "No liver-directed therapy is currently eligible"
        indicator = "warning"
    pid = evaluation.parsed.facts.patient_id
    cards = [{
        "uuid": deterministic_id("eligibility-card", pid, digest, "summary"),
        "summary": _clip(summary),
        "indicator": indicator,
        "source": source,
        "detail": _detail(evaluation),
    }]
    missing = _missing_card(evaluation, source, deterministic_id("eligibility-card", pid, digest, "missing"))
    if missing is not None:
        cards.append(missing)
    return cards
