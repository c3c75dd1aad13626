"""Y-90 voxel S-value tables (Lanconelli et al. 2012): loading, published values, energy balance,
interpolation for untabulated voxel sizes, and refusals."""

from __future__ import annotations

import filecmp
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.dosimetry.domain.errors import DosimetryInputError
from services.dosimetry.domain.kernel import interpolate_kernel
from services.dosimetry.kernel_tables import (
    BUNDLED_KERNEL_DIR,
    KernelUnavailableError,
    available_sizes_mm,
    kernel_dir,
    load_kernel,
)

SHARED_TABLES = Path(__file__).resolve().parents[3] / ".." / "shared" / "data" / "vsv-y90"
#: The 13 voxel sizes of the Lanconelli 2012 Y-90 database (mm).
TABULATED_MM = (2.21, 2.33, 2.4, 3.0, 3.59, 3.9, 4.0, 4.42, 4.8, 5.0, 6.0, 6.8, 9.28)


def test_bundled_tables_are_complete_and_cited() -> None:
    assert available_sizes_mm("soft") == TABULATED_MM
    assert available_sizes_mm("bone") == TABULATED_MM
    assert len(list(BUNDLED_KERNEL_DIR.glob("90Y*mm*.txt"))) == 26
    assert "Lanconelli" in (BUNDLED_KERNEL_DIR / "README.md").read_text(encoding="utf-8")


@pytest.mark.skipif(not SHARED_TABLES.is_dir(), reason="shared data folder not present")
def test_bundled_tables_equal_the_shared_copy() -> None:
    for path in BUNDLED_KERNEL_DIR.glob("90Y*.txt"):
        assert filecmp.cmp(path, SHARED_TABLES / path.name, shallow=False), path.name


def test_published_values_at_4_42_mm_soft_tissue() -> None:
    kernel = load_kernel(4.42)
    centre = tuple(n // 2 for n in kernel.values.shape)
    assert kernel.values.shape == (11, 11, 11)
    assert kernel.values[centre] == pytest.approx(0.689)
    i, j, k = centre
    for face in ((i + 1, j, k), (i - 1, j, k), (i, j + 1, k), (i, j, k - 1)):
        assert kernel.values[face] == pytest.approx(0.0973)
    assert not kernel.resampled
    assert "Lanconelli" in kernel.source


def test_mirroring_is_symmetric() -> None:
    values = load_kernel(3.0, "bone").values
    assert np.array_equal(values, values[::-1, :, :])
    assert np.array_equal(values, values[:, ::-1, :])
    assert np.array_equal(values, values.transpose(2, 1, 0))


@pytest.mark.parametrize("tissue", ["soft", "bone"])
@pytest.mark.parametrize("size_mm", TABULATED_MM)
def test_kernel_sum_times_voxel_mass_is_mean_beta_energy(size_mm: float, tissue: str) -> None:
    # Lanconelli 2012 tables: Σ S × voxel mass ≈ 0.935 MeV per decay (Y-90 mean beta energy 0.93 MeV)
    assert load_kernel(size_mm, tissue).energy_per_decay_mev() == pytest.approx(0.935, abs=0.005)


@pytest.mark.parametrize("index", range(1, len(TABULATED_MM) - 1))
def test_interpolation_reproduces_left_out_tables(index: int) -> None:
    # leave one table out: interpolate it from its neighbours and compare with the table
    lower, size, upper = TABULATED_MM[index - 1], TABULATED_MM[index], TABULATED_MM[index + 1]
    built = interpolate_kernel(load_kernel(lower), load_kernel(upper), size)
    table = load_kernel(size).values
    c = 5
    assert built.values[c, c, c] == pytest.approx(table[c, c, c], rel=0.03)
    assert built.values[c, c, c + 1] == pytest.approx(table[c, c, c + 1], rel=0.03)
    assert built.values[c, c + 1, c + 1] == pytest.approx(table[c, c + 1, c + 1], rel=0.03)
    assert built.energy_per_decay_mev() == pytest.approx(load_kernel(lower).energy_per_decay_mev(), rel=1e-9)


def test_untabulated_cubic_size_is_interpolated() -> None:
    kernel = load_kernel(4.6)
    assert kernel.resampled
    assert kernel.voxel_size_mm == (4.6, 4.6, 4.6)
    # between the 4.42 and 4.8 mm centre values
    assert load_kernel(4.8).values[5, 5, 5] < kernel.values[5, 5, 5] < load_kernel(4.42).values[5, 5, 5]
    assert kernel.energy_per_decay_mev() == pytest.approx(0.935, abs=0.005)


def test_near_tabulated_size_uses_the_table() -> None:
    kernel = load_kernel((4.4196, 4.4196, 4.4196))  # a typical SPECT grid, within 1 % of 4.42 mm
    assert not kernel.resampled
    # the 4.42 mm table scaled by the voxel-volume ratio (4.42/4.4196)³ to keep the energy per decay
    assert kernel.values[5, 5, 5] == pytest.approx(0.689 * (4.42 / 4.4196) ** 3)
    assert kernel.energy_per_decay_mev() == pytest.approx(load_kernel(4.42).energy_per_decay_mev())
    assert kernel.voxel_size_mm == (4.4196, 4.4196, 4.4196)


def test_anisotropic_voxels_get_a_symmetric_energy_conserving_kernel() -> None:
    kernel = load_kernel((4.0, 4.0, 5.0))
    values = kernel.values
    assert kernel.resampled
    assert all(n % 2 == 1 for n in values.shape)
    assert np.allclose(values, values[::-1, ::-1, ::-1])
    assert np.allclose(values, values.transpose(1, 0, 2))
    assert kernel.energy_per_decay_mev() == pytest.approx(0.935, abs=0.005)
    c = tuple(n // 2 for n in values.shape)
    # the neighbour along the long (5 mm) axis receives less than along the short axes
    assert values[c[0], c[1], c[2] + 1] < values[c[0] + 1, c[1], c[2]]


@pytest.mark.parametrize("size", [1.0, 2.0, 12.0, (4.0, 4.0, 1.5), (4.0, 4.0, 20.0), 0.0, -3.0, float("nan")])
def test_voxel_size_without_kernel_is_refused(size: float | tuple[float, float, float]) -> None:
    with pytest.raises(KernelUnavailableError) as err:
        load_kernel(size)
    assert err.value.field == "voxel_size_mm"
    assert isinstance(err.value, DosimetryInputError)


def test_unknown_tissue_is_refused() -> None:
    with pytest.raises(KernelUnavailableError) as err:
        load_kernel(4.42, "lung")
    assert err.value.field == "tissue"


def test_kernel_dir_from_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert kernel_dir() == BUNDLED_KERNEL_DIR
    monkeypatch.setenv("VSV_KERNEL_DIR", str(tmp_path))
    assert kernel_dir() == tmp_path
    with pytest.raises(KernelUnavailableError):
        load_kernel(4.42)  # the folder holds no tables
    (tmp_path / "90Y4.42mmsoft.txt").write_bytes((BUNDLED_KERNEL_DIR / "90Y4.42mmsoft.txt").read_bytes())
    assert load_kernel(4.42, directory=tmp_path).values[5, 5, 5] == pytest.approx(0.689)


@settings(max_examples=50, deadline=None)
@given(size=st.floats(2.21, 9.28), tissue=st.sampled_from(["soft", "bone"]))
def test_any_kernel_in_range_deposits_the_mean_beta_energy(size: float, tissue: str) -> None:
    # kernel sum × voxel mass ≈ 0.935 MeV per decay, tabulated or interpolated
    assert load_kernel(size, tissue).energy_per_decay_mev() == pytest.approx(0.935, abs=0.005)


@settings(max_examples=20, deadline=None)
@given(sizes=st.tuples(*[st.floats(2.3, 9.2)] * 3))
def test_any_anisotropic_kernel_conserves_energy(sizes: tuple[float, float, float]) -> None:
    kernel = load_kernel(sizes)
    assert kernel.energy_per_decay_mev() == pytest.approx(0.935, abs=0.005)
    assert np.all(kernel.values >= 0)
