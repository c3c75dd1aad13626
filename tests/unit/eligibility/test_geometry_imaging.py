"""Ablation-zone geometry (Cazzato et al., Cancers 13:6368 (2021), sections 5.1-5.4) and imaging advice
(Rozenblum et al. Table 2; Ki-67 >= 10 % -> FDG PET, Cazzato 2021 section 4)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from services.eligibility.domain.geometry import AblationFit, ablation_fit, required_zone_mm
from services.eligibility.domain.imaging import imaging_advice
from services.eligibility.ruleset import default_ruleset

ZONES = default_ruleset().zones
D = Decimal


def test_worked_example_two_cm_tumour_needs_three_to_four_cm() -> None:
    # "a 2 cm tumour needs a 3-4 cm zone" (a 0.5-1 cm ablative margin all round) for margins of 0.5 and 1.0 cm
    assert required_zone_mm(D(20), D(5)) == D(30)
    assert required_zone_mm(D(20), D(10)) == D(40)


@pytest.mark.parametrize(("modality", "lesion_mm", "expected"), [
    ("rfa", 20, AblationFit.SINGLE), ("rfa", 21, AblationFit.CLUSTER),
    ("rfa", 35, AblationFit.CLUSTER), ("rfa", 36, AblationFit.BEYOND),
    ("mwa", 30, AblationFit.SINGLE), ("mwa", 31, AblationFit.CLUSTER),
    ("mwa", 50, AblationFit.CLUSTER), ("mwa", 51, AblationFit.BEYOND),
    ("mwa", 65, AblationFit.BEYOND),  # Cazzato 2021 Figure 3: 6.5 cm, overlapping multi-antenna ablation
    ("laser", 10, AblationFit.SINGLE), ("laser", 11, AblationFit.BEYOND),
    ("ire", 5, AblationFit.CLUSTER), ("ire", 20, AblationFit.CLUSTER), ("ire", 21, AblationFit.BEYOND),
])
def test_fit_at_the_zone_edges(modality: str, lesion_mm: int, expected: AblationFit) -> None:
    assert ablation_fit(ZONES[modality], D(lesion_mm), D(5)) is expected


def test_wider_margin_needs_a_bigger_zone() -> None:
    assert ablation_fit(ZONES["rfa"], D(20), D(5)) is AblationFit.SINGLE
    assert ablation_fit(ZONES["rfa"], D(20), D(10)) is AblationFit.CLUSTER


def test_negative_sizes_are_refused() -> None:
    with pytest.raises(ValueError):
        required_zone_mm(D(-1), D(5))


def _codes(site: str | None, ki67: float | None = None, grade: int | None = None) -> list[str]:
    return [a.code for a in imaging_advice(site, D(str(ki67)) if ki67 is not None else None, grade)]


def test_midgut_dopa_first() -> None:
    assert _codes("small-intestine", 2) == ["dopa-pet", "mri-dwi"]


def test_foregut_sstr_first() -> None:
    assert _codes("pancreas", 1) == ["sstr-pet", "mri-dwi"]


def test_hindgut_ct_mri() -> None:
    assert _codes("colorectum", 1)[0] == "ct-mri"


def test_ki67_ten_percent_adds_fdg_and_nine_does_not() -> None:
    assert "fdg-pet" in _codes("pancreas", 10)
    assert "fdg-pet" not in _codes("pancreas", 9.9)


def test_poorly_differentiated_fdg() -> None:
    assert "fdg-pet" in _codes("small-intestine", None, 3)


def test_mri_dwi_always_advised() -> None:
    assert _codes(None)[-1] == "mri-dwi"
