"""The kit's pool, breaker and rate-limit state in the shared cache, for every process.

The kit (``kit/resilience``, ``kit/ratelimit_store.py``) defines what each
read-modify-write does as a pure function; this module makes each one a
single atomic step over aipk_site/infra/state.py's runner: on Redis one Lua
script per step (each mirrors its kit function line for line), on local
memory the kit's function itself under the process lock.

Layout, under the cache prefix:

    pool:<pool_id>:cred:<credential_id>   a credential's health (JSON)
    pool:<pool_id>:rr                     the pool's round-robin counter
    breaker:<name>                        a circuit breaker (JSON)
    ratelimit:...                         tracker snapshots and token buckets (kit's keys)

``provider_state_store()`` returns this process's store for the ``default`` cache.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

from aipk_site.infra.state import (
    LUA_PRELUDE,
    Action,
    LockedCacheStateStore,
    RedisStateStore,
    SharedStateStore,
    decode_json,
    state_store,
    ttl_ms,
)
from providers_app.kit.ratelimit_store import RateLimitStore, bucket_ttl, take_from_bucket
from providers_app.kit.resilience import (
    CredentialEventKind,
    ResilienceStore,
    breaker_allow_transition,
    breaker_record_transition,
    credential_transition,
    credential_ttl,
)

# One per cache alias, rebuilt when infra's store for that alias is (cache settings
# changed): connection handles live there, this only adds the kit's steps.
_stores: dict[str, ProviderStateStore] = {}
_stores_lock = threading.Lock()


def provider_state_store(alias: str = "default") -> ProviderStateStore:
    """The kit's store over the cache ``alias`` (Redis → Lua scripts, else a lock)."""
    shared = state_store(alias)
    store = _stores.get(alias)
    if store is None or store.shared is not shared:
        with _stores_lock:
            store = _stores.get(alias)
            if store is None or store.shared is not shared:
                store = _stores[alias] = provider_store_for(shared)
    return store


def provider_store_for(shared: SharedStateStore) -> ProviderStateStore:
    if isinstance(shared, RedisStateStore):
        return RedisProviderStateStore(shared)
    assert isinstance(shared, LockedCacheStateStore), type(shared)
    return LockedProviderStateStore(shared)


class ProviderStateStore(RateLimitStore, ResilienceStore):
    """Both kit store interfaces over one shared store."""

    def __init__(self, shared: SharedStateStore) -> None:
        self.shared = shared
        self.cache = shared.cache

    async def get(self, key: str) -> dict[str, Any] | None:
        return await self.shared.get(key)

    async def get_many(self, keys: Sequence[str]) -> dict[str, dict[str, Any]]:
        return await self.shared.get_many(keys)

    async def set(self, key: str, value: dict[str, Any], ttl: float) -> None:
        await self.shared.set(key, value, ttl)

    async def delete(self, key: str) -> None:
        await self.shared.delete(key)

    async def increment(self, key: str, *, ttl: float) -> int:
        return await self.shared.increment(key, ttl=ttl)


# --- local memory (one process): the kit's functions under the lock ---------------------


class LockedProviderStateStore(ProviderStateStore):
    """For a cache only one process sees (``LocMemCache``); atomic within the process."""

    shared: LockedCacheStateStore

    def __init__(self, shared: LockedCacheStateStore) -> None:
        super().__init__(shared)

    async def take_tokens(
        self,
        key: str,
        *,
        capacity: float,
        refill_per_second: float,
        amount: float,
        now: float,
    ) -> tuple[bool, float]:
        def step(current: Any) -> tuple[Action, Any, float, tuple[bool, float]]:
            allowed, wait, new = take_from_bucket(
                current,
                capacity=capacity,
                refill_per_second=refill_per_second,
                amount=amount,
                now=now,
            )
            return "write", new, bucket_ttl(capacity, refill_per_second), (allowed, wait)

        return await self.shared.update(key, step)

    async def update_credential(
        self,
        key: str,
        *,
        event: CredentialEventKind,
        now: float,
        error_type: str = "",
        cooldown_seconds: float = 0.0,
        threshold: int,
        base_backoff: float,
        max_backoff: float,
        ttl: float,
        invalid_ttl: float,
    ) -> dict[str, Any] | None:
        def step(current: Any) -> tuple[Action, Any, float, dict[str, Any] | None]:
            new = credential_transition(
                current,
                event=event,
                now=now,
                error_type=error_type,
                cooldown_seconds=cooldown_seconds,
                threshold=threshold,
                base_backoff=base_backoff,
                max_backoff=max_backoff,
            )
            if new is None:  # nothing to change
                return "keep", None, 0.0, (dict(current) if current else None)
            new_ttl = credential_ttl(new, now=now, ttl=ttl, invalid_ttl=invalid_ttl)
            return "write", new, new_ttl, dict(new)

        return await self.shared.update(key, step)

    async def breaker_allow_and_get_many(
        self,
        breaker_key: str,
        *,
        now: float,
        reset_timeout: float,
        ttl: float,
        keys: Sequence[str],
    ) -> tuple[bool, dict[str, dict[str, Any]]]:
        # One read of the breaker and the keys. When the allow step would write nothing
        # (closed, or open and not yet due for a probe) that read answers as the step
        # would; only claiming a half-open probe takes the locked step.
        stored = await self.shared.get_many([breaker_key, *keys])
        allowed, new = breaker_allow_transition(
            stored.get(breaker_key), now=now, reset_timeout=reset_timeout
        )
        if new is not None:
            return await super().breaker_allow_and_get_many(
                breaker_key, now=now, reset_timeout=reset_timeout, ttl=ttl, keys=keys
            )
        if not allowed:
            return False, {}
        if breaker_key not in keys:
            stored.pop(breaker_key, None)
        return True, stored

    async def breaker_allow(
        self, key: str, *, now: float, reset_timeout: float, ttl: float
    ) -> bool:
        def step(current: Any) -> tuple[Action, Any, float, bool]:
            allowed, new = breaker_allow_transition(current, now=now, reset_timeout=reset_timeout)
            return ("keep" if new is None else "write"), new, ttl, allowed

        return await self.shared.update(key, step)

    async def breaker_record(
        self,
        key: str,
        *,
        success: bool,
        now: float,
        threshold: int,
        reset_timeout: float,
        ttl: float,
    ) -> None:
        def step(current: Any) -> tuple[Action, Any, float, None]:
            new = breaker_record_transition(
                current, success=success, now=now, threshold=threshold, reset_timeout=reset_timeout
            )
            return ("delete" if new is None else "write"), new, ttl, None

        await self.shared.update(key, step)


# --- Redis: one Lua script per read-modify-write -------------------------------------

# Mirrors ratelimit_store.take_from_bucket line for line.
# KEYS[1] bucket; ARGV capacity, refill_per_second, amount, now, ttl_ms.
_LUA_TAKE_TOKENS = (
    LUA_PRELUDE
    + """
local capacity = tonumber(ARGV[1])
local rate = tonumber(ARGV[2])
local amount = tonumber(ARGV[3])
local now = tonumber(ARGV[4])
local state = load(KEYS[1])
local tokens, updated_at = capacity, now
if not is_empty(state) then
  tokens = field(state, 'tokens', capacity)
  updated_at = field(state, 'updated_at', now)
end
local elapsed = math.max(0, now - updated_at)
tokens = math.min(capacity, tokens + elapsed * rate)
local stamp = math.max(updated_at, now)
local allowed, wait = 0, '0'
if amount <= tokens + math.max(1e-9, rate * 1e-6) then
  tokens = math.max(0, math.min(capacity, tokens - amount))
  allowed = 1
elseif amount > capacity or rate <= 0 then
  wait = 'inf'
else
  wait = num((amount - tokens) / rate)
end
redis.call('SET', KEYS[1],
  '{"tokens":' .. num(tokens) .. ',"updated_at":' .. num(stamp) .. '}',
  'PX', ARGV[5])
return {allowed, wait}
"""
)

# Mirrors resilience.credential_transition and credential_ttl.
# KEYS[1] credential; ARGV event, now, error_type, cooldown_seconds, threshold,
# base_backoff, max_backoff, ttl, invalid_ttl. Returns the stored JSON (or nil).
_LUA_UPDATE_CREDENTIAL = (
    LUA_PRELUDE
    + """
local event = ARGV[1]
local now = tonumber(ARGV[2])
local state = load(KEYS[1])
if is_empty(state) and event == 'success' then return false end
local failures = field(state, 'failures', 0)
local last_failure_at = field(state, 'last_failure_at', 0)
local backoff_until = field(state, 'backoff_until', 0)
local cooldown_until = field(state, 'cooldown_until', 0)
local invalid = field(state, 'invalid', 0)
local last_error_type = ''
if state ~= nil and type(state['last_error_type']) == 'string' then
  last_error_type = state['last_error_type']
end
if event == 'success' then
  if failures == 0 and backoff_until == 0 and last_failure_at == 0 then
    return redis.call('GET', KEYS[1])
  end
  failures, last_failure_at, backoff_until = 0, 0, 0
elseif event == 'failure' then
  failures = failures + 1
  last_failure_at = now
  last_error_type = ARGV[3]
  local threshold = tonumber(ARGV[5])
  if failures >= threshold then
    local backoff = tonumber(ARGV[6]) * 2 ^ (failures - threshold)
    backoff_until = now + math.min(tonumber(ARGV[7]), backoff)
  end
elseif event == 'cooldown' then
  cooldown_until = math.max(cooldown_until, now + tonumber(ARGV[4]))
  last_error_type = ARGV[3]
elseif event == 'invalid' then
  invalid = 1
  last_error_type = ARGV[3]
else
  return redis.error_reply('unknown credential event ' .. event)
end
local ttl
if invalid ~= 0 then
  ttl = tonumber(ARGV[9])
else
  ttl = math.max(tonumber(ARGV[8]), math.max(backoff_until, cooldown_until) - now + 1)
end
local encoded = '{"failures":' .. num(failures)
  .. ',"last_failure_at":' .. num(last_failure_at)
  .. ',"backoff_until":' .. num(backoff_until)
  .. ',"cooldown_until":' .. num(cooldown_until)
  .. ',"invalid":' .. num(invalid)
  .. ',"last_error_type":' .. cjson.encode(last_error_type) .. '}'
redis.call('SET', KEYS[1], encoded, 'PX', math.max(1, math.ceil(ttl * 1000)))
return encoded
"""
)

_LUA_BREAKER_ENCODE = """
local function save(key, open, failures, opened_at, probe_until, ttl_ms)
  redis.call('SET', key,
    '{"open":' .. num(open) .. ',"failures":' .. num(failures)
    .. ',"opened_at":' .. num(opened_at) .. ',"probe_until":' .. num(probe_until) .. '}',
    'PX', ttl_ms)
end
"""

# Mirrors resilience.breaker_allow_transition. KEYS[1]; ARGV now, reset_timeout, ttl_ms.
_LUA_BREAKER_ALLOW_STEP = """
local now = tonumber(ARGV[1])
local reset_timeout = tonumber(ARGV[2])
local state = load(KEYS[1])
if is_empty(state) or field(state, 'open', 0) == 0 then return 1 end
local opened_at = field(state, 'opened_at', 0)
if now < opened_at + reset_timeout then return 0 end
if field(state, 'probe_until', 0) > now then return 0 end
save(KEYS[1], 1, field(state, 'failures', 0), opened_at, now + reset_timeout, ARGV[3])
return 1
"""
_LUA_BREAKER_ALLOW = LUA_PRELUDE + _LUA_BREAKER_ENCODE + _LUA_BREAKER_ALLOW_STEP

# The allow step above, then (when it allows) an MGET of KEYS[2..]: a request's
# breaker check and its read of the key pool in one round trip. Returns
# {allowed, {values...}}.
_LUA_BREAKER_ALLOW_AND_MGET = (
    LUA_PRELUDE
    + _LUA_BREAKER_ENCODE
    + "local function allow()\n"
    + _LUA_BREAKER_ALLOW_STEP
    + """end
local allowed = allow()
if allowed == 1 and #KEYS > 1 then
  return {1, redis.call('MGET', unpack(KEYS, 2))}
end
return {allowed, {}}
"""
)

# Mirrors resilience.breaker_record_transition.
# KEYS[1]; ARGV success (1/0), now, threshold, reset_timeout, ttl_ms.
_LUA_BREAKER_RECORD = (
    LUA_PRELUDE
    + _LUA_BREAKER_ENCODE
    + """
if ARGV[1] == '1' then
  redis.call('DEL', KEYS[1])
  return 0
end
local now = tonumber(ARGV[2])
local reset_timeout = tonumber(ARGV[4])
local state = load(KEYS[1])
local open = field(state, 'open', 0)
local failures = field(state, 'failures', 0)
local opened_at = field(state, 'opened_at', 0)
local probe_until = field(state, 'probe_until', 0)
if open ~= 0 then
  if now >= opened_at + reset_timeout then
    opened_at, probe_until = now, 0
  end
else
  failures = failures + 1
  if failures >= tonumber(ARGV[3]) then
    open, opened_at, probe_until = 1, now, 0
  end
end
save(KEYS[1], open, failures, opened_at, probe_until, ARGV[5])
return 1
"""
)


# A request's success on its credential and on its provider's breaker, in one round
# trip: the breaker's success is a DEL (it closes it whatever its state), then the
# credential's step exactly as _LUA_UPDATE_CREDENTIAL. KEYS[1] credential, KEYS[2]
# breaker (optional); ARGV as for _LUA_UPDATE_CREDENTIAL with event 'success'.
_LUA_RECORD_SUCCESS = "if KEYS[2] then redis.call('DEL', KEYS[2]) end\n" + _LUA_UPDATE_CREDENTIAL


class RedisProviderStateStore(ProviderStateStore):
    """Every read-modify-write is one Lua script on the Redis server."""

    shared: RedisStateStore

    def __init__(self, shared: RedisStateStore) -> None:
        super().__init__(shared)

    async def take_tokens(
        self,
        key: str,
        *,
        capacity: float,
        refill_per_second: float,
        amount: float,
        now: float,
    ) -> tuple[bool, float]:
        allowed, wait = await self.shared.run_script(
            _LUA_TAKE_TOKENS,
            [key],
            capacity,
            refill_per_second,
            amount,
            now,
            ttl_ms(bucket_ttl(capacity, refill_per_second)),
        )
        return bool(int(allowed)), float(wait)

    async def update_credential(
        self,
        key: str,
        *,
        event: CredentialEventKind,
        now: float,
        error_type: str = "",
        cooldown_seconds: float = 0.0,
        threshold: int,
        base_backoff: float,
        max_backoff: float,
        ttl: float,
        invalid_ttl: float,
    ) -> dict[str, Any] | None:
        stored = await self.shared.run_script(
            _LUA_UPDATE_CREDENTIAL,
            [key],
            event,
            now,
            error_type,
            cooldown_seconds,
            threshold,
            base_backoff,
            max_backoff,
            ttl,
            invalid_ttl,
        )
        return decode_json(stored)

    async def breaker_allow_and_get_many(
        self,
        breaker_key: str,
        *,
        now: float,
        reset_timeout: float,
        ttl: float,
        keys: Sequence[str],
    ) -> tuple[bool, dict[str, dict[str, Any]]]:
        allowed, raws = await self.shared.run_script(
            _LUA_BREAKER_ALLOW_AND_MGET, [breaker_key, *keys], now, reset_timeout, ttl_ms(ttl)
        )
        if not int(allowed):
            return False, {}
        return True, {
            k: value
            for k, raw in zip(keys, raws, strict=True)
            if (value := decode_json(raw)) is not None
        }

    async def record_success(
        self,
        credential_key: str,
        *,
        breaker_key: str | None,
        now: float,
        threshold: int,
        base_backoff: float,
        max_backoff: float,
        ttl: float,
        invalid_ttl: float,
    ) -> None:
        await self.shared.run_script(
            _LUA_RECORD_SUCCESS,
            [credential_key] if breaker_key is None else [credential_key, breaker_key],
            "success",
            now,
            "",
            0.0,
            threshold,
            base_backoff,
            max_backoff,
            ttl,
            invalid_ttl,
        )

    async def breaker_allow(
        self, key: str, *, now: float, reset_timeout: float, ttl: float
    ) -> bool:
        return bool(
            await self.shared.run_script(_LUA_BREAKER_ALLOW, [key], now, reset_timeout, ttl_ms(ttl))
        )

    async def breaker_record(
        self,
        key: str,
        *,
        success: bool,
        now: float,
        threshold: int,
        reset_timeout: float,
        ttl: float,
    ) -> None:
        await self.shared.run_script(
            _LUA_BREAKER_RECORD,
            [key],
            1 if success else 0,
            now,
            threshold,
            reset_timeout,
            ttl_ms(ttl),
        )
