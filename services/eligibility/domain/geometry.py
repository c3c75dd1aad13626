"""Ablation-zone geometry: does the largest lesion plus its margin fit the zone a modality reaches?

The ablation zone must cover the lesion plus a 0.5-1.0 cm margin all round, so a 2 cm tumour
needs a 3-4 cm zone. Zones per modality (Cazzato et al., Cancers 13:6368 (2021),
sections 5.1-5.4): laser < 2 cm per fibre; RFA about 3 cm per electrode, 4-4.5 cm with a
cluster of up to three; MWA up to 4 cm with one antenna, 5-6 cm with three; IRE 2-3 cm with
three to four electrodes. The figures are data of the rule set (``ablation_zones``).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from enum import Enum

__all__ = ["AblationFit", "AblationZone", "ablation_fit", "required_zone_mm"]


class AblationFit(Enum):
    SINGLE = "single"  # one applicator reaches lesion + margin
    CLUSTER = "cluster"  # a cluster of applicators is needed
    BEYOND = "beyond"  # larger than a cluster reaches: overlapping ablations or another therapy


@dataclass(frozen=True)
class AblationZone:
    """Largest ablation zone (diameter, mm) of one modality with one applicator and with a cluster.

    ``None`` where the sources give no figure (IRE is always used with several electrodes;
    no multi-fibre laser figure in the sources).
    """

    modality: str
    single_mm: Decimal | None
    cluster_mm: Decimal | None
    cluster: str = ""


def required_zone_mm(lesion_diameter_mm: Decimal, margin_mm: Decimal) -> Decimal:
    """Zone diameter needed: the lesion plus the margin on both sides."""
    if lesion_diameter_mm < 0 or margin_mm < 0:
        raise ValueError("diameters and margins are not negative")
    return lesion_diameter_mm + 2 * margin_mm


def ablation_fit(zone: AblationZone, lesion_diameter_mm: Decimal, margin_mm: Decimal) -> AblationFit:
    """Which applicator set-up covers the lesion plus margin (boundaries inclusive)."""
    needed = required_zone_mm(lesion_diameter_mm, margin_mm)
    if zone.single_mm is not None and needed <= zone.single_mm:
        return AblationFit.SINGLE
    if zone.cluster_mm is not None and needed <= zone.cluster_mm:
        return AblationFit.CLUSTER
    return AblationFit.BEYOND
