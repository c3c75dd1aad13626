"""The command line's tables (rich), read from the operations' FHIR answers with the same
readers as the tumour-board page (:mod:`netliver.report.case`)."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

from netliver.report.case import (
    STATUS_LABELS,
    THERAPY_ORDER,
    DoseReport,
    Quantity,
    dose_report,
    eligibility_row,
    visit,
)

__all__ = ["dosimetry", "eligibility", "response", "sirt"]

_STYLE = {"eligible": "bold green", "eligible-with-caution": "bold yellow", "ineligible": "bold red",
          "insufficient-data": "bold blue"}


def _resources(bundle: dict[str, Any], resource_type: str) -> list[dict[str, Any]]:
    return [e["resource"] for e in bundle.get("entry", [])
            if (e.get("resource") or {}).get("resourceType") == resource_type]


def _q(value: Quantity | None, digits: int = 1) -> str:
    return value.text(digits) if value else "—"


def eligibility(out: Console, answer: dict[str, Any]) -> None:
    rows = [eligibility_row(o) for o in _resources(answer, "Observation")]
    rows = [r for r in rows if r.therapy]
    rows.sort(key=lambda r: THERAPY_ORDER.index(r.therapy) if r.therapy in THERAPY_ORDER else 99)
    table = Table(title=f"Eligibility ({rows[0].effective if rows else 'no result'})")
    table.add_column("Therapy", overflow="fold")
    table.add_column("Status", no_wrap=True)
    for name in ("Deciding rules", "Missing data"):
        table.add_column(name, overflow="fold")
    for row in rows:
        label, icon = STATUS_LABELS.get(row.status, (row.status, "·"))
        table.add_row(row.label, f"[{_STYLE.get(row.status, '')}]{icon} {label}[/]",
                      "\n".join(r.rule_id for r in row.deciding) or "—",
                      "\n".join(row.missing) or "—")
    out.print(table)


def response(out: Console, answer: dict[str, Any]) -> None:
    observations = _resources(answer, "Observation")
    visits = [visit(o) for o in observations if _code(o) == "tumor-response"]
    best = next((o for o in observations if _code(o) == "best-overall-response"), None)
    criterion = next((c.get("code") for o in observations for c in (o.get("method") or {}).get("coding", [])), "")
    table = Table(title=f"Tumour response ({criterion})")
    table.add_column("Date", no_wrap=True)
    for name in ("Overall", "vs base", "vs nadir"):
        table.add_column(name, no_wrap=True)
    for name in ("Measure", "Δ base", "Δ nadir"):
        table.add_column(name, justify="right", no_wrap=True)
    table.add_column("New", no_wrap=True)
    table.add_column("Notes", overflow="fold", ratio=1)
    for v in sorted(visits, key=lambda v: v.date):
        table.add_row(v.date, f"[bold]{v.overall}[/]", v.vs_baseline, v.vs_nadir, _q(v.measure), _q(v.percent_baseline),
                      _q(v.percent_nadir), "—" if v.new_lesions is None else "yes" if v.new_lesions else "no",
                      "; ".join(v.notes))
    out.print(table)
    if best:
        code = ((best.get("valueCodeableConcept") or {}).get("coding") or [{}])[0].get("code", "")
        out.print(f"Best overall response: [bold]{code}[/]")


def _code(resource: dict[str, Any]) -> str:
    return str(((resource.get("code") or {}).get("coding") or [{}])[0].get("code", ""))


#: Unit of an output by the end of its name (the contract puts units in the names).
_UNITS = (("GBq", "GBq"), ("Gy", "Gy"), ("doseConstant", "Gy·kg/GBq"), ("HalfLifeH", "h"), ("halfLifeH", "h"),
          ("M2", "m²"), ("Reduction", "fraction"), ("Involvement", "fraction"))


def sirt(out: Console, answer: dict[str, Any]) -> None:
    table = Table(title="SIRT activity plan")
    table.add_column("Output")
    table.add_column("Value", justify="right")
    table.add_column("Unit")
    for param in answer.get("parameter", []):
        name = str(param.get("name"))
        value = next((v for k, v in param.items() if k.startswith("value")), "")
        if isinstance(value, dict):
            value = value.get("reference", "")
        unit = next((u for suffix, u in _UNITS if name.endswith(suffix)), "")
        table.add_row(name, str(value), unit)
    out.print(table)


def dosimetry(out: Console, task: dict[str, Any], resources: list[dict[str, Any]]) -> None:
    by_ref = {f"{r.get('resourceType')}/{r.get('id')}": r for r in resources}
    reports = [dose_report(r, by_ref) for r in resources if r.get("resourceType") == "DiagnosticReport"]
    out.print(f"Task/{task.get('id')} {task.get('status')}")
    for report in reports:
        out.print(_dose_table(report))


def _dose_table(report: DoseReport) -> Table:
    table = Table(title=f"{report.title} · {report.method} · {report.resource}")
    metrics = ("Dmean", "D50", "D70", "D90", "V100", "V120", "BED", "EQD2")
    table.add_column("VOI")
    table.add_column("Volume", justify="right")
    for name in metrics:
        table.add_column(name, justify="right")
    for voi in report.vois:
        table.add_row(voi.name, _q(voi.volume), *(_q(voi.metrics.get(m)) for m in metrics))
    return table
