"""Imaging advice for staging and therapy selection (docs/eligibility.md).

From Rozenblum et al. (Eur J Radiol, imaging-guided precision medicine in GEP-NET), Table 2: midgut → 18F-DOPA PET first, 68Ga-DOTATOC second;
foregut → 68Ga-DOTATOC / SSTR scintigraphy first; hindgut → CT/MRI; poorly differentiated →
FDG PET; liver staging → MRI with DWI. From Cazzato et al., Cancers 13:6368 (2021), section 3 (and Rozenblum):
Ki-67 ≥ 10 % → FDG PET for well-differentiated tumours.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

__all__ = ["ImagingAdvice", "imaging_advice"]

_MIDGUT = frozenset({"small-intestine", "appendix"})
_FOREGUT = frozenset({"pancreas", "stomach", "lung"})
_HINDGUT = frozenset({"colorectum"})


_CAZZATO_2021 = "Cazzato 2021 (Cancers; doi:10.3390/cancers13246368)"
_ROZENBLUM_2020 = "Rozenblum 2020 (Eur J Radiol; doi:10.1016/j.ejrad.2019.108743)"


@dataclass(frozen=True)
class ImagingAdvice:
    code: str  # short machine-readable key (dopa-pet, sstr-pet, fdg-pet, mri-dwi, ct-mri)
    text: str
    source: str


def imaging_advice(primary_site: str | None, ki67_pct: Decimal | None,
                   grade: int | None) -> tuple[ImagingAdvice, ...]:
    """Advice in order of priority; the liver-staging MRI with DWI is always advised."""
    out: list[ImagingAdvice] = []
    t2 = f"{_ROZENBLUM_2020} Table 2"
    if primary_site in _MIDGUT:
        out.append(ImagingAdvice("dopa-pet", "Midgut primary: 18F-DOPA PET first, 68Ga-DOTATOC PET second.", t2))
    elif primary_site in _FOREGUT:
        out.append(ImagingAdvice("sstr-pet", "Foregut primary: 68Ga-DOTATOC PET (or SSTR scintigraphy) first, 18F-DOPA PET second.", t2))
    elif primary_site in _HINDGUT:
        out.append(ImagingAdvice("ct-mri", "Hindgut primary: contrast-enhanced CT / MRI.", t2))
    elif primary_site == "unknown":
        out.append(ImagingAdvice("sstr-pet", "Unknown primary: 68Ga-DOTA-peptide PET (gold standard for well-differentiated NET).",
                                 f"{_CAZZATO_2021} section 3"))
    poorly = (grade is not None and grade >= 3) or (ki67_pct is not None and ki67_pct > 20)
    if poorly:
        out.append(ImagingAdvice("fdg-pet", "Poorly differentiated / high grade: 18F-FDG PET.", t2))
    elif ki67_pct is not None and ki67_pct >= 10:
        out.append(ImagingAdvice("fdg-pet", f"Ki-67 {ki67_pct} % (≥ 10 %): add 18F-FDG PET (prognosis, PRRT resistance).",
                                 f"{_CAZZATO_2021} section 3; {_ROZENBLUM_2020}"))
    out.append(ImagingAdvice("mri-dwi", "Liver staging: MRI with diffusion-weighted imaging (DWI).", t2))
    return tuple(out)
