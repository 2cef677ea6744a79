// What the plugin adds per call: N sequential `true` jobs (dispatch with wait_ms), straight over
// JSON-RPC and through the plugin's execute() (rendering included), plus the plugin's start
// (spawn + initialize), each beside the floor measured in the same run: node spawning
// `/bin/true` itself and awaiting its exit. A measurement to read, not a test: nothing here has
// a threshold.
//   node scripts/bench.mjs [N]      (binary: $OPENCODE_WORKER_BIN or ../target/release)
import { spawn } from "node:child_process";
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

const trueExits = () =>
  new Promise((resolve, reject) => {
    const child = spawn("/bin/true", [], { stdio: "ignore" });
    child.on("error", reject);
    child.on("exit", resolve);
  });
const floor = [];
for (let i = 0; i < N; i++) floor.push(await timeIt(trueExits));

async function directRpc(args) {
  const direct = new SidecarProcess({ binary: BIN, args, env: process.env });
  await direct.request("initialize", {});
  const times = [];
  for (let i = 0; i < N; i++) times.push(await timeIt(() => direct.request("worker_dispatch_job", { command: "true", wait_ms: 60_000 })));
  await direct.close();
  return times;
}
const rpc = await directRpc([]);
const rpcNone = await directRpc(["--set", 'isolation.profile="none"']);

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

const ratio = (xs) => `${(pct(xs, 50) / pct(floor, 50)).toFixed(2)}x the floor`;
console.log(`binary: ${BIN}; load average ${os.loadavg()[0].toFixed(2)}`);
console.log(`floor: node spawns /bin/true and awaits its exit, ${N} sequential: ${fmt(floor)}`);
console.log(`plugin start (spawn + initialize), 5 runs: ${fmt(starts)}`);
console.log(`dispatch of \`true\` with wait_ms, ${N} sequential, direct JSON-RPC: ${fmt(rpc)} (${ratio(rpc)})`);
console.log(`same, isolation none:                                  ${fmt(rpcNone)} (${ratio(rpcNone)})`);
console.log(`same through the plugin's execute():                 ${fmt(viaPlugin)} (${ratio(viaPlugin)})`);
