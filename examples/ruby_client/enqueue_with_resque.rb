#!/usr/bin/env ruby
# frozen_string_literal: true

# Enqueue one job with the real resque gem, for a Python (or Ruby) Resque worker to run.
#
#   bundle install
#   REDIS_URL=redis://127.0.0.1:6379/0 bundle exec ruby enqueue_with_resque.rb \
#     QUEUE CLASS_NAME '[ARGS, AS, JSON]'
#
# The class is given by name, so it need not exist on the Ruby side: Resque stores only the
# name, and the Python worker maps it to a handler registered under that name.

require "json"
require "resque"

queue, class_name, args_json = ARGV
if queue.nil? || class_name.nil? || ARGV.size > 3
  abort "usage: ruby #{File.basename(__FILE__)} QUEUE CLASS_NAME [ARGS_JSON]"
end

args = JSON.parse(args_json || "[]")
abort "ARGS_JSON must be a JSON array, got: #{args_json}" unless args.is_a?(Array)

# A redis:// URL keeps the default "resque" namespace; the Python side must use the same one.
# Ruby adds the ":" itself, so "resque:" (goworker's spelling) is trimmed to "resque".
Resque.redis = ENV.fetch("REDIS_URL", "redis://127.0.0.1:6379/0")
Resque.redis.namespace = ENV["RESQUE_NAMESPACE"].chomp(":") if ENV["RESQUE_NAMESPACE"]

# enqueue_to takes the queue explicitly, so a String class name is enough (no @queue lookup).
Resque.enqueue_to(queue, class_name, *args)
puts "enqueued #{class_name}#{args.inspect} on #{queue} (#{Resque.size(queue)} waiting)"
