// A node-resque worker until SIGTERM:
//   node worker.js PORT NAMESPACE QUEUES [PLUGINS_JSON]
// QUEUES is comma-separated; PLUGINS_JSON maps a class to {"plugins": [...]}. Prints its
// events as JSON lines ("ready" once it has registered and pinged).
"use strict";

const { NR, connection, emit, jobs } = require("./common");

async function main() {
  const [port, namespace, queues, pluginsJson] = process.argv.slice(2);
  const plugins = pluginsJson ? JSON.parse(pluginsJson) : {};
  const worker = new NR.Worker(
    { connection: connection(port, namespace), queues: queues.split(","), timeout: 100 },
    jobs(plugins),
  );
  worker.on("job", (queue, job) => emit("job", { queue, job }));
  worker.on("success", (queue, job, result, duration) => emit("success", { queue, job }));
  worker.on("failure", (queue, job, failure) => emit("failure", { queue, job,
    error: String(failure) }));
  worker.on("error", (error, queue, job) => emit("error", { queue, error: String(error) }));
  let stopping = false;
  process.on("SIGTERM", async () => {
    if (stopping) return;
    stopping = true;
    await worker.end();
    emit("end");
    process.exit(0);
  });
  await worker.connect();
  await worker.start();
  emit("ready", { name: worker.name, id: `${worker.name}:${worker.stringQueues()}`,
    pid: process.pid });
}

main().catch((error) => {
  process.stderr.write(`${error && error.stack ? error.stack : error}\n`);
  process.exit(1);
});
