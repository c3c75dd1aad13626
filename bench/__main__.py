"""``make bench``: every benchmark, each printing ratios against a baseline measured in the same
run. Benchmarks never fail the build on a timing. The clinical-size job (about a minute) runs
last; ``BENCH_CLINICAL=0`` leaves it out, ``make bench-clinical`` runs it alone."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable

from bench import (
    bench_cds,
    bench_clinical,
    bench_dosimetry,
    bench_eligibility,
    bench_jobs,
    bench_operations,
)


def main() -> int:
    benches: list[tuple[str, Callable[[], object]]] = [
        ("dosimetry engine", bench_dosimetry.main), ("eligibility through the gateway", bench_eligibility.main),
        ("synchronous operations against their transaction floor", bench_operations.main),
        ("voxel-dosimetry job end to end", bench_jobs.main),
        ("CDS Hooks patient-view as an EHR calls it", bench_cds.main)]
    if os.environ.get("BENCH_CLINICAL", "1") != "0":
        benches.append(("voxel-dosimetry job at clinical size", bench_clinical.main))
    for name, fn in benches:
        print(f"\n=== {name} ===", flush=True)
        fn()
    return 0


if __name__ == "__main__":
    sys.exit(main())
