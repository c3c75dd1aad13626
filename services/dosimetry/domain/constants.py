"""Physical constants of Y-90 radioembolisation, each named with its source and version.

Where sources disagree, each version is kept as a named constant and one is the
documented default.

- Dose constant C (Gy·kg/GBq): absorbed dose per GBq per kg for complete decay of Y-90 with local
  absorption of all beta energy. EANM 2022 (Weber et al., EJNMMI 49:1682, 2022, §"Dosimetry")
  49.67 (the default here); TheraSphere (glass) instructions for use 50; AAPM (Dezarn et al.,
  Med. Phys. 38:4824, 2011) 49.38.
- Half-life of Y-90: 64.1 h (DDEP/NNDC evaluated value, 2.67 d; Cazzato et al., Cancers 13:6368 (2021) "64 h"); EANM 2022
  uses 64.2 h.
- Mean beta energy 0.9267 MeV (ICRP 107); Cazzato 2021 quotes 0.94 MeV. The Lanconelli 2012
  voxel S-value kernels integrate to ≈ 0.935 MeV per decay.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = [
    "DEFAULT_DOSE_CONSTANT",
    "DEFAULT_LUNG_MASS_KG",
    "DEFAULT_TISSUE_DENSITY_G_PER_ML",
    "DOSE_CONSTANTS",
    "DOSE_CONSTANT_AAPM",
    "DOSE_CONSTANT_EANM_2022",
    "DOSE_CONSTANT_THERASPHERE",
    "MEV_TO_J",
    "Y90_HALF_LIFE_EANM_2022_H",
    "Y90_HALF_LIFE_H",
    "Y90_MEAN_BETA_ENERGY_MEV",
    "DoseConstant",
    "mean_life_s",
]


@dataclass(frozen=True)
class DoseConstant:
    """A versioned dose constant: ``value_gy_kg_per_gbq`` from ``source`` (``version``)."""

    key: str
    value_gy_kg_per_gbq: float
    source: str
    version: str

    @property
    def policy_uri(self) -> str:
        """URI naming this constant in ``Provenance.policy``."""
        return (f"https://netliver.org/fhir/policy/dose-constant/{self.key}"
                f"?version={self.version}&value={self.value_gy_kg_per_gbq:g}")


DOSE_CONSTANT_EANM_2022 = DoseConstant("eanm", 49.67, "EANM 2022 radioembolisation dosimetry guideline", "2022")
DOSE_CONSTANT_THERASPHERE = DoseConstant("therasphere", 50.0, "TheraSphere instructions for use", "label")
DOSE_CONSTANT_AAPM = DoseConstant("aapm", 49.38, "AAPM Task Group 144 (Dezarn 2011)", "2011")

#: Every named dose constant by key.
DOSE_CONSTANTS: dict[str, DoseConstant] = {
    c.key: c for c in (DOSE_CONSTANT_EANM_2022, DOSE_CONSTANT_THERASPHERE, DOSE_CONSTANT_AAPM)
}
#: The default (EANM 2022).
DEFAULT_DOSE_CONSTANT = DOSE_CONSTANT_EANM_2022

#: Y-90 physical half-life, hours (evaluated nuclear data; the default here).
Y90_HALF_LIFE_H = 64.1
#: Y-90 half-life used by the EANM 2022 guideline, hours.
Y90_HALF_LIFE_EANM_2022_H = 64.2
#: Mean beta energy of Y-90, MeV (ICRP 107).
Y90_MEAN_BETA_ENERGY_MEV = 0.9267
#: Joules per MeV.
MEV_TO_J = 1.602176634e-13
#: Soft-tissue density used to turn volumes into masses (EANM 2022: M = V·1.03 g/mL).
DEFAULT_TISSUE_DENSITY_G_PER_ML = 1.03
#: Lung mass of the standard lung-dose formula (EANM 2022), kg.
DEFAULT_LUNG_MASS_KG = 1.0


def mean_life_s(half_life_h: float = Y90_HALF_LIFE_H) -> float:
    """Mean life τ = T½/ln 2 in seconds: cumulated activity per unit activity for complete decay."""
    return half_life_h * 3600.0 / math.log(2.0)
