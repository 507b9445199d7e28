# frozen_string_literal: true

# A stand-in for the part of the resque gem (3.0) that runs one job, written for these tests
# from what Resque does (lib/resque/job.rb and plugin.rb in resque/resque): the gem is not
# installed here. The file keeps the gem's path because Resque's failure backend, and
# PyResque::Tracking after it, cut a failure's backtrace at the first frame in
# "/lib/resque/job.rb".
#
# What it reproduces:
# - hooks are the job class's methods whose names start with before_perform, around_perform,
#   after_perform or on_failure; each kind runs in sorted name order, with the job's args;
# - a before hook raising DontPerform keeps the job from running (perform returns false);
# - around hooks nest, the first in sorted order outermost; the job runs only if the innermost
#   one yields; after hooks run next; perform returns whether the job ran;
# - any other exception runs the on_failure hooks (exception, *args), once per job, and goes on
#   up; Job#fail runs them too (when the class exists) before recording the failure.

module Resque
  class DirtyExit < RuntimeError; end

  class Job
    class DontPerform < StandardError; end

    HOOK_PREFIXES = { before: "before_perform", around: "around_perform",
                      after: "after_perform", failure: "on_failure" }.freeze

    attr_accessor :worker
    attr_reader :queue, :payload

    def initialize(queue, payload)
      @queue = queue
      @payload = payload
      @failure_hooks_done = false
    end

    def args
      @payload["args"] || []
    end

    def payload_class
      @payload_class ||= Object.const_get(@payload["class"])
    end

    # (Resque's name for it.)
    def has_payload_class? # rubocop:disable Naming/PredicateName
      payload_class != Object
    rescue NameError
      false
    end

    def perform
      klass = payload_class
      begin
        hooks(:before).each { |hook| klass.send(hook, *args) }
      rescue DontPerform
        return false
      end
      ran = run_around(klass)
      hooks(:after).each { |hook| klass.send(hook, *args) }
      ran
    rescue Object => e # Resque rescues everything here, exits included
      run_failure_hooks(e)
      raise
    end

    def fail(exception)
      run_failure_hooks(exception) if has_payload_class?
      Failure.create(payload: payload, exception: exception, worker: worker, queue: queue)
    end

    def run_failure_hooks(exception)
      return if @failure_hooks_done

      @failure_hooks_done = true
      hooks(:failure).each { |hook| payload_class.send(hook, exception, *args) }
    end

    private

    def hooks(kind)
      prefix = HOOK_PREFIXES.fetch(kind)
      payload_class.methods.map(&:to_s).select { |name| name.start_with?(prefix) }.sort
    end

    # The job inside its around hooks; whether it ran.
    def run_around(klass)
      ran = false
      innermost = lambda do
        result = klass.perform(*args)
        ran = true
        result
      end
      hooks(:around).reverse.reduce(innermost) do |inner, hook|
        -> { klass.send(hook, *args) { inner.call } }
      end.call
      ran
    end
  end
end
