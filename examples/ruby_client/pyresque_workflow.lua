-- pyresque_workflow.lua: results, dependencies and batches, for Python and Ruby alike.
--
-- One script, several operations (ARGV[1]). The Python client and worker
-- (pyresqueworker/protocol/workflow.py) and the Ruby module (pyresque_tracking.rb) both send
-- this file as it is, so the two languages cannot drift apart. Layout: docs/workflows.md.
--
-- ARGV[1] op, ARGV[2] namespace ("resque:"), ARGV[3] now (epoch seconds), then per op:
--   finish   id, outcome (succeeded|failed), data (result JSON or failure JSON),
--            result ttl (0: keep no result), keep ttl (finished records and batches)
--   retrying id
--   enqueue  keep ttl, pending ttl, then one job: id, queue, item, class, batch, deps (JSON
--            list of ids), on dependency failure (cancel|run), at (delayed: the epoch, or "")
--   batch    keep ttl, pending ttl, batch id, parent batch id or "", callback queue,
--            on_success item or "", on_complete item or "", description, job count,
--            then the jobs, each as for enqueue (8 values; "delayed" jobs are pushed by the caller)
-- KEYS[1] is any key of the namespace (it routes the call in a Redis Cluster).
--
-- Every transition is idempotent: a job finished twice (a worker killed after its job ran,
-- the job run again) counts once, so each callback is enqueued exactly once.

local op, ns, now = ARGV[1], ARGV[2], ARGV[3]
local own = ns .. 'pyresque:'
local FINAL = {succeeded = true, failed = true, canceled = true}

local function record(id) return own .. 'job:' .. id end

local function push(queue, item)
  redis.call('SADD', ns .. 'queues', queue)
  redis.call('RPUSH', ns .. 'queue:' .. queue, item)
end

-- Wake whoever waits for this job's end (JobRef.result blocks on this list).
local function notify(id, ttl)
  local done = own .. 'done:' .. id
  redis.call('DEL', done)
  redis.call('RPUSH', done, '1')
  redis.call('EXPIRE', done, ttl)
end

-- Batch bid has no member pending: enqueue its callbacks, once. Returns what completing it
-- means for its parent batch ({parent, member, outcome}), or nil.
local function complete(bid, keep)
  local bkey = own .. 'batch:' .. bid
  if redis.call('HSETNX', bkey, 'completed_at', now) == 0 then return nil end
  local b = redis.call('HMGET', bkey, 'failed', 'on_success', 'on_complete', 'queue', 'parent')
  local failed = tonumber(b[1]) or 0
  if failed == 0 and b[2] and b[2] ~= '' then push(b[4], b[2]) end
  if b[3] and b[3] ~= '' then push(b[4], b[3]) end
  redis.call('EXPIRE', bkey, keep)
  redis.call('EXPIRE', bkey .. ':jobs', keep)
  if b[5] and b[5] ~= '' then
    return {b[5], 'batch:' .. bid, failed == 0 and 'succeeded' or 'failed'}
  end
  return nil
end

-- A member (a job id, or "batch:<id>" for a child batch) of batch bid ended; returns what
-- that means for the enclosing batch when bid completed with it, else nil.
local function member_done(bid, member, outcome, keep)
  local bkey = own .. 'batch:' .. bid
  local jobs = bkey .. ':jobs'
  if redis.call('HGET', jobs, member) ~= 'pending' then return nil end
  redis.call('HSET', jobs, member, outcome)
  local pending = redis.call('HINCRBY', bkey, 'pending', -1)
  redis.call('HINCRBY', bkey, outcome == 'succeeded' and 'succeeded' or 'failed', 1)
  if pending > 0 then return nil end
  return complete(bid, keep)
end

-- Walk a completion up through the enclosing batches.
local function bubble(up, keep)
  while up do up = member_done(up[1], up[2], up[3], keep) end
end

-- A job reached a final state for the first time: release or cancel its dependents, and
-- count it in its batch (and each enclosing batch that completes with it).
local function settle(first_id, first_outcome, keep)
  local stack = {{first_id, first_outcome}}
  while #stack > 0 do
    local top = table.remove(stack)
    local id, outcome = top[1], top[2]
    local dkey = own .. 'dependents:' .. id
    for _, child in ipairs(redis.call('SMEMBERS', dkey)) do
      local crec = record(child)
      local c = redis.call('HMGET', crec, 'state', 'on_dependency_failure')
      if c[1] == 'waiting' then
        if outcome == 'succeeded' or c[2] == 'run' then
          if redis.call('HINCRBY', crec, 'waiting', -1) <= 0 then
            local q = redis.call('HMGET', crec, 'queue', 'item')
            push(q[1], q[2])
            redis.call('HSET', crec, 'state', 'queued')
            redis.call('HDEL', crec, 'item')
          end
        else
          redis.call('HSET', crec, 'state', 'canceled', 'finished_at', now,
                     'canceled_by', id)
          redis.call('HDEL', crec, 'item')
          redis.call('EXPIRE', crec, keep)
          notify(child, keep)
          table.insert(stack, {child, 'canceled'})
        end
      end
    end
    redis.call('DEL', dkey)
    local bid = redis.call('HGET', record(id), 'batch')
    if bid and bid ~= '' then bubble({bid, id, outcome}, keep) end
  end
end

-- The first dependency of job j that nothing knows of (no record, and not enqueued in the
-- same call: ``known``), or nil. Checked before anything is written.
local function unknown_dependency(j, known)
  for _, dep in ipairs(cjson.decode(j[6])) do
    if not known[dep] and redis.call('EXISTS', record(dep)) == 0 then return dep end
  end
  return nil
end

local function unknown_error(dep)
  return redis.error_reply('ERR unknown dependency ' .. dep ..
    ': it was enqueued without tracking, or its record expired')
end

-- Write one job's record and queue it (or hold it for its dependencies). Returns its state.
-- j: id, queue, item, class, batch, deps JSON, on dependency failure, at.
local function enqueue(j, keep, pending_ttl)
  local id, queue, item, class, batch, deps, policy, at =
    j[1], j[2], j[3], j[4], j[5], j[6], j[7], j[8]
  local rec = record(id)
  redis.call('HSET', rec, 'state', 'queued', 'class', class, 'queue', queue,
             'enqueued_at', now, 'batch', batch, 'on_dependency_failure', policy)
  if at ~= '' then redis.call('HSET', rec, 'state', 'scheduled', 'at', at) end
  redis.call('EXPIRE', rec, pending_ttl)
  local waiting, canceled_by = 0, nil
  for _, dep in ipairs(cjson.decode(deps)) do
    local state = redis.call('HGET', record(dep), 'state')
    if state == 'succeeded' then
      -- nothing to wait for
    elseif FINAL[state] then
      if policy ~= 'run' then canceled_by = canceled_by or dep end
    else
      redis.call('SADD', own .. 'dependents:' .. dep, id)
      redis.call('EXPIRE', own .. 'dependents:' .. dep, pending_ttl)
      waiting = waiting + 1
    end
  end
  if canceled_by then
    redis.call('HSET', rec, 'state', 'canceled', 'finished_at', now, 'canceled_by', canceled_by)
    redis.call('EXPIRE', rec, keep)
    notify(id, keep)
    return 'canceled'
  end
  if waiting > 0 then
    redis.call('HSET', rec, 'state', 'waiting', 'waiting', waiting, 'item', item)
    return 'waiting'
  end
  if at == '' then push(queue, item) end
  return at == '' and 'queued' or 'scheduled'
end

if op == 'finish' then
  local id, outcome, data = ARGV[4], ARGV[5], ARGV[6]
  local result_ttl, keep = tonumber(ARGV[7]), tonumber(ARGV[8])
  local rec = record(id)
  local state = redis.call('HGET', rec, 'state')
  if state == 'succeeded' or state == 'canceled' then return 0 end
  local first = state ~= 'failed'  -- (failed, then run again from the failed list)
  redis.call('HSET', rec, 'state', outcome, 'finished_at', now)
  local ttl = keep
  if outcome == 'succeeded' then
    if result_ttl > 0 then
      redis.call('HSET', rec, 'result', data)
      ttl = result_ttl
    end
    redis.call('HDEL', rec, 'failure')
  else
    redis.call('HSET', rec, 'failure', data)
  end
  redis.call('EXPIRE', rec, ttl)
  notify(id, ttl)
  if first then settle(id, outcome, keep) end
  return 1
elseif op == 'retrying' then
  local rec = record(ARGV[4])
  local state = redis.call('HGET', rec, 'state')
  if state and not FINAL[state] then redis.call('HSET', rec, 'state', 'retrying') end
  return 1
elseif op == 'enqueue' then
  local keep, pending_ttl = tonumber(ARGV[4]), tonumber(ARGV[5])
  local j = {ARGV[6], ARGV[7], ARGV[8], ARGV[9], ARGV[10], ARGV[11], ARGV[12], ARGV[13]}
  local unknown = unknown_dependency(j, {})
  if unknown then return unknown_error(unknown) end
  return enqueue(j, keep, pending_ttl)
elseif op == 'batch' then
  local keep, pending_ttl = tonumber(ARGV[4]), tonumber(ARGV[5])
  local bid, parent, queue = ARGV[6], ARGV[7], ARGV[8]
  local on_success, on_complete, description = ARGV[9], ARGV[10], ARGV[11]
  local count = tonumber(ARGV[12])
  local bkey = own .. 'batch:' .. bid
  local jobs = bkey .. ':jobs'
  if redis.call('EXISTS', bkey) == 1 then
    return redis.error_reply('ERR batch ' .. bid .. ' exists already')
  end
  local all, known = {}, {}
  for i = 0, count - 1 do
    local j = {}
    for k = 1, 8 do j[k] = ARGV[12 + i * 8 + k] end
    local unknown = unknown_dependency(j, known)
    if unknown then return unknown_error(unknown) end
    known[j[1]] = true
    all[#all + 1] = j
  end
  redis.call('HSET', bkey, 'total', count, 'pending', count, 'succeeded', 0, 'failed', 0,
             'created_at', now, 'parent', parent, 'queue', queue, 'on_success', on_success,
             'on_complete', on_complete, 'description', description)
  redis.call('ZADD', own .. 'batches', now, bid)
  redis.call('EXPIRE', bkey, pending_ttl)
  if parent ~= '' then
    -- The child counts as one more member of its parent, until it completes.
    local pkey = own .. 'batch:' .. parent
    if redis.call('HSETNX', pkey .. ':jobs', 'batch:' .. bid, 'pending') == 1 then
      redis.call('HINCRBY', pkey, 'total', 1)
      redis.call('HINCRBY', pkey, 'pending', 1)
    end
  end
  local ended = {}
  for _, j in ipairs(all) do
    redis.call('HSET', jobs, j[1], 'pending')
    if enqueue(j, keep, pending_ttl) == 'canceled' then ended[#ended + 1] = j[1] end
  end
  redis.call('EXPIRE', jobs, pending_ttl)
  for _, id in ipairs(ended) do settle(id, 'canceled', keep) end
  if count == 0 then bubble(complete(bid, keep), keep) end  -- empty: complete at once
  return 1
end
return redis.error_reply('ERR unknown workflow operation ' .. tostring(op))
