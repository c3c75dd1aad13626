"""Celery worker of the dosimetry service: runs voxel-dosimetry jobs (docs/ARCHITECTURE.md)."""
