"""The dvh stage's VOI metrics (:func:`voi_doses`, which reads each VOI's voxels once) are what
the domain functions give over the VOI's mask, number for number; an empty VOI or a mask on
another grid is refused as they refuse it."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.dosimetry.domain.dvh import dvh_metrics, sampled_dvh
from services.dosimetry.domain.errors import DosimetryInputError
from services.dosimetry.domain.radiobiology import TissueTable, bed_metrics, tissue_for_role
from services.dosimetry.imaging.voi_doses import voi_doses
from services.dosimetry.imaging.voi_types import Voi

ROLES = ("liver", "tumour", "lung", "normal-liver", "other")


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), shape=st.tuples(st.integers(2, 9), st.integers(2, 9), st.integers(2, 9)),
       roles=st.lists(st.sampled_from(ROLES), min_size=1, max_size=4), share=st.floats(0.05, 1.0))
def test_each_voi_gets_the_domain_metrics_of_its_mask(seed: int, shape: tuple[int, int, int], roles: list[str],
                                                      share: float) -> None:
    rng = np.random.default_rng(seed)
    dose = (rng.gamma(2.0, 40.0, shape)).astype(np.float32)
    counts = rng.uniform(0.0, 5.0, shape).astype(np.float32)
    density = rng.uniform(0.2, 1.9, shape)
    vois = []
    for i, role in enumerate(roles):
        mask = rng.random(shape) < share
        mask.flat[rng.integers(mask.size)] = True  # never empty
        vois.append(Voi(f"voi {i}", mask, role, "segmentation", tracking_uid=f"1.2.{i}"))
    tissues = TissueTable()
    results, _ = voi_doses(dose, vois, counts, density, 0.125, tissues)
    total = float(counts.sum(dtype=np.float64))
    for voi, got in zip(vois, results, strict=True):
        assert got.metrics == dvh_metrics(dose, voi.mask)
        assert got.dvh == sampled_dvh(dose, voi.mask)
        tissue = tissue_for_role(voi.role, tissues)
        assert got.radiobiology == (bed_metrics(dose, voi.mask, tissue) if tissue is not None else {})
        assert got.mass_g == float(density[voi.mask].sum() * 0.125)
        assert got.activity_fraction == float(counts[voi.mask].sum(dtype=np.float64) / total)
        assert (got.name, got.role, got.voxel_count, got.tracking_uid) == (
            voi.name, voi.role, int(voi.mask.sum()), voi.tracking_uid)


def test_an_empty_voi_and_a_mask_of_another_grid_are_refused() -> None:
    dose = np.ones((4, 4, 4), dtype=np.float32)
    empty = Voi("empty", np.zeros((4, 4, 4), dtype=bool), "tumour", "segmentation")
    with pytest.raises(DosimetryInputError, match="empty") as err:
        voi_doses(dose, [empty], dose, dose, 1.0, None)
    assert err.value.field == "mask"
    other = Voi("other grid", np.ones((4, 4, 5), dtype=bool), "liver", "segmentation")
    with pytest.raises(DosimetryInputError, match="differs from dose shape") as err:
        voi_doses(dose, [other], dose, dose, 1.0, None)
    assert err.value.field == "mask"
