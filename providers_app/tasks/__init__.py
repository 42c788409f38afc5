"""Celery tasks of providers_app, one module per concern. Tasks are thin: they
take ids, call a service, and own their retries. Imported here so Celery's
autodiscovery (which imports ``providers_app.tasks``) registers them all."""

from providers_app.tasks import credentials, monitoring, oauth  # noqa: F401
