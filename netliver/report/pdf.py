"""The case as a PDF for the board's record (matplotlib's PDF backend, reproducible bytes).

Page 1: the patient, the eligibility table and the SIRT plans; then one page per figure with
its text alternative beneath it; then the per-VOI dose tables and the response tables. No
creation date or producer version is written, so the same case gives the same bytes.
"""

from __future__ import annotations

import io
import textwrap
from collections.abc import Sequence

from matplotlib import rc_context
from matplotlib.backends.backend_pdf import PdfPages
from matplotlib.figure import Figure as MplFigure

from netliver.report.case import Case
from netliver.report.plots import STYLE, FigureSpec, figure_specs

__all__ = ["case_pdf"]

_A4_LANDSCAPE_IN = (11.69, 8.27)
_METADATA = {"Creator": "netliver", "Producer": "netliver", "CreationDate": None, "ModDate": None}


_LINES_PER_PAGE = 52


def _text_pages(title: str, lines: Sequence[str]) -> list[MplFigure]:
    """As many pages as the wrapped lines need (never a line dropped)."""
    wrapped = [w for line in lines for w in (textwrap.wrap(line, 150, subsequent_indent="    ") or [""])]
    pages = []
    for start in range(0, max(len(wrapped), 1), _LINES_PER_PAGE):
        fig = MplFigure(figsize=_A4_LANDSCAPE_IN)
        fig.text(0.04, 0.95, title if start == 0 else f"{title} (continued)", fontsize=16, weight="bold", va="top")
        fig.text(0.04, 0.90, "\n".join(wrapped[start:start + _LINES_PER_PAGE]), fontsize=8.5, va="top",
                 family="DejaVu Sans Mono")
        pages.append(fig)
    return pages


def _summary_lines(case: Case) -> list[str]:
    p = case.patient
    lines = [f"Patient {p.id} · {p.name} · born {p.birth_date or 'unknown'} · {p.gender or 'sex not recorded'}", "",
             "Eligibility" + (f" (evaluated {case.eligibility[0].effective})" if case.eligibility else ": none stored")]
    for row in case.eligibility:
        deciding = ", ".join(r.rule_id for r in row.deciding) or "-"
        missing = f"; missing: {', '.join(row.missing)}" if row.missing else ""
        lines.append(f"  {row.icon} {row.label:<34} {row.status_label:<22} {deciding}{missing}")
    for plan in case.plans:
        lines += ["", f"SIRT plan {plan.effective} · {plan.method}",
                  f"  activity {plan.activity.text(2) if plan.activity else '-'} · limited by "
                  f"{plan.limiting_factor or '-'} · status {plan.status or '-'}"]
        lines += [f"  {d.what:<18} predicted {d.predicted.text(1):>10}   "
                  + (f"{'target' if d.kind == 'minimum' else 'limit'} {d.limit.text(1)} ({d.source})" if d.limit
                     else "no limit applies" if plan.limits_recorded else "limit not recorded in the plan")
                  for d in plan.doses]
        lines += [f"  warning: {w}" for w in plan.warnings]
    return lines


def _table_lines(case: Case) -> list[str]:
    lines: list[str] = []
    metrics = ("Dmean", "D50", "D70", "D90", "V100", "V120", "BED", "EQD2")
    for report in case.doses:
        lines += ["", f"{report.title} {report.effective} · {report.method} · {report.resource}",
                  "  " + f"{'VOI':<14}{'volume':>12}" + "".join(f"{m:>11}" for m in metrics)]
        for voi in report.vois:
            cells = "".join(f"{voi.metrics[m].text(1) if m in voi.metrics else '-':>11}" for m in metrics)
            lines.append(f"  {voi.name:<14}{voi.volume.text(1) if voi.volume else '-':>12}{cells}")
    for c in case.comparisons:
        lines += ["", f"Predicted ({c.predicted or '-'}) versus delivered ({c.delivered or '-'}) dose {c.effective} · "
                      f"{c.resource}",
                  f"  {'VOI':<16}{'Dmean pred':>12}{'Dmean deliv':>13}{'diff':>10}{'diff %':>9}{'D70 pred':>11}"
                  f"{'D70 deliv':>11}{'V100 pred':>11}{'V100 deliv':>11}  flag"]
        for cv in c.vois:
            compared = [cv.predicted.get("Dmean"), cv.delivered.get("Dmean"), cv.difference.get("Dmean"), cv.difference_percent,
                     cv.predicted.get("D70"), cv.delivered.get("D70"), cv.predicted.get("V100"), cv.delivered.get("V100")]
            widths = (12, 13, 10, 9, 11, 11, 11, 11)
            flag = "" if cv.flagged is None else "differs by more than 20 %" if cv.flagged else "within 20 %"
            lines.append(f"  {cv.name:<16}" + "".join(f"{q.text(1) if q else '-':>{w}}" for q, w in zip(compared, widths, strict=True))
                         + f"  {flag}")
        if c.lung_shunt_predicted or c.lung_shunt_delivered:
            lines.append(f"  lung shunt fraction predicted {c.lung_shunt_predicted.text(1) if c.lung_shunt_predicted else '-'}"
                         f", delivered {c.lung_shunt_delivered.text(1) if c.lung_shunt_delivered else '-'}")
    for r in case.dose_responses:
        lines += ["", f"Dose and response per lesion ({r.label}) {r.effective} · {r.resource}",
                  f"  {'lesion':<28}{'dose':>10}{'BED':>10}{'baseline':>10}{'latest':>10}{'change':>10}  response"]
        for les in r.lesions:
            sized = [(les.dose, 1), (les.bed, 1), (les.baseline, 0), (les.latest, 0), (les.change, 1)]
            name = f"{les.lesion} · {les.label}" if les.label else les.lesion
            lines.append(f"  {name[:27]:<28}" + "".join(f"{q.text(d) if q else '-':>10}" for q, d in sized)
                         + f"  {les.category or '-'}")
    for course in case.courses:
        lines += ["", f"{course.label}: best overall response {course.best or '-'}",
                  f"  {'date':<12}{'overall':<9}{'vs base':<9}{'vs nadir':<9}{'measure':>12}{'Δ base':>10}{'Δ nadir':>10}  notes"]
        for v in course.visits:
            lines.append(f"  {v.date:<12}{v.overall:<9}{v.vs_baseline:<9}{v.vs_nadir:<9}"
                         f"{v.measure.text(1) if v.measure else '-':>12}"
                         f"{v.percent_baseline.text(1) if v.percent_baseline else '-':>10}"
                         f"{v.percent_nadir.text(1) if v.percent_nadir else '-':>10}  {'; '.join(v.notes)}")
    if case.grades:
        lines += ["", "CTCAE v5.0 worst grades after treatment"]
        lines += [f"  grade {g.grade}  {g.term:<40} {g.date}  {g.value.text(2) if g.value else '-'}" for g in case.grades]
    return lines


def _figure_page(spec: FigureSpec) -> MplFigure:
    fig = spec.build()
    fig.set_size_inches(*_A4_LANDSCAPE_IN)
    fig.subplots_adjust(bottom=0.25)
    fig.text(0.04, 0.02, "\n".join(textwrap.wrap(spec.alt, 170)[:10]), fontsize=7.5, va="bottom")
    return fig


def case_pdf(case: Case, specs: Sequence[FigureSpec] | None = None, title: str = "Tumour board") -> bytes:
    """The case (or only ``specs`` of its figures) as a multi-page PDF."""
    out = io.BytesIO()
    with rc_context(STYLE), PdfPages(out, metadata=_METADATA) as pdf:
        for page in _text_pages(f"{title}: {case.patient.name}", _summary_lines(case)):
            pdf.savefig(page)
        for spec in figure_specs(case) if specs is None else specs:
            pdf.savefig(_figure_page(spec))
        tables = _table_lines(case)
        for page in _text_pages("Tables", tables) if tables else []:
            pdf.savefig(page)
    return out.getvalue()
