"""Job state transitions, as Lua scripts both the workers and the API's sweeper run.

A job is `queued` -> `running` -> `done` | `failed` (later `reviewed`). Execution is
at-least-once, so the final write is a compare-and-set: the first result wins, later
ones are counted as duplicates and dropped. `PENDING_KEY` indexes unfinished jobs by
the time they were (re)queued, so lost work can be found without scanning keys.

Retention: a job hash lives `DIGITS_RESULT_TTL_S` while it is unfinished; FINISH then sets its
expiry to the job's `keep` field (seconds), so a sync answer already delivered in a 200 is
kept only `DIGITS_SYNC_RESULT_TTL_S` while bulk jobs keep `DIGITS_RESULT_TTL_S` (README,
"Redis memory").

Every script here completes work already accepted, so it is flagged `allow-oom`: with Redis
at `maxmemory` (noeviction) new submissions are refused (503) but queued and running jobs
still finish. Finishing is about memory-neutral: it deletes the job's input images (784
bytes each) and writes its answer in their place.
"""

from __future__ import annotations

from common.contract import KEY_PREFIX, QUEUED_IMAGES_KEY

PENDING_KEY = f"{KEY_PREFIX}:pending"
"""Sorted set: job id -> unix time it was last queued; removed when the job finishes."""

ALLOW_OOM = "#!lua flags=allow-oom\n"
"""Script shebang (Redis >= 7): the script may write while Redis is over `maxmemory`."""

UNQUEUE = f"""
-- A job enters (sign 1) or leaves (sign -1) `queued`: its images wait on its queue, or not.
local function count_queued(key, sign)
  local queue, n = unpack(redis.call('HMGET', key, 'queue', 'n'))
  if queue and n then redis.call('HINCRBY', '{QUEUED_IMAGES_KEY}', queue, sign * tonumber(n)) end
end
local function unqueue(key) count_queued(key, -1) end
local function enqueue(key) count_queued(key, 1) end
"""
"""Lua helpers every script that moves a job into or out of `queued` uses, so
`QUEUED_IMAGES_KEY` follows the statuses exactly."""

MARK_RUNNING = (
    ALLOW_OOM
    + UNQUEUE
    + """
for i, key in ipairs(KEYS) do
  if redis.call('HGET', key, 'status') == 'queued' then
    redis.call('HSET', key, 'status', 'running', 'started_at', ARGV[1], 'started_by', ARGV[2])
    unqueue(key)
  end
end
return #KEYS
"""
)

FINISH = (
    ALLOW_OOM
    + UNQUEUE
    + """
-- KEYS: job keys. ARGV: channel ('' for none), now, pending key, then (id, status, body) per job.
local channel, now, pending = ARGV[1], ARGV[2], ARGV[3]
local published, written, duplicates = {}, 0, 0
for i, key in ipairs(KEYS) do
  local id, status, body = ARGV[3 * i + 1], ARGV[3 * i + 2], ARGV[3 * i + 3]
  local current = redis.call('HGET', key, 'status')
  if current == 'queued' or current == 'running' then
    if current == 'queued' then unqueue(key) end
    redis.call('HSET', key, 'status', status, 'body', body, 'finished_at', now)
    redis.call('HDEL', key, 'input')
    redis.call('ZREM', pending, id)
    local keep = tonumber(redis.call('HGET', key, 'keep'))
    if keep then redis.call('EXPIRE', key, keep) end
    written = written + 1
    published[#published + 1] = body
  else
    if current then duplicates = duplicates + 1 end
    redis.call('ZREM', pending, id)
  end
end
if channel ~= '' and #published > 0 then
  redis.call('PUBLISH', channel, '[' .. table.concat(published, ',') .. ']')
end
return {written, duplicates}
"""
)

REQUEUE = (
    ALLOW_OOM
    + UNQUEUE
    + """
-- KEYS: job key, pending set. ARGV: the status it was judged lost in, attempts, now, job id.
-- The sweeper's compare-and-set: a job that moved on since (started, answered) is left be.
if redis.call('HGET', KEYS[1], 'status') ~= ARGV[1] then return 0 end
if ARGV[1] ~= 'queued' then enqueue(KEYS[1]) end
redis.call('HSET', KEYS[1], 'status', 'queued', 'attempts', ARGV[2])
redis.call('HDEL', KEYS[1], 'held_by', 'held_at', 'held_tag')
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[4])
return 1
"""
)

KEEP = (
    ALLOW_OOM
    + """
-- KEYS: one job key. ARGV: seconds to keep it once answered. Returns status, kind, body.
-- The API runs it when a sync request answers 202: the client will poll, so the answer
-- must outlive DIGITS_SYNC_RESULT_TTL_S. A job already final gets the new expiry at once.
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return {false, false, false} end
redis.call('HSET', KEYS[1], 'keep', ARGV[1])
if status ~= 'queued' and status ~= 'running' then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
return redis.call('HMGET', KEYS[1], 'status', 'kind', 'body')
"""
)


def finish_args(channel: str, now: float, outcomes: list[tuple[str, str, bytes]]) -> list:
    """ARGV for FINISH from (job id, status, body json) triples."""
    args: list = [channel, f"{now:.6f}", PENDING_KEY]
    for job_id, status, body in outcomes:
        args += [job_id, status, body]
    return args
