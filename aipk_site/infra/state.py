"""Shared state for key pools, circuit breakers and rate limits, over Django's cache.

The kit (``kit/resilience.py``, ``kit/ratelimit.py``) defines what each
read-modify-write does as a pure function; this module makes each one a
single atomic step across every process sharing the cache:

- Redis (``django.core.cache.backends.redis.RedisCache``, production): each
  read-modify-write is ONE Lua script run on the server (redis-py
  ``register_script``), so two daphne workers or a worker and a Celery task
  can never interleave inside it. Plain reads and writes are single commands.
  Values are JSON; the scripts print numbers with ``%.17g`` so timestamps
  keep their full double precision (cjson's default keeps only 14 digits).
  Calls run in a worker thread (``asyncio.to_thread``) on the cache's own
  connection pool, so the event loop never blocks on the network.
- Any other backend (``LocMemCache`` in embedded mode: one process) runs the
  kit's function under a process-wide ``threading.Lock``: atomic for every
  thread and coroutine of the process, which is all that shares a
  local-memory cache.

Keys go through the cache's ``make_and_validate_key`` (so ``KEY_PREFIX`` and
the version apply) and always carry a TTL. Layout, under the prefix:

    pool:<pool_id>:cred:<credential_id>   a credential's health (JSON)
    pool:<pool_id>:rr                     the pool's round-robin counter
    breaker:<name>                        a circuit breaker (JSON)
    ratelimit:...                         tracker snapshots and token buckets (kit's keys)

``state_store()`` returns this process's store for the ``default`` cache.
"""

from __future__ import annotations

import asyncio
import json
import math
import threading
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from django.core.cache import BaseCache, caches
from django.core.cache.backends.locmem import LocMemCache
from django.core.cache.backends.redis import RedisCache
from django.core.signals import setting_changed
from django.dispatch import receiver

from providers_app.kit.ratelimit_store import RateLimitStore, bucket_ttl, take_from_bucket
from providers_app.kit.resilience import (
    CredentialEventKind,
    ResilienceStore,
    breaker_allow_transition,
    breaker_record_transition,
    credential_transition,
    credential_ttl,
)

T = TypeVar("T")

# One lock for every locally-locked store in the process: two store objects
# over the same local-memory cache must exclude each other too.
_LOCAL_LOCK = threading.Lock()


# Connection handles, not state: one store per cache alias in this process.
# Django gives every async context its own cache object, and a Redis cache
# object its own connection pool, so a store built per request would open new
# connections per request; this one reuses a single thread-safe pool.
_stores: dict[str, SharedStateStore] = {}
_stores_lock = threading.Lock()


def state_store(alias: str = "default") -> SharedStateStore:
    """The shared store over the cache ``alias`` (Redis → Lua scripts, else a lock)."""
    store = _stores.get(alias)
    if store is None:
        with _stores_lock:
            store = _stores.get(alias)
            if store is None:
                store = _stores[alias] = shared_store_for(caches[alias])
    return store


@receiver(setting_changed)
def _forget_stores(*, setting: str, **kwargs: Any) -> None:
    if setting == "CACHES":
        with _stores_lock:
            _stores.clear()


def shared_store_for(cache: BaseCache) -> SharedStateStore:
    if isinstance(cache, RedisCache):
        return RedisStateStore(cache)
    return LockedCacheStateStore(cache)


class SharedStateStore(RateLimitStore, ResilienceStore):
    """Both kit store interfaces over one Django cache."""

    def __init__(self, cache: BaseCache) -> None:
        self.cache = cache

    def full_key(self, key: str) -> str:
        return self.cache.make_and_validate_key(key)


def _ms(seconds: float) -> int:
    """A TTL in whole milliseconds, at least 1 (Redis rejects 0)."""
    return max(1, math.ceil(seconds * 1000))


# --- local memory (one process): the kit's functions under a lock -----------------


class LockedCacheStateStore(SharedStateStore):
    """For a cache only one process sees (``LocMemCache``); atomic within the process.

    Local-memory operations do no I/O, so they run inline on the event loop;
    any other backend would be run in a worker thread.
    """

    def __init__(self, cache: BaseCache) -> None:
        super().__init__(cache)
        self._inline = isinstance(cache, LocMemCache)

    async def _run(self, fn: Callable[[], T]) -> T:
        if self._inline:
            return fn()
        return await asyncio.to_thread(fn)

    def _locked(self, key: str, step: Callable[[Any], tuple[str, Any, float, T]]) -> T:
        """Read ``key``, apply ``step`` → (``"keep"|"write"|"delete"``, value, ttl, result)."""
        full = self.full_key(key)
        with _LOCAL_LOCK:
            action, value, ttl, result = step(self.cache.get(full))
            if action == "write":
                self.cache.set(full, value, timeout=ttl)
            elif action == "delete":
                self.cache.delete(full)
            return result

    async def atomically(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` (any reads and writes of this cache) as one step for the whole process."""

        def locked() -> T:
            with _LOCAL_LOCK:
                return fn()

        return await self._run(locked)

    async def get(self, key: str) -> dict | None:
        return await self._run(lambda: self.cache.get(self.full_key(key)))

    async def get_many(self, keys: Sequence[str]) -> dict[str, dict]:
        def read() -> dict[str, dict]:
            full = {self.full_key(k): k for k in keys}
            found = self.cache.get_many(list(full))
            return {full[f]: v for f, v in found.items()}

        return await self._run(read)

    async def set(self, key: str, value: dict, ttl: float) -> None:
        def write() -> None:
            if ttl <= 0:
                self.cache.delete(self.full_key(key))
            else:
                self.cache.set(self.full_key(key), dict(value), timeout=ttl)

        await self._run(write)

    async def delete(self, key: str) -> None:
        await self._run(lambda: self.cache.delete(self.full_key(key)))

    async def increment(self, key: str, *, ttl: float) -> int:
        def step(current):
            value = int((current or {}).get("value", 0)) + 1
            return "write", {"value": value}, ttl, value

        return await self._run(lambda: self._locked(key, step))

    async def take_tokens(
        self,
        key: str,
        *,
        capacity: float,
        refill_per_second: float,
        amount: float,
        now: float,
    ) -> tuple[bool, float]:
        def step(current):
            allowed, wait, new = take_from_bucket(
                current,
                capacity=capacity,
                refill_per_second=refill_per_second,
                amount=amount,
                now=now,
            )
            return "write", new, bucket_ttl(capacity, refill_per_second), (allowed, wait)

        return await self._run(lambda: self._locked(key, step))

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
    ) -> dict | None:
        def step(current):
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

        return await self._run(lambda: self._locked(key, step))

    async def breaker_allow(
        self, key: str, *, now: float, reset_timeout: float, ttl: float
    ) -> bool:
        def step(current):
            allowed, new = breaker_allow_transition(current, now=now, reset_timeout=reset_timeout)
            return ("keep" if new is None else "write"), new, ttl, allowed

        return await self._run(lambda: self._locked(key, step))

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
        def step(current):
            new = breaker_record_transition(
                current, success=success, now=now, threshold=threshold, reset_timeout=reset_timeout
            )
            return ("delete" if new is None else "write"), new, ttl, None

        await self._run(lambda: self._locked(key, step))


# --- Redis: one Lua script per read-modify-write ---------------------------------

# Shared Lua helpers: decode a stored JSON object (nil when absent or not an
# object), read a numeric field, print numbers at full double precision.
_LUA_PRELUDE = """
local function load(key)
  local raw = redis.call('GET', key)
  if not raw then return nil end
  local ok, value = pcall(cjson.decode, raw)
  if ok and type(value) == 'table' then return value end
  return nil
end
local function field(state, name, default)
  if state == nil then return default end
  local v = tonumber(state[name])
  if v == nil then return default end
  return v
end
local function num(x)
  if x ~= x then return '0' end
  if x == math.huge then return '1e308' end
  if x == -math.huge then return '-1e308' end
  return string.format('%.17g', x)
end
local function is_empty(state)
  return state == nil or next(state) == nil
end
"""

# Mirrors ratelimit_store.take_from_bucket line for line.
# KEYS[1] bucket; ARGV capacity, refill_per_second, amount, now, ttl_ms.
_LUA_TAKE_TOKENS = (
    _LUA_PRELUDE
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
    _LUA_PRELUDE
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
_LUA_BREAKER_ALLOW = (
    _LUA_PRELUDE
    + _LUA_BREAKER_ENCODE
    + """
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
)

# Mirrors resilience.breaker_record_transition.
# KEYS[1]; ARGV success (1/0), now, threshold, reset_timeout, ttl_ms.
_LUA_BREAKER_RECORD = (
    _LUA_PRELUDE
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

# KEYS[1] counter; ARGV ttl_ms.
_LUA_INCREMENT = """
local value = redis.call('INCR', KEYS[1])
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return value
"""


def _decode(raw: bytes | None) -> dict | None:
    return None if raw is None else _decode_stored(raw)


def _decode_stored(raw: bytes) -> dict:
    value = json.loads(raw)
    if isinstance(value, dict):
        return value
    return {"value": value}


class RedisStateStore(SharedStateStore):
    """Every read-modify-write is one Lua script on the Redis server."""

    def __init__(self, cache: RedisCache) -> None:
        super().__init__(cache)
        self._script_lock = threading.Lock()
        self._scripts: dict[str, Any] | None = None

    def _client(self, full_key: str | None = None):
        # Always the write connection: reads must see this store's own writes
        # even when the cache has read replicas.
        return self.cache._cache.get_client(full_key, write=True)

    def client(self, full_key: str | None = None):
        """The connection this store uses, for other modules' scripts over the same keys."""
        return self._client(full_key)

    def _script(self, name: str):
        with self._script_lock:
            if self._scripts is None:
                client = self._client()
                self._scripts = {
                    "take_tokens": client.register_script(_LUA_TAKE_TOKENS),
                    "update_credential": client.register_script(_LUA_UPDATE_CREDENTIAL),
                    "breaker_allow": client.register_script(_LUA_BREAKER_ALLOW),
                    "breaker_record": client.register_script(_LUA_BREAKER_RECORD),
                    "increment": client.register_script(_LUA_INCREMENT),
                }
            return self._scripts[name]

    async def _eval(self, name: str, key: str, *args: Any) -> Any:
        full = self.full_key(key)
        script = self._script(name)
        return await asyncio.to_thread(
            script, keys=[full], args=[_arg(a) for a in args], client=self._client(full)
        )

    async def get(self, key: str) -> dict | None:
        full = self.full_key(key)
        return _decode(await asyncio.to_thread(self._client(full).get, full))

    async def get_many(self, keys: Sequence[str]) -> dict[str, dict]:
        if not keys:
            return {}
        full = [self.full_key(k) for k in keys]
        raws = await asyncio.to_thread(self._client().mget, full)
        return {
            k: _decode_stored(raw) for k, raw in zip(keys, raws, strict=True) if raw is not None
        }

    async def set(self, key: str, value: dict, ttl: float) -> None:
        full = self.full_key(key)
        client = self._client(full)
        if ttl <= 0:
            await asyncio.to_thread(client.delete, full)
        else:
            await asyncio.to_thread(client.set, full, json.dumps(value), px=_ms(ttl))

    async def delete(self, key: str) -> None:
        full = self.full_key(key)
        await asyncio.to_thread(self._client(full).delete, full)

    async def increment(self, key: str, *, ttl: float) -> int:
        return int(await self._eval("increment", key, _ms(ttl)))

    async def take_tokens(
        self,
        key: str,
        *,
        capacity: float,
        refill_per_second: float,
        amount: float,
        now: float,
    ) -> tuple[bool, float]:
        allowed, wait = await self._eval(
            "take_tokens",
            key,
            capacity,
            refill_per_second,
            amount,
            now,
            _ms(bucket_ttl(capacity, refill_per_second)),
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
    ) -> dict | None:
        stored = await self._eval(
            "update_credential",
            key,
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
        return _decode(stored)

    async def breaker_allow(
        self, key: str, *, now: float, reset_timeout: float, ttl: float
    ) -> bool:
        return bool(await self._eval("breaker_allow", key, now, reset_timeout, _ms(ttl)))

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
        await self._eval(
            "breaker_record", key, 1 if success else 0, now, threshold, reset_timeout, _ms(ttl)
        )


def _arg(value: Any) -> str | int:
    """Script arguments as text Lua's tonumber reads back exactly (repr keeps every digit)."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else ("1e308" if value > 0 else "-1e308")
    return value
