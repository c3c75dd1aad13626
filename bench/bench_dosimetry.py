"""Benchmark of the voxel dosimetry engine (run by ``make bench``; never fails on timing).

For 128³ and 256³ float32 volumes it times, best of a few runs:

- kernel convolution + DVH metrics (``kernel_dose_gy`` then ``dvh_metrics`` for two VOIs),
  beside its floor measured in the same run: one forward and one inverse real FFT of the padded
  volume (scipy.fft ``rfftn``/``irfftn``, same padded shape and worker count);
- LDM (``ldm_dose_gy``) beside one pass over the volume's memory (``np.multiply(a, k, out=b)``);
- peak memory of the kernel path (tracemalloc, numpy buffers), in MB and in volumes.

It prints ratios; the goals (issue 5) are ≤ 1.5× for convolution + DVH and ≤ 2× for LDM.
"""

from __future__ import annotations

import os
import sys
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import numpy as np
from scipy import fft as sp_fft

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from services.dosimetry.domain.dvh import dvh_metrics
from services.dosimetry.domain.voxel import kernel_dose_gy, ldm_dose_gy
from services.dosimetry.kernel_tables import load_kernel

VOXEL_MM = (4.42, 4.42, 4.42)
WORKERS = -1


def best_of(fn: Callable[[], object], repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def interleaved(a: Callable[[], object], b: Callable[[], object], repeats: int) -> tuple[float, float]:
    """Best times of ``a`` and ``b`` run alternately, so both see the same machine load."""
    best_a = best_b = float("inf")
    for _ in range(repeats):
        best_a = min(best_a, best_of(a, 1))
        best_b = min(best_b, best_of(b, 1))
    return best_a, best_b


def phantom(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A float32 activity map: a liver-sized ellipsoid with two hot lesions and noise."""
    rng = np.random.default_rng(0)
    z, y, x = np.ogrid[:n, :n, :n]
    c = n / 2
    liver = ((x - c) / (0.35 * n)) ** 2 + ((y - c) / (0.25 * n)) ** 2 + ((z - c) / (0.2 * n)) ** 2 <= 1
    tumour = ((x - c - 0.1 * n) ** 2 + (y - c) ** 2 + (z - c) ** 2) <= (0.06 * n) ** 2
    counts = np.zeros((n, n, n), dtype=np.float32)
    counts[liver] = 1.0
    counts[tumour] = 5.0
    counts += rng.uniform(0, 0.05, counts.shape).astype(np.float32)
    return counts, liver, tumour


def bench(n: int, repeats: int) -> None:
    counts, liver, tumour = phantom(n)
    kernel = load_kernel(VOXEL_MM)
    padded = tuple(sp_fft.next_fast_len(s + k - 1, real=True) for s, k in zip(counts.shape, kernel.values.shape,
                                                                              strict=True))

    def floor() -> None:
        spec = sp_fft.rfftn(counts, s=padded, workers=WORKERS)
        sp_fft.irfftn(spec, s=padded, workers=WORKERS)

    def engine() -> None:
        dose = kernel_dose_gy(counts, VOXEL_MM, 2.0, kernel)
        dvh_metrics(dose, liver)
        dvh_metrics(dose, tumour)

    cold = best_of(engine, 1)  # includes the kernel spectrum for this grid
    t_floor, t_engine = interleaved(floor, engine, repeats)

    out = np.empty_like(counts)
    dose = np.empty_like(counts)
    t_pass, t_ldm = interleaved(lambda: np.multiply(counts, np.float32(1.5), out=out),
                                lambda: ldm_dose_gy(counts, VOXEL_MM, 2.0, out=dose), repeats * 10)
    t_ldm_alloc = best_of(lambda: ldm_dose_gy(counts, VOXEL_MM, 2.0), repeats * 10)

    tracemalloc.start()
    engine()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    volume_mb = counts.nbytes / 2**20

    print(f"{n}³ float32 (padded {padded[0]}×{padded[1]}×{padded[2]}, workers={os.cpu_count()}):")
    print(f"  kernel convolution + DVH  {t_engine * 1e3:8.1f} ms   floor rfftn+irfftn {t_floor * 1e3:8.1f} ms   "
          f"ratio {t_engine / t_floor:5.2f}  (goal ≤ 1.5; first call {cold * 1e3:.1f} ms, "
          f"ratio {cold / t_floor:.2f})")
    print(f"  LDM                        {t_ldm * 1e3:8.1f} ms   floor one pass     {t_pass * 1e3:8.1f} ms   "
          f"ratio {t_ldm / t_pass:5.2f}  (goal ≤ 2; into a preallocated result like the floor; "
          f"allocating a new result {t_ldm_alloc * 1e3:.1f} ms, ratio {t_ldm_alloc / t_pass:.2f})")
    print(f"  peak memory (kernel path)  {peak / 2**20:8.1f} MB = {peak / counts.nbytes:.1f} volumes "
          f"of {volume_mb:.0f} MB")


def main() -> None:
    print("Voxel dosimetry engine benchmark (scipy.fft, float32)")
    bench(128, 8)
    bench(256, 5)
    try:
        import resource

        print(f"process max RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")
    except ImportError:  # pragma: no cover - not on POSIX
        pass


if __name__ == "__main__":
    main()
