"""Using credentials well: retry policy, circuit breaker, key pool, failover.

Framework-free (no Django imports). One module per concept: ``transitions``
(the pure state steps every store applies atomically), ``store`` (where the
state lives), ``retry``, ``breaker``, ``keypool`` and ``failover`` (the loop
that ties them together for one request). Import from this package.
"""

from .breaker import CircuitBreaker, CircuitOpenError
from .failover import PoolReads, call_with_failover
from .keypool import Acquired, CredentialHealth, CredentialState, KeyPool
from .retry import RetryPolicy
from .store import Clock, MemoryStateStore, ResilienceStore
from .transitions import (
    CredentialEventKind,
    breaker_allow_transition,
    breaker_record_transition,
    credential_transition,
    credential_ttl,
)

__all__ = [
    "Acquired",
    "CircuitBreaker",
    "CircuitOpenError",
    "Clock",
    "CredentialEventKind",
    "CredentialHealth",
    "CredentialState",
    "KeyPool",
    "MemoryStateStore",
    "PoolReads",
    "ResilienceStore",
    "RetryPolicy",
    "breaker_allow_transition",
    "breaker_record_transition",
    "call_with_failover",
    "credential_transition",
    "credential_ttl",
]
