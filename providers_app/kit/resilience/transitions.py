"""The pure read-modify-write steps behind credential health and circuit breakers.

Each is defined once here as a function of (stored state, event, now) and
every ``ResilienceStore`` must apply it as one indivisible step -- a lock in
process, one Lua script in Redis (``providers_app/services/shared_state.py``
mirrors these lines) -- so that several processes sharing one store agree.
"""

from __future__ import annotations

from typing import Any, Literal

# --- credential health: the pure transition every store applies atomically ---

# Fields of a credential's stored state.
FAILURES = "failures"
LAST_FAILURE_AT = "last_failure_at"
BACKOFF_UNTIL = "backoff_until"
COOLDOWN_UNTIL = "cooldown_until"
INVALID = "invalid"
LAST_ERROR_TYPE = "last_error_type"

CredentialEventKind = Literal["success", "failure", "cooldown", "invalid"]


def credential_transition(
    state: dict[str, Any] | None,
    *,
    event: CredentialEventKind,
    now: float,
    error_type: str = "",
    cooldown_seconds: float = 0.0,
    threshold: int,
    base_backoff: float,
    max_backoff: float,
) -> dict[str, Any] | None:
    """One credential event applied to its state; ``None`` means "nothing to store".

    - success: consecutive failures and backoff are cleared (a cooldown set by a
      429 and an invalid mark stay: another request may have set them since).
    - failure: one more consecutive failure; from ``threshold`` on, a backoff of
      ``base * 2**(failures - threshold)`` capped at ``max_backoff``, counted from now.
    - cooldown: unavailable until ``now + cooldown_seconds`` (never shortened).
    - invalid: unusable until the state is deleted (an admin re-enables it).

    The Redis store mirrors these lines in Lua.
    """
    if not state and event == "success":
        return None
    s: dict[str, Any] = {
        FAILURES: int((state or {}).get(FAILURES, 0)),
        LAST_FAILURE_AT: float((state or {}).get(LAST_FAILURE_AT, 0.0)),
        BACKOFF_UNTIL: float((state or {}).get(BACKOFF_UNTIL, 0.0)),
        COOLDOWN_UNTIL: float((state or {}).get(COOLDOWN_UNTIL, 0.0)),
        INVALID: int((state or {}).get(INVALID, 0)),
        LAST_ERROR_TYPE: str((state or {}).get(LAST_ERROR_TYPE, "")),
    }
    if event == "success":
        if s[FAILURES] == 0 and s[BACKOFF_UNTIL] == 0.0 and s[LAST_FAILURE_AT] == 0.0:
            return None
        s[FAILURES] = 0
        s[LAST_FAILURE_AT] = 0.0
        s[BACKOFF_UNTIL] = 0.0
    elif event == "failure":
        s[FAILURES] += 1
        s[LAST_FAILURE_AT] = now
        s[LAST_ERROR_TYPE] = error_type
        if s[FAILURES] >= threshold:
            s[BACKOFF_UNTIL] = now + min(max_backoff, base_backoff * 2 ** (s[FAILURES] - threshold))
    elif event == "cooldown":
        s[COOLDOWN_UNTIL] = max(s[COOLDOWN_UNTIL], now + cooldown_seconds)
        s[LAST_ERROR_TYPE] = error_type
    elif event == "invalid":
        s[INVALID] = 1
        s[LAST_ERROR_TYPE] = error_type
    else:
        raise ValueError(f"unknown credential event {event!r}")
    return s


def credential_ttl(state: dict[str, Any], *, now: float, ttl: float, invalid_ttl: float) -> float:
    """How long to keep a credential's state: at least until it frees up."""
    if int(state.get(INVALID, 0)):
        return invalid_ttl
    until = max(float(state.get(BACKOFF_UNTIL, 0.0)), float(state.get(COOLDOWN_UNTIL, 0.0)))
    return max(ttl, until - now + 1.0)


# --- circuit breaker: the pure transitions ----------------------------------

BREAKER_OPEN = "open"
BREAKER_FAILURES = "failures"
BREAKER_OPENED_AT = "opened_at"
BREAKER_PROBE_UNTIL = "probe_until"


def breaker_allow_transition(
    state: dict[str, Any] | None, *, now: float, reset_timeout: float
) -> tuple[bool, dict[str, Any] | None]:
    """``(allowed, state_to_store_or_None)``.

    Closed: allowed. Open within ``reset_timeout``: refused. Open after it
    (half-open): the first caller claims the probe for ``reset_timeout``
    seconds and is allowed; everyone else is refused until the probe reports
    (or its claim lapses, so a probe that never reports does not wedge the
    breaker open).
    """
    if not state or not int(state.get(BREAKER_OPEN, 0)):
        return True, None
    if now < float(state[BREAKER_OPENED_AT]) + reset_timeout:
        return False, None
    if float(state.get(BREAKER_PROBE_UNTIL, 0.0)) > now:
        return False, None
    new = dict(state)
    new[BREAKER_PROBE_UNTIL] = now + reset_timeout
    return True, new


def breaker_record_transition(
    state: dict[str, Any] | None,
    *,
    success: bool,
    now: float,
    threshold: int,
    reset_timeout: float,
) -> dict[str, Any] | None:
    """The state after an outcome; ``None`` means closed with no failures (delete it).

    A success closes the breaker. A failure counts while closed and opens it at
    ``threshold``; a failure while half-open (the probe's) re-opens it from now;
    a late failure while plainly open changes nothing.
    """
    if success:
        return None
    s = {
        BREAKER_OPEN: int((state or {}).get(BREAKER_OPEN, 0)),
        BREAKER_FAILURES: int((state or {}).get(BREAKER_FAILURES, 0)),
        BREAKER_OPENED_AT: float((state or {}).get(BREAKER_OPENED_AT, 0.0)),
        BREAKER_PROBE_UNTIL: float((state or {}).get(BREAKER_PROBE_UNTIL, 0.0)),
    }
    if s[BREAKER_OPEN]:
        if now >= s[BREAKER_OPENED_AT] + reset_timeout:
            s[BREAKER_OPENED_AT] = now
            s[BREAKER_PROBE_UNTIL] = 0.0
        return s
    s[BREAKER_FAILURES] += 1
    if s[BREAKER_FAILURES] >= threshold:
        s[BREAKER_OPEN] = 1
        s[BREAKER_OPENED_AT] = now
        s[BREAKER_PROBE_UNTIL] = 0.0
    return s
