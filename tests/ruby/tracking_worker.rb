# frozen_string_literal: true

# A Ruby Resque worker, small, for tests/test_workflow_ruby.py: Resque 3.0's Job (lib/resque/
# job.rb beside this file) run the way Worker#perform runs it, on jobs popped with LPOP, with
# failures pushed as Failure::Redis writes them, and job classes that extend PyResque::Tracking
# (examples/ruby_client/pyresque_tracking.rb, loaded first: it wraps Resque::Job when the first
# class extends it).
#
#   REDIS_URL=redis://127.0.0.1:6379/0 ruby tracking_worker.rb QUEUE[,QUEUE...]
#
# RESQUE_NAMESPACE: the namespace (default resque). TRACKING_REDIS=explicit: no Resque.redis,
# the module is given PyResque::Tracking.redis and .namespace instead. PYRESQUE_TRACKING: the
# module's path. Every job it ran is one JSON line on test:ruby:ran ({"class","args","queue",
# "worker","raw","reencoded","outcome"}); hooks of RubyHooked go to test:ruby:hooks. It prints
# "ready <worker id>" once it polls, and stops on TERM or INT.

require "json"
require "oj"
require "redis"
require "socket"

require ENV.fetch("PYRESQUE_TRACKING",
                  File.expand_path("../../examples/ruby_client/pyresque_tracking.rb", __dir__))
require_relative "lib/resque/job"

NAMESPACE = ENV.fetch("RESQUE_NAMESPACE", "resque").chomp(":")
RAW = Redis.new(url: ENV.fetch("REDIS_URL"))
EXPLICIT = ENV["TRACKING_REDIS"] == "explicit"

module Resque
  module_function

  # MultiJson on Oj, as in most Rails apps (what the golden files were written with).
  def encode(object) = Oj.dump(object, mode: :compat)
  def decode(text) = JSON.parse(text, create_additions: false)
  def key(name) = "#{NAMESPACE}:#{name}"

  # Resque.redis is a Resque::DataStore around a Redis::Namespace around the Redis client:
  # the module must find the client and the namespace through both, and never send a command
  # through the namespace wrapper (which would prefix the script's keys once more).
  class Namespace
    attr_reader :namespace, :redis

    def initialize(namespace, redis)
      @namespace = namespace
      @redis = redis
    end

    def method_missing(name, *_args)
      raise NoMethodError, "the test's Redis::Namespace stand-in got #{name}: a namespaced command"
    end

    def respond_to_missing?(_name, _include_all = false) = false
  end

  class DataStore
    def initialize(redis) = @redis = redis
    def method_missing(sym, *args, &block) = @redis.send(sym, *args, &block)
    def respond_to_missing?(method, include_all = false) = @redis.respond_to?(method, include_all)
  end

  STORE = DataStore.new(Namespace.new(NAMESPACE, RAW))
  define_singleton_method(:redis) { STORE } unless EXPLICIT

  # Failure::Redis#save (Resque 3.0): the whole payload, the backtrace cut before job.rb.
  module Failure
    module_function

    def create(payload:, exception:, worker:, queue:)
      trace = Array(exception.backtrace)
      index = trace.index { |item| item.include?("/lib/resque/job.rb") }
      RAW.rpush(Resque.key("failed"), Resque.encode(
        failed_at: Time.now.strftime("%Y/%m/%d %H:%M:%S %Z"), payload: payload,
        exception: exception.class.to_s, error: exception.to_s,
        backtrace: trace.first(index.to_i), worker: worker.to_s, queue: queue
      ))
    end
  end
end

if EXPLICIT
  PyResque::Tracking.redis = Redis.new(url: ENV.fetch("REDIS_URL"))
  PyResque::Tracking.namespace = NAMESPACE
end

# -- the jobs ---------------------------------------------------------------------------------

module Jobs
  class Error < StandardError; end
end

class RubySquare
  extend PyResque::Tracking

  def self.perform(number)
    number * number
  end
end

class RubyEcho
  extend PyResque::Tracking

  def self.perform(*args)
    { "args" => args, "from" => "ruby", "float" => 2.5, "none" => nil }
  end
end

class RubyBoom
  extend PyResque::Tracking

  def self.perform(message)
    explode(message)
  end

  def self.explode(message)
    raise Jobs::Error, message
  end
end

# The class of the golden payloads (tests/golden/enqueue-oj.json): fails with any arguments,
# so Resque's failure entry shows the payload as Ruby decoded and re-encoded it.
module Golden
  class Job
    extend PyResque::Tracking

    def self.perform(*args)
      raise Jobs::Error, "golden #{args.size}"
    end
  end
end

# Does not extend the module: nothing records its end.
class RubyPlain
  def self.perform(*args)
    args
  end
end

# Hooks around ours, each noting its name; mode "boom" fails in perform, "late" fails in an
# after_perform hook sorted after the module's (the job then failed, as Resque sees it).
class RubyHooked
  extend PyResque::Tracking

  def self.note(name) = RAW.rpush("test:ruby:hooks", name)
  def self.before_perform_a(*_args) = note("before_perform_a")
  def self.after_perform_a(*_args) = note("after_perform_a")
  def self.on_failure_a(exception, *_args) = note("on_failure_a:#{exception.message}")

  def self.around_perform_a(*_args)
    note("around_perform_a:in")
    value = yield
    note("around_perform_a:out")
    value
  end

  def self.after_perform_zz(mode)
    note("after_perform_zz")
    raise Jobs::Error, "late" if mode == "late"
  end

  def self.perform(mode)
    note("perform")
    raise Jobs::Error, "boom" if mode == "boom"

    "hooked #{mode}"
  end
end

# A before_perform hook stops it (Resque::Job::DontPerform): not run, not failed.
class RubySkip
  extend PyResque::Tracking

  def self.before_perform_stop(*_args)
    raise Resque::Job::DontPerform
  end

  def self.perform(*_args)
    raise "never"
  end
end

# Fails, but resque-retry would try it again.
class RubyRetry
  extend PyResque::Tracking

  def self.retry_criteria_valid?(_exception) = true

  def self.perform(*_args)
    raise Jobs::Error, "again"
  end
end

# The worker fails it without running it, as Resque's parent does for a child killed by a
# signal (Resque::DirtyExit through Job#fail, outside Job#perform).
class RubyKilled
  extend PyResque::Tracking

  def self.perform(*_args)
    raise "never"
  end
end

# -- the worker -------------------------------------------------------------------------------

class Worker
  def initialize(queues)
    @queues = queues
    @id = "#{Socket.gethostname}:#{Process.pid}:#{queues.join(',')}"
    @stop = false
  end

  def to_s = @id

  def work
    %w[TERM INT].each { |signal| trap(signal) { @stop = true } }
    puts "ready #{@id}"
    $stdout.flush
    until @stop
      raw, queue = reserve
      raw ? process(raw, queue) : sleep(0.05)
    end
  end

  private

  def reserve
    @queues.each do |queue|
      raw = RAW.lpop(Resque.key("queue:#{queue}"))
      return [raw, queue] if raw
    end
    nil
  end

  # Worker#work_one_job / #perform (FORK_PER_JOB=false): job.perform, job.fail on any error.
  def process(raw, queue)
    payload = Resque.decode(raw)
    job = Resque::Job.new(queue, payload)
    job.worker = self
    outcome = "succeeded"
    begin
      if payload["class"] == "RubyKilled"
        outcome = "failed"
        job.fail(Resque::DirtyExit.new("Child process received unhandled signal pid 1 SIGKILL"))
      else
        job.perform
      end
    rescue Object => e
      outcome = "failed"
      job.fail(e)
    end
    RAW.rpush("test:ruby:ran", Resque.encode(
      "class" => payload["class"], "args" => payload["args"], "queue" => queue, "worker" => @id,
      "raw" => raw, "reencoded" => Resque.encode(payload), "outcome" => outcome
    ))
  end
end

Worker.new(ARGV.fetch(0).split(",")).work
