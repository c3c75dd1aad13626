"""``make bench``: every benchmark, each printing ratios against a baseline measured in the same
run. Benchmarks never fail the build on a timing."""

from __future__ import annotations

import sys

from bench import bench_cds, bench_dosimetry, bench_eligibility, bench_jobs


def main() -> int:
    for name, fn in (("dosimetry engine", bench_dosimetry.main), ("eligibility through the gateway", bench_eligibility.main),
                     ("voxel-dosimetry job end to end", bench_jobs.main),
                     ("CDS Hooks patient-view as an EHR calls it", bench_cds.main)):
        print(f"\n=== {name} ===", flush=True)
        fn()
    return 0


if __name__ == "__main__":
    sys.exit(main())
