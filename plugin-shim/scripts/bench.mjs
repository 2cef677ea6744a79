// What the plugin adds per call: N sequential `true` jobs (dispatch with wait_ms), straight over
// JSON-RPC and through the plugin's execute() (rendering included), plus the plugin's start
// (spawn + initialize). A measurement to read, not a test: nothing here has a threshold.
//   node scripts/bench.mjs [N]      (binary: $OPENCODE_WORKER_BIN or ../target/release)
import os from "node:os";
import { OpencodeWorkerPlugin } from "../dist/index.js";
import { SidecarProcess } from "../dist/rpc.js";
import { fakeCtx, fakeInput, workerBinary } from "../test/helpers.mjs";

const N = Number(process.argv[2] ?? 300);
const BIN = workerBinary();
const pct = (xs, p) => xs.slice().sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor((p / 100) * xs.length))];
const fmt = (xs) => `p50 ${pct(xs, 50).toFixed(2)} ms, p90 ${pct(xs, 90).toFixed(2)} ms, p99 ${pct(xs, 99).toFixed(2)} ms`;

async function timeIt(fn) {
  const t = process.hrtime.bigint();
  await fn();
  return Number(process.hrtime.bigint() - t) / 1e6;
}

const direct = new SidecarProcess({ binary: BIN, args: [], env: process.env });
await direct.request("initialize", {});
const rpc = [];
for (let i = 0; i < N; i++) rpc.push(await timeIt(() => direct.request("worker_dispatch_job", { command: "true", wait_ms: 60_000 })));
await direct.close();

const starts = [];
let hooks;
for (let i = 0; i < 5; i++) {
  const f = fakeInput(os.tmpdir());
  starts.push(await timeIt(async () => (hooks = await OpencodeWorkerPlugin(f.input, { binary: BIN }))));
  if (i < 4) await hooks.dispose();
}
const viaPlugin = [];
for (let i = 0; i < N; i++) {
  viaPlugin.push(await timeIt(() => hooks.tool.worker_dispatch_job.execute({ command: "true", wait_ms: 60_000 }, fakeCtx().ctx)));
}
await hooks.dispose();

console.log(`binary: ${BIN}`);
console.log(`plugin start (spawn + initialize), 5 runs: ${fmt(starts)}`);
console.log(`dispatch of \`true\` with wait_ms, ${N} sequential, direct JSON-RPC: ${fmt(rpc)}`);
console.log(`same through the plugin's execute():                 ${fmt(viaPlugin)}`);
