"""What providers_app announces for whoever alerts people about it.

Alerting is tenant-facing and lives in tenants_app (tenants_app/services/alerts/), which
providers_app must never import; so providers_app sends these signals and tenants_app's
receivers listen. Kept in a module of their own, free of imports, so any service can send
one without an import cycle. Each is sent only on a change of state (never per check or
per request), after the change has committed.
"""

from __future__ import annotations

from django.dispatch import Signal

# credential: the OAuthCredential that a refresh just moved to needs_reauth
credential_needs_reauth = Signal()
# provider: the Provider; degraded: True (went bad) or False (recovered); reason: a short
# text without secrets ("breaker open", "health check failed: timeout", ...)
provider_status_changed = Signal()
