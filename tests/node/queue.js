// node-resque's Queue API from the command line:
//   node queue.js PORT NAMESPACE '[{"op": "enqueue", ...}, ...]'
// runs each operation in order and prints one JSON array of their results.
"use strict";

const { NR, connection, jobs } = require("./common");

async function run(queue, step) {
  const args = step.args === undefined ? [] : step.args;
  switch (step.op) {
    case "enqueue":
      return queue.enqueue(step.queue, step.class, args);
    case "enqueueIn":
      return queue.enqueueIn(step.ms, step.queue, step.class, args);
    case "enqueueAt":
      return queue.enqueueAt(step.at_ms, step.queue, step.class, args);
    case "workers":
      return queue.workers();
    case "allWorkingOn":
      return queue.allWorkingOn();
    case "failed":
      return queue.failed(0, -1);
    case "failedCount":
      return queue.failedCount();
    case "retryAndRemoveFailed": {
      const [entry] = await queue.failed(step.index, step.index);
      return queue.retryAndRemoveFailed(entry);
    }
    case "forceCleanWorker":
      return queue.forceCleanWorker(step.name);
    case "cleanOldWorkers":
      return queue.cleanOldWorkers(step.age_ms);
    case "stats":
      return queue.stats();
    case "locks":
      return queue.locks();
    case "queued":
      return queue.queued(step.queue, 0, -1);
    case "scheduledAt":
      return queue.scheduledAt(step.queue, step.class, args);
    default:
      throw new Error(`unknown op ${step.op}`);
  }
}

async function main() {
  const [port, namespace, stepsJson] = process.argv.slice(2);
  const steps = JSON.parse(stepsJson);
  // A class's plugins, for the operations that name them ({"plugins": {"Class": [...]}}).
  const plugins = {};
  for (const step of steps) {
    if (step.plugins) plugins[step.class] = { plugins: step.plugins,
      pluginOptions: step.pluginOptions || {} };
  }
  const queue = new NR.Queue({ connection: connection(port, namespace) }, jobs(plugins));
  const errors = [];
  queue.on("error", (error) => errors.push(String(error)));
  await queue.connect();
  const results = [];
  try {
    for (const step of steps) {
      const result = await run(queue, step);
      results.push(result === undefined ? null : result);
    }
  } finally {
    await queue.end();
  }
  process.stdout.write(JSON.stringify({ results, errors }) + "\n");
}

main().catch((error) => {
  process.stderr.write(`${error && error.stack ? error.stack : error}\n`);
  process.exit(1);
});
