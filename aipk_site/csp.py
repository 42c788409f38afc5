"""The site's Content-Security-Policy middleware: django-csp's, plus this host's websocket.

CSP level 3 lets ``connect-src 'self'`` cover ws:// and wss:// on the page's own
host, but browsers that follow level 2 (older Safari) do not, and the console's
playground talks to /ws/chat/ on the same host. So every response also allows
``ws://<host>`` and ``wss://<host>`` of the host the request came to -- a host
Django has already checked against ALLOWED_HOSTS -- and nothing else.
"""

from __future__ import annotations

from csp.middleware import CSPMiddleware, PolicyParts
from django.core.exceptions import DisallowedHost
from django.http import HttpRequest, HttpResponseBase


class ConsoleCSPMiddleware(CSPMiddleware):
    def get_policy_parts(
        self, request: HttpRequest, response: HttpResponseBase, report_only: bool = False
    ) -> PolicyParts:
        parts = super().get_policy_parts(request, response, report_only)
        if report_only:
            return parts
        try:
            host = request.get_host()
        except DisallowedHost:
            return parts
        update = dict(parts.update or {})
        connect = list(update.get("connect-src") or [])
        update["connect-src"] = [*connect, f"ws://{host}", f"wss://{host}"]
        parts.update = update
        return parts
