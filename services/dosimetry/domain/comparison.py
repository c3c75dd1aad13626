"""Predicted versus delivered dose: an MAA simulation against the post-treatment Y-90 image.

Per VOI present in both, the predicted (Tc-99m MAA) and delivered (Y-90 PET or bremsstrahlung
SPECT) mean dose, D70 and V100, their difference in Gy (delivered − predicted) and in % of the
predicted value; and the lung shunt fraction both ways (lung counts / lung + liver counts). A
tumour VOI whose mean dose differs by more than :data:`TUMOUR_DMEAN_FLAG_PERCENT` of the
predicted value is flagged: MAA predicts the tumour dose only loosely, normal liver better
(Garin 2012, Eur. J. Nucl. Med. Mol. Imaging; Haste 2017, J. Nucl. Med.; EANM 2022 §6).

VOIs are matched by name (case and surrounding blanks ignored); a VOI present in one study only
is named in :attr:`DoseComparison.unmatched`, never paired with another.
"""

from __future__ import annotations

from dataclasses import dataclass

from services.dosimetry.domain.errors import DosimetryInputError

__all__ = ["TUMOUR_DMEAN_FLAG_PERCENT", "DoseComparison", "StudyDoses", "VoiComparison", "VoiMetrics",
           "compare_doses", "lung_shunt_from_shares"]

#: A tumour's delivered mean dose differing from the predicted one by more than this (% of the
#: predicted value) is flagged (the project's rule: "> 20 % on tumour Dmean"; docs/dosimetry.md).
TUMOUR_DMEAN_FLAG_PERCENT = 20.0


@dataclass(frozen=True)
class VoiMetrics:
    """What one voxel-dosimetry result says about one VOI. ``count_share``: share of the counts
    of the field of view in the VOI (0-1), when reported."""

    name: str
    role: str
    dmean_gy: float
    d70_gy: float | None
    v100_percent: float | None
    count_share: float | None = None
    #: Where the figures come from (the result's own id; opaque to the comparison).
    source: str = ""


@dataclass(frozen=True)
class StudyDoses:
    """One voxel-dosimetry result (predicted: an MAA simulation; delivered: a Y-90 image)."""

    reference: str
    vois: tuple[VoiMetrics, ...]


@dataclass(frozen=True)
class Difference:
    """delivered − predicted (Gy or % points of V100) and in % of the predicted value (None when
    the predicted value is 0)."""

    predicted: float
    delivered: float
    absolute: float
    percent: float | None


@dataclass(frozen=True)
class VoiComparison:
    name: str
    role: str
    predicted: VoiMetrics
    delivered: VoiMetrics
    dmean: Difference
    d70: Difference | None
    v100: Difference | None
    flagged: bool


@dataclass(frozen=True)
class DoseComparison:
    vois: tuple[VoiComparison, ...]
    lung_shunt_predicted: float | None
    lung_shunt_delivered: float | None
    unmatched: tuple[str, ...]

    @property
    def flagged(self) -> tuple[VoiComparison, ...]:
        return tuple(v for v in self.vois if v.flagged)


def _difference(predicted: float | None, delivered: float | None) -> Difference | None:
    if predicted is None or delivered is None:
        return None
    percent = 100.0 * (delivered - predicted) / predicted if predicted != 0 else None
    return Difference(predicted, delivered, delivered - predicted, percent)


def lung_shunt_from_shares(vois: tuple[VoiMetrics, ...]) -> float | None:
    """Lung counts / (lung + liver counts) from the VOIs' count shares (EANM 2022), when both a
    lung and a liver VOI report one."""
    lung = [v.count_share for v in vois if v.role == "lung" and v.count_share is not None]
    liver = [v.count_share for v in vois if v.role == "liver" and v.count_share is not None]
    if not lung or not liver:
        return None
    total = sum(lung) + sum(liver)
    return sum(lung) / total if total > 0 else None


def _key(name: str) -> str:
    return " ".join(name.lower().split())


def compare_doses(predicted: StudyDoses, delivered: StudyDoses,
                  flag_percent: float = TUMOUR_DMEAN_FLAG_PERCENT) -> DoseComparison:
    """Pair the VOIs of the two results by name and compare them (module doc)."""
    if predicted.reference == delivered.reference:
        raise DosimetryInputError("delivered", "the predicted and delivered results are the same report")
    later = {_key(v.name): v for v in delivered.vois}
    earlier = {_key(v.name): v for v in predicted.vois}
    rows: list[VoiComparison] = []
    for key, p in earlier.items():
        d = later.get(key)
        if d is None:
            continue
        dmean = _difference(p.dmean_gy, d.dmean_gy)
        assert dmean is not None  # both means are given
        flagged = p.role == "tumour" and ((dmean.percent is None and dmean.absolute != 0) or
                                           (dmean.percent is not None and abs(dmean.percent) > flag_percent))
        rows.append(VoiComparison(p.name, p.role, p, d, dmean, _difference(p.d70_gy, d.d70_gy),
                                  _difference(p.v100_percent, d.v100_percent), flagged))
    if not rows:
        raise DosimetryInputError("delivered", "no VOI name is shared by the predicted and delivered results "
                                               f"(predicted: {', '.join(sorted(v.name for v in predicted.vois))}; "
                                               f"delivered: {', '.join(sorted(v.name for v in delivered.vois))})")
    unmatched = tuple(sorted({v.name for v in predicted.vois if _key(v.name) not in later}
                             | {v.name for v in delivered.vois if _key(v.name) not in earlier}))
    return DoseComparison(tuple(rows), lung_shunt_from_shares(predicted.vois), lung_shunt_from_shares(delivered.vois),
                          unmatched)
