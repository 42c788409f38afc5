"""Change announcements from tenant management to whoever caches what it manages.

The gateway (aipk_site/gateway) keeps per-process and shared caches of virtual keys,
tenants and routes for its request path. Management sits on a lower floor and must not
import it, so its services announce a change here and the gateway's receivers
(aipk_site/gateway/receivers.py) drop what they cached. No business logic lives here.

Each announcement goes out twice: at once, for the changing request's own reads, and
again on commit, because a gateway request running between the two could have cached
the old rows again.
"""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.dispatch import Signal

# key_hashes: the virtual keys whose stored row changed (revoked, limits, deleted)
keys_changed = Signal()
# tenant_id: a tenant whose limits, state, providers or PII filter changed
tenant_changed = Signal()
# no arguments: any model route (alias or candidate) was created, changed or deleted
routes_changed = Signal()


def announce(signal: Signal, **kwargs: Any) -> None:
    """Send ``signal`` now and once more when the current transaction commits."""
    signal.send(sender=None, **kwargs)
    transaction.on_commit(lambda: signal.send(sender=None, **kwargs))
