"""Celery tasks for OAuth token refresh."""
