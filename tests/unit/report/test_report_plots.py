"""Figures: their data are the FHIR values, their bytes are reproducible, and they match the
committed baseline images within a tolerance (NETLIVER_UPDATE_BASELINES=1 rewrites them)."""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from netliver.report.case import (
    Case,
    DoseReport,
    LesionPoint,
    MarkerPoint,
    PatientSummary,
    Quantity,
    VoiDose,
)
from netliver.report.plots import figure_specs, render

BASELINES = Path(__file__).parent / "baseline"
#: Largest mean absolute difference per channel (0-255) accepted against a baseline image: font
#: rasterisation may move by a pixel between FreeType builds, a changed curve moves far more.
TOLERANCE = 2.0


def _voi(name: str, **metrics: float) -> VoiDose:
    units = {k: "%" if k.startswith("V") else "Gy" for k in metrics}
    return VoiDose(name, name, {k: Quantity(v, units[k]) for k, v in metrics.items()}, Quantity(100.0, "mL"), None,
                   f"Observation/{name}")


CASE = Case(
    PatientSummary("p1", "Ada Example", "1968-03-14", "male"),
    doses=(DoseReport("DiagnosticReport/r1", "2026-12-02", "Voxel dosimetry report", "local deposition", "",
                      (_voi("liver", Dmin=5.0, D90=20.0, D70=30.0, D50=36.0, V100=3.1, V120=1.0, Dmax=150.0),
                       _voi("tumour 1", Dmin=90.0, D90=110.0, D70=125.0, D50=135.0, V100=95.0, V120=70.0, Dmax=180.0))),),
    lesions=tuple(LesionPoint(lesion, label, "target", when, Quantity(size, "mm"), f"Observation/{lesion}-{when}")
                  for lesion, label, course in (("L1", "Segment VIII", ((("2025-01-10", 42.0)), ("2025-04-10", 36.0), ("2025-07-10", 30.0))),
                                                ("L2", "Segment II", (("2025-01-10", 30.0), ("2025-04-10", 33.0), ("2025-07-10", 37.0))))
                  for when, size in course),
    markers=(MarkerPoint("Chromogranin A", "2025-01-08", Quantity(480.0, "ug/L"), "Observation/c0"),
             MarkerPoint("Chromogranin A", "2025-04-08", Quantity(250.0, "ug/L"), "Observation/c1")),
)


def _spec(name: str):  # type: ignore[no-untyped-def]
    return next(s for s in figure_specs(CASE) if s.name == name)


def test_every_figure_the_case_has_data_for_is_listed_in_page_order() -> None:
    assert [s.name for s in figure_specs(CASE)] == ["dvh-1", "waterfall", "spider", "markers"]
    assert figure_specs(Case(CASE.patient)) == []
    assert render(CASE, "dvh-2") is None and render(CASE, "nonsense") is None


def test_the_dvh_curves_pass_through_the_reported_points() -> None:
    ax = _spec("dvh-1").build().axes[0]
    liver, tumour = (line.get_xydata().tolist() for line in ax.get_lines())
    assert liver == [[5.0, 100.0], [20.0, 90.0], [30.0, 70.0], [36.0, 50.0], [100.0, 3.1], [120.0, 1.0], [150.0, 0.0]]
    assert tumour[:4] == [[90.0, 100.0], [100.0, 95.0], [110.0, 90.0], [120.0, 70.0]]
    assert "liver: 100 % of the volume at ≥ 5.0 Gy" in _spec("dvh-1").alt


def test_the_waterfall_bars_are_each_lesions_best_change() -> None:
    ax = _spec("waterfall").build().axes[0]
    heights = [round(p.get_height(), 1) for p in ax.patches]
    assert heights == [10.0, -28.6]  # L2 best +10.0 % (33 vs 30 mm), L1 -28.6 % (30 vs 42 mm)
    assert [t.get_text() for t in ax.get_xticklabels()] == ["L2", "L1"]
    assert "L1 · Segment VIII -28.6 %" in _spec("waterfall").alt


def test_the_spider_lines_are_the_changes_over_days() -> None:
    ax = _spec("spider").build().axes[0]
    l1 = ax.get_lines()[0].get_xydata().tolist()
    assert l1 == [[0.0, 0.0], [90.0, -14.3], [181.0, -28.6]]


def test_the_marker_panel_plots_the_stored_values_in_their_unit() -> None:
    ax = _spec("markers").build().axes[0]
    assert ax.get_lines()[0].get_xydata().tolist() == [[0.0, 480.0], [90.0, 250.0]]
    assert ax.get_ylabel() == "ug/L"


@pytest.mark.parametrize("name", ["dvh-1", "waterfall", "spider", "markers"])
def test_png_bytes_are_reproducible_and_match_the_baseline(name: str) -> None:
    first, second = _spec(name).draw(), _spec(name).draw()
    assert first == second, "two renderings of the same data differ"
    assert b"Software" not in first and b"Creation Time" not in first
    baseline = BASELINES / f"{name}.png"
    if os.environ.get("NETLIVER_UPDATE_BASELINES") == "1" or not baseline.exists():
        BASELINES.mkdir(exist_ok=True)
        baseline.write_bytes(first)
        pytest.skip(f"baseline {baseline.name} written")
    got = np.asarray(Image.open(io.BytesIO(first)).convert("RGB"), dtype=float)
    want = np.asarray(Image.open(baseline).convert("RGB"), dtype=float)
    assert got.shape == want.shape
    assert np.abs(got - want).mean() <= TOLERANCE
