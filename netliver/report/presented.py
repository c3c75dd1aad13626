"""``DiagnosticReport.presentedForm``: each report's figures as PNG and the report as a PDF,
so that an EHR without the tumour-board page still shows them (FHIR R4 §8.5, Attachment §2.24).

Built from the results written together with the report (and the request's input resources,
which hold the lesion measurements and markers the response figures draw), with the page's
readers and plots: nothing is computed that the results do not hold. Reproducible bytes, so a
repeated request writes an identical report and the store keeps its version.

Two ways to attach them:

- :func:`with_presented_forms` draws every form now and puts its bytes in ``data`` (~0.6 s of
  one core per report with figures);
- :func:`with_form_links` draws nothing: each form is an Attachment with ``url`` (and
  ``contentType``, ``title``) naming a ``Binary`` of this server, and one ``Binary`` per report
  (``<report>-ctx``, ``application/fhir+json``) records the report and the resources the forms
  are drawn from. :func:`draw_form` draws one form from that record on its first read; the
  bytes equal what :func:`with_presented_forms` would have put in ``data``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from netliver.fhir.builders import attachment, canonical_json
from netliver.report.case import Case, build_case
from netliver.report.pdf import case_pdf
from netliver.report.plots import FigureSpec, figure_specs

__all__ = ["CONTEXT_TYPE", "FormContextError", "attachment", "context_id", "draw_form", "form_ids",
           "with_form_links", "with_presented_forms"]

#: The content type of the record a report's forms are drawn from (a collection Bundle).
CONTEXT_TYPE = "application/fhir+json"
_FORM_ID = re.compile(r"^(?P<base>[A-Za-z0-9\-.]+)-(?P<form>pdf|fig-(?P<n>[1-9][0-9]*))$")
_DRAWN = {"image/png", "application/pdf"}


class FormContextError(ValueError):
    """The record a form is drawn from does not hold that form."""


def _patient_of(report: Mapping[str, Any]) -> dict[str, Any]:
    ref = str((report.get("subject") or {}).get("reference", ""))
    rid = ref.partition("/")[2] or "unknown"
    return {"resourceType": "Patient", "id": rid, "name": [{"text": f"Patient {rid}"}]}


def _title(report: Mapping[str, Any]) -> str:
    code = report.get("code") or {}
    return str(code.get("text") or (code.get("coding") or [{}])[0].get("display") or "Report")


def _plan(report: Mapping[str, Any], context: Sequence[Mapping[str, Any]]) -> tuple[Case, list[FigureSpec]]:
    """The report's case and its figures, none drawn yet (cheap)."""
    case = build_case(_patient_of(report), [report, *context])
    return case, figure_specs(case)


def _pdf(report: Mapping[str, Any], case: Case, specs: list[FigureSpec]) -> bytes:
    return case_pdf(case, specs, title=_title(report))


def _forms(report: Mapping[str, Any], context: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    case, specs = _plan(report, context)
    title = _title(report)
    forms = [attachment("image/png", spec.draw(), spec.title) for spec in specs]
    forms.append(attachment("application/pdf", _pdf(report, case, specs), f"{title} (PDF)"))
    return forms


def _context(resources: Sequence[Mapping[str, Any]], inputs: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    return [r for r in resources if r.get("resourceType") != "DiagnosticReport"] + [
        r for r in inputs if isinstance(r, Mapping) and r.get("resourceType") in {"Observation", "BodyStructure"}]


def _kept(report: Mapping[str, Any]) -> list[Any]:
    """The report's forms that are not the drawn ones (e.g. an HTML narrative it came with)."""
    return [f for f in report.get("presentedForm") or [] if f.get("contentType") not in _DRAWN]


def with_presented_forms(resources: Sequence[dict[str, Any]],
                         inputs: Sequence[Mapping[str, Any]] = ()) -> list[dict[str, Any]]:
    """Copies of ``resources`` in which every DiagnosticReport has its figures (PNG) and itself
    (PDF) in ``presentedForm``, after any forms it already had."""
    context = _context(resources, inputs)
    out = []
    for res in resources:
        if res.get("resourceType") == "DiagnosticReport":
            res = {**res, "presentedForm": [*_kept(res), *_forms(res, context)]}
        out.append(res)
    return out


# -- forms by reference, drawn on first read ---------------------------------------------------


def _base(report_id: str) -> str:
    """The stem of a report's Binary ids (a FHIR id has at most 64 characters)."""
    if len(report_id) <= 52:
        return report_id
    return f"{report_id[:35]}-{hashlib.sha256(report_id.encode()).hexdigest()[:16]}"


def context_id(form_id: str) -> str | None:
    """The id of the record ``Binary`` a form's ``Binary`` id is drawn from (``None``: not a form id)."""
    match = _FORM_ID.match(form_id)
    return f"{match['base']}-ctx" if match else None


def form_ids(report_id: str, figures: int) -> list[str]:
    """The Binary ids of a report's forms: ``<report>-fig-1`` … then ``<report>-pdf``."""
    base = _base(report_id)
    return [*(f"{base}-fig-{n}" for n in range(1, figures + 1)), f"{base}-pdf"]


def _relevant(context: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    # Only these types are read when a case is built (a Provenance, renewed by every call,
    # would change the record of a report whose forms did not change).
    return [r for r in context if r.get("resourceType") in {"Observation", "BodyStructure"}]


def _record(report: Mapping[str, Any], context: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    bundle = {"resourceType": "Bundle", "type": "collection",
              "entry": [{"resource": r} for r in (report, *context)]}
    data = canonical_json(bundle).encode()
    return {"resourceType": "Binary", "id": f"{_base(str(report['id']))}-ctx", "contentType": CONTEXT_TYPE,
            "securityContext": {"reference": f"DiagnosticReport/{report['id']}"},
            "data": base64.b64encode(data).decode("ascii")}


def with_form_links(resources: Sequence[dict[str, Any]], inputs: Sequence[Mapping[str, Any]] = (),
                    base_url: str = "") -> list[dict[str, Any]]:
    """Copies of ``resources`` in which every DiagnosticReport names its figures (PNG) and
    itself (PDF) in ``presentedForm`` by ``url`` (``{base_url}/Binary/<id>``, no ``data``), after
    any forms it already had; followed by each report's record ``Binary`` (see the module).
    Without ``base_url`` the url is relative to the FHIR base (``Binary/<id>``), so the written
    report does not depend on the host name the request came through (a worker's internal one)."""
    context = _relevant(_context(resources, inputs))
    base = base_url.rstrip("/")
    prefix = f"{base}/Binary/" if base else "Binary/"
    out: list[dict[str, Any]] = []
    records = []
    for res in resources:
        if res.get("resourceType") == "DiagnosticReport" and res.get("id"):
            plain = {**res, "presentedForm": _kept(res)} if "presentedForm" in res else res
            if not plain.get("presentedForm"):
                plain = {k: v for k, v in plain.items() if k != "presentedForm"}
            _, specs = _plan(plain, context)
            ids = form_ids(str(res["id"]), len(specs))
            links = [{"contentType": "image/png", "url": prefix + i, "title": s.title} for i, s in zip(ids[:-1], specs, strict=True)]
            links.append({"contentType": "application/pdf", "url": prefix + ids[-1], "title": f"{_title(plain)} (PDF)"})
            res = {**res, "presentedForm": [*_kept(res), *links]}
            records.append(_record(plain, context))
        out.append(res)
    return [*out, *records]


def draw_form(record: Mapping[str, Any], form_id: str) -> tuple[str, bytes]:
    """(content type, bytes) of form ``form_id`` drawn from its record ``Binary``; the bytes
    are those :func:`with_presented_forms` puts in that form's ``data``."""
    match = _FORM_ID.match(form_id)
    try:
        bundle = json.loads(base64.b64decode(str(record.get("data", ""))))
        report, *context = [e["resource"] for e in bundle["entry"]]
    except (ValueError, KeyError, TypeError) as exc:
        raise FormContextError(f"Binary/{record.get('id')} is not a record of a report's forms") from exc
    if match is None or f"{match['base']}-ctx" != record.get("id"):
        raise FormContextError(f"{form_id} is not a form of Binary/{record.get('id')}")
    case, specs = _plan(report, context)
    if match["form"] == "pdf":
        return "application/pdf", _pdf(report, case, specs)
    n = int(match["n"])
    if n > len(specs):
        raise FormContextError(f"the report has {len(specs)} figure(s), not {n}")
    return "image/png", specs[n - 1].draw()
