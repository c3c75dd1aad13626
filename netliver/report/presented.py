"""``DiagnosticReport.presentedForm``: each report's figures as PNG and the report as a PDF,
so that an EHR without the tumour-board page still shows them (FHIR R4 §8.5, Attachment §2.24).

Built from the results written together with the report (and the request's input resources,
which hold the lesion measurements and markers the response figures draw), with the page's
readers and plots: nothing is computed that the results do not hold. Reproducible bytes, so a
repeated request writes an identical report and the store keeps its version.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from netliver.fhir.builders import attachment
from netliver.report.case import build_case
from netliver.report.pdf import case_pdf
from netliver.report.plots import figure_specs

__all__ = ["attachment", "with_presented_forms"]


def _patient_of(report: Mapping[str, Any]) -> dict[str, Any]:
    ref = str((report.get("subject") or {}).get("reference", ""))
    rid = ref.partition("/")[2] or "unknown"
    return {"resourceType": "Patient", "id": rid, "name": [{"text": f"Patient {rid}"}]}


def _forms(report: Mapping[str, Any], context: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    case = build_case(_patient_of(report), [report, *context])
    specs = figure_specs(case)
    title = str((report.get("code") or {}).get("text") or ((report.get("code") or {}).get("coding") or [{}])[0].get("display")
                or "Report")
    forms = [attachment("image/png", spec.draw(), spec.title) for spec in specs]
    forms.append(attachment("application/pdf", case_pdf(case, specs, title=title), f"{title} (PDF)"))
    return forms


def with_presented_forms(resources: Sequence[dict[str, Any]],
                         inputs: Sequence[Mapping[str, Any]] = ()) -> list[dict[str, Any]]:
    """Copies of ``resources`` in which every DiagnosticReport has its figures (PNG) and itself
    (PDF) in ``presentedForm``, after any forms it already had."""
    context = [r for r in resources if r.get("resourceType") != "DiagnosticReport"] + [
        r for r in inputs if isinstance(r, Mapping) and r.get("resourceType") in {"Observation", "BodyStructure"}]
    out = []
    for res in resources:
        if res.get("resourceType") == "DiagnosticReport":
            kept = [f for f in res.get("presentedForm") or [] if f.get("contentType") not in {"image/png", "application/pdf"}]
            res = {**res, "presentedForm": [*kept, *_forms(res, context)]}
        out.append(res)
    return out
