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


def eligibility_cards(evaluation: Evaluation, digest: str) -> list[dict[str, Any]]:
    """One summary card, plus one warning card listing the inputs the evaluation still needs."""
    verdicts = evaluation.verdicts
    rules = evaluation.rules
    source = {"label": f"netliver eligibility rules {rules.version}",
              "url": "https://netliver.org/fhir/eligibility-rules"}
    eligible = _names(verdicts, Status.ELIGIBLE)
    caution = _names(verdicts, Status.CAUTION)
    rows = ["| Therapy | Status | Deciding rules |", "|---|---|---|"]
    for v in verdicts:
        ids = ", ".join(r.rule.id for r in v.reasons if r.decisive) or "-"
        rows.append(f"| {therapy_display(v.therapy)} | {v.status.value} | {ids} |")
    advice = "\n".join(f"- {a.text} ({a.source})" for a in evaluation.advice)
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
        "detail": "\n".join(rows) + "\n\n**Imaging advice**\n\n" + advice,
    }]
    insufficient = [v for v in verdicts if v.status is Status.INSUFFICIENT]
    if insufficient:
        needed = sorted({m for v in insufficient for m in v.missing})
        labels = [rules.inputs[m].display if m in rules.inputs else m for m in needed]
        detail = "\n".join(
            f"- **{therapy_display(v.therapy)}** needs: "
            + ", ".join(rules.inputs[m].display if m in rules.inputs else m for m in v.missing)
            for v in insufficient)
        cards.append({
            "uuid": deterministic_id("eligibility-card", pid, digest, "missing"),
            "summary": _clip(f"Eligibility undecided for {len(insufficient)} therapies: needs {', '.join(labels)}"),
            "indicator": "warning",
            "source": source,
            "detail": detail,
        })
    return cards
