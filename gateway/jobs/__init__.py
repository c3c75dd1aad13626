"""Asynchronous jobs: durable records, Task projection, dispatch to Celery workers."""
