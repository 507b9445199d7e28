// node-resque's Scheduler until SIGTERM:
//   node scheduler.js PORT NAMESPACE [STUCK_WORKER_TIMEOUT_MS]
// It moves due delayed jobs and force-cleans workers whose worker:ping:<name> is older
// than the stuck-worker timeout; prints its events as JSON lines.
"use strict";

const { NR, connection, emit } = require("./common");

async function main() {
  const [port, namespace, stuckMs] = process.argv.slice(2);
  const options = { connection: connection(port, namespace), timeout: 100 };
  if (stuckMs) options.stuckWorkerTimeout = Number(stuckMs);
  const scheduler = new NR.Scheduler(options);
  scheduler.on("leader", () => emit("leader"));
  scheduler.on("transferredJob", (timestamp, job) => emit("transferredJob", { timestamp, job }));
  scheduler.on("cleanStuckWorker", (workerName, errorPayload, delta) =>
    emit("cleanStuckWorker", { workerName, errorPayload, delta }));
  scheduler.on("error", (error) => emit("error", { error: String(error) }));
  let stopping = false;
  process.on("SIGTERM", async () => {
    if (stopping) return;
    stopping = true;
    await scheduler.end();
    emit("end");
    process.exit(0);
  });
  await scheduler.connect();
  await scheduler.start();
  emit("ready", { pid: process.pid });
}

main().catch((error) => {
  process.stderr.write(`${error && error.stack ? error.stack : error}\n`);
  process.exit(1);
});
