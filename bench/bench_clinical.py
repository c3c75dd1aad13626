"""Clinical-size voxel-dosimetry job against its I/O floor (``make bench-clinical``, or
the last part of ``make bench``; never fails on a timing).

The study of :mod:`bench.clinical_study` (128³ SPECT, 512 × 512 × 256 CT, SEG with liver,
tumours and lungs) is stored in an Orthanc the stack launches on free ports. Measured in one run:

- **floor**: fetching the same instances (SPECT, CT, SEG series) by WADO-RS into memory, the
  multipart bodies read whole and uncompressed (``Accept-Encoding: identity``, as the job asks),
  series after series, with one HTTP session, as ``requests`` reads a body
  (``Response.content``); the goals are set against it. Beside it, the **socket floor**: the same
  answers read 1 MiB at a time, which spares the CPU of ``requests``' 10 KiB reads and join (the
  job reads its CT that way too): the lower bound a faster client would see;
- **cold job**: the first job of a freshly started worker process, trigger (``$voxel-dosimetry``,
  respond-async) → completed Task with its results written;
- **warm jobs**: the same job again (another activity, so new results), best of a few; and each
  against the floor read just before it (the median of those ratios: a drift of the host's
  speed during the run moves a job and its floor alike);
- **stages** from the worker (fetch, decode, resample, dose, dvh, store) and the rest (queue,
  claim, write-back, polling);
- **CPU per warm job** (median): seconds of CPU the worker's pool process, the gateway (its
  processes) and the PACS spent between trigger and results, read from ``/proc``. On a 2-core
  host their sum against the job's wall time says how much the job waits on CPU it shares (on a
  host whose speed drifts, these drift with it: compare runs made side by side);
- **worker memory**: resident set of the Celery pool process, sampled every 5 ms during the job,
  peak minus the resident set just before the trigger, against the CT's raw pixel bytes; per
  stage, the peak while the job reported that stage (a stage seen late by the polling, every 200 ms
  while the job fetches and 10 ms from its dose stage on, may
  lend its first samples to the one before).
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.job_stack import job_record, job_stack, wait_for_task
from netliver import sessions
from services.dosimetry.imaging.dicomweb import IDENTITY

WARM_RUNS = int(os.environ.get("BENCH_CLINICAL_WARM", "3"))


def _rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def _tree(pid: int) -> list[int]:
    """``pid`` and its descendants."""
    found, pending = [], [pid]
    while pending:
        current = pending.pop()
        found.append(current)
        try:
            for task in os.listdir(f"/proc/{current}/task"):
                with open(f"/proc/{current}/task/{task}/children", encoding="ascii") as fh:
                    pending.extend(int(p) for p in fh.read().split())
        except OSError:
            continue  # exited meanwhile
    return found


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of ``pid`` and its descendants (0 for those gone)."""
    total = 0.0
    for member in _tree(pid):
        try:
            with open(f"/proc/{member}/stat", encoding="ascii") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS
    return total


_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _pool_pid(parent: int, timeout_s: float = 60.0) -> int:
    """The Celery prefork child of ``parent`` (the process that runs the jobs)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        kids: list[int] = []
        for task in os.listdir(f"/proc/{parent}/task"):
            with open(f"/proc/{parent}/task/{task}/children", encoding="ascii") as fh:
                kids.extend(int(p) for p in fh.read().split())
        if kids:
            return kids[0]
        time.sleep(0.1)
    raise RuntimeError("the worker has no pool process")


class RssSampler:
    """Peak resident set of one process while a block runs (sampled every 5 ms)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.before = _rss_bytes(pid)
        self.peak = self.before
        self.stage = "queue"  # set by the caller as the job reports its stages
        self.stage_peaks: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                rss = _rss_bytes(self.pid)
                self.peak = max(self.peak, rss)
                self.stage_peaks[self.stage] = max(self.stage_peaks.get(self.stage, 0), rss)
            except OSError:
                return
            time.sleep(0.005)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def growth(self) -> int:
        return self.peak - self.before


#: Bytes a read of the socket floor asks for (:func:`wado_floor`).
SOCKET_READ_BYTES = 1 << 20


def wado_floor(dicomweb: str, study_uid: str, series: list[str], read_bytes: int | None = None) -> tuple[float, int]:
    """Seconds and bytes to GET each series by WADO-RS into memory (one session, in turn; the
    answers uncompressed, as the job asks for them). The body is read as ``requests`` reads
    ``Response.content`` (10 KiB at a time, then joined), or ``read_bytes`` at a time and kept
    as read (the socket floor: the CT's 134 MB cost ~190-250 ms of CPU the first way, ~15-30 ms
    the second)."""
    session = sessions.session()
    session.headers["Accept-Encoding"] = IDENTITY
    started = time.perf_counter()
    total = 0
    for uid in series:
        resp = session.get(f"{dicomweb}/studies/{study_uid}/series/{uid}", timeout=300, stream=read_bytes is not None,
                           headers={"Accept": 'multipart/related; type="application/dicom"'})
        resp.raise_for_status()
        if read_bytes is None:
            total += len(resp.content)
        else:
            chunks = list(resp.iter_content(read_bytes))
            total += sum(len(c) for c in chunks)
            del chunks
    return time.perf_counter() - started, total


def run_job(gw: str, study_uid: str, seg_uid: str, activity_gbq: float, method: str,
            pool_pid: int, watched: dict[str, int] | None = None) -> dict[str, Any]:
    """One job, trigger → results; ``watched`` names processes whose CPU during the job is
    reported (each with its descendants)."""
    cpu_before = {name: _cpu_s(pid) for name, pid in (watched or {}).items()}
    params = {"resourceType": "Parameters", "parameter": [
        {"name": "studyInstanceUid", "valueString": study_uid},
        {"name": "administeredActivityGBq", "valueDecimal": activity_gbq},
        {"name": "method", "valueCode": method},
        {"name": "segmentationSeriesUid", "valueString": seg_uid}]}
    with RssSampler(pool_pid) as rss:
        started = time.perf_counter()
        resp = requests.post(f"{gw}/fhir/$voxel-dosimetry", json=params, headers={"Prefer": "respond-async"},
                             timeout=60)
        resp.raise_for_status()
        task_id = resp.headers["Content-Location"].rsplit("/", 1)[1]

        def seen(stage: str) -> None:
            rss.stage = stage or rss.stage

        task, total = wait_for_task(gw, task_id, started, seen)
    cpu = {name: _cpu_s(pid) - cpu_before[name] for name, pid in (watched or {}).items()}
    job = job_record(gw, task_id)
    if task["status"] != "completed":
        raise RuntimeError(f"job {task_id} {task['status']}: {job.get('error') or task.get('statusReason')}")
    return {"total": total, "timings": job.get("timings", {}), "rss_growth": rss.growth, "rss_before": rss.before,
            "stage_growth": {k: v - rss.before for k, v in rss.stage_peaks.items()}, "cpu": cpu}


def _print_job(label: str, job: dict[str, Any], floor: float, ct_raw: int) -> None:
    timings = {k: v for k, v in job["timings"].items() if k != "total"}
    worker_total = job["timings"].get("total", sum(timings.values()))
    total = job["total"]
    print(f"{label}: {total:6.2f} s trigger → results = {total / floor:5.2f} × floor   worker peak "
          f"+{job['rss_growth'] / 2**20:.0f} MiB = {job['rss_growth'] / ct_raw:.2f} × CT raw "
          f"(RSS before {job['rss_before'] / 2**20:.0f} MiB)")
    for stage, seconds in timings.items():
        grown = job["stage_growth"].get(stage)
        memory = f"   peak +{grown / 2**20:5.0f} MiB" if grown is not None else ""
        print(f"    {stage:<10}{seconds:7.2f} s  {seconds / floor:5.2f} × floor{memory}")
    print(f"    {'other':<10}{total - worker_total:7.2f} s  (queue, claim, write-back, polling)")
    if job.get("cpu"):
        print("    CPU: " + ", ".join(f"{name} {seconds:.2f} s" for name, seconds in job["cpu"].items()))


def main() -> int:
    from bench.clinical_study import build_clinical_study, upload
    from infra.orthanc_process import orthanc_available

    if not orthanc_available():
        print("clinical-size job benchmark skipped: Orthanc is not installed")
        return 0
    started = time.perf_counter()
    study = build_clinical_study()
    ct_raw = study.ct_raw_bytes
    print(f"study: 128³ NM SPECT, 512×512×256 CT ({ct_raw / 2**20:.0f} MiB raw), SEG of 4 segments "
          f"(built in {time.perf_counter() - started:.0f} s)", flush=True)
    with tempfile.TemporaryDirectory() as tmp, job_stack(Path(tmp), "netliver-bench-clinical") as (stack, orthanc):
        upload(orthanc, study)
        series = [str(study.nm.SeriesInstanceUID), str(study.ct[0].SeriesInstanceUID),
                  str(study.seg.SeriesInstanceUID)]
        seg_uid, study_uid = series[2], study.study_uid
        del study
        pool = _pool_pid(stack.procs["worker1"].pid)
        watched = {"worker": pool, "gateway": stack.procs["gateway"].pid}
        if getattr(stack.orthanc, "pid", None):
            watched["PACS"] = stack.orthanc.pid
        dicomweb = f"{orthanc}/dicom-web"
        floors = [wado_floor(dicomweb, study_uid, series)]
        socket_floors = [wado_floor(dicomweb, study_uid, series, SOCKET_READ_BYTES)]
        jobs = {"cold": run_job(stack.gateway_url, study_uid, seg_uid, 2.0, "dvk", pool, watched)}
        warm = []
        for i in range(WARM_RUNS):
            floors.append(wado_floor(dicomweb, study_uid, series))
            socket_floors.append(wado_floor(dicomweb, study_uid, series, SOCKET_READ_BYTES))
            warm.append(run_job(stack.gateway_url, study_uid, seg_uid, 2.0 + 0.01 * (i + 1), "dvk", pool, watched))
        ldm = run_job(stack.gateway_url, study_uid, seg_uid, 2.5, "ldm", pool)
    floor = min(f[0] for f in floors)
    socket_floor = min(f[0] for f in socket_floors)
    best = min(warm, key=lambda j: j["total"])
    print(f"floor: WADO-RS of the three series into memory {floor:.2f} s ({floors[0][1] / 2**20:.0f} MiB; "
          f"best of {len(floors)}, interleaved with the jobs); read {SOCKET_READ_BYTES >> 20} MiB at a time "
          f"(socket floor) {socket_floor:.2f} s")
    _print_job("cold job (dvk, first of the worker)", jobs["cold"], floor, ct_raw)
    _print_job(f"warm job (dvk, best of {len(warm)})", best, floor, ct_raw)
    _print_job("warm job (ldm)", ldm, floor, ct_raw)
    if warm and warm[0]["cpu"]:
        shares = {name: statistics.median(j["cpu"][name] for j in warm) for name in warm[0]["cpu"]}
        wall = statistics.median(j["total"] for j in warm)
        print(f"CPU per warm job (median of {len(warm)}): " + ", ".join(f"{n} {s:.2f} s" for n, s in shares.items())
              + f"; together {sum(shares.values()):.2f} s in {wall:.2f} s of wall time")
    peak = max(j["rss_growth"] for j in [jobs["cold"], *warm, ldm])
    print(f"warm job against the socket floor: {best['total'] / socket_floor:.2f} ×")
    # each warm job against the floor read just before it: a host whose speed drifts during the
    # run moves both alike (the best job over the best floor may pair a slow phase with a fast one)
    paired = [job["total"] / floor_before[0] for job, floor_before in zip(warm, floors[1:], strict=True)]
    if paired:
        print(f"warm jobs each against the floor read just before it: median {statistics.median(paired):.2f} × "
              f"({', '.join(f'{r:.2f}' for r in paired)})")
    print(f"goals: warm/floor {best['total'] / floor:.2f} (≤ 2); cold/warm {jobs['cold']['total'] / best['total']:.2f} "
          f"(≤ 1.5); worker peak {peak / ct_raw:.2f} × CT raw (≤ 3)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
