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


_HEAP_PROBE = """
import sys
from services.dosimetry.worker.warmup import release_free_heap, tune_allocator

def rss_mib():
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith("VmRSS:")) / 1024

tune_allocator()  # 0.5 MiB blocks come from the heap, as a CT slice's do in the worker
blocks = [bytearray(512 * 1024) for _ in range(160)]  # 80 MiB, touched
pin = bytearray(512 * 1024)  # above them: the heap's top is not free, so free() keeps their pages
full = rss_mib()
del blocks
freed = rss_mib()
released = release_free_heap() if sys.argv[1] == "release" else None
print(full - freed, freed - rss_mib(), released)
"""


def _heap_probe(mode: str) -> tuple[float, float, str]:
    import subprocess
    import sys
    from pathlib import Path

    out = subprocess.run([sys.executable, "-c", _HEAP_PROBE, mode], cwd=Path(__file__).resolve().parents[3],
                         check=True, capture_output=True, text=True, timeout=60).stdout.split()
    return float(out[0]), float(out[1]), out[2]


def test_the_free_heap_goes_back_to_the_system_before_the_pool_forks() -> None:
    import platform

    if platform.libc_ver()[0] != "glibc":
        pytest.skip("malloc_trim is glibc's")
    kept_by_free, released, answer = _heap_probe("release")
    assert kept_by_free < 8 and released > 60 and answer == "True"
    # the other direction: without the call the freed pages stay mapped (and would be shared)
    kept_by_free, released, answer = _heap_probe("keep")
    assert kept_by_free < 8 and released < 8 and answer == "None"
