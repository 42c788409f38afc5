"""Celery tasks for model discovery and health checks."""
