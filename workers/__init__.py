"""Celery inference workers: load the production model once per process and serve batches."""
