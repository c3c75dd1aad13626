"""Worker start-up: the kernel spectra of the configured grids are ready before the first job."""

from __future__ import annotations

import numpy as np
import pytest

from services.dosimetry.domain.voxel import kernel_dose_gy, padded_shape
from services.dosimetry.kernel_tables import load_kernel
from services.dosimetry.worker.warmup import WarmGrid, parse_warm_grids, warm_up


def test_grids_are_read_and_bad_entries_reported() -> None:
    grids, bad = parse_warm_grids(" 128x128x128@4.42, 64x96x80@4x4.5x5 ,, 12x12@4, 0x4x4@4, x")
    assert grids == [WarmGrid((128, 128, 128), (4.42, 4.42, 4.42)), WarmGrid((64, 96, 80), (4.0, 4.5, 5.0))]
    assert bad == ["12x12@4", "0x4x4@4", "x"]
    assert parse_warm_grids("") == ([], [])


def test_warm_up_caches_the_spectrum_the_first_job_uses() -> None:
    shape = (20, 22, 24)
    kernel = load_kernel(4.42)
    key = (padded_shape(shape, kernel), np.dtype(np.complex64).str)
    kernel.spectra.pop(key, None)
    assert warm_up("20x22x24@4.42") == [WarmGrid(shape, (4.42, 4.42, 4.42))]
    cached = kernel.spectra[key]
    counts = np.zeros(shape, dtype=np.float32)
    counts[10, 11, 12] = 1.0
    kernel_dose_gy(counts, (4.42,) * 3, 1.0, load_kernel(4.42))
    assert kernel.spectra[key] is cached  # the job reused it instead of computing its own


def test_a_grid_without_a_kernel_is_skipped_not_fatal(caplog: pytest.LogCaptureFixture) -> None:
    assert warm_up("8x8x8@50,8x8x8@nope") == []
    assert "no kernel" in caplog.text and "nope" in caplog.text


def test_the_allocator_is_tuned_where_glibc_runs() -> None:
    import platform

    from services.dosimetry.worker.warmup import tune_allocator

    tuned = tune_allocator()
    if platform.system() == "Linux" and platform.libc_ver()[0] == "glibc":
        assert tuned


def test_the_seg_reader_tables_are_loaded_before_the_first_job() -> None:
    from highdicom import _standard_utils

    _standard_utils.get_module_attribute_map.cache_clear()
    assert warm_up("") == []
    assert _standard_utils.get_module_attribute_map.cache_info().currsize == 1
