// Shared by the node-resque scripts the Python tests run (tests/node_helpers.py).
// Each script takes the Redis port and the namespace as its first two arguments and talks
// to 127.0.0.1 only.
"use strict";

const NR = require("node-resque");

function connection(port, namespace) {
  return { host: "127.0.0.1", port: Number(port), namespace, database: 0 };
}

// One JSON object a line on stdout: the tests read these as events.
function emit(event, fields = {}) {
  process.stdout.write(JSON.stringify({ event, ...fields }) + "\n");
}

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

// What every job reports, in the shape tests/apps/worker_jobs.py writes to test:ran, so the
// tests read Python and Node runs the same way ("runtime" tells them apart).
async function record(worker, className, args) {
  const line = JSON.stringify({
    class: className,
    args,
    queue: worker.queue,
    worker: `${worker.name}:${worker.stringQueues()}`,
    pid: process.pid,
    runtime: "node",
  });
  await worker.connection.redis.rpush("test:ran", line);
}

class JobError extends Error {
  constructor(message) {
    super(message);
    this.name = "JobError";
  }
}

// The job classes a node-resque worker knows. `plugins` as given to the queue at enqueue
// time come from the test (see queue.js); a worker runs a class's plugins as listed here.
function jobs(pluginSpecs = {}) {
  const defined = {
    Record: {
      perform: async function (...args) {
        await record(this, "Record", args);
      },
    },
    Boom: {
      perform: async function (message = "boom") {
        throw new JobError(message);
      },
    },
    // Fails until the test sets test:fixed:<tag>, then succeeds (a retry that works).
    Flaky: {
      perform: async function (tag) {
        if (!(await this.connection.redis.exists(`test:fixed:${tag}`))) {
          throw new JobError(`not fixed yet: ${tag}`);
        }
        await record(this, "Flaky", [tag]);
      },
    },
    // Runs until the test sets test:release:<tag> (or `limit` seconds pass).
    Hold: {
      perform: async function (tag, limit = 30) {
        const redis = this.connection.redis;
        await redis.rpush("test:started", JSON.stringify({ class: "Hold", args: [tag, limit],
          worker: `${this.name}:${this.stringQueues()}`, runtime: "node" }));
        const deadline = Date.now() + limit * 1000;
        while (!(await redis.exists(`test:release:${tag}`)) && Date.now() < deadline) {
          await sleep(20);
        }
        await record(this, "Hold", [tag, limit]);
      },
    },
  };
  for (const [name, spec] of Object.entries(pluginSpecs)) {
    const perform = defined[name] ? defined[name].perform : async function (...args) {
      await record(this, name, args);
    };
    defined[name] = { ...spec, perform };
  }
  return defined;
}

module.exports = { NR, connection, emit, sleep, jobs, record, JobError };
