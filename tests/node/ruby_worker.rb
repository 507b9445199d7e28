# frozen_string_literal: true

# The Ruby third of tests/test_node_interop_fleet.py: a worker loop doing what Resque 3.0's
# Worker does in Redis (register_worker, heartbeat!, reserve, working_on, done_working,
# unregister_worker), on resque_compat.rb's client, until SIGTERM.
#
#   REDIS_URL=... ruby ruby_worker.rb RESQUE_COMPAT_RB QUEUES
#
# Jobs: Record (reports to test:ran) and Hold (runs until test:release:<tag> exists), as
# tests/apps/worker_jobs.py reports them, with "runtime": "ruby". Prints "ready" when registered.

require ARGV.fetch(0)
require "socket"

client = ResqueCompat::Client.new
redis = client.redis
queues = ARGV.fetch(1).split(",")
id = "#{Socket.gethostname}:#{Process.pid}:#{queues.join(',')}"
stop = false
Signal.trap("TERM") { stop = true }

heartbeat = lambda do
  redis.hset(client.key("workers:heartbeat"), id, Time.at(redis.time.first).iso8601)
end

redis.pipelined do |piped|
  piped.sadd(client.key("workers"), [id])
  piped.set(client.key("worker:#{id}:started"), Time.now.to_s)
end
heartbeat.call
$stdout.puts(JSON.generate("event" => "ready", "id" => id))
$stdout.flush

report = lambda do |payload, queue, list|
  line = { "class" => payload["class"], "args" => payload["args"], "queue" => queue,
           "worker" => id, "pid" => Process.pid, "runtime" => "ruby" }
  redis.rpush(list, ResqueCompat.encode(line))
end

until stop
  heartbeat.call
  queue, raw = queues.lazy.map { |q| [q, redis.lpop(client.key("queue:#{q}"))] }.find { |_, r| r }
  if raw.nil?
    sleep 0.05
    next
  end
  payload = ResqueCompat.decode(raw)
  working = { "queue" => queue, "run_at" => Time.now.utc.iso8601, "payload" => payload }
  redis.set(client.key("worker:#{id}"), ResqueCompat.encode(working))
  if payload["class"] == "Hold"
    report.call(payload, queue, "test:started")
    sleep 0.02 until stop || redis.exists?("test:release:#{payload['args'][0]}")
  end
  report.call(payload, queue, "test:ran")
  redis.pipelined do |piped|
    piped.incr(client.key("stat:processed"))
    piped.incr(client.key("stat:processed:#{id}"))
    piped.del(client.key("worker:#{id}"))
  end
end

redis.pipelined do |piped|
  piped.srem(client.key("workers"), [id])
  piped.del(client.key("worker:#{id}"), client.key("worker:#{id}:started"))
  piped.hdel(client.key("workers:heartbeat"), id)
end
