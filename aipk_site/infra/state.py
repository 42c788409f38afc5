"""Shared state over Django's cache, where every read-modify-write is one atomic step.

Pools, breakers and token buckets (providers_app/services/shared_state.py),
admission counters and routing (the gateway) keep small JSON values here that
several processes change at once, so each change must be a single step across
every process sharing the cache. This module is the generic runner; what each
step computes belongs to its caller:

- Redis (``django.core.cache.backends.redis.RedisCache``, production): a
  read-modify-write is ONE Lua script run on the server (redis-py
  ``register_script``, ``RedisStateStore.run_script``), so two server workers
  or a worker and a Celery task can never interleave inside it. Plain reads
  and writes are single commands. Values are JSON; ``LUA_PRELUDE`` prints
  numbers with ``%.17g`` so timestamps keep their full double precision
  (cjson's default keeps only 14 digits). The request path's calls go out on the
  calling event loop over one pipelined connection per loop
  (``aipk_site.infra.redis_wire``; no worker thread per call, no pool checkout per
  command); sync callers use the cache's own pool.
- Any other backend (``LocMemCache`` in embedded mode: one process) runs the
  step as a Python function under a process-wide ``threading.Lock``
  (``LockedCacheStateStore.update`` / ``atomically``): atomic for every thread
  and coroutine of the process, which is all that shares a local-memory cache.

Keys go through the cache's ``make_and_validate_key`` (so ``KEY_PREFIX`` and
the version apply) and always carry a TTL.

``state_store()`` returns this process's store for the ``default`` cache.
"""

from __future__ import annotations

import abc
import asyncio
import json
import math
import threading
import weakref
from collections.abc import Callable, Sequence
from typing import Any, Literal, TypeVar

import redis.asyncio as aioredis
from django.core.cache import BaseCache, caches
from django.core.cache.backends.locmem import LocMemCache
from django.core.cache.backends.redis import RedisCache
from django.core.signals import setting_changed
from redis.commands.core import AsyncScript

from aipk_site.infra import redis_wire
from aipk_site.infra.redis_wire import PipelinedRedis, WireScript

T = TypeVar("T")

# What a locked step does with its key: leave it, store the new value, or remove it.
Action = Literal["keep", "write", "delete"]
# A locked step: the stored value (None when absent) → (action, new value, TTL, result).
Step = Callable[[Any], tuple[Action, Any, float, T]]

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


def _forget_stores(*, setting: str, **kwargs: Any) -> None:
    if setting == "CACHES":
        with _stores_lock:
            _stores.clear()


setting_changed.connect(_forget_stores, dispatch_uid="aipk-infra-state-stores")


def shared_store_for(cache: BaseCache) -> SharedStateStore:
    if isinstance(cache, RedisCache):
        return RedisStateStore(cache)
    return LockedCacheStateStore(cache)


class SharedStateStore(abc.ABC):
    """Plain reads and writes of small JSON dicts, and a counter, over one Django cache."""

    def __init__(self, cache: BaseCache) -> None:
        self.cache = cache

    def full_key(self, key: str) -> str:
        # make_key (prefix, version) without validate_key: that check only warns about
        # keys memcached would refuse, and it was ~7% of a production request's CPU
        # (several keys per request); these keys are aipk's own (ASCII, no spaces).
        return str(self.cache.make_key(key))

    @abc.abstractmethod
    async def get(self, key: str) -> dict[str, Any] | None: ...

    @abc.abstractmethod
    async def get_many(self, keys: Sequence[str]) -> dict[str, dict[str, Any]]:
        """The stored values of ``keys`` that exist."""

    @abc.abstractmethod
    async def set(self, key: str, value: dict[str, Any], ttl: float) -> None:
        """Store ``value`` for ``ttl`` seconds (``ttl <= 0`` deletes the key)."""

    @abc.abstractmethod
    async def delete(self, key: str) -> None: ...

    @abc.abstractmethod
    async def increment(self, key: str, *, ttl: float) -> int:
        """Add one to a counter (created at 0) and return the new value; refresh its TTL."""

    @abc.abstractmethod
    async def fold_average(self, key: str, sample: float, *, alpha: float, ttl: float) -> None:
        """Fold ``sample`` into the moving average at ``key`` in one step (one round trip):
        ``{"ewma": alpha * sample + (1 - alpha) * ewma, "samples": samples + 1}``, the
        first sample as it is; kept ``ttl`` seconds from now."""

    # Values in the Django cache's own format (``cache.get`` / ``cache.set`` see the
    # same entries), for callers that keep plain cache entries on the request path.

    @abc.abstractmethod
    async def cache_get(self, key: str) -> Any:
        """``cache.get(key)`` without blocking the event loop (None when absent)."""

    @abc.abstractmethod
    async def cache_set(self, key: str, value: Any, seconds: int) -> None:
        """``cache.set(key, value, timeout=seconds)`` (``seconds <= 0`` deletes the key)."""

    @abc.abstractmethod
    async def cache_delete(self, key: str) -> None: ...


def ttl_ms(seconds: float) -> int:
    """A TTL in whole milliseconds, at least 1 (Redis rejects 0)."""
    return max(1, math.ceil(seconds * 1000))


# The gateway's admission imports the helper under its first name.
_ms = ttl_ms


# --- local memory (one process): Python steps under a lock -------------------------


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

    def _locked(self, key: str, step: Step[T]) -> T:
        full = self.full_key(key)
        with _LOCAL_LOCK:
            action, value, ttl, result = step(self.cache.get(full))
            if action == "write":
                self.cache.set(full, value, timeout=ttl)
            elif action == "delete":
                self.cache.delete(full)
            return result

    async def update(self, key: str, step: Step[T]) -> T:
        """Read ``key``, apply ``step`` and store what it says, as one step for the process."""
        return await self._run(lambda: self._locked(key, step))

    async def atomically(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` (any reads and writes of this cache) as one step for the whole process."""

        def locked() -> T:
            with _LOCAL_LOCK:
                return fn()

        return await self._run(locked)

    async def get(self, key: str) -> dict[str, Any] | None:
        value: dict[str, Any] | None = await self._run(lambda: self.cache.get(self.full_key(key)))
        return value

    async def get_many(self, keys: Sequence[str]) -> dict[str, dict[str, Any]]:
        def read() -> dict[str, dict[str, Any]]:
            full = {self.full_key(k): k for k in keys}
            found = self.cache.get_many(list(full))
            return {full[f]: v for f, v in found.items()}

        return await self._run(read)

    async def set(self, key: str, value: dict[str, Any], ttl: float) -> None:
        def write() -> None:
            if ttl <= 0:
                self.cache.delete(self.full_key(key))
            else:
                self.cache.set(self.full_key(key), dict(value), timeout=ttl)

        await self._run(write)

    async def delete(self, key: str) -> None:
        await self._run(lambda: self.cache.delete(self.full_key(key)))

    async def increment(self, key: str, *, ttl: float) -> int:
        def step(current: Any) -> tuple[Action, Any, float, int]:
            value = int((current or {}).get("value", 0)) + 1
            return "write", {"value": value}, ttl, value

        return await self.update(key, step)

    async def fold_average(self, key: str, sample: float, *, alpha: float, ttl: float) -> None:
        def step(current: Any) -> tuple[Action, Any, float, None]:
            previous = (current or {}).get("ewma")
            if isinstance(previous, int | float) and not isinstance(previous, bool):
                ewma = alpha * sample + (1 - alpha) * previous
            else:
                ewma = float(sample)
            samples = int((current or {}).get("samples", 0)) + 1
            return "write", {"ewma": ewma, "samples": samples}, ttl, None

        await self.update(key, step)

    async def cache_get(self, key: str) -> Any:
        return await self._run(lambda: self.cache.get(key))

    async def cache_set(self, key: str, value: Any, seconds: int) -> None:
        def write() -> None:
            if seconds <= 0:
                self.cache.delete(key)
            else:
                self.cache.set(key, value, timeout=seconds)

        await self._run(write)

    async def cache_delete(self, key: str) -> None:
        await self._run(lambda: self.cache.delete(key))


# --- Redis: one Lua script per read-modify-write -------------------------------------

# Lua helpers for scripts over JSON values: decode a stored JSON object (nil when
# absent or not an object), read a numeric field, print numbers at full double
# precision, tell an empty state.
LUA_PRELUDE = """
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

# KEYS[1] counter; ARGV ttl_ms.
_LUA_INCREMENT = """
local value = redis.call('INCR', KEYS[1])
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return value
"""


# KEYS[1] average; ARGV sample, alpha, ttl_ms. Mirrors LockedCacheStateStore.fold_average.
_LUA_FOLD_AVERAGE = (
    LUA_PRELUDE
    + """
local state = load(KEYS[1])
local sample = tonumber(ARGV[1])
local alpha = tonumber(ARGV[2])
local ewma = sample
if state ~= nil and type(state['ewma']) == 'number' then
  ewma = alpha * sample + (1 - alpha) * state['ewma']
end
local samples = field(state, 'samples', 0) + 1
redis.call('SET', KEYS[1], '{"ewma":' .. num(ewma) .. ',"samples":' .. num(samples) .. '}',
  'PX', ARGV[3])
return 1
"""
)


def decode_json(raw: bytes | str | None) -> dict[str, Any] | None:
    """A stored value (or a script's JSON reply) as a dict; a bare JSON value as ``{"value"}``."""
    return None if raw is None else _decode_stored(raw)


def _decode_stored(raw: bytes | str) -> dict[str, Any]:
    value = json.loads(raw)
    if isinstance(value, dict):
        return value
    return {"value": value}


class _LoopClient:
    """One event loop's asyncio client and the scripts registered on it."""

    __slots__ = ("redis", "scripts")

    def __init__(self, redis: PipelinedRedis | aioredis.Redis) -> None:
        self.redis = redis
        self.scripts: dict[str, WireScript | AsyncScript] = {}


# Options of Django's sync client that name sync classes (or Django's serializer):
# the asyncio client uses its own connection and parser classes.
_SYNC_ONLY_OPTIONS = frozenset({"pool_class", "parser_class", "serializer"})

# For the redis-py fallback (a location redis_wire does not serve): connections per
# event loop (one loop per server process), as many as there are commands in flight,
# like the sync pool Django builds (redis-py's sync default). redis.asyncio's own
# default is 100 and a burst past it fails with "Too many connections"; its
# BlockingConnectionPool queues instead but costs a fifth more CPU per command here
# (an asyncio.Condition per checkout). OPTIONS may set a cap.
ASYNC_POOL_CONNECTIONS = 2**31


class RedisStateStore(SharedStateStore):
    """Every read-modify-write is one Lua script on the Redis server.

    The async methods talk to Redis on the calling event loop: no worker thread per
    call, and a connection kept open between requests. A connection belongs to the
    loop that opened it, so there is one client per event loop (``aclient``), built
    from the cache's own location and options and dropped with its loop.
    ``client()`` / ``script()`` stay for sync callers.
    """

    cache: RedisCache

    def __init__(self, cache: RedisCache) -> None:
        super().__init__(cache)
        self._script_lock = threading.Lock()
        self._scripts: dict[str, Any] = {}
        self._loops: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopClient] = (
            weakref.WeakKeyDictionary()
        )
        self._loops_lock = threading.Lock()
        # Django's serializer, for values stored in the cache's own format (cache_get/set).
        self._serializer: Any = cache._cache._serializer

    # --- sync (other threads, Celery, admin pages) ---

    def client(self, full_key: str | None = None) -> Any:
        """The sync connection this store's cache uses, for sync callers over the same keys.

        Always the write connection: reads must see this store's own writes even
        when the cache has read replicas.
        """
        return self.cache._cache.get_client(full_key, write=True)

    def script(self, source: str) -> Any:
        """``source`` registered once on the sync client (registering only hashes the text)."""
        with self._script_lock:
            script = self._scripts.get(source)
            if script is None:
                script = self._scripts[source] = self.client().register_script(source)
            return script

    # --- async (the request path) ---

    def _loop_client(self) -> _LoopClient:
        loop = asyncio.get_running_loop()
        found = self._loops.get(loop)
        if found is None:
            with self._loops_lock:
                found = self._loops.get(loop)
                if found is None:
                    found = self._loops[loop] = _LoopClient(self._new_async_client())
        return found

    def _new_async_client(self) -> PipelinedRedis | aioredis.Redis:
        # The write server (the first location), as client() uses: reads see own writes.
        url = self.cache._servers[0]
        options = {k: v for k, v in self.cache._options.items() if k not in _SYNC_ONLY_OPTIONS}
        if redis_wire.supports(url):
            return PipelinedRedis(
                url,
                socket_timeout=options.get("socket_timeout"),
                socket_connect_timeout=options.get("socket_connect_timeout"),
            )
        options.setdefault("max_connections", ASYNC_POOL_CONNECTIONS)
        pool = aioredis.ConnectionPool.from_url(url, **options)
        return aioredis.Redis(connection_pool=pool)

    def aclient(self) -> Any:
        """This event loop's asyncio client (call it from a coroutine): the pipelined
        connection of ``aipk_site.infra.redis_wire`` for a plain Redis location,
        redis-py's asyncio client for any other (TLS ...). Both answer ``get``, ``mget``,
        ``set``, ``delete`` and ``register_script`` alike."""
        return self._loop_client().redis

    def ascript(self, source: str) -> Any:
        """``source`` registered once on this event loop's client; call it with
        ``keys=`` and ``args=``."""
        loop_client = self._loop_client()
        script = loop_client.scripts.get(source)
        if script is None:
            script = loop_client.scripts[source] = loop_client.redis.register_script(source)
        return script

    async def run_script(self, source: str, keys: Sequence[str], *args: Any) -> Any:
        """Run the Lua ``source`` over ``keys`` (before the prefix) on the server.

        Arguments go through ``script_arg``, so floats reach Lua's ``tonumber`` exactly.
        """
        full = [self.full_key(k) for k in keys]
        return await self.ascript(source)(keys=full, args=[script_arg(a) for a in args])

    async def get(self, key: str) -> dict[str, Any] | None:
        return decode_json(await self.aclient().get(self.full_key(key)))

    async def get_many(self, keys: Sequence[str]) -> dict[str, dict[str, Any]]:
        if not keys:
            return {}
        raws = await self.aclient().mget([self.full_key(k) for k in keys])
        return {
            k: _decode_stored(raw) for k, raw in zip(keys, raws, strict=True) if raw is not None
        }

    async def set(self, key: str, value: dict[str, Any], ttl: float) -> None:
        full = self.full_key(key)
        if ttl <= 0:
            await self.aclient().delete(full)
        else:
            await self.aclient().set(full, json.dumps(value), px=ttl_ms(ttl))

    async def delete(self, key: str) -> None:
        await self.aclient().delete(self.full_key(key))

    async def increment(self, key: str, *, ttl: float) -> int:
        return int(await self.run_script(_LUA_INCREMENT, [key], ttl_ms(ttl)))

    async def fold_average(self, key: str, sample: float, *, alpha: float, ttl: float) -> None:
        await self.run_script(_LUA_FOLD_AVERAGE, [key], float(sample), float(alpha), ttl_ms(ttl))

    # Values in the Django cache's own format (``cache.get`` / ``cache.set`` read them too).

    async def cache_get(self, key: str) -> Any:
        raw = await self.aclient().get(self.full_key(key))
        return None if raw is None else self._serializer.loads(raw)

    async def cache_set(self, key: str, value: Any, seconds: int) -> None:
        full = self.full_key(key)
        if seconds <= 0:
            await self.aclient().delete(full)
        else:
            await self.aclient().set(full, self._serializer.dumps(value), ex=seconds)

    async def cache_delete(self, key: str) -> None:
        await self.aclient().delete(self.full_key(key))


def script_arg(value: Any) -> Any:
    """Script arguments as text Lua's tonumber reads back exactly (repr keeps every digit)."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else ("1e308" if value > 0 else "-1e308")
    return value
