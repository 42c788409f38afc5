"""The client address recorded in audit events and logs."""

from __future__ import annotations

from django.http import HttpRequest


def client_ip(request: HttpRequest) -> str | None:
    # REMOTE_ADDR only: X-Forwarded-For is client-controlled unless a trusted proxy
    # rewrites it, and the deployment (not this module) knows whether one does
    return request.META.get("REMOTE_ADDR") or None
