# frozen_string_literal: true

# pyresque_tracking.rb: results, dependencies and batches of pyresqueworker, for Ruby jobs.
#
# Python can enqueue a *tracked* job for a Ruby worker (a result kept, a dependency, a batch
# member): its payload carries two extra top-level fields, which Resque ignores and keeps,
#
#   {"class":"Square","args":[3],"id":"5f0c...","pyresque":{"ttl":3600,"batch":"b8e1..."}}
#
# and Python waits for the job's record (<ns>pyresque:job:<id>) to say how it ended. A Ruby job
# class that extends this module writes that end, through Resque's own hooks:
#
#   require "resque"
#   require_relative "pyresque_tracking"   # or require "<site-packages>/pyresqueworker/ruby_client/pyresque_tracking"
#
#   class Square
#     extend PyResque::Tracking
#     @queue = :math
#
#     def self.perform(x)
#       x * x            # the result Python's ref.result() returns (as JSON: 9)
#     end
#   end
#
# * after_perform_pyresque_tracking: the job succeeded; its result is what perform returned,
#   JSON-encoded (kept for the payload's "ttl" seconds; with no ttl no result is kept). The
#   success is written when Resque::Job#perform returns, so an after_perform hook sorted after
#   ours that raises still makes it a failure. A job a before_perform hook stopped
#   (Resque::Job::DontPerform) counts as succeeded with no result, as in Python. If Redis
#   cannot be written then, the error is raised: Resque records a failure to retry from.
# * on_failure_pyresque_tracking(exception, *args): the job failed; the record keeps what
#   Resque's failure entry says, minus the payload: failed_at ("%Y/%m/%d %H:%M:%S %Z"),
#   exception (class name), error (message), backtrace (frames before Resque's job.rb), worker,
#   queue. A job that will be retried (resque-retry's retry_criteria_valid?, or your own
#   `def self.pyresque_retrying?(exception, *args)`) is marked "retrying" instead.
#
# Either releases or cancels the jobs that depend on this one and counts it in its batch (whose
# callbacks are enqueued once, when its last member ends). A job whose payload has no
# "pyresque" field (anything Ruby enqueued itself) is not touched: no Redis call at all.
#
# Resque passes hooks only the job's args, so this module also wraps Resque::Job#perform and
# #run_failure_hooks to know the running job (its payload, queue and worker) in a thread-local.
# That happens by itself when Resque::Job is defined when this file is loaded or when a class
# extends the module; otherwise call PyResque::Tracking.install(Resque::Job) once.
#
# A Ruby job class WITHOUT this module still runs, but nothing records its end: a Python
# ref.result() on it times out, its dependents wait, and a batch holding it never completes
# (Client.batch_status(id).waiting_for, and the dashboard, name the job it waits for).
#
# Redis: Resque.redis (its namespace, its connection) when Resque is loaded; else set
#
#   PyResque::Tracking.redis = Redis.new(url: ENV["REDIS_URL"])
#   PyResque::Tracking.namespace = "resque"       # the Resque namespace, without ":"
#
# Every change is one call of pyresque_workflow.lua, the very file the Python side sends
# (EVALSHA, and EVAL when the server does not know it yet), so both languages keep one book.

require "json"
require "digest/sha1"

module PyResque
  # Extend a Resque job class with it (see the top of this file).
  module Tracking
    # The workflow script (shipped beside this file), its digest, and how long finished
    # records are kept (pyresqueworker.protocol.workflow.KEEP_SECONDS).
    SCRIPT = File.binread(File.expand_path("pyresque_workflow.lua", __dir__)).freeze
    SCRIPT_SHA = Digest::SHA1.hexdigest(SCRIPT).freeze
    KEEP_SECONDS = 86_400
    FIELD = "pyresque"
    BACKTRACE_CUT = "/lib/resque/job.rb"

    # What a tracked payload says (pyresqueworker.protocol.workflow.tracking_of).
    Track = Struct.new(:id, :ttl, :batch)

    # The job running in this thread, and what the hooks learned about it.
    class Context
      attr_reader :job, :track
      attr_accessor :result, :succeeded, :performing

      def initialize(job)
        @job = job
        @track = Tracking.tracking_of(job.respond_to?(:payload) ? job.payload : nil)
        @result = nil
        @succeeded = false
        @performing = false
      end

      def class_name
        payload = @job.payload
        payload.is_a?(Hash) ? payload["class"].to_s : ""
      end
    end

    # Prepended to Resque::Job: keeps the running job in a thread-local, and records a success
    # when #perform returns (the job is done as far as Resque is concerned).
    module JobWrapper
      def perform
        Tracking.within(self) do |context|
          outcome = super
          Tracking.performed(context, outcome) if context.track
          outcome
        end
      end

      def run_failure_hooks(exception)
        Tracking.within(self) { super }
      end
    end

    # Prepended to the singleton class of each extending class: catches perform's value.
    module PerformWrapper
      def perform(*args, &block)
        context = Tracking.current
        return super unless context&.track && !context.performing && context.class_name == name

        context.performing = true
        begin
          value = super
          context.result = value
          value
        ensure
          context.performing = false
        end
      end
    end

    class << self
      attr_writer :namespace

      # The Redis connection to use instead of Resque's (a Redis client, no namespace wrapper).
      def redis=(client)
        @redis = client
        @pid = Process.pid
      end

      def extended(base)
        base.singleton_class.prepend(PerformWrapper)
        install(::Resque::Job) if defined?(::Resque::Job)
        super
      end

      # Wrap a Resque::Job class (done by itself when Resque::Job is defined in time).
      def install(job_class)
        job_class.prepend(JobWrapper) unless job_class.ancestors.include?(JobWrapper)
        job_class
      end

      # The id, result ttl and batch of a decoded payload, or nil for a job nobody follows.
      def tracking_of(payload)
        return nil unless payload.is_a?(Hash)

        track = payload[FIELD]
        id = payload["id"]
        return nil unless track.is_a?(Hash) && id.is_a?(String) && !id.empty?

        ttl = track["ttl"]
        batch = track["batch"]
        Track.new(id, ttl.is_a?(Integer) && ttl.positive? ? ttl : 0, batch.is_a?(String) ? batch : "")
      end

      # The context of the job this thread runs, or nil.
      def current
        Thread.current[:pyresque_tracking]
      end

      # Run the block with `job` as the current job (the same context again when `job` is
      # already current: run_failure_hooks from within perform).
      def within(job)
        previous = current
        return yield previous if previous && previous.job.equal?(job)

        Thread.current[:pyresque_tracking] = Context.new(job)
        begin
          yield current
        ensure
          Thread.current[:pyresque_tracking] = previous
        end
      end

      # Resque::Job#perform returned: a success when our after_perform hook ran, or when a
      # before_perform hook stopped a job of a tracking class (Resque::Job::DontPerform: perform
      # returned false, no after_perform hook ran; Python calls that skipped).
      def performed(context, outcome)
        stopped = outcome == false && context.job.payload_class.is_a?(Tracking)
        return unless context.succeeded || stopped

        ttl = context.track.ttl
        data = ttl.positive? ? result_json(context.result) : "null"
        call("finish", context.track.id, "succeeded", data, ttl.to_s, KEEP_SECONDS.to_s)
      end

      def after_perform(_klass)
        context = current
        context.succeeded = true if context&.track
      end

      def failed(klass, exception, args)
        context = current
        return unless context&.track

        if retrying?(klass, exception, args)
          call("retrying", context.track.id)
        else
          call("finish", context.track.id, "failed", failure_json(context, exception), "0",
               KEEP_SECONDS.to_s)
        end
      rescue StandardError => e # a failure hook must not keep Resque from writing the failure
        log("pyresque tracking: could not record the failure of job #{context.track.id}: " \
            "#{e.class}: #{e.message}")
      end

      # A result as JSON (what Python's ref.result() decodes); a value JSON cannot hold is
      # kept as Python keeps one: {"__unserializable__": "<class>: <why>"}.
      def result_json(value)
        JSON.generate(value)
      rescue StandardError => e
        JSON.generate("__unserializable__" => "#{value.class}: #{e.message}")
      end

      # Resque's failure entry (Failure::Redis#save) without its payload.
      def failure_json(context, exception)
        job = context.job
        trace = Array(exception.backtrace).take_while { |line| !line.include?(BACKTRACE_CUT) }
        JSON.generate(
          "failed_at" => clean(Time.now.strftime("%Y/%m/%d %H:%M:%S %Z")),
          "exception" => exception.class.to_s,
          "error" => clean(exception.to_s),
          "backtrace" => trace.map { |line| clean(line) },
          "worker" => job.respond_to?(:worker) ? job.worker.to_s : "",
          "queue" => (job.respond_to?(:queue) ? job.queue : nil).to_s
        )
      end

      # Will the job run again (so it has not failed for good)?
      def retrying?(klass, exception, args)
        if klass.respond_to?(:pyresque_retrying?)
          klass.pyresque_retrying?(exception, *args) ? true : false
        elsif klass.respond_to?(:retry_criteria_valid?) # resque-retry
          klass.retry_criteria_valid?(exception) ? true : false
        else
          false
        end
      end

      # The Redis connection: the one set, else Resque's (below its namespace wrapper).
      def redis
        if @redis
          if @pid != Process.pid # forked (Resque's child): a connection of its own
            @redis.close if @redis.respond_to?(:close)
            @pid = Process.pid
          end
          return @redis
        end
        raw = resque_redis
        raise ArgumentError, "PyResque::Tracking.redis is not set and Resque is not loaded" unless raw

        raw
      end

      # The namespace ("resque" by default), without its ":".
      def namespace
        name = @namespace
        if name.nil? && resque_redis
          store = ::Resque.redis
          name = store.namespace if store.respond_to?(:namespace)
        end
        (name || "resque").to_s.chomp(":")
      end

      # One call of the workflow script: EVALSHA, EVAL when the server does not have it.
      def call(operation, *args)
        ns = "#{namespace}:"
        keys = ["#{ns}pyresque:"]
        argv = [operation, ns, format("%.3f", Time.now.to_f), *args]
        connection = redis
        begin
          connection.evalsha(SCRIPT_SHA, keys: keys, argv: argv)
        rescue ::Redis::CommandError => e
          raise unless e.message.include?("NOSCRIPT")

          connection.eval(SCRIPT, keys: keys, argv: argv)
        end
      end

      private

      def resque_redis
        return nil unless defined?(::Resque) && ::Resque.respond_to?(:redis)

        client = ::Resque.redis
        # Resque::DataStore -> Redis::Namespace -> Redis: the script names its keys itself.
        3.times do
          break if client.nil? || (defined?(::Redis) && client.is_a?(::Redis))
          break unless client.respond_to?(:redis)

          client = client.redis
        end
        client
      end

      def clean(text)
        text.to_s.dup.force_encoding(Encoding::UTF_8).scrub("?")
      end

      def log(message)
        if defined?(::Resque) && ::Resque.respond_to?(:logger) && ::Resque.logger
          ::Resque.logger.error(message)
        else
          warn(message)
        end
      end
    end

    # The hooks Resque runs (class methods of the extending class).

    def after_perform_pyresque_tracking(*_args)
      Tracking.after_perform(self)
    end

    def on_failure_pyresque_tracking(exception, *args)
      Tracking.failed(self, exception, args)
    end
  end
end

PyResque::Tracking.install(Resque::Job) if defined?(Resque::Job)
