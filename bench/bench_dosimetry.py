"""Benchmark of the voxel dosimetry engine (run by ``make bench``; never fails on timing).

For 128³ and 256³ float32 volumes it times, best of a few runs:

- kernel convolution + DVH metrics (``kernel_dose_gy`` then ``dvh_metrics`` for two VOIs),
  beside its floor measured in the same run, interleaved: one forward and one inverse real FFT
  of the padded volume (scipy.fft ``rfftn``/``irfftn``, same padded shape and worker count).
  The parts are timed in the same loop (the dose map alone, the two DVHs alone) so that a
  change shows where it went;
- the same, cold, each in a fresh process that has already run the engine on another grid (as
  a worker that ran other jobs): the first call on the grid (kernel spectrum, FFT plans for its
  lengths, fresh memory), and the first call after ``warm_spectrum`` for the grid (what a worker
  that prepared the grid at start pays on its first job). Each against the floor measured in
  that process after it; the median (and range) of a few processes;
- LDM (``ldm_dose_gy``) beside one pass over the volume's memory (``np.multiply(a, k, out=b)``);
- peak memory of the kernel path (tracemalloc, numpy buffers), in MB and in volumes.

It prints ratios against the goals of issue 17: convolution + DVH ≤ 1.2× the FFT floor warm and
≤ 1.5× cold; LDM ≤ 2× one pass.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import numpy as np
from scipy import fft as sp_fft

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from services.dosimetry.domain.dvh import dvh_metrics
from services.dosimetry.domain.kernel import VoxelKernel
from services.dosimetry.domain.voxel import kernel_dose_gy, ldm_dose_gy, padded_shape, warm_spectrum
from services.dosimetry.kernel_tables import load_kernel

VOXEL_MM = (4.42, 4.42, 4.42)
WORKERS = -1
GOAL_WARM = 1.2
GOAL_COLD = 1.5
GOAL_LDM = 2.0
#: The grid a cold process runs the engine on first, so that what is timed is the new grid's
#: cost, not the process's first FFT (thread pool, ufunc loops).
OTHER_GRID = (24, 24, 24)


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


def _floor_and_engine(n: int) -> tuple[Callable[[], object], Callable[[], object], np.ndarray, np.ndarray,
                                        np.ndarray, VoxelKernel]:
    counts, liver, tumour = phantom(n)
    kernel = load_kernel(VOXEL_MM)
    padded = padded_shape(counts.shape, kernel)

    def floor() -> None:
        spec = sp_fft.rfftn(counts, s=padded, workers=WORKERS)
        sp_fft.irfftn(spec, s=padded, workers=WORKERS)

    def engine() -> None:
        dose = kernel_dose_gy(counts, VOXEL_MM, 2.0, kernel)
        dvh_metrics(dose, liver)
        dvh_metrics(dose, tumour)

    return floor, engine, counts, liver, tumour, kernel


def cold_in_this_process(n: int, warmed: bool) -> dict[str, float]:
    """The first engine call on an ``n``³ grid in this (fresh) process, and the floor after it."""
    floor, engine, counts, _, _, kernel = _floor_and_engine(n)
    other = np.ones(OTHER_GRID, dtype=np.float32)
    kernel_dose_gy(other, VOXEL_MM, 2.0, kernel)
    dvh_metrics(other, other > 0)
    if warmed:
        warm_spectrum(kernel, counts.shape, np.float32)
    first = best_of(engine, 1)
    t_floor, _ = interleaved(floor, engine, 5)
    return {"first_s": first, "floor_s": t_floor}


def cold_ratios(n: int, warmed: bool, processes: int) -> list[float]:
    """:func:`cold_in_this_process` in ``processes`` fresh interpreters: first call / floor in each."""
    root = str(Path(__file__).resolve().parents[1])
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")])))
    ratios = []
    for _ in range(processes):
        done = subprocess.run([sys.executable, "-m", "bench.bench_dosimetry", "--cold", str(n),
                               "warmed" if warmed else "new-grid"], cwd=root, env=env, check=True,
                              capture_output=True, text=True)
        got = json.loads(done.stdout.strip().splitlines()[-1])
        ratios.append(got["first_s"] / got["floor_s"])
    return ratios


def bench(n: int, repeats: int, cold_processes: int) -> None:
    floor, engine, counts, liver, tumour, kernel = _floor_and_engine(n)
    padded = padded_shape(counts.shape, kernel)
    dose = kernel_dose_gy(counts, VOXEL_MM, 2.0, kernel)
    parts: dict[str, Callable[[], object]] = {
        "floor": floor, "engine": engine,
        "dose": lambda: kernel_dose_gy(counts, VOXEL_MM, 2.0, kernel),
        "dvh": lambda: (dvh_metrics(dose, liver), dvh_metrics(dose, tumour)),
    }
    best = dict.fromkeys(parts, float("inf"))
    for _ in range(repeats):  # interleaved, so that all see the same machine load
        for name, fn in parts.items():
            best[name] = min(best[name], best_of(fn, 1))
    t_floor, t_engine = best["floor"], best["engine"]
    cold = cold_ratios(n, False, cold_processes)
    warmed = cold_ratios(n, True, cold_processes)

    out = np.empty_like(counts)
    ldm_out = np.empty_like(counts)
    t_pass, t_ldm = interleaved(lambda: np.multiply(counts, np.float32(1.5), out=out),
                                lambda: ldm_dose_gy(counts, VOXEL_MM, 2.0, out=ldm_out), repeats * 10)
    t_ldm_alloc = best_of(lambda: ldm_dose_gy(counts, VOXEL_MM, 2.0), repeats * 10)

    tracemalloc.start()
    engine()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    volume_mb = counts.nbytes / 2**20

    def verdict(ratio: float, goal: float) -> str:
        return "meets" if ratio <= goal else "MISSES"

    print(f"{n}³ float32 (padded {padded[0]}×{padded[1]}×{padded[2]}, workers={os.cpu_count()}):")
    print(f"  kernel convolution + DVH  {t_engine * 1e3:8.1f} ms   floor rfftn+irfftn {t_floor * 1e3:8.1f} ms   "
          f"warm ratio {t_engine / t_floor:5.2f}  (goal ≤ {GOAL_WARM}: {verdict(t_engine / t_floor, GOAL_WARM)}; "
          f"dose map {best['dose'] / t_floor:.2f}, two DVHs {best['dvh'] / t_floor:.2f} of the floor)")
    for label, ratios in (("first call on the grid", cold), ("first call after warm_spectrum", warmed)):
        median = statistics.median(ratios)
        print(f"  cold, {label:30s} ratio median {median:5.2f} (range {min(ratios):.2f}-{max(ratios):.2f}) of "
              f"{len(ratios)} fresh processes  (goal ≤ {GOAL_COLD}: {verdict(median, GOAL_COLD)})")
    print(f"  LDM                        {t_ldm * 1e3:8.1f} ms   floor one pass     {t_pass * 1e3:8.1f} ms   "
          f"ratio {t_ldm / t_pass:5.2f}  (goal ≤ {GOAL_LDM:g}; into a preallocated result like the floor; "
          f"allocating a new result {t_ldm_alloc * 1e3:.1f} ms, ratio {t_ldm_alloc / t_pass:.2f})")
    print(f"  peak memory (kernel path)  {peak / 2**20:8.1f} MB = {peak / counts.nbytes:.1f} volumes "
          f"of {volume_mb:.0f} MB")


def main() -> None:
    if sys.argv[1:2] == ["--cold"]:  # one cold figure, in the fresh process cold_ratios started
        print(json.dumps(cold_in_this_process(int(sys.argv[2]), sys.argv[3] == "warmed")))
        return
    print("Voxel dosimetry engine benchmark (scipy.fft, float32)")
    bench(128, 12, 5)
    bench(256, 6, 5)
    try:
        import resource

        print(f"process max RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")
    except ImportError:  # pragma: no cover - not on POSIX
        pass


if __name__ == "__main__":
    main()
