"""Benchmark of a voxel-dosimetry job end to end (run by ``make bench``; never fails).

A 128³ Y-90 bremsstrahlung SPECT with its CT (256² × 256 slices) and a SEG is uploaded to a local
Orthanc; the clock starts when the stable-study trigger is posted to the gateway and stops when
the completed Task is readable with its results written. The worker's stage timings (fetch,
decode, resample, dose, dvh, store) come from the Task; queueing and write-back are the rest.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.job_stack import TOKEN, job_record, job_stack, wait_for_task


def main() -> int:
    from infra.orthanc_process import orthanc_available
    from services.dosimetry.imaging import phantoms as ph

    if not orthanc_available():
        print("job benchmark skipped: Orthanc is not installed")
        return 0
    study = ph.build_study(ph.two_compartment_liver(n=128, voxel_mm=4.42), "NM", seed=7, total_activity_gbq=2.0)
    with tempfile.TemporaryDirectory() as tmp, job_stack(Path(tmp), "netliver-bench") as (stack, orthanc):
        gw = stack.gateway_url
        # No Lua trigger here (orthanc_hook=False): the clock starts when we post the trigger.
        orthanc_id = ph.upload_study(orthanc, study)
        for method in ("ldm", "dvk"):
            started = time.perf_counter()
            if method == "ldm":
                resp = requests.post(f"{gw}/hooks/orthanc/stable-study", json={"ID": orthanc_id},
                                     headers={"X-Internal-Token": TOKEN}, timeout=60)
                task_id = resp.json()["job"].split("/")[1]
            else:
                params = {"resourceType": "Parameters", "parameter": [
                    {"name": "studyInstanceUid", "valueString": study.study_uid},
                    {"name": "administeredActivityGBq", "valueDecimal": 2.0},
                    {"name": "method", "valueCode": "dvk"},
                    {"name": "segmentationSeriesUid", "valueString": study.seg_series_uid or ""}]}
                resp = requests.post(f"{gw}/fhir/$voxel-dosimetry", json=params,
                                     headers={"Prefer": "respond-async"}, timeout=60)
                task_id = resp.headers["Content-Location"].rsplit("/", 1)[1]
            task, total = wait_for_task(gw, task_id, started)
            job = job_record(gw, task_id)
            timings = job.get("timings", {})
            stages = {k: v for k, v in timings.items() if k != "total"}
            worker_total = timings.get("total", sum(stages.values()))
            print(f"job latency, 128³ SPECT + CT, method {method}: {task['status']}, "
                  f"{total:.2f} s from trigger to results written")
            for stage, seconds in stages.items():
                print(f"  {stage:<10}{seconds:8.2f} s  {100 * seconds / total:5.1f} %")
            other = worker_total - sum(stages.values())
            rest = total - worker_total
            print(f"  {'worker other':<10}{other:6.2f} s  {100 * other / total:5.1f} %  (claim, client, imports)")
            print(f"  {'queue+write':<10}{rest:8.2f} s  {100 * rest / total:5.1f} %  (broker, polling, write-back)")
            dose = stages.get("dose", 0.0)
            print(f"  share outside the dose computation: {100 * (total - dose) / total:.1f} %")
    return 0


if __name__ == "__main__":
    sys.exit(main())
