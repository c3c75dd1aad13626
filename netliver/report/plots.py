"""The case's figures as PNG (matplotlib, Agg canvas, no pyplot state, deterministic bytes).

Each figure comes with a text alternative that states its numbers; the page puts the same
numbers in a table beside it. Output is reproducible: fixed size, DPI and font (DejaVu Sans,
shipped with matplotlib), no timestamp or software version in the PNG metadata.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

from matplotlib import rc_context
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure as MplFigure

from netliver.report.case import Case, DoseReport, MarkerPoint
from netliver.report.dose_records import DoseComparison, DoseResponse

__all__ = ["STYLE", "Figure", "FigureSpec", "comparison_figure", "dose_response_figure", "dvh_figure", "figure_specs",
           "marker_figure", "render", "render_all", "spider_figure", "waterfall_figure"]

_DPI = 100
_SIZE_IN = (8.0, 4.5)
#: Colour-blind-safe palette (Okabe & Ito 2008), markers differ too so colour is never alone.
_COLOURS = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000")
_MARKS = ("o", "s", "^", "D", "v", "P", "X")
STYLE: dict[Any, Any] = {"font.family": "DejaVu Sans", "font.size": 12, "axes.titlesize": 14, "axes.labelsize": 12,
          "svg.hashsalt": "netliver", "path.simplify": False}
#: Reference lines on the per-lesion plots: RECIST 1.1 (Eisenhauer et al. 2009, §4.3.1)
#: partial response at -30 % and progression at +20 % of the sum of diameters.
_PR_PERCENT, _PD_PERCENT = -30.0, 20.0


@dataclass(frozen=True)
class Figure:
    name: str
    title: str
    alt: str
    png: bytes


@dataclass(frozen=True)
class FigureSpec:
    """A figure's name, title and text alternative (cheap), and how to draw it (not yet done)."""

    name: str
    title: str
    alt: str
    build: Callable[[], MplFigure]

    def draw(self) -> bytes:
        return _png(self.build())

    def figure(self) -> Figure:
        return Figure(self.name, self.title, self.alt, self.draw())


def _new() -> MplFigure:
    fig = MplFigure(figsize=_SIZE_IN, dpi=_DPI)
    FigureCanvasAgg(fig)
    return fig


def _png(fig: MplFigure) -> bytes:
    out = io.BytesIO()
    with rc_context(STYLE):
        fig.tight_layout()
        fig.savefig(out, format="png", dpi=_DPI, metadata={"Software": None})
    return out.getvalue()


def _days(first: str, when: str) -> int:
    return (date.fromisoformat(when) - date.fromisoformat(first)).days


def _dvh_points(report: DoseReport) -> list[tuple[str, list[tuple[float, float]]]]:
    out = []
    for voi in report.vois:
        m = {n: q.value for n, q in voi.metrics.items()}
        points = [(m[d], v) for d, v in (("Dmin", 100.0), ("D90", 90.0), ("D70", 70.0), ("D50", 50.0),
                                         ("Dmax", 0.0)) if d in m]
        points += [(gy, m[v]) for gy, v in ((100.0, "V100"), (120.0, "V120")) if v in m]
        points.sort(key=lambda p: (p[0], -p[1]))
        if points:
            out.append((voi.name, points))
    return out


def dvh_figure(report: DoseReport, index: int) -> FigureSpec:
    """Cumulative DVH of each VOI: the sampled curve stored with the report when it has one, with
    the reported points marked on it; else the reported points joined: (Dmin, 100 %), (D90, 90 %),
    (D70, 70 %), (D50, 50 %), (100 Gy, V100), (120 Gy, V120), (Dmax, 0 %)."""
    curves = _dvh_points(report)
    sampled = {name: [(dose, volume) for volume, dose in points] for name, points in report.curves.items()}
    drawn = ("the sampled DVH stored with the report (Dx at every 1 % of the volume), with the reported points marked"
             if sampled else "drawn through the reported DVH points")
    alt = (f"Cumulative dose-volume histogram per VOI, {drawn}. " + "; ".join(
        f"{name}: " + ", ".join(f"{v:g} % of the volume at ≥ {d:.1f} Gy" for d, v in points)
        for name, points in curves) + ".")

    def build() -> MplFigure:
        with rc_context(STYLE):
            fig = _new()
            ax = fig.add_subplot()
            for k, (name, points) in enumerate(curves):
                colour, mark = _COLOURS[k % 7], _MARKS[k % 7]
                if name in sampled:
                    line = sorted(sampled[name])
                    ax.plot([p[0] for p in line], [p[1] for p in line], color=colour, linewidth=2, label=name)
                    ax.plot([p[0] for p in points], [p[1] for p in points], linestyle="none", color=colour, marker=mark)
                else:
                    ax.plot([p[0] for p in points], [p[1] for p in points], color=colour, marker=mark, linewidth=2,
                            label=name)
            ax.set_xlabel("Absorbed dose (Gy)")
            ax.set_ylabel("Volume receiving at least the dose (%)")
            ax.set_ylim(0, 105)
            ax.set_xlim(left=0)
            ax.grid(True, alpha=0.3)
            ax.legend(loc="lower left")
            ax.set_title("Dose-volume histogram" + ("" if sampled else " (reported points)"))
            return fig

    return FigureSpec(f"dvh-{index + 1}", f"Dose-volume histogram, {report.effective}", alt, build)


def waterfall_figure(case: Case) -> FigureSpec | None:
    """Best % change of each target lesion's size against its first measurement."""
    best = case.best_changes()
    if not best:
        return None
    labels = _lesion_labels(case)
    alt = "Waterfall plot, best change of each target lesion's size: " + "; ".join(
        f"{labels.get(lesion, lesion)} {value:+.1f} %" for lesion, value in best) + "."

    def build() -> MplFigure:
        with rc_context(STYLE):
            fig = _new()
            ax = fig.add_subplot()
            xs = list(range(len(best)))
            values = [v for _, v in best]
            colours = [_COLOURS[1] if v > _PD_PERCENT else _COLOURS[0] if v <= _PR_PERCENT else "#999999"
                       for v in values]
            bars = ax.bar(xs, values, color=colours, edgecolor="black")
            for bar, value in zip(bars, values, strict=True):
                ax.annotate(f"{value:+.1f} %", (bar.get_x() + bar.get_width() / 2, value),
                            xytext=(0, 4 if value >= 0 else -4), textcoords="offset points",
                            ha="center", va="bottom" if value >= 0 else "top", fontsize=11)
            ax.axhline(_PD_PERCENT, color=_COLOURS[1], linestyle="--", linewidth=1, label="+20 %")
            ax.axhline(_PR_PERCENT, color=_COLOURS[0], linestyle=":", linewidth=1.5, label="−30 %")
            ax.axhline(0, color="black", linewidth=0.8)
            ax.set_xticks(xs, [lesion for lesion, _ in best])
            ax.set_ylabel("Best change from first measurement (%)")
            ax.set_ylim(min(min(values) * 1.25, -40), max(max(values) * 1.25, 30))
            ax.legend(loc="upper right")
            ax.set_title("Waterfall: best change per target lesion")
            return fig

    return FigureSpec("waterfall", "Waterfall plot", alt, build)


def _lesion_labels(case: Case) -> dict[str, str]:
    return {p.lesion: f"{p.lesion} · {p.label}" if p.label != p.lesion else p.lesion for p in case.lesions}


def spider_figure(case: Case) -> FigureSpec | None:
    """Each target lesion's % change over time (days after its first measurement)."""
    changes = sorted(case.lesion_changes().items())
    if not changes:
        return None
    labels = _lesion_labels(case)
    alt = "Spider plot of each target lesion's change from its first measurement: " + "; ".join(
        f"{labels.get(lesion, lesion)}: " + ", ".join(f"{d} {c:+.1f} %" for d, c in course)
        for lesion, course in changes) + "."

    def build() -> MplFigure:
        with rc_context(STYLE):
            fig = _new()
            ax = fig.add_subplot()
            for k, (lesion, course) in enumerate(changes):
                first = course[0][0]
                ax.plot([_days(first, d) for d, _ in course], [c for _, c in course], color=_COLOURS[k % 7],
                        marker=_MARKS[k % 7], linewidth=2, label=labels.get(lesion, lesion))
            ax.axhline(_PD_PERCENT, color=_COLOURS[1], linestyle="--", linewidth=1)
            ax.axhline(_PR_PERCENT, color=_COLOURS[0], linestyle=":", linewidth=1.5)
            ax.axhline(0, color="black", linewidth=0.8)
            ax.set_xlabel("Days after the first measurement (d)")
            ax.set_ylabel("Change of size (%)")
            ax.grid(True, alpha=0.3)
            ax.legend(loc="best", fontsize=10)
            ax.set_title("Spider plot: change per target lesion")
            return fig

    return FigureSpec("spider", "Spider plot", alt, build)


def marker_figure(points: Sequence[MarkerPoint]) -> FigureSpec | None:
    """Tumour markers over time, one panel per marker (each in its own unit)."""
    series: dict[str, list[MarkerPoint]] = {}
    for p in sorted(points, key=lambda p: (p.marker, p.date)):
        series.setdefault(p.marker, []).append(p)
    if not series:
        return None
    first = min(p.date for p in points)
    alt = "Tumour markers over time. " + "; ".join(
        f"{name}: " + ", ".join(f"{p.date} {p.value.value:g} {p.value.unit}" for p in course)
        for name, course in series.items()) + "."

    def build() -> MplFigure:
        with rc_context(STYLE):
            fig = _new()
            axes = fig.subplots(1, len(series), squeeze=False)[0]
            for k, (ax, (name, course)) in enumerate(zip(axes, series.items(), strict=True)):
                ax.plot([_days(first, p.date) for p in course], [p.value.value for p in course],
                        color=_COLOURS[k % 7], marker=_MARKS[k % 7], linewidth=2)
                ax.set_title(name, fontsize=12)
                ax.set_xlabel(f"Days after {first} (d)")
                ax.set_ylabel(course[0].value.unit)
                ax.set_ylim(bottom=0)
                ax.grid(True, alpha=0.3)
            return fig

    return FigureSpec("markers", "Tumour markers", alt, build)


def comparison_figure(comparison: DoseComparison, index: int) -> FigureSpec | None:
    """Predicted (MAA) beside delivered (Y-90) mean absorbed dose of each compared VOI."""
    rows = [(v.name, v.predicted["Dmean"], v.delivered["Dmean"], v.flagged) for v in comparison.vois
            if "Dmean" in v.predicted and "Dmean" in v.delivered]
    if not rows:
        return None
    alt = "Predicted versus delivered mean absorbed dose per VOI: " + "; ".join(
        f"{name} predicted {p.text(1)}, delivered {d.text(1)}" + (" (tumour dose differs by more than 20 %)" if flag else "")
        for name, p, d, flag in rows) + "."

    def build() -> MplFigure:
        with rc_context(STYLE):
            fig = _new()
            ax = fig.add_subplot()
            xs = list(range(len(rows)))
            width = 0.38
            series = (("predicted (MAA)", [p.value for _, p, _, _ in rows], -width / 2, _COLOURS[0], ""),
                      ("delivered (Y-90)", [d.value for _, _, d, _ in rows], width / 2, _COLOURS[1], "//"))
            for label, values, offset, colour, hatch in series:
                bars = ax.bar([x + offset for x in xs], values, width, color=colour, hatch=hatch, edgecolor="black",
                              label=label)
                for bar, value in zip(bars, values, strict=True):
                    ax.annotate(f"{value:.1f}", (bar.get_x() + bar.get_width() / 2, value), xytext=(0, 3),
                                textcoords="offset points", ha="center", va="bottom", fontsize=10)
            ax.set_xticks(xs, [f"{name}{' ⚠' if flag else ''}" for name, _, _, flag in rows])
            ax.set_ylabel(f"Mean absorbed dose ({rows[0][1].unit})")
            ax.set_ylim(0, max(max(p.value, d.value) for _, p, d, _ in rows) * 1.18 or 1)
            ax.grid(True, axis="y", alpha=0.3)
            ax.legend(loc="upper right")
            ax.set_title("Predicted versus delivered dose")
            return fig

    return FigureSpec(f"comparison-{index + 1}", f"Predicted versus delivered dose, {comparison.effective}", alt, build)


def dose_response_figure(response: DoseResponse, index: int) -> FigureSpec | None:
    """Each lesion's change of size against its mean absorbed dose (one criterion)."""
    points = [(lesion.label or lesion.lesion, lesion.dose, lesion.change, lesion.category) for lesion in response.lesions
              if lesion.dose is not None and lesion.change is not None]
    if not points:
        return None
    alt = f"Dose and response per lesion ({response.label}): " + "; ".join(
        f"{name} {dose.text(1)}, {change.value:+.1f} %" + (f" ({category})" if category else "")
        for name, dose, change, category in points) + "."

    def build() -> MplFigure:
        with rc_context(STYLE):
            fig = _new()
            ax = fig.add_subplot()
            for k, (name, dose, change, _) in enumerate(points):
                ax.plot([dose.value], [change.value], linestyle="none", color=_COLOURS[k % 7],
                        marker=_MARKS[k % 7], markersize=10, label=name)
            ax.axhline(_PD_PERCENT, color=_COLOURS[1], linestyle="--", linewidth=1)
            ax.axhline(_PR_PERCENT, color=_COLOURS[0], linestyle=":", linewidth=1.5)
            ax.axhline(0, color="black", linewidth=0.8)
            ax.set_xlabel(f"Mean absorbed dose ({points[0][1].unit})")
            ax.set_ylabel("Change of size from baseline (%)")
            ax.set_xlim(left=0)
            ax.grid(True, alpha=0.3)
            ax.legend(loc="best", fontsize=10)
            ax.set_title(f"Dose and response per lesion ({response.label})")
            return fig

    return FigureSpec(f"dose-response-{index + 1}", f"Dose and response per lesion, {response.label}", alt, build)


def figure_specs(case: Case) -> list[FigureSpec]:
    """Every figure the case has data for, in page order (nothing drawn yet)."""
    specs: list[FigureSpec | None] = [dvh_figure(r, i) for i, r in enumerate(case.doses) if r.vois]
    specs += [comparison_figure(c, i) for i, c in enumerate(case.comparisons)]
    specs += [waterfall_figure(case), spider_figure(case)]
    specs += [dose_response_figure(r, i) for i, r in enumerate(case.dose_responses)]
    specs += [marker_figure(case.markers)]
    return [s for s in specs if s is not None]


def render_all(case: Case) -> list[Figure]:
    """Every figure of the case, drawn."""
    return [spec.figure() for spec in figure_specs(case)]


def render(case: Case, name: str) -> Figure | None:
    """One figure by name (``None`` when the case has no such figure)."""
    spec = next((s for s in figure_specs(case) if s.name == name), None)
    return spec.figure() if spec else None
