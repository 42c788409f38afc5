"""Admission on Redis: one Lua script per admit, settle and read, atomic on the
server across every process sharing the cache (the same steps ``rules``
runs in Python for local memory).
"""

from __future__ import annotations

from typing import Any

from aipk_site.gateway.admission import rules as rules
from aipk_site.gateway.admission.keys import (
    RECLAIM_BATCH,
    AdmissionKeys,
    AdmitRequest,
    SettleRequest,
    lease_member,
    leases_ttl,
    month_ttl,
    reservation_ttl,
    window_ttl,
)
from aipk_site.gateway.admission.rules import Counters, Limits
from aipk_site.infra.state import RedisStateStore, _ms

# --- Redis: one Lua script per admit and per settle ----------------------------------

# Gives back what a scope's expired leases hold (rules.reclaim): their
# cost comes off the month counter if they were charged to it (DECRBY of the
# digits stored in the member, never a Lua double printed back), and they leave
# the set. Returns the spend afterwards (nil: no counter).
_LUA_RECLAIM = """
local function reclaim(m, l, now, month)
  local expired = redis.call('ZRANGEBYSCORE', l, '-inf', now, 'LIMIT', 0, RECLAIM_BATCH)
  local spend = redis.call('GET', m)
  for _, member in ipairs(expired) do
    local cost, held = string.match(member, '|(%d+)|(%d+)$')
    if spend and held == month then spend = redis.call('DECRBY', m, cost) end
    redis.call('ZREM', l, member)
  end
  if spend and tonumber(spend) < 0 then
    redis.call('SET', m, '0', 'KEEPTTL')
    spend = 0
  end
  if spend then return tonumber(spend) end
  return nil
end
""".replace("RECLAIM_BATCH", str(RECLAIM_BATCH))

# Mirrors rules.admit_step. Counts are integers; money goes through
# INCRBY/DECRBY and SET of the caller's own digits, never through a Lua double
# printed back (tostring would print 1e+15).
# KEYS: key window, month, streams, leases; the tenant's four; reservation.
# ARGV: 1 now, 2 request id, 3 tokens, 4 cost, 5 stream (1/0),
#       6-9 key rpm, tpm, max concurrent, budget; 10-13 the tenant's (-1: none);
#       14 key seed, 15 tenant seed (-1: none); TTLs in ms: 16 window, 17 month,
#       18 stream and lease sets, 19 reservation; 20 month id, 21 lease expiry.
# Returns {2, "key,tenant"} when a month counter needs a seed, else
# {admitted 1/0, refusal code, then per scope requests, tokens, spend, streams}.
_LUA_ADMIT = (
    _LUA_RECLAIM
    + """
local now = ARGV[1]
local tokens = tonumber(ARGV[3])
local cost = tonumber(ARGV[4])
local stream = ARGV[5] == '1'
local month = ARGV[20]
local function limit(i)
  local v = tonumber(ARGV[i])
  if v < 0 then return nil end
  return v
end
local scopes = {
  {name = 'key', w = KEYS[1], m = KEYS[2], s = KEYS[3], l = KEYS[4], seed = ARGV[14],
   rpm = limit(6), tpm = limit(7), conc = limit(8), budget = limit(9)},
  {name = 'tenant', w = KEYS[5], m = KEYS[6], s = KEYS[7], l = KEYS[8], seed = ARGV[15],
   rpm = limit(10), tpm = limit(11), conc = limit(12), budget = limit(13)},
}
local missing = {}
for _, sc in ipairs(scopes) do
  if redis.call('EXISTS', sc.m) == 0 then
    if tonumber(sc.seed) >= 0 then
      sc.seeded = true
    else
      table.insert(missing, sc.name)
    end
  end
end
if #missing > 0 then return {2, table.concat(missing, ',')} end
for _, sc in ipairs(scopes) do
  if sc.seeded then
    redis.call('SET', sc.m, sc.seed, 'PX', ARGV[17])
    -- the seed holds none of the old leases' costs
    redis.call('DEL', sc.l)
  end
  sc.spend = reclaim(sc.m, sc.l, now, month)
  redis.call('ZREMRANGEBYSCORE', sc.s, '-inf', now)
  local counts = redis.call('HMGET', sc.w, 'r', 't')
  sc.requests = tonumber(counts[1]) or 0
  sc.tokens = tonumber(counts[2]) or 0
  sc.streams = redis.call('ZCARD', sc.s)
end
local refusal = ''
for _, sc in ipairs(scopes) do
  local kind = nil
  if sc.rpm and sc.requests + 1 > sc.rpm then kind = 'rpm'
  elseif sc.tpm and sc.tokens + tokens > sc.tpm then kind = 'tpm'
  elseif stream and sc.conc and sc.streams + 1 > sc.conc then kind = 'concurrency'
  elseif sc.budget and (sc.spend >= sc.budget or sc.spend + cost > sc.budget) then
    kind = 'budget'
  end
  if kind then
    refusal = sc.name .. '_' .. kind
    break
  end
end
if refusal == '' then
  local member = ARGV[2] .. '|' .. ARGV[4] .. '|' .. month
  for _, sc in ipairs(scopes) do
    sc.requests = redis.call('HINCRBY', sc.w, 'r', 1)
    sc.tokens = redis.call('HINCRBY', sc.w, 't', ARGV[3])
    redis.call('PEXPIRE', sc.w, ARGV[16])
    sc.spend = redis.call('INCRBY', sc.m, ARGV[4])
    redis.call('ZADD', sc.l, ARGV[21], member)
    -- leases differ in length: a set lives as long as its longest
    if redis.call('PTTL', sc.l) < tonumber(ARGV[18]) then redis.call('PEXPIRE', sc.l, ARGV[18]) end
    if stream and sc.conc then
      redis.call('ZADD', sc.s, ARGV[21], ARGV[2])
      if redis.call('PTTL', sc.s) < tonumber(ARGV[18]) then
        redis.call('PEXPIRE', sc.s, ARGV[18])
      end
      sc.streams = redis.call('ZCARD', sc.s)
    end
  end
  redis.call('SET', KEYS[9], '1', 'PX', ARGV[19])
end
local out = {refusal == '' and 1 or 0, refusal}
for _, sc in ipairs(scopes) do
  table.insert(out, sc.requests)
  table.insert(out, sc.tokens)
  table.insert(out, sc.spend)
  table.insert(out, sc.streams)
end
return out
"""
)

# Mirrors rules.settle_step. KEYS as for admit; ARGV: 1 same window
# (1/0), 2 token delta, 3 cost delta, 4 request id, 5 lease member, 6 real cost.
# Returns 1 if applied. Only existing counters change, so their TTLs stand
# (HINCRBY and INCRBY keep them).
_LUA_SETTLE = """
if redis.call('DEL', KEYS[9]) == 0 then return 0 end
for i = 0, 4, 4 do
  local w, m, s, l = KEYS[i + 1], KEYS[i + 2], KEYS[i + 3], KEYS[i + 4]
  local held = redis.call('ZREM', l, ARGV[5])
  if ARGV[1] == '1' and redis.call('EXISTS', w) == 1 then
    if redis.call('HINCRBY', w, 't', ARGV[2]) < 0 then redis.call('HSET', w, 't', '0') end
  end
  if redis.call('EXISTS', m) == 1 then
    -- a reclaimed lease no longer holds the reservation: charge the whole real cost
    local delta = ARGV[6]
    if held == 1 then delta = ARGV[3] end
    if redis.call('INCRBY', m, delta) < 0 then redis.call('SET', m, '0', 'KEEPTTL') end
  end
  redis.call('ZREM', s, ARGV[4])
end
return 1
"""

# A consistent snapshot, after reclaiming expired leases. KEYS: the first eight
# of admit's; ARGV: 1 now, 2 month id. Per scope: requests, tokens, spend
# (-1: not in the cache), live streams.
_LUA_READ = (
    _LUA_RECLAIM
    + """
local out = {}
for i = 0, 4, 4 do
  local spend = reclaim(KEYS[i + 2], KEYS[i + 4], ARGV[1], ARGV[2])
  redis.call('ZREMRANGEBYSCORE', KEYS[i + 3], '-inf', ARGV[1])
  local counts = redis.call('HMGET', KEYS[i + 1], 'r', 't')
  table.insert(out, tonumber(counts[1]) or 0)
  table.insert(out, tonumber(counts[2]) or 0)
  table.insert(out, spend or -1)
  table.insert(out, redis.call('ZCARD', KEYS[i + 3]))
end
return out
"""
)


def _limit_args(limits: Limits) -> list[int]:
    values = (limits.rpm, limits.tpm, limits.max_concurrent, limits.budget_micro_usd)
    return [-1 if v is None else int(v) for v in values]


class RedisAdmissionStore:
    """Every admit and settle is one Lua script on the Redis server."""

    def __init__(self, shared: RedisStateStore) -> None:
        self.shared = shared

    async def _run(self, source: str, keys: list[str], args: list[Any]) -> Any:
        # On the event loop with this loop's asyncio client; the script is registered
        # once per client (only the text's hash), the server learns it on first use.
        full = [self.shared.full_key(k) for k in keys]
        return await self.shared.ascript(source)(keys=full, args=args)

    async def admit(
        self, req: AdmitRequest, *, key_seed: int | None, tenant_seed: int | None
    ) -> rules.AdmitResult:
        args = [
            repr(req.now),
            req.request_id,
            req.tokens,
            req.cost,
            1 if req.stream else 0,
            *_limit_args(req.key_limits),
            *_limit_args(req.tenant_limits),
            -1 if key_seed is None else key_seed,
            -1 if tenant_seed is None else tenant_seed,
            _ms(window_ttl(req.window, req.now)),
            _ms(month_ttl(req.now, req.now)),
            _ms(leases_ttl(req.lease)),
            _ms(reservation_ttl(req.lease)),
            req.month,
            repr(req.now + req.lease),
        ]
        keys = [*req.keys.ordered(), req.keys.reservation(req.request_id)]
        reply = await self._run(_LUA_ADMIT, keys, args)
        status = int(reply[0])
        code = reply[1].decode() if isinstance(reply[1], bytes) else str(reply[1])
        if status == 2:
            return rules.AdmitResult(
                False,
                Counters(),
                Counters(),
                needs_seed=tuple(x for x in rules.SCOPES if x in code.split(",")),
            )
        # Only the number of streams comes back; headers need no more.
        key, tenant = (
            Counters(requests=int(r), tokens=int(t), spend=int(m))
            for r, t, m in (reply[2:5], reply[6:9])
        )
        refusal = None
        if code:
            scope, kind = code.split("_", 1)
            refusal = rules.Refusal(scope, kind)  # type: ignore[arg-type]
        return rules.AdmitResult(status == 1, key, tenant, refusal)

    async def settle(self, s: SettleRequest) -> bool:
        args = [
            1 if s.same_window else 0,
            s.token_delta,
            s.cost_delta,
            s.request_id,
            lease_member(s.request_id, s.real_cost - s.cost_delta, s.month),  # as admitted
            s.real_cost,
        ]
        keys = [*s.keys.ordered(), s.keys.reservation(s.request_id)]
        return bool(await self._run(_LUA_SETTLE, keys, args))

    async def read(self, keys: AdmissionKeys, *, now: float, month: str) -> list[int | None]:
        reply = await self._run(_LUA_READ, keys.ordered(), [repr(now), month])
        out: list[int | None] = [int(v) for v in reply]
        for spend in (2, 6):
            if out[spend] == -1:
                out[spend] = None
        return out
