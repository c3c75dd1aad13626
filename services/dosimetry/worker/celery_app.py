"""Celery application factory of the dosimetry workers.

Workers acknowledge a message only after the job ran (``task_acks_late``) and reject it back
to the queue when their process dies (``task_reject_on_worker_lost``); with one message at a time
per process (``worker_prefetch_multiplier=1``) a killed worker's job is redelivered to another
worker once the broker's visibility timeout has passed. The job's lease at the gateway decides
who may finish it, so redelivery never completes a job twice.
"""

from __future__ import annotations

from celery import Celery

from netliver.settings import Settings

__all__ = ["create_celery"]


def create_celery(settings: Settings) -> Celery:
    app = Celery("netliver-dosimetry", broker=settings.redis_url)
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_default_queue=settings.job_queue,
        task_serializer="json",
        accept_content=["json"],
        task_ignore_result=True,
        broker_connection_retry_on_startup=True,
        # Sweep for unacknowledged messages of dead workers every JOB_RESTORE_INTERVAL_S (kombu's
        # default sweep is interval x throttle = 100 s).
        broker_transport_options={"visibility_timeout": settings.job_visibility_timeout_s,
                                  "unacked_restore_interval": settings.job_restore_interval_s,
                                  "unacked_restore_throttle": 1},
        worker_hijack_root_logger=False,
        worker_send_task_events=False,
    )
    app.conf["netliver_settings"] = settings
    return app
