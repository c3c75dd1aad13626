"""Entry point of the worker process: ``celery -A services.dosimetry.worker.main worker``.

Importing the tasks registers them on this app; the imaging pipeline is imported here too, before
the pool forks, so no job pays for loading pydicom and the engine, and the kernel spectra of the
usual grids are prepared (:mod:`services.dosimetry.worker.warmup`).
"""

from __future__ import annotations

import os

# One BLAS thread a process, set before numpy loads OpenBLAS: a worker's parallelism is its pool
# processes (docs/ARCHITECTURE.md), and OpenBLAS's own threads, spinning while they wait, took
# the other core from the job's reading thread (CPU of a clinical-size job 1.0-1.2 s with two,
# 0.8-0.9 s with one, the same wall time). An operator's own setting is kept.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import gc

from celery.signals import worker_process_init

from netliver.fhir.models import preload
from netliver.logs import configure_logging
from netliver.settings import Settings
from services.dosimetry.worker.celery_app import create_celery

settings = Settings.from_env()
configure_logging("dosimetry-worker", settings.log_level, settings.log_format)
preload()
app = create_celery(settings)

import dicomweb_client.api  # noqa: E402, F401

import services.dosimetry.domain.dvh  # noqa: E402
import services.dosimetry.domain.voxel  # noqa: E402
import services.dosimetry.imaging.pipeline  # noqa: E402
import services.dosimetry.operation  # noqa: E402
import services.dosimetry.worker.tasks  # noqa: E402, F401
from services.dosimetry.worker.warmup import release_free_heap, tune_allocator, warm_up  # noqa: E402

# Before the pool forks, so every pool process inherits them: the allocator settings of a warm
# process, and the kernel spectra of the usual grids; then the heap's free pages go back to the
# system, so a pool process's first job does not copy them as it reuses them.
tune_allocator()
warm_up(settings.dosimetry_warm_grids)
release_free_heap()


def _freeze_start_up_objects(**_kwargs: object) -> None:
    """Leave what the process holds at start (modules, tables, spectra) out of the cyclic
    garbage collector's passes: a job makes hundreds of thousands of small objects (a DICOM
    element each) and every full collection it triggers would walk the start-up heap too
    (~0.1 s each in the clinical-size job). Cycles made by jobs are still collected."""
    gc.freeze()


worker_process_init.connect(_freeze_start_up_objects, weak=False)
