#!/usr/bin/env ruby
# frozen_string_literal: true

# resque_compat.rb: Resque's Redis protocol, re-implemented from the spec with only the `redis`
# gem, so Ruby-side behaviour can be checked where the `resque` gem is not installed.
#
#   REDIS_URL=redis://127.0.0.1:6379/0 RESQUE_NAMESPACE=resque ruby resque_compat.rb COMMAND ...
#
# Writing commands do what the named Resque 3.0 method does. The check-* commands read Redis as
# Resque and resque-web do; they print one JSON line per item and exit 1 (message on stderr) on
# anything Ruby would choke on. Run it without arguments for the command list. It can also be
# required as a library (`ruby -r ./resque_compat.rb -e ...`): see ResqueCompat::Client.

require "json"
begin
  require "oj"
rescue LoadError
  nil # the json gem then (see encode)
end
require "time"
require "date"
require "securerandom"
require "redis"

module ResqueCompat
  # Data that Ruby Resque, resque-web or ActiveJob could not use.
  class Invalid < StandardError; end

  JOB_WRAPPER = "ActiveJob::QueueAdapters::ResqueAdapter::JobWrapper"
  FAILURE_KEYS = %w[failed_at payload exception error backtrace worker queue].freeze
  WORKER_JOB_KEYS = %w[queue run_at payload].freeze
  HEARTBEAT_FORMAT = /\A\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d\z/.freeze
  STARTED_FORMAT = /\A\d{4}-\d\d-\d\d \d\d:\d\d:\d\d [+-]\d{4}\z/.freeze
  FAILED_AT_FORMAT = %r{\A\d{4}/\d\d/\d\d \d\d:\d\d:\d\d \S+\z}.freeze
  AJ_MARKERS = %w[_aj_symbol_keys _aj_ruby2_keywords _aj_hash_with_indifferent_access].freeze
  AJ_RESERVED = (AJ_MARKERS + %w[_aj_globalid _aj_serialized]).freeze
  AJ_SERIALIZERS = %w[Symbol Time DateTime Date TimeWithZone Duration BigDecimal Range Module]
                   .map { |name| "ActiveJob::Serializers::#{name}Serializer" }.freeze

  module_function

  # Resque.encode / Resque.decode as MultiJson does them: on Oj when it is installed (what
  # most Rails apps load), else on the json gem. The two differ only in -0.0 (Oj: 0.0).
  def encode(object)
    defined?(Oj) ? Oj.dump(object, mode: :compat) : JSON.generate(object)
  end

  def decode(text)
    JSON.parse(text, create_additions: false)
  end

  def need(condition, message)
    raise Invalid, message unless condition
  end

  def string?(value)
    value.is_a?(String) && !value.empty?
  end

  # Worker.find(id, skip_exists: true): split(':', 3), queues split(','), Worker.new(*queues).
  # prune_dead_workers splits without a limit, so a ':' in a queue name breaks it.
  def parse_worker_id(id)
    host, pid, queues_raw = id.split(":", 3)
    need(id.split(":").size == 3, "id #{id.inspect} is not host:pid:queues (no ':' in queues)")
    queues = queues_raw.split(",")
    need(!queues.empty?, "id #{id.inspect} has no queues (Worker.new raises NoQueueError)")
    need(pid.match?(/\A\d/), "id #{id.inspect}: Ruby reads pid #{pid.inspect} as 0")
    { "host" => host, "pid" => pid.to_i, "queues" => queues }
  end

  # A payload as Job#perform and resque-web use it: a class name and an Array args (or nil).
  def check_payload(payload, what)
    need(payload.is_a?(Hash), "#{what} is not a JSON object")
    need(string?(payload["class"]), "#{what} class #{payload['class'].inspect} is not a name")
    need(payload["args"].nil? || payload["args"].is_a?(Array), "#{what} args is not an Array")
  end

  # Time.iso8601 / Date.iso8601 (ActiveJob's values, run_at), naming the field when it fails.
  def iso8601(text, what, type = Time)
    type.iso8601(text.to_s)
  rescue ArgumentError
    raise Invalid, "#{what} #{text.inspect} is not ISO 8601"
  end

  # failed_at / retried_at, as resque-web reads them (DateTime.parse; Resque 3.0 adds a zone).
  def failure_time(text, what)
    need(text.is_a?(String) && FAILED_AT_FORMAT.match?(text),
         "#{what} #{text.inspect} is not \"%Y/%m/%d %H:%M:%S %Z\"")
    DateTime.parse(text).to_time.to_i
  end

  # ActiveJob::Arguments.serialize for plain Ruby values (activejob/lib/active_job/arguments.rb).
  def aj_serialize(arg)
    case arg
    when nil, true, false, Integer, Float, String then arg
    when Symbol then aj_object("Symbol", arg.to_s)
    when DateTime then aj_object("DateTime", arg.iso8601(9)) # before Date: DateTime < Date
    when Time then aj_object("Time", arg.iso8601(9))
    when Date then aj_object("Date", arg.iso8601)
    when Array then arg.map { |item| aj_serialize(item) }
    when Hash
      marker = Hash.ruby2_keywords_hash?(arg) ? "_aj_ruby2_keywords" : "_aj_symbol_keys"
      result = arg.each_with_object({}) do |(key, value), out|
        need(key.is_a?(String) || key.is_a?(Symbol), "hash key #{key.inspect} is not a String")
        need(!AJ_RESERVED.include?(key.to_s), "#{key} is a reserved ActiveJob key")
        out[key.to_s] = aj_serialize(value)
      end
      result.merge(marker => arg.each_key.grep(Symbol).map(&:to_s))
    else raise Invalid, "ActiveJob cannot serialize a #{arg.class}"
    end
  end

  def aj_object(kind, value)
    { "_aj_serialized" => "ActiveJob::Serializers::#{kind}Serializer", "value" => value }
  end

  # What ActiveJob::Arguments.deserialize needs to accept `arg`, checked strictly enough that a
  # Python decoder must read it the same way (keywords only on the last argument).
  def check_aj_argument(arg, path, last: false)
    case arg
    when nil, true, false, Integer, Float, String then nil
    when Array then arg.each_with_index { |item, i| check_aj_argument(item, "#{path}[#{i}]") }
    when Hash
      if arg.key?("_aj_globalid")
        need(arg.size == 1 && arg["_aj_globalid"].is_a?(String), "#{path}: bad GlobalID hash")
      elsif arg.key?("_aj_serialized")
        kind = arg["_aj_serialized"]
        need(AJ_SERIALIZERS.include?(kind), "#{path}: unknown serializer #{kind.inspect}")
        case kind
        when /::(Symbol|BigDecimal|Module)Serializer\z/
          need(arg["value"].is_a?(String), "#{path}: value is not a String")
        when /::(Time|DateTime|TimeWithZone)Serializer\z/ then iso8601(arg["value"], "#{path}.value")
        when /::DateSerializer\z/ then iso8601(arg["value"], "#{path}.value", Date)
        end
      else
        markers = arg.keys & AJ_MARKERS
        need(markers.size == 1, "#{path}: a Hash needs one of _aj_symbol_keys/_aj_ruby2_keywords")
        marker = markers.first
        need(last || marker != "_aj_ruby2_keywords", "#{path}: keywords not on the last argument")
        list = arg[marker]
        need(marker == AJ_MARKERS.last ? list == true : list.is_a?(Array) && list.all?(String),
             "#{path}: #{marker} is #{list.inspect}")
        arg.each { |key, value| check_aj_argument(value, "#{path}.#{key}") unless key == marker }
      end
    else raise Invalid, "#{path}: #{arg.inspect} is not JSON"
    end
  end

  # Resque's Redis operations under one namespace (Redis::Namespace writes "<ns>:<key>").
  class Client
    include ResqueCompat
    attr_reader :redis

    def initialize(redis: nil, namespace: nil)
      @redis = redis || Redis.new(url: ENV.fetch("REDIS_URL", "redis://127.0.0.1:6379/0"))
      @ns = (namespace || ENV.fetch("RESQUE_NAMESPACE", "resque")).chomp(":")
    end

    def key(name)
      "#{@ns}:#{name}"
    end

    # Job.create + Resque.push: validate, then one pipeline SADD queues, RPUSH queue:<q>.
    def push(queue, klass, args)
      need(!queue.nil?, "Jobs must be placed onto a queue. (NoQueueError)")
      need(!klass.to_s.empty?, "Jobs must be given a class. (NoClassError)")
      item = encode("class" => klass.to_s, "args" => args)
      @redis.pipelined do |piped|
        piped.sadd(key("queues"), [queue.to_s])
        piped.rpush(key("queue:#{queue}"), item)
      end
      item
    end

    # Job.destroy: LREM by the exact encoding; with no args, every item of that class.
    def destroy(queue, klass, args)
      list = key("queue:#{queue}")
      return @redis.lrem(list, 0, encode("class" => klass, "args" => args)) unless args.empty?

      @redis.lrange(list, 0, -1).sum do |item|
        decode(item)["class"] == klass ? @redis.lrem(list, 0, item).to_i : 0
      end
    end

    # Failure::Redis.requeue: stamp retried_at, LSET, then Job.create from class+args only.
    def requeue(index)
      raw = @redis.lindex(key("failed"), index)
      item = raw && decode(raw)
      need(item.is_a?(Hash), "no failure at index #{index}")
      item["retried_at"] = Time.now.strftime("%Y/%m/%d %H:%M:%S %Z")
      @redis.lset(key("failed"), index, encode(item))
      payload = item["payload"]
      need(payload.is_a?(Hash), "failure #{index} has no payload to requeue")
      args = [*payload["args"]] # the splat in Job.create(queue, class, *args)
      push(item["queue"], payload["class"], args)
      { "index" => index, "retried_at" => item["retried_at"], "queue" => item["queue"],
        "class" => payload["class"], "args" => args }
    end

    # Resque.info (lib/resque.rb): failed is LLEN failed; stat_failed is the counter.
    def info
      queues = @redis.smembers(key("queues"))
      workers = @redis.smembers(key("workers"))
      working = workers.empty? ? [] : @redis.mget(*workers.map { |id| key("worker:#{id}") })
      { "pending" => queues.sum { |q| @redis.llen(key("queue:#{q}")) },
        "processed" => @redis.get(key("stat:processed")).to_i, "queues" => queues.size,
        "workers" => workers.size, "working" => working.count { |v| v && !v.empty? },
        "failed" => @redis.llen(key("failed")), "stat_failed" => @redis.get(key("stat:failed")).to_i }
    end

    # Worker.all_workers_with_expired_heartbeats: Time.parse every heartbeat against Redis TIME,
    # then Worker.find(id, skip_exists: true) on each expired id.
    def expired_workers(prune_interval)
      now = Time.at(@redis.time.first)
      expired = @redis.hgetall(key("workers:heartbeat")).select do |id, beat|
        beat && (now - Time.parse(beat)).to_i > prune_interval
      rescue ArgumentError => e
        raise Invalid, "heartbeat of #{id} #{beat.inspect}: #{e.message} (breaks worker startup)"
      end
      expired.keys.each { |id| parse_worker_id(id) }
    end

    # ActiveJob's Resque adapter: enqueue_to(queue_name, JobWrapper, job.serialize), Rails 7.1+.
    def enqueue_active_job(queue, job_class, args, kwargs = {})
      arguments = args.dup
      arguments << Hash.ruby2_keywords_hash(kwargs.transform_keys(&:to_sym)) unless kwargs.empty?
      job_data = {
        "job_class" => job_class, "job_id" => SecureRandom.uuid, "provider_job_id" => nil,
        "queue_name" => queue, "priority" => nil, "arguments" => aj_serialize(arguments),
        "executions" => 0, "exception_executions" => {}, "locale" => "en", "timezone" => nil,
        "enqueued_at" => Time.now.utc.iso8601(9), "scheduled_at" => nil
      }
      push(queue, JOB_WRAPPER, [job_data])
    end

    # Worker.find + Worker#started/#heartbeat/#job, plus the formats resque-web relies on.
    def check_worker(id)
      parsed = parse_worker_id(id)
      started = @redis.get(key("worker:#{id}:started"))
      need(STARTED_FORMAT.match?(started.to_s), "started #{started.inspect} is not Time#to_s")
      beat = @redis.hget(key("workers:heartbeat"), id)
      need(HEARTBEAT_FORMAT.match?(beat.to_s), "heartbeat #{beat.inspect} is not Time#iso8601")
      raw = @redis.get(key("worker:#{id}"))
      job = raw.nil? || raw.empty? ? nil : decode(raw)
      if job
        need(job.is_a?(Hash) && job.keys == WORKER_JOB_KEYS, "worker key is not #{WORKER_JOB_KEYS}")
        need(job["queue"].is_a?(String), "job queue #{job['queue'].inspect} is not a String")
        need(job["run_at"].to_s.end_with?("Z"), "run_at #{job['run_at'].inspect} is not UTC")
        # A payload that is not a JSON object is shown as a String (its bytes are kept elsewhere)
        check_payload(job["payload"], "job payload") unless job["payload"].is_a?(String)
      end
      { "id" => id, **parsed, "started" => started, "started_epoch" => Time.parse(started).to_i,
        "heartbeat" => beat, "heartbeat_epoch" => Time.parse(beat).to_i,
        "state" => job ? "working" : "idle", "job" => job,
        "run_at_epoch" => job && iso8601(job["run_at"], "run_at").to_i,
        "payload_json" => job && encode(job["payload"]) }
    end

    # One `failed` entry as Failure::Redis and resque-web's failed pages read it.
    def check_failure(raw, index)
      item = decode(raw)
      need(item.is_a?(Hash), "not a JSON object")
      want = item.key?("retried_at") ? FAILURE_KEYS + ["retried_at"] : FAILURE_KEYS
      need(item.keys == want, "keys #{item.keys} are not #{want}")
      %w[exception error worker queue].each do |name|
        need(item[name].is_a?(String), "#{name} #{item[name].inspect} is not a String")
      end
      item["worker"].split(":") # failed_job.erb does this
      trace = item["backtrace"]
      need(trace.is_a?(Array) && trace.all?(String), "backtrace is not an Array of String")
      # nil shows "nil"; an undecodable item is kept as its raw text (a String), and a
      # DecodeException entry records a payload whose very shape was the problem.
      undecodable = item["payload"].is_a?(String) ||
                    item["exception"] == "Resque::Helpers::DecodeException"
      check_payload(item["payload"], "payload") unless item["payload"].nil? || undecodable
      retried = item.key?("retried_at") ? failure_time(item["retried_at"], "retried_at") : nil
      item.merge("index" => index, "failed_at_epoch" => failure_time(item["failed_at"], "failed_at"),
                 "retried_at_epoch" => retried, "roundtrip" => encode(item) == raw)
    end

    # A JobWrapper item as the Resque adapter and ActiveJob::Base.execute need it.
    def check_active_job(raw, index, queue)
      item = decode(raw)
      need(item.is_a?(Hash) && item["class"] == JOB_WRAPPER, "class is not #{JOB_WRAPPER}")
      args = item["args"]
      need(args.is_a?(Array) && args.size == 1 && args[0].is_a?(Hash), "args is not [job_data]")
      data = args[0]
      %w[job_class job_id locale].each do |name|
        need(string?(data[name]), "#{name} #{data[name].inspect} is not a non-empty String")
      end
      need(data["queue_name"] == queue, "queue_name #{data['queue_name'].inspect} is not #{queue}")
      need(data["executions"].is_a?(Integer) && data["executions"].zero?, "executions is not 0")
      need(data["exception_executions"] == {}, "exception_executions is not {}")
      need(data["priority"].nil? || data["priority"].is_a?(Integer), "priority is not an Integer")
      need(data["timezone"].nil? || data["timezone"].is_a?(String), "timezone is not a String")
      iso8601(data["enqueued_at"], "enqueued_at")
      iso8601(data["scheduled_at"], "scheduled_at") unless data["scheduled_at"].nil?
      arguments = data["arguments"]
      need(arguments.is_a?(Array), "arguments is not an Array")
      arguments.each_with_index do |arg, i|
        check_aj_argument(arg, "arguments[#{i}]", last: i == arguments.size - 1)
      end
      { "index" => index, "job_data" => data, "roundtrip" => encode(item) == raw }
    end
  end

  # The command line. check-* commands report every bad item before failing.
  class CLI
    include ResqueCompat
    COMMANDS = {
      "enqueue" => "QUEUE CLASS ARGS_JSON", "dequeue" => "QUEUE CLASS ARGS_JSON",
      "requeue" => "INDEX", "stats" => "", "prune-check" => "PRUNE_INTERVAL",
      "active-job" => "QUEUE JOB_CLASS ARGS_JSON [KWARGS_JSON]", "check-workers" => "",
      "check-failures" => "", "check-active-job" => "QUEUE"
    }.freeze

    def initialize(client, out: $stdout)
      @client = client
      @out = out
    end

    # Returns the exit status: 0 ok, 1 invalid data or Redis error, 2 usage.
    def run(command, args)
      words = COMMANDS.fetch(command, "?").split
      unless COMMANDS.key?(command) && args.size.between?(words.count { |w| w[0] != "[" }, words.size)
        warn "usage (env REDIS_URL, RESQUE_NAMESPACE):"
        COMMANDS.each { |name, usage| warn "  ruby resque_compat.rb #{name} #{usage}".rstrip }
        return 2
      end
      dispatch(command, *args)
      0
    rescue Invalid, ArgumentError, JSON::ParserError, Redis::BaseError => e
      warn "resque_compat #{command}: #{e.message}"
      1
    end

    private

    def dispatch(command, first = nil, second = nil, third = nil, fourth = nil)
      redis = @client.redis
      case command
      when "enqueue" then @out.puts(@client.push(first, second, json(third, Array)))
      when "dequeue" then emit(@client.destroy(first, second, json(third, Array)))
      when "requeue" then emit(@client.requeue(Integer(first, 10)))
      when "stats" then emit(@client.info)
      when "prune-check" then emit(@client.expired_workers(Integer(first, 10)))
      when "active-job"
        kwargs = json(fourth || "{}", Hash)
        @out.puts(@client.enqueue_active_job(first, second, json(third, Array), kwargs))
      when "check-workers"
        check_each(redis.smembers(@client.key("workers")).sort) { |id, _| @client.check_worker(id) }
      when "check-failures"
        check_each(redis.lrange(@client.key("failed"), 0, -1)) { |raw, i| @client.check_failure(raw, i) }
      when "check-active-job"
        items = redis.lrange(@client.key("queue:#{first}"), 0, -1)
        check_each(items) { |raw, i| @client.check_active_job(raw, i, first) }
      end
    end

    def emit(object)
      @out.puts(encode(object))
    end

    def json(text, type)
      value = decode(text)
      need(value.is_a?(type), "#{text} is not a JSON #{type == Array ? 'array' : 'object'}")
      value
    end

    def check_each(items)
      errors = []
      items.each_with_index do |item, index|
        emit(yield(item, index))
      rescue StandardError => e # anything Ruby would raise on this item
        errors << "##{index} #{item.inspect[0, 300]}: #{e.class}: #{e.message}"
      end
      need(errors.empty?, "#{errors.size} bad item(s):\n  #{errors.join("\n  ")}")
    end
  end
end

if $PROGRAM_NAME == __FILE__
  $stdout.sync = true
  command, *args = ARGV
  exit ResqueCompat::CLI.new(ResqueCompat::Client.new).run(command, args)
end
