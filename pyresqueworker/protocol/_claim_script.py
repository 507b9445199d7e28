"""The Lua of the claim (see :mod:`pyresqueworker.worker._claim`, which sends it and reads
its reply):
kept apart because it is long and changes for its own reasons (Redis CPU per job)."""

__all__ = ["CLAIM_SCRIPT", "REQUEUE_SCRIPT"]

# The claim script's KEYS: the worker key, the queues in the order to try, then (only when
# flag 4 is "c") a key to delete with the completion. ARGV: 1 flags (finish mode "0"-"3"; "1"
# when this slot may hold a raw list; "p" pop or "a" adopt; "c" or "-"; "e" to renew the
# sequence key's expiry or "-"), 2 run_at, 3 call sequence, 4 namespace, then the queues'
# names as JSON strings, then the failure entry (finish modes 2 and 3) and the adopted item.
# Few arguments on purpose: each costs Redis time per call.
CLAIM_SCRIPT = r"""
-- UTF-8 validity at C speed (no per-byte Lua loop): replace every well-formed sequence (no
-- overlongs, no surrogates) with an ASCII letter, so removals cannot join neighbours, then
-- look for any byte still >= 0x80. Only small payloads get here (see BIG below). The table
-- is built only for a payload that is not plain ASCII (building it costs every call).
local function utf8_forms()
  return {
    '[\194-\223][\128-\191]',
    '\224[\160-\191][\128-\191]', '[\225-\236\238\239][\128-\191][\128-\191]',
    '\237[\128-\159][\128-\191]',
    '\240[\144-\191][\128-\191][\128-\191]', '[\241-\243][\128-\191][\128-\191][\128-\191]',
    '\244[\128-\143][\128-\191][\128-\191]',
  }
end
local function utf8_ok(s)
  -- ASCII only? string.byte pushes every byte from C and math.max scans them in C: several
  -- times faster than a Lua pattern (up to 4 KB: the stack limit; larger items rarely get here)
  if #s <= 4096 then
    if #s == 0 or math.max(string.byte(s, 1, -1)) < 128 then return true end
  elseif not string.find(s, '[\128-\255]') then
    return true
  end
  for _, form in ipairs(utf8_forms()) do s = string.gsub(s, form, 'a') end
  return not string.find(s, '[\128-\255]')
end

local flags, ns = ARGV[1], ARGV[4]
local finish, mode = string.sub(flags, 1, 1), string.sub(flags, 3, 3)
local has_cleanup = string.sub(flags, 4, 4) == 'c'
local wkey = KEYS[1]
local wid = string.sub(wkey, #ns + 8)  -- the worker key is <ns>worker:<id>
local n = #KEYS - 1 - (has_cleanup and 1 or 0)
local NA = 4
local extra = NA + n + 1  -- the optional arguments after the queue names
local entry = ''
if finish == '2' or finish == '3' then entry = ARGV[extra]; extra = extra + 1 end
local BIG = 4096
local own = ns .. 'pyresque:'
local rawkey = own .. 'raw:' .. wid
-- Remember which call ran last, so a caller whose reply was lost can tell what happened
-- (for a day: a worker killed and then pruned by Ruby, which knows nothing of this key,
-- must not leave it behind for ever).
-- (The expiry is renewed when flag 5 is 'e', about hourly: KEEPTTL is the cheaper SET.)
if string.sub(flags, 5, 5) == 'e' then
  redis.call('SET', own .. 'seq:' .. wid, ARGV[3], 'EX', 86400)
else
  redis.call('SET', own .. 'seq:' .. wid, ARGV[3], 'KEEPTTL')
end
-- Paused queues, pausing every worker and concurrency caps are opt-in: one EXISTS says
-- whether any is in use, so a deployment that uses none pays one cheap command for all three.
-- A claim with nothing to finish asks in the same EXISTS whether its worker key holds a job
-- (see below), so that rare case costs the common one nothing either.
local capskey, pausedkey = own .. 'concurrency', own .. 'paused-queues'
local pauseallkey = ns .. 'pause-all-workers'
local special = redis.call('EXISTS', capskey, pausedkey, pauseallkey,
                           finish == '0' and wkey or capskey) > 0
local has_caps = special and redis.call('EXISTS', capskey) == 1
local check_paused = special and redis.call('EXISTS', pausedkey) == 1
if finish ~= '0' and redis.call('DEL', wkey) == 1 then
  if string.sub(flags, 2, 2) == '1' then redis.call('DEL', rawkey) end
  -- (Without caps no entry is written; one left from before caps were dropped is removed
  -- the first time this slot finishes a job once caps exist again.)
  if has_caps then redis.call('HDEL', own .. 'running-capped', wid) end
  if has_cleanup then redis.call('DEL', KEYS[#KEYS]) end
  if finish ~= '1' then redis.call('RPUSH', ns .. 'failed', entry) end
  if finish == '2' then
    redis.call('INCRBY', ns .. 'stat:failed', 1)
    redis.call('INCRBY', ns .. 'stat:failed:' .. wid, 1)
  end
  if finish ~= '3' then
    redis.call('INCRBY', ns .. 'stat:processed', 1)
    redis.call('INCRBY', ns .. 'stat:processed:' .. wid, 1)
  end
elseif finish == '0' and special and redis.call('EXISTS', wkey) == 1 then
  -- Nothing to finish, yet the worker key holds a job: its completion never reached this
  -- Redis (a retry written to a master that a failover then demoted). Overwriting the key
  -- would lose the job: it goes back to the front of its queue. A large item still being
  -- taken (the placeholder) is left to the caller, which resumes taking it.
  local held = redis.call('GET', wkey)
  local at = string.find(held, ',"payload":', 1, true)  -- (escaped in the queue's name)
  if at and string.sub(held, at) ~= ',"payload":"payload being checked"}' then
    local ok, head = pcall(cjson.decode, string.sub(held, 1, at - 1) .. '}')
    local job = string.sub(held, at + 11, -2)
    if string.sub(job, 1, 1) == '"' then  -- only a note: the job is in the raw list
      job = redis.call('LINDEX', rawkey, 0)
    end
    if ok and type(head) == 'table' and type(head.queue) == 'string' and job then
      redis.call('LPUSH', ns .. 'queue:' .. head.queue, job)
      redis.call('SADD', ns .. 'queues', head.queue)
      redis.call('DEL', wkey, rawkey)
      if has_caps then redis.call('HDEL', own .. 'running-capped', wid) end
    end
  end
end

if n == 0 then return {0} end

-- The class a queued item runs as: ActiveJob's job_class inside its wrapper, else "class".
-- Read from the head of the item only, so a huge payload costs nothing extra.
local function class_of(item)
  local head = string.sub(item, 1, 1024)
  local cls = string.match(head, '^%s*{%s*"class"%s*:%s*"([^"\\]+)"')
  if cls == 'ActiveJob::QueueAdapters::ResqueAdapter::JobWrapper' then
    cls = string.match(head, '"job_class"%s*:%s*"([^"\\]+)"') or cls
  end
  return cls
end

-- Per-class concurrency caps (max_concurrency=): count the capped jobs running now, dropping
-- entries whose worker key is gone (a recovered or pruned worker), then skip over queued
-- items of a class at its cap so they stay where they are.
local caps, running = nil, nil
if has_caps then
  caps, running = {}, {}
  local flat = redis.call('HGETALL', capskey)
  for i = 1, #flat, 2 do caps[flat[i]] = tonumber(flat[i + 1]) end
  flat = redis.call('HGETALL', own .. 'running-capped')
  for i = 1, #flat, 2 do
    if redis.call('EXISTS', ns .. 'worker:' .. flat[i]) == 1 then
      running[flat[i + 1]] = (running[flat[i + 1]] or 0) + 1
    else
      redis.call('HDEL', own .. 'running-capped', flat[i])
    end
  end
end
local function allowed(cls)
  local cap = cls and caps[cls]
  return not cap or (running[cls] or 0) < cap
end

-- A large head item must not enter Lua: turning it into a Lua string, checking it and
-- building the worker key from it costs milliseconds per megabyte while every other client
-- of this Redis waits. The queue's memory per item tells, without reading the item, whether
-- its head node is large (an item over 8 KB sits alone in its node). Such an item is left
-- where it is: the caller reads it, checks it and takes it in the transaction that writes
-- the worker key (see Claimer.take_held).
local function head_is_big(key, len)
  -- (pcall: a Redis-protocol server without MEMORY, such as the demo's, has no such cliff)
  local usage = redis.pcall('MEMORY', 'USAGE', key, 'SAMPLES', 1)
  return type(usage) == 'number' and usage > BIG * len
end

local SCAN = 16  -- how deep a queue is searched past capped jobs
local function take(key)
  if not caps then
    local len = redis.call('LLEN', key)
    if len == 0 then return nil end
    if head_is_big(key, len) then return true end
    return redis.call('LPOP', key)
  end
  local items = redis.call('LRANGE', key, 0, SCAN - 1)
  for j, candidate in ipairs(items) do
    if allowed(class_of(candidate)) then
      if j == 1 then return redis.call('LPOP', key) end
      local tombstone = 'pyresque-tombstone:' .. wid .. ':' .. ARGV[3]
      redis.call('LSET', key, j - 1, tombstone)
      redis.call('LREM', key, 1, tombstone)
      return candidate
    end
  end
  return nil
end

local item, qi
if mode == 'a' then
  item, qi = ARGV[extra], 1
else
  local pause = special and redis.call('GET', pauseallkey)
  if pause and string.match(string.lower(pause), '^%s*(.-)%s*$') == 'true' then
    return {-1}
  end
  for i = 1, n do
    local paused = check_paused
      and redis.call('SISMEMBER', pausedkey, cjson.decode(ARGV[NA + i])) == 1
    if not paused then
      item = take(KEYS[1 + i])
      if item then qi = i; break end
    end
  end
  if not item then return {0} end
end
local queue_json = ARGV[NA + qi]
local head = '{"queue":' .. queue_json .. ',"run_at":"' .. ARGV[2] .. '","payload":'
if item == true then
  -- Written first, so a worker killed before it took the item leaves a key that recovery
  -- understands (a job being taken, none held: the item is still queued, or in the raw list).
  redis.call('SET', wkey, head .. '"payload being checked"}')
  return {3, qi}
end

if caps then
  local cls = class_of(item)
  if cls and caps[cls] then redis.call('HSET', own .. 'running-capped', wid, cls) end
end

-- enqueue_unique: the job's uniqueness lock is released once a worker starts it. The key is
-- the payload's last field, so only the item's tail is read.
if string.find(item, '"unique_key":"', -80, true) then
  local unique = string.match(string.sub(item, -80), '"unique_key":"(%x+)"}%s*$')
  if unique then redis.call('DEL', own .. 'unique:' .. unique) end
end

-- A worker key must stay valid JSON for Ruby (prune and resque-web decode it): a payload that
-- is not a UTF-8 JSON object is kept byte for byte in this slot's raw list instead, and the
-- worker key says what it is.
-- (A large item can still get here when the memory estimate missed it, or with caps: over
-- 1 MB it is not checked in Lua but kept in the raw list, and Python checks it.)
local MAX = 1048576
local valid = #item <= MAX and (string.find(item, '^%s*{') ~= nil) and utf8_ok(item)
  and pcall(cjson.decode, item)
local payload = item
if not valid then
  redis.call('DEL', rawkey)
  redis.call('RPUSH', rawkey, item)
  if #item > MAX then
    payload = '"payload of ' .. #item .. ' bytes (not shown)"'
  else
    payload = '"invalid payload (' .. #item .. ' bytes)"'
  end
end
redis.call('SET', wkey, head .. payload .. '}')
return {1, qi, item, valid and 1 or 0}
"""

# Gives a running job back to the front of its queue, if this slot still holds it.
REQUEUE_SCRIPT = r"""
if redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('DEL', KEYS[1], KEYS[3])
  redis.call('LPUSH', KEYS[2], ARGV[1])
  return 1
end
return 0
"""
