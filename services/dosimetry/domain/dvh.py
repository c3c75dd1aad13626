"""Dose-volume histograms and metrics per VOI (EANM 2022 voxel dosimetry).

Definitions (n = number of voxels in the VOI, every voxel the same volume):

- ``Dmean``: mean dose of the VOI's voxels.
- ``Dx`` (x in %): the minimum dose received by the hottest x % of the VOI. The hottest x % is
  taken as the k = ⌈x·n/100⌉ hottest voxels (at least x % of the volume; k ≥ 1) and Dx is the
  k-th highest voxel dose. Nearest-rank, no interpolation between voxels: Dx is always a dose
  some voxel actually received, and D100 is the minimum, D0 the maximum.
- ``Vy`` (y in Gy): the percentage of the VOI's voxels with dose ≥ y (inclusive), no
  interpolation.
- :func:`cumulative_dvh`: V(D) on a dose grid, the fraction of voxels with dose ≥ D.

The VOI's doses are gathered once; Dx values come from ordering that one copy only as far as
the requested ranks need (:func:`_order_ranks`), Dmin, Dmax, Dmean and Vy from the same copy.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from services.dosimetry.domain.errors import DosimetryInputError

__all__ = ["SAMPLED_DVH_PERCENTS", "cumulative_dvh", "dvh_by_label", "dvh_metrics", "metric_name", "sampled_dvh"]

#: Volume levels (%) of the sampled DVH the voxel job stores: D0 (the maximum) to D100 (the minimum).
SAMPLED_DVH_PERCENTS = tuple(range(101))


def metric_name(prefix: str, value: float) -> str:
    """``D`` 50 → "D50", ``V`` 100.0 → "V100", ``D`` 2.5 → "D2.5"."""
    return f"{prefix}{value:g}"


def _voi_values(dose_gy: npt.ArrayLike, mask: npt.ArrayLike) -> npt.NDArray[Any]:
    dose = np.asarray(dose_gy)
    m = np.asarray(mask)
    if m.shape != dose.shape:
        raise DosimetryInputError("mask", f"mask shape {m.shape} differs from dose shape {dose.shape}")
    values: npt.NDArray[Any] = dose[m.astype(bool, copy=False)]
    if values.size == 0:
        raise DosimetryInputError("mask", "the VOI mask is empty")
    return values


#: Above this many ranks a full sort is cheaper than one selection per rank.
_SORT_ABOVE_RANKS = 24


def _order_ranks(values: npt.NDArray[Any], kth: Sequence[int]) -> None:
    """Reorder ``values`` in place so that each index of ``kth`` (ascending, distinct) holds the
    value a full ascending sort would put there.

    A few ranks: one single-rank ``partition`` per rank, the middle rank first, then each half's
    ranks within that half (numpy selects a single rank with SIMD; several ranks in one call
    fall back to a scalar introselect, 10× slower on a 1.2 M-voxel VOI). Many ranks (the
    101-point sampled DVH): one in-place sort.
    """
    if len(kth) > _SORT_ABOVE_RANKS:
        values.sort()
        return
    # (lo, hi, first, last): place kth[first:last], all inside values[lo:hi]
    pending = [(0, values.size, 0, len(kth))]
    while pending:
        lo, hi, first, last = pending.pop()
        if first == last:
            continue
        mid = (first + last) // 2
        k = kth[mid]
        values[lo:hi].partition(k - lo)
        pending.append((lo, k, first, mid))
        pending.append((k + 1, hi, mid + 1, last))


def dvh_metrics(dose_gy: npt.ArrayLike, mask: npt.ArrayLike, d_percents: Sequence[float] = (50, 70, 90),
                v_gy: Sequence[float] = (100, 120)) -> dict[str, float]:
    """DVH metrics of one VOI: "Dmean", "Dmin", "Dmax", "D<x>" for each x in ``d_percents`` (Gy)
    and "V<y>" for each y in ``v_gy`` (% of the VOI volume). Definitions in the module doc."""
    for x in d_percents:
        if not (0 <= x <= 100 and math.isfinite(x)):
            raise DosimetryInputError("d_percents", f"Dx needs 0 ≤ x ≤ 100, got {x}")
    for y in v_gy:
        if not math.isfinite(y):
            raise DosimetryInputError("v_gy", f"Vy needs a finite dose, got {y}")
    values = _voi_values(dose_gy, mask)
    n = values.size
    ranks = {x: min(n, max(1, math.ceil(x * n / 100.0 - 1e-9))) for x in d_percents}
    out: dict[str, float] = {
        "Dmean": float(np.mean(values, dtype=np.float64)),
        "Dmin": float(values.min()),
        "Dmax": float(values.max()),
    }
    # ascending order: the k-th highest dose sits at index n − k
    _order_ranks(values, sorted({n - k for k in ranks.values()}))
    for x, k in ranks.items():
        out[metric_name("D", x)] = float(values[n - k])
    for y in v_gy:
        out[metric_name("V", y)] = 100.0 * int(np.count_nonzero(values >= y)) / n
    return out


def dvh_by_label(dose_gy: npt.ArrayLike, labels: npt.ArrayLike, names: Mapping[int, str],
                 d_percents: Sequence[float] = (50, 70, 90), v_gy: Sequence[float] = (100, 120)
                 ) -> dict[str, dict[str, float]]:
    """:func:`dvh_metrics` for every label value of a label map (``names``: label → VOI name)."""
    lab = np.asarray(labels)
    return {name: dvh_metrics(dose_gy, lab == value, d_percents, v_gy) for value, name in names.items()}


def cumulative_dvh(dose_gy: npt.ArrayLike, mask: npt.ArrayLike, bin_width_gy: float = 1.0
                   ) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """(dose_gy, volume_fraction): V(D) = fraction of VOI voxels with dose ≥ D, for
    D = 0, w, 2w, ... up to the maximum dose (one histogram pass)."""
    if not (bin_width_gy > 0 and math.isfinite(bin_width_gy)):
        raise DosimetryInputError("bin_width_gy", f"must be positive, got {bin_width_gy}")
    values = _voi_values(dose_gy, mask)
    top = max(float(values.max()), 0.0)
    nbins = math.floor(top / bin_width_gy) + 1
    edges = np.arange(nbins + 1, dtype=np.float64) * bin_width_gy
    counts, _ = np.histogram(np.clip(values, 0, None), bins=edges)
    # voxels at exactly an upper edge go to the last bin in numpy; fine for a display DVH
    above = counts[::-1].cumsum()[::-1].astype(np.float64) / values.size
    return edges[:-1], above


def sampled_dvh(dose_gy: npt.ArrayLike, mask: npt.ArrayLike,
                percents: Sequence[float] = SAMPLED_DVH_PERCENTS) -> tuple[tuple[float, float], ...]:
    """The cumulative DVH of one VOI as (volume %, Dx in Gy) for each x in ``percents``: Dx as
    :func:`dvh_metrics` defines it, so the curve passes through the reported D50, D70 and D90."""
    metrics = dvh_metrics(dose_gy, mask, d_percents=percents, v_gy=())
    return tuple((float(x), metrics[metric_name("D", x)]) for x in percents)
